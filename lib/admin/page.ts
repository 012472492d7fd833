// The admin page itself: one self-contained HTML document (inline style and script, allowed by
// their hashes in the handler's Content-Security-Policy) that polls or streams the status, and
// draws the live chart itself (inline SVG) from the points the status carries.
import { createHash } from 'node:crypto';

import { escapeHtml } from '../core/html.js';

/** JSON safe to put inside a <script> element (no `</script>`, no `<!--`, no line separators). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const sha256 = (text: string): string =>
  `sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}`;

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #5c6570; --bg: #fff; --panel: #f4f6f8; --line: #d5dae0;
  --leader: #0a7d32; --warn: #b35c00; --bad: #b3261e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ed; --muted: #9aa4ae; --bg: #14171a; --panel: #1d2125; --line: #333a41;
  --leader: #4cc274; --warn: #f0a040; --bad: #ff6b61; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.2rem 1.5rem 2rem; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.6rem 0 .5rem; }
.conn { font-size: .85rem; color: var(--muted); }
.conn.live::before { content: "\\25CF  "; color: var(--leader); }
.conn.down::before { content: "\\25CF  "; color: var(--bad); }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(10.5rem, 1fr)); gap: .5rem; margin-top: 1rem; }
.fact { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .45rem .7rem; }
.fact .k { font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.fact.wide { grid-column: span 2; }
.fact .v { font-size: 1.1rem; font-variant-numeric: tabular-nums; overflow-wrap: break-word; }
table { border-collapse: collapse; min-width: 36rem; }
th, td { text-align: left; padding: .35rem .8rem; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
th { font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 4px; font-size: .8rem; border: 1px solid var(--line); margin-right: .3rem; }
.badge.leader { color: var(--leader); border-color: var(--leader); font-weight: 600; }
.badge.diverged { color: var(--bad); border-color: var(--bad); font-weight: 600; }
.badge.holds-back { color: var(--warn); border-color: var(--warn); font-weight: 600; }
.badge.too-old { color: var(--bad); border-color: var(--bad); font-weight: 600; }
.badge.down { color: var(--bad); border-color: var(--bad); font-weight: 600; }
tr.down td { color: var(--muted); background: var(--panel); }
.lag-some { color: var(--warn); font-weight: 600; }
.charts { display: flex; gap: 1rem; flex-wrap: wrap; }
.chart { margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .45rem .7rem; width: 24rem; }
.chart figcaption { font-size: .8rem; color: var(--muted); font-variant-numeric: tabular-nums; }
.chart svg { display: block; width: 100%; height: 6rem; }
.chart path { fill: none; stroke-width: 1.5; stroke-linecap: round; vector-effect: non-scaling-stroke; }
.chart .axis { stroke: var(--line); stroke-width: 1; }
.chart .commits { stroke: var(--leader); }
.chart .p50 { stroke: var(--fg); }
.chart .p99 { stroke: var(--warn); }
.key-p50 { color: var(--fg); } .key-p99 { color: var(--warn); }
.note { color: var(--muted); margin: .4rem 0 0; }
ol { margin: 0; padding-left: 1.4rem; }
ol li { padding: .15rem 0; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
.error { color: var(--bad); }
.banner { margin: .8rem 0 0; padding: .55rem .8rem; border-radius: 6px; font-weight: 600; color: #fff; }
.banner.bad { background: var(--bad); }
.banner.warn { background: var(--warn); }
`;

// Runs in the browser. Builds every node with textContent: no markup from data.
const SCRIPT = `
"use strict";
const base = JSON.parse(document.getElementById("admin-config").textContent).basePath;
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function who(m) { return m ? "node " + m.id + (m.address ? " (" + m.address + ")" : "") : "none"; }
function fact(id, value) { $(id).textContent = String(value); }
function time(ms) { const d = new Date(ms); return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0"); }

function render(s) {
  document.title = "prevail admin: node " + s.id + " (" + s.role + ")";
  fact("self", "node " + s.id + (s.address ? " (" + s.address + ")" : ""));
  fact("role", s.role);
  fact("term", s.term);
  fact("leader", who(s.leader));
  $("leader").dataset.leaderId = s.leader ? String(s.leader.id) : "";
  fact("commit", s.commitIndex);
  fact("applied", s.appliedIndex);
  fact("last", s.lastIndex);
  fact("snapshot", s.snapshot.index ? s.snapshot.index + " (term " + s.snapshot.term + ")" : "none yet");
  fact("updated", time(s.time));
  fact("schema", schemaLine(s.schema));
  banners(s);

  const rows = s.members.map((m) => {
    const tr = el("tr");
    tr.dataset.memberId = String(m.id);
    tr.appendChild(el("td", m.id));
    tr.appendChild(el("td", m.address));
    const roles = el("td");
    roles.appendChild(el("span", m.role, "badge"));
    if (m.leader) roles.appendChild(el("span", "leader", "badge leader"));
    if (m.self) roles.appendChild(el("span", "this node", "badge"));
    if (m.diverged) roles.appendChild(el("span", "diverged", "badge diverged"));
    schemaBadges(roles, m.schema);
    downBadge(tr, roles, m.downSince, s.time);
    tr.appendChild(roles);
    tr.appendChild(el("td", m.schema ? range(m.schema.code) : "\u2014"));
    tr.appendChild(el("td", m.matchIndex === undefined ? "\\u2014" : m.matchIndex, "num"));
    const lag = m.lag === undefined ? "\\u2014" : m.lag;
    tr.appendChild(el("td", lag, "num" + (m.lag > 0 ? " lag-some" : "")));
    return tr;
  });
  $("members").replaceChildren(...rows);
  $("member-count").textContent = String(s.members.length);
  $("lag-note").textContent = s.lagKnown ? "Lag = the leader's commit index \\u2212 the member's match index. A member that acknowledges none of the entries it has to take for " + (s.downAfterMs / 1000) + " s is marked down."
    : "Only the leader knows how far each member is and which stopped answering: open the admin page of the leader, " + who(s.leader) + ".";

  const items = s.leaderChanges.map((c) => {
    const li = el("li");
    li.dataset.leaderId = c.leader ? String(c.leader.id) : "";
    li.dataset.term = String(c.term);
    li.appendChild(el("span", time(c.time) + "  ", "muted"));
    li.appendChild(el("span", (c.leader ? "leader " + who(c.leader) : "no leader") + ", term " + c.term));
    if (c.initial) li.appendChild(el("span", "  (already leader when the page's handler started)", "muted"));
    return li;
  });
  $("changes").replaceChildren(...items);
  $("changes-empty").hidden = items.length > 0;
  if (s.chart) chart(s.chart);
}

function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); }
// The leader's verdict: a member that stopped acknowledging entries. The row is greyed.
function downBadge(tr, td, since, now) {
  if (since === null || since === undefined) return;
  tr.classList.add("down");
  tr.dataset.downSince = String(since);
  const secs = Math.max(0, Math.round((now - since) / 1000));
  td.appendChild(el("span", "down since " + clock(since) + " (" + secs + "s)", "badge down"));
}

// The chart's points by time: a stream's later events carry only the newest few.
const series = new Map();
const W = 300, H = 80;
function chart(c) {
  for (const p of c.points) series.set(p.time, p);
  const points = [...series.values()].sort((a, b) => a.time - b.time);
  const newest = points.length ? points[points.length - 1].time : 0;
  for (const p of points) if (p.time < newest - c.windowMs) series.delete(p.time);
  const shown = points.filter((p) => p.time >= newest - c.windowMs);
  const last = shown[shown.length - 1];
  // The x axis spans what there is (a handler started a minute ago has a minute), 1 to 3 minutes.
  const span = Math.min(c.windowMs, Math.max(60000, shown.length ? newest - shown[0].time : 0));
  const commitsMax = plot(shown, newest, span, c, [["commitsPerSec", "line-commits"]]);
  $("max-commits").textContent = commitsMax + "/s";
  $("now-commits").textContent = last ? last.commitsPerSec + "/s now" : "";
  const applyMax = plot(shown, newest, span, c, [["applyP50Ms", "line-p50"], ["applyP99Ms", "line-p99"]]);
  $("max-apply").textContent = applyMax + " ms";
  $("now-apply").textContent = !last ? "" : last.applyP50Ms === null ? "nothing applied now" : last.applyP50Ms + " / " + last.applyP99Ms + " ms now";
  $("chart-commits").dataset.points = String(shown.length);
  $("chart-apply").dataset.points = String(shown.filter((p) => p.applyP50Ms !== null).length);
}
// Draws each [field, path id] on a shared scale (from 0 to a round maximum, returned); a missing
// value or a missed sample breaks the line.
function plot(points, newest, span, c, lines) {
  let max = 0;
  for (const p of points) for (const [f] of lines) if (p[f] !== null && p[f] > max) max = p[f];
  max = roundUp(max);
  for (const [f, id] of lines) {
    const runs = [];
    let prev = null;
    for (const p of points) {
      if (p[f] === null) { prev = null; continue; }
      const xy = (W - ((newest - p.time) / span) * W).toFixed(1) + " " + (H - 2 - (p[f] / max) * (H - 12)).toFixed(1);
      if (prev === null || p.time - prev > 2.5 * c.intervalMs) runs.push([xy]);
      else runs[runs.length - 1].push(xy);
      prev = p.time;
    }
    // A lone point is a short dash, else it would not show.
    $(id).setAttribute("d", runs.map((r) => "M" + r.join(" L") + (r.length === 1 ? " h2" : "")).join(" "));
  }
  return max;
}
function roundUp(v) {
  if (!(v > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function range(c) { return c ? (c.oldest === c.newest ? "v" + c.oldest : "v" + c.oldest + "\u2013v" + c.newest) : "not recorded"; }
function schemaLine(x) {
  if (!x) return "\u2014";
  return "v" + x.active + (x.activatedAt === null ? " (from the start)" : " (since index " + x.activatedAt + ")") +
    "; this code " + range(x.code) + (x.heldBack ? "; v" + x.heldBack.version + " held back by node " + x.heldBack.by.join(", ") : "");
}
// A voter whose code lacks the newest version; a member whose code can't run the active one (it stops).
function schemaBadges(td, x) {
  if (!x) return;
  if (x.holdsBack !== null) td.appendChild(el("span", "holds back v" + x.holdsBack, "badge holds-back"));
  if (x.tooOld) td.appendChild(el("span", "too old", "badge too-old"));
  if (x.tooNew) td.appendChild(el("span", "too new", "badge too-old"));
}

// Said loudly: members that anyone can talk to, and a certificate about to stop working.
function banners(s) {
  const out = [];
  if (s.security === "insecure")
    out.push(el("p", "INSECURE: members talk without TLS: anyone who reaches the raft port can join the cluster's traffic.", "banner bad"));
  if (s.certificateExpiring)
    out.push(el("p", "This node's certificate expires on " + new Date(s.certificateNotAfter).toISOString() + ": rotate it (new files, then SIGHUP or prevail reload).", "banner warn"));
  for (const f of s.schema ? s.schema.failed : [])
    out.push(el("p", "Activating schema version " + f.version + " failed: " + f.message + " (store.activate() or prevail activate retries it).", "banner bad"));
  $("banners").replaceChildren(...out);
}

function connection(text, cls) { const c = $("conn"); c.textContent = text; c.className = "conn " + cls; }

fetch(base + "/status.json", { cache: "no-store" }).then((r) => r.json()).then(render).catch(() => {});
if (typeof EventSource === "function") {
  const events = new EventSource(base + "/events");
  events.onopen = () => connection("live", "live");
  events.onmessage = (e) => { connection("live", "live"); render(JSON.parse(e.data)); };
  events.onerror = () => connection("disconnected, retrying\\u2026", "down");
  events.addEventListener("failure", (e) => connection("the node could not report its status: " + JSON.parse(e.data).message, "down"));
} else {
  setInterval(() => fetch(base + "/status.json", { cache: "no-store" }).then((r) => r.json()).then(render).catch(() => connection("disconnected", "down")), 1000);
}
`;

// One chart: static markup (no data); the script fills its paths and labels.
function chartFigure(id: string, caption: string, paths: string): string {
  return `<figure class="chart"><figcaption>${caption}: <span id="now-${id}"></span> <span class="muted">(top of the chart: <span id="max-${id}"></span>)</span></figcaption>
<svg id="chart-${id}" viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label="${id}">
<line class="axis" x1="0" y1="78" x2="300" y2="78"/>${paths}</svg></figure>`;
}

const WIDE = new Set(['self', 'leader', 'schema']);

export function renderPage(basePath: string): {
  html: string;
  scriptHash: string;
  styleHash: string;
} {
  const config = scriptJson({ basePath });
  const facts: [string, string][] = [
    ['self', 'this node'],
    ['role', 'role'],
    ['term', 'term'],
    ['leader', 'leader'],
    ['commit', 'commit index'],
    ['applied', 'applied index'],
    ['last', 'last log index'],
    ['snapshot', 'last snapshot'],
    ['updated', 'updated'],
    ['schema', 'schema'],
  ];
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prevail admin</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>prevail admin</h1><span id="conn" class="conn">connecting\u2026</span></header>
<div id="banners"></div>
<section class="facts">
${facts.map(([id, label]) => `<div class="fact${WIDE.has(id) ? ' wide' : ''}"><div class="k">${escapeHtml(label)}</div><div class="v" id="${escapeHtml(id)}">\u2026</div></div>`).join('\n')}
</section>
<h2>Members (<span id="member-count">0</span>)</h2>
<table>
<thead><tr><th>id</th><th>address</th><th>role</th><th>schema code</th><th class="num">match index</th><th class="num">lag</th></tr></thead>
<tbody id="members"></tbody>
</table>
<p class="note" id="lag-note"></p>
<h2>Activity</h2>
<div class="charts">
${chartFigure('commits', 'commits/s', '<path id="line-commits" class="commits"/>')}
${chartFigure('apply', 'apply latency, <span class="key-p50">p50</span> / <span class="key-p99">p99</span>', '<path id="line-p50" class="p50"/><path id="line-p99" class="p99"/>')}
</div>
<p class="note">Up to the last 3 minutes, a point a second: entries this node learned committed, and how long applying them took here.</p>
<h2>Recent leader changes</h2>
<p class="note" id="changes-empty">None seen yet.</p>
<ol id="changes" reversed></ol>
<noscript><p>This page needs JavaScript; <a href="${escapeHtml(basePath)}/status.json">status.json</a> has the same facts.</p></noscript>
<script type="application/json" id="admin-config">${config}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
  return { html, scriptHash: sha256(SCRIPT), styleHash: sha256(STYLE) };
}

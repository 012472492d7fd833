// The admin page: one node's view of the cluster (members, roles, leader, term, commit
// and applied index, lag per member, last snapshot, recent leader changes), as a
// self-contained HTML page, a JSON document and a Server-Sent Events stream. Mount it in
// any node:http server: `if (admin(req, res)) return;`.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { MemberRef } from '../core/errors.js';
import type { RaftNodeStatus } from '../engine/types.js';

/** What the handler needs: a Store or a RaftNode (anything with `status()` and their events). */
export interface AdminSource {
  status(): RaftNodeStatus;
  on(event: 'role' | 'leader', listener: (e: { term: number; leader: MemberRef | null }) => void): unknown;
  off(event: 'role' | 'leader', listener: (e: { term: number; leader: MemberRef | null }) => void): unknown;
  /** A Store's RaftNode, which emits `leader` (the Store itself re-emits only `role`). */
  readonly node?: AdminSource;
}

export interface AdminOptions {
  /** Where the page is served; `${basePath}/status.json` and `${basePath}/events` beside it. Default '/admin'. */
  basePath?: string;
  /** How many leader changes to keep. Default 50. */
  historySize?: number;
  /** How often the event stream pushes the status besides on role and leader changes. Default 500 ms. */
  intervalMs?: number;
}

export interface LeaderChange {
  /** When this node saw the change (ms since the epoch, this node's clock). */
  time: number;
  term: number;
  /** The new leader, or null while there is none. */
  leader: MemberRef | null;
  /** True for the leader already known when the handler was created (not a change seen happening). */
  initial?: boolean;
}

export interface AdminMember {
  id: number;
  address: string;
  role: string;
  /** On the leader: the highest log index known replicated on this member. */
  matchIndex?: number;
  /** On the leader: its commitIndex − matchIndex (0 when the member has everything committed). */
  lag?: number;
  leader: boolean;
  self: boolean;
}

/** The document served at `${basePath}/status.json` and pushed on `${basePath}/events`. */
export interface AdminStatus extends Omit<RaftNodeStatus, 'members'> {
  /** This node's clock when the status was taken (ms since the epoch). */
  time: number;
  /** This node's raft address (from the member list; '' when not a member). */
  address: string;
  /** True when the lag figures are known: only the leader tracks what its followers have. */
  lagKnown: boolean;
  members: AdminMember[];
  /** Newest first. */
  leaderChanges: LeaderChange[];
}

/** A request handler: true when it answered the request, false to let the app handle it. */
export interface AdminHandler {
  (req: IncomingMessage, res: ServerResponse): boolean;
  /** The current status document. */
  status(): AdminStatus;
  /** Stops listening to the store and ends every open event stream (they would keep `server.close()` waiting). */
  close(): void;
}

const BASE_PATH = /^(\/[A-Za-z0-9._~-]+)*$/;

/**
 * The admin page of `store` (a Store or a RaftNode). Serves `basePath` (the page, also
 * with a trailing slash), `${basePath}/status.json` and `${basePath}/events` (SSE);
 * returns false for every other path.
 */
export function adminHandler(store: AdminSource, { basePath = '/admin', historySize = 50, intervalMs = 500 }: AdminOptions = {}): AdminHandler {
  if (basePath === '/') basePath = '';
  if (typeof basePath !== 'string' || !BASE_PATH.test(basePath)) {
    throw new TypeError(`basePath must be '' or '/segment[/segment...]' (letters, digits, . _ ~ -), got ${JSON.stringify(basePath)}`);
  }
  if (!Number.isInteger(historySize) || historySize < 1) throw new TypeError(`historySize must be a positive integer, got ${historySize}`);
  if (!(intervalMs > 0)) throw new TypeError(`intervalMs must be positive, got ${intervalMs}`);

  const leaderSource = store.node ?? store;
  const history: LeaderChange[] = [];
  const initial = safeStatus(store);
  if (initial?.leader) history.push({ time: Date.now(), term: initial.term, leader: initial.leader, initial: true });
  let lastLeaderId = initial?.leader?.id ?? 0;

  const clients = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | null = null;
  let pushQueued = false;
  let closed = false;

  const onLeader = (e: { term: number; leader: MemberRef | null }): void => {
    const id = e.leader?.id ?? 0;
    if (id !== lastLeaderId) {
      lastLeaderId = id;
      history.push({ time: Date.now(), term: e.term, leader: e.leader ? { id: e.leader.id, address: e.leader.address } : null });
      if (history.length > historySize) history.splice(0, history.length - historySize);
    }
    queuePush();
  };
  const onRole = (): void => queuePush();
  leaderSource.on('leader', onLeader);
  store.on('role', onRole);

  function status(): AdminStatus {
    const s = store.status();
    const isLeader = s.role === 'leader';
    const self = s.members.find((m) => m.id === s.id);
    return {
      ...s,
      time: Date.now(),
      address: self?.address ?? '',
      lagKnown: isLeader,
      members: s.members.map((m) => {
        const member: AdminMember = { id: m.id, address: m.address, role: m.role, leader: m.id === s.leader?.id, self: m.id === s.id };
        if (isLeader && m.matchIndex !== undefined) {
          member.matchIndex = m.matchIndex;
          member.lag = Math.max(0, s.commitIndex - m.matchIndex);
        }
        return member;
      }),
      leaderChanges: history.slice().reverse(),
    };
  }

  // Events arrive from inside the engine's callbacks: push from a fresh tick, once per burst.
  function queuePush(): void {
    if (pushQueued || clients.size === 0) return;
    pushQueued = true;
    setImmediate(() => {
      pushQueued = false;
      push();
    });
  }

  function push(): void {
    if (clients.size === 0) return;
    let data: string;
    try {
      data = `data: ${JSON.stringify(status())}\n\n`;
    } catch (err) {
      data = `event: failure\ndata: ${JSON.stringify({ message: (err as Error)?.message ?? String(err) })}\n\n`;
    }
    for (const res of clients) {
      // A client that can't keep up skips pushes until its socket drains.
      if (!res.writableNeedDrain) res.write(data);
    }
  }

  function removeClient(res: ServerResponse): void {
    if (!clients.delete(res)) return;
    if (clients.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  const page = renderPage(basePath);
  const headers = {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(page.html),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': `default-src 'none'; script-src '${page.scriptHash}'; style-src '${page.styleHash}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  };

  const handler = ((req: IncomingMessage, res: ServerResponse): boolean => {
    const path = pathOf(req.url);
    const route = path === basePath || path === `${basePath}/` ? 'page'
      : path === `${basePath}/status.json` ? 'json'
      : path === `${basePath}/events` ? 'events'
      : null;
    if (!route) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return true;
    }
    const head = req.method === 'HEAD';
    if (route === 'page') {
      res.writeHead(200, headers);
      res.end(head ? undefined : page.html);
    } else if (route === 'json') {
      let body: string;
      try {
        body = `${JSON.stringify(status())}\n`;
      } catch (err) {
        res.writeHead(503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(`${JSON.stringify({ error: (err as Error)?.message ?? String(err) })}\n`);
        return true;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(head ? undefined : body);
    } else {
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        'X-Accel-Buffering': 'no',
        Connection: 'keep-alive',
      });
      if (head || closed) {
        res.end();
        return true;
      }
      req.socket.setNoDelay(true);
      req.socket.setTimeout(0);
      res.write('retry: 1000\n\n');
      clients.add(res);
      res.once('close', () => removeClient(res));
      if (!timer) {
        timer = setInterval(push, intervalMs);
        timer.unref();
      }
      // The first status right away (the browser should not wait for the first tick).
      let data: string | null = null;
      try {
        data = `data: ${JSON.stringify(status())}\n\n`;
      } catch { /* the next tick reports the failure */ }
      if (data) res.write(data);
    }
    return true;
  }) as AdminHandler;

  handler.status = status;
  handler.close = () => {
    if (closed) return;
    closed = true;
    leaderSource.off('leader', onLeader);
    store.off('role', onRole);
    for (const res of [...clients]) {
      removeClient(res);
      res.end();
    }
  };
  return handler;
}

function safeStatus(store: AdminSource): RaftNodeStatus | null {
  try {
    return store.status();
  } catch {
    return null;
  }
}

function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

const escapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => escapes[c]!);
}

/** JSON safe to put inside a <script> element (no `</script>`, no `<!--`, no line separators). */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const sha256 = (text: string): string => `sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}`;

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
.lag-some { color: var(--warn); font-weight: 600; }
.note { color: var(--muted); margin: .4rem 0 0; }
ol { margin: 0; padding-left: 1.4rem; }
ol li { padding: .15rem 0; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
.error { color: var(--bad); }
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

  const rows = s.members.map((m) => {
    const tr = el("tr");
    tr.dataset.memberId = String(m.id);
    tr.appendChild(el("td", m.id));
    tr.appendChild(el("td", m.address));
    const roles = el("td");
    roles.appendChild(el("span", m.role, "badge"));
    if (m.leader) roles.appendChild(el("span", "leader", "badge leader"));
    if (m.self) roles.appendChild(el("span", "this node", "badge"));
    tr.appendChild(roles);
    tr.appendChild(el("td", m.matchIndex === undefined ? "\\u2014" : m.matchIndex, "num"));
    const lag = m.lag === undefined ? "\\u2014" : m.lag;
    tr.appendChild(el("td", lag, "num" + (m.lag > 0 ? " lag-some" : "")));
    return tr;
  });
  $("members").replaceChildren(...rows);
  $("member-count").textContent = String(s.members.length);
  $("lag-note").textContent = s.lagKnown ? "Lag = the leader's commit index \\u2212 the member's match index."
    : "Only the leader knows how far each member is: open the admin page of the leader, " + who(s.leader) + ".";

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

function renderPage(basePath: string): { html: string; scriptHash: string; styleHash: string } {
  const config = scriptJson({ basePath });
  const facts: [string, string][] = [
    ['self', 'this node'], ['role', 'role'], ['term', 'term'], ['leader', 'leader'], ['commit', 'commit index'],
    ['applied', 'applied index'], ['last', 'last log index'], ['snapshot', 'last snapshot'], ['updated', 'updated'],
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
<section class="facts">
${facts.map(([id, label]) => `<div class="fact${id === 'self' || id === 'leader' ? ' wide' : ''}"><div class="k">${escapeHtml(label)}</div><div class="v" id="${escapeHtml(id)}">\u2026</div></div>`).join('\n')}
</section>
<h2>Members (<span id="member-count">0</span>)</h2>
<table>
<thead><tr><th>id</th><th>address</th><th>role</th><th class="num">match index</th><th class="num">lag</th></tr></thead>
<tbody id="members"></tbody>
</table>
<p class="note" id="lag-note"></p>
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

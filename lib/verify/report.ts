// The verification report (issue 5, "Output"): a verdict, op counts by type and outcome, the
// anomalies with their minimal failing sub-histories, and a latency-over-time plot (SVG) with
// the fault windows shaded. No dependencies.
import { escapeHtml } from '../core/html.js';
import { describeOp, type FinalViolation, type HistoryResult, type KeyResult } from './checker.js';
import { CAS_CONFLICT, type FaultWindow, type Op, type OpType, type Outcome } from './history.js';

export type Verdict = 'PASS' | 'FAIL' | 'UNKNOWN';

export interface ReportInput {
  results: HistoryResult;
  ops: Op[];
  faults: FaultWindow[];
  /** Free-form facts about the run (seed, nodes, duration, workload, ...), shown as key=value. */
  meta?: Record<string, unknown>;
  /** Violations from checkFinal; any makes the verdict FAIL. */
  final?: FinalViolation[];
}

export interface ReportJson {
  verdict: Verdict;
  summary: string;
  meta: Record<string, unknown>;
  counts: Record<OpType | 'total', Record<Outcome | 'total', number>>;
  casConflicts: number;
  linearizability: {
    valid: true | false | 'unknown';
    opsChecked: number;
    statesExplored: number;
    elapsedMs: number;
    keys: Omit<KeyResult, 'anomaly'>[];
  };
  anomalies: { key: string; reason: string; minimalSubhistory: Op[] }[];
  final: FinalViolation[];
  faults: FaultWindow[];
}

const TYPES: OpType[] = ['read', 'write', 'cas', 'delete'];
const OUTCOMES: Outcome[] = ['ok', 'fail', 'info'];

export function verdictOf(results: HistoryResult, final: FinalViolation[] = []): Verdict {
  if (results.valid === false || final.length > 0) return 'FAIL';
  if (results.valid === 'unknown') return 'UNKNOWN';
  return 'PASS';
}

function countOps(ops: Op[]): { counts: ReportJson['counts']; casConflicts: number } {
  const row = () => ({ ok: 0, fail: 0, info: 0, total: 0 });
  const counts = { read: row(), write: row(), cas: row(), delete: row(), total: row() };
  let casConflicts = 0;
  for (const op of ops) {
    for (const r of [counts[op.type], counts.total]) {
      r[op.outcome]++;
      r.total++;
    }
    if (op.type === 'cas' && op.outcome === 'fail' && op.error === CAS_CONFLICT) casConflicts++;
  }
  return { counts, casConflicts };
}

/** Left-aligned text columns (numbers right-aligned). */
function table(rows: string[][], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const numeric = (s: string) => /^-?[\d.]+$/.test(s);
  return rows
    .map((r) =>
      (
        indent +
        r
          .map((cell, i) => (numeric(cell) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
          .join('  ')
      ).trimEnd(),
    )
    .join('\n');
}

function ms(t: number | null): string {
  return t === null ? '∞' : String(Math.round(t * 10) / 10);
}

/** The readable table of a sub-history: one op per line, in invoke order. */
export function formatOps(ops: Op[]): string {
  const rows = [['id', 'process', 'node', 'op', 'outcome', 'invoke ms', 'complete ms', 'error']];
  for (const op of [...ops].sort((a, b) => a.invokeMs - b.invokeMs || a.id - b.id)) {
    rows.push([
      String(op.id),
      String(op.process),
      op.node === undefined ? '' : String(op.node),
      describeOp(op),
      op.outcome,
      ms(op.invokeMs),
      ms(op.completeMs),
      op.error ?? '',
    ]);
  }
  return table(rows, '    ');
}

export function renderReport(input: ReportInput): { text: string; json: ReportJson } {
  const { results, ops, faults } = input;
  const meta = input.meta ?? {};
  const final = input.final ?? [];
  const verdict = verdictOf(results, final);
  const { counts, casConflicts } = countOps(ops);
  const invalid = results.keys.filter((k) => k.valid === false);
  const summary = summaryOf(input, invalid.length);
  const anomalies = invalid.map((k) => ({
    key: k.key,
    reason: k.anomaly?.reason ?? 'not linearizable',
    minimalSubhistory: k.anomaly?.minimalSubhistory ?? [],
  }));

  const lines: string[] = [];
  lines.push(`VERDICT: ${verdict} — ${summary}`);
  const metaLine = Object.entries(meta)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  if (metaLine) lines.push(`run: ${metaLine}`);
  lines.push(
    `checked ${results.opsChecked} of ${ops.length} ops on ${results.keys.length} keys in ${results.elapsedMs} ms (${results.statesExplored} search states)`,
  );
  lines.push('', 'ops by type and outcome', ...countLines(counts, casConflicts));
  lines.push('', 'keys', keyTable(results));
  lines.push('', faults.length ? 'faults' : 'faults: none');
  if (faults.length) {
    lines.push(
      table(faults.map((f) => [f.kind, `${ms(f.startMs)}–${ms(f.endMs)} ms`, f.detail ?? ''])),
    );
  }
  if (anomalies.length) {
    lines.push('', 'anomalies');
    for (const a of anomalies) {
      lines.push(`  key ${JSON.stringify(a.key)}: ${a.reason}`);
      lines.push(`  minimal failing sub-history (${a.minimalSubhistory.length} ops):`);
      lines.push(formatOps(a.minimalSubhistory));
    }
  }
  if (final.length) {
    lines.push('', 'after healing');
    for (const v of final) lines.push(`  ${v.kind}: ${v.message}`);
  }
  const json: ReportJson = {
    verdict,
    summary,
    meta,
    counts,
    casConflicts,
    linearizability: linearizabilityJson(results),
    anomalies,
    final,
    faults,
  };
  return { text: lines.join('\n') + '\n', json };
}

/** The verdict's one-line reason: what failed or stayed undecided, else what was established. */
function summaryOf({ results, final }: ReportInput, invalid: number): string {
  const keys = results.keys.length;
  const unknown = results.keys.filter((k) => k.valid === 'unknown').length;
  const violations = final?.length ?? 0;
  const parts: string[] = [];
  if (invalid) parts.push(`${invalid} of ${keys} keys not linearizable`);
  if (unknown) parts.push(`${unknown} of ${keys} keys undecided (search budget exhausted)`);
  if (violations) parts.push(`${violations} final-state violation${violations === 1 ? '' : 's'}`);
  if (!parts.length && results.valid === 'unknown') parts.push('linearizability not established');
  if (!parts.length) {
    parts.push(
      `${keys} key${keys === 1 ? '' : 's'} linearizable, ` +
        (final === undefined
          ? 'final state not checked'
          : 'acknowledged writes visible, replicas equal'),
    );
  }
  return parts.join('; ');
}

function countLines(counts: ReportJson['counts'], casConflicts: number): string[] {
  const countRows = [['', ...OUTCOMES, 'total']];
  for (const t of [...TYPES, 'total'] as const) {
    const r = counts[t];
    countRows.push([t, String(r.ok), String(r.fail), String(r.info), String(r.total)]);
  }
  const lines = [table(countRows)];
  if (casConflicts)
    lines.push(`  (cas fail includes ${casConflicts} conflicts (409), checked as observations)`);
  return lines;
}

function keyTable(results: HistoryResult): string {
  const keyRows = [['key', 'linearizable', 'ops', 'states', 'ms', '']];
  for (const k of results.keys) {
    keyRows.push([
      JSON.stringify(k.key),
      k.valid === true ? 'yes' : k.valid === false ? 'NO' : 'unknown',
      String(k.opsChecked),
      String(k.statesExplored),
      String(k.elapsedMs),
      k.note ?? '',
    ]);
  }
  return table(keyRows);
}

function linearizabilityJson(results: HistoryResult): ReportJson['linearizability'] {
  return {
    valid: results.valid,
    opsChecked: results.opsChecked,
    statesExplored: results.statesExplored,
    elapsedMs: results.elapsedMs,
    keys: results.keys.map(({ key, valid, opsChecked, statesExplored, elapsedMs, note }) => ({
      key,
      valid,
      opsChecked,
      statesExplored,
      elapsedMs,
      ...(note ? { note } : {}),
    })),
  };
}

// ---- the latency plot ------------------------------------------------------------------------

const OUTCOME_COLOURS: Record<Outcome, string> = {
  ok: '#2b8a3e',
  fail: '#e67700',
  info: '#c92a2a',
};
const FAULT_COLOURS = ['#4263eb', '#ae3ec9', '#1098ad', '#f08c00', '#5c940d', '#e64980', '#868e96'];

function num(x: number): string {
  return String(Math.round(x * 10) / 10);
}

function niceStep(range: number, target: number): number {
  const raw = range / Math.max(1, target);
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

function formatLatency(msValue: number): string {
  if (msValue >= 1000) return `${msValue / 1000} s`;
  return `${msValue} ms`;
}

/** Where things go in the latency plot: its margins, its scales and the latency range shown. */
interface Plot {
  width: number;
  height: number;
  left: number;
  top: number;
  plotW: number;
  plotH: number;
  infoY: number;
  latBottom: number;
  lo: number;
  hi: number;
  tMax: number;
  x: (t: number) => number;
  y: (lat: number) => number;
}

/**
 * Latency over time: x = invoke time, y = latency on a log scale; one dot per op coloured by
 * outcome; info ops (no definite answer) in a strip along the top edge; fault windows shaded,
 * each labelled with its kind.
 */
export function renderLatencySvg(
  ops: Op[],
  faults: FaultWindow[],
  size: { width?: number; height?: number } = {},
): string {
  const p = plotOf(ops, faults, size.width ?? 960, size.height ?? 400);
  const { width, height } = p;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<title>Latency over time</title>`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  faultsSvg(out, faults, p);
  axesSvg(out, p);
  dotsSvg(out, ops, p);
  out.push('<g class="legend">');
  let lx = p.left + p.plotW - 150;
  for (const outcome of OUTCOMES) {
    out.push(`<circle cx="${lx}" cy="12" r="4" fill="${OUTCOME_COLOURS[outcome]}"/>`);
    out.push(`<text x="${lx + 7}" y="16" fill="#495057">${outcome}</text>`);
    lx += 50;
  }
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function plotOf(ops: Op[], faults: FaultWindow[], width: number, height: number): Plot {
  const left = 64;
  const right = 16;
  const top = 40;
  const bottom = 44;
  const plotW = Math.max(10, width - left - right);
  const plotH = Math.max(10, height - top - bottom);
  const infoY = top + 6;
  const latTop = top + 16;
  const latBottom = top + plotH;

  let tMax = 0;
  for (const op of ops) tMax = Math.max(tMax, op.invokeMs, op.completeMs ?? 0);
  for (const f of faults) tMax = Math.max(tMax, f.endMs);
  if (!(tMax > 0)) tMax = 1;
  const x = (t: number) => left + (Math.min(Math.max(t, 0), tMax) / tMax) * plotW;

  const latencies = ops
    .filter((o) => o.outcome !== 'info' && o.completeMs !== null)
    .map((o) => Math.max(0.1, (o.completeMs as number) - o.invokeMs));
  let lo = 1;
  let hi = 1000;
  if (latencies.length) {
    lo = 10 ** Math.floor(Math.log10(Math.min(...latencies)));
    hi = 10 ** Math.ceil(Math.log10(Math.max(...latencies)));
    if (hi <= lo) hi = lo * 10;
  }
  const y = (lat: number) => {
    const f = (Math.log10(Math.max(lat, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
    return latBottom - f * (latBottom - latTop);
  };
  return { width, height, left, top, plotW, plotH, infoY, latBottom, lo, hi, tMax, x, y };
}

/** Fault windows, shaded, each labelled with its kind. */
function faultsSvg(out: string[], faults: FaultWindow[], { x, top, plotH }: Plot): void {
  const kinds = [...new Set(faults.map((f) => f.kind))];
  const colourOf = (kind: string) => FAULT_COLOURS[kinds.indexOf(kind) % FAULT_COLOURS.length]!;
  out.push('<g class="faults">');
  // Labels go in up to three rows above the plot, each in the first row where it does not
  // overlap the previous label (about 6.5 px per character at font-size 11).
  const rowEnds = [-Infinity, -Infinity, -Infinity];
  for (const f of [...faults].sort((a, b) => a.startMs - b.startMs)) {
    const x0 = x(f.startMs);
    const w = Math.max(1, x(f.endMs) - x0);
    const label = f.detail ? `${f.kind}: ${f.detail}` : f.kind;
    out.push(
      `<rect class="fault" data-kind="${escapeHtml(f.kind)}" x="${num(x0)}" y="${top}" width="${num(w)}" height="${plotH}" fill="${colourOf(f.kind)}" fill-opacity="0.15"><title>${escapeHtml(label)} (${ms(f.startMs)}–${ms(f.endMs)} ms)</title></rect>`,
    );
    let row = rowEnds.findIndex((end) => end < x0);
    if (row < 0) row = rowEnds.indexOf(Math.min(...rowEnds));
    rowEnds[row] = x0 + 2 + f.kind.length * 6.5 + 4;
    out.push(
      `<text class="fault-label" x="${num(x0 + 2)}" y="${top - 4 - row * 11}" fill="${colourOf(f.kind)}">${escapeHtml(f.kind)}</text>`,
    );
  }
  out.push('</g>');
}

/** Axes, the grid at each power of ten, and the tick and axis labels. */
function axesSvg(out: string[], p: Plot): void {
  const { left, top, plotW, plotH, latBottom, lo, hi, x, y } = p;
  out.push('<g class="axes" stroke="#ced4da" stroke-width="1">');
  out.push(
    `<line x1="${left}" y1="${latBottom}" x2="${left + plotW}" y2="${latBottom}" stroke="#495057"/>`,
  );
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${latBottom}" stroke="#495057"/>`);
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    out.push(
      `<line x1="${left}" y1="${num(y(d))}" x2="${left + plotW}" y2="${num(y(d))}" stroke-dasharray="2,3"/>`,
    );
  }
  out.push('</g>');
  out.push('<g class="labels" fill="#495057">');
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    out.push(
      `<text x="${left - 6}" y="${num(y(d) + 4)}" text-anchor="end">${escapeHtml(formatLatency(Number(d.toPrecision(1))))}</text>`,
    );
  }
  out.push(`<text x="${left - 6}" y="${p.infoY + 4}" text-anchor="end">info</text>`);
  const step = niceStep(p.tMax, 8);
  for (let t = 0; t <= p.tMax + 1e-9; t += step) {
    out.push(
      `<text x="${num(x(t))}" y="${latBottom + 16}" text-anchor="middle">${escapeHtml(String(Number((t / 1000).toPrecision(6))))}</text>`,
    );
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${p.height - 8}" text-anchor="middle">time since start (s)</text>`,
  );
  out.push(
    `<text transform="translate(14 ${num(top + plotH / 2)}) rotate(-90)" text-anchor="middle">latency (log scale)</text>`,
  );
  out.push('</g>');
}

/** One dot per op, grouped by outcome; info ops along the top strip. */
function dotsSvg(out: string[], ops: Op[], { x, y, infoY }: Plot): void {
  for (const outcome of OUTCOMES) {
    out.push(`<g class="ops-${outcome}" fill="${OUTCOME_COLOURS[outcome]}" fill-opacity="0.7">`);
    for (const op of ops) {
      if (op.outcome !== outcome) continue;
      const cy =
        outcome === 'info' || op.completeMs === null
          ? infoY
          : y(Math.max(0.1, op.completeMs - op.invokeMs));
      out.push(`<circle cx="${num(x(op.invokeMs))}" cy="${num(cy)}" r="2"/>`);
    }
    out.push('</g>');
  }
}

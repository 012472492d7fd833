// Helpers shared by bench/raft.js and bench/store.js: option parsing, statistics, number
// formatting, polling, and the fdatasync anchor both print their numbers against.
import {
  closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);

// `--name=value` gives 'value', a bare `--name` gives true, absent gives undefined.
export function arg(name) {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (!hit) return undefined;
  return hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : true;
}

export const quick = Boolean(arg('quick')) || process.env.BENCH_QUICK === '1';
// Setups or sections to leave out, from --skip=a,b.
export const skip = new Set(String(arg('skip') ?? '').split(',').filter(Boolean));

// The in-flight levels from --concurrency=1,16,... (or `fallback`), invalid entries dropped.
export function concurrencyArg(fallback) {
  return String(arg('concurrency') ?? fallback)
    .split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
}

// ---------------------------------------------------------------- helpers
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Progress goes to stderr so that stdout holds only the report.
export function progress(msg) {
  process.stderr.write(`  ${msg}\n`);
}

// Polls probe() until it returns something truthy, and returns that; a throw counts as
// not yet. pollMs is the step between tries: keep it small where the wait is timed.
export async function waitFor(what, probe, { timeoutMs = 15_000, pollMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) { lastError = err; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`, { cause: lastError });
    await sleep(pollMs);
  }
}

// Runs a bench's main(): a failure is printed and sets exit code 1; cleanup() runs either way.
export async function run(main, cleanup = () => {}) {
  try {
    await main();
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    cleanup();
  }
}

// ---------------------------------------------------------------- statistics
// Nearest-rank percentile of an ascending array (q in [0, 1]).
export function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// Latencies (ms) observed over elapsedMs: count, rate, p50, p99, max and failures.
export function summarize(latencies, elapsedMs, failed = 0) {
  const sorted = Float64Array.from(latencies).sort();
  return {
    ops: latencies.length,
    opsPerSec: latencies.length / (elapsedMs / 1000),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
    failed,
  };
}

// ---------------------------------------------------------------- report formatting
export const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
export const fmtMs = (x) => (Number.isFinite(x) ? (x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1)) : '-');
export const fmtRatio = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : '-');

// ---------------------------------------------------------------- anchor: fdatasync
// The disk's floor, measured in the same run: one 4 KiB write + fdatasync at a time, in a
// scratch file under `parent`, for warmupMs unrecorded and then for ms. prepare(fd, block)
// runs once first; writeOne(fd, block, pos) does one write and returns the next position.
// With a label, says "<label> done" on stderr at the end.
export function fsyncLoop({ parent, ms, warmupMs, label }, prepare, writeOne) {
  const dir = mkdtempSync(join(parent, 'fsync-'));
  const fd = openSync(join(dir, 'data'), 'w+');
  const block = Buffer.alloc(4096, 0xab);
  try {
    prepare(fd, block);
    const warmEnd = performance.now() + warmupMs;
    let pos = 0;
    while (performance.now() < warmEnd) pos = writeOne(fd, block, pos);
    const latencies = [];
    const started = performance.now();
    const end = started + ms;
    let now = started;
    while (now < end) {
      pos = writeOne(fd, block, pos);
      const after = performance.now();
      latencies.push(after - now);
      now = after;
    }
    return summarize(latencies, now - started);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
    if (label) progress(`${label} done`);
  }
}

// The anchor the benches quote: appending, so the file grows (as a log does).
export function fsyncAppend(options) {
  return fsyncLoop(options, () => {}, (fd, block, pos) => {
    writeSync(fd, block, 0, block.length, pos);
    fdatasyncSync(fd);
    return pos + block.length;
  });
}

// Helpers shared by the bench scripts: option parsing, statistics, number formatting,
// polling, closed-loop load, fixture and other child processes, an HTTP client, and the
// fdatasync anchor the benches print their numbers against.
import { fork } from 'node:child_process';
import {
  closeSync,
  fdatasyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { request } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as http2Connect, constants as http2 } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { tcpForTls } from '../dist/core/tls-tcp.js';

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);

// `--name=value` and `--name value` give 'value', a bare `--name` gives true, absent gives undefined.
export function arg(name) {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const hit = argv[i];
  if (hit.includes('=')) return hit.slice(hit.indexOf('=') + 1);
  const next = argv[i + 1];
  return next !== undefined && !next.startsWith('--') ? next : true;
}

export const quick = Boolean(arg('quick')) || process.env.BENCH_QUICK === '1';
// Setups or sections to leave out, from --skip=a,b.
export const skip = new Set(
  String(arg('skip') ?? '')
    .split(',')
    .filter(Boolean),
);

// The in-flight levels from --concurrency=1,16,... (or `fallback`), invalid entries dropped.
export function concurrencyArg(fallback) {
  return String(arg('concurrency') ?? fallback)
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
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
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}`, { cause: lastError });
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

// Free TCP ports on 127.0.0.1 (bound once by the OS, then released).
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

// Closed-loop load: `concurrency` loops, each running op(makeArg()) back to back for ms;
// only op is timed. Returns summarize() of the latencies, with failures counted.
export async function closedLoop(concurrency, ms, makeArg, op) {
  const latencies = [];
  let failed = 0;
  const started = performance.now();
  const deadline = started + ms;
  async function worker() {
    while (performance.now() < deadline) {
      const a = makeArg();
      const t0 = performance.now();
      try {
        await op(a);
        latencies.push(performance.now() - t0);
      } catch {
        failed++;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summarize(latencies, performance.now() - started, failed);
}

// ---------------------------------------------------------------- fixture child processes
const fixture = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'test',
  'fixtures',
  'node-process.mjs',
);
const children = new Set(); // ChildProcess objects still to be killed

// kill -9 by pid every fixture child still running (benches need no clean close).
export function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    children.delete(child);
  }
}

// A RaftNode in a child process (test/fixtures/node-process.mjs), driven over IPC.
// Another script speaking the same protocol ({ id, cmd, args } in, { id, result | error }
// or { event } out, { event: 'ready' } once) can stand in: `script` with `args` before the
// JSON spec, `execArgv` for node's own flags, `env` added to this process's environment;
// onEvent(msg) sees every other event.
export class Child {
  constructor(spec, options, { script = fixture, args = [], execArgv, env, onEvent } = {}) {
    this.spec = spec;
    this.next = 1;
    this.pending = new Map();
    this.child = fork(script, [...args, JSON.stringify({ ...spec, ...options })], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      ...(execArgv ? { execArgv } : {}),
      ...(env ? { env: { ...process.env, ...env } } : {}),
    });
    children.add(this.child);
    this.exited = new Promise((r) => this.child.once('exit', r));
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (msg) => {
        if (msg.event) {
          if (msg.event === 'ready') resolve(msg);
          else onEvent?.(msg);
          return;
        }
        const w = this.pending.get(msg.id);
        if (!w) return;
        this.pending.delete(msg.id);
        if (msg.error) w.reject(Object.assign(new Error(msg.error.message), msg.error));
        else w.resolve(msg.result);
      });
      this.child.once('exit', (code, signal) => {
        const err = new Error(`node ${spec.id} exited (${code ?? signal})`);
        reject(err);
        for (const w of this.pending.values()) w.reject(err);
        this.pending.clear();
      });
    });
    this.ready.catch(() => {});
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  call(cmd, args, timeoutMs = 60_000) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      if (!this.child.connected) {
        reject(new Error(`node ${this.spec.id} is not running`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`node ${this.spec.id}: ${cmd} timed out`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, cmd, args });
    });
  }

  // kill -9 by pid, then wait (bounded) for the exit.
  async kill() {
    if (this.running) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await Promise.race([this.exited, sleep(5000)]);
    children.delete(this.child);
  }
}

// Registers a child process the bench started itself (spawn, execFile) so that
// killChildren() kills it too. Returns the child.
export function trackChild(child) {
  children.add(child);
  return child;
}

// kill -9 a tracked child by pid, then wait (bounded) for its exit.
export async function killChild(child, timeoutMs = 5000) {
  const exited = new Promise((r) => child.once('exit', r));
  if (child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await Promise.race([exited, sleep(timeoutMs)]);
  }
  children.delete(child);
}

// CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat (Linux;
// NaN elsewhere or once the process is gone). Clock ticks are taken as 100 per second.
// A reader of this process's main thread's time on a CPU and waiting for one (run queue),
// in ms, from the scheduler (Linux schedstat, which counts ns; zeros elsewhere): a stall's
// on-CPU part is the process's own work (JS, GC, native), its run-queue part is the machine
// not giving it a CPU, the rest is blocking.
export function mainThreadSched() {
  let fd = -1;
  try {
    fd = openSync(`/proc/self/task/${process.pid}/schedstat`, 'r');
  } catch {
    /* not Linux */
  }
  const buf = Buffer.alloc(128);
  return () => {
    if (fd < 0) return [0, 0];
    const n = readSync(fd, buf, 0, 128, 0);
    const [run, wait] = buf.latin1Slice(0, n).split(' ');
    return [Number(run) / 1e6, Number(wait) / 1e6];
  };
}

export function processCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime (14) + stime (15)
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------- HTTP client
// One HTTP/1.1 request through `agent` (give a keep-alive http.Agent to reuse connections;
// an https.Agent, made with the cluster's `ca`, makes it an HTTPS request).
// Resolves { status, body } (body as a string) whatever the status; rejects on a network
// error, or when no full answer came within timeoutMs (the request is then destroyed).
export function httpRequest(
  agent,
  { host, port, method = 'GET', path, headers = {}, body, timeoutMs = 10_000 },
) {
  if (agent instanceof Http2Agent) {
    return agent.request({ host, port, method, path, headers, body, timeoutMs });
  }
  return new Promise((resolve, reject) => {
    const allHeaders =
      body === undefined ? headers : { 'content-length': Buffer.byteLength(body), ...headers };
    const send = agent instanceof HttpsAgent ? httpsRequest : request;
    const req = send({ agent, host, port, method, path, headers: allHeaders }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.once('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() });
      });
      res.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}

// HTTP/2 over TLS (ALPN h2): one session per host:port, made on first use and again after it
// closes, every request a stream on it. Takes the place of an https.Agent in httpRequest().
export class Http2Agent {
  #sessions = new Map();
  constructor({ ca }) {
    this.ca = ca;
  }

  #session(host, port) {
    const key = `${host}:${port}`;
    let session = this.#sessions.get(key);
    if (!session || session.closed || session.destroyed) {
      // Nagle off, as for every TLS connection prevail makes (lib/core/tls-tcp.ts).
      const socket = () =>
        tlsConnect({ socket: tcpForTls(host, port), host, ca: this.ca, ALPNProtocols: ['h2'] });
      session = http2Connect(`https://${host}:${port}`, { createConnection: socket });
      session.on('error', () => {}); // each stream reports its own failure
      session.once(
        'close',
        () => this.#sessions.get(key) === session && this.#sessions.delete(key),
      );
      this.#sessions.set(key, session);
    }
    return session;
  }

  request({ host, port, method, path, headers, body, timeoutMs }) {
    return new Promise((resolve, reject) => {
      const allHeaders = { ':method': method, ':path': path, ...headers };
      if (body !== undefined) allHeaders['content-length'] = Buffer.byteLength(body);
      let stream;
      try {
        stream = this.#session(host, port).request(allHeaders);
      } catch (err) {
        reject(err);
        return;
      }
      const timer = setTimeout(() => stream.close(http2.NGHTTP2_CANCEL), timeoutMs);
      let status = 0;
      const chunks = [];
      stream.once('response', (h) => (status = h[':status']));
      stream.on('data', (c) => chunks.push(c));
      stream.once('end', () => {
        clearTimeout(timer);
        resolve({ status, body: Buffer.concat(chunks).toString() });
      });
      stream.once('close', () => {
        clearTimeout(timer);
        if (!stream.readableEnded)
          reject(new Error(`${method} ${path}: stream closed (${stream.rstCode})`));
      });
      stream.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.end(body);
    });
  }

  destroy() {
    for (const s of this.#sessions.values()) s.destroy();
    this.#sessions.clear();
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

// Rows of repeated runs merged into one row per key(row): the median of each numeric field
// (rates, percentiles, CPU), failures summed, `repeats` = how many runs. The first row's
// other fields (labels) are kept. Medians, because the machine is shared and noisy.
export function medianRows(rows, key) {
  const groups = new Map();
  for (const r of rows) {
    const k = key(r);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups.values()].map((list) => {
    const merged = { ...list[0], repeats: list.length };
    for (const [field, v] of Object.entries(list[0])) {
      if (typeof v !== 'number') continue;
      const sorted = list.map((r) => r[field]).sort((a, b) => a - b);
      merged[field] = field === 'failed' ? sorted.reduce((a, b) => a + b, 0) : medianOf(sorted);
    }
    return merged;
  });
}

/** The median of numbers sorted ascending. */
export const medianOf = (sorted) =>
  sorted.length % 2
    ? sorted[(sorted.length - 1) / 2]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;

// ---------------------------------------------------------------- certificates
// A CA and member certificates for ids (urn:prevail:node:<id>, valid for 127.0.0.1), made by
// the library's own `prevail certs` code (dist/) and written as `prevail certs` names them
// (ca.pem, node-<id>.pem, node-<id>-key.pem) in dir. Returns the CA's PEM and a function
// giving member id's { caFile, certFile, keyFile }.
export async function writeBenchCerts(dir, ids) {
  const { createCa, createNodeCert, writeCertFiles } = await import('../dist/index.js');
  const ca = await createCa({ name: 'prevail bench CA', days: 2 });
  const caFile = writeCertFiles(dir, 'ca', ca).cert;
  const files = new Map();
  for (const id of ids) {
    const { cert, key } = writeCertFiles(
      dir,
      `node-${id}`,
      await createNodeCert(ca, { id, days: 2 }),
    );
    files.set(id, { caFile, certFile: cert, keyFile: key });
  }
  return { ca: ca.cert, files: (id) => files.get(id) };
}

// ---------------------------------------------------------------- report formatting
export const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
export const fmtMs = (x) =>
  Number.isFinite(x) ? (x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1)) : '-';
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
  return fsyncLoop(
    options,
    () => {},
    (fd, block, pos) => {
      writeSync(fd, block, 0, block.length, pos);
      fdatasyncSync(fd);
      return pos + block.length;
    },
  );
}

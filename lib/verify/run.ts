#!/usr/bin/env node
// The Jepsen-style harness (issue 5): `npm run verify -- [options]` (node dist/verify/run.js).
//
// Starts 3 or 5 `prevail serve` nodes on this machine (each in its own network namespace when
// running as root with `ip netns`, else on 127.0.0.1), runs concurrent clients doing a register
// workload (linearizable reads, writes, compare-and-set) on a few keys while nemeses kill, pause,
// partition, remove/re-add nodes and force snapshots on a seeded schedule; then heals everything,
// waits for the replicas to converge, reads every key from every node, and checks the history
// (lib/verify/checker.ts) and the final state. Writes history.json, report.txt/json and
// latency.svg per schedule under --out. Exit status 0 only when every schedule PASSes.
//
// Bounded: every wait has a deadline, the whole run a hard one; every child is killed by pid
// and the namespaces deleted in `finally`, on SIGINT/SIGTERM and on exit.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { ErrorCodes } from '../core/errors.js';
import { checkFinal, checkHistory, type FinalViolation, type HistoryResult } from './checker.js';
import type { FaultWindow, Op } from './history.js';
import { request, sleep, VerifyCluster } from './cluster.js';
import { Nemesis, NEMESES, type NemesisName } from './nemesis.js';
import { NetnsNetwork, netnsAvailable } from './netns.js';
import { renderLatencySvg, renderReport, type Verdict } from './report.js';
import { Rng } from './rng.js';
import { keyName, LoadGenerator, Workload } from './workload.js';

const USAGE = `usage: npm run verify -- [options]   (node dist/verify/run.js [options])

  --nodes 3|5            cluster size (default 3)
  --duration 60s         workload + nemesis time per schedule (ms, s or m; default 60s)
  --schedules N          run N schedules, seeds seed, seed+1, ... (default 1)
  --seed N               first seed (default: from the clock; printed)
  --nemesis LIST         kill,pause,partition,membership,snapshot,restart (default: all
                         available; "none" for a fault-free run)
  --clients N            concurrent clients (default 10)
  --keys N               keys (default 5)
  --rate N               target ops/s over all clients (default 100)
  --timeout A-B          per-client request timeout range in ms (default 1000-2000)
  --election-timeout MS  passed to every node (default 200, the serve default)
  --heartbeat MS         passed to every node (default 40)
  --snapshot-threshold N passed to every node (default 1024: small, so that snapshots, and
                         followers catching up from one, happen all the time; 0 = the
                         node's own default, 8192)
  --snapshot-trailing N  passed to every node (default 256; 0 = the node's own, 2048)
  --load N               filler writers the restart nemesis runs while it restarts a
                         follower (default 16; 0 = the workload alone)
  --out DIR              where history.json, report.txt/json, latency.svg and node logs go
                         (default verify-out/<seed>)
  --reads MODE           consistency of the workload's reads: linearizable (default); lease
                         or stale for their own runs (stale reads are expected to FAIL: it
                         shows the checker catches them)
  --no-netns             run on 127.0.0.1 even when namespaces are available (no partitions)
  --insecure             run the nodes with --insecure (plain TCP between members, plain
                         HTTP) instead of the default: mutual TLS between members (a CA and
                         certificates made in the run dir) and HTTPS with a client certificate
  --keep                 keep the nodes' data dirs
  --ci                   the short schedule for CI (3 nodes, 1 × 90 s, all nemeses; ~95 s in all)
`;

interface Options {
  nodes: number;
  durationMs: number;
  schedules: number;
  seed: number;
  nemesis: Set<NemesisName>;
  clients: number;
  keys: number;
  rate: number;
  timeoutMs: [number, number];
  electionTimeoutMs: number;
  heartbeatMs: number;
  snapshotThreshold: number;
  snapshotTrailing: number;
  load: number;
  out: string;
  netns: boolean;
  insecure: boolean;
  keep: boolean;
  ci: boolean;
  reads: 'linearizable' | 'lease' | 'stale';
}

function duration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(value)} (e.g. 60s, 2m, 1500ms)`);
  const n = Number(m[1]);
  return Math.round(m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000);
}

function positive(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

const ARGS = {
  nodes: { type: 'string' },
  duration: { type: 'string' },
  schedules: { type: 'string' },
  seed: { type: 'string' },
  nemesis: { type: 'string' },
  clients: { type: 'string' },
  keys: { type: 'string' },
  rate: { type: 'string' },
  timeout: { type: 'string' },
  'election-timeout': { type: 'string' },
  heartbeat: { type: 'string' },
  'snapshot-threshold': { type: 'string' },
  'snapshot-trailing': { type: 'string' },
  load: { type: 'string' },
  out: { type: 'string' },
  reads: { type: 'string' },
  'no-netns': { type: 'boolean' },
  insecure: { type: 'boolean' },
  keep: { type: 'boolean' },
  ci: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: ARGS,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const ci = !!values.ci;
  const nodes = values.nodes ? positive('--nodes', values.nodes) : 3;
  if (nodes !== 3 && nodes !== 5) throw new Error('--nodes must be 3 or 5');
  const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error('--seed must be a non-negative integer');
  const nemesis = parseNemeses(values.nemesis);
  const timeoutMs = parseTimeout(values.timeout);
  const electionTimeoutMs = values['election-timeout']
    ? positive('--election-timeout', values['election-timeout'])
    : 200;
  const heartbeatMs = values.heartbeat ? positive('--heartbeat', values.heartbeat) : 40;
  if (heartbeatMs >= electionTimeoutMs)
    throw new Error('--heartbeat must be below --election-timeout');
  const snapshotThreshold = count('--snapshot-threshold', values['snapshot-threshold'], 1024);
  const snapshotTrailing = count('--snapshot-trailing', values['snapshot-trailing'], 256);
  const load = count('--load', values.load, 16);
  const reads = (values.reads ?? 'linearizable') as Options['reads'];
  if (!['linearizable', 'lease', 'stale'].includes(reads))
    throw new Error('--reads must be linearizable, lease or stale');
  return {
    reads,
    nodes,
    seed,
    nemesis,
    timeoutMs,
    electionTimeoutMs,
    heartbeatMs,
    ci,
    snapshotThreshold,
    snapshotTrailing,
    load,
    durationMs: values.duration ? duration(values.duration) : ci ? 90_000 : 60_000,
    schedules: values.schedules ? positive('--schedules', values.schedules) : 1,
    clients: values.clients ? positive('--clients', values.clients) : 10,
    keys: values.keys ? positive('--keys', values.keys) : 5,
    rate: values.rate ? positive('--rate', values.rate) : 100,
    out: resolve(values.out ?? join('verify-out', String(seed))),
    netns: !values['no-netns'],
    insecure: !!values.insecure,
    keep: !!values.keep,
  };
}

/** --nemesis LIST: all of them by default, none for "none". */
function parseNemeses(value: string | undefined): Set<NemesisName> {
  if (value === undefined) return new Set<NemesisName>(NEMESES);
  const list = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== 'none');
  for (const n of list)
    if (!(NEMESES as readonly string[]).includes(n))
      throw new Error(`unknown nemesis ${JSON.stringify(n)} (${NEMESES.join(', ')})`);
  return new Set(list as NemesisName[]);
}

/** --timeout MS or MIN-MAX. */
function parseTimeout(value: string | undefined): [number, number] {
  if (value === undefined) return [1000, 2000];
  const m = /^(\d+)(?:-(\d+))?$/.exec(value);
  if (!m) throw new Error('--timeout must be MS or MIN-MAX');
  const timeoutMs: [number, number] = [Number(m[1]), Number(m[2] ?? m[1])];
  if (timeoutMs[0] <= 0 || timeoutMs[1] < timeoutMs[0]) throw new Error('--timeout: bad range');
  return timeoutMs;
}

/** A non-negative integer flag (0 allowed, unlike `positive`). */
function count(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n))
    throw new Error(`${flag} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

// ---- cleanup: whatever happens, children die and namespaces go --------------------------

const cleanups: (() => Promise<void>)[] = [];
const syncCleanups: (() => void)[] = [];

async function cleanupAll(): Promise<void> {
  while (cleanups.length) {
    const c = cleanups.pop()!;
    try {
      await c();
    } catch (err) {
      console.error(`verify: cleanup: ${(err as Error).message}`);
    }
  }
}

// Output piped into something that goes away (| head) must not kill the run before it cleans up.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`verify: ${sig}: cleaning up`);
    const force = setTimeout(() => process.exit(130), 20_000);
    force.unref();
    void cleanupAll().finally(() => process.exit(130));
  });
}
process.on('exit', () => {
  for (const c of syncCleanups) {
    try {
      c();
    } catch {
      /* best effort */
    }
  }
});

// ---- one schedule -------------------------------------------------------------------------

interface ScheduleResult {
  seed: number;
  verdict: Verdict;
  summary: string;
  lostWrites: number;
  ops: number;
  faults: Record<string, number>;
  dir: string;
  notes: string[];
}

function log(line: string): void {
  console.log(`verify: ${line}`);
}

/** One schedule's state, filled in phase by phase (and read by the report when a phase throws). */
interface Run {
  opts: Options;
  seed: number;
  dir: string;
  root: string;
  net: NetnsNetwork | null;
  clock: () => number;
  rng: Rng;
  notes: string[];
  nemesisSet: Set<NemesisName>;
  cluster: VerifyCluster;
  lines: string[];
  schedLog: (line: string) => void;
  meta: Record<string, unknown>;
  ops: Op[];
  faults: FaultWindow[];
  results: HistoryResult | null;
  final: FinalViolation[];
  error: string | null;
  nemesis: Nemesis | null;
}

async function runSchedule(
  opts: Options,
  index: number,
  net: NetnsNetwork | null,
  netNote: string | null,
): Promise<ScheduleResult> {
  const run = setUpSchedule(opts, index, net, netNote);
  try {
    await startCluster(run);
    const workload = await runWorkload(run);
    await checkEnd(run, workload);
  } catch (err) {
    run.error = (err as Error).stack ?? String(err);
    run.schedLog(`error: ${run.error}`);
  } finally {
    const { cluster } = run;
    await cluster.killAll();
    // A node that died without the harness stopping it (an engine abort, a crash) fails the run,
    // even when the history checks out: it was restarted, but it should not have died.
    for (const crash of cluster.crashes) run.final.push({ kind: 'node-crash', message: crash });
    await cluster.net?.heal();
    if (!opts.keep) rmSync(run.root, { recursive: true, force: true });
    else run.notes.push(`data dirs kept in ${run.root}`);
  }
  return writeReport(run);
}

/** The schedule's dirs, notes and metadata, and its cluster (not started; killed on cleanup). */
function setUpSchedule(
  opts: Options,
  index: number,
  net: NetnsNetwork | null,
  netNote: string | null,
): Run {
  const seed = opts.seed + index;
  const dir = opts.schedules > 1 ? join(opts.out, `schedule-${index + 1}-seed-${seed}`) : opts.out;
  mkdirSync(dir, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'prevail-verify-'));
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  const notes: string[] = [];
  if (netNote) notes.push(netNote);
  const nemesisSet = new Set(opts.nemesis);
  if (!net && nemesisSet.delete('partition') && opts.nemesis.has('partition')) {
    notes.push('partition nemesis skipped: no network namespaces (needs root and `ip netns`)');
  }
  notes.push(
    `clock-jump nemesis not done: no way to skew one process's clock here without touching the machine's clock (no faketime/libfaketime); ${opts.reads === 'linearizable' ? 'reads in this run are linearizable only' : `reads in this run are ${opts.reads}`} — lease reads assume bounded clock drift and need their own run with clock faults`,
  );
  const cluster = new VerifyCluster({
    size: opts.nodes,
    root,
    logDir: join(dir, 'logs'),
    net,
    electionTimeoutMs: opts.electionTimeoutMs,
    heartbeatMs: opts.heartbeatMs,
    clock,
    insecure: opts.insecure,
    ...(opts.snapshotThreshold ? { snapshotThreshold: opts.snapshotThreshold } : {}),
    ...(opts.snapshotTrailing ? { snapshotTrailing: opts.snapshotTrailing } : {}),
  });
  cleanups.push(async () => {
    await cluster.killAll();
  });
  syncCleanups.push(() => cluster.killAllSync());
  const lines: string[] = [];
  const schedLog = (line: string) => {
    const l = `[${(clock() / 1000).toFixed(2)} s] ${line}`;
    lines.push(l);
    if (!opts.ci) log(l);
  };
  return {
    opts,
    seed,
    dir,
    root,
    net,
    clock,
    rng: new Rng(seed),
    notes,
    nemesisSet,
    cluster,
    lines,
    schedLog,
    meta: scheduleMeta(opts, seed, net, nemesisSet),
    ops: [],
    faults: [],
    results: null,
    final: [],
    error: null,
    nemesis: null,
  };
}

function scheduleMeta(
  opts: Options,
  seed: number,
  net: NetnsNetwork | null,
  nemesisSet: Set<NemesisName>,
): Record<string, unknown> {
  return {
    seed,
    nodes: opts.nodes,
    durationMs: opts.durationMs,
    clients: opts.clients,
    keys: opts.keys,
    rate: opts.rate,
    requestTimeoutMs: opts.timeoutMs.join('-'),
    electionTimeoutMs: opts.electionTimeoutMs,
    heartbeatMs: opts.heartbeatMs,
    snapshotThreshold: opts.snapshotThreshold || 'node default',
    snapshotTrailing: opts.snapshotTrailing || 'node default',
    network: net ? `namespaces ${net.subnet} (bridge ${net.bridge})` : 'loopback 127.0.0.1',
    security: opts.insecure
      ? 'insecure (plain TCP between members, plain HTTP)'
      : 'mutual TLS between members, HTTPS with a client certificate',
    nemeses: [...nemesisSet].join(',') || 'none',
    reads: opts.reads,
  };
}

/** Starts every node and waits for them to serve and for a leader. */
async function startCluster({ cluster, net, schedLog }: Run): Promise<void> {
  await cluster.init();
  for (const id of cluster.ids) cluster.spawn(id);
  await Promise.all(cluster.ids.map((id) => cluster.waitServing(id, 30_000)));
  if (net) {
    // `ip netns exec` execs the command: the pid we hold is node's own (checked, not assumed).
    for (const id of cluster.ids) {
      const comm = cluster.comm(id);
      if (comm !== 'node' && comm !== 'MainThread')
        throw new Error(`node ${id}: pid ${cluster.procs.get(id)!.pid} is ${comm}, not node`);
    }
  }
  const leader = await cluster.waitLeader(30_000);
  if (leader === null) throw new Error('no leader within 30 s of starting');
  schedLog(
    `cluster up: ${cluster.ids.map((id) => `${id}=${cluster.specs.get(id)!.http}`).join(' ')}; leader ${leader}`,
  );
}

/** The workload with the nemeses for the schedule's duration, then every fault healed. */
async function runWorkload(run: Run): Promise<Workload> {
  const { opts, cluster, rng, clock, nemesisSet, meta, notes } = run;
  const workload = new Workload({
    cluster,
    clients: opts.clients,
    keys: opts.keys,
    rate: opts.rate,
    timeoutMs: opts.timeoutMs,
    rng: rng.fork(1),
    clock,
    reads: opts.reads,
  });
  run.ops = workload.ops; // the same array: a run cut short by an error still reports what it recorded
  const load =
    nemesisSet.has('restart') && opts.load > 0
      ? new LoadGenerator(cluster, opts.load, rng.fork(3))
      : null;
  if (load) meta.load = `${opts.load} filler writers during restarts`;
  const nemesis = new Nemesis({
    cluster,
    rng: rng.fork(2),
    enabled: nemesisSet,
    electionTimeoutMs: opts.electionTimeoutMs,
    clock,
    log: run.schedLog,
    load,
  });
  run.nemesis = nemesis;
  cleanups.push(async () => {
    nemesis.stop();
    await cluster.net?.heal();
  });
  const end = clock() + opts.durationMs;
  const clients = workload.run(end);
  await nemesis.run(end);
  await clients;
  run.ops = workload.ops;
  run.schedLog(`workload done: ${run.ops.length} ops; healing`);
  await nemesis.healAll();
  run.faults = nemesis.faults.map((f) => ({
    ...f,
    endMs: Number.isFinite(f.endMs) ? f.endMs : clock(),
  }));
  notes.push(...nemesis.notes);
  meta.faults = Object.fromEntries(nemesis.counts);
  if (load)
    notes.push(
      `filler writes during restarts: ${load.acked} acknowledged, ${load.failed} failed or unanswered`,
    );
  return workload;
}

/** After healing: convergence, the final reads, the replicas compared, the history checked. */
async function checkEnd(run: Run, workload: Workload): Promise<void> {
  const { cluster, notes } = run;
  const converged1 = await converge(cluster, 60_000);
  if (!converged1.ok) notes.push(`convergence before the final reads: ${converged1.why}`);
  run.schedLog(`converged: ${converged1.ok ? 'yes' : converged1.why}`);
  const finalReads = await readFinalValues(run, workload);
  // Replicas: after the reads' barriers are applied everywhere, every node's appliedIndex and
  // every key's stale (local) value must be equal.
  const converged2 = await converge(cluster, 30_000);
  if (!converged2.ok) notes.push(`convergence after the final reads: ${converged2.why}`);
  const { replicas, replicaStates, applied } = await compareReplicas(run);
  run.meta.finalAppliedIndex = applied;
  run.results = checkHistory(run.ops, { timeoutMs: 30_000 });
  run.final = checkFinal(run.ops, finalReads, replicaStates);
  const indexes = new Set(Object.values(applied));
  if (indexes.size !== 1 || indexes.has(null)) {
    run.final.push({
      kind: 'replica-divergence',
      message: `appliedIndex differs after convergence: ${JSON.stringify(applied)}`,
      nodes: replicas,
    });
  }
  if (replicaStates.length < replicas.length) {
    // Not a proof of divergence, but the run can't claim the replicas are equal.
    run.error = `only ${replicaStates.length} of ${replicas.length} replicas could be compared`;
  }
  if (!converged2.ok) run.error ??= `no convergence: ${converged2.why}`;
}

/**
 * Final linearizable reads of every key from every node, appended to the history as ok reads
 * (the precise end-of-run check); returns the leader's answers as the final values.
 */
async function readFinalValues(run: Run, workload: Workload): Promise<Map<string, string | null>> {
  const { cluster, notes, opts } = run;
  const finalReads = new Map<string, string | null>();
  const finalLeader = await cluster.waitLeader(10_000);
  let finalProcess = workload.newProcess();
  for (const id of cluster.ids) {
    const process = finalProcess++;
    for (let k = 0; k < opts.keys; k++) {
      const key = keyName(k);
      const op = await finalRead(cluster, id, key, workload.newId(), process, run.clock);
      if (!op) {
        notes.push(`final read of ${key} on node ${id} got no answer (3 tries)`);
        continue;
      }
      run.ops.push(op);
      if (id === finalLeader) finalReads.set(key, op.value ?? null);
    }
  }
  if (finalLeader === null) notes.push('no leader for the final reads');
  return finalReads;
}

/**
 * Stale reads and appliedIndex of every replica, retried until all stand at the same index
 * before and after the reads (an entry may commit in between: the followers learn it with the
 * next heartbeat). Only members are replicas: a node left out of the configuration (a re-add
 * that failed) holds nothing by design, and is reported instead.
 */
async function compareReplicas({ cluster, notes, opts }: Run): Promise<{
  replicas: number[];
  replicaStates: { node: number; state: Map<string, string | null> }[];
  applied: Record<number, number | null>;
}> {
  const leaderNow = await cluster.waitLeader(10_000);
  const config =
    leaderNow === null
      ? null
      : ((await cluster.status(leaderNow))?.members as { id: number }[] | undefined);
  const replicas = config
    ? cluster.ids.filter((id) => config.some((m) => m.id === id))
    : cluster.ids;
  for (const id of cluster.ids)
    if (!replicas.includes(id))
      notes.push(`node ${id} is not a member at the end: left out of the replica comparison`);
  let replicaStates: { node: number; state: Map<string, string | null> }[] = [];
  let applied: Record<number, number | null> = {};
  for (let attempt = 0; attempt < 20; attempt++) {
    const before = await appliedIndexes(cluster, replicas);
    replicaStates = [];
    for (const id of replicas) {
      const state = await staleState(cluster, id, opts.keys);
      if (state) replicaStates.push({ node: id, state });
    }
    applied = await appliedIndexes(cluster, replicas);
    const same = new Set([...Object.values(before), ...Object.values(applied)]);
    if (same.size === 1 && !same.has(null) && replicaStates.length === replicas.length) break;
    await sleep(250);
  }
  for (const id of replicas) {
    if (!replicaStates.some((r) => r.node === id))
      notes.push(`node ${id}: stale reads incomplete, left out of the replica comparison`);
  }
  return { replicas, replicaStates, applied };
}

/** history.json, report.txt/json, latency.svg and nemesis.log in the schedule's dir. */
function writeReport(run: Run): ScheduleResult {
  const { dir, notes, meta, ops, final, error, clock } = run;
  // Cut short by an error: still check what was recorded (an op still in flight counts as info).
  let results = run.results;
  if (!results && ops.length > 0) results = checkHistory([...ops], { timeoutMs: 30_000 });
  if (!results)
    results = { valid: 'unknown', keys: [], opsChecked: 0, statesExplored: 0, elapsedMs: 0 };
  if (error) notes.push(`harness error: ${error.split('\n')[0]}`);
  let faults = run.faults;
  if (faults.length === 0 && run.nemesis) {
    const n: Nemesis = run.nemesis;
    faults = n.faults.map((f) => ({ ...f, endMs: Number.isFinite(f.endMs) ? f.endMs : clock() }));
    if (!notes.some((x) => n.notes.includes(x))) notes.push(...n.notes);
  }
  const { text, json } = renderReport({ results, ops, faults, meta, final });
  let verdict = json.verdict;
  // A run that could not finish its checks proves nothing.
  if (error && verdict === 'PASS') verdict = 'UNKNOWN';
  const lostWrites = final.filter((f) => f.kind === 'lost-write').length;
  const header =
    verdict !== json.verdict
      ? `VERDICT: ${verdict} (the checks passed, but: ${error!.split('\n')[0]})\n`
      : '';
  const fullText =
    header +
    text +
    (notes.length ? `\nnotes\n${notes.map((n) => `  - ${n}`).join('\n')}\n` : '') +
    `\nlost acknowledged writes: ${lostWrites}\n`;
  writeFileSync(join(dir, 'history.json'), JSON.stringify({ meta, notes, ops, faults }, null, 0));
  writeFileSync(join(dir, 'report.txt'), fullText);
  writeFileSync(
    join(dir, 'report.json'),
    JSON.stringify({ ...json, verdict, lostWrites, notes, error }, null, 2),
  );
  writeFileSync(join(dir, 'latency.svg'), renderLatencySvg(ops, faults));
  writeFileSync(join(dir, 'nemesis.log'), run.lines.join('\n') + '\n');
  return {
    seed: run.seed,
    verdict,
    summary: json.summary,
    lostWrites,
    ops: ops.length,
    faults: (meta.faults ?? {}) as Record<string, number>,
    dir,
    notes,
  };
}

/** Waits (bounded) until a leader lists every node as a voter and every node has applied its commit index. */
async function converge(
  cluster: VerifyCluster,
  timeoutMs: number,
): Promise<{ ok: true } | { ok: false; why: string }> {
  const deadline = Date.now() + timeoutMs;
  let why = 'no leader';
  while (Date.now() < deadline) {
    const leader = await cluster.leader();
    if (leader !== null) {
      const ls = await cluster.status(leader);
      const statuses = await Promise.all(cluster.ids.map((id) => cluster.status(id)));
      const voters = new Set(
        (ls?.members ?? [])
          .filter((m: { role: string }) => m.role === 'voter')
          .map((m: { id: number }) => m.id),
      );
      const missing = cluster.ids.filter((id) => !voters.has(id));
      const behind = statuses
        .map((s, i) => [cluster.ids[i]!, s] as const)
        .filter(([, s]) => !s || !ls || s.appliedIndex < ls.commitIndex);
      if (ls && missing.length === 0 && behind.length === 0) return { ok: true };
      why = missing.length
        ? `not voters: ${missing.join(',')}`
        : `behind leader ${leader}'s commit ${ls?.commitIndex}: ${behind.map(([id, s]) => `${id}@${s?.appliedIndex ?? 'down'}`).join(', ')}`;
    }
    await sleep(200);
  }
  return { ok: false, why: `after ${timeoutMs} ms: ${why}` };
}

async function appliedIndexes(
  cluster: VerifyCluster,
  ids: number[],
): Promise<Record<number, number | null>> {
  const out: Record<number, number | null> = {};
  for (const id of ids) out[id] = (await cluster.status(id, 3000))?.appliedIndex ?? null;
  return out;
}

/** Every key's local (stale) value on node id, or null when a read failed. */
async function staleState(
  cluster: VerifyCluster,
  id: number,
  keys: number,
): Promise<Map<string, string | null> | null> {
  const state = new Map<string, string | null>();
  for (let k = 0; k < keys; k++) {
    try {
      const a = await request(
        `${cluster.url(id)}/kv/${keyName(k)}?consistency=stale`,
        'GET',
        undefined,
        3000,
      );
      if (a.status === 200) state.set(keyName(k), a.body.value);
      else if (a.status === 404) state.set(keyName(k), null);
      else return null;
    } catch {
      return null;
    }
  }
  return state;
}

async function finalRead(
  cluster: VerifyCluster,
  id: number,
  key: string,
  opId: number,
  process: number,
  clock: () => number,
): Promise<Op | null> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const invokeMs = clock();
    try {
      const a = await request(
        `${cluster.url(id)}/kv/${key}?consistency=linearizable`,
        'GET',
        undefined,
        5000,
      );
      const completeMs = clock();
      const absent = a.status === 404 && a.body?.error?.code === ErrorCodes.NOT_FOUND;
      if (a.status === 200 || absent) {
        return {
          id: opId,
          process,
          type: 'read',
          key,
          value: absent ? null : a.body.value,
          invokeMs,
          completeMs,
          outcome: 'ok',
          node: id,
          index: a.body.index,
        };
      }
    } catch {
      /* retry */
    }
    await sleep(500);
  }
  return null;
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`verify: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!existsSync(new URL('../cli.js', import.meta.url))) {
    console.error('verify: dist/cli.js is missing; build first (npx tsc -p .)');
    return 2;
  }
  // The hard deadline: setup, per schedule the duration plus healing/convergence/checking, teardown.
  const hardMs = opts.schedules * (opts.durationMs + 150_000) + 60_000;
  const hard = setTimeout(() => {
    console.error(`verify: hard deadline (${hardMs} ms) passed: cleaning up and exiting`);
    void cleanupAll().finally(() => process.exit(3));
  }, hardMs);
  hard.unref();

  mkdirSync(opts.out, { recursive: true });
  let net: NetnsNetwork | null = null;
  let netNote: string | null = null;
  try {
    if (opts.netns) {
      const avail = await netnsAvailable();
      if (avail.ok) {
        net = await NetnsNetwork.create();
        if (net.swept.length) log(`swept what an earlier run left behind: ${net.swept.join(', ')}`);
        const n = net;
        cleanups.push(async () => {
          const problems = await n.destroy();
          for (const p of problems) console.error(`verify: netns cleanup: ${p}`);
        });
        syncCleanups.push(() => destroyNetnsSync(n));
      } else {
        netNote = `no network namespaces (${avail.reason}): nodes on 127.0.0.1`;
      }
    } else {
      netNote = 'network namespaces off (--no-netns): nodes on 127.0.0.1';
    }
    log(
      `seed ${opts.seed}, ${opts.schedules} × ${opts.durationMs / 1000} s, ${opts.nodes} nodes, nemeses ${[...opts.nemesis].join(',') || 'none'}, ` +
        `${net ? `namespaces ${net.subnet}` : 'loopback'}; output in ${opts.out}`,
    );
    if (netNote) log(netNote);
    const results: ScheduleResult[] = [];
    for (let i = 0; i < opts.schedules && !interrupted; i++) {
      const r = await runSchedule(opts, i, net, netNote);
      results.push(r);
      log(
        `schedule ${i + 1}/${opts.schedules} seed ${r.seed}: ${r.verdict} — ${r.summary}; ${r.ops} ops; lost writes ${r.lostWrites}; ` +
          `faults ${JSON.stringify(r.faults)}; report ${join(r.dir, 'report.txt')}`,
      );
    }
    const pass =
      results.length === opts.schedules &&
      results.every((r) => r.verdict === 'PASS' && r.lostWrites === 0);
    writeFileSync(
      join(opts.out, 'summary.json'),
      JSON.stringify({ pass, options: { ...opts, nemesis: [...opts.nemesis] }, results }, null, 2),
    );
    log(
      `${pass ? 'PASS' : 'FAIL'}: ${results.filter((r) => r.verdict === 'PASS').length}/${opts.schedules} schedules passed`,
    );
    return pass ? 0 : 1;
  } finally {
    await cleanupAll();
    clearTimeout(hard);
  }
}

function destroyNetnsSync(net: NetnsNetwork): void {
  for (const id of [...net.nodes.keys()]) {
    try {
      execFileSync('ip', ['netns', 'del', net.nsOf(id)], { timeout: 5000, stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  try {
    execFileSync('ip', ['link', 'del', net.bridge], { timeout: 5000, stdio: 'ignore' });
  } catch {
    /* gone */
  }
  rmSync(net.markerPath, { force: true });
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    console.error('verify: failed:', err);
    await cleanupAll();
    process.exit(1);
  },
);

#!/usr/bin/env node
// A 3-node cluster whose nodes run two different builds of prevail (scripts/build-rev.sh),
// to check that they interoperate: the wire (raft, forwarded writes), the entry and
// snapshot formats, and the data dir.
//
//   node scripts/mixed-cluster.mjs --old DIR --new DIR [--plain-only] [--keep]
//
// Each node is `prevail serve` from its build's dist/cli.js. The run:
//   phase 1, nodes old/old/new; phase 2, old/new/new (node 2 restarted on the new build over
//   its data dir); phase 3, old/new/old (node 3 restarted on the old build over a data dir
//   the new build wrote). In phases 1 and 2: writes through every node (followers forward
//   them to the leader, across builds), leadership moved to a node of each build (writes
//   again, and schedules: see below), and twice a follower stopped while the leader writes
//   past its snapshot, then restarted: it catches up by a snapshot from the leader of the
//   other build. In phase 3: writes through every node.
// Schedules: serve has no HTTP route for schedule()/unschedule(), so while a node of one build
// leads, a follower of the other build is run for a moment as scripts/mixed-cluster-scheduler.mjs
// (the same service from its own build's dist/, over its data dir): its schedule() and
// unschedule() are forwarded to the leader across builds, and the leader fires the schedule.
// At the end every node must hold every acknowledged write, all nodes the same `effects`
// hash at the same applied index, and no node's log a divergence alarm.
//
// Values include a lone surrogate (written as entry format 3) unless --plain-only: a build
// older than format 3 refuses such an entry, which this run reports as a failure.
// Exits 0 on PASS, 1 with the reason on any mismatch or crash, 2 on bad usage. Every child
// is killed by pid on every exit path; every wait is bounded; the run gives up after 5 min.
// Self-contained (only Node's own modules): it must keep working while lib/ is reorganised.
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const RUN_LIMIT_MS = 290_000;
const SNAPSHOT_THRESHOLD = 64;
const SNAPSHOT_TRAILING = 16;
/** The library's default, for a build whose serve has no --snapshot-trailing (before 4f6a8ee). */
const DEFAULT_TRAILING = 2048;
/** At most this many writes while a follower is down, for the leader to snapshot past it. */
const MAX_BEHIND_WRITES = 3 * DEFAULT_TRAILING;
/** Writes in flight while a follower is down. */
const BEHIND_CONCURRENCY = 8;
const LONE_SURROGATE = '\ud800';
const ELECTION_TIMEOUT_MS = 500;
const HEARTBEAT_MS = 100;
const SCHEDULER = join(dirname(fileURLToPath(import.meta.url)), 'mixed-cluster-scheduler.mjs');

const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Whether `promise` settles within `ms` (the timer is cleared either way, so it keeps nothing alive). */
async function within(promise, ms) {
  let timer;
  const late = new Promise((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
const say = (line) => console.log(`[${elapsed()} s] ${line}`);

class Mismatch extends Error {}

// ---- options ----------------------------------------------------------------------------
function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        old: { type: 'string' },
        new: { type: 'string' },
        'plain-only': { type: 'boolean' },
        keep: { type: 'boolean' },
      },
    }));
  } catch (err) {
    usage(err.message);
  }
  if (!values.old || !values.new) usage('--old and --new are required');
  const builds = {};
  for (const label of ['old', 'new']) {
    const dir = resolve(values[label]);
    const cli = join(dir, 'dist', 'cli.js');
    if (!existsSync(cli))
      usage(`--${label} ${dir} has no dist/cli.js (build it with scripts/build-rev.sh)`);
    const snapshotFlags = readFileSync(cli, 'utf8').includes('snapshot-trailing');
    // Builds from before issue 13 speak only plain TCP between members (and refuse the flag).
    const insecureFlag = existsSync(join(dir, 'dist', 'engine', 'member-transport.js'));
    builds[label] = {
      label,
      dir,
      cli,
      rev: buildRev(dir),
      snapshotFlags,
      insecureFlag,
      trailing: snapshotFlags ? SNAPSHOT_TRAILING : DEFAULT_TRAILING,
    };
  }
  return { builds, exotic: !values['plain-only'], keep: Boolean(values.keep) };
}

function usage(message) {
  console.error(
    `mixed-cluster: ${message}\nusage: node scripts/mixed-cluster.mjs --old DIR --new DIR [--plain-only] [--keep]`,
  );
  process.exit(2);
}

function buildRev(dir) {
  try {
    return readFileSync(join(dir, '.prevail-build-rev'), 'utf8').trim().slice(0, 7);
  } catch {
    return 'working tree';
  }
}

// ---- ports ------------------------------------------------------------------------------
// Below the ephemeral range, so that a node restarted on its port can't find it taken by an
// outgoing connection meanwhile (as test/helpers/cluster.ts does).
const handedOut = new Set();
function canBind(port) {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}
async function freePort() {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (!handedOut.has(port) && (await canBind(port))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port in 20000..32000');
}

// ---- HTTP -------------------------------------------------------------------------------
/** One request with a hard timeout; resolves { status, body } or rejects. */
async function call(node, method, path, body, timeoutMs = 5000) {
  const res = await fetch(`http://${node.http}${path}`, {
    method,
    signal: AbortSignal.timeout(timeoutMs),
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed };
}

/**
 * Retries a request through the same node while there is no leader or it is changing (bounded);
 * `settled(answer)` may end the retries early on an answer that already says what was wanted.
 */
async function callUntilDone(node, method, path, body, what, settled = () => false) {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    checkCrashes();
    try {
      const a = await call(node, method, path, body);
      if (a.status < 500 || settled(a)) return a;
      last = `${a.status} ${JSON.stringify(a.body).slice(0, 200)}`;
    } catch (err) {
      last = err.message;
    }
    await sleep(100);
  }
  throw new Mismatch(
    `${what} through node ${node.id} (${node.build.label}) failed for 20 s: ${last}`,
  );
}

// ---- nodes ------------------------------------------------------------------------------
const spawned = [];
const nodes = new Map();
let settings;

function logLine(node, line) {
  const fd = openSync(node.log, 'a');
  try {
    writeSync(fd, `--- [mixed-cluster ${elapsed()} s] ${line}\n`);
  } finally {
    closeSync(fd);
  }
}

function startNode(node, build) {
  node.build = build;
  const args = [
    build.cli,
    'serve',
    '--id',
    String(node.id),
    '--data',
    node.dataDir,
    '--raft',
    node.raft,
    '--http',
    node.http,
    '--channel',
    node.channel,
    '--cluster',
    settings.clusterFlag,
    '--election-timeout',
    String(ELECTION_TIMEOUT_MS),
    '--heartbeat',
    String(HEARTBEAT_MS),
    ...(build.insecureFlag ? ['--insecure'] : []),
    ...(build.snapshotFlags
      ? [
          '--snapshot-threshold',
          String(SNAPSHOT_THRESHOLD),
          '--snapshot-trailing',
          String(SNAPSHOT_TRAILING),
        ]
      : []),
  ];
  logLine(node, `start on the ${build.label} build (${build.rev}): node ${args.join(' ')}`);
  const fd = openSync(node.log, 'a');
  try {
    node.proc = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], cwd: build.dir });
  } finally {
    closeSync(fd);
  }
  const proc = node.proc;
  spawned.push(proc);
  node.expectExit = false;
  proc.on('error', () => {
    /* shows as an exit */
  });
  proc.once('exit', (code, signal) => {
    logLine(node, `pid ${proc.pid} exited (${code ?? signal})`);
    if (!node.expectExit || (code !== 0 && code !== null)) {
      node.crash ??= `node ${node.id} (${build.label} build, pid ${proc.pid}) exited with ${code ?? signal}: ${lastProblem(node.log)}`;
    }
  });
}

const alive = (proc) => proc && proc.exitCode === null && proc.signalCode === null;

function checkCrashes() {
  for (const node of nodes.values()) if (node.crash) throw new Mismatch(node.crash);
}

/** The last lines of a node's log that say why it stopped. */
function lastProblem(log) {
  const lines = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => /PREVAIL_|Error|Assertion|Abort|Segmentation|stopped/.test(l));
  return lines.slice(-3).join(' | ').slice(0, 600) || `(see ${log})`;
}

async function waitServing(node) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    checkCrashes();
    try {
      if ((await call(node, 'GET', '/status', undefined, 1000)).status === 200) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Mismatch(
    `node ${node.id} (${node.build.label} build) did not serve HTTP within 30 s (log ${node.log})`,
  );
}

/** SIGTERM (serve hands leadership over, closes and exits 0), bounded. */
async function stopNode(node) {
  const proc = node.proc;
  if (!alive(proc)) return;
  node.expectExit = true;
  logLine(node, `SIGTERM ${proc.pid}`);
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  if (!(await within(exited, 40_000)))
    throw new Mismatch(`node ${node.id} did not exit within 40 s of SIGTERM`);
  checkCrashes();
}

function killAll() {
  for (const proc of spawned)
    if (alive(proc)) {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
}

/** killAll, then waits (bounded) until every child has exited. */
async function killAllAndWait() {
  const exits = spawned.filter(alive).map((proc) => new Promise((r) => proc.once('exit', r)));
  killAll();
  await within(Promise.all(exits), 10_000);
}

async function restartOn(node, build) {
  await stopNode(node);
  startNode(node, build);
  await waitServing(node);
}

async function status(node) {
  try {
    const a = await call(node, 'GET', '/status', undefined, 2000);
    return a.status === 200 ? a.body : null;
  } catch {
    return null;
  }
}

async function waitLeader(what, accept = () => true) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    checkCrashes();
    for (const node of nodes.values()) {
      const s = alive(node.proc) ? await status(node) : null;
      if (s?.role === 'leader' && accept(node)) return node;
    }
    await sleep(100);
  }
  throw new Mismatch(`no leader (${what}) within 30 s`);
}

// ---- the checks -------------------------------------------------------------------------
/** key → value of every acknowledged write. */
const expected = new Map();
let writes = 0;

async function put(node, key, value) {
  const a = await callUntilDone(node, 'PUT', `/kv/${encodeURIComponent(key)}`, value, `PUT ${key}`);
  if (a.status !== 200)
    throw new Mismatch(
      `PUT ${key} through node ${node.id} (${node.build.label}): ${a.status} ${JSON.stringify(a.body)}`,
    );
  expected.set(key, value);
  writes++;
}

/** A value that needs entry format 3: a lone surrogate, sent as JSON through the cas route. */
async function putExotic(node, key) {
  const value = `x${LONE_SURROGATE}y`;
  const a = await callUntilDone(
    node,
    'POST',
    `/kv/${encodeURIComponent(key)}/cas`,
    { expect: null, value },
    `cas ${key}`,
  );
  if (a.status !== 200)
    throw new Mismatch(
      `cas ${key} through node ${node.id} (${node.build.label}): ${a.status} ${JSON.stringify(a.body)}`,
    );
  expected.set(key, value);
  writes++;
}

async function writeThroughEveryNode(tag) {
  for (const node of nodes.values()) {
    for (let i = 0; i < 5; i++)
      await put(node, `${tag}-via${node.id}-${i}`, `${node.build.label}-${i}`);
    if (settings.exotic) await putExotic(node, `${tag}-via${node.id}-exotic`);
  }
}

/**
 * Makes `target` the leader (the current leader transfers to it), bounded. An election may move
 * the lead while the transfer is asked for: to `target` (the goal), or to a third node, which
 * is then asked in turn.
 */
async function transferTo(target) {
  const deadline = Date.now() + 40_000;
  for (;;) {
    const leader = await waitLeader('before a transfer');
    if (leader === target) return;
    const a = await callUntilDone(
      leader,
      'POST',
      '/admin/transfer',
      { id: target.id },
      `transfer to ${target.id}`,
      (answer) => answer.body?.error?.code === 'PREVAIL_NOT_LEADER',
    );
    if (a.status === 200 || a.body?.error?.leader?.id === target.id) break;
    if (a.body?.error?.code !== 'PREVAIL_NOT_LEADER' || Date.now() > deadline)
      throw new Mismatch(
        `transfer to node ${target.id} refused: ${a.status} ${JSON.stringify(a.body)}`,
      );
    say(`  node ${leader.id} no longer leads: asking the new leader`);
  }
  await waitLeader(`node ${target.id} after a transfer`, (n) => n === target);
}

async function leaderOnEachBuild(tag) {
  for (const label of ['old', 'new']) {
    const target = [...nodes.values()].find((n) => n.build.label === label);
    await transferTo(target);
    say(`  leader: node ${target.id} (${label} build)`);
    await writeThroughEveryNode(`${tag}-led-by-${label}`);
    const follower = [...nodes.values()].find((n) => n.build.label !== label);
    await scheduleThrough(follower, target, `${tag}-sched-via${follower.id}`);
  }
}

// ---- schedules across builds -------------------------------------------------------------
let schedules = 0;

/** startService's options for `node`, as `prevail serve` gets them from startNode's flags. */
function serviceOptions(node, build) {
  return {
    dataDir: node.dataDir,
    id: node.id,
    raftAddress: node.raft,
    httpAddress: node.http,
    channelAddress: node.channel,
    cluster: [...nodes.values()].map((n) => ({ id: n.id, address: n.raft })),
    electionTimeoutMs: ELECTION_TIMEOUT_MS,
    heartbeatMs: HEARTBEAT_MS,
    ...(build.insecureFlag ? { insecure: true } : {}),
    ...(build.snapshotFlags
      ? { snapshotThreshold: SNAPSHOT_THRESHOLD, snapshotTrailing: SNAPSHOT_TRAILING }
      : {}),
  };
}

/**
 * schedule() and unschedule() on follower `node`, forwarded to `leader` (the other build):
 * `node` runs as the scheduler fixture for a moment, then as `prevail serve` again. The
 * scheduled put must be fired by the leader and reach every node (compareNodes reads it back).
 */
async function scheduleThrough(node, leader, tag) {
  await stopNode(node);
  const out = await runScheduler(node, tag);
  startNode(node, node.build);
  await waitServing(node);
  const what = `schedule through node ${node.id} (${node.build.label}) to leader ${leader.id} (${leader.build.label})`;
  if (out.roles.some((r) => r !== 'follower') || out.leader !== leader.id || out.removed !== true)
    throw new Mismatch(`${what}: ${JSON.stringify(out)}`);
  const { key, value } = out.fired;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const a = await call(leader, 'GET', `/kv/${encodeURIComponent(key)}`).catch((e) => e);
    if (a.status === 200 && a.body.value === value) break;
    if (Date.now() > deadline)
      throw new Mismatch(`${what}: schedule ${out.fired.id} did not fire within 20 s`);
    await sleep(100);
  }
  expected.set(key, value);
  schedules++;
  say(`  ${what}: scheduled ${out.fired.id} (fired), unscheduled one`);
}

/** Runs the scheduler fixture as `node` on its build; resolves with what it printed. */
async function runScheduler(node, tag) {
  const build = node.build;
  const args = [
    SCHEDULER,
    ...['--build', build.dir, '--tag', tag],
    ...['--options', JSON.stringify(serviceOptions(node, build))],
  ];
  logLine(node, `scheduler fixture on the ${build.label} build: node ${args.join(' ')}`);
  const fd = openSync(node.log, 'a');
  let proc;
  try {
    proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', fd], cwd: build.dir });
  } finally {
    closeSync(fd);
  }
  spawned.push(proc);
  let stdout = '';
  proc.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise((r) => proc.once('close', (code) => r(code)));
  proc.on('error', () => {
    /* shows as an exit */
  });
  if (!(await within(exited, 70_000)))
    throw new Mismatch(`the scheduler fixture as node ${node.id} did not exit within 70 s`);
  const code = await exited;
  logLine(node, `scheduler fixture exited (${code}): ${stdout.trim()}`);
  const line = stdout.trim().split('\n').pop();
  if (code !== 0 || !line?.startsWith('{'))
    throw new Mismatch(
      `the scheduler fixture as node ${node.id} (${build.label}) failed (${code}): ${lastProblem(node.log)}`,
    );
  return JSON.parse(line);
}

/** A follower on `behindBuild` misses entries while a leader on the other build snapshots past them. */
async function catchUpBySnapshot(tag, behindBuild) {
  const all = [...nodes.values()];
  const follower = all.find((n) => n.build.label === behindBuild);
  const leader = all.find((n) => n.build.label !== behindBuild);
  await transferTo(leader);
  const before = (await status(follower))?.lastIndex ?? 0;
  await stopNode(follower);
  const leaderStatus = await writeUntilSnapshotPast(leader, before, tag);
  startNode(follower, follower.build);
  await waitServing(follower);
  await waitApplied(follower, leaderStatus.commitIndex);
  say(
    `  node ${follower.id} (${behindBuild}, stopped at ${before}) caught up to ${leaderStatus.commitIndex} by the snapshot ` +
      `at ${leaderStatus.snapshot.index} of node ${leader.id} (${leader.build.label})`,
  );
}

/**
 * Writes through `leader` until its log no longer holds entry `index + 1` (it keeps `trailing`
 * entries before its snapshot); returns its status then. The store raises the snapshot
 * threshold with the state's size and a build may lack --snapshot-threshold, so the leader is
 * also asked for a snapshot now and then; overwriting a few keys keeps the state small.
 */
async function writeUntilSnapshotPast(leader, index, tag) {
  const trailing = leader.build.trailing;
  for (let i = 0; ; i += BEHIND_CONCURRENCY) {
    await Promise.all(
      Array.from({ length: BEHIND_CONCURRENCY }, (_, j) =>
        put(leader, `${tag}-behind-${(i + j) % 32}`, `v${i + j}`),
      ),
    );
    if (i % 64 !== 0) continue;
    const s = await status(leader);
    if (s && s.snapshot.index - trailing > index) return s;
    if (i > MAX_BEHIND_WRITES)
      throw new Mismatch(
        `the leader took no snapshot past entry ${index + trailing} in ${i} writes: ${JSON.stringify(s)}`,
      );
    if (s && s.commitIndex - trailing > index + 32)
      await callUntilDone(leader, 'POST', '/admin/snapshot', undefined, 'a snapshot');
  }
}

async function waitApplied(node, index) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    checkCrashes();
    const s = await status(node);
    if (s && s.appliedIndex >= index) return;
    if (Date.now() > deadline)
      throw new Mismatch(
        `node ${node.id} (${node.build.label}) did not apply up to ${index} within 30 s (at ${s?.appliedIndex})`,
      );
    await sleep(100);
  }
}

async function phase(name) {
  say(`${name}: nodes ${[...nodes.values()].map((n) => `${n.id}=${n.build.label}`).join(' ')}`);
  await waitLeader(name);
  await writeThroughEveryNode(name);
  await leaderOnEachBuild(name);
  await catchUpBySnapshot(name, 'old');
  await catchUpBySnapshot(name, 'new');
}

/** Every node at the same applied index with the same effects hash, and every write read back from each. */
async function compareNodes() {
  const leader = await waitLeader('at the end');
  const { commitIndex } = await status(leader);
  const deadline = Date.now() + 30_000;
  let statuses;
  for (;;) {
    checkCrashes();
    statuses = await Promise.all([...nodes.values()].map(status));
    if (
      statuses.every(
        (s) => s && s.appliedIndex === statuses[0].appliedIndex && s.appliedIndex >= commitIndex,
      )
    )
      break;
    if (Date.now() > deadline)
      throw new Mismatch(
        `nodes not at one applied index within 30 s: ${statuses.map((s) => s?.appliedIndex).join(', ')}`,
      );
    await sleep(200);
  }
  const hashes = new Set(statuses.map((s) => JSON.stringify(s.effects)));
  if (hashes.size !== 1)
    throw new Mismatch(
      `effects differ at applied index ${statuses[0].appliedIndex}: ${statuses.map((s, i) => `node ${i + 1} ${JSON.stringify(s.effects)}`).join('; ')}`,
    );
  for (const node of nodes.values()) await readBackEveryWrite(node);
  noDivergenceAlarm();
  say(
    `all nodes at applied index ${statuses[0].appliedIndex}, effects equal, ${expected.size} keys read back from each`,
  );
}

// An upgrade done this way (every node applies the same entries) must raise no divergence
// alarm: a node's log has none (older builds warn the same way, on stderr).
function noDivergenceAlarm() {
  for (const node of nodes.values()) {
    const line = readFileSync(node.log, 'utf8')
      .split('\n')
      .find((l) => l.includes('PREVAIL_DIVERGED'));
    if (line) throw new Mismatch(`node ${node.id} raised a divergence alarm: ${line}`);
  }
}

async function readBackEveryWrite(node) {
  let wrong = 0;
  let example = '';
  for (const [key, value] of expected) {
    const a = await call(node, 'GET', `/kv/${encodeURIComponent(key)}?consistency=stale`);
    if (a.status !== 200 || a.body.value !== value) {
      if (!wrong)
        example = `${key}: ${a.status} ${JSON.stringify(a.body)} (expected ${JSON.stringify(value)})`;
      wrong++;
    }
  }
  if (wrong)
    throw new Mismatch(
      `node ${node.id} (${node.build.label}) has ${wrong} of ${expected.size} keys wrong, e.g. ${example}`,
    );
}

// ---- main -------------------------------------------------------------------------------
async function main() {
  const { builds, exotic, keep } = options();
  const root = mkdtempSync(join(tmpdir(), 'prevail-mixed-'));
  say(
    `old: ${builds.old.dir} (${builds.old.rev}); new: ${builds.new.dir} (${builds.new.rev}); data and logs in ${root}`,
  );
  for (let id = 1; id <= 3; id++) {
    const [raft, http, channel] = [await freePort(), await freePort(), await freePort()];
    nodes.set(id, {
      id,
      raft: `127.0.0.1:${raft}`,
      http: `127.0.0.1:${http}`,
      channel: `127.0.0.1:${channel}`,
      dataDir: join(root, `n${id}`),
      log: join(root, `node-${id}.log`),
    });
  }
  settings = { exotic, clusterFlag: [...nodes.values()].map((n) => `${n.id}=${n.raft}`).join(',') };
  const [n1, n2, n3] = [nodes.get(1), nodes.get(2), nodes.get(3)];
  let passed = false;
  try {
    startNode(n1, builds.old);
    startNode(n2, builds.old);
    startNode(n3, builds.new);
    await Promise.all([n1, n2, n3].map(waitServing));
    await phase('phase1');
    say('node 2: restart on the new build over its old-build data dir');
    await restartOn(n2, builds.new);
    await phase('phase2');
    say('node 3: restart on the old build over its new-build data dir');
    await restartOn(n3, builds.old);
    await writeThroughEveryNode('phase3');
    await compareNodes();
    passed = true;
    say(
      `PASS: ${writes} writes, ${schedules} schedules, old ${builds.old.rev} and new ${builds.new.rev} interoperate`,
    );
  } catch (err) {
    if (!(err instanceof Mismatch)) throw err;
    console.error(`mixed-cluster: FAIL: ${err.message}`);
    console.error(`mixed-cluster: node logs kept in ${root}`);
    process.exitCode = 1;
  } finally {
    await killAllAndWait();
    if (passed && !keep) rmSync(root, { recursive: true, force: true });
    else if (passed) say(`kept ${root}`);
  }
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
setTimeout(() => {
  console.error(`mixed-cluster: FAIL: the run did not finish within ${RUN_LIMIT_MS / 1000} s`);
  killAll();
  process.exit(1);
}, RUN_LIMIT_MS).unref();
main().catch((err) => {
  console.error('mixed-cluster: error:', err);
  killAll();
  process.exit(1);
});

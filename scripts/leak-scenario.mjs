// A realistic single-node run of the addon for scripts/leak-check.sh (valgrind), also
// runnable on its own: `node --expose-gc scripts/leak-scenario.mjs`.
//
//  1. start a node on an empty temp dir with a tiny snapshot threshold, propose ~2000
//     commands (payloads of 0..20 bytes, many in flight, some whose apply throws),
//     a barrier, status(), close;
//  2. restart on the same dir (snapshot restore + log replay), check the state,
//     propose more, then close with ~500 proposals still in flight;
//  3. a start that fails because the address is already bound by someone else.
//
// It lets the event loop drain by itself (no process.exit on success), so a handle the
// addon forgot to close shows up as a hang, caught by the watchdog.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from '../dist/core/ports.js';
import { RaftNode, createCa, createNodeCert } from '../dist/index.js';

const WATCHDOG_MS = Number(process.env.LEAK_SCENARIO_TIMEOUT_MS ?? 240_000);
const watchdog = setTimeout(() => {
  console.error(
    `scenario: FAILED: still running after ${WATCHDOG_MS} ms (hang, or a handle left open)`,
  );
  process.exit(3);
}, WATCHDOG_MS);
watchdog.unref();

const log = (...args) => console.log('scenario:', ...args);
function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

// ---- the state machine: a running sum and count, deterministic, with throwing entries
function makeFsm() {
  const state = { count: 0, sum: 0, lastIndex: 0, restores: 0, snapshots: 0, thrown: 0 };
  return {
    state,
    apply(command, meta) {
      state.lastIndex = meta.index;
      // Commands whose first byte is 0xEE throw (after being counted: apply must be
      // deterministic either way).
      state.count++;
      for (const b of command) state.sum = (state.sum + b) % 1_000_000_007;
      if (command.length > 0 && command[0] === 0xee) {
        state.thrown++;
        throw new Error(`apply rejects index ${meta.index}`);
      }
      // Vary the result kinds: numbers, strings, objects, undefined, buffers.
      switch (meta.index % 5) {
        case 0:
          return meta.index;
        case 1:
          return `r${meta.index}`;
        case 2:
          return { index: meta.index, len: command.length };
        case 3:
          return undefined;
        default:
          return command.subarray(0, 3);
      }
    },
    snapshot() {
      state.snapshots++;
      const head = new TextEncoder().encode(
        JSON.stringify({ count: state.count, sum: state.sum, thrown: state.thrown }),
      );
      // Several chunks (one of them empty) to exercise the multi-buffer path.
      return [head.subarray(0, 5), new Uint8Array(0), head.subarray(5)];
    },
    restore(data) {
      const s = JSON.parse(new TextDecoder().decode(data));
      state.count = s.count;
      state.sum = s.sum;
      state.thrown = s.thrown;
      state.restores++;
    },
  };
}

// Odd-length payloads 0..20 bytes; every 13th throws in apply.
function payload(i) {
  const len = i % 21;
  const bytes = new Uint8Array(len);
  for (let j = 0; j < len; j++) bytes[j] = (i * 31 + j * 7) & 0xff;
  if (len > 0 && i % 13 === 5) bytes[0] = 0xee;
  else if (len > 0 && bytes[0] === 0xee) bytes[0] = 0xed;
  return bytes;
}

async function waitForLeader(node, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (node.status().role !== 'leader') {
    if (Date.now() > deadline)
      throw new Error(`no leader after ${timeoutMs} ms: ${JSON.stringify(node.status())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Proposes `count` commands in waves of `wave` concurrent proposals.
async function proposeMany(node, from, count, wave) {
  let ok = 0;
  let applyErrors = 0;
  let other = 0;
  for (let start = from; start < from + count; start += wave) {
    const batch = [];
    for (let i = start; i < Math.min(from + count, start + wave); i++)
      batch.push(node.propose(payload(i)));
    for (const r of await Promise.allSettled(batch)) {
      if (r.status === 'fulfilled') ok++;
      else if (/apply rejects/.test(r.reason?.message)) applyErrors++;
      else {
        other++;
        if (other <= 3) log('unexpected rejection:', r.reason?.code, r.reason?.message);
      }
    }
  }
  return { ok, applyErrors, other };
}

const dirs = [];
function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'prevail-leak-'));
  dirs.push(dir);
  return dir;
}

const common = {
  id: 1,
  electionTimeoutMs: 1000,
  heartbeatMs: 100,
  snapshotThreshold: 50,
  snapshotTrailing: 10,
};

try {
  // ---- 1. fresh node, ~2000 proposals, barrier, status, close
  const dataDir = tempDir();
  const address = `127.0.0.1:${await freePort()}`;
  const fsm1 = makeFsm();
  let node = await RaftNode.start({ ...common, address, dataDir, fsm: fsm1 });
  await waitForLeader(node);
  const N1 = 2000;
  let r = await proposeMany(node, 0, N1, 250);
  log(`phase 1: ${r.ok} applied, ${r.applyErrors} rejected by apply, ${r.other} other`);
  check(
    r.ok + r.applyErrors === N1 && r.other === 0,
    'every proposal settles with its result or its apply error',
  );
  check(r.applyErrors > 0, 'some applies threw');
  const barrier = await node.barrier();
  const status = node.status();
  log(
    `phase 1: barrier ${barrier}, status`,
    JSON.stringify({
      role: status.role,
      commit: status.commitIndex,
      applied: status.appliedIndex,
      last: status.lastIndex,
      snapshot: status.snapshot,
    }),
  );
  check(status.snapshot.index > 0, 'snapshots were taken');
  check(fsm1.state.snapshots > 0, 'fsm.snapshot() was called');
  await node.close();
  const expected = { count: fsm1.state.count, sum: fsm1.state.sum, thrown: fsm1.state.thrown };

  // ---- 2. restart on the same dir: snapshot restore + replay, more proposals, close with many in flight
  const fsm2 = makeFsm();
  node = await RaftNode.start({ ...common, address, dataDir, fsm: fsm2 });
  await waitForLeader(node);
  await node.barrier();
  log(
    `phase 2: restored ${fsm2.state.restores}x, state`,
    JSON.stringify({ count: fsm2.state.count, sum: fsm2.state.sum }),
  );
  check(fsm2.state.restores >= 1, 'restart restored a snapshot');
  check(
    fsm2.state.sum === expected.sum && fsm2.state.thrown === expected.thrown,
    `restart reproduces the state (${JSON.stringify(expected)})`,
  );
  r = await proposeMany(node, N1, 300, 100);
  check(r.ok + r.applyErrors === 300 && r.other === 0, 'phase 2 proposals settle');
  const inflight = [];
  for (let i = 0; i < 500; i++) {
    // Handled right away: they settle while close() is awaited.
    inflight.push(
      node.propose(payload(N1 + 300 + i)).then(
        (value) => ({ status: 'fulfilled', value }),
        (reason) => ({ status: 'rejected', reason }),
      ),
    );
  }
  // drainTimeoutMs 0: the engine is closed with most of these still pending.
  const closing = node.close({ drainTimeoutMs: 0 });
  const late = node.propose(payload(1)).then(
    () => 'resolved',
    (e) => e.code,
  );
  await closing;
  const settled = await Promise.all(inflight);
  const codes = {};
  for (const s of settled) {
    const key =
      s.status === 'fulfilled'
        ? 'applied'
        : /apply rejects/.test(s.reason?.message)
          ? 'apply-error'
          : s.reason?.code;
    codes[key] = (codes[key] ?? 0) + 1;
  }
  log('phase 2: 500 in flight at close ->', JSON.stringify(codes));
  check(
    settled.every(
      (s) =>
        s.status === 'fulfilled' ||
        s.reason?.code === 'PREVAIL_CLOSED' ||
        /apply rejects/.test(s.reason?.message),
    ),
    'proposals cut off by close reject with PREVAIL_CLOSED',
  );
  const lateResult = await late;
  log('phase 2: propose after close ->', lateResult);
  check(lateResult === 'PREVAIL_CLOSED', 'propose after close rejects with PREVAIL_CLOSED');

  // ---- 3. a failed start: the address is bound by another server
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const busy = `127.0.0.1:${blocker.address().port}`;
  let failure = null;
  try {
    const n = await RaftNode.start({
      ...common,
      insecure: true, // the engine's own TCP transport listens at start (a single node else opens no port)
      address: busy,
      dataDir: tempDir(),
      fsm: makeFsm(),
    });
    await n.close();
  } catch (err) {
    failure = err;
  }
  await new Promise((resolve) => blocker.close(resolve));
  const cause = failure?.cause?.code
    ? ` (cause: ${failure.cause.code}${failure.cause.raftName ? `/${failure.cause.raftName}` : ''}: ${failure.cause.message})`
    : '';
  log(
    `phase 3: start on a bound address -> ${failure ? `${failure.code}: ${failure.message}${cause}` : 'started (!)'}`,
  );
  check(
    failure !== null && typeof failure.code === 'string' && failure.code.startsWith('PREVAIL_'),
    'a start on a bound address rejects with a coded error',
  );

  // ---- 4. three members on mutual TLS (the stream transport: socketpairs into the engine):
  // proposals, a follower closed and restarted (its streams torn down and made again), close all
  const ca = await createCa({ days: 1 });
  const members = [];
  for (const id of [1, 2, 3]) members.push({ id, address: `127.0.0.1:${await freePort()}` });
  const specs = [];
  for (const m of members) {
    const { cert, key } = await createNodeCert(ca, { id: m.id, days: 1 });
    specs.push({
      ...common,
      // Under valgrind a TLS handshake can take over 5 s (the first ones time out) and the
      // members share one slow loop: with a 1 s election timeout the leader often lost its
      // quorum around the restart (PREVAIL_LEADERSHIP_LOST; 4 runs of 4 on 2026-12-03, and
      // 1 of 2 at 6985bbc). Elections are not what this checks.
      electionTimeoutMs: 10_000,
      heartbeatMs: 500,
      ...m,
      dataDir: tempDir(),
      cluster: members,
      tls: { ca: ca.cert, cert, key },
    });
  }
  const start = (spec) => RaftNode.start({ ...spec, fsm: makeFsm() });
  const nodes = await Promise.all(specs.map(start));
  const leaderOf = async () => {
    for (;;) {
      const leader = nodes.find((n) => n.isLeader);
      if (leader) return leader;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  let leader = await leaderOf();
  r = await proposeMany(leader, 0, 300, 50);
  check(
    r.ok + r.applyErrors === 300 && r.other === 0,
    'phase 4: proposals on the TLS cluster settle',
  );
  const follower = nodes.findIndex((n) => !n.isLeader);
  await nodes[follower].close();
  nodes[follower] = await start(specs[follower]);
  leader = await leaderOf();
  r = await proposeMany(leader, 300, 200, 50);
  check(r.ok + r.applyErrors === 200 && r.other === 0, 'phase 4: proposals after a restart settle');
  await leader.barrier();
  log(
    `phase 4: TLS cluster, leader ${leader.id}, applied ${nodes.map((n) => n.status().appliedIndex)}`,
  );
  await Promise.all(nodes.map((n) => n.close()));

  // Let the closed engines be collected so their native destructors run under the checker.
  for (let i = 0; i < 3 && typeof globalThis.gc === 'function'; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  log('OK');
} catch (err) {
  console.error('scenario: FAILED:', err);
  process.exitCode = 1;
} finally {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  // After a failure nodes may still run: exit before they touch their removed data dirs (the
  // engine asserts when a snapshot write fails), which would hide this failure behind an abort.
  if (process.exitCode === 1) process.exit(1);
}

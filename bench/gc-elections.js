// Garbage collection (and other event-loop stalls) against elections: a 3-node cluster of
// stores (open() with a schema, one real node process each, library defaults), loaded with
// N objects in bulk commands, then a sustained closed-loop write load for a while. Counts
// what no fault caused: leader changes, terms advanced, elections started (a node seen as
// candidate, pre-vote included), leader step-downs, next to each node's event-loop stalls
// and GC pauses (perf_hooks in the children, reported over IPC), write throughput and p99.
// Each stall is split into the main thread's time on a CPU and its time waiting for one
// (Linux schedstat), and every role change is printed with each node's longest stall in
// the second before it. Prints markdown tables on stdout, progress on stderr.
//
//   node bench/gc-elections.js                       1M objects, 5 min of writes per variant
//   node bench/gc-elections.js --quick               100k objects, 30 s
//   node bench/gc-elections.js --objects=300000 --duration=60000 --concurrency=32
//   node bench/gc-elections.js --variants=default,et500,semi64   candidate settings, each on
//                                                    a fresh cluster in the same run (--help)
//   node bench/gc-elections.js --objects=10000 --duration=0 --inject=450,250 --inject-count=5
//                                                    synthetic stalls instead (a busy JS thread
//                                                    on a follower, then on the leader, every 2 s;
//                                                    --inject-load=N writes in flight meanwhile)
//
// The engine's timers and heartbeats run on each node's JS thread, so any stall longer than
// the election timeout (a GC pause, a long apply, a capture slice, or the machine not giving
// the process a CPU) can look like a dead leader. To tell these apart, the machine's CPU
// use by other processes over each phase is printed too (/proc/stat minus this bench's
// processes). Limits: a candidacy that ends within one loop iteration (a follower's
// pre-vote after a stall, undone by the heartbeats read next) is not seen, since roles are
// reported once per iteration; GC pauses are wall time (a pause the thread spent waiting
// for a CPU counts in full). This is a measurement, not a test: it never fails on a number.
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PerformanceObserver,
  constants as perfConstants,
  monitorEventLoopDelay,
  performance,
} from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { defineSchema, open, versions } from '../dist/index.js';
import { makeUser, rng, users } from './users.js';
import {
  Child,
  arg,
  closedLoop,
  fmtInt,
  fmtMs,
  freePorts,
  killChildren,
  mainThreadSched,
  processCpuMs,
  progress,
  quick,
  run,
  sleep,
  waitFor,
} from './common.js';

// ---------------------------------------------------------------- the data
// The same objects and indexes as bench/store.js.
const schema = defineSchema({
  collections: {
    users: users(),
  },
  commands: {
    // Idempotent, so that a load cut off by a leader change can go on from a bit earlier.
    addUsers(s, a) {
      for (const u of a.users) if (!s.users.byEmail.has(u.email)) s.users.insert(u);
      return a.users.length;
    },
    // The sustained load: one object's age (a sorted-index move) and score.
    setUser(s, { id, age, score }) {
      if (s.users.get(id)) s.users.update(id, { age, score });
    },
  },
});
const BULK = 1000; // objects per load command

// Candidate settings, each run on a fresh cluster. execArgv: node's flags for the three
// node processes; env: added to their environment; options: store options.
const VARIANTS = {
  default: { label: 'library defaults', execArgv: [], options: {} },
  semi16: {
    label: '--max-semi-space-size=16',
    execArgv: ['--max-semi-space-size=16'],
    options: {},
  },
  semi64: {
    label: '--max-semi-space-size=64',
    execArgv: ['--max-semi-space-size=64'],
    options: {},
  },
  et500: {
    label: 'electionTimeoutMs 500, heartbeatMs 100',
    execArgv: [],
    options: { electionTimeoutMs: 500, heartbeatMs: 100 },
  },
  et1000: {
    label: 'electionTimeoutMs 1000, heartbeatMs 100',
    execArgv: [],
    options: { electionTimeoutMs: 1000, heartbeatMs: 100 },
  },
};

const now = () => performance.timeOrigin + performance.now(); // ms since the epoch, sub-ms, same clock in every process

// ================================================================ child: one node
// argv: --child=node '<json spec>'. Speaks the Child protocol of bench/common.js.
async function nodeChild(spec) {
  const { id, address, cluster, dataDir, options } = spec;
  const events = []; // { t, type: 'role' | 'leader' | 'capture', ... }
  const gcs = []; // pauses of 10 ms or more: { t (start), ms, kind }
  const stalls = []; // gaps of the 10 ms ticker of 50 ms or more: { t (end), ms, cpuMs, waitMs }
  const GC_KINDS = {
    [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
    [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
    [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
  };
  let agg;
  const resetAgg = () => {
    agg = { count: 0, totalMs: 0, byKind: {} };
  };
  resetAgg();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[e.detail?.kind ?? e.kind] ?? String(e.detail?.kind ?? e.kind);
      agg.count++;
      agg.totalMs += e.duration;
      const k = (agg.byKind[kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      k.count++;
      k.totalMs += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
      if (e.duration >= 10)
        gcs.push({ t: performance.timeOrigin + e.startTime, ms: e.duration, kind });
    }
  }).observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const sched = mainThreadSched();
  let last = performance.now();
  let lastSched = sched();
  setInterval(() => {
    const n = performance.now();
    const sc = sched();
    if (n - last >= 50) {
      stalls.push({
        t: performance.timeOrigin + n,
        ms: n - last,
        cpuMs: sc[0] - lastSched[0],
        waitMs: sc[1] - lastSched[1],
      });
    }
    last = n;
    lastSched = sc;
  }, 10);

  // insecure: the engine's own TCP, as in bench/failover.js: this measures stalls, not TLS.
  const store = await open({ schema, dataDir, id, address, cluster, insecure: true, ...options });
  const send = (msg) => process.send?.(msg);
  store.on('role', (e) => {
    events.push({
      t: now(),
      type: 'role',
      role: e.role,
      term: e.term,
      leader: e.leader?.id ?? null,
    });
    send({ event: 'role', id, role: e.role, term: e.term, leader: e.leader?.id ?? null });
  });
  store.node.on('leader', (e) => {
    events.push({ t: now(), type: 'leader', term: e.term, leader: e.leader?.id ?? null });
    send({ event: 'leader', id, term: e.term, leader: e.leader?.id ?? null });
  });
  store.on('capture', (e) => events.push({ t: now(), type: 'capture', ms: e.durationMs }));
  // Long applies, engine snapshots, and snapshots installed from the leader (the engine's
  // snapshot index moving with no snapshot of its own just taken: a restore of the state).
  diagnostics_channel.subscribe('prevail:slow-apply', (e) =>
    events.push({ t: now(), type: 'slow-apply', ms: e.durationMs }),
  );
  let ownSnapshotAt = 0;
  diagnostics_channel.subscribe('prevail:snapshot', (e) => {
    if (e.kind === 'engine') {
      ownSnapshotAt = now();
      events.push({ t: ownSnapshotAt, type: 'engine-snapshot', ms: e.durationMs });
    }
  });
  let snapIndex = store.status().snapshot.index;
  setInterval(() => {
    const i = store.status().snapshot.index;
    if (i !== snapIndex && now() - ownSnapshotAt > 1000)
      events.push({ t: now(), type: 'install', index: i });
    snapIndex = i;
  }, 200);

  const status = () => {
    const s = store.status();
    return {
      role: s.role,
      term: s.term,
      leader: s.leader?.id ?? null,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      objects: store.view.users.size,
      heapUsed: process.memoryUsage().heapUsed,
    };
  };
  let windowStart = 0;
  const handlers = {
    status,
    // Proposes objects from..n-1, 8 bulk commands in flight. Returns how far it got for sure
    // (everything below `done` committed) and the error that stopped it, if any.
    async load({ from, n }) {
      const pending = [];
      let done = from;
      try {
        for (let i = from; i < n; i += BULK) {
          const users = [];
          for (let j = i; j < Math.min(n, i + BULK); j++) users.push(makeUser(j, rng(j)));
          const p = store.propose('addUsers', { users }).then(() => i);
          p.catch(() => {}); // handled where it is awaited; a later one may reject first
          pending.push(p);
          if (pending.length >= 8) done = (await pending.shift()) + BULK;
        }
        await Promise.all(pending);
        return { done: n };
      } catch (err) {
        await Promise.allSettled(pending);
        return { done, error: err.message };
      }
    },
    async propose(a) {
      await store.propose('setUser', a);
      return 1;
    },
    // A synthetic stall (what a long GC pause is to the loop): the JS thread busy for ms.
    block({ ms }) {
      const end = performance.now() + ms;
      while (performance.now() < end) {
        /* busy */
      }
      return ms;
    },
    window() {
      windowStart = now();
      loop.reset();
      resetAgg();
      return windowStart;
    },
    report({ from = windowStart, to = now() } = {}) {
      const inWindow = (x) => x.t >= from && x.t <= to;
      return {
        status: status(),
        events: events.filter(inWindow),
        gcs: gcs.filter(inWindow),
        stalls: stalls.filter(inWindow),
        gc: agg,
        loop: { max: loop.max / 1e6, p99: loop.percentile(99) / 1e6, mean: loop.mean / 1e6 },
      };
    },
  };
  process.on('message', async (msg) => {
    try {
      const result = await handlers[msg.cmd](msg.args ?? {});
      send({ id: msg.id, result });
    } catch (err) {
      send({ id: msg.id, error: { message: err.message, code: err.code } });
    }
  });
  send({ event: 'ready' });
}

// ================================================================ main process
async function main() {
  if (arg('help')) {
    console.log(
      'usage: node bench/gc-elections.js [--quick] [--objects=N] [--duration=ms] [--concurrency=32]\n' +
        `       [--variants=${Object.keys(VARIANTS).join(',')}] [--settle=ms]\n` +
        '       [--inject=followerMs,leaderMs] [--inject-count=10] [--inject-load=4]   (synthetic stalls; --duration=0 skips the writes)\n' +
        Object.entries(VARIANTS)
          .map(([k, v]) => `         ${k}: ${v.label}`)
          .join('\n'),
    );
    return;
  }
  const N = Number(arg('objects') ?? (quick ? 100_000 : 1_000_000));
  const durationMs = Number(arg('duration') ?? (quick ? 30_000 : 300_000));
  const concurrency = Number(arg('concurrency') ?? 32);
  const settleMs = Number(arg('settle') ?? 5000);
  // --inject=F,L: a phase of synthetic stalls (the JS thread busy), F ms on a follower and
  // L ms on the leader, alternately, every 2 s, --inject-count times each, under a light load.
  const inject = arg('inject')
    ? String(arg('inject') === true ? '450,250' : arg('inject'))
        .split(',')
        .map(Number)
    : null;
  const injectCount = Number(arg('inject-count') ?? 10);
  const injectLoad = Number(arg('inject-load') ?? 4); // writes in flight meanwhile (0: heartbeats only)
  const variants = String(arg('variants') ?? 'default')
    .split(',')
    .filter(Boolean);
  for (const v of variants) if (!VARIANTS[v]) throw new Error(`unknown variant ${v} (see --help)`);

  const root = mkdtempSync(join(tmpdir(), 'prevail-bench-gc-'));
  const cleanup = () => {
    killChildren();
    try {
      rmSync(root, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });

  const started = now();
  process.stderr.write(
    `prevail bench: GC and stalls against elections, raft ${versions.raft}, node ${process.version}, ` +
      `${cpus().length} CPUs, load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}\n  ${fmtInt(N)} objects, ` +
      `${durationMs / 1000} s of writes at ${concurrency} in flight, variants ${variants.join(', ')}\n`,
  );
  const results = [];
  await run(async () => {
    for (const v of variants)
      results.push(
        await runVariant(v, {
          root,
          N,
          durationMs,
          concurrency,
          settleMs,
          inject,
          injectCount,
          injectLoad,
        }),
      );
  });
  if (results.length) report(results, { N, durationMs, concurrency, started });
}

// Machine-wide busy CPU (ms, all cores) from /proc/stat; USER_HZ taken as 100.
function machineBusyMs() {
  try {
    const f = readFileSync('/proc/stat', 'latin1')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - f[3] - f[4]) * 10; // minus idle and iowait
  } catch {
    return NaN;
  }
}

async function runVariant(
  name,
  { root, N, durationMs, concurrency, settleMs, inject, injectCount, injectLoad },
) {
  const v = VARIANTS[name];
  const dir = join(root, name);
  mkdirSync(dir);
  const ports = await freePorts(3);
  const cluster = ports.map((port, i) => ({ id: i + 1, address: `127.0.0.1:${port}` }));
  let leader = null; // node id, from the children's events
  const onEvent = (e) => {
    if (e.event === 'role' && e.role === 'leader') leader = e.id;
    else if (e.event === 'role' && leader === e.id) leader = e.leader;
    else if (e.event === 'leader' && e.leader) leader = e.leader;
  };
  const script = fileURLToPath(import.meta.url);
  const nodes = cluster.map(
    (m) =>
      new Child(
        { id: m.id, address: m.address, cluster, dataDir: join(dir, `n${m.id}`) },
        { options: v.options },
        { script, args: ['--child=node'], execArgv: v.execArgv, env: v.env, onEvent },
      ),
  );
  const byId = (id) => nodes[id - 1];
  const statuses = () => Promise.all(nodes.map((n) => n.call('status')));

  // One measured phase: every node's counters reset, work(), every node's report.
  async function phase(work) {
    const before = await statuses();
    await Promise.all(nodes.map((n) => n.call('window')));
    const pids = nodes.map((n) => n.child.pid);
    const cpu0 = {
      machine: machineBusyMs(),
      nodes: pids.map(processCpuMs),
      self: process.cpuUsage(),
    };
    const t0 = now();
    const result = await work();
    const t1 = now();
    const self = process.cpuUsage(cpu0.self);
    const cpu = {
      machine: machineBusyMs() - cpu0.machine,
      nodes: pids.map((p, i) => processCpuMs(p) - cpu0.nodes[i]),
      self: (self.user + self.system) / 1000,
    };
    const reports = await Promise.all(nodes.map((n) => n.call('report', { from: t0, to: t1 })));
    return { ...result, before, reports, t0, t1, cpu, loadavg: loadavg() };
  }

  try {
    await Promise.all(nodes.map((n) => n.ready));
    await waitFor('a leader', () => leader, { timeoutMs: 30_000 });
    progress(`${name}: leader is node ${leader}; loading ${fmtInt(N)} objects`);

    // ---- load: bulk commands on the leader; after a leader change, on the new one, from a bit earlier
    const load = await phase(async () => {
      let done = 0;
      let restarts = 0;
      while (done < N) {
        const target = await waitFor('a leader', () => leader, { timeoutMs: 60_000 });
        const r = await byId(target).call('load', { from: done, n: N }, 1_800_000);
        done = r.done;
        if (r.error) {
          restarts++;
          progress(`${name}: load cut off at ${fmtInt(done)} objects (${r.error}); going on`);
          done = Math.max(0, done - 8 * BULK);
          await sleep(100);
        }
      }
      const top = Math.max(...(await statuses()).map((s) => s.commitIndex));
      await waitFor(
        'followers to apply the load',
        async () => (await statuses()).every((x) => x.appliedIndex >= top),
        { timeoutMs: 600_000, pollMs: 200 },
      );
      return { restarts };
    });
    const loaded = await statuses();
    progress(
      `${name}: loaded in ${((load.t1 - load.t0) / 1000).toFixed(1)} s (${load.restarts} restarts); objects ` +
        `${loaded.map((s) => fmtInt(s.objects)).join(', ')}; heaps ${loaded.map((s) => `${(s.heapUsed / 1048576).toFixed(0)} MB`).join(', ')}; ` +
        `settling ${settleMs} ms`,
    );
    await sleep(settleMs);

    // ---- sustained writes, to the leader (a follower forwards if the pointer is stale)
    const rand = rng(7);
    let noLeader = 0;
    const writeLoop = (inFlight, ms) =>
      closedLoop(
        inFlight,
        ms,
        () => ({
          id: 1 + Math.floor(rand() * N),
          age: 18 + Math.floor(rand() * 82),
          score: Math.round(rand() * 1e6) / 100,
        }),
        async (a) => {
          const target = leader ?? 1 + Math.floor(rand() * 3);
          if (!leader) noLeader++;
          try {
            await byId(target).call('propose', a, 10_000);
          } catch (err) {
            await sleep(10); // no hot loop while there is no leader
            throw err;
          }
        },
      );
    let writes;
    if (durationMs > 0) {
      writes = await phase(async () => ({ load: await writeLoop(concurrency, durationMs) }));
      writes.noLeader = noLeader;
      progress(
        `${name}: ${fmtInt(writes.load.opsPerSec)} writes/s, p99 ${fmtMs(writes.load.p99)} ms, ${writes.load.failed} failed; terms ` +
          `${load.before.map((s) => s.term).join('/')} -> ${writes.reports.map((r) => r.status.term).join('/')}`,
      );
    }

    // ---- synthetic stalls under a light load (4 in flight): a follower, then the leader, every 2 s
    let injected;
    if (inject) {
      const [followerMs, leaderMs] = inject;
      const gapMs = 2000;
      noLeader = 0;
      injected = await phase(async () => {
        const injections = [];
        const injecting = (async () => {
          for (let k = 0; k < injectCount; k++) {
            for (const who of ['follower', 'leader']) {
              await sleep(gapMs);
              const l = leader ?? 1;
              const target = who === 'leader' ? l : (l % 3) + 1;
              await byId(target).call('block', { ms: who === 'leader' ? leaderMs : followerMs });
            }
          }
        })();
        const [l] = await Promise.all([
          writeLoop(injectLoad, injectCount * 2 * gapMs + 1000),
          injecting,
        ]);
        return { load: l, injections };
      });
      injected.noLeader = noLeader;
      injected.label = `${injectCount} × ${followerMs} ms stall on a follower + ${injectCount} × ${leaderMs} ms on the leader, ${injectLoad} writes in flight`;
      progress(
        `${name}: injected stalls: terms ${injected.before.map((s) => s.term).join('/')} -> ` +
          `${injected.reports.map((r) => r.status.term).join('/')}`,
      );
    }
    return { name, v, N, load, writes, injected };
  } finally {
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- report
function summarise(r) {
  const nodes = r.reports.map((rep, i) => {
    const roles = rep.events.filter((e) => e.type === 'role');
    let prev = r.before[i].role;
    let candidacies = 0;
    let stepDowns = 0;
    let wins = 0;
    for (const e of roles) {
      if (e.role === 'candidate' && prev !== 'candidate') candidacies++;
      if (prev === 'leader' && e.role !== 'leader') stepDowns++;
      if (e.role === 'leader') wins++;
      prev = e.role;
    }
    const gcMax = Math.max(0, ...Object.values(rep.gc.byKind).map((k) => k.maxMs));
    const stallMax = Math.max(0, ...rep.stalls.map((s) => s.ms));
    const cpuMax = Math.max(0, ...rep.stalls.map((s) => s.cpuMs));
    const captures = rep.events.filter((e) => e.type === 'capture');
    const installs = rep.events.filter((e) => e.type === 'install').length;
    const slowApplies = rep.events.filter((e) => e.type === 'slow-apply');
    return {
      id: i + 1,
      termFrom: r.before[i].term,
      termTo: rep.status.term,
      candidacies,
      stepDowns,
      wins,
      gcMax,
      stallMax,
      cpuMax,
      stalls100: rep.stalls.filter((s) => s.ms >= 100).length,
      stalls200: rep.stalls.filter((s) => s.ms >= 200).length,
      gc50: rep.gcs.filter((g) => g.ms >= 50).length,
      gcTotal: rep.gc.totalMs,
      gcCount: rep.gc.count,
      byKind: rep.gc.byKind,
      loop: rep.loop,
      captures: captures.length,
      installs,
      slowApplies: slowApplies.length,
      slowMax: Math.max(0, ...slowApplies.map((e) => e.ms)),
      captureMax: Math.max(0, ...captures.map((c) => c.ms)),
      cpuShare: r.cpu.nodes[i] / (r.t1 - r.t0),
      heap: rep.status.heapUsed,
    };
  });
  const wins = nodes.reduce((a, n) => a + n.wins, 0);
  const terms = Math.max(...nodes.map((n) => n.termTo)) - Math.max(...nodes.map((n) => n.termFrom));
  const ours = r.cpu.nodes.reduce((a, b) => a + b, 0) + r.cpu.self;
  const others = (r.cpu.machine - ours) / (r.t1 - r.t0); // cores' worth of CPU other processes used
  return { nodes, wins, terms, others, machine: r.cpu.machine / (r.t1 - r.t0) };
}

// What overlapped a stall on its node: GC pauses inside it (ms), a capture running.
function explain(rep, st) {
  const from = st.t - st.ms;
  const gc = rep.gcs
    .filter((g) => g.t < st.t && g.t + g.ms > from)
    .reduce((a, g) => a + Math.min(st.t, g.t + g.ms) - Math.max(from, g.t), 0);
  const capture = rep.events.some((e) => e.type === 'capture' && e.t - e.ms < st.t && e.t > from);
  const slow = rep.events
    .filter((e) => e.type === 'slow-apply' && e.t <= st.t + 5 && e.t >= from)
    .reduce((a, e) => a + e.ms, 0);
  const install = rep.events.some((e) => e.type === 'install' && e.t >= from && e.t <= st.t + 250);
  return { gc, capture, slow, install };
}
const fmtStall = (st, x) =>
  `${fmtInt(st.ms)} ms (on CPU ${fmtInt(st.cpuMs)}, waiting for a CPU ${fmtInt(st.waitMs)}, ` +
  `GC ≥ 10 ms inside ${fmtInt(x.gc)}${x.slow ? `, applies ≥ 50 ms ${fmtInt(x.slow)}` : ''}${x.install ? ', snapshot installed' : ''}` +
  `${x.capture ? ', capture running' : ''})`;

// Each role change in the phase, in time order, with each node's longest stall in the
// second before it (ending at most 50 ms after it).
function timeline(r) {
  const rel = (t) => `+${((t - r.t0) / 1000).toFixed(2)} s`;
  const changes = r.reports.flatMap((rep, i) =>
    rep.events.filter((e) => e.type === 'role').map((e) => ({ e, i })),
  );
  changes.sort((a, b) => a.e.t - b.e.t);
  return changes.map(({ e, i }) => {
    const near = [];
    r.reports.forEach((other, j) => {
      const cands = other.stalls.filter((st) => st.t >= e.t - 1000 && st.t - st.ms <= e.t + 50);
      if (!cands.length) return;
      const st = cands.reduce((a, b) => (b.ms > a.ms ? b : a));
      near.push(`node ${j + 1} ${fmtStall(st, explain(other, st))} ending ${rel(st.t)}`);
    });
    return (
      `- ${rel(e.t)} node ${i + 1} -> ${e.role} (term ${e.term}${e.leader ? `, leader ${e.leader}` : ''}); longest stall in the second before: ` +
      `${near.length ? near.join('; ') : 'none ≥ 50 ms on any node'}`
    );
  });
}

// The phase's longest stalls over all nodes, each split into on-CPU / run-queue / GC.
function topStalls(r, k = 6) {
  const all = r.reports.flatMap((rep, i) => rep.stalls.map((st) => ({ st, i, rep })));
  all.sort((a, b) => b.st.ms - a.st.ms);
  const rel = (t) => `+${((t - r.t0) / 1000).toFixed(2)} s`;
  const sum = (f) => all.reduce((a, x) => a + f(x), 0);
  const lines = all
    .slice(0, k)
    .map(
      ({ st, i, rep }) =>
        `- node ${i + 1} at ${rel(st.t - st.ms)}: ${fmtStall(st, explain(rep, st))}`,
    );
  if (all.length) {
    lines.push(
      `- all ${all.length} stalls ≥ 50 ms together: ${fmtInt(sum((x) => x.st.ms))} ms, on CPU ${fmtInt(sum((x) => x.st.cpuMs))}, ` +
        `waiting for a CPU ${fmtInt(sum((x) => x.st.waitMs))}, GC ≥ 10 ms inside ${fmtInt(sum((x) => explain(x.rep, x.st).gc))}`,
    );
  }
  return lines;
}

function report(results, { N, durationMs, concurrency, started }) {
  const out = [];
  out.push(
    `### GC and stalls against elections: 3 nodes, ${fmtInt(N)} objects, ${durationMs / 1000} s of writes at ${concurrency} in flight`,
  );
  out.push('');
  out.push(
    "| variant | phase | rate | p50 ms | p99 ms | max ms | failed | leader changes | terms advanced | elections started (per node) | leader step-downs | longest stall ms (per node) | most on-CPU time in one stall ms (per node) | stalls ≥ 100 / ≥ 200 ms | longest GC pause ms (per node) | GC pauses ≥ 50 ms | other processes' CPU (cores) |",
  );
  out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|---|---:|---:|');
  const rows = [];
  for (const r of results) {
    rows.push({ r, label: `load, ${BULK} objects per command`, p: r.load, s: summarise(r.load) });
    if (r.writes) rows.push({ r, label: 'sustained writes', p: r.writes, s: summarise(r.writes) });
    if (r.injected)
      rows.push({ r, label: r.injected.label, p: r.injected, s: summarise(r.injected) });
  }
  for (const { r, label, p, s } of rows) {
    const per = (f) => s.nodes.map(f).join(' / ');
    const total = (f) => s.nodes.reduce((a, n) => a + f(n), 0);
    const l = p.load;
    const rate = l
      ? l.ops
        ? `${fmtInt(l.opsPerSec)} writes/s`
        : 'no writes'
      : `${fmtInt(r.N / ((p.t1 - p.t0) / 1000))} objects/s`;
    out.push(
      `| ${r.v.label} | ${label} | ${rate} | ${l ? fmtMs(l.p50) : '-'} | ${l ? fmtMs(l.p99) : '-'} | ${l ? fmtMs(l.max) : '-'} | ` +
        `${l ? fmtInt(l.failed) : `${p.restarts} restarts`} | **${s.wins}** | **${s.terms}** | ${per((n) => n.candidacies)} | ${total((n) => n.stepDowns)} | ` +
        `${per((n) => fmtInt(n.stallMax))} | ${per((n) => fmtInt(n.cpuMax))} | ${total((n) => n.stalls100)} / ${total((n) => n.stalls200)} | ${per((n) => fmtInt(n.gcMax))} | ` +
        `${total((n) => n.gc50)} | ${s.others.toFixed(2)} |`,
    );
  }
  out.push('');
  out.push(
    'Per node: GC by kind (count, total ms, max ms), event-loop delay (perf_hooks, 10 ms resolution), captures, CPU.',
  );
  out.push('');
  out.push(
    '| variant | phase | node | scavenge | mark-compact | incremental | GC time % | loop delay p99 / max ms | captures (max ms) | snapshots installed | applies ≥ 50 ms (max ms) | CPU (cores) | heapUsed MB at the end |',
  );
  out.push('|---|---|---:|---|---|---|---:|---|---|---:|---|---:|---:|');
  for (const { r, label, p, s } of rows) {
    for (const n of s.nodes) {
      const k = (name) => {
        const x = n.byKind[name];
        return x ? `${fmtInt(x.count)}, ${fmtInt(x.totalMs)}, ${fmtInt(x.maxMs)}` : '-';
      };
      out.push(
        `| ${r.v.label} | ${label} | ${n.id} | ${k('scavenge')} | ${k('mark-compact')} | ${k('incremental')} | ` +
          `${((100 * n.gcTotal) / (p.t1 - p.t0)).toFixed(1)} | ${fmtMs(n.loop.p99)} / ${fmtMs(n.loop.max)} | ${n.captures} (${fmtInt(n.captureMax)}) | ${n.installs} | ${n.slowApplies} (${fmtInt(n.slowMax)}) | ` +
          `${n.cpuShare.toFixed(2)} | ${fmtInt(n.heap / 1048576)} |`,
      );
    }
  }
  out.push('');
  for (const { r, label, p, s } of rows) {
    const lines = timeline(p);
    out.push(`Role changes, ${r.v.label}, ${label}: ${lines.length ? '' : 'none.'}`);
    out.push(...lines);
    const top = topStalls(p);
    out.push(
      `Longest stalls (gaps of a 10 ms ticker), ${r.v.label}, ${label}: ${top.length ? '' : 'none ≥ 50 ms.'}`,
    );
    out.push(...top);
    out.push(
      `(${((p.t1 - p.t0) / 1000).toFixed(0)} s; machine: ${s.machine.toFixed(2)} of ${cpus().length} cores busy, ` +
        `${s.others.toFixed(2)} of them other processes; load average at the end ${p.loadavg.map((x) => x.toFixed(2)).join(' ')}` +
        `${p.noLeader !== undefined ? `; writes sent with no known leader: ${p.noLeader}` : ''})`,
    );
    out.push('');
  }
  out.push(
    `raft ${versions.raft}, node ${process.version}, ${cpus().length} CPUs; total ${((now() - started) / 1000).toFixed(0)} s`,
  );
  console.log(out.join('\n'));
}

// ---------------------------------------------------------------- entry
if (arg('child') === 'node') {
  await nodeChild(JSON.parse(process.argv[process.argv.length - 1]));
} else {
  await main();
}

// Where one node's event loop stalls under a sustained write load over a large state: a
// single store (no peers, no other processes of ours), N objects loaded in bulk commands,
// then `--concurrency` writes in flight for `--duration` ms. Prints every stall of the JS
// thread >= 100 ms with what the store was doing at that moment (applied index, the
// engine's last snapshot, the background capture), its time on a CPU and waiting for one
// (schedstat), GC pauses inside it, then a summary. `--timestamps` also prints each stall's
// CLOCK_MONOTONIC window, for `perf record -k CLOCK_MONOTONIC` (docs/benchmarks.md).
// The engine's heartbeats run on this thread, so in a cluster a leader's stall longer than
// the election timeout can cost an election (docs/benchmarks.md, "GC and stalls").
//
//   node bench/loop-stalls.js                      1M objects, 50 s of writes
//   node bench/loop-stalls.js --objects=200000 --duration=20000
//   node bench/loop-stalls.js --duration=150000 --force-every=25
//
// `--force-every=S` makes the work happen whatever the machine's speed (captures start
// after objects/4 entries, engine snapshots after objects/2): every S seconds of writes, a
// capture (captureNow) and, S seconds later, an engine snapshot whose tail holds the
// entries of those S seconds (store.node.snapshot), in turn.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';

import { defineSchema, open } from '../dist/index.js';
import { arg, closedLoop, fmtInt, mainThreadSched, progress, quick, run } from './common.js';
import { makeUser, rng, users } from './users.js';

const N = Number(arg('objects') ?? (quick ? 200_000 : 1_000_000));
const durationMs = Number(arg('duration') ?? (quick ? 20_000 : 50_000));
const concurrency = Number(arg('concurrency') ?? 32);
const STALL_MS = 100;
const forceEveryS = Number(arg('force-every') ?? 0);

const schema = defineSchema({
  collections: { users: users() },
  commands: {
    bulk(s, { from, n }) {
      const rand = rng(from);
      for (let i = from; i < from + n; i++) s.users.insert(makeUser(i, rand));
    },
    touch: (s, { id }) => s.users.update(id, (u) => ({ ...u, score: u.score + 1 })),
  },
});

await run(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'prevail-stalls-'));
  const store = await open({ schema, dataDir: dir });
  try {
    const gcs = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcs.push([e.startTime, e.duration]);
    });
    observer.observe({ entryTypes: ['gc'] });
    for (let f = 0; f < N; f += 1000)
      await store.propose('bulk', { from: f, n: Math.min(1000, N - f) });
    progress(`loaded ${fmtInt(N)} objects`);
    const started = performance.now();
    const stalls = [];
    let last = performance.now();
    let lastMono = process.hrtime.bigint(); // CLOCK_MONOTONIC, to line stalls up with `perf record -k CLOCK_MONOTONIC`
    const sched = mainThreadSched();
    let lastSched = sched();
    const tick = setInterval(() => {
      const now = performance.now();
      const mono = process.hrtime.bigint();
      const sc = sched();
      if (now - last - 10 >= STALL_MS) {
        const s = store.status();
        const gc = gcs.filter(([t]) => t >= last - 5 && t <= now).reduce((a, [, d]) => a + d, 0);
        stalls.push({
          at: (last - started) / 1000,
          ms: now - last - 10,
          applied: s.appliedIndex,
          snapshot: s.snapshot.index,
          capture: s.capture.running ? 'running' : '-',
          gc,
          mono: [lastMono, mono],
          cpu: sc[0] - lastSched[0],
          wait: sc[1] - lastSched[1],
        });
      }
      last = now;
      lastMono = mono;
      lastSched = sc;
    }, 10);
    const forced = [];
    const force =
      forceEveryS > 0 &&
      setInterval(() => {
        const what = forced.length % 2 === 0 ? 'capture' : 'engine snapshot';
        forced.push(`${what} at ${((performance.now() - started) / 1000).toFixed(1)} s`);
        (what === 'capture' ? store.captureNow() : store.node.snapshot()).catch((err) =>
          progress(`${what} failed: ${err.message}`),
        );
      }, forceEveryS * 1000);
    const r = await closedLoop(
      concurrency,
      durationMs,
      () => ({ id: 1 + Math.floor(Math.random() * N) }),
      (a) => store.propose('touch', a),
    );
    clearInterval(tick);
    if (force) clearInterval(force);
    observer.disconnect();
    console.log(
      `\n### Event-loop stalls >= ${STALL_MS} ms: 1 node, ${fmtInt(N)} objects, ${concurrency} writes in flight for ${durationMs / 1000} s\n`,
    );
    if (forced.length) console.log(`Forced: ${forced.join(', ')}.\n`);
    console.log(
      '| at (s) | stall ms | on a CPU ms | waiting for a CPU ms | GC ms inside | applied | engine snapshot | capture |\n|---:|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const s of stalls) {
      console.log(
        `| ${s.at.toFixed(1)} | ${Math.round(s.ms)} | ${Math.round(s.cpu)} | ${Math.round(s.wait)} | ${Math.round(s.gc)} | ${fmtInt(s.applied)} | ${fmtInt(s.snapshot)} | ${s.capture} |`,
      );
    }
    if (arg('timestamps'))
      for (const s of stalls)
        console.log(`stall ${s.mono.map((t) => (Number(t) / 1e9).toFixed(6)).join(' ')}`);
    const longest = (key) => Math.round(stalls.reduce((m, s) => Math.max(m, s[key]), 0));
    const total = (key) => Math.round(stalls.reduce((a, s) => a + s[key], 0));
    console.log(
      `\n${stalls.length} stalls, longest ${longest('ms')} ms (most on a CPU in one: ${longest('cpu')} ms); in all ${total('ms')} ms, ` +
        `${total('cpu')} on a CPU, ${total('wait')} waiting for one; ${fmtInt(r.opsPerSec)} writes/s, p99 ${r.p99.toFixed(1)} ms`,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Online backup of a large single-node store under write load: how long store.backup() takes
// and how the writes' latency looks while it runs, against the same load without a backup;
// then a restore of that backup into a new data dir and the first open() of it.
//
//   node bench/backup.js                 1M users (npm run build:ts first)
//   node bench/backup.js --objects=200000 --concurrency=16 --duration=5000
//
// Writes: closed loop, `--concurrency` in flight, each an update of one random user (one
// fsync'd log entry each, as in bench/store.js). Rows: "no backup" is `--duration` ms of that
// load alone; "during backup" counts the writes that started while backup() ran, once with a
// fresh capture (the default) and once with `capture: false`. Prints a table; no assertions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

import { defineSchema, open } from '../dist/index.js';
import { restoreBackup } from '../dist/backup/restore.js';
import { makeUser, rng, users } from './users.js';
import { arg, fmtInt, fmtMs, progress, run, summarize } from './common.js';

const N = Number(arg('objects') ?? 1_000_000);
const CONCURRENCY = Number(arg('concurrency') ?? 16);
const DURATION = Number(arg('duration') ?? 5000);
const BULK = 1000;

const schema = defineSchema({
  collections: { users: users() },
  commands: {
    addUsers(s, a) {
      for (const u of a.users) s.users.insert(u);
      return a.users.length;
    },
    setScore(s, { id, score }) {
      s.users.update(id, { score });
    },
  },
});

async function load(store) {
  const rand = rng(42);
  const pending = [];
  for (let i = 0; i < N; i += BULK) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + BULK); j++) batch.push(makeUser(j, rand));
    pending.push(store.propose('addUsers', { users: batch }));
    if (pending.length >= 8) await pending.shift();
  }
  await Promise.all(pending);
}

// The write load until `stop()`: each write's start time and latency, and the loop's delay.
function writeLoad(store) {
  const rand = rng(7);
  const ops = [];
  let running = true;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const worker = async () => {
    while (running) {
      const t0 = performance.now();
      await store.propose('setScore', { id: 1 + Math.floor(rand() * N), score: rand() });
      ops.push([t0, performance.now() - t0]);
    }
  };
  const workers = Array.from({ length: CONCURRENCY }, worker);
  return {
    ops,
    loop,
    async stop() {
      running = false;
      await Promise.all(workers);
      loop.disable();
    },
  };
}

function row(label, ops, from, to, loopMaxMs) {
  const inside = ops.filter(([t0]) => t0 >= from && t0 < to).map(([, ms]) => ms);
  const s = summarize(inside, to - from);
  return {
    label,
    writes: s.ops,
    perSec: s.opsPerSec,
    p50: s.p50,
    p99: s.p99,
    max: s.max,
    loopMaxMs,
  };
}

async function main() {
  const root = mkdtempSync(join(tmpdir(), 'prevail-bench-backup-'));
  try {
    const store = await open({ schema, dataDir: join(root, 'src') });
    let t = performance.now();
    await load(store);
    progress(`loaded ${fmtInt(N)} users in ${fmtInt(performance.now() - t)} ms`);
    await store.captureNow(); // the background capture a store this size has made by now
    const rows = [];

    const quiet = writeLoad(store);
    await new Promise((r) => setTimeout(r, 500));
    quiet.loop.reset();
    const q0 = performance.now();
    await new Promise((r) => setTimeout(r, DURATION));
    const q1 = performance.now();
    await quiet.stop();
    rows.push(row('no backup', quiet.ops, q0, q1, quiet.loop.max / 1e6));

    const results = [];
    for (const capture of [true, false]) {
      const busy = writeLoad(store);
      await new Promise((r) => setTimeout(r, 500));
      busy.loop.reset();
      const b0 = performance.now();
      const result = await store.backup(join(root, `backups-${capture}`), { capture });
      const b1 = performance.now();
      const loopMax = busy.loop.max / 1e6;
      await busy.stop();
      rows.push(row(`during backup (capture: ${capture})`, busy.ops, b0, b1, loopMax));
      results.push({ capture, ...result });
    }
    const result = results[0];
    const applied = store.status().appliedIndex;
    await store.close();

    t = performance.now();
    const [port] = [29_000 + Math.floor(Math.random() * 1000)];
    const address = `127.0.0.1:${port}`;
    await restoreBackup({ backup: result.file, dataDir: join(root, 'restored'), id: 1, address });
    const restoreMs = performance.now() - t;
    t = performance.now();
    const copy = await open({ schema, dataDir: join(root, 'restored'), address });
    const openMs = performance.now() - t;
    const restored = copy.view.users.size;
    await copy.close();
    report({ results, rows, applied, restoreMs, openMs, restored });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function report({ results, rows, applied, restoreMs, openMs, restored }) {
  console.log(`\nbackup of ${fmtInt(N)} users, ${CONCURRENCY} writes in flight`);
  for (const r of results) {
    const mb = r.bytes / 1048576;
    console.log(
      `  backup (capture: ${r.capture}): ${fmtInt(r.durationMs)} ms, ${mb.toFixed(1)} MB ` +
        `(${(mb / (r.durationMs / 1000)).toFixed(1)} MB/s), at index ${fmtInt(r.index)}`,
    );
  }
  console.log(
    `  restore of the first: seeding ${fmtInt(restoreMs)} ms, first open ${fmtInt(openMs)} ms, ` +
      `${fmtInt(restored)} users (applied ${fmtInt(applied)} when the load stopped)\n`,
  );
  console.log('| load | writes | writes/s | p50 ms | p99 ms | max ms | loop max ms |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(
      `| ${r.label} | ${fmtInt(r.writes)} | ${fmtInt(r.perSec)} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ${fmtMs(r.loopMaxMs)} |`,
    );
}

await run(main);

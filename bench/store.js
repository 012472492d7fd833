// The object store against SQLite (better-sqlite3, WAL), side by side in the same run
// (see /work/shared/notes/anchors.md: claims are ratios against an anchor run in the same
// run, never absolute times). Prints markdown tables on stdout, progress on stderr.
//
//   node bench/store.js                 full run: 1M objects (~2 min on 2 cores)
//   node bench/store.js --quick         100k objects, shorter windows (~40 s)
//   node bench/store.js --objects=300000 --duration=2000 --warmup=300
//   node bench/store.js --concurrency=1,64
//   node bench/store.js --settle=0       no idle time before the restart child (default 2000 ms)
//   node bench/store.js --skip=commits,bare,reads,restart,stall,heap,heap-restored
//
// Sections:
//   1 commits   durable single-object inserts, N concurrent requesters: the store (embedded
//               single node, library defaults) vs SQLite WAL + synchronous=FULL, one row per
//               transaction. SQLite is synchronous: its N requesters are N async loops that
//               each wait for their turn (setImmediate) and then run one insert, so a
//               latency includes the wait behind the other requesters, as the store's does.
//   2 reads     point reads on a unique index and a range (age in [x, x+3), limit 100) over
//               the same objects in both; SQLite with its default cache and with a 1 GiB
//               cache + mmap (the favourable setting for it), plus two plain Map.get ceilings:
//               by integer id, and by the same email strings (Map<string, object>).
//   3 restart   open() to resolved (and to the first committed write) on a data dir holding
//               the loaded objects: a capture + engine snapshot, then a short log tail. In a
//               fresh child process (a restarted server), then again in the bench process.
//   4 stall     a steady write load (16 in flight): event-loop stall, longest gap between
//               commits and write p99, without any capture/snapshot, with back-to-back
//               captureNow() (incremental), with back-to-back full captures (every object
//               changed first), and with the library's default capture/snapshot cadence.
//   5 heap      heapUsed per object after gc, the store vs the same objects in a plain Map,
//               each in a fresh child process run with --expose-gc.
// This is a measurement, not a test: it never fails on a number.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { Packr } from 'msgpackr';

import { defineSchema, open, versions } from '../dist/index.js';
import { email, makeUser, rng, users } from './users.js';
import {
  arg,
  closedLoop,
  concurrencyArg,
  fmtInt,
  fmtMs,
  fmtRatio,
  fsyncAppend,
  progress,
  quick,
  run,
  skip,
  sleep,
  summarize,
  waitFor,
} from './common.js';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');

// ---------------------------------------------------------------- options
if (arg('help')) {
  console.log(
    'usage: node bench/store.js [--quick] [--objects=N] [--concurrency=1,16,64,256] [--duration=ms] [--warmup=ms] [--settle=ms]\n' +
      '       [--skip=commits,bare,reads,restart,stall,heap,heap-restored]',
  );
  process.exit(0);
}
const N = Number(arg('objects') ?? (quick ? 100_000 : 1_000_000));
const concurrencies = concurrencyArg('1,16,64,256');
const durationMs = Number(arg('duration') ?? (quick ? 1000 : 3000));
const warmupMs = Number(arg('warmup') ?? (quick ? 200 : 500));
const readMs = quick ? 500 : 1500;
const stallMs = quick ? 2000 : 5000;
const BULK = 1000; // objects per bulk command / SQLite transaction
const settleMs = Number(arg('settle') ?? 2000); // idle time before the restart child starts

// ---------------------------------------------------------------- data
const schema = defineSchema({
  collections: {
    users: users(),
  },
  commands: {
    addUser(s, u) {
      return s.users.insert(u).id;
    },
    addUsers(s, a) {
      for (const u of a.users) s.users.insert(u);
      return a.users.length;
    },
    // Section 4: one update per `step` ids, so that every part of the state changes.
    touch(s, { from, step, n }) {
      for (let id = from, k = 0; k < n; id += step, k++)
        if (s.users.get(id)) s.users.update(id, { score: 0 });
    },
  },
});

const SQL_SCHEMA =
  'CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, ' +
  'age INTEGER NOT NULL, score REAL NOT NULL); CREATE INDEX users_age ON users(age);';

function openSqlite(file, extra = []) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  for (const p of extra) db.pragma(p);
  return db;
}

// ---------------------------------------------------------------- helpers
const now = () => performance.now();

// Capture durations: each one when there are few, else the count, median and max.
function fmtCaptures(times) {
  if (times.length <= 6)
    return times.length ? `${times.length} (${times.map((t) => fmtInt(t)).join(', ')})` : '0';
  const sorted = Float64Array.from(times).sort();
  return `${fmtInt(times.length)} (median ${fmtMs(sorted[sorted.length >> 1])}, max ${fmtInt(sorted[sorted.length - 1])}; first ${fmtInt(times[0])})`;
}
const fmtMB = (b) => `${(b / 1048576).toFixed(1)} MB`;

function dirBytes(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

// Waits for the store(s) to lead, polling every 1 ms: section 3 times open() through it.
const leadership = (probe) => waitFor('leadership', probe, { pollMs: 1 });

// Keeps results alive so loops that only read are not optimised away.
let sink = 0; // eslint-disable-line @typescript-eslint/no-unused-vars -- written, never read, on purpose

// ================================================================ child: heap per object
// Runs in a fresh process with --expose-gc: builds N objects either in the store or in a
// plain Map, and prints heapUsed/arrayBuffers deltas after full GCs as one JSON line.
async function heapChild(kind, n) {
  const fullGc = async () => {
    for (let i = 0; i < 4; i++) {
      globalThis.gc();
      await sleep(10);
    }
  };
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
  const rand = rng(42);
  const batches = function* () {
    for (let i = 0; i < n; i += BULK) {
      const users = [];
      for (let j = i; j < Math.min(n, i + BULK); j++) users.push(makeUser(j, rand));
      yield users;
    }
  };
  let keep;
  let dir;
  if (kind === 'store' || kind === 'store-restored') {
    dir = mkdtempSync(join(tmpdir(), 'prevail-bench-heap-'));
    const store = await open({ schema, dataDir: dir, snapshotThreshold: 1e9, captureEvery: 1e9 });
    await leadership(() => store.node.isLeader);
    await store.propose('addUser', makeUser(-1, rng(1))); // warm every path once
    await fullGc();
    const before = process.memoryUsage();
    const pending = [];
    for (const users of batches()) {
      pending.push(store.propose('addUsers', { users }));
      if (pending.length >= 8) await pending.shift();
    }
    await Promise.all(pending);
    // Drop the log tail the store keeps for its next snapshot: a capture replaces it
    // (its serialised chunks are Buffers, outside heapUsed, reported as arrayBuffers).
    await store.captureNow();
    if (kind === 'store-restored') {
      // The same data after a restart: objects come from the snapshot's decoded chunks
      // rather than from insert(); measured against the heap with no store at all.
      await store.node.snapshot(120_000);
      const size = store.view.users.size;
      await store.close();
      await fullGc();
      const empty = process.memoryUsage();
      const again = await open({ schema, dataDir: dir, snapshotThreshold: 1e9, captureEvery: 1e9 });
      if (again.view.users.size !== size) throw new Error('restart lost objects');
      await fullGc();
      const after = process.memoryUsage();
      keep = again;
      process.stdout.write(
        `${JSON.stringify({
          kind,
          n: size - 1,
          heapUsed: after.heapUsed - empty.heapUsed,
          arrayBuffers: after.arrayBuffers - empty.arrayBuffers,
          rss: NaN,
        })}\n`,
      );
      sink += keep ? 1 : 0;
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    }
    await fullGc();
    const after = process.memoryUsage();
    keep = store;
    process.stdout.write(
      `${JSON.stringify({
        kind,
        n: store.view.users.size - 1,
        heapUsed: after.heapUsed - before.heapUsed,
        arrayBuffers: after.arrayBuffers - before.arrayBuffers,
        rss: after.rss - before.rss,
      })}\n`,
    );
  } else {
    // The same objects: decoded from msgpack like a command's arguments, so the strings
    // match, with the id added. map-literal builds each as an object literal (what an
    // application's own Map would hold); map-spread as { ...decoded, id }, the way the
    // store's insert() builds them, which V8 lays out differently (larger).
    await fullGc();
    const before = process.memoryUsage();
    const map = new Map();
    let id = 1;
    for (const users of batches()) {
      for (const u of packr.unpack(packr.pack(users))) {
        map.set(
          id,
          kind === 'map-spread'
            ? { ...u, id }
            : { name: u.name, email: u.email, age: u.age, score: u.score, id },
        );
        id++;
      }
    }
    await fullGc();
    const after = process.memoryUsage();
    keep = map;
    process.stdout.write(
      `${JSON.stringify({
        kind,
        n: map.size,
        heapUsed: after.heapUsed - before.heapUsed,
        arrayBuffers: after.arrayBuffers - before.arrayBuffers,
        rss: after.rss - before.rss,
      })}\n`,
    );
  }
  sink += keep ? 1 : 0;
  if (dir) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  process.exit(0);
}

if (arg('child') === 'heap') {
  await heapChild(String(arg('kind')), Number(arg('objects')));
}

// ================================================================ child: restart
// A restarted server: a fresh process opens the data dir (times from the start of open(),
// and from the start of the process), commits one write, prints one JSON line.
async function restartChild(dataDir) {
  const t0 = now();
  const store = await open({ schema, dataDir, snapshotThreshold: 1e9, captureEvery: 1e9 });
  const opened = now();
  await leadership(() => store.node.isLeader);
  await store.propose('addUser', makeUser(7_000_000, rng(5)));
  const firstWrite = now();
  const objects = store.view.users.size;
  await store.close();
  process.stdout.write(
    `${JSON.stringify({ openMs: opened - t0, firstWriteMs: firstWrite - t0, sinceStartMs: firstWrite, objects })}\n`,
  );
  process.exit(0);
}

if (arg('child') === 'restart') {
  await restartChild(String(arg('dir')));
}

// ================================================================ main process
const root = mkdtempSync(join(tmpdir(), 'prevail-bench-store-'));
process.on('exit', () => {
  try {
    rmSync(root, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// ---------------------------------------------------------------- anchor: fdatasync
const anchor = () => fsyncAppend({ parent: root, ms: quick ? 500 : 1000, warmupMs: 200 });

// ---------------------------------------------------------------- 1: durable commits
let nextUser = 10_000_000; // section-1 users: unique emails, disjoint from the loaded set

function storeCommits(store, concurrency, ms) {
  const rand = rng(nextUser);
  return closedLoop(
    concurrency,
    ms,
    () => makeUser(nextUser++, rand),
    (u) => store.propose('addUser', u),
  );
}

function sqliteCommits(insert, concurrency, ms) {
  const rand = rng(nextUser);
  return closedLoop(
    concurrency,
    ms,
    () => makeUser(nextUser++, rand),
    async (u) => {
      await new Promise(setImmediate); // wait for this requester's turn
      insert.run(u);
    },
  );
}

async function benchCommits() {
  const dir = mkdtempSync(join(root, 'commits-'));
  // The store as shipped (library defaults: a background capture every 4096 entries, an
  // engine snapshot every 8192), and, as a diagnostic only, the same store with captures
  // and snapshots off (thresholds at 1e9: its log would grow without bound).
  const store = await open({ schema, dataDir: join(dir, 'store') });
  const bare = await open({
    schema,
    dataDir: join(dir, 'bare'),
    snapshotThreshold: 1e9,
    captureEvery: 1e9,
  });
  await leadership(() => store.node.isLeader && bare.node.isLeader);
  const db = openSqlite(join(dir, 'commits.db'));
  db.exec(SQL_SCHEMA);
  const insert = db.prepare(
    'INSERT INTO users (name, email, age, score) VALUES (@name, @email, @age, @score)',
  );
  const rows = [];
  try {
    for (const c of concurrencies) {
      await sqliteCommits(insert, c, warmupMs);
      const s = await sqliteCommits(insert, c, durationMs);
      await storeCommits(store, c, warmupMs);
      const p = await storeCommits(store, c, durationMs);
      let b;
      if (!skip.has('bare')) {
        await storeCommits(bare, c, warmupMs);
        b = await storeCommits(bare, c, durationMs);
      }
      rows.push({ c, s, p, b });
      progress(
        `commits @${c}: store ${fmtInt(p.opsPerSec)}/s, sqlite ${fmtInt(s.opsPerSec)}/s` +
          `${b ? `, store without captures ${fmtInt(b.opsPerSec)}/s` : ''}`,
      );
    }
    const rowCount = db.prepare('SELECT count(*) AS n FROM users').get().n;
    return { rows, storeObjects: store.view.users.size, sqliteRows: rowCount };
  } finally {
    db.close();
    await store.close();
    await bare.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- 2: reads (and the load)
async function loadStore(store) {
  const rand = rng(42);
  const started = now();
  const pending = [];
  for (let i = 0; i < N; i += BULK) {
    const users = [];
    for (let j = i; j < Math.min(N, i + BULK); j++) users.push(makeUser(j, rand));
    pending.push(store.propose('addUsers', { users }));
    if (pending.length >= 8) await pending.shift();
  }
  await Promise.all(pending);
  return now() - started;
}

function loadSqlite(db) {
  const rand = rng(42);
  const insert = db.prepare(
    'INSERT INTO users (name, email, age, score) VALUES (@name, @email, @age, @score)',
  );
  const tx = db.transaction((users) => {
    for (const u of users) insert.run(u);
  });
  const started = now();
  for (let i = 0; i < N; i += BULK) {
    const users = [];
    for (let j = i; j < Math.min(N, i + BULK); j++) users.push(makeUser(j, rand));
    tx(users);
  }
  return now() - started;
}

// Calls fn(i) in batches of 1024 until ms have passed; returns calls/s.
function timed(ms, fn) {
  for (let i = 0; i < 20_000; i++) sink += fn(i) ? 1 : 0; // warm-up
  let i = 0;
  const started = now();
  let t;
  do {
    for (let k = 0; k < 1024; k++, i++) sink += fn(i) ? 1 : 0;
    t = now();
  } while (t - started < ms);
  return i / ((t - started) / 1000);
}

function benchReads(store, dbDefault, dbBig, plainMap, emailMap) {
  const rand = rng(7);
  const MASK = (1 << 17) - 1;
  const keys = Array.from({ length: MASK + 1 }, () => email(Math.floor(rand() * N)));
  const ids = Array.from({ length: MASK + 1 }, () => 1 + Math.floor(rand() * N));
  const lows = Array.from({ length: MASK + 1 }, () => 18 + Math.floor(rand() * 79));
  const pointDefault = dbDefault.prepare('SELECT * FROM users WHERE email = ?');
  const pointBig = dbBig.prepare('SELECT * FROM users WHERE email = ?');
  const rangeSql = 'SELECT * FROM users WHERE age >= ? AND age < ? ORDER BY age LIMIT 100';
  const rangeDefault = dbDefault.prepare(rangeSql);
  const rangeBig = dbBig.prepare(rangeSql);
  progress(
    `sqlite plans: ${dbDefault
      .prepare(`EXPLAIN QUERY PLAN ${'SELECT * FROM users WHERE email = ?'}`)
      .all('x')
      .map((r) => r.detail)
      .join('; ')}` +
      ` | ${dbDefault
        .prepare(`EXPLAIN QUERY PLAN ${rangeSql}`)
        .all(1, 2)
        .map((r) => r.detail)
        .join('; ')}`,
  );
  // Both sides must find every key and return full pages.
  const byEmail = store.view.users.byEmail;
  const byAge = store.view.users.byAge;
  for (let i = 0; i < 1000; i++) {
    const a = byEmail.get(keys[i]);
    const b = pointDefault.get(keys[i]);
    if (!a || !b || a.email !== b.email || a.age !== b.age)
      throw new Error(`point read mismatch for ${keys[i]}`);
    const ra = Array.from(byAge.range({ gte: lows[i], lt: lows[i] + 3, limit: 100 }));
    const rb = rangeDefault.all(lows[i], lows[i] + 3);
    if (ra.length !== 100 || rb.length !== 100 || ra[0].age !== rb[0].age)
      throw new Error('range read mismatch');
  }
  const point = {
    store: timed(readMs, (i) => byEmail.get(keys[i & MASK])),
    sqliteDefault: timed(readMs, (i) => pointDefault.get(keys[i & MASK])),
    sqliteBig: timed(readMs, (i) => pointBig.get(keys[i & MASK])),
    map: timed(readMs, (i) => plainMap.get(ids[i & MASK])),
    emailMap: timed(readMs, (i) => emailMap.get(keys[i & MASK])),
  };
  progress(
    `point reads: store ${fmtInt(point.store)}/s, sqlite ${fmtInt(point.sqliteDefault)}/s / ${fmtInt(point.sqliteBig)}/s, ` +
      `Map<string> ${fmtInt(point.emailMap)}/s, Map<int> ${fmtInt(point.map)}/s`,
  );
  const range = {
    store: timed(
      readMs,
      (i) =>
        Array.from(byAge.range({ gte: lows[i & MASK], lt: lows[i & MASK] + 3, limit: 100 })).length,
    ),
    sqliteDefault: timed(
      readMs,
      (i) => rangeDefault.all(lows[i & MASK], lows[i & MASK] + 3).length,
    ),
    sqliteBig: timed(readMs, (i) => rangeBig.all(lows[i & MASK], lows[i & MASK] + 3).length),
  };
  progress(
    `range reads: store ${fmtInt(range.store)}/s, sqlite ${fmtInt(range.sqliteDefault)}/s / ${fmtInt(range.sqliteBig)}/s`,
  );
  return { point, range };
}

// ---------------------------------------------------------------- 4: stalls under capture
// A steady write load at `inflight`; measures the event loop (histogram max and the max gap
// between ticks of a 1 ms interval), the longest gap between two commits, and latencies.
// With `full`, before each capture one object per 256 ids is updated (in commands of 500
// updates), so that the capture serialises every object again (captures are incremental:
// parts of the state without changes keep their serialised form).
async function steadyLoad(store, inflight, ms, { captures = false, full = false } = {}) {
  const rand = rng(nextUser);
  const hist = monitorEventLoopDelay({ resolution: 1 });
  let lastTick = now();
  let maxTick = 0;
  const ticker = setInterval(() => {
    const t = now();
    if (t - lastTick > maxTick) maxTick = t - lastTick;
    lastTick = t;
  }, 1);
  const captureTimes = [];
  let stopCaptures = false;
  let captureLoop = Promise.resolve();
  if (captures) {
    captureLoop = (async () => {
      while (!stopCaptures) {
        if (full) {
          const size = store.view.users.size + 1000;
          for (let from = 1; from < size; from += 256 * 500)
            await store.propose('touch', { from, step: 256, n: 500 });
        }
        const t = now();
        await store.captureNow();
        captureTimes.push(now() - t);
      }
    })();
  }
  const latencies = [];
  let failed = 0;
  let lastCommit = now();
  let maxCommitGap = 0;
  let sizeAtGap = 0;
  hist.enable();
  const started = now();
  const deadline = started + ms;
  async function worker() {
    // With captures on, the window lasts at least until one whole capture has completed.
    while (now() < deadline || (captures && captureTimes.length === 0)) {
      const u = makeUser(nextUser++, rand);
      const t0 = now();
      try {
        await store.propose('addUser', u);
      } catch {
        failed++;
        continue;
      }
      const t = now();
      latencies.push(t - t0);
      if (t - lastCommit > maxCommitGap) {
        maxCommitGap = t - lastCommit;
        sizeAtGap = store.view.users.size;
      }
      lastCommit = t;
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker));
  const elapsed = now() - started;
  hist.disable();
  clearInterval(ticker);
  stopCaptures = true;
  await captureLoop;
  return {
    ...summarize(latencies, elapsed, failed),
    loopMax: hist.max / 1e6,
    tickMax: maxTick,
    maxCommitGap,
    sizeAtGap,
    sizeAfter: store.view.users.size,
    captureTimes,
  };
}

// ---------------------------------------------------------------- 2-4 on one data set
async function benchDataset() {
  const dir = mkdtempSync(join(root, 'dataset-'));
  const dataDir = join(dir, 'store');
  const out = {};
  // Captures and engine snapshots only when asked for, so the load and the reads run
  // without background work and the snapshot below is one we know about.
  const manual = { schema, dataDir, snapshotThreshold: 1e9, captureEvery: 1e9 };
  let store = await open(manual);
  await leadership(() => store.node.isLeader);
  const dbFile = join(dir, 'users.db');
  const db = openSqlite(dbFile);
  db.exec(SQL_SCHEMA);
  try {
    out.loadStoreMs = await loadStore(store);
    progress(
      `loaded ${fmtInt(store.view.users.size)} objects into the store in ${fmtInt(out.loadStoreMs)} ms`,
    );
    out.loadSqliteMs = loadSqlite(db);
    progress(`loaded ${fmtInt(N)} rows into sqlite in ${fmtInt(out.loadSqliteMs)} ms`);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.exec('ANALYZE');

    if (!skip.has('reads')) {
      const dbBig = openSqlite(dbFile, ['cache_size = -1048576', 'mmap_size = 1073741824']);
      // A plain Map of the same objects, for a ceiling (shares the store's objects).
      const plainMap = new Map();
      const emailMap = new Map();
      for (const u of store.view.users.values()) {
        plainMap.set(u.id, u);
        emailMap.set(u.email, u);
      }
      dbBig.prepare('SELECT count(*), sum(age) FROM users INDEXED BY users_age').get(); // warm its cache
      dbBig.prepare("SELECT count(*) FROM users WHERE email > ''").get();
      out.reads = benchReads(store, db, dbBig, plainMap, emailMap);
      dbBig.close();
    }

    // ---- 3: restart from a capture + engine snapshot + a short tail
    if (!skip.has('restart') || !skip.has('stall')) {
      const t0 = now();
      const captured = await store.captureNow();
      out.captureMs = now() - t0;
      const rand = rng(99);
      for (let i = 0; i < 200; i++) await store.propose('addUser', makeUser(5_000_000 + i, rand)); // tail inside the snapshot
      const snap = await store.node.snapshot(120_000);
      for (let i = 200; i < 300; i++) await store.propose('addUser', makeUser(5_000_000 + i, rand)); // log after it
      const st = store.status();
      if (!(st.snapshot.index > 0)) throw new Error('no engine snapshot was taken');
      out.snapshot = { capturedAt: captured, index: snap.index, lastIndex: st.lastIndex };
      const objects = store.view.users.size;
      await store.close();
      store = null;
      out.dataDirBytes = dirBytes(dataDir);
      progress(
        `capture ${fmtInt(out.captureMs)} ms at index ${captured}; snapshot at ${snap.index}, last index ${st.lastIndex}, ` +
          `data dir ${fmtMB(out.dataDirBytes)}`,
      );

      // A restart proper: a fresh process (as a restarted server), then, for comparison,
      // open() again in this process right after (whose heap still holds the closed store's
      // objects for a few ms after close(), and everything this bench made before).
      // Let this process's background GC (sweeping the closed store's million objects)
      // finish first, so that its threads do not share the 2 cores with the restarted one.
      await sleep(settleMs);
      const script = fileURLToPath(import.meta.url);
      const child = spawnSync(process.execPath, [script, '--child=restart', `--dir=${dataDir}`], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        timeout: 300_000,
      });
      if (child.status !== 0)
        throw new Error(`restart child failed: ${child.status ?? child.signal}`);
      out.restartChild = JSON.parse(child.stdout.trim().split('\n').pop());
      if (out.restartChild.objects !== objects + 1)
        throw new Error(
          `the restarted process had ${out.restartChild.objects} objects, expected ${objects + 1}`,
        );
      progress(
        `restart (fresh process): open ${fmtInt(out.restartChild.openMs)} ms, first write ${fmtInt(out.restartChild.firstWriteMs)} ms, ` +
          `${fmtInt(out.restartChild.sinceStartMs)} ms since the process started`,
      );
      const t1 = now();
      store = await open(manual);
      const opened = now();
      await leadership(() => store.node.isLeader);
      await store.propose('addUser', makeUser(6_000_000, rand));
      const firstWrite = now();
      if (store.view.users.size !== objects + 2 || !store.view.users.byEmail.get(email(N - 1))) {
        throw new Error(
          `restart restored ${store.view.users.size} objects, expected ${objects + 2}`,
        );
      }
      const restoredSnapshot = store.status().snapshot.index;
      if (restoredSnapshot < snap.index)
        throw new Error('restart did not come back with the snapshot');
      out.restart = {
        openMs: opened - t1,
        firstWriteMs: firstWrite - t1,
        objects: store.view.users.size,
      };
      progress(
        `restart (in this process): open ${fmtInt(out.restart.openMs)} ms, first write ${fmtInt(out.restart.firstWriteMs)} ms`,
      );

      // SQLite side: open the same-sized database and answer the first indexed read.
      const t2 = now();
      const db2 = openSqlite(dbFile);
      sink += db2.prepare('SELECT * FROM users WHERE email = ?').get(email(N - 1)) ? 1 : 0;
      out.sqliteOpenMs = now() - t2;
      db2.close();
      out.sqliteBytes = statSync(dbFile).size;
    }

    // ---- 4: stalls with and without a capture, on the reopened store (no automatic
    // captures or snapshots: thresholds at 1e9)
    if (!skip.has('stall')) {
      const inflight = 16;
      await steadyLoad(store, inflight, warmupMs);
      const before = store.status().snapshot.index;
      out.quiet = await steadyLoad(store, inflight, stallMs);
      if (store.status().snapshot.index !== before)
        throw new Error('an engine snapshot ran in the quiet window');
      progress(
        `no capture: p99 ${fmtMs(out.quiet.p99)} ms, loop max ${fmtMs(out.quiet.loopMax)} ms`,
      );
      out.capturing = await steadyLoad(store, inflight, stallMs, { captures: true });
      progress(
        `captures: p99 ${fmtMs(out.capturing.p99)} ms, loop max ${fmtMs(out.capturing.loopMax)} ms, ` +
          `captures ${fmtCaptures(out.capturing.captureTimes)} ms`,
      );
      out.full = await steadyLoad(store, inflight, stallMs, { captures: true, full: true });
      progress(
        `full captures: p99 ${fmtMs(out.full.p99)} ms, loop max ${fmtMs(out.full.loopMax)} ms, ` +
          `captures ${fmtCaptures(out.full.captureTimes)} ms`,
      );
      await store.close();
      store = null;

      // Library defaults: a capture every 4096 entries, an engine snapshot every 8192.
      const t3 = now();
      store = await open({ schema, dataDir });
      out.restart2Ms = now() - t3;
      await leadership(() => store.node.isLeader);
      const captures = [];
      store.on('capture', (e) => captures.push(e.durationMs));
      const snapBefore = store.status().snapshot.index;
      out.defaults = await steadyLoad(store, inflight, stallMs);
      const snapAfter = store.status().snapshot.index;
      out.defaults.captureTimes = captures;
      out.defaults.snapshotAdvanced = snapAfter > snapBefore;
      out.defaults.snapshotIndex = snapAfter;
      progress(
        `defaults: p99 ${fmtMs(out.defaults.p99)} ms, loop max ${fmtMs(out.defaults.loopMax)} ms, ` +
          `${captures.length} captures, snapshot ${snapBefore} -> ${snapAfter}`,
      );
    }
  } finally {
    db.close();
    if (store) await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

// ---------------------------------------------------------------- 5: heap per object
function heapRun(kind) {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', script, '--child=heap', `--kind=${kind}`, `--objects=${N}`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 },
  );
  if (r.status !== 0) throw new Error(`heap child (${kind}) failed: ${r.status ?? r.signal}`);
  const line = r.stdout.trim().split('\n').pop();
  return JSON.parse(line);
}

// ---------------------------------------------------------------- report
async function main() {
  const started = now();
  process.stderr.write(
    `prevail bench: store vs better-sqlite3, raft ${versions.raft}, node ${process.version}, ` +
      `${cpus().length} CPUs, temp dir ${root}\n  ${fmtInt(N)} objects, window ${durationMs} ms, warm-up ${warmupMs} ms` +
      `${quick ? ' (quick)' : ''}\n`,
  );
  const sqliteVersion = new Database(':memory:').prepare('SELECT sqlite_version() AS v').get().v;
  const out = [];
  const ratios = [];

  const append = anchor();
  let commits;
  if (!skip.has('commits')) commits = await benchCommits();
  let ds;
  if (!(skip.has('reads') && skip.has('restart') && skip.has('stall'))) ds = await benchDataset();
  let heap;
  if (!skip.has('heap')) {
    const map = heapRun('map-literal');
    progress(`heap, plain Map of literals: ${fmtInt(map.heapUsed / map.n)} B/object`);
    const spread = heapRun('map-spread');
    progress(`heap, plain Map of spread copies: ${fmtInt(spread.heapUsed / spread.n)} B/object`);
    const store = heapRun('store');
    progress(`heap, store: ${fmtInt(store.heapUsed / store.n)} B/object`);
    const restored = skip.has('heap-restored') ? undefined : heapRun('store-restored');
    if (restored)
      progress(`heap, store after restart: ${fmtInt(restored.heapUsed / restored.n)} B/object`);
    heap = { map, spread, store, restored };
  }
  const appendEnd = anchor();

  out.push(
    `Disk anchor: fdatasync append 4 KiB ${fmtInt(append.opsPerSec)}/s (p50 ${fmtMs(append.p50)} ms) at the start, ` +
      `${fmtInt(appendEnd.opsPerSec)}/s (p50 ${fmtMs(appendEnd.p50)} ms) at the end.`,
  );
  out.push('');

  if (commits) {
    out.push('### 1. Durable commits, one object per commit');
    out.push('');
    out.push(
      '| requesters | store commits/s | p50 ms | p99 ms | SQLite commits/s | p50 ms | p99 ms | store / SQLite |',
    );
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const { c, s, p } of commits.rows) {
      const f = (r) => (r.failed ? ` (${r.failed} failed)` : '');
      out.push(
        `| ${c} | ${fmtInt(p.opsPerSec)}${f(p)} | ${fmtMs(p.p50)} | ${fmtMs(p.p99)} | ${fmtInt(s.opsPerSec)}${f(s)} | ` +
          `${fmtMs(s.p50)} | ${fmtMs(s.p99)} | **${fmtRatio(p.opsPerSec / s.opsPerSec)}×** |`,
      );
    }
    out.push('');
    out.push(
      `(${fmtInt(commits.storeObjects)} objects / ${fmtInt(commits.sqliteRows)} rows at the end, both starting empty.)`,
    );
    out.push('');
    if (commits.rows.some((r) => r.b)) {
      out.push(
        'Diagnostic, not a configuration to run: the same store with background captures and engine snapshots off',
      );
      out.push('(`captureEvery` and `snapshotThreshold` 1e9, so its log grows without bound):');
      out.push('');
      out.push('| requesters | commits/s | p50 ms | p99 ms | / SQLite | / store with defaults |');
      out.push('|---:|---:|---:|---:|---:|---:|');
      for (const { c, s, p, b } of commits.rows) {
        if (b)
          out.push(
            `| ${c} | ${fmtInt(b.opsPerSec)} | ${fmtMs(b.p50)} | ${fmtMs(b.p99)} | ${fmtRatio(b.opsPerSec / s.opsPerSec)}× | ${fmtRatio(b.opsPerSec / p.opsPerSec)}× |`,
          );
      }
      out.push('');
    }
    const at64 = commits.rows.find((r) => r.c === 64);
    if (at64)
      ratios.push(
        `- commits/s at 64 requesters, store / SQLite: **${fmtRatio(at64.p.opsPerSec / at64.s.opsPerSec)}×** (goal ≥ 5×)`,
      );
  }

  if (ds) {
    out.push(`### 2. Reads over ${fmtInt(N)} objects`);
    out.push('');
    out.push(
      `Bulk load (${BULK} per command / transaction): store ${fmtInt(N / (ds.loadStoreMs / 1000))} objects/s, ` +
        `SQLite ${fmtInt(N / (ds.loadSqliteMs / 1000))} rows/s (store / SQLite ${fmtRatio(ds.loadSqliteMs / ds.loadStoreMs)}×).`,
    );
    out.push('');
    if (ds.reads) {
      const { point, range } = ds.reads;
      out.push(
        '| read | store/s | SQLite/s (default cache) | SQLite/s (1 GiB cache + mmap) | store / SQLite default | store / SQLite big cache |',
      );
      out.push('|---|---:|---:|---:|---:|---:|');
      out.push(
        `| point, unique index on email | ${fmtInt(point.store)} | ${fmtInt(point.sqliteDefault)} | ${fmtInt(point.sqliteBig)} | ` +
          `**${fmtRatio(point.store / point.sqliteDefault)}×** | **${fmtRatio(point.store / point.sqliteBig)}×** |`,
      );
      out.push(
        `| range, age in [x, x+3), limit 100 | ${fmtInt(range.store)} | ${fmtInt(range.sqliteDefault)} | ${fmtInt(range.sqliteBig)} | ` +
          `**${fmtRatio(range.store / range.sqliteDefault)}×** | **${fmtRatio(range.store / range.sqliteBig)}×** |`,
      );
      out.push('');
      out.push(
        `Ceilings on the same objects and keys: a plain \`Map<string, object>\` keyed by their email strings ` +
          `${fmtInt(point.emailMap)}/s (${fmtRatio(point.emailMap / point.sqliteDefault)}× SQLite default cache; ` +
          `store / this Map = ${fmtRatio(point.store / point.emailMap)}); \`Map.get\` by integer id ${fmtInt(point.map)}/s ` +
          `(store / it = ${fmtRatio(point.store / point.map)}).`,
      );
      out.push('');
      ratios.push(
        `- point reads, store / SQLite: **${fmtRatio(point.store / point.sqliteDefault)}×** default cache, ` +
          `**${fmtRatio(point.store / point.sqliteBig)}×** 1 GiB cache + mmap (goal ≥ 20×)`,
      );
      ratios.push(
        `- range reads (100 rows), store / SQLite: ${fmtRatio(range.store / range.sqliteDefault)}× default cache, ` +
          `${fmtRatio(range.store / range.sqliteBig)}× big cache`,
      );
    }
    if (ds.restart) {
      const rc = ds.restartChild;
      out.push(`### 3. Restart to ready, ${fmtInt(rc.objects - 1)} objects`);
      out.push('');
      out.push('| | ms |');
      out.push('|---|---:|');
      out.push(
        `| store, fresh process: \`open()\` to resolved (snapshot at index ${ds.snapshot.index}, capture at ${ds.snapshot.capturedAt}, ` +
          `log to ${ds.snapshot.lastIndex}; data dir ${fmtMB(ds.dataDirBytes)}) | **${fmtInt(rc.openMs)}** |`,
      );
      out.push(
        `| store, fresh process: \`open()\` to first committed write | ${fmtInt(rc.firstWriteMs)} |`,
      );
      out.push(
        `| store, fresh process: process start to first committed write (node startup and imports included) | ${fmtInt(rc.sinceStartMs)} |`,
      );
      out.push(
        `| store, in the bench process right after \`close()\`: \`open()\` to resolved | ${fmtInt(ds.restart.openMs)} |`,
      );
      if (ds.restart2Ms !== undefined)
        out.push(
          `| store: \`open()\` again (section 4's defaults run) | ${fmtInt(ds.restart2Ms)} |`,
        );
      out.push(
        `| SQLite: open + first indexed read (${fmtMB(ds.sqliteBytes)} file) | ${fmtMs(ds.sqliteOpenMs)} |`,
      );
      out.push(
        `| store: the capture that the snapshot carries (background, for reference) | ${fmtInt(ds.captureMs)} |`,
      );
      out.push('');
      ratios.push(
        `- restart: ${fmtInt(rc.openMs)} ms to open ${fmtInt(rc.objects - 1)} objects in a fresh process ` +
          `(${fmtRatio((rc.openMs * 1000) / rc.objects)} µs per object; goal ≤ 1.5 s), ${fmtInt(ds.restart.openMs)} ms in the bench process; ` +
          `SQLite opens in ${fmtMs(ds.sqliteOpenMs)} ms`,
      );
    }
    if (ds.quiet) {
      out.push(
        `### 4. Stalls under a steady write load (16 in flight) with ${fmtInt(ds.restart?.objects ?? N)} objects`,
      );
      out.push('');
      out.push(
        '| background work | commits/s | p50 ms | p99 ms | max ms | event-loop delay max ms | max 1 ms-tick gap ms | longest gap between commits ms (objects then) | captures (ms) |',
      );
      out.push('|---|---:|---:|---:|---:|---:|---:|---:|---|');
      const row = (label, r) =>
        `| ${label} | ${fmtInt(r.opsPerSec)} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ` +
        `${fmtMs(r.loopMax)} | ${fmtMs(r.tickMax)} | ${fmtMs(r.maxCommitGap)} (${fmtInt(r.sizeAtGap)}) | ` +
        `${fmtCaptures(r.captureTimes)} |`;
      out.push(row('none (captures and snapshots off)', ds.quiet));
      out.push(
        row(
          'back-to-back `captureNow()` (incremental: the chunks new objects went to)',
          ds.capturing,
        ),
      );
      if (ds.full)
        out.push(
          row(
            'back-to-back full captures (1 update per 256 ids before each: every object re-serialised)',
            ds.full,
          ),
        );
      if (ds.defaults) {
        out.push(
          row(
            `library defaults (capture / 4096, snapshot / 8192 entries${ds.defaults.snapshotAdvanced ? '; snapshots taken' : '; no snapshot finished'})`,
            ds.defaults,
          ),
        );
      }
      out.push('');
      ratios.push(
        `- under back-to-back captures: event-loop stall max ${fmtMs(ds.capturing.loopMax)} ms (goal ≤ 50 ms), ` +
          `write p99 ${fmtRatio(ds.capturing.p99 / ds.quiet.p99)}× the no-capture p99 (goal ≤ 2×)`,
      );
      if (ds.full) {
        ratios.push(
          `- under back-to-back full captures (${fmtInt(ds.restart?.objects ?? N)}+ objects each): event-loop stall max ` +
            `${fmtMs(ds.full.loopMax)} ms, write p99 ${fmtRatio(ds.full.p99 / ds.quiet.p99)}× the no-capture p99`,
        );
      }
      if (ds.defaults) {
        ratios.push(
          `- library defaults: event-loop stall max ${fmtMs(ds.defaults.loopMax)} ms, ` +
            `write p99 ${fmtRatio(ds.defaults.p99 / ds.quiet.p99)}× the no-capture p99`,
        );
      }
    }
  }

  if (heap) {
    out.push(
      `### 5. Heap per object (${fmtInt(heap.store.n)} objects, heapUsed after gc, fresh process each)`,
    );
    out.push('');
    out.push('| | heapUsed bytes/object | arrayBuffers bytes/object | RSS bytes/object |');
    out.push('|---|---:|---:|---:|');
    const per = (h) => h.heapUsed / h.n;
    for (const [label, h] of [
      ['plain Map, objects built as literals `{ name, email, age, score, id }`', heap.map],
      [
        "plain Map, objects built as `{ ...decoded, id }` (as the store's insert does)",
        heap.spread,
      ],
      ['store (unique + sorted index), objects inserted by commands, after a capture', heap.store],
      ['store, the same data after a restart (objects decoded from the snapshot)', heap.restored],
    ]) {
      if (h)
        out.push(
          `| ${label} | ${fmtInt(per(h))} | ${fmtInt(h.arrayBuffers / h.n)} | ${h.rss == null ? '-' : fmtInt(h.rss / h.n)} |`,
        );
    }
    out.push('');
    ratios.push(
      `- heap per object, store / plain Map of literals: **${fmtRatio(per(heap.store) / per(heap.map))}×** (goal ≤ 1.5×); ` +
        `store / Map of spread copies: ${fmtRatio(per(heap.store) / per(heap.spread))}×; ` +
        `spread copies / literals: ${fmtRatio(per(heap.spread) / per(heap.map))}×` +
        `${heap.restored ? `; store after restart / literals: ${fmtRatio(per(heap.restored) / per(heap.map))}×` : ''}`,
    );
  }

  out.push('Ratios (same run):');
  out.push(...ratios);
  out.push('');
  out.push(
    `raft ${versions.raft}, SQLite ${sqliteVersion} (better-sqlite3, WAL, synchronous=FULL), node ${process.version}, ` +
      `${cpus().length} CPUs; ${fmtInt(N)} objects; total ${((now() - started) / 1000).toFixed(1)} s`,
  );
  console.log(out.join('\n'));
}

await run(main);

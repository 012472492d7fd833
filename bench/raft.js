// Raft proposal throughput and latency, printed next to the disk's fdatasync floor
// measured in the same run, on the same filesystem (see /work/shared/notes/anchors.md:
// claims are ratios against an anchor run side by side, never absolute times).
//
//   node bench/raft.js                      full run (~1 min on 2 cores)
//   node bench/raft.js --quick              shorter windows (~20 s)
//   node bench/raft.js --concurrency=1,64   choose the in-flight levels
//   BENCH_CONCURRENCY=1,16 node bench/raft.js
//   node bench/raft.js --duration=3000 --warmup=1000   window lengths in ms
//   node bench/raft.js --snapshot-threshold=1000000     override the library default (8192)
//   node bench/raft.js --skip=fsync,1,1child,3          leave setups out
//   node bench/raft.js --tls --concurrency=16,64 --repeat=5
//        the member transport's cost alone: 3 nodes, child, with mutual TLS (certificates by
//        lib/certs) against the same with `insecure` (the engine's own TCP transport), the
//        pair interleaved --repeat times on fresh clusters; medians
//
// Setups:
//   fdatasync append      4 KiB write + fdatasync, file growing (the anchor)
//   fdatasync overwrite   rewrite one preallocated 4 KiB block + fdatasync
//   1 node, in-process    RaftNode in this process, trivial FSM (counter), 8-byte payloads
//   1 node, child         test/fixtures/node-process.mjs, load run inside that process
//   3 nodes, child        three fixture processes on loopback, load run inside the leader
//                         (insecure: the engine's TCP transport; with --tls also over mTLS)
// The fixture FSM does JSON.parse + sha256 + Map.set per entry (~50-byte JSON commands);
// the two "child" rows share it, so their ratio isolates replication.
// This is a measurement, not a test: it never fails on a number.
import { fdatasyncSync, mkdtempSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { RaftNode, versions } from '../dist/index.js';
import {
  Child,
  arg,
  closedLoop,
  concurrencyArg,
  fmtInt,
  fmtMs,
  fmtRatio,
  freePorts,
  fsyncAppend,
  fsyncLoop,
  killChildren,
  medianRows,
  progress,
  quick,
  run,
  skip,
  summarize,
  waitFor,
  writeBenchCerts,
} from './common.js';

// ---------------------------------------------------------------- options
if (arg('help')) {
  console.log(
    'usage: node bench/raft.js [--quick] [--concurrency=1,16,256,1024] [--duration=ms] [--warmup=ms]\n' +
      '       [--skip=fsync,1,1child,3] [--snapshot-threshold=N] [--tls [--repeat=N]]\n' +
      '       (env: BENCH_CONCURRENCY, BENCH_DURATION_MS, BENCH_WARMUP_MS)',
  );
  process.exit(0);
}
const concurrencies = concurrencyArg(process.env.BENCH_CONCURRENCY ?? '1,16,256,1024');
if (concurrencies.length === 0) throw new Error('no valid concurrency given');
const durationMs = Number(arg('duration') ?? process.env.BENCH_DURATION_MS ?? (quick ? 600 : 3000));
const warmupMs = Number(arg('warmup') ?? process.env.BENCH_WARMUP_MS ?? (quick ? 200 : 500));
const fsyncMs = quick ? 700 : 2000;
// Passed to every RaftNode when given (default: the library's, 8192 entries).
const snapshotThreshold = arg('snapshot-threshold') ? Number(arg('snapshot-threshold')) : undefined;
const nodeOptions = snapshotThreshold ? { snapshotThreshold } : {};
const tlsMode = Boolean(arg('tls'));
const repeat = Number(arg('repeat') ?? (tlsMode ? 3 : 1));

// ---------------------------------------------------------------- helpers
const root = mkdtempSync(join(tmpdir(), 'prevail-bench-'));
process.on('exit', () => {
  killChildren();
  try {
    rmSync(root, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killChildren();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- anchor: fdatasync
// Both anchors run for fsyncMs after a warm-up of a quarter of that (at most 300 ms).
const anchor = { parent: root, ms: fsyncMs, warmupMs: Math.min(300, fsyncMs / 4) };

function fsyncOverwrite() {
  return fsyncLoop(
    { ...anchor, label: 'fdatasync overwrite' },
    (fd, block) => {
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
    },
    (fd, block) => {
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
      return 0;
    },
  );
}

// ---------------------------------------------------------------- 1 node, in-process
function inProcessLoad(node, concurrency, ms) {
  const payload = new Uint8Array(8).fill(0x61);
  return closedLoop(
    concurrency,
    ms,
    () => payload,
    (p) => node.propose(p),
  );
}

async function benchInProcess() {
  const [port] = await freePorts(1);
  const dataDir = mkdtempSync(join(root, 'inproc-'));
  let counter = 0;
  const fsm = {
    apply() {
      counter++;
      return counter;
    },
    snapshot() {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, counter);
      return b;
    },
    restore(data) {
      counter = new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0);
    },
  };
  const node = await RaftNode.start({
    id: 1,
    address: `127.0.0.1:${port}`,
    dataDir,
    fsm,
    ...nodeOptions,
  });
  const rows = [];
  try {
    await waitFor('the single node to lead', () => node.isLeader);
    for (const c of concurrencies) {
      await inProcessLoad(node, c, warmupMs);
      const r = await inProcessLoad(node, c, durationMs);
      rows.push({ setup: '1 node, in-process', inflight: c, ...r });
      progress(`1 node in-process @${c}: ${Math.round(r.opsPerSec)}/s`);
    }
  } finally {
    await node.close({ drainTimeoutMs: 2000 });
  }
  return rows;
}

// ---------------------------------------------------------------- child-process clusters
// certs (writeBenchCerts) gives the members mutual TLS; without, a cluster is `insecure`.
async function benchChildren(n, certs) {
  const label = `${n === 1 ? '1 node' : `${n} nodes`}, child${certs ? ', mTLS' : ''}`;
  const ports = await freePorts(n);
  const specs = ports.map((port, i) => ({
    id: i + 1,
    address: `127.0.0.1:${port}`,
    dataDir: mkdtempSync(join(root, `node${i + 1}-`)),
    ...(certs ? { tls: certs.files(i + 1) } : n > 1 ? { insecure: true } : {}),
  }));
  const cluster = specs.map(({ id, address }) => ({ id, address }));
  const nodes = specs.map((spec) => new Child(spec, { cluster, ...nodeOptions }));
  const rows = [];
  try {
    await Promise.all(nodes.map((p) => p.ready));
    const leader = await waitFor(`a leader among ${n}`, async () => {
      const statuses = await Promise.all(nodes.map((p) => p.call('status', {}, 5000)));
      const i = statuses.findIndex((s) => s.role === 'leader');
      if (i < 0) return undefined;
      // every node agrees on it and the others are followers
      if (!statuses.every((s) => s.leader?.id === statuses[i].id)) return undefined;
      return nodes[i];
    });
    let rate = 2000; // proposals/s guess, refined by each warm-up
    for (const c of concurrencies) {
      // Warm up for at least warmupMs, in rounds that also calibrate the rate, so the
      // measured round (a fixed count, as the fixture takes) lasts about durationMs.
      let warmed = 0;
      while (warmed < warmupMs) {
        const warmCount = Math.max(
          c * 2,
          Math.round((rate * Math.max(50, warmupMs - warmed)) / 1000),
        );
        const warm = await leader.call('load', {
          count: warmCount,
          concurrency: c,
          prefix: 'k',
          valueSize: 8,
        });
        rate = Math.max(100, warm.latencies.length / (warm.elapsedMs / 1000));
        warmed += warm.elapsedMs;
      }
      const count = Math.max(c * 4, Math.round((rate * durationMs) / 1000));
      const res = await leader.call('load', { count, concurrency: c, prefix: 'k', valueSize: 8 });
      const r = summarize(res.latencies, res.elapsedMs, res.failed);
      rate = r.opsPerSec;
      rows.push({ setup: label, inflight: c, ...r });
      progress(
        `${label} @${c}: ${Math.round(r.opsPerSec)}/s (${count} proposals, ${res.failed} failed)`,
      );
    }
  } finally {
    // No clean close is needed for a benchmark: kill -9 by pid, always, and wait (bounded).
    await Promise.all(nodes.map((p) => p.kill()));
  }
  return rows;
}

// ---------------------------------------------------------------- TLS vs insecure
// The pair on fresh 3-node clusters, in turns (order swapped each repeat); medians.
async function benchTlsPair() {
  const certs = await writeBenchCerts(join(root, 'certs'), [1, 2, 3]);
  const rows = [];
  for (let rep = 0; rep < repeat; rep++) {
    const order = rep % 2 === 0 ? [certs, undefined] : [undefined, certs];
    for (const c of order) rows.push(...(await benchChildren(3, c)));
  }
  const merged = medianRows(rows, (r) => `${r.setup} ${r.inflight}`);
  const out = [
    '| setup | in flight | proposals/s | p50 ms | p99 ms | mTLS / insecure proposals/s |',
  ];
  out.push('|---|---:|---:|---:|---:|---:|');
  for (const r of merged) {
    const plain = merged.find((p) => !p.setup.includes('mTLS') && p.inflight === r.inflight);
    const ratio = r.setup.includes('mTLS') ? `**${fmtRatio(r.opsPerSec / plain.opsPerSec)}×**` : '';
    out.push(
      `| ${r.setup} | ${r.inflight} | ${fmtInt(r.opsPerSec)}${r.failed ? ` (${r.failed} failed)` : ''} | ` +
        `${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${ratio} |`,
    );
  }
  out.push('');
  out.push(
    `Medians of ${repeat} interleaved repeats (fresh clusters); window ${durationMs} ms after ${warmupMs} ms warm-up; ` +
      `raft ${versions.raft}, node ${process.version}, ${cpus().length} CPUs.`,
  );
  console.log(out.join('\n'));
}

// ---------------------------------------------------------------- report
async function main() {
  if (tlsMode) return benchTlsPair();
  const started = performance.now();
  process.stderr.write(
    `prevail bench: raft ${versions.raft}, node ${process.version}, ${cpus().length} CPUs, ` +
      `temp dir ${root}\n  concurrencies ${concurrencies.join(',')}, window ${durationMs} ms, warm-up ${warmupMs} ms` +
      `${quick ? ' (quick)' : ''}\n`,
  );

  const rows = [];
  let append;
  let overwrite;
  if (!skip.has('fsync')) {
    append = fsyncAppend({ ...anchor, label: 'fdatasync append' });
    overwrite = fsyncOverwrite();
    rows.push({ setup: 'fdatasync append 4 KiB (growing file)', inflight: 1, ...append });
    rows.push({ setup: 'fdatasync overwrite 4 KiB (preallocated)', inflight: 1, ...overwrite });
  }
  const inproc = skip.has('1') ? [] : await benchInProcess();
  const child1 = skip.has('1child') ? [] : await benchChildren(1);
  const child3 = skip.has('3') ? [] : await benchChildren(3);
  rows.push(...inproc, ...child1, ...child3);
  // The anchor again at the end: machines are shared, so show how much the floor moved
  // while the raft rows ran. Ratios below use the start anchor; the end one bounds drift.
  let appendEnd;
  if (!skip.has('fsync')) {
    appendEnd = fsyncAppend({ ...anchor, label: 'fdatasync append' });
    rows.push({
      setup: 'fdatasync append 4 KiB (growing file), again at the end',
      inflight: 1,
      ...appendEnd,
    });
  }

  const out = [];
  out.push('| setup | in flight | proposals/s | p50 ms | p99 ms |');
  out.push('|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const failed = r.failed ? ` (${r.failed} failed)` : '';
    out.push(
      `| ${r.setup} | ${r.inflight} | ${fmtInt(r.opsPerSec)}${failed} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} |`,
    );
  }
  out.push('');
  out.push('(fdatasync rows: ops/s in the proposals/s column, one synchronous write at a time.)');
  out.push('');

  const at = (list, c) => list.find((r) => r.inflight === c);
  const ratios = [];
  const one = at(inproc, 1);
  if (append && appendEnd) {
    ratios.push(
      `- anchor drift: fdatasync-append p50 end / start = ${fmtRatio(appendEnd.p50 / append.p50)}` +
        ` (ratios below use the start anchor)`,
    );
  }
  if (one && append) {
    ratios.push(
      `- 1 node in-process, in flight 1: p50 / fdatasync-append p50 = ${fmtRatio(one.p50 / append.p50)}` +
        ` (${fmtMs(one.p50)} ms / ${fmtMs(append.p50)} ms); proposals/s / fdatasync-append ops/s = ` +
        `${fmtRatio(one.opsPerSec / append.opsPerSec)}`,
    );
  }
  if (one && overwrite) {
    ratios.push(
      `- 1 node in-process, in flight 1: p50 / fdatasync-overwrite p50 = ${fmtRatio(one.p50 / overwrite.p50)}`,
    );
  }
  const childOne = at(child1, 1);
  if (childOne && append) {
    ratios.push(
      `- 1 node child (fixture FSM), in flight 1: p50 / fdatasync-append p50 = ${fmtRatio(childOne.p50 / append.p50)}`,
    );
  }
  for (const c of concurrencies) {
    const a = at(child1, c);
    const b = at(child3, c);
    if (a && b) {
      ratios.push(
        `- in flight ${c}: 3 nodes / 1 node (both child, fixture FSM): proposals/s ${fmtRatio(b.opsPerSec / a.opsPerSec)},` +
          ` p50 ${fmtRatio(b.p50 / a.p50)}x`,
      );
    }
  }
  for (const c of concurrencies) {
    const a = at(inproc, c);
    if (a && append) {
      ratios.push(
        `- in flight ${c}: 1 node in-process proposals/s / fdatasync-append ops/s = ${fmtRatio(a.opsPerSec / append.opsPerSec)}`,
      );
    }
  }
  if (ratios.length) {
    out.push('Ratios (same run):');
    out.push(...ratios);
    out.push('');
  }
  out.push(
    `raft ${versions.raft}, libuv ${versions.uv}, node ${process.version}, ${cpus().length} CPUs; ` +
      `window ${durationMs} ms after ${warmupMs} ms warm-up; total ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  console.log(out.join('\n'));
}

await run(main, killChildren);

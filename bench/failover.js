// Failover time: kill -9 the leader of a 3-node cluster (child processes, loopback) and
// time until a surviving node commits a new entry. Defaults of RaftNode unless given.
//   node bench/failover.js [--runs 10] [--election 300] [--heartbeat 50]
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const runs = arg('runs', 10);
const election = arg('election', undefined);
const heartbeat = arg('heartbeat', undefined);
const fixture = new URL('../test/fixtures/node-process.mjs', import.meta.url).pathname;

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function spawnNode(spec, cluster) {
  const options = { ...spec, cluster };
  if (election) options.electionTimeoutMs = election;
  if (heartbeat) options.heartbeatMs = heartbeat;
  const child = fork(fixture, [JSON.stringify(options)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let next = 1;
  const pending = new Map();
  const ready = new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m.event === 'ready') resolve();
      if (m.id && pending.has(m.id)) {
        const { resolve: res, reject: rej } = pending.get(m.id);
        pending.delete(m.id);
        m.error ? rej(Object.assign(new Error(m.error.message), m.error)) : res(m.result);
      }
    });
    child.once('exit', () => {
      reject(new Error('exited'));
      for (const p of pending.values()) p.reject(new Error('exited'));
    });
  });
  const call = (cmd, args, timeoutMs = 2000) => new Promise((resolve, reject) => {
    const id = next++;
    const t = setTimeout(() => { pending.delete(id); reject(new Error('timeout')); }, timeoutMs);
    pending.set(id, { resolve: (v) => { clearTimeout(t); resolve(v); }, reject: (e) => { clearTimeout(t); reject(e); } });
    if (!child.connected) return reject(new Error('not connected'));
    child.send({ id, cmd, args });
  });
  return { spec, child, ready, call };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const results = [];
for (let run = 0; run < runs; run++) {
  const root = mkdtempSync(join(tmpdir(), 'prevail-failover-'));
  const specs = [];
  for (let id = 1; id <= 3; id++) specs.push({ id, address: `127.0.0.1:${await freePort()}`, dataDir: join(root, `n${id}`) });
  const cluster = specs.map(({ id, address }) => ({ id, address }));
  const nodes = specs.map((s) => spawnNode(s, cluster));
  try {
    await Promise.all(nodes.map((n) => n.ready));
    let leader;
    for (let i = 0; i < 400 && !leader; i++) {
      for (const n of nodes) {
        const s = await n.call('status').catch(() => null);
        if (s?.role === 'leader') leader = n;
      }
      if (!leader) await sleep(25);
    }
    if (!leader) throw new Error('no leader');
    await leader.call('propose', { commands: [{ op: 'set', key: 'warm', value: 'up' }] });
    await sleep(200);  // let followers see a few heartbeats
    const survivors = nodes.filter((n) => n !== leader);
    const killedAt = performance.now();
    leader.child.kill('SIGKILL');
    let committedAt;
    while (!committedAt && performance.now() - killedAt < 10_000) {
      const attempts = await Promise.all(survivors.map((n) =>
        n.call('propose', { commands: [{ op: 'set', key: 'after', value: String(run) }] }, 1000).catch(() => null)));
      if (attempts.some((a) => a && a[0] && a[0].ok !== undefined)) committedAt = performance.now();
      else await sleep(5);
    }
    results.push(committedAt ? committedAt - killedAt : Infinity);
    process.stderr.write(`run ${run + 1}: ${committedAt ? (committedAt - killedAt).toFixed(0) : 'no commit'} ms\n`);
  } finally {
    for (const n of nodes) n.child.kill('SIGKILL');
    await sleep(50);
    rmSync(root, { recursive: true, force: true });
  }
}
const sorted = [...results].sort((a, b) => a - b);
const pct = (p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
console.log(`| election / heartbeat | runs | p50 ms | p99 ms | max ms |`);
console.log(`|---|---|---|---|---|`);
console.log(`| ${election ?? '200 (default)'} / ${heartbeat ?? '40 (default)'} ms, pre-vote on | ${runs} | ${pct(50).toFixed(0)} | ${pct(99).toFixed(0)} | ${sorted.at(-1).toFixed(0)} |`);

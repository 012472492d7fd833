// Failover time: kill -9 the leader of a 3-node cluster (child processes, loopback) and
// time until a surviving node commits a new entry. Defaults of RaftNode unless given.
//   node bench/failover.js [--runs 10] [--election 300] [--heartbeat 50]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { Child, arg, freePorts, killChildren, percentile, run, sleep, waitFor } from './common.js';

const runs = Number(arg('runs') ?? 10);
const election = arg('election') === undefined ? undefined : Number(arg('election'));
const heartbeat = arg('heartbeat') === undefined ? undefined : Number(arg('heartbeat'));
process.on('exit', killChildren);

async function failoverOnce(run) {
  const root = mkdtempSync(join(tmpdir(), 'prevail-failover-'));
  const ports = await freePorts(3);
  const specs = ports.map((port, i) => ({
    id: i + 1,
    address: `127.0.0.1:${port}`,
    dataDir: join(root, `n${i + 1}`),
  }));
  const cluster = specs.map(({ id, address }) => ({ id, address }));
  const options = { cluster, insecure: true }; // the engine's own TCP, as before TLS existed
  if (election) options.electionTimeoutMs = election;
  if (heartbeat) options.heartbeatMs = heartbeat;
  const nodes = specs.map((s) => new Child(s, options));
  try {
    await Promise.all(nodes.map((n) => n.ready));
    const leader = await waitFor(
      'a leader',
      async () => {
        for (const n of nodes) if ((await n.call('status', {}, 2000)).role === 'leader') return n;
        return undefined;
      },
      { timeoutMs: 10_000 },
    );
    await leader.call('propose', { commands: [{ op: 'set', key: 'warm', value: 'up' }] });
    await sleep(200); // let followers see a few heartbeats
    const survivors = nodes.filter((n) => n !== leader);
    const killedAt = performance.now();
    const killed = leader.kill(); // timed from the signal, not from the exit
    while (performance.now() - killedAt < 10_000) {
      const attempts = await Promise.all(
        survivors.map((n) =>
          n
            .call('propose', { commands: [{ op: 'set', key: 'after', value: String(run) }] }, 1000)
            .catch(() => null),
        ),
      );
      if (attempts.some((a) => a?.[0]?.ok !== undefined)) {
        const ms = performance.now() - killedAt;
        await killed;
        return ms;
      }
      await sleep(5);
    }
    await killed;
    return Infinity;
  } finally {
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(root, { recursive: true, force: true });
  }
}

async function main() {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const ms = await failoverOnce(i);
    results.push(ms);
    process.stderr.write(`run ${i + 1}: ${Number.isFinite(ms) ? ms.toFixed(0) : 'no commit'} ms\n`);
  }
  const sorted = [...results].sort((a, b) => a - b);
  console.log('| election / heartbeat | runs | p50 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|');
  console.log(
    `| ${election ?? '200 (default)'} / ${heartbeat ?? '40 (default)'} ms, pre-vote on | ${runs} | ` +
      `${percentile(sorted, 0.5).toFixed(0)} | ${percentile(sorted, 0.99).toFixed(0)} | ${sorted.at(-1).toFixed(0)} |`,
  );
}

await run(main, killChildren);

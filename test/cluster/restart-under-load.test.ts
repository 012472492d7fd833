// Followers restarted under write load with small snapshot intervals rejoin. Before engine
// patches p2/p3 (docs/engine-patches.md) a node aborted inside the engine: its commit index
// went back below its applied index (legacy.c: `last_applied <= commit_index`,
// `last_applied == commit_index`), or a snapshot from the leader arrived while it wrote its
// own (trail.c: TrailSnapshot `last_term != 0`). It takes a particular interleaving (the
// leader's queued messages to the restarted node, anchored below what it has since
// committed), so this test restarts 15 times, alternating an abrupt stop and a clean close;
// without the patches 3 of 5 runs aborted (2026-12-02); with them none did (2 runs of this
// version, 6 of earlier ones).
import { Cluster, fixtures, waitFor, type NodeProcess, type Status } from '../helpers/cluster.js';

// The store's default timing (election 200 ms, heartbeat 40 ms): the leader probes the
// restarted follower while it is still starting, and it catches up by log or by snapshot.
const options = { snapshotThreshold: 1024, snapshotTrailing: 256 };
const ROUNDS = 15;
const CLIENTS = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('followers restarted under write load (snapshotThreshold 1024, snapshotTrailing 256)', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  test('each restarted follower rejoins without an engine abort, catches up, and the replicas converge', async () => {
    cluster = await Cluster.create(3, options, fixtures.store);
    await cluster.leader();
    // Clients send small writes (20 keys each, so the state and the snapshot interval stay
    // small) through random running nodes; followers forward them.
    let stop = false;
    let sent = 0;
    let acked = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      while (!stop) {
        const nodes = cluster.running();
        const node = nodes[Math.floor(Math.random() * nodes.length)]!;
        const n = sent++;
        const r = await node
          .call<{ ok?: unknown }>(
            'propose',
            { name: 'put', args: { key: `c${c}-${n % 20}`, value: String(n) }, timeoutMs: 2000 },
            5000,
          )
          .catch((): { ok?: unknown } => ({}));
        if (r.ok) acked++;
      }
    });
    // Any node process that exits without the test stopping it has aborted.
    const stopped = new Set<NodeProcess>();
    const aborted: string[] = [];
    const watch = (n: NodeProcess) =>
      void n.exited.then(() => {
        if (!stopped.has(n))
          aborted.push(
            `node ${n.spec.id} (pid ${n.pid}) exited (${n.child.signalCode ?? n.child.exitCode})`,
          );
      });
    cluster.running().forEach(watch);
    try {
      for (let round = 0; round < ROUNDS && aborted.length === 0; round++) {
        const leader = await cluster.leader(15_000);
        const follower = cluster.others(leader)[round % 2]!;
        const id = follower.spec.id;
        await sleep(1000);
        if (aborted.length > 0) break;
        stopped.add(follower);
        if (round % 2 === 0) {
          // No SIGTERM handler in the fixture: the process ends at once, mid-write.
          process.kill(follower.pid, 'SIGTERM');
        } else {
          // A clean close (what `prevail serve` does on SIGTERM); the fixture then exits.
          await follower.call('close', {}, 20_000).catch(() => {});
        }
        if ((await follower.waitExit(15_000)) === 'timeout') await follower.kill();
        // Down for 0.3–2 s: how many of the leader's messages queue up for it (and with which
        // anchors, as the leader compacts its log meanwhile) depends on where the restart falls
        // in the leader's reconnect cycle.
        await sleep(300 + Math.floor(Math.random() * 1700));
        const again: NodeProcess = await cluster.start(id);
        watch(again);
        // Caught up: it has applied what the leader had committed when it came back.
        const target = (await (await cluster.leader(15_000)).call<Status>('status')).commitIndex;
        await waitFor(
          `node ${id} to apply ${target}`,
          async () => {
            if (!again.alive || aborted.length > 0) return true;
            return (await again.call<Status>('status', undefined, 3000)).appliedIndex >= target;
          },
          30_000,
          50,
        );
        await sleep(300);
      }
    } finally {
      stop = true;
      await Promise.all(clients);
      for (const n of cluster.nodes.values()) stopped.add(n);
    }
    expect(aborted).toEqual([]);
    expect(acked).toBeGreaterThan(0);
    // With the writers stopped, every replica reaches the same applied index and state.
    const hashes = await waitFor(
      'the replicas to converge',
      async () => {
        const all = await Promise.all(
          cluster.running().map((n) => n.call<{ hash: string; applied: number }>('stateHash')),
        );
        return all.every((h) => h.hash === all[0]!.hash && h.applied === all[0]!.applied)
          ? all
          : undefined;
      },
      30_000,
      100,
    );
    expect(hashes).toHaveLength(3);
  }, 240_000);
});

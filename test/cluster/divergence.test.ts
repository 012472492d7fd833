// The divergence detector against a real cluster: one replica whose handler is not
// deterministic (test/fixtures/store-process.mjs `stamp`, odd on a node while its marker file
// exists) is named by the majority verdict, turns not ready while the others stay ready, and
// the documented resync (remove, empty its data dir, start with join, add) brings it back
// from the leader's snapshot without losing an acknowledged write.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  Cluster,
  fixtures,
  tempDir,
  waitFor,
  type NodeProcess,
  type Status,
} from '../helpers/cluster.js';

interface Diverged {
  node: number;
  index: number;
  expected: string;
  actual: string;
  majority: number[];
}
interface Health {
  leader: boolean;
  ready: boolean;
  diverged: Omit<Diverged, 'node'> | null;
}
interface StoreStatus extends Status {
  effects: { index: number; hash: string };
  divergence: { self: Health['diverged']; leader: number | null; diverged: Diverged[] };
}
type Write = { ok?: { index: number }; error?: { code?: string; message: string } };

// A short trailing log: after the leader's snapshot a joiner needs the snapshot, not the log.
const timing = { electionTimeoutMs: 1000, heartbeatMs: 100, snapshotTrailing: 8 };

/** Writes put(prefix+i) through `node`; returns the acknowledged keys and values. */
async function writeSome(
  node: NodeProcess,
  prefix: string,
  n: number,
): Promise<[string, string][]> {
  const acked: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const key = `${prefix}${i}`;
    const w = await node.call<Write>('propose', { name: 'put', args: { key, value: key } });
    if (w.ok) acked.push([key, key]);
  }
  return acked;
}

const sorted = (ids: number[]) => [...ids].sort((a, b) => a - b);

describe('divergence: majority verdict, readiness, resync', () => {
  let cluster: Cluster;
  const markers = tempDir('prevail-divergence-');
  afterAll(async () => {
    await cluster?.stop();
    rmSync(markers, { recursive: true, force: true });
  });

  test('the odd replica is named with the majority and turns not ready; a resync from the leader brings it back', async () => {
    cluster = await Cluster.create(3, { ...timing, skewDir: markers }, fixtures.store);
    const leader = await cluster.leader();
    const [odd, other] = cluster.others(leader) as [NodeProcess, NodeProcess];
    const oddId = odd.spec.id;
    const majority = sorted([leader.spec.id, other.spec.id]);
    const acked = await writeSome(leader, 'a', 70);
    // An equal cluster: no verdict, everyone ready.
    await waitFor('the first verdict', async () => {
      const s = await leader.call<StoreStatus>('status');
      return s.divergence.leader === leader.spec.id;
    });
    expect((await leader.call<StoreStatus>('status')).divergence.diverged).toEqual([]);

    writeFileSync(join(markers, `odd-${oddId}`), '');
    const w = await leader.call<Write>('propose', {
      name: 'stamp',
      args: { key: 'stamped', value: 'v' },
    });
    expect(w.ok).toBeDefined();
    acked.push(['stamped', 'v']);
    acked.push(...(await writeSome(other, 'b', 140))); // past the next checkpoints, forwarded

    const verdict = await waitFor(
      'the leader to name the odd replica',
      async () => (await leader.call<StoreStatus>('status')).divergence.diverged[0],
      20_000,
      100,
    );
    expect(verdict).toMatchObject({ node: oddId, majority });
    expect(verdict.index).toBeGreaterThan(w.ok!.index);
    const alarm = leader.events.find((e) => e.event === 'divergence');
    expect(alarm).toMatchObject({ code: 'PREVAIL_DIVERGED', node: oddId, majority });
    expect(alarm!.judgedBy).toBe(leader.spec.id);

    const oddHealth = await waitFor(
      'the odd replica to learn it diverged',
      async () => {
        const h = await odd.call<Health>('health');
        return h.diverged ? h : undefined;
      },
      20_000,
      100,
    );
    expect(oddHealth).toMatchObject({ ready: false, diverged: { index: verdict.index, majority } });
    // The service's GET /health/ready on it: 503, saying why.
    const [status, body] =
      await odd.call<[number, { code: string; message: string }]>('healthRoute');
    expect([status, body.code]).toEqual([503, 'PREVAIL_NOT_READY']);
    expect(body).toMatchObject({ diverged: { index: verdict.index, majority } });
    expect(body.message).toMatch(/diverged from the majority/);
    expect(odd.events.find((e) => e.event === 'divergence')).toMatchObject({
      node: oddId,
      majority,
    });
    for (const n of [leader, other]) {
      const h = await waitFor(`node ${n.spec.id} ready`, async () => {
        const x = await n.call<Health>('health');
        return x.ready ? x : undefined;
      });
      expect(h.diverged).toBeNull();
    }
    // It stays not ready: nothing clears it but a resync.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await odd.call<Health>('health')).toMatchObject({ ready: false });

    await resync(cluster, leader, odd, markers);
    const back = cluster.node(oddId);
    // It caught up from the leader's snapshot (the log before it is gone from the leader).
    expect((await back.call<StoreStatus>('status')).snapshot.index).toBeGreaterThan(0);
    acked.push(...(await writeSome(leader, 'c', 140))); // new checkpoints to compare
    await waitFor(
      'the resynced replica ready, and the verdict clear',
      async () => {
        const h = await back.call<Health>('health');
        const s = await leader.call<StoreStatus>('status');
        const [status] = await back.call<[number]>('healthRoute');
        return (
          h.ready && h.diverged === null && s.divergence.diverged.length === 0 && status === 200
        );
      },
      30_000,
      100,
    );
    // Its checkpoint at the leader's applied index equals the leader's.
    await waitFor(
      'equal effects',
      async () => {
        const [a, b] = await Promise.all([
          leader.call<StoreStatus>('status'),
          back.call<StoreStatus>('status'),
        ]);
        return a.effects.index === b.effects.index && a.effects.hash === b.effects.hash;
      },
      20_000,
      100,
    );
    // No acknowledged write lost, on any replica, and the stamp is the majority's value.
    for (const n of cluster.running()) {
      const keys = new Map(await n.call<[string, string][]>('keys'));
      expect([n.spec.id, acked.filter(([k, v]) => keys.get(k) !== v)]).toEqual([n.spec.id, []]);
    }
  }, 180_000);
});

describe('divergence: the leader as the odd one', () => {
  let cluster: Cluster;
  const markers = tempDir('prevail-divergence-');
  afterAll(async () => {
    await cluster?.stop();
    rmSync(markers, { recursive: true, force: true });
  });

  test('the majority outvotes the leader: it names itself, and it is the one not ready', async () => {
    cluster = await Cluster.create(3, { ...timing, skewDir: markers }, fixtures.store);
    const leader = await cluster.leader();
    const followers = cluster.others(leader);
    const majority = sorted(followers.map((n) => n.spec.id));
    writeFileSync(join(markers, `odd-${leader.spec.id}`), '');
    await leader.call<Write>('propose', { name: 'stamp', args: { key: 's', value: 'v' } });
    await writeSome(leader, 'a', 140);
    const named = await waitFor(
      'the leader to name itself',
      async () => {
        const s = await leader.call<StoreStatus>('status');
        return s.divergence.diverged[0];
      },
      20_000,
      100,
    );
    expect(named).toMatchObject({ node: leader.spec.id, majority });
    expect(leader.events.find((e) => e.event === 'divergence')).toMatchObject({
      node: leader.spec.id,
      majority,
      judgedBy: leader.spec.id,
    });
    expect(await leader.call<Health>('health')).toMatchObject({
      leader: true,
      ready: false,
      diverged: { majority },
    });
    for (const n of followers) {
      await waitFor(`follower ${n.spec.id} to see the verdict`, async () => {
        const s = await n.call<StoreStatus>('status');
        return s.divergence.diverged[0]?.node === leader.spec.id;
      });
      expect(await n.call<Health>('health')).toMatchObject({ ready: true, diverged: null });
    }
  }, 120_000);
});

// The procedure of docs/operations.md, "When a replica diverges": a snapshot on the leader, the
// replica removed, stopped, its data dir emptied, started with join, added again.
async function resync(
  cluster: Cluster,
  leader: NodeProcess,
  odd: NodeProcess,
  markers: string,
): Promise<void> {
  const id = odd.spec.id;
  rmSync(join(markers, `odd-${id}`)); // the fixed code
  await leader.call('snapshot');
  await leader.call('removeMember', { id });
  await odd.kill();
  rmSync(odd.spec.dataDir, { recursive: true, force: true });
  await cluster.start(id, { join: true, cluster: undefined });
  await leader.call('addMember', { member: { id, address: odd.spec.address } }, 60_000);
  await waitFor(
    'the replica a voter again',
    async () =>
      (await leader.call<Status>('status')).members.find((m) => m.id === id)?.role === 'voter',
    30_000,
    100,
  );
}

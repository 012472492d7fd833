// Online backup of a 3-node cluster under write load, restored into a new 3-node cluster (three
// new processes, new data dirs, new addresses, another CA): every new member starts with the
// source's state at the backup's index — its hash rebuilt independently from the source
// member's own log — and holds every write acknowledged before the backup started; the new
// cluster elects a leader and takes writes.
import { join } from 'node:path';

import { restoreBackup } from '../../lib/backup/restore.js';
import { inspectDataDir } from '../../lib/inspect/index.js';
import { collection, defineSchema } from '../../lib/store.js';
import {
  Cluster,
  fixtures,
  freePorts,
  waitFor,
  type NodeProcess,
  type Status,
} from '../helpers/cluster.js';

// The store fixture's collection and the one command this test runs (test/fixtures/store-process.mjs).
const schema = defineSchema({
  collections: {
    kv: collection<{ key: string; value: string; at: number }>()({
      indexes: (ix) => ({ byKey: ix.unique((o) => o.key) }),
    }),
  },
  commands: {
    put(state, { key, value }: { key: string; value: string }, ctx) {
      const prev = state.kv.byKey.get(key);
      if (prev) state.kv.update(prev.id, { value, at: ctx.timestamp });
      else state.kv.insert({ key, value, at: ctx.timestamp });
      return { prev: prev?.value ?? null, index: ctx.index };
    },
  },
});

const clusters: Cluster[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0)) await c.stop();
});

function acked(node: NodeProcess): string[] {
  return node.events.filter((e) => e.event === 'ack').map((e) => e.key as string);
}

async function ackedAtLeast(node: NodeProcess, n: number): Promise<void> {
  await waitFor(
    `${n} acknowledged writes`,
    async () => acked(node).length >= n || undefined,
    30_000,
  );
}

// Seeds three new data dirs from one backup and starts them as a new cluster.
async function restoredCluster(file: string): Promise<Cluster> {
  const target = new Cluster({}, fixtures.store);
  clusters.push(target);
  const ports = await freePorts(3);
  target.specs = ports.map((port, i) => ({
    id: i + 1,
    address: `127.0.0.1:${port}`,
    dataDir: join(target.root, `n${i + 1}`),
  }));
  for (const spec of target.specs)
    await restoreBackup({ backup: file, ...spec, cluster: target.initialMembers });
  await target.startAll();
  return target;
}

test('a backup taken from a follower under write load restores into a new 3-node cluster', async () => {
  const source = await Cluster.create(3, {}, fixtures.store);
  clusters.push(source);
  const leader = await source.leader();
  const follower = source.others(leader)[0]!;
  // Writes through the other follower (forwarded to the leader) until it is closed.
  const writer = source.others(leader)[1]!;
  await writer.call('writeForever', { prefix: 'w', concurrency: 8 });
  await ackedAtLeast(writer, 200);
  const before = acked(writer);
  const backup = await follower.call<{ file: string; index: number; term: number }>(
    'backup',
    { dir: join(source.root, 'backups') },
    60_000,
  );
  await ackedAtLeast(writer, acked(writer).length + 100); // still writing after it
  const last = await writer.call<Status>('status');
  expect(last.appliedIndex).toBeGreaterThan(backup.index); // writes went on past the backup
  for (const n of source.running()) await n.call('close', {}, 30_000);

  // The source's state at the backup's index, from the follower's own data dir.
  const expected = await inspectDataDir(follower.spec.dataDir, { at: backup.index, schema });
  const keysThen = new Set(expected.state!.collections.kv!.map((o) => (o as { key: string }).key));
  for (const key of before) expect(keysThen.has(key)).toBe(true);

  const target = await restoredCluster(backup.file);
  const newLeader = await target.leader(20_000);
  for (const n of target.running()) {
    const s = await n.call<{ hash: string; applied: number }>('stateHash');
    expect({ id: n.spec.id, hash: s.hash }).toEqual({
      id: n.spec.id,
      hash: expected.state!.stateHash,
    });
    expect(s.applied).toBeGreaterThanOrEqual(backup.index);
    const keys = new Set((await n.call<[string, string][]>('keys')).map(([k]) => k));
    for (const key of before) expect(keys.has(key)).toBe(true);
  }
  // The new cluster takes writes, through its leader and forwarded from a follower.
  const follow = target.others(newLeader)[0]!;
  const put = await follow.call<{ ok?: { index: number } }>('propose', {
    name: 'put',
    args: { key: 'after-restore', value: 'yes' },
  });
  expect(put.ok?.index).toBeGreaterThan(backup.index);
  await waitFor(
    'the write on every new member',
    async () => {
      const all = await Promise.all(
        target.running().map((n) => n.call<[string, string][]>('keys')),
      );
      return (
        all.every((ks) => ks.some(([k, v]) => k === 'after-restore' && v === 'yes')) || undefined
      );
    },
    15_000,
  );
}, 90_000);

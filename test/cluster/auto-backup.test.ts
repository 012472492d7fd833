// Automatic backups on a 3-process store cluster, every node configured alike with the same
// directory: only the leader takes them, and after a leadership transfer the new leader
// carries on (skipping nothing that changed) while the old one stops.
import { readdirSync, rmSync } from 'node:fs';

import { parseBackupName } from '../../lib/backup/retention.js';
import { Cluster, fixtures, tempDir, waitFor, type NodeProcess } from '../helpers/cluster.js';

const timing = { electionTimeoutMs: 1000, heartbeatMs: 100 };

const taken = (n: NodeProcess) =>
  n.events.filter((e) => e.event === 'backup' && e.kind === 'taken').map((e) => e.index as number);
const errors = (n: NodeProcess) =>
  n.events.filter((e) => e.event === 'backup' && e.kind === 'error');

let cluster: Cluster | null = null;
let dir: string;
beforeEach(() => {
  dir = tempDir('prevail-auto-backup-cluster-');
});
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
  rmSync(dir, { recursive: true, force: true });
});

async function writeAndWait(writer: NodeProcess, leader: NodeProcess, key: string) {
  const before = taken(leader).length;
  const r = await writer.call<{ ok?: unknown; error?: unknown }>('propose', {
    name: 'put',
    args: { key, value: key },
  });
  expect(r.error).toBeUndefined();
  await waitFor(`a backup on node ${leader.spec.id}`, () => taken(leader).length > before, 30_000);
}

test('only the leader takes automatic backups; they move with leadership', async () => {
  cluster = await Cluster.create(3, timing, fixtures.store);
  const leader = await cluster.leader();
  for (const n of cluster.running()) await n.call('autoBackup', { dir, everyMs: 100 });
  const [next, third] = cluster.others(leader) as [NodeProcess, NodeProcess];
  await writeAndWait(third, leader, 'a');
  await writeAndWait(third, leader, 'b');
  expect(taken(next)).toEqual([]);
  expect(taken(third)).toEqual([]);

  await leader.call('transfer', { id: next.spec.id });
  await waitFor('the transfer', async () => (await cluster!.leader()) === next, 30_000);
  await writeAndWait(third, next, 'c');
  const oldCount = taken(leader).length;
  await writeAndWait(third, next, 'd');
  expect(taken(leader).length).toBe(oldCount); // stopped with its leadership
  expect(taken(third)).toEqual([]);
  for (const n of cluster.running()) expect(errors(n)).toEqual([]);
  // Every backup in the directory is one a leader reported, at rising indexes.
  const files = readdirSync(dir)
    .map(parseBackupName)
    .filter((b) => b !== null);
  const reported = [...taken(leader), ...taken(next)].sort((a, b) => a - b);
  expect(files.map((b) => b.index)).toEqual(reported);
}, 120_000);

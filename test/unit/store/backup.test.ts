// store.backup() on a single node under write load, then restoreBackup() into a new data dir:
// the restored node starts with exactly the source's state at the backup's index (its hash
// rebuilt from the source's own log by `prevail inspect`'s reader), holds every write
// acknowledged before the backup started, and takes writes.
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { restoreBackup } from '../../../lib/backup/restore.js';
import { ErrorCodes } from '../../../lib/core/errors.js';
import { inspectDataDir } from '../../../lib/inspect/index.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import { freePorts, tempDir } from '../../helpers/cluster.js';

const schema = defineSchema({
  collections: {
    kv: collection<{ key: string; value: number }>()({
      indexes: (ix) => ({ byKey: ix.unique((o) => o.key) }),
    }),
  },
  commands: {
    put(s, a: { key: string; value: number }) {
      const prev = s.kv.byKey.get(a.key);
      if (prev) s.kv.update(prev.id, { value: a.value });
      else s.kv.insert(a);
    },
  },
});

let root: string;
beforeEach(() => {
  root = tempDir('prevail-backup-store-');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

test('a backup under write load restores to the state at its index', async () => {
  // captureEvery above the writes: the backup's capture serialises the whole state, in slices of 50.
  const store = await open({
    schema,
    dataDir: join(root, 'src'),
    captureSliceSize: 50,
    captureEvery: 100_000,
    snapshotThreshold: 200_000,
  });
  const batch = Array.from({ length: 200 }, (_, i) => i);
  for (let b = 0; b < 50; b++)
    await Promise.all(batch.map((i) => store.propose('put', { key: `k${b * 200 + i}`, value: 0 })));

  // Writes keep going, 16 at a time, while the backup is taken; each acknowledged key is noted.
  const acked: string[] = [];
  let stop = false;
  let n = 0;
  const writer = async () => {
    while (!stop) {
      const key = `w${n++}`;
      await store.propose('put', { key, value: n });
      acked.push(key);
      await store.propose('put', { key: `k${n % 10_000}`, value: n });
    }
  };
  const writers = Array.from({ length: 16 }, writer);
  while (acked.length < 50) await new Promise((r) => setTimeout(r, 5));
  const before = [...acked];
  const r = await store.backup(join(root, 'backups'));
  const during = acked.length - before.length;
  while (acked.length < before.length + during + 50) await new Promise((r) => setTimeout(r, 5));
  stop = true;
  await Promise.all(writers);
  expect(during).toBeGreaterThan(0); // writes were acknowledged while the backup ran
  expect(r.index).toBeGreaterThan(10_000);
  expect(store.status().appliedIndex).toBeGreaterThan(r.index);
  await store.close();

  // The source's state at the backup's index, rebuilt from its own data dir.
  const at = await inspectDataDir(join(root, 'src'), { at: r.index, schema });

  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const dataDir = join(root, 'restored');
  const seeded = await restoreBackup({ backup: r.file, dataDir, id: 1, address });
  expect(seeded).toMatchObject({ index: r.index, term: r.term, sha256: r.sha256 });
  const copy = await open({ schema, dataDir, address });
  try {
    expect(copy.status().appliedIndex).toBe(r.index);
    expect(copy.stateHash()).toBe(at.state!.stateHash);
    for (const key of before) expect(copy.view.kv.byKey.get(key)).toBeDefined();
    await copy.propose('put', { key: 'after', value: 1 });
    expect(copy.view.kv.byKey.get('after')).toMatchObject({ value: 1 });
  } finally {
    await copy.close();
  }
  // And again after a restart: the engine keeps its log after the seeded snapshot.
  const again = await open({ schema, dataDir, address });
  expect(again.view.kv.byKey.get('after')).toMatchObject({ value: 1 });
  await again.close();
}, 120_000);

test('a backup without a fresh capture (the last one plus the entries since) restores the same state', async () => {
  const store = await open({ schema, dataDir: join(root, 'src'), captureEvery: 50 });
  for (let i = 0; i < 300; i++) await store.propose('put', { key: `k${i % 70}`, value: i });
  await store.captureNow();
  for (let i = 0; i < 20; i++) await store.propose('put', { key: `t${i}`, value: i }); // below captureEvery
  const captured = store.status().capture;
  expect(captured.tail).toBeGreaterThan(0); // entries after the last capture: the backup's tail
  const r = await store.backup(join(root, 'backups'), { capture: false });
  expect(store.status().capture.baseIndex).toBe(captured.baseIndex); // no capture was made for it
  const hash = store.stateHash();
  expect(r.index).toBe(store.status().effects.index); // the store's last entry (the backup's read barrier is the engine's)
  await store.close();
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const dataDir = join(root, 'restored');
  await restoreBackup({ backup: r.file, dataDir, id: 1, address });
  const copy = await open({ schema, dataDir, address });
  try {
    expect(copy.stateHash()).toBe(hash);
    expect(copy.status().appliedIndex).toBe(r.index);
  } finally {
    await copy.close();
  }
});

test('a backup destination must be a path or a target', async () => {
  const store = await open({ schema, dataDir: join(root, 'src') });
  try {
    await expect(store.backup('')).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(store.backup({} as never)).rejects.toMatchObject({
      code: ErrorCodes.INVALID_ARGUMENT,
    });
  } finally {
    await store.close();
  }
});

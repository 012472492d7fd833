// store.autoBackup() on a single node (its own leader) into a directory: a backup each
// interval while writes come in, none while nothing changes, retention applied after each;
// a failing target is reported and retried, the node keeps serving; stop() ends it.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { AutoBackupEvent } from '../../../lib/backup/auto.js';
import { parseBackupName } from '../../../lib/backup/retention.js';
import { ErrorCodes } from '../../../lib/core/errors.js';
import { collection, defineSchema, open, type Store } from '../../../lib/store.js';
import { tempDir } from '../../helpers/cluster.js';

const schema = defineSchema({
  collections: { kv: collection<{ key: string; value: number }>()() },
  commands: {
    put(s, a: { key: string; value: number }) {
      s.kv.insert(a);
    },
  },
});

let root: string;
let store: Store<typeof schema.collections, typeof schema.commands> | null = null;
beforeEach(() => {
  root = tempDir('prevail-auto-backup-');
});
afterEach(async () => {
  await store?.close();
  store = null;
  rmSync(root, { recursive: true, force: true });
});

// Collects the store's 'backup' events; next(kind) waits (bounded) for the next one of a kind.
function recorder(s: NonNullable<typeof store>) {
  const events: AutoBackupEvent[] = [];
  let seen = 0;
  s.on('backup', (e: AutoBackupEvent) => events.push(e));
  return {
    events,
    async next(kind: AutoBackupEvent['kind']): Promise<AutoBackupEvent> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const i = events.findIndex((e, j) => j >= seen && e.kind === kind);
        if (i >= 0) {
          seen = i + 1;
          return events[i]!;
        }
        if (Date.now() > deadline) throw new Error(`no '${kind}' backup event in 30 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

test('a backup each interval when the state changed, skipped when not, retention applied', async () => {
  store = await open({ schema, dataDir: join(root, 'data') });
  const dir = join(root, 'backups');
  const rec = recorder(store);
  await store.propose('put', { key: 'a', value: 1 });
  const job = store.autoBackup({ target: dir, everyMs: 50, retention: { keepLast: 2 } });

  const first = await rec.next('taken');
  expect(first.kind === 'taken' && first.backup.index).toBe(store.status().effects.index);
  // Nothing changed: the following rounds skip, naming the newest backup.
  const skipped = await rec.next('skipped');
  expect(skipped).toMatchObject({ index: store.status().effects.index });
  expect(readdirSync(dir).filter((n) => parseBackupName(n))).toHaveLength(1);

  // Each write is backed up at a later round; keepLast 2 deletes the older ones.
  const taken: string[] = [first.kind === 'taken' ? first.backup.name : ''];
  for (let i = 0; i < 3; i++) {
    await store.propose('put', { key: `k${i}`, value: i });
    const e = await rec.next('taken');
    if (e.kind !== 'taken') throw new Error('unreachable');
    expect(e.backup.index).toBeGreaterThan(parseBackupName(taken[taken.length - 1]!)!.index);
    taken.push(e.backup.name);
    if (taken.length > 2) expect(e.removed).toEqual([taken[taken.length - 3]]);
  }
  await job.stop();
  expect(readdirSync(dir).filter((n) => parseBackupName(n))).toEqual(taken.slice(-2));
  // Stopped: no more rounds, even after a write.
  const count = rec.events.length;
  await store.propose('put', { key: 'late', value: 0 });
  await new Promise((r) => setTimeout(r, 200));
  expect(rec.events.length).toBe(count);
});

test('a failing target is reported each round and retried; the node keeps taking writes', async () => {
  store = await open({ schema, dataDir: join(root, 'data') });
  // The target's directory is a file: every round fails until it is a directory.
  const dir = join(root, 'backups');
  writeFileSync(dir, 'not a directory');
  const rec = recorder(store);
  store.autoBackup({ target: dir, everyMs: 50 });
  const e1 = await rec.next('error');
  await rec.next('error');
  expect(e1.kind === 'error' && (e1.error as { code?: string }).code).toEqual(expect.any(String));
  await store.propose('put', { key: 'still', value: 1 });

  rmSync(dir);
  mkdirSync(dir);
  const ok = await rec.next('taken');
  expect(ok.kind === 'taken' && ok.backup.index).toBe(store.status().effects.index);
});

test('bad options are INVALID_ARGUMENT at once', async () => {
  const s = (store = await open({ schema, dataDir: join(root, 'data') }));
  const target = join(root, 'b');
  const invalid = expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT });
  expect(() => s.autoBackup({ target, everyMs: 0 })).toThrow(invalid);
  expect(() => s.autoBackup({ target, everyMs: 10, retention: { keepLast: -1 } })).toThrow(invalid);
  expect(() => s.autoBackup({ target: {} as never, everyMs: 10 })).toThrow(invalid);
});

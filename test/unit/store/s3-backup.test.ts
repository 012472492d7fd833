// Backups in S3-compatible storage against a real server (s3rver, its own process on
// 127.0.0.1): automatic backups with retention into a bucket under a prefix, then a node
// restored from an object there holds the same state; a large backup goes up in parts.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';

import type { AutoBackupEvent } from '../../../lib/backup/auto.js';
import { restoreBackup } from '../../../lib/backup/restore.js';
import { S3Target } from '../../../lib/backup/s3.js';
import { ErrorCodes } from '../../../lib/core/errors.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';
import { S3Server } from '../../helpers/s3rver.js';

const schema = defineSchema({
  collections: {
    kv: collection<{ key: string; value: string }>()({
      indexes: (ix) => ({ byKey: ix.unique((o) => o.key) }),
    }),
  },
  commands: {
    put(s, a: { key: string; value: string }) {
      s.kv.insert(a);
    },
  },
});

let root: string;
let s3: S3Server;
beforeAll(async () => {
  s3 = await S3Server.start();
}, 60_000);
afterAll(() => s3?.stop());
beforeEach(() => {
  root = tempDir('prevail-s3-backup-');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const targetOptions = (extra: object = {}) => ({
  bucket: s3.bucket,
  endpoint: s3.endpoint,
  region: 'us-east-1',
  credentials: s3.credentials,
  forcePathStyle: true,
  ...extra,
});

async function restoreAndRead(target: S3Target, name: string) {
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const dataDir = join(root, `restored-${port}`);
  await restoreBackup({ backup: { target, name }, dataDir, id: 1, address });
  const copy = await open({ schema, dataDir, address });
  const result = { hash: copy.stateHash(), index: copy.status().appliedIndex };
  const keys = [...copy.view.kv.values()].map((o) => o.key).sort();
  await copy.close();
  return { ...result, keys };
}

test('automatic backups into a bucket with retention; a node restored from one has the same state', async () => {
  const store = await open({ schema, dataDir: join(root, 'src') });
  const events: AutoBackupEvent[] = [];
  store.on('backup', (e: AutoBackupEvent) => events.push(e));
  const taken = () => events.filter((e) => e.kind === 'taken');
  const target = new S3Target(targetOptions({ prefix: 'team/app' }));
  // Another object under the prefix, not a backup: listed by S3, ignored by the target.
  const client = new S3Client(targetOptions());
  await client.send(
    new PutObjectCommand({ Bucket: s3.bucket, Key: 'team/app/README.txt', Body: 'notes' }),
  );
  try {
    const job = store.autoBackup({ target, everyMs: 50, retention: { keepLast: 2 } });
    for (let i = 0; i < 3; i++) {
      await store.propose('put', { key: `k${i}`, value: 'x'.repeat(100) });
      const n = i + 1;
      await waitFor(`backup ${n}`, () => taken().length >= n || undefined, 30_000);
    }
    await waitFor('a skipped round', () => events.at(-1)?.kind === 'skipped' || undefined, 30_000);
    await job.stop();
    expect(events.filter((e) => e.kind === 'error')).toEqual([]);
    const names = taken().map((e) => (e.kind === 'taken' ? e.backup.name : ''));
    expect(await target.list()).toEqual(names.slice(-2));
    const last = taken().at(-1)!;
    if (last.kind !== 'taken') throw new Error('unreachable');
    expect(last.removed).toEqual([names[0]]);
    expect(last.backup.file).toBe(`s3://${s3.bucket}/team/app/${last.backup.name}`);

    const hash = store.stateHash();
    await store.close();
    const restored = await restoreAndRead(target, last.backup.name);
    expect(restored.hash).toBe(hash);
    expect(restored.index).toBe(last.backup.index);
    expect(restored.keys).toEqual(['k0', 'k1', 'k2']);
  } finally {
    await store.close().catch(() => undefined);
    client.destroy();
    target.destroy();
  }
}, 60_000);

test('a backup larger than singlePutBytes goes up as a multipart upload and restores', async () => {
  const store = await open({ schema, dataDir: join(root, 'src') });
  // About 1 MB of state: parts of 256 KiB.
  const target = new S3Target(
    targetOptions({ prefix: 'big', singlePutBytes: 256 << 10, partBytes: 256 << 10 }),
  );
  try {
    for (let b = 0; b < 20; b++)
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.propose('put', { key: `k${b * 50 + i}`, value: 'y'.repeat(1000) }),
        ),
      );
    const r = await store.backup(target);
    expect(r.bytes).toBeGreaterThan(3 * (256 << 10));
    const hash = store.stateHash();
    await store.close();
    const restored = await restoreAndRead(target, r.name);
    expect(restored.hash).toBe(hash);
    expect(restored.keys).toHaveLength(1000);
  } finally {
    await store.close().catch(() => undefined);
    target.destroy();
  }
}, 60_000);

test('a target needs a bucket; s3:// URLs give bucket and prefix', () => {
  expect(() => new S3Target({ bucket: '' })).toThrow(
    expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
  );
  const t = S3Target.fromUrl('s3://b1/some/prefix/');
  expect([t.bucket, t.prefix, t.describe('x.pvb')]).toEqual([
    'b1',
    'some/prefix',
    's3://b1/some/prefix/x.pvb',
  ]);
  expect(() => S3Target.fromUrl('http://b1/x')).toThrow(
    expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
  );
});

test('without @aws-sdk/client-s3 installed, S3Target says which package it needs', () => {
  // The built library copied where no node_modules can be found: the SDK's import fails for real.
  const dir = join(root, 'no-sdk');
  cpSync(join(process.cwd(), 'dist'), join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  writeFileSync(
    join(dir, 'try.mjs'),
    `import { S3Target } from './dist/backup/s3.js';
    try { await new S3Target({ bucket: 'b' }).list(); console.log('listed'); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`,
  );
  const out = spawnSync(process.execPath, ['try.mjs'], { cwd: dir, encoding: 'utf8' });
  expect(JSON.parse(out.stdout)).toEqual({
    code: ErrorCodes.MISSING_DEPENDENCY,
    message: expect.stringContaining('npm install @aws-sdk/client-s3'),
  });
});

// The backup file (lib/backup/format.ts): a real store's backup reads back whole; damage
// anywhere in it — a flipped byte, a cut, bytes added, another format — is
// PREVAIL_BACKUP_CORRUPT, from the streaming reader and from restoreBackup, which then has
// written nothing. The files restoreBackup writes are the engine's, as prevail's own readers of
// the engine's formats parse them.
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

import { verifyBackup, PREFIX_BYTES, DIGEST_BYTES } from '../../../lib/backup/format.js';
import { restoreBackup } from '../../../lib/backup/restore.js';
import { DirectoryTarget } from '../../../lib/backup/target.js';
import { ErrorCodes } from '../../../lib/core/errors.js';
import { packr } from '../../../lib/format/entry.js';
import { parseSnapshotData, parseSnapshotMeta } from '../../../lib/inspect/readers.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import { tempDir } from '../../helpers/cluster.js';

const schema = defineSchema({
  collections: { kv: collection<{ k: string; v: unknown }>()() },
  commands: {
    put(s, a: { k: string; v: unknown }) {
      return s.kv.insert(a).id;
    },
  },
});

let root: string;
let file: string;
let good: Buffer;

beforeAll(async () => {
  root = tempDir('prevail-backup-format-');
  const store = await open({ schema, dataDir: join(root, 'src'), captureSliceSize: 16 });
  for (let i = 0; i < 300; i++)
    await store.propose('put', { k: `k${i}`, v: i % 3 ? i : { nested: [i, -0, 'a\ud800b'] } });
  const r = await store.backup(join(root, 'out'));
  await store.close();
  file = r.file;
  good = readFileSync(file);
  expect(good.length).toBe(r.bytes);
  expect(createHash('sha256').update(good.subarray(0, -32)).digest('hex')).toBe(r.sha256);
}, 60_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

async function verdict(bytes: Buffer, chunk = 4096): Promise<string> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += chunk) pieces.push(bytes.subarray(at, at + chunk));
  try {
    await verifyBackup(pieces, 'test');
    return 'ok';
  } catch (err) {
    return (err as { code: string }).code;
  }
}

test('a backup reads back whole, in any chunking, with its header', async () => {
  for (const chunk of [1, 7, 4096, good.length]) expect(await verdict(good, chunk)).toBe('ok');
  const v = await verifyBackup(
    new DirectoryTarget(join(root, 'out')).read(file.split('/').pop()!),
    file,
  );
  expect(v.header).toMatchObject({ nodeId: 1, term: 1, configuration: [{ id: 1, role: 'voter' }] });
  expect(v.header.index).toBeGreaterThanOrEqual(300);
  expect(v.header.effects.index).toBe(v.header.index);
  expect(v.header.schema).toEqual({ active: 1, oldest: 1, newest: 1 });
  expect(v.bytes).toBe(good.length);
});

test('a flipped byte anywhere is PREVAIL_BACKUP_CORRUPT', async () => {
  const seen = new Set<string>();
  for (let at = 0; at < good.length; at++) {
    const bad = Buffer.from(good);
    bad[at] ^= 0x40;
    const v = await verdict(bad);
    seen.add(v);
    if (v !== ErrorCodes.BACKUP_CORRUPT) throw new Error(`byte ${at} flipped: ${v}`);
  }
  expect([...seen]).toEqual([ErrorCodes.BACKUP_CORRUPT]);
}, 120_000);

test('a cut anywhere, or bytes added, is PREVAIL_BACKUP_CORRUPT', async () => {
  for (let len = 0; len < good.length; len += len < 64 ? 1 : 97)
    expect({ len, v: await verdict(good.subarray(0, len)) }).toEqual({
      len,
      v: ErrorCodes.BACKUP_CORRUPT,
    });
  expect(await verdict(Buffer.concat([good, Buffer.from([0])]))).toBe(ErrorCodes.BACKUP_CORRUPT);
  expect(await verdict(Buffer.alloc(0))).toBe(ErrorCodes.BACKUP_CORRUPT);
});

test('another format, or a damaged frame under a recomputed checksum, is refused', async () => {
  const newer = Buffer.from(good);
  newer.writeUInt32LE(2, 4);
  await expect(verifyBackup([newer], 'x')).rejects.toMatchObject({
    code: ErrorCodes.BACKUP_CORRUPT,
    message: expect.stringContaining('backup format 2; this code reads 1'),
  });
  // A byte changed inside the payload and the SHA-256 made again: the frames' CRC-32s still catch it.
  const headerLen = good.readUInt32LE(8);
  const bad = Buffer.from(good);
  bad[PREFIX_BYTES + headerLen + 40] ^= 1;
  const body = bad.subarray(0, -DIGEST_BYTES);
  createHash('sha256')
    .update(body)
    .digest()
    .copy(bad, bad.length - DIGEST_BYTES);
  await expect(verifyBackup([bad], 'x')).rejects.toMatchObject({
    code: ErrorCodes.BACKUP_CORRUPT,
    message: expect.stringContaining('fails its CRC-32'),
  });
});

test('restore of a damaged backup writes nothing; a used data dir is refused', async () => {
  const bad = Buffer.from(good);
  bad[Math.floor(good.length / 2)] ^= 1;
  const badFile = join(root, 'bad.pvb');
  writeFileSync(badFile, bad);
  const dataDir = join(root, 'never');
  await expect(
    restoreBackup({ backup: badFile, dataDir, id: 1, address: '127.0.0.1:20001' }),
  ).rejects.toMatchObject({ code: ErrorCodes.BACKUP_CORRUPT });
  expect(existsSync(dataDir)).toBe(false);

  const used = join(root, 'used');
  await restoreBackup({ backup: file, dataDir: used, id: 1, address: '127.0.0.1:20001' });
  const before = readdirSync(used).sort();
  await expect(
    restoreBackup({ backup: file, dataDir: used, id: 1, address: '127.0.0.1:20001' }),
  ).rejects.toMatchObject({ code: ErrorCodes.DATADIR_NOT_EMPTY });
  expect(readdirSync(used).sort()).toEqual(before);
});

test('restore writes the engine snapshot, its configuration and the term as the engine does', async () => {
  const dataDir = join(root, 'seeded');
  const cluster = [
    { id: 4, address: '127.0.0.1:20004' },
    { id: 5, address: '127.0.0.1:20005' },
    { id: 6, address: '127.0.0.1:20006' },
  ];
  const r = await restoreBackup({
    backup: file,
    dataDir,
    id: 5,
    address: '127.0.0.1:20005',
    cluster,
  });
  const names = readdirSync(dataDir).sort();
  expect(names).toEqual(
    ['metadata1', 'prevail-node.json', r.snapshot, `${r.snapshot}.meta`].sort(),
  );
  expect(r.snapshot).toBe(`snapshot-${r.term}-${r.index}-1`);
  const meta = parseSnapshotMeta('meta', readFileSync(join(dataDir, `${r.snapshot}.meta`)));
  expect(meta).toEqual({
    configurationIndex: r.index,
    configuration: cluster.map((m) => ({ ...m, role: 'voter' })),
  });
  const data = parseSnapshotData('snap', readFileSync(join(dataDir, r.snapshot)));
  // The payload is the backup's but for the meta frame's peers (the source's addresses).
  const first = packr.unpack(data.payload.subarray(4, 4 + data.payload.readUInt32LE(0)));
  expect(first).toMatchObject({ t: 'meta', peers: [] });
  const md = readFileSync(join(dataDir, 'metadata1'));
  expect([
    md.readBigUInt64LE(0),
    md.readBigUInt64LE(8),
    md.readBigUInt64LE(16),
    md.readBigUInt64LE(24),
  ]).toEqual([1n, 1n, BigInt(r.term), 0n]);
  expect(JSON.parse(readFileSync(join(dataDir, 'prevail-node.json'), 'utf8'))).toEqual({
    id: 5,
    address: '127.0.0.1:20005',
    format: 1,
  });
  await expect(
    restoreBackup({
      backup: file,
      dataDir: join(root, 'x'),
      id: 7,
      address: '127.0.0.1:20007',
      cluster,
    }),
  ).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
});

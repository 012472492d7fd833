// Seeding a new data dir from a backup: the engine's own files, as it would have written them
// had it taken a snapshot at the backup's index under the new configuration — the snapshot
// (PVS1 header, then the backup's store payload), its `.meta` (the configuration), `metadata1`
// (the term, no vote) — and prevail's `prevail-node.json`. The engine then starts from that
// snapshot like from its own; every member of a new cluster is seeded from the same backup.
import { readdirSync } from 'node:fs';
import { open, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import type { MemberRef } from '../core/errors.js';
import { makeDir } from '../engine/data-dir.js';
import { checkAddress, checkCluster, checkPositiveInt } from '../engine/options.js';
import { packr } from '../format/entry.js';
import { HEADER_SIZE, SNAPSHOT_HEADER_FORMAT, SNAPSHOT_MAGIC } from '../format/framing.js';
import { crcOf, frame } from '../format/snapshot.js';
import { crc32 as engineCrc32, DISK_FORMAT } from '../inspect/readers.js';
import { verifyBackup, type BackupHeader, type VerifiedBackup } from './format.js';
import { DirectoryTarget, syncDir, writeAll, type BackupTarget } from './target.js';

export interface RestoreOptions {
  /** The backup: a file's path, or a name in a target. */
  backup: string | { target: BackupTarget; name: string };
  /** The new node's data dir: absent or empty (anything else is PREVAIL_DATADIR_NOT_EMPTY). */
  dataDir: string;
  /** The new node's id and raft address. */
  id: number;
  address: string;
  /** The new cluster's members (this node among them); default `[{ id, address }]`, a single node. */
  cluster?: MemberRef[];
}

export interface RestoreResult {
  dataDir: string;
  /** The snapshot file written (its name carries term and index). */
  snapshot: string;
  index: number;
  term: number;
  members: MemberRef[];
  /** The backup's header (where it came from). */
  from: BackupHeader;
  sha256: string;
}

// The engine's role code for a voter (raft.h: RAFT_STANDBY 0, RAFT_VOTER 1, RAFT_SPARE 2).
const VOTER = 1;

/**
 * Seeds `dataDir` from a backup, so that node `id` starts with the backup's state at its index,
 * in a configuration of `cluster`. The backup is read and checked whole first (SHA-256, every
 * frame's CRC): a damaged one is PREVAIL_BACKUP_CORRUPT with nothing written. Start the node
 * afterwards with the same id, address and cluster.
 */
export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const { dataDir } = options;
  const id = checkPositiveInt('id', options.id);
  const address = checkAddress('address', options.address);
  const members = checkCluster(options.cluster ?? [{ id, address }], id, address);
  if (!members.some((m) => m.id === id))
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `cluster does not list node ${id}`);
  checkEmpty(dataDir);
  const { read, name } = backupSource(options.backup);
  const checked = await verifyBackup(read(), name); // before anything is written
  const { index, term } = checked.header;
  if (index < 1 || term < 1)
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `backup ${name} is of an empty state (index ${index}, term ${term}): start a new node instead`,
    );
  const created = makeDirFresh(dataDir);
  const snapshot = `snapshot-${term}-${index}-1`;
  const written: string[] = [];
  try {
    await writeSnapshot(dataDir, snapshot, checked, read, name, written);
    await writeFileSynced(dataDir, `${snapshot}.meta`, snapshotMeta(index, members), written);
    await writeFileSynced(dataDir, 'metadata1', metadata(term), written);
    const identity = JSON.stringify({ id, address, format: 1 }) + '\n';
    await writeFileSynced(dataDir, 'prevail-node.json', Buffer.from(identity), written);
    await syncDir(dataDir);
  } catch (err) {
    await undo(dataDir, written, created);
    throw err;
  }
  return { dataDir, snapshot, index, term, members, from: checked.header, sha256: checked.sha256 };
}

function backupSource(backup: RestoreOptions['backup']): {
  read: () => AsyncIterable<Uint8Array>;
  name: string;
} {
  if (typeof backup === 'string') {
    const target = new DirectoryTarget(dirname(backup));
    return { read: () => target.read(basename(backup)), name: backup };
  }
  if (!backup || typeof backup.target?.read !== 'function' || typeof backup.name !== 'string')
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'backup must be a file path or { target, name }',
    );
  return { read: () => backup.target.read(backup.name), name: backup.target.describe(backup.name) };
}

function checkEmpty(dataDir: string): void {
  if (typeof dataDir !== 'string' || dataDir === '')
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'dataDir is required');
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (names.length)
    throw new PrevailError(
      ErrorCodes.DATADIR_NOT_EMPTY,
      `${dataDir} is not empty (${names.length} entries, e.g. ${names[0]}): a backup is restored into a new data dir only`,
      { path: dataDir },
    );
}

// Makes the dir; true when it did not exist (so a failed restore removes it again).
function makeDirFresh(dataDir: string): boolean {
  try {
    readdirSync(dataDir);
    return false;
  } catch {
    makeDir(dataDir);
    return true;
  }
}

/**
 * The snapshot file: the PVS1 header, then the backup's payload with the `meta` frame's
 * channel addresses (`peers`) dropped — they are the source cluster's, and a new member would
 * forward writes to them until each member announced itself — and the `end` frame's CRC
 * list following. The backup is read a second time for this, hashed again and checked
 * against the first reading, so a file changed in between is refused and the snapshot removed.
 */
async function writeSnapshot(
  dataDir: string,
  snapshot: string,
  checked: VerifiedBackup,
  read: () => AsyncIterable<Uint8Array>,
  name: string,
  written: string[],
): Promise<void> {
  const tmp = `tmp-restore-${snapshot}`; // a `tmp-` file the engine removes if we stop half-way
  const fh = await open(join(dataDir, tmp), 'wx');
  written.push(tmp);
  try {
    const meta = withoutPeers(checked.meta, name);
    const end = frame(packr.pack({ t: 'end', crcs: [crcOf(meta), ...checked.crcs.slice(1)] }));
    const out = new Batches(fh);
    await out.push(Buffer.alloc(HEADER_SIZE)); // the length is known at the end
    await out.push(meta);
    const last = checked.header.frames - 1;
    const again = await verifyBackup(read(), name, (f, piece) =>
      f === 0 || f === last ? undefined : out.push(piece),
    );
    if (again.sha256 !== checked.sha256)
      throw new PrevailError(
        ErrorCodes.BACKUP_CORRUPT,
        `backup ${name} changed while it was being restored`,
        { file: name },
      );
    await out.push(end);
    await out.flush();
    await fh.write(pvsHeader(out.bytes - HEADER_SIZE), 0, HEADER_SIZE, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(join(dataDir, tmp), join(dataDir, snapshot));
  written[written.indexOf(tmp)] = snapshot;
}

function withoutPeers(meta: Buffer, name: string): Uint8Array {
  const rec = packr.unpack(meta.subarray(4)) as { t?: unknown; peers?: unknown };
  if (rec?.t !== 'meta')
    throw new PrevailError(
      ErrorCodes.BACKUP_CORRUPT,
      `backup ${name}: the payload does not start with a meta frame`,
      { file: name },
    );
  return frame(packr.pack({ ...rec, peers: [] }));
}

// The engine snapshot header (native/framing.h): magic, header format (u32s), payload length (u64).
function pvsHeader(payloadBytes: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32LE(SNAPSHOT_MAGIC, 0);
  h.writeUInt32LE(SNAPSHOT_HEADER_FORMAT, 4);
  h.writeBigUInt64LE(BigInt(payloadBytes), 8);
  return h;
}

/** A snapshot's `.meta` as uv_snapshot.c writes it: format, CRC, configuration index and length, configuration. */
export function snapshotMeta(index: number, members: MemberRef[]): Buffer {
  const conf = encodeConfiguration(members);
  const head = Buffer.alloc(32);
  head.writeBigUInt64LE(BigInt(DISK_FORMAT), 0);
  head.writeBigUInt64LE(BigInt(index), 16);
  head.writeBigUInt64LE(BigInt(conf.length), 24);
  const crc = engineCrc32(conf, engineCrc32(head.subarray(16, 32)));
  head.writeBigUInt64LE(BigInt(crc), 8);
  return Buffer.concat([head, conf]);
}

/** configuration.c's encoding: format 1, u64 count, then id, NUL-terminated address, role each; padded to 8 bytes. */
export function encodeConfiguration(members: MemberRef[]): Buffer {
  const parts: Buffer[] = [Buffer.from([1]), u64(members.length)];
  for (const m of members)
    parts.push(u64(m.id), Buffer.from(`${m.address}\0`), Buffer.from([VOTER]));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, Buffer.alloc((8 - (body.length % 8)) % 8)]);
}

/** `metadata1` as uv_metadata.c writes it: format, version 1, term, voted for nobody. */
function metadata(term: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(BigInt(DISK_FORMAT), 0);
  b.writeBigUInt64LE(1n, 8);
  b.writeBigUInt64LE(BigInt(term), 16);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

async function writeFileSynced(
  dir: string,
  name: string,
  bytes: Uint8Array,
  written: string[],
): Promise<void> {
  const fh = await open(join(dir, name), 'wx');
  written.push(name);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// A failed restore leaves the dir as it found it: our files gone, and the dir if we made it.
async function undo(dataDir: string, written: string[], created: boolean): Promise<void> {
  for (const name of written) await unlink(join(dataDir, name)).catch(() => undefined);
  if (created) await rmdir(dataDir).catch(() => undefined);
}

/** Writes pieces in batches of about 1 MiB (a payload is thousands of small frames). */
class Batches {
  bytes = 0;
  #pending: Uint8Array[] = [];
  #size = 0;

  constructor(readonly fh: FileHandle) {}

  async push(piece: Uint8Array): Promise<void> {
    this.#pending.push(Buffer.from(piece)); // the reader may reuse its chunk
    this.#size += piece.length;
    this.bytes += piece.length;
    if (this.#size >= 1 << 20) await this.flush();
  }

  async flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    this.#size = 0;
    if (batch.length) await writeAll(this.fh, batch);
  }
}

// What a node keeps in its data dir besides the engine's files, all checked before the engine
// starts: the lock (one process at a time), the identity (one node id forever) and the applied
// mark (a log cut short is refused).
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { pidAlive } from '../core/processes.js';

/** The data dirs RaftNodes in this process hold. */
const openDirs = new Set<string>();

/**
 * mkdir -p. Node's recursive mkdir reports some failures as ENOENT (a read-only file system,
 * EROFS): then each missing level is made in turn, so the error is the real one.
 */
export function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const missing: string[] = [];
    for (let p = dir; !existsSync(p) && dirname(p) !== p; p = dirname(p)) missing.unshift(p);
    for (const p of missing) mkdirSync(p); // throws the real error (or, if it all works now, done)
  }
}

/** Takes `prevail.lock` (a lock left by a process that died is taken over), or throws PREVAIL_DATADIR_LOCKED. */
export function lockDataDir(dataDir: string): void {
  if (openDirs.has(dataDir)) {
    throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `${dataDir} is already open in this process`);
  }
  const lockFile = join(dataDir, 'prevail.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      openDirs.add(dataDir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(lockFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `${dataDir} is in use by process ${pid}`);
      }
      unlinkSync(lockFile); // left by a process that died
    }
  }
  throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `cannot lock ${dataDir}`);
}

export function unlockDataDir(dataDir: string): void {
  openDirs.delete(dataDir);
  try {
    unlinkSync(join(dataDir, 'prevail.lock'));
  } catch {
    // already gone
  }
}

/**
 * A new data dir is given this node's id (`prevail-node.json`); a used one must be this node's,
 * and its term and vote (the engine's metadata files) must be whole: see checkMetadata.
 */
export function checkIdentity(dataDir: string, id: number, address: string): void {
  const file = join(dataDir, 'prevail-node.json');
  const existing = readIdentity(file);
  if (existing && existing.id !== id) {
    throw new PrevailError(
      ErrorCodes.DATADIR_MISMATCH,
      `${dataDir} belongs to node ${String(existing.id)}, not node ${id}`,
    );
  }
  checkMetadata(dataDir);
  if (existing) return;
  const fd = openSync(file, 'w');
  writeFileSync(fd, JSON.stringify({ id, address, format: 1 }) + '\n');
  fsyncSync(fd);
  closeSync(fd);
}

/** Size of a metadata file: disk format, version counter, term, voted-for (u64 LE each). */
const METADATA_SIZE = 32;

/**
 * The engine keeps term and vote in `metadata1`/`metadata2`, writing version v (1, 2, 3…) over
 * the file of v's parity, in place, so both stay 32 bytes and one version apart. It takes a short
 * file for an interrupted first write (removes it, and with no other file bootstraps a blank
 * node), a missing one for never written, and trusts the higher version: damage there would
 * silently lose the term and vote (a member could vote twice in a term). So anything but those
 * invariants is refused, before the engine reads them.
 */
export function checkMetadata(dataDir: string): void {
  const one = readMetadata(dataDir, 'metadata1');
  const two = readMetadata(dataDir, 'metadata2');
  if (one === null && two === null) {
    if (holdsLog(dataDir)) {
      throw damagedMetadata(
        join(dataDir, 'metadata1'),
        'is missing (and metadata2), but the log is there',
      );
    }
    return;
  }
  if (one === null)
    throw damagedMetadata(join(dataDir, 'metadata1'), 'is missing, but metadata2 is there');
  if (two === null && one > 1n) {
    throw damagedMetadata(
      join(dataDir, 'metadata2'),
      `is missing, but metadata1 is at version ${one} (metadata2 holds the versions after 1)`,
    );
  }
  if (two !== null && one - two !== 1n && two - one !== 1n) {
    throw damagedMetadata(
      join(dataDir, 'metadata1'),
      `is at version ${one} and metadata2 at ${two}: they are written alternately, one version apart`,
    );
  }
}

// The version counter in `name`, or null if there is no such file; damage throws.
function readMetadata(dataDir: string, name: 'metadata1' | 'metadata2'): bigint | null {
  const file = join(dataDir, name);
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err; // can't be read (EACCES, EIO): start() makes it PREVAIL_IO
  }
  if (buf.length !== METADATA_SIZE) {
    throw damagedMetadata(file, `has ${buf.length} bytes, not ${METADATA_SIZE}`);
  }
  const format = buf.readBigUInt64LE(0);
  if (format !== 1n) throw damagedMetadata(file, `has disk format ${format}, not 1`);
  const version = buf.readBigUInt64LE(8);
  const parity = name === 'metadata1' ? 1n : 0n;
  if (version === 0n || version % 2n !== parity) {
    throw damagedMetadata(
      file,
      `holds version ${version}, which the engine never writes to ${name} ` +
        `(${name === 'metadata1' ? 'odd' : 'even'} versions only)`,
    );
  }
  return version;
}

// Log segments or snapshots: a used dir.
function holdsLog(dataDir: string): boolean {
  return readdirSync(dataDir).some((n) => /^(\d+-\d+|open-\d+|snapshot-\d+-\d+-\d+)$/.test(n));
}

function damagedMetadata(file: string, what: string): PrevailError {
  return new PrevailError(
    ErrorCodes.CORRUPT_ENTRY,
    `${file} ${what}: the node's term and vote can't be trusted, and it can't start on them. ` +
      'Nothing was changed; see docs/operations.md (a damaged data dir).',
    { file },
  );
}

// null when there is none yet.
function readIdentity(file: string): { id?: unknown } | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { id?: unknown };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (typeof code === 'string') throw err; // can't be read (EACCES, EIO): start() makes it PREVAIL_IO
    throw new PrevailError(
      ErrorCodes.DATADIR_MISMATCH,
      `${file} is unreadable: ${(err as Error).message}`,
    );
  }
}

/** The applied index last recorded in `prevail-applied` (see RaftNode), or 0. */
export function readAppliedMark(dataDir: string): number {
  try {
    const n = Number(readFileSync(join(dataDir, 'prevail-applied'), 'utf8').trim());
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function writeAppliedMark(dataDir: string, index: number): void {
  const tmp = join(dataDir, 'prevail-applied.tmp');
  writeFileSync(tmp, `${index}\n`);
  renameSync(tmp, join(dataDir, 'prevail-applied')); // never a torn file; a stale one is only lower
}

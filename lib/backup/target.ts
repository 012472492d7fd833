// Where backups go. A target stores named files: a directory now; an object store (S3 and the
// like) can implement the same four calls later without the backup or restore code changing.
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { makeDir } from '../engine/data-dir.js';

/** A place backups are written to and read from, by name. */
export interface BackupTarget {
  /** Stores `name` from the chunks, in order; resolves once it is durable and complete under that name (never half-written). */
  write(name: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void>;
  /** The backups' names, oldest first. */
  list(): Promise<string[]>;
  /** The bytes of `name`, in chunks; a chunk may be reused once the next one is asked for. */
  read(name: string): AsyncIterable<Uint8Array>;
  /** Removes `name`. */
  remove(name: string): Promise<void>;
  /** How to name `name` to a person (a path, a URL). */
  describe(name: string): string;
}

/** Backup file names: the index (16 digits, so names sort by it) and the time, UTC. */
export const BACKUP_NAME_RE = /^prevail-backup-(\d{16})-(\d{8}T\d{9}Z)\.pvb$/;

export function backupName(index: number, at: Date): string {
  const time = at.toISOString().replace(/[-:.]/g, ''); // 20261203T062153123Z
  return `prevail-backup-${String(index).padStart(16, '0')}-${time}.pvb`;
}

// Writes are gathered into batches about this size (the payload is thousands of small frames).
const BATCH_BYTES = 1 << 20;
// Written data is flushed every this many bytes: one fsync of the whole file at the end would
// queue tens of MB ahead of the log's own writes on the same disk (a stall for commits).
const SYNC_BYTES = 8 << 20;
// Reads come in chunks this size: each is hashed and checked on the loop thread in one go.
const READ_BYTES = 256 << 10;

/**
 * A directory (made if missing). A backup is written as `.name.tmp-PID`, fsync'd, renamed to
 * its name and the directory fsync'd: a crash leaves either the whole file or a temp file,
 * never a short file under a backup's name.
 */
export class DirectoryTarget implements BackupTarget {
  constructor(readonly dir: string) {}

  async write(
    name: string,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<void> {
    makeDir(this.dir);
    const tmp = join(this.dir, `.${name}.tmp-${process.pid}`);
    const fh = await open(tmp, 'wx');
    try {
      await writeBatched(fh, chunks);
      await fh.sync();
      await fh.close();
      await rename(tmp, join(this.dir, name));
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.dir);
  }

  async list(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true });
    return (await readdir(this.dir)).filter((n) => BACKUP_NAME_RE.test(n)).sort();
  }

  read(name: string): AsyncIterable<Uint8Array> {
    return readChunks(join(this.dir, name));
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name));
    await syncDir(this.dir);
  }

  describe(name: string): string {
    return join(this.dir, name);
  }
}

async function writeBatched(
  fh: FileHandle,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<void> {
  let batch: Uint8Array[] = [];
  let size = 0;
  let unsynced = 0;
  for await (const c of chunks) {
    batch.push(c);
    size += c.length;
    if (size >= BATCH_BYTES) {
      await writeAll(fh, batch);
      unsynced += size;
      batch = [];
      size = 0;
      if (unsynced >= SYNC_BYTES) {
        await fh.datasync();
        unsynced = 0;
      }
    }
  }
  if (batch.length) await writeAll(fh, batch);
}

// writev may write less than asked: the rest again until all of it is written.
export async function writeAll(fh: FileHandle, pieces: Uint8Array[]): Promise<void> {
  let left = pieces;
  while (left.length) {
    const { bytesWritten } = await fh.writev(left);
    let n = bytesWritten;
    const rest: Uint8Array[] = [];
    for (const p of left) {
      if (n >= p.length) n -= p.length;
      else {
        rest.push(p.subarray(n));
        n = 0;
      }
    }
    left = rest;
  }
}

/**
 * A file's bytes in chunks read into one reused buffer: each chunk is valid until the next is
 * asked for (readers copy what they keep). Fresh buffers for tens of MB would each count
 * towards V8's external memory and bring marking steps of a large heap into the loop.
 */
async function* readChunks(path: string): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(READ_BYTES);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** fsync a directory, so a rename or a new file in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

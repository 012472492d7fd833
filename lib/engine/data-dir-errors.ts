// A start that failed on the data dir, explained: which path, what is wrong with it, what to do.
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { ErrorCodes, PrevailError, isPrevailError } from '../core/errors.js';

/** The nearest of `dir` and its parents that exists but is not a directory, or null. */
function fileInTheWay(dir: string): string | null {
  for (let p = dir; ; p = dirname(p)) {
    try {
      return statSync(p).isDirectory() ? null : p;
    } catch {
      // missing, or below a file: look further up
    }
    if (dirname(p) === p) return null;
  }
}

/**
 * A data dir that can't be created, locked or written (a Node error from the file system) as
 * a coded error naming the path, the call that failed and what to do; the Node error is `cause`.
 */
export function dataDirError(dataDir: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException | null;
  if (isPrevailError(err) || typeof e?.code !== 'string' || typeof e.syscall !== 'string')
    return err;
  const path = e.path ?? dataDir;
  const fields = { path, syscall: e.syscall, cause: err };
  const failed = `${e.code} from ${e.syscall} ${path}`;
  switch (e.code) {
    case 'EEXIST':
    case 'ENOTDIR': {
      const file = fileInTheWay(dataDir) ?? path;
      return new PrevailError(
        ErrorCodes.IO,
        `dataDir ${dataDir} can't be used: ${file === dataDir ? 'it' : file} is a file, ` +
          `not a directory (${failed}). Give the path of a directory (created if missing), or move the file away.`,
        fields,
      );
    }
    case 'EACCES':
    case 'EPERM':
      return new PrevailError(
        ErrorCodes.IO,
        `dataDir ${dataDir} can't be used: permission denied (${failed}). This process ` +
          `(uid ${process.getuid?.() ?? '?'}) must be able to create and write files in it: change its owner or mode, or give ` +
          'another dataDir.',
        fields,
      );
    case 'EROFS':
      return new PrevailError(
        ErrorCodes.IO,
        `dataDir ${dataDir} can't be used: it is on a read-only file system (${failed}). ` +
          'Remount it read-write, or give a dataDir on a writable file system.',
        fields,
      );
    case 'ENOSPC':
    case 'EDQUOT':
      return new PrevailError(
        ErrorCodes.NO_SPACE,
        `dataDir ${dataDir} can't be used: no space left (${failed}). ` +
          'Free some space on its file system, or give another dataDir.',
        fields,
      );
    default:
      return new PrevailError(
        ErrorCodes.IO,
        `dataDir ${dataDir} can't be used: ${e.message} (${failed}).`,
        fields,
      );
  }
}

/**
 * A start that failed on damaged data names the file: the engine's message names a segment;
 * a snapshot that fails to restore is the newest one on disk. A short read of a segment is
 * damage (a cut file), not an I/O failure.
 */
export function damagedFile(dataDir: string, error: PrevailError): PrevailError {
  const segment = /load (?:closed|open) segment ([\w.-]+)/.exec(error.message)?.[1];
  if (segment && (error.code === ErrorCodes.IO || error.code === ErrorCodes.CORRUPT_ENTRY)) {
    const file = join(dataDir, segment);
    return new PrevailError(
      ErrorCodes.CORRUPT_ENTRY,
      `${file} is damaged: ${error.message}. The node can't start on it; ` +
        'see docs/operations.md (a damaged data dir) to rejoin it from its peers.',
      { file, cause: error },
    );
  }
  if (error.code === ErrorCodes.SNAPSHOT_UNREADABLE) {
    const newest = newestSnapshot(dataDir);
    if (newest) {
      return new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `${newest} can't be restored: ${error.message}. Nothing was changed; ` +
          'see docs/operations.md (a damaged data dir).',
        { file: newest, cause: error },
      );
    }
  }
  return error;
}

// The path of the snapshot the engine restores on start (the highest index, then the latest), or null.
function newestSnapshot(dataDir: string): string | null {
  let newest: { file: string; index: number; ts: number } | null = null;
  try {
    for (const name of readdirSync(dataDir)) {
      const m = /^snapshot-\d+-(\d+)-(\d+)$/.exec(name);
      if (
        m &&
        (!newest ||
          Number(m[1]) > newest.index ||
          (Number(m[1]) === newest.index && Number(m[2]) > newest.ts))
      ) {
        newest = { file: join(dataDir, name), index: Number(m[1]), ts: Number(m[2]) };
      }
    }
  } catch {
    // unreadable dir: keep the engine's message
  }
  return newest?.file ?? null;
}

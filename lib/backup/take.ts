// Taking a backup of a running store: a background capture (the same one snapshots use: in
// slices between applies), then, in one synchronous step, the capture's frames plus the entries
// applied since (the engine snapshot's bytes) with the index, term and configuration that go
// with them. Writing and hashing those happen afterwards, in batches between other work: the
// frames are never changed once made, so writes keep flowing while the backup is written.
import { debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { backupPieces, verifyBackup, type BackupHeader } from './format.js';
import { DirectoryTarget, backupName, type BackupTarget } from './target.js';

/** What store.backup() resolves with. */
export interface BackupResult {
  /** The backup's name in its target (a file name in a directory). */
  name: string;
  /** Where it is, for a person: the file's path for a directory. */
  file: string;
  index: number;
  term: number;
  /** The file's size. */
  bytes: number;
  /** The SHA-256 over the file (the digest its last 32 bytes hold), hex. */
  sha256: string;
  durationMs: number;
}

/** What a backup needs from the store (Store.backup hands these over). */
export interface BackupSource {
  /** Runs a background capture of the state now; resolves when it is complete. */
  capture(): Promise<unknown>;
  /**
   * Synchronously: the payload (frames) of the state now, and the header fields that describe
   * exactly that state.
   */
  now(): { frames: Uint8Array[]; header: Omit<BackupHeader, 'payloadBytes' | 'frames'> };
}

export interface BackupOptions {
  /**
   * Capture the state first (default true): the backup is then the state serialised now plus
   * the few entries applied while that ran. false: the last background capture plus every entry
   * since — what the engine's own snapshots hold — with nothing serialised (lighter on a busy
   * node; the restored node replays that tail when it starts).
   */
  capture?: boolean;
  /**
   * What the backup must hold (the store does this before capturing): `linearizable` (default)
   * every write acknowledged anywhere before the call — on a follower it first waits to have
   * applied the leader's commit index; `stale` this node's state as it is (no leader needed).
   */
  consistency?: 'linearizable' | 'stale';
}

/** A backup's destination: a directory's path, or a target. */
export type BackupDestination = string | BackupTarget;

export function toTarget(destination: BackupDestination): BackupTarget {
  if (typeof destination === 'string') {
    if (destination === '')
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'backup destination is empty');
    return new DirectoryTarget(destination);
  }
  const t = destination as Partial<BackupTarget> | null;
  if (!t || typeof t.write !== 'function' || typeof t.read !== 'function')
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'backup destination must be a directory path or a BackupTarget (write, read, list, remove)',
    );
  return destination;
}

/**
 * Takes a backup of `source` into `destination`, then reads it back and checks it (checksum
 * and frames) before resolving.
 */
export async function takeBackup(
  source: BackupSource,
  destination: BackupDestination,
  options: BackupOptions = {},
): Promise<BackupResult> {
  const target = toTarget(destination);
  const started = performance.now();
  if (options.capture !== false) await source.capture();
  const captured = performance.now();
  const { frames, header } = source.now();
  const name = backupName(header.index, new Date(header.createdAt));
  let written: { sha256: string; bytes: number } | null = null;
  await target.write(
    name,
    backupPieces(header, frames, (sha256, bytes) => {
      written = { sha256, bytes };
    }),
  );
  const { sha256, bytes } = written!;
  const wrote = performance.now();
  const check = await verifyBackup(target.read(name), target.describe(name));
  if (check.sha256 !== sha256)
    throw new PrevailError(
      ErrorCodes.BACKUP_CORRUPT,
      `backup ${target.describe(name)} reads back with SHA-256 ${check.sha256}, written as ${sha256}`,
      { file: target.describe(name) },
    );
  debug(
    'backup at index %d: capture %d ms, write %d ms, read-back %d ms, %d bytes',
    header.index,
    Math.round(captured - started),
    Math.round(wrote - captured),
    Math.round(performance.now() - wrote),
    bytes,
  );
  return {
    name,
    file: target.describe(name),
    index: header.index,
    term: header.term,
    bytes,
    sha256,
    durationMs: performance.now() - started,
  };
}

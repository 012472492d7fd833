// Replaying a data dir's entries through a StateMachine offline, shared by `prevail inspect
// --at` (the state at an index) and `prevail upgrade-check` (the same log with other code).
import { join } from 'node:path';

import { ErrorCodes, PrevailError, isPrevailError, type ErrorCode } from '../core/errors.js';
import type { StateMachine } from '../store/state-machine.js';

import type { InspectedEntry } from './results.js';
import { ENTRY_TYPES, HEADER_SIZE, corrupt, decodeCommand, unreadableSnapshot } from './readers.js';
import type { RawEntry } from './readers.js';

export type Machine = StateMachine<any, any>;

/** A command entry ready to apply: the store payload (without our PVE1 framing) and where it came from. */
export interface ReplayEntry {
  index: number;
  term: number;
  payload: Uint8Array;
  /** `file: at byte N` (a log entry) or `snapshot file: tail entry` (an entry a snapshot carries). */
  where: string;
}

export function entryHeader(e: RawEntry): InspectedEntry {
  return {
    index: e.index,
    term: e.term,
    type: ENTRY_TYPES[e.type],
    length: e.data.length,
    file: e.file,
    offset: e.offset,
  };
}

/** A log command entry's payload; PREVAIL_CORRUPT_ENTRY when it lacks our framing. */
export function logEntry(root: string, e: RawEntry): ReplayEntry {
  const probe = entryHeader(e);
  const payload = decodeCommand(probe, e.data);
  const path = join(root, e.file);
  if (!payload)
    throw corrupt(path, e.offset, `entry ${e.index} is not a prevail entry (no PVE1 framing)`);
  return {
    index: e.index,
    term: probe.framing!.term,
    payload,
    where: `${path}: at byte ${e.offset}`,
  };
}

/** The command entries of the log in lo..hi (barriers and configurations never reach the FSM). */
export function* logCommands(
  root: string,
  raw: readonly RawEntry[],
  lo: number,
  hi: number,
): Generator<ReplayEntry> {
  for (const e of raw) {
    if (e.index < lo || e.index > hi || e.type !== 1) continue;
    yield logEntry(root, e);
  }
}

/**
 * Applies one entry as the log records its outcome: a handler's error is returned as
 * `{ error }`; the store's own (fatal) errors throw, naming the entry's file and offset and
 * keeping their code.
 */
export function applyReplayEntry(
  machine: Machine,
  e: ReplayEntry,
): { result?: unknown; error?: unknown } {
  try {
    return machine.applyOutcome(e.payload, e.index, e.term);
  } catch (err) {
    const code: ErrorCode = isPrevailError(err) ? err.code : ErrorCodes.CORRUPT_ENTRY;
    throw new PrevailError(code, `${e.where}: ${(err as Error).message}`, {
      index: e.index,
      cause: err,
    });
  }
}

/** Restores a snapshot's store payload; its problems are PREVAIL_SNAPSHOT_UNREADABLE (or the store's code) naming the file. */
export function restoreSnapshot(machine: Machine, path: string, payload: Uint8Array): void {
  try {
    machine.restore(payload);
  } catch (err) {
    if (isPrevailError(err))
      throw new PrevailError(err.code, `${path}: ${err.message}`, { cause: err });
    throw unreadableSnapshot(
      path,
      HEADER_SIZE,
      `the store can't restore it: ${(err as Error).message}`,
    );
  }
}

// `prevail upgrade-check DIR --schema new.mjs [--old old.mjs]`: replays a stopped node's data
// dir (or a copy, or a backup) with new code, offline and read-only, and reports what would stop
// or change a replica running it: commands it doesn't define, the store's fatal errors,
// handler errors, and effects hashes that differ from what the old code produced (recorded in
// the snapshots' meta, or the old code replayed side by side).
import { join } from 'node:path';

import { ErrorCodes, PrevailError, isPrevailError } from '../core/errors.js';
import { decodeEntry, entryLabel, packr } from '../format/entry.js';
import { verifySnapshot } from '../format/snapshot.js';
import type { Schema } from '../store/schema.js';
import { StateMachine } from '../store/state-machine.js';

import { readDataDir, type DataDir } from './inspect.js';
import type { InspectedSnapshot } from './results.js';
import {
  applyReplayEntry,
  logCommands,
  restoreSnapshot,
  type Machine,
  type ReplayEntry,
} from './replay.js';
import { compareOutcomes, groupHandlerErrors, outcomeOf, type Tally } from './upgrade-outcomes.js';
import type { RecordedHash, UpgradeCheckOptions, UpgradeCheckResult } from './upgrade-results.js';

export * from './upgrade-results.js';

/**
 * Replays `dir` with `options.schema` (and `options.old` beside it) from the oldest point the
 * dir can be replayed from, and reports. Refuses a live node's dir (PREVAIL_DATADIR_LOCKED):
 * check a stopped node or a copy. Throws the reading errors of inspect (PREVAIL_CORRUPT_ENTRY,
 * PREVAIL_SNAPSHOT_UNREADABLE, PREVAIL_IO); a fatal error of the replay itself is reported
 * in the result, not thrown.
 */
export async function upgradeCheck(
  dir: string,
  options: UpgradeCheckOptions,
): Promise<UpgradeCheckResult> {
  checkSchema('schema', options.schema);
  if (options.old !== undefined) checkSchema('old', options.old);
  const data = await readDataDir(dir);
  const lock = data.result.lock;
  if (lock?.live) {
    throw new PrevailError(
      ErrorCodes.DATADIR_LOCKED,
      `${data.root}: process ${lock.pid} holds this data dir; stop the node or check a copy of the dir`,
    );
  }
  const start = chooseStart(data);
  const fresh = new StateMachine(options.schema); // no captures: nothing is written
  const old = options.old ? new StateMachine(options.old) : null;
  if (start.snapshot) {
    const path = join(data.root, start.snapshot.file);
    restoreSnapshot(fresh, path, start.base);
    if (old) restoreSnapshot(old, path, start.base);
  }
  const result = emptyResult(data, start, old !== null);
  result.unknownCommands = unknownCommands(fresh, start.entries, start.baseIndex);
  replay(result, fresh, old, start.entries, recordedAfter(data, start.baseIndex));
  result.stateHash = fresh.stateHash();
  if (old && result.old) {
    const oldHash = old.stateHash();
    result.old.stateHash = {
      old: oldHash,
      new: result.stateHash,
      match: oldHash === result.stateHash,
    };
  }
  result.problems = problems(result);
  result.ok = result.problems.length === 0;
  return result;
}

function checkSchema(name: string, schema: Schema<any, any> | undefined): void {
  if (!schema || typeof schema.collections !== 'object' || typeof schema.commands !== 'object') {
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `${name} must come from defineSchema({ collections, commands })`,
    );
  }
}

interface Start {
  /** The snapshot replayed from (its base capture, then its tail's entries), or null: the empty state. */
  snapshot: InspectedSnapshot | null;
  /** The snapshot's store payload without its tail (restored as the state at baseIndex). */
  base: Buffer;
  baseIndex: number;
  entries: ReplayEntry[];
}

/**
 * The oldest point every later entry is on disk from: the empty state when the log starts at
 * 1 (or 2: entry 1 is the bootstrap configuration, never a command), else the oldest snapshot
 * the log continues. A snapshot is restored as its base capture and its tail entries are then
 * applied one by one, like the log's, so that each is checked.
 */
function chooseStart(data: DataDir): Start {
  const { root, raw, result, payloads } = data;
  const end = Number.MAX_SAFE_INTEGER;
  if (
    (raw.length === 0 && result.snapshots.length === 0) ||
    (raw.length > 0 && result.firstIndex <= 2)
  )
    return {
      snapshot: null,
      base: Buffer.alloc(0),
      baseIndex: 0,
      entries: [...logCommands(root, raw, 1, end)],
    };
  const newest = result.snapshots.at(-1)?.index ?? 0;
  const snapshot = [...result.snapshots]
    .filter((s) => s.store !== null)
    .sort((a, b) => a.index - b.index || a.term - b.term || a.timestamp - b.timestamp)
    .find((s) => (raw.length > 0 ? result.firstIndex <= s.index + 1 : s.index >= newest));
  if (!snapshot) {
    const kept = result.snapshots.map((s) => s.index).join(', ') || 'none';
    throw new PrevailError(
      ErrorCodes.SNAPSHOT_UNREADABLE,
      `${root}: nothing to replay from: the log on disk holds ${result.firstIndex}..${result.lastIndex} and no store snapshot it continues is kept (snapshots: ${kept})`,
    );
  }
  const path = join(root, snapshot.file);
  const { base, tail } = splitTail(path, payloads.get(snapshot)!);
  return {
    snapshot,
    base,
    baseIndex: snapshot.store!.baseIndex,
    entries: [...tail, ...logCommands(root, raw, snapshot.index + 1, end)],
  };
}

/** A snapshot's frames without its tail (and without the checksum list, which then no longer fits), and the tail's entries. */
function splitTail(path: string, payload: Buffer): { base: Buffer; tail: ReplayEntry[] } {
  let frames: Buffer[];
  try {
    frames = verifySnapshot(payload);
  } catch (err) {
    if (isPrevailError(err))
      throw new PrevailError(err.code, `${path}: ${err.message}`, { cause: err });
    throw err;
  }
  const base: Buffer[] = [];
  const tail: ReplayEntry[] = [];
  for (const framed of frames) {
    const rec = packr.unpack(framed.subarray(4)) as {
      t?: string;
      entries?: [number, number, Uint8Array][];
    };
    if (rec?.t === 'tail') {
      for (const [index, term, bytes] of rec.entries ?? [])
        tail.push({ index, term, payload: bytes, where: `${path}: the tail's entry ${index}` });
    } else if (rec?.t !== 'end') base.push(framed);
  }
  return { base: Buffer.concat(base), tail };
}

/** The effects hashes the snapshots recorded after the start: what the old code produced there. */
function recordedAfter(data: DataDir, baseIndex: number): RecordedHash[] {
  return data.result.snapshots
    .filter((s) => s.store?.effects && s.store.baseIndex > baseIndex)
    .sort((a, b) => a.store!.baseIndex - b.store!.baseIndex)
    .map((s) => ({
      index: s.store!.baseIndex,
      snapshot: s.file,
      recorded: s.store!.effects!,
      replayed: null,
      match: null,
      after: baseIndex,
    }));
}

function emptyResult(data: DataDir, start: Start, withOld: boolean): UpgradeCheckResult {
  return {
    dir: data.root,
    ok: false,
    start: { index: start.baseIndex, snapshot: start.snapshot?.file ?? null },
    lastIndex: start.baseIndex,
    replayed: 0,
    unknownCommands: [],
    fatal: null,
    handlerErrors: [],
    changedOutcomes: withOld ? [] : null,
    recorded: { compared: 0, mismatched: 0, checks: [] },
    old: withOld ? { fatal: null, firstDifference: null, stateHash: null } : null,
    stateHash: '',
    problems: [],
    warnings: [...data.result.warnings],
  };
}

/** The command names the entries use (directly or by a schedule) that `machine`'s code does not define. */
function unknownCommands(
  machine: Machine,
  entries: ReplayEntry[],
  startIndex: number,
): UpgradeCheckResult['unknownCommands'] {
  const found = new Map<string, { name: string; count: number; firstIndex: number }>();
  // A command entry needs a handler under the version it was proposed in; a schedule, under any.
  const check = (name: unknown, index: number, version?: number) => {
    if (typeof name !== 'string' || machine.defines(name, version)) return;
    const seen = found.get(name);
    if (seen) seen.count++;
    else found.set(name, { name, count: 1, firstIndex: index });
  };
  // Schedules the start snapshot holds fire commands too (counted at the start's index).
  for (const s of machine.schedules()) check(s.name, startIndex);
  for (const e of entries) {
    const entry = decodeEntry(e.payload);
    if (typeof entry === 'string') continue; // the replay reports it (fatal)
    if (entry.type === 'command') check(entry.name, e.index, entry.version);
    else if (entry.kind === 'schedule') check((entry.data as { name?: unknown })?.name, e.index);
  }
  return [...found.values()];
}

/** The command (or store entry kind) an entry carries, for reports. */
export function entryName(payload: Uint8Array): string {
  const entry = decodeEntry(payload);
  return typeof entry === 'string' ? '?' : entryLabel(entry);
}

/** Applies every entry to the new machine (and the old one), comparing as it goes; stops at a fatal error. */
function replay(
  result: UpgradeCheckResult,
  fresh: Machine,
  old: Machine | null,
  entries: ReplayEntry[],
  recorded: RecordedHash[],
): void {
  const tally: Tally = { errors: new Map(), changed: new Map() };
  const pending = [...recorded];
  let oldMachine = old;
  for (const e of entries) {
    compareRecorded(result, fresh, pending, e.index - 1);
    const outcome = applyOrStop(result, fresh, e);
    if (!outcome) break;
    result.replayed++;
    result.lastIndex = e.index;
    let oldOutcome: { result?: unknown; error?: unknown } | null = null;
    if (oldMachine) {
      try {
        oldOutcome = applyReplayEntry(oldMachine, e);
      } catch (err) {
        result.old!.fatal = fatalOf(err, e.index);
        oldMachine = null;
      }
    }
    const name = entryName(e.payload);
    if (oldOutcome) compareOutcomes(tally, name, e.index, oldOutcome, outcome);
    else if (!old) groupHandlerErrors(tally, name, e.index, outcome);
    if (oldMachine && oldOutcome)
      firstDifference(result, fresh, oldMachine, e, name, oldOutcome, outcome);
  }
  if (!result.fatal) compareRecorded(result, fresh, pending, Number.MAX_SAFE_INTEGER);
  result.recorded.checks = recorded;
  result.handlerErrors = [...tally.errors.values()];
  if (result.changedOutcomes) result.changedOutcomes = [...tally.changed.values()];
}

function applyOrStop(
  result: UpgradeCheckResult,
  machine: Machine,
  e: ReplayEntry,
): { result?: unknown; error?: unknown } | null {
  try {
    return applyReplayEntry(machine, e);
  } catch (err) {
    result.fatal = fatalOf(err, e.index);
    result.lastIndex = e.index;
    return null;
  }
}

function fatalOf(err: unknown, index: number): { index: number; code: string; message: string } {
  if (!isPrevailError(err)) throw err;
  return { index, code: err.code, message: err.message };
}

/** Compares the recorded hashes at indexes up to `upTo` (all entries up to it are applied). */
function compareRecorded(
  result: UpgradeCheckResult,
  machine: Machine,
  pending: RecordedHash[],
  upTo: number,
): void {
  const checks = result.recorded;
  while (pending.length > 0 && pending[0]!.index <= upTo) {
    const check = pending.shift()!;
    check.replayed = machine.effects().hash;
    check.match = check.replayed === check.recorded;
    // Where the difference lies: after the last index known to match.
    const matched = result.recorded.checks.filter((c) => c.match === true && c.index < check.index);
    check.after = matched.at(-1)?.index ?? check.after;
    checks.checks.push(check);
    checks.compared++;
    if (!check.match) checks.mismatched++;
  }
}

function firstDifference(
  result: UpgradeCheckResult,
  fresh: Machine,
  old: Machine,
  e: ReplayEntry,
  command: string,
  oldOutcome: { result?: unknown; error?: unknown },
  newOutcome: { result?: unknown; error?: unknown },
): void {
  const o = result.old!;
  if (o.firstDifference) return;
  const oldHash = old.effects().hash;
  const newHash = fresh.effects().hash;
  if (oldHash === newHash) return;
  o.firstDifference = {
    index: e.index,
    command,
    oldEffects: oldHash,
    newEffects: newHash,
    oldOutcome: outcomeOf(oldOutcome),
    newOutcome: outcomeOf(newOutcome),
  };
}

/** One line per problem found; none means the new code replays this dir as the old code did. */
function problems(r: UpgradeCheckResult): string[] {
  const out: string[] = [];
  for (const u of r.unknownCommands)
    out.push(
      `unknown command ${JSON.stringify(u.name)}: ${u.count} entries, the first at ${u.firstIndex}`,
    );
  if (r.fatal)
    out.push(`the replay stopped at ${r.fatal.index}: ${r.fatal.code}: ${r.fatal.message}`);
  for (const c of r.recorded.checks)
    if (c.match === false)
      out.push(
        `effects hash at ${c.index} (${c.snapshot}) differs from the recorded one: a command in ${c.after + 1}..${c.index} changed its effects`,
      );
  for (const c of r.changedOutcomes ?? [])
    out.push(`${c.command}: ${c.count} outcomes changed, the first at ${c.firstIndex}`);
  const o = r.old;
  if (o?.fatal)
    out.push(`the old code stopped at ${o.fatal.index}: ${o.fatal.code}: ${o.fatal.message}`);
  if (o?.firstDifference)
    out.push(
      `effects differ from the old code's first at ${o.firstDifference.index} (${o.firstDifference.command})`,
    );
  if (o?.stateHash && !o.stateHash.match)
    out.push(`the final stateHash differs from the old code's`);
  return out;
}

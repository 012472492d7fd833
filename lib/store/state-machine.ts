// The replicated state machine: what RaftNode drives as its Fsm (apply, snapshot, restore),
// and what `prevail inspect` runs offline. Applies user commands (their handlers, atomically)
// and the store's own entries (peer addresses, schedules); keeps the divergence detector's
// effects hash; snapshots through its Capture.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError, isFatal, markFatal } from '../core/errors.js';
import {
  decodeEntry,
  entryLabel,
  packr,
  type EntryBody,
  type StoreEntry,
} from '../format/entry.js';
import { verifySnapshot } from '../format/snapshot.js';
import type { Schedule } from '../jobs.js';
import { StoreMetrics, channels } from '../metrics.js';
import { patchesOf } from '../plain-data.js';
import type { ApplyMeta, Fsm } from '../engine/types.js';
import { collectionAccess, makeCollections, rollback } from './access.js';
import { Capture, serializeAll, type CaptureOptions } from './capture.js';
import type { CollectionImpl, Undo } from './collection.js';
import {
  CHECKPOINTS_KEPT,
  CHECKPOINT_EVERY,
  foldNumber,
  foldString,
  foldValue,
  hexOf,
  initialEffects,
  type EffectsHash,
} from './effects.js';
import { mix } from './random.js';
import { restoreFrames } from './restore.js';
import {
  addSchedule,
  checkForwardedSystem,
  sortedSchedules,
  takeDue,
  type FireData,
  type ScheduleData,
} from './schedules.js';
import {
  isThenable,
  type CollectionWriter,
  type Collections,
  type CommandContext,
  type Commands,
  type SchemaVersion,
  toSchema,
  type Schema,
  type StateOf,
  type ViewOf,
} from './schema.js';
import { exoticPatches } from './stored.js';
import {
  installIndexes,
  isVersionRange,
  Versions,
  versionAt,
  type SchemaState,
} from './versions.js';

/** The state every replica holds alike, shared by the state machine, its capture and restore. */
export interface ReplicaState {
  collections: Map<string, CollectionImpl>;
  /** The newest proposer's clock seen along the log (commands' `timestamp`). */
  lastTimestamp: number;
  appliedIndex: number;
  /** The running hash of applied effects, and recent (index, hash) checkpoints to compare. */
  effects: EffectsHash;
  checkpoints: [number, string][];
  /** Each node's peer-channel address, as announced by it when it led. */
  peers: Map<number, string>;
  /** Scheduled commands by id. */
  schedules: Map<string, Schedule>;
  /** The active schema version, its history, and what each node's code supports. */
  schema: SchemaState;
}

export interface StateMachineOptions extends Partial<CaptureOptions> {
  /** The node's id, for logs and diagnostics channels. Default 1. */
  id?: number;
  /** An apply slower than this (ms) is published and logged. Default 50. */
  slowApplyMs?: number;
  metrics?: StoreMetrics;
}

/**
 * Marks one of the store's own errors as fatal: the entry can't be applied the same way on
 * every replica, so the replica stops (RaftNode closes the node) rather than diverge.
 */
function fatal(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string): PrevailError {
  return markFatal(new PrevailError(code, message));
}

/**
 * Events: 'schedules' (they changed), 'capture' ({ index, durationMs, serialised }),
 * 'captureError'.
 */
export class StateMachine<C extends Collections, H extends Commands<C>>
  extends EventEmitter
  implements Fsm<unknown>
{
  /** Read-only access to every collection and its indexes. */
  readonly view: ViewOf<C>;
  readonly state: ReplicaState;
  readonly capture: Capture;
  readonly metrics: StoreMetrics;
  /** Told the applied index after every apply and restore (the cluster link's waits). */
  onApplied: ((index: number) => void) | null = null;
  readonly #versions: Versions;
  readonly #writers: StateOf<C>;
  readonly #id: number;
  readonly #slowApplyMs: number;
  // The running command's undo log; null outside handlers.
  #tx: Undo[] | null = null;

  constructor(schema: Schema<C, H>, options: StateMachineOptions = {}) {
    super();
    this.#versions = new Versions(toSchema(schema).versions);
    this.#id = options.id ?? 1;
    this.#slowApplyMs = options.slowApplyMs ?? 50;
    this.metrics = options.metrics ?? new StoreMetrics();
    this.state = {
      collections: makeCollections(this.#versions),
      lastTimestamp: 0,
      appliedIndex: 0,
      effects: initialEffects(),
      checkpoints: [],
      peers: new Map(),
      schedules: new Map(),
      schema: this.#versions.initialState(),
    };
    const sliceSize = options.sliceSize ?? 2000;
    this.capture = new Capture(this.state, this, {
      // Without captureEvery: no captures (the interval is never reached).
      captureEvery: options.captureEvery ?? Number.MAX_SAFE_INTEGER,
      sliceSize,
      snapshotThreshold: options.snapshotThreshold ?? Number.MAX_SAFE_INTEGER,
    });
    const view: Record<string, unknown> = {};
    const writers: Record<string, unknown> = {};
    const transaction = () => this.#tx;
    for (const [name, c] of this.state.collections) {
      const indexNames = this.#versions.indexNames(name);
      view[name] = collectionAccess(c, false, transaction, this.capture.chunkSize, indexNames);
      writers[name] = collectionAccess(c, true, transaction, this.capture.chunkSize, indexNames);
    }
    this.view = view as ViewOf<C>;
    this.#writers = writers as StateOf<C>;
  }

  // ---- the Fsm ----------------------------------------------------------------------

  apply(command: Uint8Array, meta: ApplyMeta): unknown {
    const t0 = performance.now();
    try {
      return this.applyEntry(command, meta.index, meta.term);
    } finally {
      const ms = performance.now() - t0;
      this.metrics.applied++;
      this.metrics.applyMs.observe(ms);
      if (ms >= this.#slowApplyMs) this.#slowApply(command, meta.index, ms);
      this.onApplied?.(meta.index);
    }
  }

  snapshot(): Uint8Array[] {
    return this.capture.snapshotBytes();
  }

  /** Replaces the state by a snapshot's store payload, then replays the entries it carries after its capture. */
  restore(data: Uint8Array): void {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const frames = verifySnapshot(buf); // before anything is cleared: a damaged snapshot changes nothing
    this.capture.reset({ index: 0, chunks: [] });
    const restored = restoreFrames(this.state, frames, this.capture.chunkSize, this.#versions);
    this.emit('schedules');
    // A migrated base is re-serialised at once, so later snapshots carry current versions.
    const chunks =
      restored.baseChunks ?? serializeAll(this.state, restored.baseIndex, this.capture.chunkSize);
    this.capture.reset({ index: restored.baseIndex, chunks });
    this.state.appliedIndex = restored.baseIndex;
    for (const [index, term, payload] of restored.tail) this.#replay(payload, index, term);
    this.onApplied?.(this.state.appliedIndex);
  }

  // An entry of a snapshot's tail: applied as it was the first time.
  #replay(payload: Uint8Array, index: number, term: number): void {
    this.capture.append(index, term, payload);
    this.state.appliedIndex = index;
    try {
      this.#run(payload, index, term);
    } catch (err) {
      if (isFatal(err)) throw err;
      // a handler that threw when the entry was first applied throws again: rolled back
    }
  }

  /** Applies one entry: returns the command's result, throws its error (fatal ones stop the replica). */
  applyEntry(payload: Uint8Array, index: number, term: number): unknown {
    this.capture.append(index, term, payload);
    this.state.appliedIndex = index;
    const result = this.#run(payload, index, term);
    this.capture.startIfDue();
    return result;
  }

  /**
   * Applies one entry offline, as the log records its outcome: a handler's error is returned
   * as `{ error }`; the store's own errors (fatal: the entry can't be applied) throw.
   */
  applyOutcome(
    payload: Uint8Array,
    index: number,
    term: number,
  ): { result?: unknown; error?: unknown } {
    try {
      return { result: this.applyEntry(payload, index, term) };
    } catch (error) {
      if (isFatal(error)) throw error;
      return { error };
    }
  }

  // ---- queries ------------------------------------------------------------------------

  /** A command handler is running (store methods that start work refuse to run inside one). */
  get inHandler(): boolean {
    return this.#tx !== null;
  }

  /**
   * The command a proposal of `name` runs under the active schema version (aliases resolved);
   * throws UNKNOWN_COMMAND, or VERSION_NOT_ACTIVE for a command of a later version.
   */
  resolveCommand(name: string): string {
    return this.#versions.resolve(name, this.state.schema.active);
  }

  /** Whether this code can apply a command `name` proposed under `version` (under any version when not given). */
  defines(name: string, version?: number): boolean {
    return this.#versions.defines(name, version);
  }

  /** Refuses what a peer may not have this node propose (see ClusterLink): only commands, and the store requests followers forward. */
  checkForwarded(request: EntryBody): EntryBody {
    if (request.type === 'command') return { ...request, name: this.resolveCommand(request.name) };
    checkForwardedSystem(request.kind, request.data);
    return request;
  }

  /** The active schema version: what proposals are encoded under. */
  activeVersion(): number {
    return this.state.schema.active;
  }

  /** The replicated schema state, and the range this code supports. */
  schemaState(): Readonly<SchemaState> & { readonly code: readonly [number, number] } {
    return { ...this.state.schema, code: [this.#versions.min, this.#versions.max] };
  }

  /** The schema version a replay from this node's newest snapshot starts under (the oldest its code still needs). */
  replayVersion(): number {
    return versionAt(this.state.schema, this.capture.status().baseIndex, this.#versions.min);
  }

  appliedIndex(): number {
    return this.state.appliedIndex;
  }

  /** The replicated channel addresses, by node id. */
  peers(): ReadonlyMap<number, string> {
    return this.state.peers;
  }

  /** Recent (index, effects hash) checkpoints of this replica. */
  checkpoints(): readonly (readonly [number, string])[] {
    return this.state.checkpoints;
  }

  /** The schedules, soonest first. */
  schedules(): Schedule[] {
    return sortedSchedules(this.state.schedules);
  }

  effects(): { index: number; hash: string } {
    return { index: this.state.appliedIndex, hash: hexOf(this.state.effects) };
  }

  /** A hash of the whole state (objects and ids), equal on replicas that applied the same entries. */
  stateHash(): string {
    const h = createHash('sha256');
    for (const c of [...this.state.collections.values()].sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      h.update(`${c.name}:${c.nextId}:`);
      for (const obj of c.objects.values()) {
        // id order; ids are in the objects
        h.update(packr.pack(obj));
        const x = exoticPatches(obj); // what msgpack can't tell apart
        if (x) h.update(packr.pack(x));
      }
    }
    const schedules = this.schedules();
    h.update(packr.pack(schedules));
    const xs = patchesOf(schedules);
    if (xs.length) h.update(packr.pack(xs));
    return h.digest('hex');
  }

  // ---- apply ----------------------------------------------------------------------

  #run(payload: Uint8Array, index: number, term: number): unknown {
    foldNumber(this.state.effects, index);
    try {
      const entry = decodeEntry(payload);
      if (typeof entry === 'string')
        throw fatal(ErrorCodes.CORRUPT_ENTRY, `entry ${index}: ${entry}`);
      this.state.lastTimestamp = Math.max(this.state.lastTimestamp, entry.proposedAt);
      return entry.type === 'system'
        ? this.#runSystem(entry.kind, entry.data as any, index, term)
        : this.#command(entry.name, entry.args, entry.version, index, term);
    } finally {
      if (index % CHECKPOINT_EVERY === 0) {
        this.state.checkpoints.push([index, hexOf(this.state.effects)]);
        if (this.state.checkpoints.length > CHECKPOINTS_KEPT) this.state.checkpoints.shift();
      }
    }
  }

  // A command entry runs with the handler of the version it was proposed under, which must
  // be the active one: one proposed before an activation and committed after it is refused,
  // on every replica alike (the proposer retries it under the new version).
  #command(name: string, args: unknown, version: number, index: number, term: number): unknown {
    const active = this.state.schema.active;
    if (version < active)
      throw new PrevailError(
        ErrorCodes.SCHEMA_CHANGED,
        `entry ${index}: ${JSON.stringify(name)} was proposed under schema version ${version}, and version ${active} became active before it was committed: not applied`,
        { index, version: active },
      );
    if (version > active)
      throw new PrevailError(
        ErrorCodes.VERSION_NOT_ACTIVE,
        `entry ${index}: ${JSON.stringify(name)} was proposed under schema version ${version}, which is not active (${active}): not applied`,
        { index, version },
      );
    return this.#execute(name, args, index, term);
  }

  // Runs a user command's handler (of the active version) atomically: its changes are undone if it throws.
  #execute(
    name: string,
    args: unknown,
    index: number,
    term: number,
    scheduled?: { id: string; due: number },
  ): unknown {
    const handler = this.#versions.handler(name, this.state.schema.active, index);
    const undo: Undo[] = [];
    this.#tx = undo;
    try {
      const result = handler(this.#writers, args, this.#context(index, term, scheduled));
      if (isThenable(result)) throw refuseAsync(result, name, index);
      this.#foldEffects(undo);
      return result;
    } catch (err) {
      rollback(undo, this.capture.chunkSize);
      // Only the store's own errors stop a replica (`fatal`, see fatal()): a handler's error
      // fails its command, whatever fields it carries — else replaying it would stop the
      // node at every start.
      if (isFatal(err)) {
        throw Object.assign(new Error(String((err as Error).message)), err, {
          name: (err as Error).name,
          fatal: false,
        });
      }
      throw err;
    } finally {
      this.#tx = null;
    }
  }

  #context(index: number, term: number, scheduled?: { id: string; due: number }): CommandContext {
    let n = 0;
    let r = 0;
    return {
      index,
      term,
      timestamp: this.state.lastTimestamp,
      id: () => `${index.toString(36)}.${(n++).toString(36)}`,
      random: () => mix(index, r++),
      ...(scheduled ? { scheduled } : {}),
    };
  }

  // The divergence detector: what this command did, as every replica must have done it.
  #foldEffects(undo: Undo[]): void {
    const effects = this.state.effects;
    for (const u of undo) {
      foldString(effects, u.c.name);
      if ('nextId' in u) {
        foldNumber(effects, u.c.nextId);
      } else {
        foldValue(effects, u.id);
        foldValue(effects, u.c.objects.get(u.id) ?? null);
      }
    }
  }

  #runSystem(kind: string, data: any, index: number, term: number): unknown {
    foldString(this.state.effects, kind);
    switch (kind) {
      case 'peer':
        this.state.peers.set(data.id, data.channel);
        if (isVersionRange(data.schema))
          this.state.schema.support.set(data.id, [data.schema[0], data.schema[1]]);
        return undefined;
      case 'activate':
        return this.#activate(data?.version, index, term);
      case 'schedule': {
        this.resolveCommand((data as ScheduleData).name); // nothing changed yet
        const id = addSchedule(this.state.schedules, data as ScheduleData, index);
        this.emit('schedules');
        return id;
      }
      case 'unschedule': {
        const existed = this.state.schedules.delete(data.id);
        if (existed) this.emit('schedules');
        return existed;
      }
      case 'fire':
        return this.#fire(data as FireData, index, term);
      default:
        throw fatal(
          ErrorCodes.CORRUPT_ENTRY,
          `entry ${index} is a store entry of unknown kind ${JSON.stringify(kind)}`,
        );
    }
  }

  // Activates schema version `target` at this entry, on every replica: each version's
  // migrations, its indexes, its upgrade hook, in one undoable step (a migration that throws
  // leaves the active version and every object as they were, on every replica alike).
  #activate(target: unknown, index: number, term: number): { activated: boolean; active: number } {
    const schema = this.state.schema;
    const from = schema.active;
    if (!Number.isSafeInteger(target) || (target as number) <= from)
      return { activated: false, active: from };
    foldNumber(this.state.effects, target as number);
    // A store that never held an object starts at the target: nothing to migrate (and code
    // without the versions before it can start a new cluster).
    const fresh = schema.activations.length === 0 && this.#neverWritten();
    const path = fresh ? [target as number] : range(from + 1, target as number);
    const steps = path.map((v) => this.#versions.need(v, index)); // fatal before anything changes
    const undo: Undo[] = [];
    this.#tx = undo;
    try {
      for (const step of steps) this.#migrateTo(step, index, term, fresh);
      this.#foldEffects(undo);
    } catch (err) {
      rollback(undo, this.capture.chunkSize);
      const before = this.#versions.get(from);
      if (before) installIndexes(this.state.collections, before);
      if (isFatal(err)) throw err;
      throw new PrevailError(
        ErrorCodes.MIGRATION_FAILED,
        `activating schema version ${String(target)} at entry ${index} failed, nothing changed: ${(err as Error)?.message ?? err}`,
        { index, version: target as number, cause: err },
      );
    } finally {
      this.#tx = null;
    }
    schema.active = target as number;
    schema.activations.push([index, target as number]);
    debug('node %d: schema version %d active from entry %d', this.#id, target, index);
    this.emit('schema');
    return { activated: true, active: schema.active };
  }

  #neverWritten(): boolean {
    for (const c of this.state.collections.values()) if (c.nextId !== 1) return false;
    return true;
  }

  #migrateTo(version: SchemaVersion, index: number, term: number, fresh: boolean): void {
    if (fresh) return installIndexes(this.state.collections, version);
    const ctx = this.#context(index, term);
    const writers = this.#writers as Record<string, CollectionWriter<any>>;
    for (const [name, migrate] of Object.entries(version.migrate)) {
      const c = this.state.collections.get(name)!;
      for (const obj of [...c.objects.values()])
        writers[name]!.update(obj.id, (o) => migrate(o, ctx) as object);
    }
    installIndexes(this.state.collections, version); // keyed on the migrated objects
    const result = version.upgrade?.(this.#writers, ctx);
    if (isThenable(result))
      throw refuseAsync(result, `upgrade to version ${version.version}`, index);
  }

  #fire(
    data: FireData,
    index: number,
    term: number,
  ): { fired: boolean; name?: string; result?: unknown; error?: unknown } {
    const s = takeDue(this.state.schedules, data, this.state.lastTimestamp);
    if (!s) return { fired: false };
    this.emit('schedules');
    try {
      return {
        fired: true,
        name: s.name,
        result: this.#execute(s.name, s.args, index, term, { id: s.id, due: data.due }),
      };
    } catch (err) {
      if (isFatal(err)) throw err;
      // The command's own changes are undone; the schedule has still fired (no retry loop).
      return {
        fired: true,
        name: s.name,
        error: {
          message: String((err as Error)?.message ?? err),
          code: (err as { code?: unknown })?.code,
        },
      };
    }
  }

  #slowApply(command: Uint8Array, index: number, durationMs: number): void {
    const entry: StoreEntry | string = decodeEntry(command); // a problem with it is reported by apply itself
    const name = typeof entry === 'string' ? '?' : entryLabel(entry);
    debug(
      'node %d: slow apply of %s at index %d: %d ms',
      this.#id,
      name,
      index,
      Math.round(durationMs),
    );
    if (channels.slowApply.hasSubscribers)
      channels.slowApply.publish({ id: this.#id, index, durationMs, command: name });
  }
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

// A handler returned a promise: it went on (or will) after this entry was applied, outside
// the command. Refused the same way on every replica and on every replay: its changes are
// undone and the command fails. Its eventual rejection is nobody's to handle.
function refuseAsync(result: PromiseLike<unknown>, name: string, index: number): PrevailError {
  try {
    Promise.resolve(result).catch(() => undefined);
  } catch {
    // a thenable whose `then` getter throws: nothing to attach to
  }
  return new PrevailError(
    ErrorCodes.ASYNC_HANDLER,
    `command ${JSON.stringify(name)} at entry ${index} returned a promise: ` +
      'handlers must be synchronous; its changes were undone',
    { index },
  );
}

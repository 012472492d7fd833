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
  type Collections,
  type CommandContext,
  type Commands,
  type Schema,
  type StateOf,
  type ViewOf,
} from './schema.js';
import { exoticPatches } from './stored.js';

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
  readonly #handlers: H;
  readonly #writers: StateOf<C>;
  readonly #id: number;
  readonly #slowApplyMs: number;
  // The running command's undo log; null outside handlers.
  #tx: Undo[] | null = null;

  constructor(schema: Schema<C, H>, options: StateMachineOptions = {}) {
    super();
    this.#handlers = schema.commands;
    this.#id = options.id ?? 1;
    this.#slowApplyMs = options.slowApplyMs ?? 50;
    this.metrics = options.metrics ?? new StoreMetrics();
    this.state = {
      collections: makeCollections(schema.collections),
      lastTimestamp: 0,
      appliedIndex: 0,
      effects: initialEffects(),
      checkpoints: [],
      peers: new Map(),
      schedules: new Map(),
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
      view[name] = collectionAccess(c, false, transaction, this.capture.chunkSize);
      writers[name] = collectionAccess(c, true, transaction, this.capture.chunkSize);
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
    const restored = restoreFrames(this.state, frames, this.capture.chunkSize);
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

  checkCommand(name: string): void {
    if (typeof this.#handlers[name] !== 'function')
      throw new PrevailError(ErrorCodes.UNKNOWN_COMMAND, `unknown command ${JSON.stringify(name)}`);
  }

  /** Refuses what a peer may not have this node propose (see ClusterLink): only commands, and the store requests followers forward. */
  checkForwarded(request: EntryBody): void {
    if (request.type === 'command') this.checkCommand(request.name);
    else checkForwardedSystem(request.kind, request.data);
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
        : this.#execute(entry.name, entry.args, index, term);
    } finally {
      if (index % CHECKPOINT_EVERY === 0) {
        this.state.checkpoints.push([index, hexOf(this.state.effects)]);
        if (this.state.checkpoints.length > CHECKPOINTS_KEPT) this.state.checkpoints.shift();
      }
    }
  }

  // Runs a user command's handler atomically (its changes are undone if it throws).
  #execute(
    name: string,
    args: unknown,
    index: number,
    term: number,
    scheduled?: { id: string; due: number },
  ): unknown {
    const handler = this.#handlers[name];
    if (typeof handler !== 'function') {
      throw fatal(
        ErrorCodes.UNKNOWN_COMMAND,
        `entry ${index} names command ${JSON.stringify(name)}, which this code does not define; stopping rather than diverging`,
      );
    }
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
        return undefined;
      case 'schedule': {
        this.checkCommand((data as ScheduleData).name); // nothing changed yet
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

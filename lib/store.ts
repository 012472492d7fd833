// The object store: plain objects in this process, changed only by named commands that
// go through the Raft log. Reads are synchronous calls on in-memory maps and indices.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { debug } from './core/diagnostics.js';
import { freePort } from './core/ports.js';
import { ErrorCodes, PrevailError, isFatal, markFatal } from './core/errors.js';
import { decodeEntry, encodeEntry, packr } from './format/entry.js';
import { SNAPSHOT_FORMAT_READ, SnapshotFormat, crcOf, formatFor, frame, fromRows, notePatched, objsFrame, verifySnapshot } from './format/snapshot.js';
import { EncodedTail } from './format/tail.js';
import { StringTable, describeKey, sameKey } from './store/key-map.js';
import { CHECKPOINTS_KEPT, CHECKPOINT_EVERY, foldNumber, foldString, foldValue, hexOf, initialEffects, type EffectsHash } from './store/effects.js';
import { ObjectTable } from './store/object-table.js';
import { addToIndex, chunkObjects, clearIndex, indexReader, makeIndex, removeFromIndex, type CollectionImpl, type IndexImpl, type Undo } from './store/collection.js';
import { mix } from './store/random.js';
import { exoticPatches, freezeStored, markExotic } from './store/stored.js';
import { applyPatches, checkPlain, checkPlainObject, freezeDeep, patchesOf, type Patch } from './plain-data.js';
import { RaftNode, type CloseOptions } from './engine/raft-node.js';
import { defaults, type RaftNodeOptions } from './engine/options.js';
import type { RaftNodeStatus } from './engine/types.js';
import { ClusterLink, type Health, type LinkOptions, type ReadOptions, type WriteOptions } from './cluster/cluster-link.js';
import { StoreMetrics, channels, kMetrics, type MetricsSnapshot } from './metrics.js';
import { LeaderJobs, type LeaderJob, type LeaderJobHandle, type LeaderJobOptions, type Schedule } from './jobs.js';
import { SortedIndex, PersistentSortedIndex, type IndexKey, type Id, type RangeOptions } from './sorted-index/index.js';


// How system entries travel through propose/forwarding (user command names can't start with it).
const SYSTEM_PREFIX = 'prevail:';
// ---- schema ------------------------------------------------------------------------

export type IndexKind = 'unique' | 'hash' | 'sorted' | 'persistent';

export interface IndexDef<T, K extends IndexKind = IndexKind> {
  /** unique: one object per key; hash: many, unordered; sorted: ordered, range queries;
   *  persistent: sorted with structural sharing, `view()` gives a cheap consistent copy. */
  kind: K;
  /** The key of an object; `undefined` leaves the object out of this index. Arrays are compound keys. */
  key: (obj: T) => IndexKey | undefined;
}

/** Makes index definitions for objects of type T (so keys are typed). */
export interface IndexBuilder<T> {
  unique(key: (obj: Stored<T>) => IndexKey | undefined): IndexDef<T, 'unique'>;
  hash(key: (obj: Stored<T>) => IndexKey | undefined): IndexDef<T, 'hash'>;
  sorted(key: (obj: Stored<T>) => IndexKey | undefined): IndexDef<T, 'sorted'>;
  persistent(key: (obj: Stored<T>) => IndexKey | undefined): IndexDef<T, 'persistent'>;
}

const indexBuilder: IndexBuilder<any> = {
  unique: (key) => ({ kind: 'unique', key }),
  hash: (key) => ({ kind: 'hash', key }),
  sorted: (key) => ({ kind: 'sorted', key }),
  persistent: (key) => ({ kind: 'persistent', key }),
};

export interface CollectionDef<T, I extends Record<string, IndexDef<T>>> {
  /** Schema version of this collection's objects. Default 1. */
  version?: number;
  /** The indexes: `(ix) => ({ byEmail: ix.unique((u) => u.email), byAge: ix.sorted((u) => u.age) })`. */
  indexes?: (ix: IndexBuilder<T>) => I;
  /** Upgrades an object written at `fromVersion` (from a snapshot) to `version`. Must be deterministic. */
  migrate?: (obj: Record<string, unknown>, fromVersion: number) => Omit<T, 'id'>;
}

/** An object as stored: frozen, with the id the store gave it. */
export type Stored<T> = Readonly<T> & { readonly id: Id };

export interface CollectionSpec<T = unknown, I extends Record<string, IndexDef<T>> = Record<string, IndexDef<T>>> {
  readonly def: CollectionDef<T, I>;
  readonly __type?: T;
}

/** Declares a collection of objects of type T: `collection<User>()({ indexes: {...} })`. */
export function collection<T extends object>() {
  return <I extends Record<string, IndexDef<T>> = Record<string, never>>(def: CollectionDef<T, I> = {}): CollectionSpec<T, I> => ({ def });
}

export type Collections = Record<string, CollectionSpec<any, any>>;

export interface CommandContext {
  /** The entry's log index. */
  readonly index: number;
  /** The term of the leader that appended it. */
  readonly term: number;
  /** The leader's clock when it proposed the entry (ms), never decreasing along the log. Use instead of Date.now(). */
  readonly timestamp: number;
  /** A unique, deterministic id: the same on every replica. Use instead of random ids. */
  id(): string;
  /** A deterministic random number in [0, 1), the same on every replica. Use instead of Math.random(). */
  random(): number;
  /** Set when the command runs because a schedule fell due: its id and the due time it fired for. */
  readonly scheduled?: { readonly id: string; readonly due: number };
}

type IndexReaderOf<T, D> = D extends { kind: 'unique' } ? UniqueIndexReader<T>
  : D extends { kind: 'hash' } ? HashIndexReader<T>
  : D extends { kind: 'persistent' } ? PersistentIndexReader<T>
  : SortedIndexReader<T>;

export type CollectionReaderOf<S> = S extends CollectionSpec<infer T, infer I>
  ? CollectionReader<T> & { readonly [K in keyof I]: IndexReaderOf<T, I[K]> }
  : never;
export type CollectionWriterOf<S> = S extends CollectionSpec<infer T, infer I>
  ? CollectionWriter<T> & { readonly [K in keyof I]: IndexReaderOf<T, I[K]> }
  : never;

/** What a command handler gets: every collection, writable. */
export type StateOf<C extends Collections> = { readonly [K in keyof C]: CollectionWriterOf<C[K]> };
/** What readers outside commands get: every collection, read-only. */
export type ViewOf<C extends Collections> = { readonly [K in keyof C]: CollectionReaderOf<C[K]> };

/**
 * A command handler: synchronous, deterministic. Its changes apply only if it returns; it must
 * not be `async` nor return a promise (the store refuses both: PREVAIL_ASYNC_HANDLER).
 */
export type Handler<C extends Collections> = (state: StateOf<C>, args: any, ctx: CommandContext) => unknown;
export type Commands<C extends Collections> = Record<string, Handler<C>>;

export interface Schema<C extends Collections, H extends Commands<C>> {
  collections: C;
  commands: H;
}

/**
 * Declares the state machine: collections and the commands that change them. Handlers
 * are typed from the collections; `store.propose` is typed from the handlers.
 */
export function defineSchema<C extends Collections, H extends Commands<C> & SyncHandlers<H>>(schema: { collections: C; commands: H }): Schema<C, H> {
  for (const name of Object.keys(schema?.commands ?? {})) {
    if (name.startsWith(SYSTEM_PREFIX)) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `command ${JSON.stringify(name)}: names starting with "${SYSTEM_PREFIX}" are the store's own`);
    }
  }
  checkHandlers(schema?.commands ?? {});
  return schema;
}

/** Handlers whose return type is a promise (or any thenable) become `never`, so they don't type-check (any, never and unions other than of promises pass). */
export type SyncHandlers<H> = {
  [K in keyof H]: H[K] extends (...args: any[]) => infer R ? (0 extends 1 & R ? H[K] : [R] extends [never] ? H[K] : [R] extends [PromiseLike<unknown>] ? never : H[K]) : H[K];
};

// `async function`s and async generator functions, recognisable before they run. A function
// that returns a promise without being `async` is caught when it runs (#execute).
function isAsyncFunction(fn: unknown): boolean {
  if (typeof fn !== 'function') return false;
  const tag = (fn as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
  return tag === 'AsyncFunction' || tag === 'AsyncGeneratorFunction' ||
    fn.constructor?.name === 'AsyncFunction' || fn.constructor?.name === 'AsyncGeneratorFunction';
}

function checkHandlers(commands: Record<string, unknown>): void {
  for (const [name, handler] of Object.entries(commands)) {
    if (isAsyncFunction(handler)) {
      throw new PrevailError(ErrorCodes.ASYNC_HANDLER, `command ${JSON.stringify(name)}: a handler must be synchronous, not async ` +
        '(the store applies its changes when it returns; work after an await would happen outside the command)');
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null &&
    typeof (value as { then?: unknown }).then === 'function';
}

export type ArgsOf<F> = F extends (state: any, args: infer A, ctx: any) => unknown ? A : never;
export type ResultOf<F> = F extends (...a: any[]) => infer R ? Awaited<R> : never;

// ---- readers and writers -------------------------------------------------------------

export interface CollectionReader<T> {
  get(id: Id): Stored<T> | undefined;
  has(id: Id): boolean;
  readonly size: number;
  /** Every object, in insertion order. */
  values(): IterableIterator<Stored<T>>;
}

export interface CollectionWriter<T> extends CollectionReader<T> {
  /** Inserts a new object; the store assigns `id` (deterministic, per collection). */
  insert(obj: Omit<T, 'id'>): Stored<T>;
  /** Replaces fields of an object (a shallow merge) or, with a function, the whole object. */
  update(id: Id, patch: Partial<Omit<T, 'id'>> | ((obj: Stored<T>) => Omit<T, 'id'>)): Stored<T>;
  delete(id: Id): boolean;
}

export interface UniqueIndexReader<T> {
  get(key: IndexKey): Stored<T> | undefined;
  has(key: IndexKey): boolean;
}
export interface HashIndexReader<T> {
  get(key: IndexKey): Stored<T>[];
  count(key: IndexKey): number;
}
export type { RangeOptions };
export interface SortedIndexReader<T> {
  get(key: IndexKey): Stored<T>[];
  range(options?: RangeOptions): IterableIterator<Stored<T>>;
  /** Like range, with each object's key (for cursors). */
  entries(options?: RangeOptions): IterableIterator<[IndexKey, Stored<T>]>;
  first(): Stored<T> | undefined;
  last(): Stored<T> | undefined;
}
export interface PersistentIndexReader<T> extends SortedIndexReader<T> {
  /** A consistent view as of now; later commands do not change it. O(1). Resolves ids to the objects of that moment. */
  view(): SortedIndexReader<T>;
}

// ---- the store ---------------------------------------------------------------------

/**
 * The engine's options (RaftNodeOptions, documented there), the cluster link's (LinkOptions) and
 * the store's own. `id` is optional here (default 1), and so is `address` (default: this id's
 * entry in `cluster`, else 127.0.0.1 on a free port, fine for a single node).
 */
export interface StoreOptions<C extends Collections, H extends Commands<C>> extends LinkOptions,
  Partial<Pick<RaftNodeOptions, 'id' | 'address'>>,
  Pick<RaftNodeOptions, 'dataDir' | 'cluster' | 'join' | 'electionTimeoutMs' | 'heartbeatMs' | 'snapshotThreshold' |
    'snapshotTrailing' | 'maxInflightEntries'> {
  schema: Schema<C, H>;
  /** Start a background state capture after this many entries. Default snapshotThreshold / 2. */
  captureEvery?: number;
  /** Objects serialised per slice of the background capture. Default 2000. */
  captureSliceSize?: number;
  /** An apply slower than this (ms) is published on `prevail:slow-apply` and logged (NODE_DEBUG=prevail). Default 50. */
  slowApplyMs?: number;
}

export class Store<C extends Collections, H extends Commands<C>> extends EventEmitter {
  readonly node!: RaftNode<unknown>;
  /** Read-only access to every collection and its indexes. */
  readonly view: ViewOf<C>;

  #collections = new Map<string, CollectionImpl>();
  #handlers: H;
  #tx: Undo[] | null = null;
  #lastTimestamp = 0;
  #base: { index: number; chunks: Uint8Array[] };
  #tail = new EncodedTail();
  #captureDone: Promise<number> | null = null;
  // Bumped by every restore: a capture started before it describes a state that is gone.
  #generation = 0;
  #captureEvery: number;
  #sliceSize: number;
  // Ids per snapshot frame (see CollectionImpl.frames).
  #chunkSize: number;
  #lastCaptureEnd = -Infinity;
  #appliedIndex = 0;
  #link!: ClusterLink;
  // open() has resolved: from then on a fatal apply error is reported by 'error' (see #stop).
  #opened = false;
  #stopping = false;
  #jobs!: LeaderJobs<Store<C, H>>;
  // Replicated: scheduled commands by id (see schedule()).
  #schedules = new Map<string, Schedule>();
  // The running hash of applied effects, and recent (index, hash) checkpoints to compare.
  #effects: EffectsHash = initialEffects();
  #checkpoints: [number, string][] = [];
  readonly [kMetrics] = new StoreMetrics();
  // Replicated: each node's peer-channel address, as announced by it when it led.
  #peers = new Map<number, string>();
  #writers: StateOf<C>;
  #snapshotThreshold: number;
  // Capturing re-serialises the whole state, so its interval grows with the state
  // (amortised, like an append-only-file rewrite at 100% growth): entries between
  // captures ≥ objects/4, and the engine's snapshot interval ≥ objects/2.
  #captureInterval: number;

  private constructor(schema: Schema<C, H>, snapshotThreshold: number, captureEvery: number, sliceSize: number) {
    super();
    this.#handlers = schema.commands;
    this.#snapshotThreshold = snapshotThreshold;
    this.#captureEvery = captureEvery;
    this.#captureInterval = captureEvery;
    this.#sliceSize = sliceSize;
    this.#chunkSize = Math.max(1, Math.min(512, sliceSize));
    const view: Record<string, unknown> = {};
    const writers: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(schema.collections)) {
      const def = spec.def as CollectionDef<any, any>;
      const c: CollectionImpl = {
        name, version: def.version ?? 1, objects: new ObjectTable(), nextId: 1, overlays: new Set(), frames: [],
        indexes: Object.entries(def.indexes ? def.indexes(indexBuilder) : {}).map(([iname, idef]) => makeIndex(iname, idef as IndexDef<any>)),
      };
      if (def.migrate) c.migrate = def.migrate;
      this.#collections.set(name, c);
      view[name] = this.#reader(c, false);
      writers[name] = this.#reader(c, true);
    }
    this.view = view as ViewOf<C>;
    this.#writers = writers as StateOf<C>;
    // The state at index 0: empty, every collection at its first id.
    this.#base = { index: 0, chunks: [this.#metaRecord(0)([])] };
  }

  /**
   * Opens the store: a durable single node by default; with `cluster`, one member of a
   * replicated store. Replays the last snapshot and the log before resolving.
   */
  static async open<C extends Collections, H extends Commands<C>>(options: StoreOptions<C, H>): Promise<Store<C, H>> {
    const { schema } = options;
    if (!schema || typeof schema.collections !== 'object' || typeof schema.commands !== 'object') {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'schema must come from defineSchema({ collections, commands })');
    }
    checkHandlers(schema.commands);  // also for a schema not made by defineSchema
    const snapshotThreshold = options.snapshotThreshold ?? defaults.snapshotThreshold;
    const captureEvery = options.captureEvery ?? Math.max(1, Math.floor(snapshotThreshold / 2));
    const store = new Store<C, H>(schema, snapshotThreshold, captureEvery, options.captureSliceSize ?? 2000);
    const id = options.id ?? 1;
    const address = options.address ?? options.cluster?.find((m) => m.id === id)?.address ?? `127.0.0.1:${await freePort()}`;
    const { cluster, join, electionTimeoutMs, heartbeatMs, snapshotTrailing, maxInflightEntries } = options;
    const slowApplyMs = options.slowApplyMs ?? 50;
    const metrics = store[kMetrics];
    const node = await RaftNode.start<unknown>({
      id, address, dataDir: options.dataDir, cluster, join, electionTimeoutMs, heartbeatMs, snapshotThreshold, snapshotTrailing, maxInflightEntries,
      fsm: {
        apply: (command, meta) => {
          const t0 = performance.now();
          try {
            return store.#applyEntry(command, meta.index, meta.term);
          } finally {
            const ms = performance.now() - t0;
            metrics.applied++;
            metrics.applyMs.observe(ms);
            if (ms >= slowApplyMs) store.#slowApply(id, command, meta.index, ms);
            store.#link?.onApplied(meta.index);
          }
        },
        snapshot: () => store.#snapshotBytes(),
        restore: (data) => {
          store.#restore(data);
          store.#link?.onApplied(store.#appliedIndex);
        },
      },
    });
    (store as { node: RaftNode<unknown> }).node = node;
    // An entry this replica can't apply stops the node (RaftNode emits 'error' once closed).
    node.on('error', (err: PrevailError) => store.#stop(err));
    try {
      store.#link = await ClusterLink.start({
        node,
        appliedIndex: () => store.#appliedIndex,
        proposeLocal: (name, args, signal) => store.#proposeLocal(name, args, signal),
        announce: (peerId, channel) => node.propose(encodeEntry(true, 'peer', { id: peerId, channel }, Date.now())),
        peers: () => store.#peers,
        metrics,
        checkpoints: () => store.#checkpoints,
        onDivergence: (info) => store.#diverged(info),
      }, options);
    } catch (err) {
      await node.close();
      throw node.failure ?? err;
    }
    // An entry that failed to apply before open() resolves (caught up from the leader
    // meanwhile) fails open(), like one replayed from the local log.
    if (node.failure) {
      await store.#link.close(node.failure);
      await node.close().catch(() => undefined);
      throw node.failure;
    }
    store.#opened = true;
    store.#jobs = new LeaderJobs<Store<C, H>>({
      node, store, events: store,
      schedules: () => store.#schedules.values(),
      fire: async (scheduleId, due, signal) => {
        const r = await store.#link.propose(`${SYSTEM_PREFIX}fire`, { id: scheduleId, due }, { signal, timeoutMs: 5000 });
        const fired = r.result as { fired: boolean; name?: string; error?: unknown };
        if (fired.error !== undefined) store.emit('scheduleError', { id: scheduleId, due, name: fired.name, error: fired.error });
        return fired;
      },
    });
    store.#adaptIntervals();
    node.on('role', (e) => store.emit('role', e));
    store.on('capture', ({ index, durationMs }: { index: number; durationMs: number }) => {
      metrics.snapshotMs.observe(durationMs);
      if (channels.snapshot.hasSubscribers) channels.snapshot.publish({ id, kind: 'capture', index, durationMs });
    });
    return store;
  }

  /**
   * The state machine alone, without a node: for reading a data dir offline (`prevail
   * inspect`). `restore` takes a snapshot's store payload; `apply` runs one command entry
   * (a handler's error is returned as `{ error }`, as the log would; fatal ones throw).
   */
  static offline<C extends Collections, H extends Commands<C>>(schema: Schema<C, H>): {
    restore(data: Uint8Array): void;
    apply(payload: Uint8Array, index: number, term: number): { result?: unknown; error?: unknown };
    readonly view: ViewOf<C>;
    stateHash(): string;
  } {
    // No captures: the interval is never reached.
    const store = new Store<C, H>(schema, defaults.snapshotThreshold, Number.MAX_SAFE_INTEGER, 2000);
    return {
      restore: (data) => store.#restore(data),
      apply: (payload, index, term) => {
        try {
          return { result: store.#applyEntry(payload, index, term) };
        } catch (error) {
          if (isFatal(error)) throw error;
          return { error };
        }
      },
      view: store.view,
      stateHash: () => store.stateHash(),
    };
  }

  /**
   * Proposes a command; resolves with the handler's result once committed and applied here.
   * On a follower it is forwarded to the leader (unless `forward: false`).
   */
  propose<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, options: WriteOptions = {}): Promise<ResultOf<H[K]>> {
    this.#outsideHandler('propose');
    return this.#proposeWithIndex(name, args, options).then((r) => r.result as ResultOf<H[K]>);
  }

  /** Like propose, also giving the entry's log index (for read-your-writes: `read({ minIndex })`). */
  proposeWithIndex<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, options: WriteOptions = {}):
    Promise<{ index: number; result: ResultOf<H[K]> }> {
    this.#outsideHandler('proposeWithIndex');
    return this.#proposeWithIndex(name, args, options) as Promise<{ index: number; result: ResultOf<H[K]> }>;
  }

  async #proposeWithIndex(name: string, args: unknown, options: WriteOptions): Promise<{ index: number; result: unknown }> {
    // The name now (a `prevail:` name must not reach #proposeLocal); the args where they are
    // encoded (encodeEntry: NOT_PLAIN_DATA), on this node before anything is appended or sent.
    this.#checkCommand(name);
    return this.#link.propose(name, args, options);
  }

  // Called from inside a command handler, these start work that outlives the command, and a
  // promise the handler drops would reject unhandled on every replay (ending the process):
  // refused at once instead, so the handler throws and its changes are undone, the same on
  // every replica.
  #outsideHandler(method: string): void {
    if (this.#tx !== null) {
      throw new PrevailError(ErrorCodes.REENTRANT, `store.${method}() called inside a command handler: handlers are synchronous ` +
        'and change state only through their state argument (propose follow-up work from outside the handler)');
    }
  }

  /**
   * Resolves with this node's applied index once reading `view` (synchronously, right after
   * the await) is consistent at the requested level; see ReadOptions.
   */
  read(options?: ReadOptions): Promise<number> {
    this.#outsideHandler('read');
    return this.#link.read(options);
  }

  /** Leader and readiness, for load-balancer health checks. */
  health(): Health {
    return this.#link.health();
  }

  /** Counters, latency histograms and the node's position, for dashboards (see also registerPrometheus). */
  metrics(): MetricsSnapshot {
    const m = this[kMetrics];
    const s = this.node.status();
    return {
      proposals: m.proposals, proposalsFailed: m.proposalsFailed, forwarded: m.forwarded, applied: m.applied, reads: m.reads,
      proposeMs: m.proposeMs.snapshot(), applyMs: m.applyMs.snapshot(), snapshotMs: m.snapshotMs.snapshot(),
      role: s.role, term: s.term, commitIndex: s.commitIndex, appliedIndex: s.appliedIndex, lag: this.#link.health().lag,
    };
  }

  // This replica can't apply an entry (the node has closed itself): stop the rest (leader
  // jobs, the peer channel, waits for an index) and report it. Node's convention for an
  // object that can no longer work: 'error', thrown (the process ends) if nobody listens.
  #stop(err: PrevailError): void {
    if (!this.#opened || this.#stopping) return;  // open() rejects with it instead
    this.#stopping = true;
    debug('node %d: the store stopped: %s', this.node.id, err.message);
    void (async () => {
      await this.#jobs.close().catch(() => undefined);
      await this.#link.close(err).catch(() => undefined);
    })().finally(() => process.nextTick(() => this.emit('error', err)));
  }

  // A replica's effects differ from the leader's at the same index: some command is not
  // deterministic (Date.now(), Math.random(), I/O, iteration order of something unordered…).
  #diverged(info: { index: number; node: number; expected: string; actual: string }): void {
    const err = new PrevailError(ErrorCodes.DIVERGED,
      `replica ${info.node} diverged from the leader (node ${this.node.id}) by index ${info.index}: effects hash ${info.actual}, ` +
      `leader ${info.expected}. A command handler is not deterministic.`, { index: info.index });
    process.emitWarning(err.message, { code: ErrorCodes.DIVERGED });
    if (channels.divergence.hasSubscribers) channels.divergence.publish({ id: this.node.id, ...info });
    this.emit('divergence', Object.assign(err, { node: info.node, expected: info.expected, actual: info.actual }));
  }

  #slowApply(id: number, command: Uint8Array, index: number, durationMs: number): void {
    const entry = decodeEntry(command);  // a problem with it is reported by apply itself
    const name = typeof entry === 'string' ? '?' : entry.name;
    debug('node %d: slow apply of %s at index %d: %d ms', id, name, index, Math.round(durationMs));
    if (channels.slowApply.hasSubscribers) channels.slowApply.publish({ id, index, durationMs, command: name });
  }

  /** The address of this node's peer channel (forwarding, read indices). */
  get channelAddress(): string {
    return this.#link.channelAddress;
  }

  /**
   * Runs `job` on the leader only: it starts when this node becomes leader, and its `signal`
   * aborts the moment it stops leading (step-down, transfer, close). A job that throws is
   * reported (`'jobError'` event, NODE_DEBUG=prevail) and restarted with backoff; it never
   * brings the node down. A job that returns runs again at the next leadership.
   */
  onLeader(job: LeaderJob<Store<C, H>>, options?: LeaderJobOptions): LeaderJobHandle {
    return this.#jobs.add(job, options);
  }

  /**
   * Schedules a command: the leader proposes `name(args)` when `at` (ms since the epoch, or a
   * Date) comes, with its clock as the command's timestamp; `every` (ms) repeats it. Stored in
   * the replicated state, so it fires once across failovers and restarts — late rather than
   * twice. Resolves with the schedule's id (`id` to choose it; scheduling an existing id replaces it).
   */
  schedule<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, at: number | Date,
    options: { every?: number; id?: string } & WriteOptions = {}): Promise<string> {
    this.#outsideHandler('schedule');
    return this.#schedule(name, args, at, options);
  }

  async #schedule(name: string, args: unknown, at: number | Date, options: { every?: number; id?: string } & WriteOptions): Promise<string> {
    this.#checkRequest(name, args);
    const due = at instanceof Date ? at.getTime() : at;
    if (typeof due !== 'number' || !Number.isFinite(due)) throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'at must be a time in ms or a Date');
    const { every, id } = options;
    if (every !== undefined && (typeof every !== 'number' || !Number.isFinite(every) || every < 1)) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'every must be a period in ms (≥ 1)');
    }
    if (id !== undefined && (typeof id !== 'string' || id === '')) throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'id must be a non-empty string');
    const r = await this.#link.propose(`${SYSTEM_PREFIX}schedule`, { id, name, args, at: due, every }, options);
    return r.result as string;
  }

  /** Removes a schedule; resolves with whether it existed. */
  unschedule(id: string, options: WriteOptions = {}): Promise<boolean> {
    this.#outsideHandler('unschedule');
    return this.#link.propose(`${SYSTEM_PREFIX}unschedule`, { id }, options).then((r) => r.result as boolean);
  }

  /** The schedules in the replicated state, soonest first. */
  schedules(): Schedule[] {
    return [...this.#schedules.values()].map((s) => ({ ...s })).sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  #checkCommand(name: string): void {
    if (typeof this.#handlers[name] !== 'function') {
      throw new PrevailError(ErrorCodes.UNKNOWN_COMMAND, `unknown command ${JSON.stringify(name)}`);
    }
  }

  // A command to schedule: a defined name, and arguments that are plain data (checked here,
  // so the error names `args…`, not the schedule entry that carries them).
  #checkRequest(name: string, args: unknown): void {
    this.#checkCommand(name);
    checkPlain(args, 'args');
  }

  // On this node only (the leader): the timestamp is this node's clock, carried in the entry.
  async #proposeLocal(name: string, args: unknown, signal?: AbortSignal): Promise<{ index: number; result: unknown }> {
    const options = signal ? { signal } : {};
    const system = name.startsWith(SYSTEM_PREFIX);
    if (!system) this.#checkCommand(name);
    let payload: Uint8Array;
    try {
      // Checks args again (NOT_PLAIN_DATA): forwarded requests arrive from other processes.
      payload = encodeEntry(system, system ? name.slice(SYSTEM_PREFIX.length) : name, args, Date.now());
    } catch (err) {
      if ((err as PrevailError).code === ErrorCodes.NOT_PLAIN_DATA) throw err;
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `arguments of ${name} can't be encoded: ${(err as Error).message}`);
    }
    return this.node.proposeWithIndex(payload, options);
  }

  /** Starts a background capture of the whole state now (snapshots otherwise follow log growth). */
  captureNow(): Promise<number> {
    this.#outsideHandler('captureNow');
    return this.#startCapture();
  }

  /** Captures the state and has the engine write a snapshot of it now (leader only). */
  snapshot(): Promise<{ index: number; term: number }> {
    this.#outsideHandler('snapshot');
    return this.#startCapture().then(() => this.node.snapshot());
  }

  status(): RaftNodeStatus & { capture: { baseIndex: number; tail: number; running: boolean }; effects: { index: number; hash: string } } {
    return {
      ...this.node.status(),
      capture: { baseIndex: this.#base.index, tail: this.#tail.length, running: this.#captureDone !== null },
      effects: { index: this.#appliedIndex, hash: hexOf(this.#effects) },
    };
  }

  close(options?: CloseOptions): Promise<void> {
    this.#outsideHandler('close');
    return this.#close(options);
  }

  async #close(options?: CloseOptions): Promise<void> {
    await this.#jobs?.close();
    // The node drains first: forwarded proposals in flight on a leader get their answers.
    try {
      await this.node.close(options);
    } finally {
      await this.#link.close();
    }
  }

  /** A hash of the whole state (objects and ids), equal on replicas that applied the same entries. */
  stateHash(): string {
    const h = createHash('sha256');
    for (const c of [...this.#collections.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      h.update(`${c.name}:${c.nextId}:`);
      for (const obj of c.objects.values()) {  // id order; ids are in the objects
        h.update(packr.pack(obj));
        const x = exoticPatches(obj);  // what msgpack can't tell apart
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

  #applyEntry(payload: Uint8Array, index: number, term: number): unknown {
    this.#tail.push(index, term, payload);
    this.#appliedIndex = index;
    const result = this.#run(payload, index, term);
    if (this.#captureDone === null && this.#tail.length >= this.#captureInterval) {
      this.#startCapture().catch((err: unknown) => {
        // The previous capture stays the base; the tail keeps growing until one succeeds.
        debug('background capture failed: %s', (err as Error)?.message);
        this.emit('captureError', err);
      });
    }
    return result;
  }

  #run(payload: Uint8Array, index: number, term: number): unknown {
    foldNumber(this.#effects, index);
    try {
      return this.#decodeAndRun(payload, index, term);
    } finally {
      if (index % CHECKPOINT_EVERY === 0) {
        this.#checkpoints.push([index, hexOf(this.#effects)]);
        if (this.#checkpoints.length > CHECKPOINTS_KEPT) this.#checkpoints.shift();
      }
    }
  }

  #decodeAndRun(payload: Uint8Array, index: number, term: number): unknown {
    const entry = decodeEntry(payload);
    if (typeof entry === 'string') throw fatal(ErrorCodes.CORRUPT_ENTRY, `entry ${index}: ${entry}`);
    this.#lastTimestamp = Math.max(this.#lastTimestamp, entry.proposedAt);
    return entry.system ? this.#runSystem(entry.name, entry.args as any, index, term) : this.#execute(entry.name, entry.args, index, term);
  }

  // Runs a user command's handler atomically (its changes are undone if it throws).
  #execute(name: string, args: unknown, index: number, term: number, scheduled?: { id: string; due: number }): unknown {
    const handler = this.#handlers[name];
    if (typeof handler !== 'function') {
      throw fatal(ErrorCodes.UNKNOWN_COMMAND, `entry ${index} names command ${JSON.stringify(name)}, which this code does not define; stopping rather than diverging`);
    }
    let n = 0;
    let r = 0;
    const ctx: CommandContext = {
      index, term, timestamp: this.#lastTimestamp,
      id: () => `${index.toString(36)}.${(n++).toString(36)}`,
      random: () => mix(index, r++),
      ...(scheduled ? { scheduled } : {}),
    };
    const undo: Undo[] = [];
    this.#tx = undo;
    try {
      const result = handler(this.#writers, args, ctx);
      if (isThenable(result)) {
        // A promise: the handler went on (or will) after this entry was applied, outside the
        // command. Refused the same way on every replica and on every replay: its changes are
        // undone and the command fails. Its eventual rejection is nobody's to handle.
        try {
          Promise.resolve(result).catch(() => undefined);
        } catch {
          // a thenable whose `then` getter throws: nothing to attach to
        }
        throw new PrevailError(ErrorCodes.ASYNC_HANDLER, `command ${JSON.stringify(name)} at entry ${index} returned a promise: ` +
          'handlers must be synchronous; its changes were undone', { index });
      }
      // The divergence detector: what this command did, as every replica must have done it.
      for (const u of undo) {
        foldString(this.#effects, u.c.name);
        if ('nextId' in u) {
          foldNumber(this.#effects, u.c.nextId);
        } else {
          foldValue(this.#effects, u.id);
          foldValue(this.#effects, u.c.objects.get(u.id) ?? null);
        }
      }
      return result;
    } catch (err) {
      this.#rollback(undo);
      // Only the store's own errors stop a replica (`fatal`, see fatal()): a handler's error
      // fails its command, whatever fields it carries — else replaying it would stop the
      // node at every start.
      if (isFatal(err)) {
        throw Object.assign(new Error(String((err as Error).message)), err, { name: (err as Error).name, fatal: false });
      }
      throw err;
    } finally {
      this.#tx = null;
    }
  }

  #runSystem(kind: string, data: any, index: number, term: number): unknown {
    foldString(this.#effects, kind);
    switch (kind) {
      case 'peer':
        this.#peers.set(data.id, data.channel);
        return undefined;
      case 'schedule': {
        this.#checkCommand(data.name);  // nothing changed yet
        const id: string = data.id ?? `s${index.toString(36)}`;
        // Frozen: every firing hands the handler these same args, and schedules() shows them.
        const s: Schedule = { id, name: data.name, args: freezeDeep(data.args), at: data.at };
        if (data.every !== undefined && data.every !== null) s.every = data.every;
        this.#schedules.set(id, s);
        this.emit('schedules');
        return id;
      }
      case 'unschedule': {
        const existed = this.#schedules.delete(data.id);
        if (existed) this.emit('schedules');
        return existed;
      }
      case 'fire': {
        // Exactly once per due time: a fire proposed twice (two leaders, a retry) finds the
        // schedule already moved on, and does nothing.
        const s = this.#schedules.get(data.id);
        if (!s || s.at !== data.due) return { fired: false };
        if (s.every) {
          // Recurring: the next due time after this entry's timestamp (missed periods are skipped).
          const behind = Math.max(0, this.#lastTimestamp - s.at);
          s.at += s.every * (Math.floor(behind / s.every) + 1);
        } else {
          this.#schedules.delete(s.id);
        }
        this.emit('schedules');
        try {
          return { fired: true, name: s.name, result: this.#execute(s.name, s.args, index, term, { id: s.id, due: data.due }) };
        } catch (err) {
          if (isFatal(err)) throw err;
          // The command's own changes are undone; the schedule has still fired (no retry loop).
          return { fired: true, name: s.name, error: { message: String((err as Error)?.message ?? err), code: (err as { code?: unknown })?.code } };
        }
      }
      default:
        throw fatal(ErrorCodes.CORRUPT_ENTRY, `entry ${index} is a store entry of unknown kind ${JSON.stringify(kind)}`);
    }
  }

  #rollback(undo: Undo[]): void {
    for (let i = undo.length - 1; i >= 0; i--) {
      const u = undo[i]!;
      if ('nextId' in u) u.c.nextId = u.nextId;
      else this.#write(u.c, u.id, u.prev);
    }
  }

  // The only place objects change: maps, indices and copy-on-write overlays.
  #write(c: CollectionImpl, id: Id, next: any): void {
    const prev = c.objects.get(id);
    const k = Math.floor((id as number) / this.#chunkSize);
    if (k < c.frames.length) c.frames[k] = undefined;  // the chunk's frame is stale
    for (const entry of c.overlays) {
      const overlay = entry instanceof WeakRef ? entry.deref() : entry;
      if (!overlay) c.overlays.delete(entry);
      else if (!overlay.has(id)) overlay.set(id, prev);
    }
    for (const ix of c.indexes) {
      const before = prev === undefined ? undefined : ix.key(prev);
      const after = next === undefined ? undefined : ix.key(next);
      if (before !== undefined && after !== undefined && sameKey(before, after)) {
        if (ix.unique) ix.unique.set(after, next);  // same key, new version of the object
        continue;
      }
      if (before !== undefined) removeFromIndex(ix, before, id);
      if (after !== undefined) addToIndex(ix, after, id, next);
    }
    if (next === undefined) c.objects.delete(id);
    else c.objects.set(id, next);
  }

  // An object a handler is storing: plain data (or PREVAIL_NOT_PLAIN_DATA naming the path,
  // before anything changed), frozen, and noted if a snapshot needs patches for it.
  #seal(c: CollectionImpl, id: Id, stored: object): void {
    if (checkPlain(stored, `${c.name}[${String(id)}]`).length > 0) markExotic(stored);
    freezeStored(stored, false);
  }

  #checkUnique(c: CollectionImpl, id: Id, next: any): void {
    for (const ix of c.indexes) {
      if (!ix.unique) continue;
      const key = ix.key(next);
      if (key === undefined) continue;
      const holder = ix.unique.get(key);
      if (holder !== undefined && holder.id !== id) {
        throw new PrevailError(ErrorCodes.UNIQUE_VIOLATION, `${c.name}.${ix.name}: key ${describeKey(key)} is already used by ${String(holder.id)}`);
      }
    }
  }


  #reader(c: CollectionImpl, writable: boolean): unknown {
    const store = this;
    const mustWrite = (what: string) => {
      if (!writable || store.#tx === null) {
        throw new PrevailError(ErrorCodes.OUTSIDE_COMMAND, `${c.name}.${what}() changes state: call it inside a command handler`);
      }
      return store.#tx;
    };
    const reader: Record<string, unknown> = {
      get: (id: Id) => c.objects.get(id),
      has: (id: Id) => c.objects.has(id),
      get size() { return c.objects.size; },
      values: () => c.objects.values(),
      insert: (obj: object) => {
        const undo = mustWrite('insert');
        if (typeof obj !== 'object' || obj === null) throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `${c.name}.insert() needs an object`);
        const id = c.nextId;
        checkPlainObject(obj, `${c.name}[${String(id)}]`);
        const stored = { id, ...obj } as { id: Id };  // id first: V8 lays such objects out compactly
        if (stored.id !== id) stored.id = id;  // the store assigns ids
        store.#seal(c, id, stored);
        store.#checkUnique(c, id, stored);
        undo.push({ c, nextId: c.nextId });
        c.nextId++;
        undo.push({ c, id, prev: undefined });
        store.#write(c, id, stored);
        return stored;
      },
      update: (id: Id, patch: object | ((o: any) => object)) => {
        const undo = mustWrite('update');
        const prev = c.objects.get(id);
        if (prev === undefined) throw new PrevailError(ErrorCodes.NOT_FOUND, `${c.name}: no object ${String(id)}`);
        // The object given (a patch, or what the function returns) must be plain: its fields are copied.
        const given = typeof patch === 'function' ? patch(prev) : patch;
        checkPlainObject(given, `${c.name}[${String(id)}]`);
        const body = typeof patch === 'function' ? given : { ...prev, ...given };
        const stored = { id, ...body } as { id: Id };
        if (stored.id !== id) stored.id = id;  // keeps the compact id-first layout
        store.#seal(c, id, stored);
        store.#checkUnique(c, id, stored);
        undo.push({ c, id, prev });
        store.#write(c, id, stored);
        return stored;
      },
      delete: (id: Id) => {
        const undo = mustWrite('delete');
        const prev = c.objects.get(id);
        if (prev === undefined) return false;
        undo.push({ c, id, prev });
        store.#write(c, id, undefined);
        return true;
      },
    };
    for (const ix of c.indexes) reader[ix.name] = indexReader(ix, c);
    return Object.freeze(reader);
  }

  // ---- snapshots ------------------------------------------------------------------

  /**
   * Starts (or joins) a background capture of the state at the current applied index.
   * Incremental: a chunk of ids whose objects did not change since the last capture keeps
   * its frame; only changed chunks are serialised again, in slices of ~0.25 ms (or
   * captureSliceSize objects) per turn of the event loop, so commits keep flowing.
   */
  #startCapture(): Promise<number> {
    if (this.#captureDone) return this.#captureDone;
    const index = this.#appliedIndex;
    const generation = this.#generation;
    const started = performance.now();
    const chunk = this.#chunkSize;
    // Every later change saves the object's pre-capture version in the overlay the first time.
    const lists = [...this.#collections.values()].map((c) => {
      const overlay = new Map<Id, any>();
      c.overlays.add(overlay);
      const limit = c.objects.limit;
      const out: (Uint8Array | null | undefined)[] = [];
      const work: number[] = [];
      for (let k = 0; k * chunk < limit; k++) {
        out.push(c.frames[k]);
        if (c.frames[k] === undefined) work.push(k);
      }
      return { c, overlay, limit, out, work };
    });
    const meta = this.#metaRecord(index);
    let serialised = 0;
    const finish = () => {
      for (const { c, overlay } of lists) c.overlays.delete(overlay);
      if (generation === this.#generation) this.#captureDone = null;
      this.#lastCaptureEnd = performance.now();
    };
    this.#captureDone = new Promise<number>((resolve, reject) => {
      let li = 0;
      let wi = 0;
      let applied = this.#appliedIndex;
      const slice = () => {
        if (generation !== this.#generation) {
          finish();
          reject(new PrevailError(ErrorCodes.INVALID_STATE, `capture at ${index} superseded by a snapshot restore`));
          return;
        }
        try {
          let budget = this.#sliceSize;
          const until = performance.now() + SLICE_MS;
          while (li < lists.length && budget > 0 && performance.now() < until) {
            const { c, overlay, limit, out, work } = lists[li]!;
            if (wi >= work.length) { li++; wi = 0; continue; }
            const k = work[wi++]!;
            const items = chunkObjects(c, k, chunk, limit, overlay);
            out[k] = items.length ? objsFrame(c.name, items, exoticPatches) : null;
            budget -= Math.min(limit, (k + 1) * chunk) - k * chunk;
            serialised += items.length;
          }
          if (li < lists.length) {
            // While commands are being applied, the next slice waits for a timer (>= 1 ms),
            // so commits get most of the loop; when idle, it runs right away.
            if (this.#appliedIndex !== applied) {
              applied = this.#appliedIndex;
              setTimeout(slice, 1);
            } else setImmediate(slice);
            return;
          }
          finish();
          const chunks: Uint8Array[] = [];
          for (const { c, overlay, out, work } of lists) {
            // Keep the new frames of chunks no command touched meanwhile (the rest are stale again).
            const touched = new Set<number>();
            for (const id of overlay.keys()) touched.add(Math.floor((id as number) / chunk));
            for (const k of work) if (!touched.has(k)) c.frames[k] = out[k];
            for (const f of out) if (f) chunks.push(f);
          }
          chunks.unshift(meta(chunks));
          this.#base = { index, chunks };
          this.#tail.dropThrough(index);
          this.#adaptIntervals();
          const ms = performance.now() - started;
          debug('captured state at index %d in %d ms (%d frames, %d objects serialised)', index, Math.round(ms), chunks.length, serialised);
          this.emit('capture', { index, durationMs: ms, serialised });
          resolve(index);
        } catch (err) {
          finish();
          reject(err);
        }
      };
      // A capture starting right after the previous one ended (captureNow() in a loop) waits
      // for a timer, so back-to-back captures run about once a millisecond at most instead
      // of on every turn of the event loop.
      if (performance.now() - this.#lastCaptureEnd < 1) setTimeout(slice, 1);
      else setImmediate(slice);
    });
    return this.#captureDone;
  }

  // Capture and engine-snapshot intervals follow the state's size (see #captureInterval).
  #adaptIntervals(): void {
    const objects = this.#objectCount();
    this.#captureInterval = Math.max(this.#captureEvery, Math.floor(objects / 4));
    this.node?.setSnapshotThreshold(Math.max(this.#snapshotThreshold, Math.floor(objects / 2)));
  }

  #objectCount(): number {
    let objects = 0;
    for (const c of this.#collections.values()) objects += c.objects.size;
    return objects;
  }

  // The engine's snapshot: the last completed capture plus the entries after it (the
  // tail holds only those). No serialisation here: the capture's frames were made in
  // slices, the tail's bytes and CRC as entries were applied (format/tail.ts).
  #snapshotBytes(): Uint8Array[] {
    const tail = this.#tail.frame();
    const crcs = [...this.#base.chunks.map(crcOf), tail.crc];
    return [...this.#base.chunks, ...tail.pieces, frame(packr.pack({ t: 'end', crcs }))];
  }

  /**
   * The snapshot header for the state now: as of `index`, with each collection's version
   * and next id. A function of the frames that follow it: their format (metaFrame).
   */
  #metaRecord(index: number): (frames: Uint8Array[]) => Uint8Array {
    // `size` (objects in the collection) lets restore size its tables up front; optional.
    const collections = Object.fromEntries([...this.#collections.values()].map((c) => [c.name, { version: c.version, nextId: c.nextId, size: c.objects.size }]));
    const schedules = [...this.#schedules.values()];
    const xs = patchesOf(schedules);
    const rec = { t: 'meta', format: SnapshotFormat.ROWS as number, baseIndex: index, lastTimestamp: this.#lastTimestamp, collections, effects: [...this.#effects],
      peers: [...this.#peers], schedules, ...(xs.length ? { xs } : {}) };
    return (frames) => {
      rec.format = formatFor(frames, xs.length > 0);
      return frame(packr.pack(rec));
    };
  }

  #restore(data: Uint8Array): void {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const frames = verifySnapshot(buf);  // before anything is cleared: a damaged snapshot changes nothing
    for (const c of this.#collections.values()) {
      c.objects.clear();
      c.frames = [];
      c.nextId = 1;
      for (const ix of c.indexes) clearIndex(ix);
    }
    this.#tail.clear();
    this.#lastTimestamp = 0;
    this.#generation++;
    this.#captureDone = null;
    const baseChunks: Uint8Array[] = [];
    let baseIndex = 0;
    let tail: [number, number, Uint8Array][] = [];
    const versions = new Map<string, number>();
    let migrated = false;
    // The (key, id) pairs of each sorted and persistent index, built bottom-up after the last frame.
    const pending = new Map<IndexImpl, { keys: IndexKey[]; ids: Id[] }>();
    // Likewise the string keys of unique indexes, with their hashes (taken while the strings are fresh).
    const pendingStrings = new Map<IndexImpl, { hashes: Int32Array; n: number; keys: string[]; values: unknown[] }>();
    // Frames that hold exactly one chunk of ids (as captures write them) are kept as that
    // chunk's frame, so the next capture need not serialise it again; a chunk spread over
    // several frames (older snapshots group objects by count) is serialised again.
    const spread = new Map<CollectionImpl, Set<number>>();
    const chunk = this.#chunkSize;
    const started = performance.now();
    for (const framed of frames) {  // each kept as is for the next snapshot (no copy), its CRC known
      const bytes = framed.subarray(4);
      const rec = packr.unpack(bytes) as { t: string; [k: string]: any };
      if (rec.t === 'meta') {
        if (rec.format > SNAPSHOT_FORMAT_READ) {
          throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot format ${rec.format} is newer than this code (${SNAPSHOT_FORMAT_READ})`);
        }
        baseIndex = rec.baseIndex;
        this.#lastTimestamp = rec.lastTimestamp;
        this.#effects = Array.isArray(rec.effects) ? [rec.effects[0], rec.effects[1]] : initialEffects();
        this.#checkpoints = [];
        this.#peers = new Map(rec.peers ?? []);
        const schedules = (rec.xs ? applyPatches(rec.schedules, rec.xs) : rec.schedules ?? []) as Schedule[];
        this.#schedules = new Map(schedules.map((s) => [s.id, { ...s, args: freezeDeep(s.args) }]));
        this.emit('schedules');
        for (const [name, info] of Object.entries(rec.collections as Record<string, { version: number; nextId: number; size?: number }>)) {
          const c = this.#collections.get(name);
          if (!c) throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `snapshot has collection ${name}, which this code does not define`);
          if (info.version > c.version) {
            throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `snapshot has ${name} at version ${info.version}; this code reads up to ${c.version}`);
          }
          versions.set(name, info.version);
          c.nextId = info.nextId;
          for (const ix of c.indexes) {
            if (ix.unique) pendingStrings.set(ix, { hashes: new Int32Array(Math.max(16, typeof info.size === 'number' ? info.size : 0)), n: 0, keys: [], values: [] });
          }
        }
        baseChunks.push(framed);
      } else if (rec.t === 'objs') {
        const c = this.#collections.get(rec.c)!;
        const from = versions.get(c.name) ?? c.version;
        if (from < c.version && !c.migrate) {
          throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `${c.name} objects are at version ${from} and there is no migrate()`);
        }
        const items = (Array.isArray(rec.shapes) ? fromRows(rec.shapes, rec.items, rec.values) : rec.items) as any[];
        if (Array.isArray(rec.x)) {
          for (const [i, patches] of rec.x as [number, Patch[]][]) markExotic(items[i] = applyPatches(items[i], patches) as object);
          notePatched(framed);
        }
        for (let i = 0; i < items.length; i++) {
          let obj = items[i];
          if (from < c.version) {
            obj = items[i] = { ...(c.migrate!(obj, from) as object), id: obj.id };
            this.#seal(c, obj.id, obj);
          } else freezeStored(obj, true);
          c.objects.set(obj.id, obj);
        }
        if (items.length && from === c.version) {
          let lo = Infinity;
          let hi = -1;
          for (let i = 0; i < items.length; i++) {
            const k = Math.floor(items[i].id / chunk);
            if (k < lo) lo = k;
            if (k > hi) hi = k;
          }
          const spreadHere = spread.get(c) ?? spread.set(c, new Set()).get(c)!;
          if (lo === hi && c.frames[hi] === undefined && !spreadHere.has(hi)) c.frames[hi] = framed;
          else for (let k = lo; k <= hi; k++) { spreadHere.add(k); c.frames[k] = undefined; }
        }
        for (const ix of c.indexes) {
          // Ordered indexes are built in one go at the end (see pending); the others now.
          const pairs = (ix.sorted || ix.persistent) ? pending.get(ix) ?? pending.set(ix, { keys: [], ids: [] }).get(ix)! : null;
          const strings = ix.unique ? pendingStrings.get(ix) : undefined;
          for (let i = 0; i < items.length; i++) {
            const obj = items[i];
            const key = ix.key(obj);
            if (key === undefined) continue;
            if (pairs) { pairs.keys.push(key); pairs.ids.push(obj.id); }
            else if (strings && typeof key === 'string') {
              if (strings.n === strings.hashes.length) {
                const grown = new Int32Array(strings.n * 2);
                grown.set(strings.hashes);
                strings.hashes = grown;
              }
              strings.hashes[strings.n++] = StringTable.hash(key);
              strings.keys.push(key);
              strings.values.push(obj);
            } else addToIndex(ix, key, obj.id, obj);
          }
        }
        if (from < c.version) migrated = true;
        baseChunks.push(framed);
      } else if (rec.t === 'tail') {
        tail = rec.entries;
      }
    }
    for (const [ix, { hashes, n, keys, values }] of pendingStrings) ix.unique!.loadStrings(hashes.subarray(0, n), keys, values);
    for (const [ix, { keys, ids }] of pending) {
      if (ix.sorted) ix.sorted = SortedIndex.fromPairs(keys, ids);
      else ix.persistent = PersistentSortedIndex.fromPairs(keys, ids);
    }
    debug('restored %d objects of the snapshot at index %d in %d ms', this.#objectCount(), baseIndex, Math.round(performance.now() - started));
    // A migrated base is re-serialised at once, so later snapshots carry current versions.
    this.#base = { index: baseIndex, chunks: migrated ? this.#serializeAll(baseIndex) : baseChunks };
    this.#appliedIndex = baseIndex;
    for (const [index, term, payload] of tail) {
      this.#tail.push(index, term, payload);
      this.#appliedIndex = index;
      try {
        this.#run(payload, index, term);
      } catch (err) {
        if (isFatal(err)) throw err;
        // a handler that threw when the entry was first applied throws again: rolled back
      }
    }
  }

  /** The whole state as of now, serialised at once (restore, after migrating objects). */
  #serializeAll(index: number): Uint8Array[] {
    const meta = this.#metaRecord(index);
    const chunks: Uint8Array[] = [];
    const chunk = this.#chunkSize;
    for (const c of this.#collections.values()) {
      c.frames = [];
      for (let k = 0; k * chunk < c.objects.limit; k++) {
        const items = chunkObjects(c, k, chunk, c.objects.limit, null);
        const f = items.length ? objsFrame(c.name, items, exoticPatches) : null;
        c.frames[k] = f;
        if (f) chunks.push(f);
      }
    }
    chunks.unshift(meta(chunks));
    return chunks;
  }
}

// Longest run of capture work per turn of the event loop (ms).
const SLICE_MS = 0.25;

function fatal(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string): PrevailError {
  return markFatal(new PrevailError(code, message));
}


/** Opens a store; see Store.open. */
export function open<C extends Collections, H extends Commands<C>>(options: StoreOptions<C, H>): Promise<Store<C, H>> {
  return Store.open(options);
}

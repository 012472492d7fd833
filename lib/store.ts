// The object store: plain objects in this process, changed only by named commands that
// go through the Raft log. Reads are synchronous calls on in-memory maps and indices.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { debuglog } from 'node:util';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';

import { ErrorCodes, PrevailError, type MemberRef } from './errors.js';
import { RaftNode, defaults, type CloseOptions, type RaftNodeStatus } from './raft-node.js';
import { ClusterLink, type Health, type LinkOptions, type ReadOptions, type WriteOptions } from './cluster-link.js';
import { StoreMetrics, channels, kMetrics, type MetricsSnapshot } from './metrics.js';
import { LeaderJobs, type LeaderJob, type LeaderJobHandle, type LeaderJobOptions, type Schedule } from './jobs.js';
import { SortedIndex, PersistentSortedIndex, compareKeys, type IndexKey, type Id, type OrderedIndex, type RangeOptions } from './sorted-index.js';

const debug = debuglog('prevail');

// Self-contained encoding: no structures shared between messages, so an entry decodes
// the same on every replica, after restart and after a snapshot install.
/** The msgpackr options of entries and snapshot frames (shared with `prevail inspect`). */
export const packrOptions = { useRecords: false, mapsAsObjects: true, variableMapSize: true };
const packr = new Packr(packrOptions);
export const ENTRY_FORMAT = 1;
// The store's own entries (not user commands): [SYSTEM_FORMAT, kind, data, timestamp].
const SYSTEM_FORMAT = 2;
// How system entries travel through propose/forwarding (user command names can't start with it).
const SYSTEM_PREFIX = 'prevail:';
// 2: objs frames hold rows (shapes + values) instead of maps; format 1 snapshots are still read.
const SNAPSHOT_FORMAT = 2;

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

/** Handlers whose return type is a promise (or any thenable) become `never`, so they don't type-check. */
export type SyncHandlers<H> = {
  [K in keyof H]: H[K] extends (...args: any[]) => infer R ? (0 extends 1 & R ? H[K] : R extends PromiseLike<unknown> ? never : H[K]) : H[K];
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

export interface StoreOptions<C extends Collections, H extends Commands<C>> extends LinkOptions {
  schema: Schema<C, H>;
  /** Where the log and snapshots live. Required. */
  dataDir: string;
  /** This node's id. Default 1. */
  id?: number;
  /** The raft address. Default: 127.0.0.1 on a free port (fine for a single node). */
  address?: string;
  /** The cluster members; omit for the embedded single node. */
  cluster?: MemberRef[];
  /** Join an existing cluster (see RaftNodeOptions.join). Default false. */
  join?: boolean;
  electionTimeoutMs?: number;
  heartbeatMs?: number;
  /** Entries between engine snapshots. Default 8192. */
  snapshotThreshold?: number;
  /** Entries kept after a snapshot. Default 2048. */
  snapshotTrailing?: number;
  /** Entries the leader pipelines to a follower before hearing back (see RaftNodeOptions). Default 1024. */
  maxInflightEntries?: number;
  /** Start a background state capture after this many entries. Default snapshotThreshold / 2. */
  captureEvery?: number;
  /** Objects serialised per slice of the background capture. Default 2000. */
  captureSliceSize?: number;
  /** An apply slower than this (ms) is published on `prevail:slow-apply` and logged (NODE_DEBUG=prevail). Default 50. */
  slowApplyMs?: number;
}

interface TailEntry { index: number; term: number; payload: Uint8Array }

interface IndexImpl {
  name: string;
  key: (obj: any) => IndexKey | undefined;
  unique?: KeyMap<any>;  // key → the object itself (point reads need one lookup)
  hash?: KeyMap<Set<Id>>;
  sorted?: SortedIndex;
  persistent?: PersistentSortedIndex;
}

interface CollectionImpl {
  name: string;
  version: number;
  migrate?: (obj: Record<string, unknown>, from: number) => unknown;
  objects: ObjectTable;
  indexes: IndexImpl[];
  nextId: number;
  /**
   * Copy-on-write overlays: each keeps the version an object had when the overlay was
   * made, saved the first time the object changes after that (undefined: it did not
   * exist). Captures hold theirs strongly until done; index views weakly, for as long
   * as the caller keeps the view.
   */
  overlays: Set<Map<Id, any> | WeakRef<Map<Id, any>>>;
  /**
   * The snapshot frame of each chunk of ids (chunk k: ids [k * chunkSize, (k + 1) *
   * chunkSize)) as the last capture made it, reused by the next capture while no object
   * of the chunk changes. undefined: to be serialised; null: the chunk had no objects.
   */
  frames: (Uint8Array | null | undefined)[];
}

type Undo = { c: CollectionImpl; id: Id; prev: any } | { c: CollectionImpl; nextId: number };

/** The value of `id` as of when `overlay` was made. */
function asOf(c: CollectionImpl, overlay: Map<Id, any>, id: Id): any {
  return overlay.has(id) ? overlay.get(id) : c.objects.get(id);
}

/**
 * A collection's objects by id. Ids are the store's own sequential integers, so a dense
 * array beats a Map: no hashing, no rehash as it grows (restart inserts millions), and
 * one pointer per object. Iteration is in id order.
 */
class ObjectTable {
  #slots: any[] = [];
  #size = 0;
  get size(): number {
    return this.#size;
  }
  /** Every id in use is below this. */
  get limit(): number {
    return this.#slots.length;
  }
  get(id: Id): any {
    return typeof id === 'number' ? this.#slots[id] : undefined;
  }
  has(id: Id): boolean {
    return typeof id === 'number' && this.#slots[id] !== undefined;
  }
  set(id: Id, obj: unknown): void {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new TypeError(`bad object id ${String(id)}`);
    if (this.#slots[id] === undefined) this.#size++;
    this.#slots[id] = obj;
  }
  delete(id: Id): boolean {
    if (!this.has(id)) return false;
    this.#slots[id as number] = undefined;
    this.#size--;
    return true;
  }
  clear(): void {
    this.#slots = [];
    this.#size = 0;
  }
  *values(): IterableIterator<any> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) yield slots[i];
  }
  *keys(): IterableIterator<number> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) yield i;
  }
}

/** A map from index keys: primitives as themselves, compound (array) keys by an encoding. */
class KeyMap<V> {
  #str = new StringTable<V>();
  #prim = new Map<unknown, V>();
  #comp = new Map<string, V>();
  static encode(key: IndexKey[]): string {
    return JSON.stringify(key, (_k, v: unknown) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v));
  }
  get(key: IndexKey): V | undefined {
    return typeof key === 'string' ? this.#str.get(key) : Array.isArray(key) ? this.#comp.get(KeyMap.encode(key)) : this.#prim.get(key);
  }
  has(key: IndexKey): boolean {
    return typeof key === 'string' ? this.#str.has(key) : Array.isArray(key) ? this.#comp.has(KeyMap.encode(key)) : this.#prim.has(key);
  }
  set(key: IndexKey, value: V): void {
    if (typeof key === 'string') this.#str.set(key, value);
    else if (Array.isArray(key)) this.#comp.set(KeyMap.encode(key), value);
    else this.#prim.set(key, value);
  }
  delete(key: IndexKey): void {
    if (typeof key === 'string') this.#str.delete(key);
    else if (Array.isArray(key)) this.#comp.delete(KeyMap.encode(key));
    else this.#prim.delete(key);
  }
  /** Adds string keys in bulk (see StringTable.load); one at a time when the table is not empty or a key repeats. */
  loadStrings(hashes: Int32Array, keys: string[], values: V[]): void {
    if (this.#str.size === 0 && this.#str.load(hashes, keys, values)) return;
    for (let i = 0; i < keys.length; i++) this.#str.set(keys[i]!, values[i]!);
  }
  clear(): void {
    this.#str.clear();
    this.#prim.clear();
    this.#comp.clear();
  }
}

/**
 * A hash table of string keys for the unique and hash indexes: open addressing with linear
 * probing over a typed array of [hash, entry] pairs (at most 3/4 full), the entries (key,
 * value) appended to one array in insertion order. Against a Map it keeps each key's hash
 * in the probe table, so inserting a million keys compares hashes there instead of reading
 * each colliding key string (a cache miss each), and growing moves stored hashes instead of
 * reading every key again. Appending entries in order (rather than storing them at their
 * hashed slot) keeps the GC's old-to-young slots together, as a Map's are. Lookups cost
 * about what a Map's do. Internal; exported for tests.
 */
export class StringTable<V> {
  #slots = new Int32Array(32);  // slot i: [2i] the hash (0: empty; hash() is never 0), [2i + 1] the entry
  #mask = 15;
  #kv: unknown[] = [];          // entry e: [2e] its key, [2e + 1] its value

  get size(): number {
    return this.#kv.length >> 1;
  }

  /** FNV-1a over the UTF-16 code units, then a final avalanche; never 0. */
  static hash(s: string): number {
    let h = 0x811c9dc5 | 0;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h === 0 ? 1 : h;
  }

  /** The slot holding `key` (hashed `h`), or -1 - the empty slot where it would go. */
  #find(key: string, h: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const x = slots[i << 1]!;
      if (x === 0) return -1 - i;
      if (x === h && this.#kv[slots[(i << 1) + 1]! << 1] === key) return i;
    }
  }

  get(key: string): V | undefined {
    const i = this.#find(key, StringTable.hash(key));
    return i < 0 ? undefined : (this.#kv[(this.#slots[(i << 1) + 1]! << 1) + 1] as V);
  }

  has(key: string): boolean {
    return this.#find(key, StringTable.hash(key)) >= 0;
  }

  set(key: string, value: V): void {
    const h = StringTable.hash(key);
    let i = this.#find(key, h);
    if (i >= 0) {
      this.#kv[(this.#slots[(i << 1) + 1]! << 1) + 1] = value;
      return;
    }
    const e = this.#kv.length >> 1;
    if ((e + 1) * 4 > (this.#mask + 1) * 3) {
      this.#rehash((this.#mask + 1) * 2);
      i = this.#find(key, h);
    }
    i = -1 - i;
    this.#slots[i << 1] = h;
    this.#slots[(i << 1) + 1] = e;
    this.#kv.push(key, value);
  }

  delete(key: string): boolean {
    let i = this.#find(key, StringTable.hash(key));
    if (i < 0) return false;
    const slots = this.#slots;
    const mask = this.#mask;
    const e = slots[(i << 1) + 1]!;
    // Backward-shift deletion: slots after the hole whose home is not between the hole and
    // themselves move into it, so every probe sequence stays unbroken.
    for (let j = (i + 1) & mask; slots[j << 1] !== 0; j = (j + 1) & mask) {
      const home = slots[j << 1]! & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        slots[i << 1] = slots[j << 1]!;
        slots[(i << 1) + 1] = slots[(j << 1) + 1]!;
        i = j;
      }
    }
    slots[i << 1] = 0;
    // The last entry moves into the freed one.
    const kv = this.#kv;
    const last = (kv.length >> 1) - 1;
    if (e !== last) {
      const lastKey = kv[last << 1] as string;
      kv[e << 1] = lastKey;
      kv[(e << 1) + 1] = kv[(last << 1) + 1];
      let j = StringTable.hash(lastKey) & mask;
      while (slots[(j << 1) + 1] !== last || slots[j << 1] === 0) j = (j + 1) & mask;
      slots[(j << 1) + 1] = e;
    }
    kv.length = last << 1;
    return true;
  }

  clear(): void {
    this.#slots = new Int32Array(32);
    this.#mask = 15;
    this.#kv = [];
  }

  /**
   * Fills an empty table with keys[i] -> values[i] (hashes[i] = hash(keys[i])) in one pass:
   * the entries sorted by home slot (a radix sort), then laid into the probe table in slot
   * order, so the table is written front to back instead of at a random slot per key (a
   * cache miss each, at a million keys). Returns false, changing nothing, when a key repeats.
   */
  load(hashes: Int32Array, keys: string[], values: V[]): boolean {
    const n = keys.length;
    if (this.#kv.length !== 0) throw new Error('StringTable.load needs an empty table');
    let cap = 16;
    while (n * 4 > cap * 3) cap *= 2;
    const mask = cap - 1;
    // Entries by home slot (stable: equal homes keep entry order): 11 bits per pass.
    let order = new Uint32Array(n);
    let tmp = new Uint32Array(n);
    for (let e = 0; e < n; e++) order[e] = e;
    const bits = Math.log2(cap);
    for (let shift = 0; shift < bits; shift += 11) {
      const count = new Uint32Array(2049);
      for (let j = 0; j < n; j++) count[(((hashes[order[j]!]! & mask) >>> shift) & 2047) + 1]!++;
      for (let b = 0; b < 2048; b++) count[b + 1]! += count[b]!;
      for (let j = 0; j < n; j++) {
        const e = order[j]!;
        tmp[count[((hashes[e]! & mask) >>> shift) & 2047]!++] = e;
      }
      const t = order;
      order = tmp;
      tmp = t;
    }
    // Lay them out: each at its home or the first free slot after the previous one; those
    // pushed past the end wrap around to the front afterwards.
    const slots = new Int32Array(cap * 2);
    let next = 0;
    let groupStart = 0;  // first position in `order` of the current home
    let wrapped = 0;
    for (let j = 0; j < n; j++) {
      const e = order[j]!;
      const h = hashes[e]!;
      const home = h & mask;
      if (j === 0 || home !== (hashes[order[j - 1]!]! & mask)) groupStart = j;
      // A repeated key has the same home: compare with the entries of this home before it.
      for (let g = groupStart; g < j; g++) if (hashes[order[g]!] === h && keys[order[g]!] === keys[e]) return false;
      const at = home > next ? home : next;
      if (at >= cap) {
        tmp[wrapped++] = e;
        continue;
      }
      slots[at << 1] = h;
      slots[(at << 1) + 1] = e;
      next = at + 1;
    }
    for (let w = 0; w < wrapped; w++) {
      const e = tmp[w]!;
      let i = hashes[e]! & mask;
      while (slots[i << 1] !== 0) {
        if (slots[i << 1] === hashes[e] && keys[slots[(i << 1) + 1]!] === keys[e]) return false;
        i = (i + 1) & mask;
      }
      slots[i << 1] = hashes[e]!;
      slots[(i << 1) + 1] = e;
    }
    const kv: unknown[] = [];
    for (let e = 0; e < n; e++) kv.push(keys[e], values[e]);
    this.#slots = slots;
    this.#mask = mask;
    this.#kv = kv;
    return true;
  }

  /** Every [key, value], in insertion order (until a delete moves the last entry). */
  *entries(): IterableIterator<[string, V]> {
    const kv = this.#kv;
    for (let e = 0; e < kv.length; e += 2) yield [kv[e] as string, kv[e + 1] as V];
  }

  #rehash(cap: number): void {
    const old = this.#slots;
    const slots = new Int32Array(cap * 2);
    const mask = cap - 1;
    for (let j = 0; j < old.length; j += 2) {
      const h = old[j]!;
      if (h === 0) continue;
      let i = h & mask;
      while (slots[i << 1] !== 0) i = (i + 1) & mask;
      slots[i << 1] = h;
      slots[(i << 1) + 1] = old[j + 1]!;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}

function sameKey(a: IndexKey, b: IndexKey): boolean {
  return a === b || ((Array.isArray(a) || Array.isArray(b)) && compareKeys(a, b) === 0);
}

function describeKey(key: IndexKey): string {
  return typeof key === 'bigint' ? `${key}n` : Array.isArray(key) ? KeyMap.encode(key) : JSON.stringify(key);
}

// msgpackr decodes the strings of a large buffer as slices of one long string (V8
// SlicedStrings, for lengths >= 13): each keeps the whole buffer's text alive, and comparing
// one takes a slow path (a Map lookup on a unique index key ran at half speed). Stored
// objects get flat copies instead: a two-part concatenation, flattened at once, which the
// GC then replaces by its flat string.
const SLICED_MIN = 13;
function flat(s: string): string {
  const c = s[0] + s.slice(1);
  c.charCodeAt(0);
  return c;
}

/**
 * Freezes a stored object, first replacing its long string values by flat copies (see
 * flat()); with `nested`, at every depth (objects fresh from the decoder), else only on the
 * object itself (the store built it; what it refers to may be anyone's), nested ones frozen as they are.
 */
function freezeStored<T extends object>(value: T, nested: boolean): T {
  if (Object.isFrozen(value)) return value;
  const rec = value as Record<string, unknown>;
  let objects = false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v === 'string') { if (v.length >= SLICED_MIN) value[i] = flat(v); }
      else if (typeof v === 'object' && v !== null) objects = true;
    }
  } else {
    for (const k in rec) {
      const v = rec[k];
      if (typeof v === 'string') { if (v.length >= SLICED_MIN && Object.hasOwn(rec, k)) rec[k] = flat(v); }
      else if (typeof v === 'object' && v !== null) objects = true;
    }
  }
  Object.freeze(value);
  if (objects) {
    for (const k in rec) {
      const v = rec[k];
      if (typeof v === 'object' && v !== null) {
        if (nested) freezeStored(v, true);
        else deepFreeze(v);
      }
    }
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  // Loops rather than Object.values: restore freezes millions of objects.
  // Byte arrays can't be frozen (V8 refuses views with elements): they are stored as they are.
  if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) if (typeof value[i] === 'object' && value[i] !== null) deepFreeze(value[i]);
    } else {
      for (const k in value) {
        const v = (value as Record<string, unknown>)[k];
        if (typeof v === 'object' && v !== null) deepFreeze(v);
      }
    }
  }
  return value;
}

// The divergence detector's running hash of every command's effects: two 32-bit lanes,
// multiply-xorshift per byte. Not cryptographic; it only has to make an accidental match of
// two different histories unlikely.
type EffectsHash = [number, number];
const CHECKPOINT_EVERY = 64;   // entries between the (index, hash) pairs replicas compare
const CHECKPOINTS_KEPT = 64;
/** The effects hash of the empty history (a new store, or a snapshot from before effects were kept). */
const initialEffects = (): EffectsHash => [0x811c9dc5, 0x9747b28c];
function foldBytes(h: EffectsHash, bytes: Uint8Array): void {
  let a = h[0];
  let b = h[1];
  for (let i = 0; i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i]!, 0x01000193);
    b = Math.imul(b ^ bytes[i]!, 0x5bd1e995);
    b ^= b >>> 15;
  }
  h[0] = a;
  h[1] = b;
}
function foldNumber(h: EffectsHash, n: number): void {
  h[0] = Math.imul(h[0] ^ (n | 0), 0x85ebca6b) ^ Math.floor(n / 4294967296);
  h[1] = Math.imul(h[1] ^ (h[0] >>> 13), 0xc2b2ae35) ^ (n | 0);
}
function foldString(h: EffectsHash, str: string): void {
  let a = h[0] ^ str.length;
  let b = h[1];
  for (let i = 0; i < str.length; i++) {
    const c = str.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  h[0] = a;
  h[1] = b ^ (b >>> 15);
}
// Folds a stored value (plain data: frozen objects, arrays, primitives, Dates, byte arrays)
// without serialising it: a type tag, then the contents, keys in their (deterministic) order.
function foldValue(h: EffectsHash, v: unknown): void {
  switch (typeof v) {
    case 'string': foldNumber(h, 1); foldString(h, v); return;
    case 'number': foldNumber(h, 2); foldNumber(h, v); if (!Number.isInteger(v)) foldString(h, String(v)); return;
    case 'boolean': foldNumber(h, v ? 3 : 4); return;
    case 'bigint': foldNumber(h, 5); foldString(h, v.toString()); return;
    case 'undefined': foldNumber(h, 6); return;
    default:
  }
  if (v === null) { foldNumber(h, 7); return; }
  if (Array.isArray(v)) {
    foldNumber(h, 8);
    foldNumber(h, v.length);
    for (let i = 0; i < v.length; i++) foldValue(h, v[i]);
  } else if (ArrayBuffer.isView(v)) {
    foldNumber(h, 9);
    foldBytes(h, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  } else if (v instanceof Date) {
    foldNumber(h, 10);
    foldNumber(h, v.getTime());
  } else {
    foldNumber(h, 11);
    for (const k in v as object) {
      foldString(h, k);
      foldValue(h, (v as Record<string, unknown>)[k]);
    }
  }
}
const hexOf = (h: EffectsHash) => (h[0] >>> 0).toString(16).padStart(8, '0') + (h[1] >>> 0).toString(16).padStart(8, '0');

/**
 * Why `value` can't travel in a log entry, or null. msgpack would turn functions and symbols
 * into nothing without a word; cycles make it throw (reported as well).
 */
function unencodable(value: unknown, path: string, seen = new Set<object>()): string | null {
  if (typeof value === 'function') return `${path} is a function`;
  if (typeof value === 'symbol') return `${path} is a symbol`;
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || value instanceof Date) return null;
  if (seen.has(value)) return `${path} refers back to itself (a cycle)`;
  seen.add(value);
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const bad = unencodable(v, `${path}.get(${String(k)})`, seen);
      if (bad) return bad;
    }
  } else if (Array.isArray(value) || value instanceof Set) {
    let i = 0;
    for (const v of value) {
      const bad = unencodable(v, `${path}[${i++}]`, seen);
      if (bad) return bad;
    }
  } else {
    for (const k of Object.keys(value)) {
      const bad = unencodable((value as Record<string, unknown>)[k], `${path}.${k}`, seen);
      if (bad) return bad;
    }
  }
  seen.delete(value);
  return null;
}

// A small deterministic PRNG (splitmix-style mixing of the entry index and a counter).
function mix(seed: number, n: number): number {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(n + 1, 0xc2b2ae35)) | 0;
  h ^= h >>> 16; h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15; h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
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
  #tail: TailEntry[] = [];
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
        indexes: Object.entries(def.indexes ? def.indexes(indexBuilder) : {}).map(([iname, idef]) => this.#makeIndex(iname, idef as IndexDef<any>)),
      };
      if (def.migrate) c.migrate = def.migrate;
      this.#collections.set(name, c);
      view[name] = this.#reader(c, false);
      writers[name] = this.#reader(c, true);
    }
    this.view = view as ViewOf<C>;
    this.#writers = writers as StateOf<C>;
    // The state at index 0: empty, every collection at its first id.
    this.#base = { index: 0, chunks: [this.#metaFrame(0)] };
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
        announce: (peerId, channel) => node.propose(packr.pack([SYSTEM_FORMAT, 'peer', { id: peerId, channel }, Date.now()])),
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
          if ((error as { fatal?: boolean } | null)?.fatal) throw error;
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
  async propose<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, options: WriteOptions = {}): Promise<ResultOf<H[K]>> {
    return (await this.proposeWithIndex(name, args, options)).result;
  }

  /** Like propose, also giving the entry's log index (for read-your-writes: `read({ minIndex })`). */
  async proposeWithIndex<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, options: WriteOptions = {}):
    Promise<{ index: number; result: ResultOf<H[K]> }> {
    this.#checkRequest(name, args);
    return this.#link.propose(name, args, options) as Promise<{ index: number; result: ResultOf<H[K]> }>;
  }

  /**
   * Resolves with this node's applied index once reading `view` (synchronously, right after
   * the await) is consistent at the requested level; see ReadOptions.
   */
  read(options?: ReadOptions): Promise<number> {
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
    let name = '?';
    try {
      const decoded = packr.unpack(command) as unknown[];
      if (Array.isArray(decoded) && typeof decoded[1] === 'string') name = decoded[1];
    } catch {
      // reported by apply itself
    }
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
  async schedule<K extends keyof H & string>(name: K, args: ArgsOf<H[K]>, at: number | Date,
    options: { every?: number; id?: string } & WriteOptions = {}): Promise<string> {
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
  async unschedule(id: string, options: WriteOptions = {}): Promise<boolean> {
    return (await this.#link.propose(`${SYSTEM_PREFIX}unschedule`, { id }, options)).result as boolean;
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

  // What a caller hands in for a command (proposed now or scheduled): a defined name, and
  // arguments that survive encoding unchanged.
  #checkRequest(name: string, args: unknown): void {
    this.#checkCommand(name);
    const bad = unencodable(args, 'args');
    if (bad) throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `arguments of ${name} can't be sent: ${bad}`);
  }

  // On this node only (the leader): the timestamp is this node's clock, carried in the entry.
  async #proposeLocal(name: string, args: unknown, signal?: AbortSignal): Promise<{ index: number; result: unknown }> {
    const options = signal ? { signal } : {};
    if (name.startsWith(SYSTEM_PREFIX)) {
      return this.node.proposeWithIndex(packr.pack([SYSTEM_FORMAT, name.slice(SYSTEM_PREFIX.length), args, Date.now()]), options);
    }
    this.#checkCommand(name);
    let payload: Uint8Array;
    try {
      payload = packr.pack([ENTRY_FORMAT, name, args, Date.now()]);
    } catch (err) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `arguments of ${name} can't be encoded: ${(err as Error).message}`);
    }
    return this.node.proposeWithIndex(payload, options);
  }

  /** Starts a background capture of the whole state now (snapshots otherwise follow log growth). */
  captureNow(): Promise<number> {
    return this.#startCapture();
  }

  /** Captures the state and has the engine write a snapshot of it now (leader only). */
  async snapshot(): Promise<{ index: number; term: number }> {
    await this.#startCapture();
    return this.node.snapshot();
  }

  status(): RaftNodeStatus & { capture: { baseIndex: number; tail: number; running: boolean }; effects: { index: number; hash: string } } {
    return {
      ...this.node.status(),
      capture: { baseIndex: this.#base.index, tail: this.#tail.length, running: this.#captureDone !== null },
      effects: { index: this.#appliedIndex, hash: hexOf(this.#effects) },
    };
  }

  async close(options?: CloseOptions): Promise<void> {
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
      for (const obj of c.objects.values()) h.update(packr.pack(obj));  // id order; ids are in the objects
    }
    h.update(packr.pack(this.schedules()));
    return h.digest('hex');
  }

  // ---- apply ----------------------------------------------------------------------

  #applyEntry(payload: Uint8Array, index: number, term: number): unknown {
    this.#tail.push({ index, term, payload });
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
    let decoded: unknown;
    try {
      decoded = packr.unpack(payload);
    } catch (err) {
      throw fatal(ErrorCodes.CORRUPT_ENTRY, `entry ${index} can't be decoded: ${(err as Error).message}`);
    }
    const system = Array.isArray(decoded) && decoded[0] === SYSTEM_FORMAT;
    if (!system && (!Array.isArray(decoded) || decoded[0] !== ENTRY_FORMAT || typeof decoded[1] !== 'string')) {
      throw fatal(ErrorCodes.CORRUPT_ENTRY, `entry ${index} is not a store command (format ${JSON.stringify(Array.isArray(decoded) ? decoded[0] : typeof decoded)})`);
    }
    // Both kinds are [format, name or kind, args or data, the proposer's clock].
    const [, name, args, proposedAt] = decoded as [number, string, any, number];
    this.#lastTimestamp = Math.max(this.#lastTimestamp, typeof proposedAt === 'number' ? proposedAt : 0);
    return system ? this.#runSystem(name, args, index, term) : this.#execute(name, args, index, term);
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
      if ((err as { fatal?: unknown } | null)?.fatal === true) {
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
        const s: Schedule = { id, name: data.name, args: data.args, at: data.at };
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
          if ((err as { fatal?: boolean })?.fatal) throw err;
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

  #makeIndex(name: string, def: IndexDef<any>): IndexImpl {
    const ix: IndexImpl = { name, key: def.key };
    if (def.kind === 'unique') ix.unique = new KeyMap();
    else if (def.kind === 'hash') ix.hash = new KeyMap();
    else if (def.kind === 'sorted') ix.sorted = new SortedIndex();
    else if (def.kind === 'persistent') ix.persistent = new PersistentSortedIndex();
    else throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `index ${name}: kind must be unique, hash, sorted or persistent`);
    return ix;
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
        const stored = { id, ...obj } as { id: Id };  // id first: V8 lays such objects out compactly
        if (stored.id !== id) stored.id = id;  // the store assigns ids
        freezeStored(stored, false);
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
        const body = typeof patch === 'function' ? patch(prev) : { ...prev, ...patch };
        const stored = { id, ...body } as { id: Id };
        if (stored.id !== id) stored.id = id;  // keeps the compact id-first layout
        freezeStored(stored, false);
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
    const meta = this.#metaFrame(index);
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
            out[k] = items.length ? objsFrame(c, items) : null;
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
          const chunks: Uint8Array[] = [meta];
          for (const { c, overlay, out, work } of lists) {
            // Keep the new frames of chunks no command touched meanwhile (the rest are stale again).
            const touched = new Set<number>();
            for (const id of overlay.keys()) touched.add(Math.floor((id as number) / chunk));
            for (const k of work) if (!touched.has(k)) c.frames[k] = out[k];
            for (const f of out) if (f) chunks.push(f);
          }
          this.#base = { index, chunks };
          this.#tail = this.#tail.filter((e) => e.index > index);
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
  // tail holds only those). O(tail): the heavy serialisation already happened in slices.
  #snapshotBytes(): Uint8Array[] {
    const tail = this.#tail.map((e) => [e.index, e.term, e.payload]);
    const chunks = [...this.#base.chunks, frame(packr.pack({ t: 'tail', entries: tail }))];
    chunks.push(frame(packr.pack({ t: 'end', crcs: chunks.map(crcOf) })));
    return chunks;
  }

  /** The snapshot header for the state now: as of `index`, with each collection's version and next id. */
  #metaFrame(index: number): Uint8Array {
    // `size` (objects in the collection) lets restore size its tables up front; optional.
    const collections = Object.fromEntries([...this.#collections.values()].map((c) => [c.name, { version: c.version, nextId: c.nextId, size: c.objects.size }]));
    return frame(packr.pack({ t: 'meta', format: SNAPSHOT_FORMAT, baseIndex: index, lastTimestamp: this.#lastTimestamp, collections, effects: [...this.#effects],
      peers: [...this.#peers], schedules: [...this.#schedules.values()] }));
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
    this.#tail = [];
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
        if (rec.format > SNAPSHOT_FORMAT) {
          throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot format ${rec.format} is newer than this code (${SNAPSHOT_FORMAT})`);
        }
        baseIndex = rec.baseIndex;
        this.#lastTimestamp = rec.lastTimestamp;
        this.#effects = Array.isArray(rec.effects) ? [rec.effects[0], rec.effects[1]] : initialEffects();
        this.#checkpoints = [];
        this.#peers = new Map(rec.peers ?? []);
        this.#schedules = new Map((rec.schedules ?? []).map((s: Schedule) => [s.id, s]));
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
        for (let i = 0; i < items.length; i++) {
          let obj = items[i];
          if (from < c.version) {
            obj = items[i] = freezeStored({ ...(c.migrate!(obj, from) as object), id: obj.id }, false);
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
      this.#tail.push({ index, term, payload });
      this.#appliedIndex = index;
      try {
        this.#run(payload, index, term);
      } catch (err) {
        if ((err as { fatal?: boolean }).fatal) throw err;
        // a handler that threw when the entry was first applied throws again: rolled back
      }
    }
  }

  /** The whole state as of now, serialised at once (restore, after migrating objects). */
  #serializeAll(index: number): Uint8Array[] {
    const chunks = [this.#metaFrame(index)];
    const chunk = this.#chunkSize;
    for (const c of this.#collections.values()) {
      c.frames = [];
      for (let k = 0; k * chunk < c.objects.limit; k++) {
        const items = chunkObjects(c, k, chunk, c.objects.limit, null);
        const f = items.length ? objsFrame(c, items) : null;
        c.frames[k] = f;
        if (f) chunks.push(f);
      }
    }
    return chunks;
  }
}

/** The objects of chunk `k` (ids [k * chunk, (k + 1) * chunk) below `limit`), as of when `overlay` was made if given. */
function chunkObjects(c: CollectionImpl, k: number, chunk: number, limit: number, overlay: Map<Id, any> | null): unknown[] {
  const items: unknown[] = [];
  const end = Math.min(limit, (k + 1) * chunk);
  for (let id = k * chunk; id < end; id++) {
    const v = overlay === null || overlay.size === 0 ? c.objects.get(id) : asOf(c, overlay, id);
    if (v !== undefined) items.push(v);
  }
  return items;
}

// Longest run of capture work per turn of the event loop (ms).
const SLICE_MS = 0.25;

/**
 * A snapshot frame of objects, as rows: `shapes` lists each distinct key list once, `items`
 * gives each object's shape (so its length is the number of objects, what `prevail inspect`
 * counts) and `values` all their values, object after object. Against one map per object
 * this is a third smaller and packs 1.5-2 times and unpacks 2-3 times faster (no key strings
 * per object to write, decode and intern; two arrays per frame, not one per object).
 */
function objsFrame(c: CollectionImpl, objects: unknown[]): Uint8Array {
  const shapes: string[][] = [];
  const shapeOf = new Map<string, number>();  // key list (joined) -> its index in shapes
  const items: number[] = new Array(objects.length);
  const values: unknown[] = [];
  let keys: string[] | null = null;
  let shape = -1;
  for (let i = 0; i < objects.length; i++) {
    const o = objects[i] as Record<string, unknown>;
    // Usually every object has the previous one's keys: checked without allocating.
    let same = keys !== null;
    if (same) {
      let n = 0;
      for (const k in o) {
        if (k !== keys![n++]) { same = false; break; }
      }
      if (n !== keys!.length) same = false;
    }
    if (!same) {
      keys = Object.keys(o);
      const sig = keys.join('\u0000');
      const known = shapeOf.get(sig);
      if (known === undefined) shapeOf.set(sig, (shape = shapes.push(keys) - 1));
      else shape = known;
    }
    items[i] = shape;
    for (let k = 0; k < keys!.length; k++) values.push(o[keys![k]!]);
  }
  return frame(packr.pack({ t: 'objs', c: c.name, shapes, items, values }));
}

// Object builders by key list: `(v, at) => ({ k1: v[at], k2: v[at + 1], ... })`, compiled once
// per shape (an object literal is the fastest way to make objects of one layout); at most
// MAX_BUILDERS of them, then a generic loop.
type Builder = (v: unknown[], at: number) => object;
const builders = new Map<string, Builder>();
const MAX_BUILDERS = 1000;

function builderFor(keys: string[]): Builder {
  const sig = keys.join('\u0000');
  let build = builders.get(sig);
  if (build) return build;
  if (builders.size < MAX_BUILDERS && !keys.includes('__proto__')) {
    build = new Function('v', 'at', `return { ${keys.map((k, i) => `${JSON.stringify(k)}: v[at + ${i}]`).join(', ')} };`) as Builder;
    builders.set(sig, build);
  } else {
    build = (v, at) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) Object.defineProperty(o, keys[i]!, { value: v[at + i], writable: true, enumerable: true, configurable: true });
      return o;
    };
  }
  return build;
}

/**
 * The objects of a rows frame (see objsFrame). Also reads the first rows layout, without
 * `values`: each item was [shape, ...its values].
 */
function fromRows(shapes: string[][], items: unknown[], values: unknown[] | undefined): object[] {
  const build = shapes.map(builderFor);
  const out: object[] = new Array(items.length);
  if (values === undefined) {
    for (let i = 0; i < items.length; i++) {
      const row = items[i] as unknown[];
      out[i] = build[row[0] as number]!(row, 1);
    }
    return out;
  }
  let at = 0;
  for (let i = 0; i < items.length; i++) {
    const shape = items[i] as number;
    out[i] = build[shape]!(values, at);
    at += shapes[shape]!.length;
  }
  return out;
}

function frame(bytes: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32LE(bytes.length, 0);
  out.set(bytes, 4);
  frameCrcs.set(out, crc32(out));  // now, while it is being made: snapshots then only look it up
  return out;
}

// Each frame's CRC-32, so a snapshot can end with the list and restore can refuse a damaged
// one (the engine checksums its log, not snapshot data). Frames are kept and reused across
// captures, so their CRC is computed once.
const frameCrcs = new WeakMap<Uint8Array, number>();
function crcOf(framed: Uint8Array): number {
  let crc = frameCrcs.get(framed);
  if (crc === undefined) {
    crc = crc32(framed);
    frameCrcs.set(framed, crc);
  }
  return crc;
}

/**
 * Checks a snapshot's frames against its closing 'end' frame (absent in snapshots written
 * before it existed: those are read unchecked). Throws PREVAIL_SNAPSHOT_UNREADABLE before
 * anything is restored. Returns the frames (length prefix included) for restore to read.
 */
function verifySnapshot(buf: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    if (at + 4 > buf.length) throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot cut inside a frame header at byte ${at}`);
    const len = buf.readUInt32LE(at);
    if (at + 4 + len > buf.length) throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot frame at byte ${at} runs past the end`);
    frames.push(buf.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  const last = frames.at(-1);
  let end: { t?: string; crcs?: number[] } | undefined;
  try {
    end = last ? packr.unpack(last.subarray(4)) as typeof end : undefined;
  } catch {
    end = undefined;
  }
  if (end?.t !== 'end') return frames;  // an older snapshot: no checksums to check
  const crcs = end.crcs ?? [];
  if (crcs.length !== frames.length - 1) {
    throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot has ${frames.length - 1} frames, its checksum list ${crcs.length}`);
  }
  for (let i = 0; i < crcs.length; i++) {
    const crc = crc32(frames[i]!);
    if (crc !== crcs[i]) {
      throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `store snapshot frame ${i} (at byte ${frames[i]!.byteOffset - buf.byteOffset}) fails its CRC-32: damaged`);
    }
    frameCrcs.set(frames[i]!, crc);
  }
  return frames;
}

function fatal(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string): PrevailError {
  const err = new PrevailError(code, message);
  (err as { fatal?: boolean }).fatal = true;
  return err;
}

function addToIndex(ix: IndexImpl, key: IndexKey, id: Id, obj: unknown): void {
  if (ix.unique) ix.unique.set(key, obj);
  else if (ix.hash) {
    let set = ix.hash.get(key);
    if (!set) ix.hash.set(key, (set = new Set()));
    set.add(id);
  } else if (ix.sorted) ix.sorted.add(key, id);
  else if (ix.persistent) ix.persistent = ix.persistent.add(key, id);
}

function removeFromIndex(ix: IndexImpl, key: IndexKey, id: Id): void {
  if (ix.unique) {
    if (ix.unique.get(key)?.id === id) ix.unique.delete(key);
  } else if (ix.hash) {
    const set = ix.hash.get(key);
    if (set) { set.delete(id); if (set.size === 0) ix.hash.delete(key); }
  } else if (ix.sorted) ix.sorted.remove(key, id);
  else if (ix.persistent) ix.persistent = ix.persistent.remove(key, id);
}

function clearIndex(ix: IndexImpl): void {
  ix.unique?.clear();
  ix.hash?.clear();
  ix.sorted?.clear();
  if (ix.persistent) ix.persistent = new PersistentSortedIndex();
}

function sortedReader(index: () => OrderedIndex, resolve: (id: Id) => any) {
  return {
    get: (key: IndexKey) => index().get(key).map(resolve),
    *range(options: RangeOptions = {}) {
      for (const [, id] of index().range(options)) yield resolve(id);
    },
    *entries(options: RangeOptions = {}) {
      for (const [key, id] of index().range(options)) yield [key, resolve(id)];
    },
    first: () => { const f = index().first(); return f ? resolve(f[1]) : undefined; },
    last: () => { const l = index().last(); return l ? resolve(l[1]) : undefined; },
  };
}

function indexReader(ix: IndexImpl, c: CollectionImpl): unknown {
  const resolve = (id: Id) => c.objects.get(id);
  if (ix.unique) {
    const unique = ix.unique;
    return Object.freeze({
      get: (key: IndexKey) => unique.get(key),
      has: (key: IndexKey) => unique.has(key),
    });
  }
  if (ix.hash) {
    return Object.freeze({
      get: (key: IndexKey) => Array.from(ix.hash!.get(key) ?? [], resolve),
      count: (key: IndexKey) => ix.hash!.get(key)?.size ?? 0,
    });
  }
  if (ix.sorted) return Object.freeze(sortedReader(() => ix.sorted!, resolve));
  return Object.freeze({
    ...sortedReader(() => ix.persistent!, resolve),
    view: () => {
      // O(1): this version of the index, and the objects as of now — an object changed
      // later is saved into this view's map the first time it changes (copy-on-write).
      const version = ix.persistent!;
      const overlay = new Map<Id, unknown>();
      c.overlays.add(new WeakRef(overlay));
      return Object.freeze(sortedReader(() => version, (id) => asOf(c, overlay, id)));
    },
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as import('node:net').AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Opens a store; see Store.open. */
export function open<C extends Collections, H extends Commands<C>>(options: StoreOptions<C, H>): Promise<Store<C, H>> {
  return Store.open(options);
}

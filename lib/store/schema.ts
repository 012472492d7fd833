// The schema: collections, their indexes and the commands that change them, as the
// application declares them, with the checks made when a schema is declared or opened.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { SYSTEM_NAME_PREFIX } from '../format/entry.js';
import type { IndexKey, Id, RangeOptions } from '../sorted-index/index.js';

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

export const indexBuilder: IndexBuilder<any> = {
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

export interface CollectionSpec<
  T = unknown,
  I extends Record<string, IndexDef<T>> = Record<string, IndexDef<T>>,
> {
  readonly def: CollectionDef<T, I>;
  readonly __type?: T;
}

/** Declares a collection of objects of type T: `collection<User>()({ indexes: {...} })`. */
export function collection<T extends object>() {
  return <I extends Record<string, IndexDef<T>> = Record<string, never>>(
    def: CollectionDef<T, I> = {},
  ): CollectionSpec<T, I> => ({ def });
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

type IndexReaderOf<T, D> = D extends { kind: 'unique' }
  ? UniqueIndexReader<T>
  : D extends { kind: 'hash' }
    ? HashIndexReader<T>
    : D extends { kind: 'persistent' }
      ? PersistentIndexReader<T>
      : SortedIndexReader<T>;

export type CollectionReaderOf<S> =
  S extends CollectionSpec<infer T, infer I>
    ? CollectionReader<T> & { readonly [K in keyof I]: IndexReaderOf<T, I[K]> }
    : never;
export type CollectionWriterOf<S> =
  S extends CollectionSpec<infer T, infer I>
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
export type Handler<C extends Collections> = (
  state: StateOf<C>,
  args: any,
  ctx: CommandContext,
) => unknown;
export type Commands<C extends Collections> = Record<string, Handler<C>>;

export interface Schema<C extends Collections, H extends Commands<C>> {
  collections: C;
  commands: H;
}

/**
 * Declares the state machine: collections and the commands that change them. Handlers
 * are typed from the collections; `store.propose` is typed from the handlers.
 */
export function defineSchema<
  C extends Collections,
  H extends Commands<C> & SyncHandlers<H>,
>(schema: { collections: C; commands: H }): Schema<C, H> {
  for (const name of Object.keys(schema?.commands ?? {})) {
    if (name.startsWith(SYSTEM_NAME_PREFIX)) {
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `command ${JSON.stringify(name)}: names starting with "${SYSTEM_NAME_PREFIX}" are the store's own`,
      );
    }
  }
  checkHandlers(schema?.commands ?? {});
  return schema;
}

/** Handlers whose return type is a promise (or any thenable) become `never`, so they don't type-check (any, never and unions other than of promises pass). */
export type SyncHandlers<H> = {
  [K in keyof H]: H[K] extends (...args: any[]) => infer R
    ? 0 extends 1 & R
      ? H[K]
      : [R] extends [never]
        ? H[K]
        : [R] extends [PromiseLike<unknown>]
          ? never
          : H[K]
    : H[K];
};

// `async function`s and async generator functions, recognisable before they run. A function
// that returns a promise without being `async` is caught when it runs (#execute).
function isAsyncFunction(fn: unknown): boolean {
  if (typeof fn !== 'function') return false;
  const tag = (fn as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
  return (
    tag === 'AsyncFunction' ||
    tag === 'AsyncGeneratorFunction' ||
    fn.constructor?.name === 'AsyncFunction' ||
    fn.constructor?.name === 'AsyncGeneratorFunction'
  );
}

export function checkHandlers(commands: Record<string, unknown>): void {
  for (const [name, handler] of Object.entries(commands)) {
    if (isAsyncFunction(handler)) {
      throw new PrevailError(
        ErrorCodes.ASYNC_HANDLER,
        `command ${JSON.stringify(name)}: a handler must be synchronous, not async ` +
          '(the store applies its changes when it returns; work after an await would happen outside the command)',
      );
    }
  }
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

export type ArgsOf<F> = F extends (state: any, args: infer A, ctx: any) => unknown ? A : never;
export type ResultOf<F> = F extends (...a: any[]) => infer R ? Awaited<R> : never;

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

/** Refuses what is not a schema (one not made by defineSchema is checked here too). */
export function checkSchema(schema: unknown): void {
  const s = schema as Partial<Schema<Collections, Commands<Collections>>> | null | undefined;
  if (!s || typeof s.collections !== 'object' || typeof s.commands !== 'object') {
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'schema must come from defineSchema({ collections, commands })',
    );
  }
  checkHandlers(s.commands);
}

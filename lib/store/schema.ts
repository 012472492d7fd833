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
  /**
   * @deprecated Use schema versions (`defineSchema(...).next({ collections, migrate })`): this
   * older route migrates only objects read from a snapshot, so a replica's shapes depended on
   * where its snapshot was. Still read, to open data written with it. Default 1.
   */
  version?: number;
  /** The indexes: `(ix) => ({ byEmail: ix.unique((u) => u.email), byAge: ix.sorted((u) => u.age) })`. */
  indexes?: (ix: IndexBuilder<T>) => I;
  /** @deprecated With `version` (see there): upgrades an object read from a snapshot written at `fromVersion`. */
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

/** Migrations into a version: per collection, each object (old shape) to its new shape. */
export type Migrations<C extends Collections, M extends Collections> = {
  readonly [K in keyof M & keyof C]?: (
    obj: Stored<TypeOf<C[K]>>,
    ctx: CommandContext,
  ) => Omit<TypeOf<M[K]>, 'id'>;
};
type TypeOf<S> = S extends CollectionSpec<infer T, any> ? T : never;

/** C with the collections of C2 added or replaced. */
export type Merge<C, C2> = {
  [K in keyof C | keyof C2]: K extends keyof C2 ? C2[K] : K extends keyof C ? C[K] : never;
};

/** What changes from one schema version to the next (see Schema.next). */
export interface VersionChange<
  C extends Collections,
  H,
  C2 extends Collections,
  H2,
  R extends keyof H,
> {
  /** Collections added, or replaced by a new definition (a new type, other indexes). */
  collections?: C2;
  /** Commands added, or whose handler changes (the previous one stays, for entries before activation). */
  commands?: H2;
  /** Commands no longer accepted from this version on (entries from before still apply). */
  retire?: readonly R[];
  /** Old names still accepted for a command: `{ pay: 'transfer' }` proposes `transfer`. */
  aliases?: Readonly<Record<string, string>>;
  /** Run at activation on every replica, object by object: the old shape to the new. */
  migrate?: Migrations<C, Merge<C, C2>>;
  /** Run at activation after the migrations, like a command handler (a change across collections). */
  upgrade?: (state: StateOf<Merge<C, C2>>, ctx: CommandContext) => void;
}

/** One version of a schema as the state machine runs it: every table complete, not a diff. */
export interface SchemaVersion {
  readonly version: number;
  readonly collections: Collections;
  readonly commands: Record<string, Handler<any>>;
  readonly aliases: Readonly<Record<string, string>>;
  /** Names retired at or before this version. */
  readonly retired: ReadonlySet<string>;
  /** Migrations into this version (none for the first). */
  readonly migrate: Readonly<Record<string, (obj: any, ctx: CommandContext) => unknown>>;
  readonly upgrade?: (state: any, ctx: CommandContext) => void;
}

export interface Schema<C extends Collections, H extends Commands<C>> {
  /** The newest version's collections. */
  collections: C;
  /** The newest version's commands. */
  commands: H;
  /** The newest version this code supports. */
  readonly version: number;
  /** Every version this code supports, oldest first: the code a replay may need. */
  readonly versions: readonly SchemaVersion[];
  /**
   * The next version: commands added or changed, collections added or redefined, migrations
   * run at its activation. The previous versions' handlers stay available (faithful replay).
   */
  next<
    C2 extends Collections = Record<never, never>,
    // The default (not an empty record) keeps the handlers' parameters typed from it.
    H2 extends Commands<Merge<C, C2>> & SyncHandlers<H2> = Commands<Merge<C, C2>>,
    R extends keyof H = never,
  >(
    change: VersionChange<C, H, C2, H2, R>,
  ): Schema<Merge<C, C2>, Rehomed<Omit<H, R | keyof Given<H2>>, Merge<C, C2>> & Given<H2>>;
}

// The commands a change gives: none when it gives none (H2 is then its default, a record).
type Given<H> = string extends keyof H ? Record<never, never> : H;

/** Handlers kept from an older version, typed against the collections of the newer one. */
export type Rehomed<H, C extends Collections> = {
  [K in keyof H]: H[K] extends (state: any, args: infer A, ctx: any) => infer Res
    ? (state: StateOf<C>, args: A, ctx: CommandContext) => Res
    : never;
};

/**
 * Declares the state machine: collections and the commands that change them. Handlers
 * are typed from the collections; `store.propose` is typed from the handlers. `version`
 * (default 1) numbers it; `.next()` makes the versions after it.
 */
export function defineSchema<
  C extends Collections,
  H extends Commands<C> & SyncHandlers<H>,
>(schema: { collections: C; commands: H; version?: number }): Schema<C, H> {
  const version = schema?.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'version must be an integer >= 1');
  checkCommandNames(schema?.commands ?? {});
  checkHandlers(schema?.commands ?? {});
  return makeSchema([
    {
      version,
      collections: schema.collections,
      commands: { ...schema.commands },
      aliases: {},
      retired: new Set(),
      migrate: {},
    },
  ]);
}

function makeSchema(versions: SchemaVersion[]): Schema<any, any> {
  const newest = versions[versions.length - 1]!;
  return {
    collections: newest.collections,
    commands: newest.commands,
    version: newest.version,
    versions,
    next: (change) => makeSchema([...versions, nextVersion(newest, change)]),
  };
}

// The complete tables of the version after `prev`, from what changes.
function nextVersion(
  prev: SchemaVersion,
  change: VersionChange<any, any, any, any, any>,
): SchemaVersion {
  const added = change?.commands ?? {};
  checkCommandNames(added);
  checkHandlers(added);
  const retire = new Set<string>((change?.retire ?? []) as string[]);
  for (const name of retire) {
    if (!(name in prev.commands))
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `retire: ${JSON.stringify(name)} is not a command of version ${prev.version}`,
      );
  }
  const commands = { ...prev.commands };
  for (const name of retire) delete commands[name];
  Object.assign(commands, added);
  const collections = { ...prev.collections, ...(change?.collections ?? {}) };
  const aliases = { ...prev.aliases, ...(change?.aliases ?? {}) } as Record<string, string>;
  for (const [alias, target] of Object.entries(aliases)) {
    if (!(target in commands) || alias in commands)
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `alias ${JSON.stringify(alias)}: it must name a command of version ${prev.version + 1} and not be one`,
      );
  }
  for (const name of Object.keys(change?.migrate ?? {})) {
    if (!(name in collections))
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `migrate: no collection ${name}`);
  }
  const retired = new Set([...prev.retired, ...retire]);
  for (const name of Object.keys(commands)) retired.delete(name);
  return {
    version: prev.version + 1,
    collections,
    commands,
    aliases,
    retired,
    migrate: { ...(change?.migrate ?? {}) } as SchemaVersion['migrate'],
    ...(change?.upgrade ? { upgrade: change.upgrade } : {}),
  };
}

function checkCommandNames(commands: Record<string, unknown>): void {
  for (const name of Object.keys(commands)) {
    if (name.startsWith(SYSTEM_NAME_PREFIX)) {
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `command ${JSON.stringify(name)}: names starting with "${SYSTEM_NAME_PREFIX}" are the store's own`,
      );
    }
  }
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

/**
 * The schema as the store runs it: one made by defineSchema as it is, a plain
 * `{ collections, commands }` as version 1 (its handlers checked the same way); anything
 * else is refused.
 */
export function toSchema(schema: unknown): Schema<any, any> {
  const s = schema as Partial<Schema<Collections, Commands<Collections>>> | null | undefined;
  if (!s || typeof s.collections !== 'object' || typeof s.commands !== 'object') {
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'schema must come from defineSchema({ collections, commands })',
    );
  }
  if (!Array.isArray(s.versions) || s.versions.length === 0)
    return defineSchema({ collections: s.collections, commands: s.commands });
  for (const v of s.versions) checkHandlers(v.commands);
  return s as Schema<any, any>;
}

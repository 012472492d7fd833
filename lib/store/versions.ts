// Schema versions at run time: which handler applies an entry of a given version, what a
// proposal resolves to under the active version, and each collection's indexes per version.
// The active version itself is replicated state (ReplicaState.schema); this is the code's side.
import { ErrorCodes, PrevailError, markFatal } from '../core/errors.js';
import { describeKey } from './key-map.js';
import { addToIndex, makeIndex, type CollectionImpl, type IndexImpl } from './collection.js';
import {
  indexBuilder,
  type CollectionDef,
  type CollectionSpec,
  type Handler,
  type IndexDef,
  type SchemaVersion,
} from './schema.js';

/** The replicated part: the active version, when each was activated, what each node's code supports. */
export interface SchemaState {
  active: number;
  /** [index, version] of every activation, oldest first (which version applied where). */
  activations: [number, number][];
  /** Each node's code range [oldest, newest], as it recorded it through the log. */
  support: Map<number, [number, number]>;
}

export class Versions {
  readonly min: number;
  readonly max: number;
  readonly #byVersion = new Map<number, SchemaVersion>();

  constructor(readonly list: readonly SchemaVersion[]) {
    for (const v of list) this.#byVersion.set(v.version, v);
    this.min = list[0]!.version;
    this.max = list[list.length - 1]!.version;
  }

  get(version: number): SchemaVersion | undefined {
    return this.#byVersion.get(version);
  }

  /** Whether this code has a handler for `name` under `version` (any version when not given). */
  defines(name: string, version?: number): boolean {
    const has = (v: SchemaVersion) =>
      typeof (Object.hasOwn(v.commands, name)
        ? v.commands[name]
        : Object.hasOwn(v.aliases, name)
          ? v.commands[v.aliases[name]!]
          : undefined) === 'function';
    if (version === undefined) return this.list.some(has);
    const v = this.get(version);
    return v !== undefined && has(v);
  }

  /**
   * The replicated state of a store that has applied nothing: version 1 active, on every
   * replica whatever its code (data from before schema versions is version 1 too). Code
   * without version 1 runs once a later version is activated (see StateMachine#activate).
   */
  initialState(): SchemaState {
    return { active: 1, activations: [], support: new Map() };
  }

  /** Every collection any version defines (later versions' exist, empty, from the start). */
  allCollections(): Map<string, CollectionSpec> {
    const all = new Map<string, CollectionSpec>();
    for (const v of this.list)
      for (const [name, spec] of Object.entries(v.collections))
        if (!all.has(name)) all.set(name, spec);
    return all;
  }

  /** Index names of a collection across every version (what its readers expose). */
  indexNames(collection: string): string[] {
    const names = new Set<string>();
    for (const v of this.list)
      for (const n of indexDefNames(v.collections[collection])) names.add(n);
    return [...names];
  }

  /** The first version after `active` whose indexes include `name` (for the error of reading it early). */
  indexVersion(collection: string, name: string): number | undefined {
    return this.list.find((v) => indexDefNames(v.collections[collection]).includes(name))?.version;
  }

  /**
   * What a proposal of `name` under the active version is: the command's own name (aliases
   * resolved). Throws VERSION_NOT_ACTIVE for a command of a later version (with the version
   * it needs), UNKNOWN_COMMAND for one no version here defines (or retired).
   */
  resolve(name: string, active: number): string {
    const v = this.get(active);
    if (v) {
      if (typeof v.commands[name] === 'function' && Object.hasOwn(v.commands, name)) return name;
      const target = Object.hasOwn(v.aliases, name) ? v.aliases[name] : undefined;
      if (target !== undefined) return target;
    }
    const later = this.list.find(
      (x) => x.version > active && Object.hasOwn(x.commands, name) && x.commands[name],
    );
    if (later)
      throw new PrevailError(
        ErrorCodes.VERSION_NOT_ACTIVE,
        `command ${JSON.stringify(name)} is new in schema version ${later.version}; the cluster runs version ${active} until every voter's code supports ${later.version}`,
        { version: later.version },
      );
    throw new PrevailError(
      ErrorCodes.UNKNOWN_COMMAND,
      v?.retired.has(name)
        ? `command ${JSON.stringify(name)} was retired before schema version ${active}`
        : `unknown command ${JSON.stringify(name)}`,
    );
  }

  /**
   * The handler of an entry `name` of `version`, or why not: a name this version retired is
   * a command's failure; one it never knew stops the replica (it can't apply what others did).
   */
  handler(name: string, version: number, index: number): Handler<any> {
    const v = this.need(version, index);
    const own = Object.hasOwn(v.commands, name) ? v.commands[name] : undefined;
    const aliased = Object.hasOwn(v.aliases, name) ? v.commands[v.aliases[name]!] : undefined;
    const handler = own ?? aliased;
    if (typeof handler === 'function') return handler;
    if (v.retired.has(name))
      throw new PrevailError(
        ErrorCodes.UNKNOWN_COMMAND,
        `command ${JSON.stringify(name)} is retired in schema version ${version}`,
        { index },
      );
    throw markFatal(
      new PrevailError(
        ErrorCodes.UNKNOWN_COMMAND,
        `entry ${index} names command ${JSON.stringify(name)}, which this code's schema version ${version} does not define; stopping rather than diverging`,
        { index },
      ),
    );
  }

  /** Refuses (fatally: the node stops) a version this code is too old to run. */
  checkNotTooOld(version: number): void {
    if (version > this.max)
      throw markFatal(
        new PrevailError(
          ErrorCodes.SCHEMA_TOO_OLD,
          `the cluster runs schema version ${version}; this code supports up to ${this.max}: deploy code that supports ${version}`,
          { version },
        ),
      );
  }

  /** A version the data needs (to apply a command, to migrate through), fatally refused if this code dropped it. */
  need(version: number, index: number): SchemaVersion {
    this.checkNotTooOld(version);
    const v = this.get(version);
    if (!v)
      throw markFatal(
        new PrevailError(
          ErrorCodes.SCHEMA_TOO_NEW,
          `entry ${index} needs schema version ${version}, which this code no longer defines (it starts at ${this.min}): keep version ${version} in the schema until every node's snapshot is past its successor's activation`,
          { version, index },
        ),
      );
    return v;
  }
}

function indexDefNames(spec: CollectionSpec | undefined): string[] {
  const def = spec?.def as CollectionDef<any, any> | undefined;
  return def?.indexes ? Object.keys(def.indexes(indexBuilder)) : [];
}

/** A collection's indexes as a version defines them, empty. */
export function indexesOf(spec: CollectionSpec | undefined): IndexImpl[] {
  const def = spec?.def as CollectionDef<any, any> | undefined;
  const defs: Record<string, IndexDef<any>> = def?.indexes ? def.indexes(indexBuilder) : {};
  return Object.entries(defs).map(([name, idef]) => makeIndex(name, idef));
}

/**
 * Gives each collection the indexes of `version`: those whose definition changed are built
 * anew from the objects (a new unique index over duplicate keys throws UNIQUE_VIOLATION).
 */
export function installIndexes(
  collections: Map<string, CollectionImpl>,
  version: SchemaVersion,
): void {
  for (const c of collections.values()) {
    const spec = version.collections[c.name];
    if (c.spec === spec) continue;
    const indexes = indexesOf(spec);
    for (const ix of indexes) fillIndex(c, ix);
    c.indexes = indexes;
    c.spec = spec;
  }
}

function fillIndex(c: CollectionImpl, ix: IndexImpl): void {
  for (const obj of c.objects.values()) {
    const key = ix.key(obj);
    if (key === undefined) continue;
    const holder = ix.unique?.get(key);
    if (holder !== undefined)
      throw new PrevailError(
        ErrorCodes.UNIQUE_VIOLATION,
        `${c.name}.${ix.name}: key ${describeKey(key)} is held by ${String(holder.id)} and ${String((obj as { id: unknown }).id)}`,
      );
    addToIndex(ix, key, (obj as { id: number }).id, obj);
  }
}

/** The version that applied at `index` (the last activation at or before it). */
export function versionAt(state: SchemaState, index: number, initial: number): number {
  let v = initial;
  for (const [at, version] of state.activations) if (at <= index) v = version;
  return v;
}

/** A code range [oldest, newest] of schema versions, as nodes record it. */
export function isVersionRange(x: unknown): x is [number, number] {
  return (
    Array.isArray(x) &&
    x.length === 2 &&
    Number.isSafeInteger(x[0]) &&
    Number.isSafeInteger(x[1]) &&
    x[0] >= 1 &&
    x[0] <= x[1]
  );
}

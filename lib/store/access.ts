// How collections change: the one write path (objects, indexes, overlays, stale frames),
// its undo log, and the readers/writers that handlers and `view` get.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { checkPlain, checkPlainObject } from '../plain-data.js';
import type { Id } from '../sorted-index/index.js';
import {
  addToIndex,
  indexReader,
  removeFromIndex,
  type CollectionImpl,
  type IndexImpl,
  type Undo,
} from './collection.js';
import { describeKey, sameKey } from './key-map.js';
import { ObjectTable } from './object-table.js';
import type { CollectionDef } from './schema.js';
import { installIndexes, type Versions } from './versions.js';
import { freezeStored, markExotic } from './stored.js';

/**
 * Empty tables for every collection of any version of a schema, each at its first id, with
 * the indexes of the oldest version (the one a store that applied nothing runs).
 */
export function makeCollections(versions: Versions): Map<string, CollectionImpl> {
  const tables = new Map<string, CollectionImpl>();
  for (const [name, spec] of versions.allCollections()) {
    const def = spec.def as CollectionDef<any, any>;
    const c: CollectionImpl = {
      name,
      version: def.version ?? 1,
      objects: new ObjectTable(),
      nextId: 1,
      overlays: new Set(),
      frames: [],
      indexes: [],
    };
    if (def.migrate) c.migrate = def.migrate;
    if (def.migrate || (def.version ?? 1) > 1) warnDeprecatedMigrate(name);
    tables.set(name, c);
  }
  installIndexes(tables, versions.list[0]!);
  return tables;
}

// Once per collection and process: the route works (data written with it opens) but a
// replica's shapes depend on its snapshot's index, which schema versions don't.
const warned = new Set<string>();
function warnDeprecatedMigrate(collection: string): void {
  if (warned.has(collection)) return;
  warned.add(collection);
  process.emitWarning(
    `collection ${collection}: \`version\`/\`migrate\` on a collection is deprecated; use schema versions (defineSchema(...).next({ collections, migrate })), docs/guide.md "Deploying new code"`,
    { code: 'PREVAIL_DEPRECATED' },
  );
}

// The only place objects change: maps, indices and copy-on-write overlays. `chunkSize`:
// ids per snapshot frame, whose frame this makes stale (see CollectionImpl.frames).
export function writeObject(c: CollectionImpl, id: Id, next: any, chunkSize: number): void {
  const prev = c.objects.get(id);
  const k = Math.floor((id as number) / chunkSize);
  if (k < c.frames.length) c.frames[k] = undefined; // the chunk's frame is stale
  for (const entry of c.overlays) {
    const overlay = entry instanceof WeakRef ? entry.deref() : entry;
    if (!overlay) c.overlays.delete(entry);
    else if (!overlay.has(id)) overlay.set(id, prev);
  }
  for (const ix of c.indexes) {
    const before = prev === undefined ? undefined : ix.key(prev);
    const after = next === undefined ? undefined : ix.key(next);
    if (before !== undefined && after !== undefined && sameKey(before, after)) {
      if (ix.unique) ix.unique.set(after, next); // same key, new version of the object
      continue;
    }
    if (before !== undefined) removeFromIndex(ix, before, id);
    if (after !== undefined) addToIndex(ix, after, id, next);
  }
  if (next === undefined) c.objects.delete(id);
  else c.objects.set(id, next);
}

/** Undoes a command's changes, newest first. */
export function rollback(undo: Undo[], chunkSize: number): void {
  for (let i = undo.length - 1; i >= 0; i--) {
    const u = undo[i]!;
    if ('nextId' in u) u.c.nextId = u.nextId;
    else writeObject(u.c, u.id, u.prev, chunkSize);
  }
}

// An object a handler is storing: plain data (or PREVAIL_NOT_PLAIN_DATA naming the path,
// before anything changed), frozen, and noted if a snapshot needs patches for it.
export function seal(c: CollectionImpl, id: Id, stored: object): void {
  if (checkPlain(stored, `${c.name}[${String(id)}]`).length > 0) markExotic(stored);
  freezeStored(stored, false);
}

function checkUnique(c: CollectionImpl, id: Id, next: any): void {
  for (const ix of c.indexes) {
    if (!ix.unique) continue;
    const key = ix.key(next);
    if (key === undefined) continue;
    const holder = ix.unique.get(key);
    if (holder !== undefined && holder.id !== id) {
      throw new PrevailError(
        ErrorCodes.UNIQUE_VIOLATION,
        `${c.name}.${ix.name}: key ${describeKey(key)} is already used by ${String(holder.id)}`,
      );
    }
  }
}

/**
 * A collection's reader (`writable` false: what `view` holds) or writer (what handlers
 * get). Writes need a command in progress: `transaction()` gives its undo log, or null.
 */
export function collectionAccess(
  c: CollectionImpl,
  writable: boolean,
  transaction: () => Undo[] | null,
  chunkSize: number,
  indexNames: readonly string[],
): unknown {
  const mustWrite = (what: string) => {
    const undo = writable ? transaction() : null;
    if (undo === null) {
      throw new PrevailError(
        ErrorCodes.OUTSIDE_COMMAND,
        `${c.name}.${what}() changes state: call it inside a command handler`,
      );
    }
    return undo;
  };
  // Checked, then recorded, then written: a refused object changes nothing.
  const store = (undo: Undo[], id: Id, stored: object, prev: unknown) => {
    seal(c, id, stored);
    checkUnique(c, id, stored);
    if (prev === undefined) {
      undo.push({ c, nextId: c.nextId });
      c.nextId++;
    }
    undo.push({ c, id, prev });
    writeObject(c, id, stored, chunkSize);
    return stored;
  };
  const access: Record<string, unknown> = {
    get: (id: Id) => c.objects.get(id),
    has: (id: Id) => c.objects.has(id),
    get size() {
      return c.objects.size;
    },
    values: () => c.objects.values(),
    insert: (obj: object) => {
      const undo = mustWrite('insert');
      if (typeof obj !== 'object' || obj === null)
        throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `${c.name}.insert() needs an object`);
      const id = c.nextId;
      checkPlainObject(obj, `${c.name}[${String(id)}]`);
      const stored = { id, ...obj } as { id: Id }; // id first: V8 lays such objects out compactly
      if (stored.id !== id) stored.id = id; // the store assigns ids
      return store(undo, id, stored, undefined);
    },
    update: (id: Id, patch: object | ((o: any) => object)) => {
      const undo = mustWrite('update');
      const prev = c.objects.get(id);
      if (prev === undefined)
        throw new PrevailError(ErrorCodes.NOT_FOUND, `${c.name}: no object ${String(id)}`);
      // The object given (a patch, or what the function returns) must be plain: its fields are copied.
      const given = typeof patch === 'function' ? patch(prev) : patch;
      checkPlainObject(given, `${c.name}[${String(id)}]`);
      const body = typeof patch === 'function' ? given : { ...prev, ...given };
      const stored = { id, ...body } as { id: Id };
      if (stored.id !== id) stored.id = id; // keeps the compact id-first layout
      return store(undo, id, stored, prev);
    },
    delete: (id: Id) => {
      const undo = mustWrite('delete');
      const prev = c.objects.get(id);
      if (prev === undefined) return false;
      undo.push({ c, id, prev });
      writeObject(c, id, undefined, chunkSize);
      return true;
    },
  };
  const readers = indexReaders(c);
  for (const name of indexNames) {
    Object.defineProperty(access, name, { enumerable: true, get: () => readers(name) });
  }
  return Object.freeze(access);
}

// The readers of the active version's indexes, by name: made again only when an activation
// installs other indexes (handlers read them on every command: one map lookup).
function indexReaders(c: CollectionImpl): (name: string) => unknown {
  let madeFor: IndexImpl[] | null = null;
  let byName = new Map<string, unknown>();
  return (name) => {
    if (madeFor !== c.indexes) {
      madeFor = c.indexes;
      byName = new Map(c.indexes.map((ix) => [ix.name, indexReader(ix, c)]));
    }
    const reader = byName.get(name);
    if (reader === undefined)
      throw new PrevailError(
        ErrorCodes.VERSION_NOT_ACTIVE,
        `${c.name}.${name}: this index belongs to a schema version that is not active`,
      );
    return reader;
  };
}

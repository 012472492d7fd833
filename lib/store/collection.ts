// A collection's in-memory tables: its objects by id, its indexes, and the copy-on-write
// overlays that let captures and index views see the objects as of a moment.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import {
  SortedIndex,
  PersistentSortedIndex,
  type IndexKey,
  type Id,
  type OrderedIndex,
  type RangeOptions,
} from '../sorted-index/index.js';
import { KeyMap } from './key-map.js';
import type { ObjectTable } from './object-table.js';

export interface IndexImpl {
  name: string;
  key: (obj: any) => IndexKey | undefined;
  unique?: KeyMap<any>; // key → the object itself (point reads need one lookup)
  hash?: KeyMap<Set<Id>>;
  sorted?: SortedIndex;
  persistent?: PersistentSortedIndex;
}

export interface CollectionImpl {
  name: string;
  version: number;
  migrate?: (obj: Record<string, unknown>, from: number) => unknown;
  objects: ObjectTable;
  /** The indexes of the active schema version (versions.ts installIndexes). */
  indexes: IndexImpl[];
  /** The definition `indexes` come from (another version's may differ). */
  spec?: unknown;
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

export type Undo = { c: CollectionImpl; id: Id; prev: any } | { c: CollectionImpl; nextId: number };

/** The value of `id` as of when `overlay` was made. */
export function asOf(c: CollectionImpl, overlay: Map<Id, any>, id: Id): any {
  return overlay.has(id) ? overlay.get(id) : c.objects.get(id);
}

/** The objects of chunk `k` (ids [k * chunk, (k + 1) * chunk) below `limit`), as of when `overlay` was made if given. */
export function chunkObjects(
  c: CollectionImpl,
  k: number,
  chunk: number,
  limit: number,
  overlay: Map<Id, any> | null,
): unknown[] {
  const items: unknown[] = [];
  const end = Math.min(limit, (k + 1) * chunk);
  for (let id = k * chunk; id < end; id++) {
    const v = overlay === null || overlay.size === 0 ? c.objects.get(id) : asOf(c, overlay, id);
    if (v !== undefined) items.push(v);
  }
  return items;
}

export function makeIndex(
  name: string,
  def: { kind: string; key: (obj: any) => IndexKey | undefined },
): IndexImpl {
  const ix: IndexImpl = { name, key: def.key };
  if (def.kind === 'unique') ix.unique = new KeyMap();
  else if (def.kind === 'hash') ix.hash = new KeyMap();
  else if (def.kind === 'sorted') ix.sorted = new SortedIndex();
  else if (def.kind === 'persistent') ix.persistent = new PersistentSortedIndex();
  else
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `index ${name}: kind must be unique, hash, sorted or persistent`,
    );
  return ix;
}

export function addToIndex(ix: IndexImpl, key: IndexKey, id: Id, obj: unknown): void {
  if (ix.unique) ix.unique.set(key, obj);
  else if (ix.hash) {
    let set = ix.hash.get(key);
    if (!set) ix.hash.set(key, (set = new Set()));
    set.add(id);
  } else if (ix.sorted) ix.sorted.add(key, id);
  else if (ix.persistent) ix.persistent = ix.persistent.add(key, id);
}

export function removeFromIndex(ix: IndexImpl, key: IndexKey, id: Id): void {
  if (ix.unique) {
    if (ix.unique.get(key)?.id === id) ix.unique.delete(key);
  } else if (ix.hash) {
    const set = ix.hash.get(key);
    if (set) {
      set.delete(id);
      if (set.size === 0) ix.hash.delete(key);
    }
  } else if (ix.sorted) ix.sorted.remove(key, id);
  else if (ix.persistent) ix.persistent = ix.persistent.remove(key, id);
}

export function clearIndex(ix: IndexImpl): void {
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
    first: () => {
      const f = index().first();
      return f ? resolve(f[1]) : undefined;
    },
    last: () => {
      const l = index().last();
      return l ? resolve(l[1]) : undefined;
    },
  };
}

export function indexReader(ix: IndexImpl, c: CollectionImpl): unknown {
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
      return Object.freeze(
        sortedReader(
          () => version,
          (id) => asOf(c, overlay, id),
        ),
      );
    },
  });
}

/**
 * Ordered multimap indexes for an in-memory object store.
 *
 * An index holds (key, id) pairs: `key` is an indexed value taken from an object, `id` names the
 * object. Pairs are unique and totally ordered, first by key and then by id, both with
 * {@link compareKeys}. Two implementations share one B+tree layout and one set of read paths:
 *
 * - {@link SortedIndex}: mutable, updated in place.
 * - {@link PersistentSortedIndex}: immutable; every update returns a new version built by path
 *   copying (O(log n) new nodes), and every older version stays valid and unchanged, so a reader
 *   holding a version has a consistent view for as long as it likes, at no cost to writers.
 *
 * All operations are O(log n) (plus the output size for `get` and `range`).
 */

import {
  type Id,
  type IndexEntry,
  type IndexKey,
  type OrderedIndex,
  type RangeOptions,
  type SortedIndexOptions,
} from './keys.js';
import { Node, treeAdd, treeFirst, treeHas, treeLast, treeRemove, type TreeState } from './tree.js';
import { bulkTree } from './bulk.js';
import { RangeIterator, checkFanout, treeCheck, treeGet, type ModCount } from './range.js';

export { compareKeys } from './keys.js';
export type {
  IndexKey,
  Id,
  IndexEntry,
  RangeOptions,
  SortedIndexOptions,
  OrderedIndex,
} from './keys.js';

// ---------------------------------------------------------------------------------------------
// Public classes

/** The read side both index classes share: one B+tree state and the queries over it. */
abstract class TreeIndex implements OrderedIndex {
  protected t: TreeState;
  protected readonly max: number;

  /** `mods` counts changes so iterators over a mutable tree can detect them; null when immutable. */
  protected constructor(
    options: SortedIndexOptions | undefined,
    root: Node,
    protected readonly mods: ModCount | null,
  ) {
    this.max = checkFanout(options);
    this.t = { root, size: 0 };
  }

  get size(): number {
    return this.t.size;
  }

  has(key: IndexKey, id: Id): boolean {
    return treeHas(this.t.root, key, id);
  }

  get(key: IndexKey): Id[] {
    return treeGet(this.t.root, key);
  }

  first(): IndexEntry | undefined {
    return treeFirst(this.t);
  }

  last(): IndexEntry | undefined {
    return treeLast(this.t);
  }

  range(opts?: RangeOptions): IterableIterator<IndexEntry> {
    return new RangeIterator(this.t.root, opts, this.mods);
  }

  [Symbol.iterator](): IterableIterator<IndexEntry> {
    return new RangeIterator(this.t.root, undefined, this.mods);
  }

  /** Verifies the B+tree invariants (ordering, separators, occupancy, balance, size); throws if broken. O(n). */
  checkInvariants(): void {
    treeCheck(this.t, this.max);
  }
}

/**
 * A mutable ordered multimap of (key, id) pairs (a B+tree, fanout 64 by default).
 *
 * Keys are stored by reference: do not mutate an array after adding it as a key. Mutating the
 * index while a `range` iterator over it is unfinished makes that iterator throw on its next step.
 */
export class SortedIndex extends TreeIndex {
  constructor(options?: SortedIndexOptions) {
    super(options, new Node([], [], null), { mods: 0 });
  }

  /** Adds the pair; a no-op when it is already present. */
  add(key: IndexKey, id: Id): void {
    const t = treeAdd(this.t, key, id, true, this.max);
    if (t !== null) {
      this.t = t;
      this.mods!.mods++;
    }
  }

  /** Removes the pair; returns whether it was present. */
  remove(key: IndexKey, id: Id): boolean {
    const t = treeRemove(this.t, key, id, true, this.max >>> 1);
    if (t === null) return false;
    this.t = t;
    this.mods!.mods++;
    return true;
  }

  /**
   * An index holding the pairs (keys[i], ids[i]) (any order; duplicates kept once), built
   * in one pass after a single sort instead of one insert per pair.
   */
  static fromPairs(
    keys: readonly IndexKey[],
    ids: readonly Id[],
    options?: SortedIndexOptions,
  ): SortedIndex {
    const v = new SortedIndex(options);
    v.t = bulkTree(keys, ids, v.max);
    return v;
  }

  /** Removes every pair. */
  clear(): void {
    this.t = { root: new Node([], [], null), size: 0 };
    this.mods!.mods++;
  }
}

const EMPTY_LEAF = new Node([], [], null);

/**
 * An immutable ordered multimap of (key, id) pairs. `add` and `remove` return a new version that
 * shares all untouched nodes with this one; this version never changes. Keys are stored by
 * reference: do not mutate an array after adding it as a key.
 */
export class PersistentSortedIndex extends TreeIndex {
  /** An empty index. */
  constructor(options?: SortedIndexOptions) {
    super(options, EMPTY_LEAF, null);
  }

  /** Builds an index from pairs (duplicates are kept once), without intermediate versions. */
  static from(
    entries: Iterable<readonly [IndexKey, Id]>,
    options?: SortedIndexOptions,
  ): PersistentSortedIndex {
    const keys: IndexKey[] = [];
    const ids: Id[] = [];
    for (const [k, id] of entries) {
      keys.push(k);
      ids.push(id);
    }
    return PersistentSortedIndex.fromPairs(keys, ids, options);
  }

  /** Like {@link SortedIndex.fromPairs}: (keys[i], ids[i]) in any order, built bottom-up. */
  static fromPairs(
    keys: readonly IndexKey[],
    ids: readonly Id[],
    options?: SortedIndexOptions,
  ): PersistentSortedIndex {
    const v = new PersistentSortedIndex(options);
    v.t = bulkTree(keys, ids, v.max);
    return v;
  }

  #derive(t: TreeState): PersistentSortedIndex {
    const v = new PersistentSortedIndex({ fanout: this.max });
    v.t = t;
    return v;
  }

  /** A version with the pair added (this very version when it is already present). */
  add(key: IndexKey, id: Id): PersistentSortedIndex {
    const t = treeAdd(this.t, key, id, false, this.max);
    return t === null ? this : this.#derive(t);
  }

  /** A version without the pair (this very version when it is absent). */
  remove(key: IndexKey, id: Id): PersistentSortedIndex {
    const t = treeRemove(this.t, key, id, false, this.max >>> 1);
    return t === null ? this : this.#derive(t);
  }
}

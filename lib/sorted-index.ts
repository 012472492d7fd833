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

/** An indexable value. Arrays are compound keys, compared element by element. */
export type IndexKey = string | number | boolean | null | bigint | IndexKey[];

/** The id of an object in the store. */
export type Id = string | number;

/** One (key, id) pair of an index. */
export type IndexEntry = [key: IndexKey, id: Id];

/**
 * Options of {@link OrderedIndex.range}. All given bounds apply together (their intersection):
 * `{ gte: 3, prefix: [] }` is empty, for example, because no array lies in the numeric range.
 */
export interface RangeOptions {
  /** Keys greater than or equal to this. */
  gte?: IndexKey;
  /** Keys strictly greater than this. */
  gt?: IndexKey;
  /** Keys less than or equal to this. */
  lte?: IndexKey;
  /** Keys strictly less than this. */
  lt?: IndexKey;
  /**
   * Only keys that are arrays starting with these elements (compared with {@link compareKeys}).
   * The array equal to the prefix itself is included; `prefix: []` selects every array key.
   */
  prefix?: IndexKey[];
  /** Iterate from the largest pair down. */
  reverse?: boolean;
  /** Yield at most this many pairs (a non-negative integer or Infinity). */
  limit?: number;
}

/** Options of the index constructors. */
export interface SortedIndexOptions {
  /**
   * Maximum number of entries per leaf and children per inner node (default 64, at least 4).
   * Small values exist for tests, which want deep trees from few entries.
   */
  fanout?: number;
}

/** The read side shared by {@link SortedIndex} and {@link PersistentSortedIndex}. */
export interface OrderedIndex {
  /** Number of (key, id) pairs. */
  readonly size: number;
  /** Whether the pair is present. */
  has(key: IndexKey, id: Id): boolean;
  /** All ids stored under exactly `key` (keys comparing equal to it), in id order. */
  get(key: IndexKey): Id[];
  /** The smallest pair, or undefined when empty. */
  first(): IndexEntry | undefined;
  /** The largest pair, or undefined when empty. */
  last(): IndexEntry | undefined;
  /** The pairs selected by `opts`, in order (descending with `reverse`). */
  range(opts?: RangeOptions): IterableIterator<IndexEntry>;
  /** Every pair in ascending order; same as `range()`. */
  [Symbol.iterator](): IterableIterator<IndexEntry>;
}

// ---------------------------------------------------------------------------------------------
// Key order

function invalidKey(value: unknown): Error {
  if (typeof value === 'number') return new Error('NaN is not a valid index key');
  let shown: string;
  try {
    shown = typeof value === 'object' ? Object.prototype.toString.call(value) : String(value);
  } catch {
    shown = typeof value;
  }
  return new TypeError(`invalid index key: ${shown} (expected string, number, bigint, boolean, null or an array of those)`);
}

/** Type rank: null 0, boolean 1, number/bigint 2, string 3, array 4. Throws on anything else. */
function rank(v: unknown): number {
  switch (typeof v) {
    case 'number':
      if (v !== v) throw invalidKey(v);
      return 2;
    case 'bigint':
      return 2;
    case 'string':
      return 3;
    case 'boolean':
      return 1;
    case 'object':
      if (v === null) return 0;
      if (Array.isArray(v)) return 4;
  }
  throw invalidKey(v);
}

/**
 * The total order of index keys (and of ids): negative when `a` sorts before `b`, positive when
 * after, 0 when they are the same key.
 *
 * null < false < true < numbers and bigints < strings < arrays.
 * Numbers and bigints are one domain, ordered by mathematical value, so `1` and `1n` are the same
 * key (and -0 and 0 are too). NaN is rejected with an Error, other values with a TypeError.
 * Strings compare by UTF-16 code units (like `<`). Arrays compare lexicographically, element by
 * element, a proper prefix sorting first.
 */
export function compareKeys(a: IndexKey, b: IndexKey): number {
  // Fast paths for the common homogeneous cases.
  if (typeof a === 'number' && typeof b === 'number') {
    if (a < b) return -1;
    if (a > b) return 1;
    if (a === b) return 0;
    throw invalidKey(NaN);
  }
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a === b ? 0 : 1;
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1:
      return a === b ? 0 : a ? 1 : -1;
    case 2: {
      // Relational operators compare number and bigint by exact mathematical value.
      const x = a as number | bigint;
      const y = b as number | bigint;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    default:
      return compareArrays(a as IndexKey[], b as IndexKey[]);
  }
}

function compareArrays(a: IndexKey[], b: IndexKey[]): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const c = compareKeys(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * Where `key` lies relative to the block of arrays starting with `prefix`: negative before it,
 * 0 inside it, positive after it.
 */
function comparePrefix(key: IndexKey, prefix: IndexKey[]): number {
  if (!Array.isArray(key)) return -1; // every non-array sorts before all arrays
  const n = prefix.length;
  for (let i = 0; i < n; i++) {
    if (i >= key.length) return -1; // a proper prefix of `prefix` sorts before it
    const c = compareKeys(key[i]!, prefix[i]!);
    if (c !== 0) return c;
  }
  return 0;
}

/** Throws unless `v` is a valid key (recursively for arrays). */
function checkKey(v: unknown): void {
  if (rank(v) === 4) {
    const arr = v as unknown[];
    for (let i = 0; i < arr.length; i++) checkKey(arr[i]);
  }
}

function checkId(v: unknown): void {
  if (typeof v === 'string') return;
  if (typeof v === 'number' && v === v) return;
  throw new TypeError(`invalid id: ${typeof v === 'number' ? 'NaN' : typeof v} (expected a string or a number)`);
}

// ---------------------------------------------------------------------------------------------
// B+tree nodes
//
// A leaf holds `keys[i]`/`ids[i]`, sorted. An inner node holds `children` and, between them,
// separators `keys[i]`/`ids[i]` (one fewer than children) with
//   max(children[i]) < separator i <= min(children[i + 1]).
// Deletions may leave a separator smaller than the new minimum of its right subtree, which keeps
// the invariant. All leaves are at the same depth. Every node except the root holds at least
// `min = floor(max / 2)` entries or children.
//
// Nodes are mutated in place only when the caller owns them (`mut`): always for SortedIndex, never
// for PersistentSortedIndex, whose updates copy every node they change.

class Node {
  constructor(
    public keys: IndexKey[],
    public ids: Id[],
    public children: Node[] | null,
  ) {}
}

function cloneNode(n: Node): Node {
  return new Node(n.keys.slice(), n.ids.slice(), n.children === null ? null : n.children.slice());
}

function nodeSize(n: Node): number {
  return n.children === null ? n.keys.length : n.children.length;
}

/** First index whose pair is >= (key, id), or with `after`, > (key, id). */
function searchPairs(keys: IndexKey[], ids: Id[], key: IndexKey, id: Id, after: boolean): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    let c = compareKeys(keys[mid]!, key);
    if (c === 0) c = compareKeys(ids[mid]!, id);
    if (c < 0 || (after && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose pair is >= (key, id). */
function lowerBound(keys: IndexKey[], ids: Id[], key: IndexKey, id: Id): number {
  return searchPairs(keys, ids, key, id, false);
}

/** The child of an inner node that holds (key, id): the number of separators <= it. */
function childIndex(keys: IndexKey[], ids: Id[], key: IndexKey, id: Id): number {
  return searchPairs(keys, ids, key, id, true);
}

function isAt(leaf: Node, pos: number, key: IndexKey, id: Id): boolean {
  return pos < leaf.keys.length && compareKeys(leaf.keys[pos]!, key) === 0 && compareKeys(leaf.ids[pos]!, id) === 0;
}

// Split results of the last insert step (single-threaded, so module scratch avoids allocation).
let splitRight: Node | null = null;
let splitKey: IndexKey = null;
let splitId: Id = 0;

/**
 * Inserts (key, id) below `node`. Returns the updated node (`node` itself when `mut`, else a copy),
 * or null when the pair was already present (nothing changed). When the node overflowed, its right
 * half is left in `splitRight` with its separator in `splitKey`/`splitId`.
 */
function insertPair(node: Node, key: IndexKey, id: Id, mut: boolean, max: number): Node | null {
  const ch = node.children;
  if (ch === null) {
    const pos = lowerBound(node.keys, node.ids, key, id);
    if (isAt(node, pos, key, id)) return null;
    const n = mut ? node : cloneNode(node);
    n.keys.splice(pos, 0, key);
    n.ids.splice(pos, 0, id);
    if (n.keys.length > max) {
      const half = n.keys.length >>> 1;
      const right = new Node(n.keys.splice(half), n.ids.splice(half), null);
      splitRight = right;
      splitKey = right.keys[0]!;
      splitId = right.ids[0]!;
    }
    return n;
  }
  const ci = childIndex(node.keys, node.ids, key, id);
  const child = insertPair(ch[ci]!, key, id, mut, max);
  if (child === null) return null;
  const n = mut ? node : cloneNode(node);
  const nch = n.children!;
  nch[ci] = child;
  if (splitRight !== null) {
    const right = splitRight;
    splitRight = null;
    n.keys.splice(ci, 0, splitKey);
    n.ids.splice(ci, 0, splitId);
    nch.splice(ci + 1, 0, right);
    if (nch.length > max) {
      const h = nch.length >>> 1;
      const r = new Node(n.keys.splice(h), n.ids.splice(h), nch.splice(h));
      // The last remaining separator now separates the two halves: promote it.
      splitKey = n.keys.pop()!;
      splitId = n.ids.pop()!;
      splitRight = r;
    }
  }
  return n;
}

/**
 * Removes (key, id) below `node`. Returns the updated node (possibly under-full; the caller
 * rebalances), or null when the pair was absent.
 */
function removePair(node: Node, key: IndexKey, id: Id, mut: boolean, min: number): Node | null {
  const ch = node.children;
  if (ch === null) {
    const pos = lowerBound(node.keys, node.ids, key, id);
    if (!isAt(node, pos, key, id)) return null;
    const n = mut ? node : cloneNode(node);
    n.keys.splice(pos, 1);
    n.ids.splice(pos, 1);
    return n;
  }
  const ci = childIndex(node.keys, node.ids, key, id);
  const child = removePair(ch[ci]!, key, id, mut, min);
  if (child === null) return null;
  const n = mut ? node : cloneNode(node);
  n.children![ci] = child;
  if (nodeSize(child) < min) rebalance(n, ci, mut, min);
  return n;
}

/** Fixes the under-full child `i` of the owned inner node `n` by borrowing from or merging with a sibling. */
function rebalance(n: Node, i: number, mut: boolean, min: number): void {
  const ch = n.children!;
  const c = ch[i]!; // owned: it was just returned by removePair
  const leaf = c.children === null;
  if (i > 0 && nodeSize(ch[i - 1]!) > min) {
    const left = mut ? ch[i - 1]! : cloneNode(ch[i - 1]!);
    ch[i - 1] = left;
    if (leaf) {
      c.keys.unshift(left.keys.pop()!);
      c.ids.unshift(left.ids.pop()!);
      n.keys[i - 1] = c.keys[0]!;
      n.ids[i - 1] = c.ids[0]!;
    } else {
      c.children!.unshift(left.children!.pop()!);
      c.keys.unshift(n.keys[i - 1]!);
      c.ids.unshift(n.ids[i - 1]!);
      n.keys[i - 1] = left.keys.pop()!;
      n.ids[i - 1] = left.ids.pop()!;
    }
    return;
  }
  if (i < ch.length - 1 && nodeSize(ch[i + 1]!) > min) {
    const right = mut ? ch[i + 1]! : cloneNode(ch[i + 1]!);
    ch[i + 1] = right;
    if (leaf) {
      c.keys.push(right.keys.shift()!);
      c.ids.push(right.ids.shift()!);
      n.keys[i] = right.keys[0]!;
      n.ids[i] = right.ids[0]!;
    } else {
      c.children!.push(right.children!.shift()!);
      c.keys.push(n.keys[i]!);
      c.ids.push(n.ids[i]!);
      n.keys[i] = right.keys.shift()!;
      n.ids[i] = right.ids.shift()!;
    }
    return;
  }
  // Neither sibling can spare one: merge with one of them (the result holds < max).
  let l: number; // index of the left node of the merged pair
  let left: Node;
  let right: Node;
  if (i > 0) {
    l = i - 1;
    left = mut ? ch[l]! : cloneNode(ch[l]!);
    right = c;
  } else {
    l = i;
    left = c;
    right = ch[i + 1]!;
  }
  if (!leaf) {
    left.keys.push(n.keys[l]!);
    left.ids.push(n.ids[l]!);
    for (const x of right.children!) left.children!.push(x);
  }
  for (const x of right.keys) left.keys.push(x);
  for (const x of right.ids) left.ids.push(x);
  ch[l] = left;
  ch.splice(l + 1, 1);
  n.keys.splice(l, 1);
  n.ids.splice(l, 1);
}

/** Tree root plus entry count; immutable so versions can share it. */
interface TreeState {
  root: Node;
  size: number;
}

function treeAdd(t: TreeState, key: IndexKey, id: Id, mut: boolean, max: number): TreeState | null {
  checkKey(key);
  checkId(id);
  splitRight = null;
  let root = insertPair(t.root, key, id, mut, max);
  if (root === null) return null;
  if (splitRight !== null) {
    root = new Node([splitKey], [splitId], [root, splitRight]);
    splitRight = null;
    splitKey = null;
  }
  return { root, size: t.size + 1 };
}

function treeRemove(t: TreeState, key: IndexKey, id: Id, mut: boolean, min: number): TreeState | null {
  checkKey(key);
  checkId(id);
  let root = removePair(t.root, key, id, mut, min);
  if (root === null) return null;
  while (root.children !== null && root.children.length === 1) root = root.children[0]!;
  return { root, size: t.size - 1 };
}

function treeHas(root: Node, key: IndexKey, id: Id): boolean {
  checkKey(key);
  checkId(id);
  let n = root;
  while (n.children !== null) n = n.children[childIndex(n.keys, n.ids, key, id)]!;
  return isAt(n, lowerBound(n.keys, n.ids, key, id), key, id);
}

function treeFirst(t: TreeState): IndexEntry | undefined {
  if (t.size === 0) return undefined;
  let n = t.root;
  while (n.children !== null) n = n.children[0]!;
  return [n.keys[0]!, n.ids[0]!];
}

function treeLast(t: TreeState): IndexEntry | undefined {
  if (t.size === 0) return undefined;
  let n = t.root;
  while (n.children !== null) n = n.children[n.children.length - 1]!;
  const i = n.keys.length - 1;
  return [n.keys[i]!, n.ids[i]!];
}

// ---------------------------------------------------------------------------------------------
// Bulk building: sort the pairs once and fill the tree bottom-up (instead of n inserts)

/**
 * The positions 0..n-1 of `keys`/`ids` in pair order, and whether the ids are distinct (then
 * no pair repeats). Throws on an invalid key or id.
 */
function sortedOrder(keys: readonly IndexKey[], ids: readonly Id[]): { order: Uint32Array; distinct: boolean } {
  const n = keys.length;
  let numbers = true;       // every key is a number
  let idsAscending = true;  // numeric ids, strictly ascending (a store's objects come in id order)
  let ascending = true;     // numeric keys never decrease
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    const id = ids[i];
    checkId(id);
    if (typeof k === 'number') {
      if (k !== k) throw invalidKey(k);
      if (i > 0 && k < (keys[i - 1] as number)) ascending = false;
    } else {
      checkKey(k);
      numbers = false;
    }
    // Every id numeric (the first one too: `1 > '0'` would compare a string as a number).
    if (typeof id !== 'number' || (i > 0 && id <= (ids[i - 1] as number))) idsAscending = false;
  }
  const order = new Uint32Array(n);
  if (numbers && idsAscending) {
    if (ascending) for (let i = 0; i < n; i++) order[i] = i;
    else numericOrder(keys as readonly number[], order);
    return { order, distinct: true };
  }
  for (let i = 0; i < n; i++) order[i] = i;
  // Stable, so equal pairs keep their input order (the first of duplicates is kept).
  order.sort((a, b) => compareKeys(keys[a]!, keys[b]!) || compareKeys(ids[a]!, ids[b]!));
  return { order, distinct: false };
}

/**
 * Fills `order` with the positions of numeric keys in key order, equal keys in position
 * order: a counting sort over the distinct keys (typed arrays; no comparator calls).
 */
function numericOrder(keys: readonly number[], order: Uint32Array): void {
  const n = keys.length;
  const where = new Uint32Array(n);  // each position's distinct key (its slot)
  let values: Float64Array;           // the distinct keys, by slot
  let d = 0;
  // Few distinct keys (ages, statuses, days): slots from a Map.
  const slots = new Map<number, number>();
  let i = 0;
  for (; i < n; i++) {
    const v = keys[i]! + 0;  // -0 and 0 are one key
    let sl = slots.get(v);
    if (sl === undefined) {
      if (d === 4096) break;
      slots.set(v, (sl = d++));
    }
    where[i] = sl;
  }
  if (i === n) {
    values = new Float64Array(d);
    for (const [v, sl] of slots) values[sl] = v;
  } else {
    // Many: the sorted distinct keys, each position's found by binary search.
    const sorted = new Float64Array(n);
    for (let j = 0; j < n; j++) sorted[j] = keys[j]! + 0;
    sorted.sort();
    d = 0;
    for (let j = 0; j < n; j++) if (j === 0 || sorted[j] !== sorted[d - 1]) sorted[d++] = sorted[j]!;
    values = sorted.subarray(0, d);
    for (let j = 0; j < n; j++) {
      const v = keys[j]! + 0;
      let lo = 0;
      let hi = d - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (values[mid]! < v) lo = mid + 1;
        else hi = mid;
      }
      where[j] = lo;
    }
  }
  // Slots in key order, then where each slot's run starts.
  const bySlot = new Uint32Array(d);
  for (let j = 0; j < d; j++) bySlot[j] = j;
  bySlot.sort((a, b) => values[a]! - values[b]!);
  const start = new Uint32Array(d);
  const count = new Uint32Array(d);
  for (let j = 0; j < n; j++) count[where[j]!]!++;
  for (let j = 0, at = 0; j < d; j++) {
    const sl = bySlot[j]!;
    start[sl] = at;
    at += count[sl]!;
  }
  for (let j = 0; j < n; j++) order[start[where[j]!]!++] = j;
}

/**
 * A tree holding the given pairs (any order; duplicate pairs kept once), built bottom-up:
 * leaves filled evenly to at most `max` entries, then each inner level over the one below.
 */
function bulkTree(keys: readonly IndexKey[], ids: readonly Id[], max: number): TreeState {
  if (keys.length !== ids.length) throw new RangeError(`keys and ids differ in length (${keys.length} and ${ids.length})`);
  let { order, distinct } = sortedOrder(keys, ids);
  if (!distinct) {
    // Drop repeated pairs (equal neighbours after the sort), keeping the first.
    let m = 0;
    for (let j = 0; j < order.length; j++) {
      const i = order[j]!;
      if (m > 0) {
        const p = order[m - 1]!;
        if (compareKeys(keys[p]!, keys[i]!) === 0 && compareKeys(ids[p]!, ids[i]!) === 0) continue;
      }
      order[m++] = i;
    }
    order = order.subarray(0, m);
  }
  const size = order.length;
  const leaf = (from: number, to: number): Node => {
    const k: IndexKey[] = [];
    const v: Id[] = [];
    for (let j = from; j < to; j++) {
      k.push(keys[order[j]!]!);
      v.push(ids[order[j]!]!);
    }
    return new Node(k, v, null);
  };
  if (size <= max) return { root: leaf(0, size), size };
  // Leaves: ceil(size / max) of them, sizes differing by at most one, so each holds >= max / 2.
  let level: Node[] = [];
  let lows: number[] = [];  // the position (in `order`) of the smallest pair under each node of `level`
  let count = Math.ceil(size / max);
  for (let j = 0, at = 0; j < count; j++) {
    const end = Math.floor(((j + 1) * size) / count);
    level.push(leaf(at, end));
    lows.push(at);
    at = end;
  }
  while (level.length > 1) {
    const total = level.length;
    count = Math.ceil(total / max);
    const up: Node[] = [];
    const upLows: number[] = [];
    for (let j = 0, at = 0; j < count; j++) {
      const end = Math.floor(((j + 1) * total) / count);
      const sepKeys: IndexKey[] = [];
      const sepIds: Id[] = [];
      // Separator i is the smallest pair of child i + 1.
      for (let c = at + 1; c < end; c++) {
        sepKeys.push(keys[order[lows[c]!]!]!);
        sepIds.push(ids[order[lows[c]!]!]!);
      }
      up.push(new Node(sepKeys, sepIds, level.slice(at, end)));
      upLows.push(lows[at]!);
      at = end;
    }
    level = up;
    lows = upLows;
  }
  return { root: level[0]!, size };
}

// ---------------------------------------------------------------------------------------------
// Range bounds and cursors

/** One bound on keys: a key (or, with `prefix`, the block of arrays starting with it). */
interface Bound {
  key: IndexKey;
  strict: boolean;
  prefix: boolean;
}

function boundCompare(key: IndexKey, b: Bound): number {
  return b.prefix ? comparePrefix(key, b.key as IndexKey[]) : compareKeys(key, b.key);
}

/** Whether `key` is below some lower bound (monotone: true, then false, along the order). */
function belowLower(key: IndexKey, lower: Bound[]): boolean {
  for (let i = 0; i < lower.length; i++) {
    const b = lower[i]!;
    const c = boundCompare(key, b);
    if (c < 0 || (c === 0 && b.strict)) return true;
  }
  return false;
}

/** Whether `key` is above some upper bound (monotone: false, then true, along the order). */
function aboveUpper(key: IndexKey, upper: Bound[]): boolean {
  for (let i = 0; i < upper.length; i++) {
    const b = upper[i]!;
    const c = boundCompare(key, b);
    if (c > 0 || (c === 0 && b.strict)) return true;
  }
  return false;
}

/** First index in `keys` not below the lower bounds. */
function firstNotBelow(keys: IndexKey[], lower: Bound[]): number {
  let lo = 0;
  let hi = keys.length;
  if (lower.length === 0) return 0;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (belowLower(keys[mid]!, lower)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index in `keys` whose key is >= `key`. */
function firstKeyNotBelow(keys: IndexKey[], key: IndexKey): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index in `keys` above the upper bounds. */
function firstAbove(keys: IndexKey[], upper: Bound[]): number {
  let lo = 0;
  let hi = keys.length;
  if (upper.length === 0) return hi;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (aboveUpper(keys[mid]!, upper)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * A position in a tree: the path of nodes from the root and the index taken at each level
 * (at the leaf level, the entry). Stepping is amortized O(1) and allocates nothing.
 */
class Cursor {
  readonly nodes: Node[] = [];
  readonly idx: number[] = [];
  leaf = 0;
  /** False once the cursor ran off either end. */
  ok = false;

  /** Walks from the root to a leaf, taking child `pick(keys)` at each level; records the path. */
  #descend(root: Node, pick: (keys: IndexKey[]) => number): Node {
    let n = root;
    let d = 0;
    while (n.children !== null) {
      const j = pick(n.keys);
      this.nodes[d] = n;
      this.idx[d] = j;
      n = n.children[j]!;
      d++;
    }
    this.leaf = d;
    this.nodes[d] = n;
    return n;
  }

  /** Positions on the first pair not below `lower`. */
  seekFirst(root: Node, lower: Bound[]): boolean {
    return this.#seekFirstBy(root, (keys) => firstNotBelow(keys, lower));
  }

  /** Positions on the first pair whose key is >= `key` (`seekFirst` with one `gte` bound, faster). */
  seekKey(root: Node, key: IndexKey): boolean {
    return this.#seekFirstBy(root, (keys) => firstKeyNotBelow(keys, key));
  }

  /** Positions on the first pair at or after where `pick` (a lower-bound search) leads. */
  #seekFirstBy(root: Node, pick: (keys: IndexKey[]) => number): boolean {
    const n = this.#descend(root, pick);
    const d = this.leaf;
    const i = pick(n.keys);
    if (i < n.keys.length) {
      this.idx[d] = i;
      return (this.ok = true);
    }
    if (n.keys.length === 0) return (this.ok = false); // empty tree
    this.idx[d] = n.keys.length - 1;
    this.ok = true;
    return this.next();
  }

  /** Positions on the last pair not above `upper`. */
  seekLast(root: Node, upper: Bound[]): boolean {
    const n = this.#descend(root, (keys) => firstAbove(keys, upper));
    const d = this.leaf;
    const i = firstAbove(n.keys, upper) - 1;
    if (i >= 0) {
      this.idx[d] = i;
      return (this.ok = true);
    }
    if (n.keys.length === 0) return (this.ok = false);
    this.idx[d] = 0;
    this.ok = true;
    return this.prev();
  }

  key(): IndexKey {
    return this.nodes[this.leaf]!.keys[this.idx[this.leaf]!]!;
  }

  id(): Id {
    return this.nodes[this.leaf]!.ids[this.idx[this.leaf]!]!;
  }

  next(): boolean {
    const nodes = this.nodes;
    const idx = this.idx;
    const d = this.leaf;
    if (++idx[d]! < nodes[d]!.keys.length) return true;
    let l = d - 1;
    while (l >= 0 && idx[l]! + 1 >= nodes[l]!.children!.length) l--;
    if (l < 0) return (this.ok = false);
    idx[l]!++;
    for (; l < d; l++) {
      nodes[l + 1] = nodes[l]!.children![idx[l]!]!;
      idx[l + 1] = 0;
    }
    return true;
  }

  prev(): boolean {
    const nodes = this.nodes;
    const idx = this.idx;
    const d = this.leaf;
    if (--idx[d]! >= 0) return true;
    let l = d - 1;
    while (l >= 0 && idx[l]! === 0) l--;
    if (l < 0) return (this.ok = false);
    idx[l]!--;
    for (; l < d; l++) {
      const c = nodes[l]!.children![idx[l]!]!;
      nodes[l + 1] = c;
      idx[l + 1] = nodeSize(c) - 1;
    }
    return true;
  }

  release(): void {
    this.ok = false;
    this.nodes.length = 0;
    this.idx.length = 0;
  }
}

/** Counts mutations of a SortedIndex so that live iterators can notice them. */
interface ModCount {
  mods: number;
}

const DONE: IteratorResult<IndexEntry> = Object.freeze({ done: true, value: undefined }) as IteratorResult<IndexEntry>;

class RangeIterator implements IterableIterator<IndexEntry> {
  private readonly cursor = new Cursor();
  private readonly lower: Bound[];
  private readonly upper: Bound[];
  private readonly reverse: boolean;
  private remaining: number;
  private readonly owner: ModCount | null;
  private readonly mods: number;

  constructor(root: Node, opts: RangeOptions | undefined, owner: ModCount | null) {
    const lower: Bound[] = [];
    const upper: Bound[] = [];
    let reverse = false;
    let limit = Infinity;
    if (opts !== undefined && opts !== null) {
      if (opts.gte !== undefined) lower.push(makeBound(opts.gte, false, false));
      if (opts.gt !== undefined) lower.push(makeBound(opts.gt, true, false));
      if (opts.lte !== undefined) upper.push(makeBound(opts.lte, false, false));
      if (opts.lt !== undefined) upper.push(makeBound(opts.lt, true, false));
      if (opts.prefix !== undefined) {
        if (!Array.isArray(opts.prefix)) throw new TypeError('range: prefix must be an array');
        const b = makeBound(opts.prefix, false, true);
        lower.push(b);
        upper.push(b);
      }
      reverse = opts.reverse === true;
      if (opts.limit !== undefined) {
        limit = opts.limit;
        if (typeof limit !== 'number' || !(limit >= 0) || (limit !== Infinity && !Number.isInteger(limit))) {
          throw new RangeError(`range: limit must be a non-negative integer, got ${String(limit)}`);
        }
      }
    }
    this.lower = lower;
    this.upper = upper;
    this.reverse = reverse;
    this.remaining = limit;
    this.owner = owner;
    this.mods = owner === null ? 0 : owner.mods;
    if (limit === 0) return;
    const ok = reverse ? this.cursor.seekLast(root, upper) : this.cursor.seekFirst(root, lower);
    if (!ok) this.cursor.release();
  }

  next(): IteratorResult<IndexEntry> {
    const cur = this.cursor;
    if (!cur.ok) return DONE;
    if (this.owner !== null && this.owner.mods !== this.mods) {
      cur.release();
      throw new Error('SortedIndex was modified during range iteration');
    }
    const key = cur.key();
    if (this.reverse ? belowLower(key, this.lower) : aboveUpper(key, this.upper)) {
      cur.release();
      return DONE;
    }
    const id = cur.id();
    if (--this.remaining <= 0 || !(this.reverse ? cur.prev() : cur.next())) cur.release();
    return { done: false, value: [key, id] };
  }

  return(): IteratorResult<IndexEntry> {
    this.cursor.release();
    return DONE;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

function makeBound(key: IndexKey, strict: boolean, prefix: boolean): Bound {
  checkKey(key);
  return { key, strict, prefix };
}

function treeGet(root: Node, key: IndexKey): Id[] {
  checkKey(key);
  const out: Id[] = [];
  const cur = new Cursor();
  if (!cur.seekKey(root, key)) return out;
  do {
    if (compareKeys(cur.key(), key) !== 0) break;
    out.push(cur.id());
  } while (cur.next());
  return out;
}

/** Checks every structural invariant; throws an Error describing the first violation. */
function treeCheck(t: TreeState, max: number): void {
  const min = max >>> 1;
  let leafDepth = -1;
  let count = 0;
  let prevKey: IndexKey = null;
  let prevId: Id = 0;
  let havePrev = false;
  const fail = (msg: string): never => {
    throw new Error(`sorted index corrupt: ${msg}`);
  };
  const walk = (n: Node, depth: number, lo: IndexEntry | null, hi: IndexEntry | null, isRoot: boolean): void => {
    if (n.keys.length !== n.ids.length) fail('keys/ids length mismatch');
    const size = nodeSize(n);
    if (size > max) fail(`node of ${size} > ${max}`);
    if (!isRoot && size < min) fail(`node of ${size} < ${min}`);
    if (n.children === null) {
      if (leafDepth === -1) leafDepth = depth;
      else if (leafDepth !== depth) fail('leaves at different depths');
      for (let i = 0; i < n.keys.length; i++) {
        const k = n.keys[i]!;
        const id = n.ids[i]!;
        if (havePrev && (compareKeys(prevKey, k) || compareKeys(prevId, id)) >= 0) fail('pairs out of order');
        if (lo !== null && (compareKeys(k, lo[0]) || compareKeys(id, lo[1])) < 0) fail('pair below its separator');
        if (hi !== null && (compareKeys(k, hi[0]) || compareKeys(id, hi[1])) >= 0) fail('pair not below the next separator');
        prevKey = k;
        prevId = id;
        havePrev = true;
        count++;
      }
      return;
    }
    if (n.children.length < 2 && isRoot) fail('inner root with one child');
    if (n.keys.length !== n.children.length - 1) fail('separator count');
    for (let i = 0; i < n.children.length; i++) {
      const clo: IndexEntry | null = i === 0 ? lo : [n.keys[i - 1]!, n.ids[i - 1]!];
      const chi: IndexEntry | null = i === n.children.length - 1 ? hi : [n.keys[i]!, n.ids[i]!];
      walk(n.children[i]!, depth + 1, clo, chi, false);
    }
  };
  walk(t.root, 0, null, null, true);
  if (count !== t.size) fail(`size ${t.size} but ${count} pairs`);
}

function checkFanout(opts: SortedIndexOptions | undefined): number {
  const f = opts?.fanout ?? 64;
  if (!Number.isInteger(f) || f < 4) throw new RangeError(`fanout must be an integer >= 4, got ${String(f)}`);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Public classes

/** The read side both index classes share: one B+tree state and the queries over it. */
abstract class TreeIndex implements OrderedIndex {
  protected t: TreeState;
  protected readonly max: number;

  /** `mods` counts changes so iterators over a mutable tree can detect them; null when immutable. */
  protected constructor(options: SortedIndexOptions | undefined, root: Node, protected readonly mods: ModCount | null) {
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
  static fromPairs(keys: readonly IndexKey[], ids: readonly Id[], options?: SortedIndexOptions): SortedIndex {
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
  static from(entries: Iterable<readonly [IndexKey, Id]>, options?: SortedIndexOptions): PersistentSortedIndex {
    const keys: IndexKey[] = [];
    const ids: Id[] = [];
    for (const [k, id] of entries) {
      keys.push(k);
      ids.push(id);
    }
    return PersistentSortedIndex.fromPairs(keys, ids, options);
  }

  /** Like {@link SortedIndex.fromPairs}: (keys[i], ids[i]) in any order, built bottom-up. */
  static fromPairs(keys: readonly IndexKey[], ids: readonly Id[], options?: SortedIndexOptions): PersistentSortedIndex {
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

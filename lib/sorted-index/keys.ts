// Index keys and ids: their types, their total order (compareKeys) and validity checks.

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

export function invalidKey(value: unknown): Error {
  if (typeof value === 'number') return new Error('NaN is not a valid index key');
  let shown: string;
  try {
    shown = typeof value === 'object' ? Object.prototype.toString.call(value) : String(value);
  } catch {
    shown = typeof value;
  }
  return new TypeError(
    `invalid index key: ${shown} (expected string, number, bigint, boolean, null or an array of those)`,
  );
}

/** Type rank: null 0, boolean 1, number/bigint 2, string 3, array 4. Throws on anything else. */
export function rank(v: unknown): number {
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

export function compareArrays(a: IndexKey[], b: IndexKey[]): number {
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
export function comparePrefix(key: IndexKey, prefix: IndexKey[]): number {
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
export function checkKey(v: unknown): void {
  if (rank(v) === 4) {
    const arr = v as unknown[];
    for (let i = 0; i < arr.length; i++) checkKey(arr[i]);
  }
}

export function checkId(v: unknown): void {
  if (typeof v === 'string') return;
  if (typeof v === 'number' && v === v) return;
  throw new TypeError(
    `invalid id: ${typeof v === 'number' ? 'NaN' : typeof v} (expected a string or a number)`,
  );
}

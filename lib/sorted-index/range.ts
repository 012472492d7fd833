// Range queries: bounds, cursors and the iterators readers get.
import {
  checkKey,
  compareKeys,
  comparePrefix,
  type Id,
  type IndexEntry,
  type IndexKey,
  type RangeOptions,
  type SortedIndexOptions,
} from './keys.js';
import { Node, nodeSize, type TreeState } from './tree.js';

// ---------------------------------------------------------------------------------------------
// Range bounds and cursors

/** One bound on keys: a key (or, with `prefix`, the block of arrays starting with it). */
export interface Bound {
  key: IndexKey;
  strict: boolean;
  prefix: boolean;
}

export function boundCompare(key: IndexKey, b: Bound): number {
  return b.prefix ? comparePrefix(key, b.key as IndexKey[]) : compareKeys(key, b.key);
}

/** Whether `key` is below some lower bound (monotone: true, then false, along the order). */
export function belowLower(key: IndexKey, lower: Bound[]): boolean {
  for (let i = 0; i < lower.length; i++) {
    const b = lower[i]!;
    const c = boundCompare(key, b);
    if (c < 0 || (c === 0 && b.strict)) return true;
  }
  return false;
}

/** Whether `key` is above some upper bound (monotone: false, then true, along the order). */
export function aboveUpper(key: IndexKey, upper: Bound[]): boolean {
  for (let i = 0; i < upper.length; i++) {
    const b = upper[i]!;
    const c = boundCompare(key, b);
    if (c > 0 || (c === 0 && b.strict)) return true;
  }
  return false;
}

/** First index in `keys` not below the lower bounds. */
export function firstNotBelow(keys: IndexKey[], lower: Bound[]): number {
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
export function firstKeyNotBelow(keys: IndexKey[], key: IndexKey): number {
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
export function firstAbove(keys: IndexKey[], upper: Bound[]): number {
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
export class Cursor {
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
export interface ModCount {
  mods: number;
}

export const DONE: IteratorResult<IndexEntry> = Object.freeze({
  done: true,
  value: undefined,
}) as IteratorResult<IndexEntry>;

export class RangeIterator implements IterableIterator<IndexEntry> {
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
        if (
          typeof limit !== 'number' ||
          !(limit >= 0) ||
          (limit !== Infinity && !Number.isInteger(limit))
        ) {
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

export function makeBound(key: IndexKey, strict: boolean, prefix: boolean): Bound {
  checkKey(key);
  return { key, strict, prefix };
}

export function treeGet(root: Node, key: IndexKey): Id[] {
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
export function treeCheck(t: TreeState, max: number): void {
  const min = max >>> 1;
  let leafDepth = -1;
  let count = 0;
  let prevKey: IndexKey = null;
  let prevId: Id = 0;
  let havePrev = false;
  const fail = (msg: string): never => {
    throw new Error(`sorted index corrupt: ${msg}`);
  };
  const walk = (
    n: Node,
    depth: number,
    lo: IndexEntry | null,
    hi: IndexEntry | null,
    isRoot: boolean,
  ): void => {
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
        if (havePrev && (compareKeys(prevKey, k) || compareKeys(prevId, id)) >= 0)
          fail('pairs out of order');
        if (lo !== null && (compareKeys(k, lo[0]) || compareKeys(id, lo[1])) < 0)
          fail('pair below its separator');
        if (hi !== null && (compareKeys(k, hi[0]) || compareKeys(id, hi[1])) >= 0)
          fail('pair not below the next separator');
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

export function checkFanout(opts: SortedIndexOptions | undefined): number {
  const f = opts?.fanout ?? 64;
  if (!Number.isInteger(f) || f < 4)
    throw new RangeError(`fanout must be an integer >= 4, got ${String(f)}`);
  return f;
}

// Building a tree from many pairs at once (restore): sort them once, fill the tree bottom-up.
import { checkId, checkKey, compareKeys, invalidKey, type Id, type IndexKey } from './keys.js';
import { Node, type TreeState } from './tree.js';

// ---------------------------------------------------------------------------------------------
// Bulk building: sort the pairs once and fill the tree bottom-up (instead of n inserts)

/**
 * The positions 0..n-1 of `keys`/`ids` in pair order, and whether the ids are distinct (then
 * no pair repeats). Throws on an invalid key or id.
 */
export function sortedOrder(
  keys: readonly IndexKey[],
  ids: readonly Id[],
): { order: Uint32Array; distinct: boolean } {
  const n = keys.length;
  let numbers = true; // every key is a number
  let idsAscending = true; // numeric ids, strictly ascending (a store's objects come in id order)
  let ascending = true; // numeric keys never decrease
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
export function numericOrder(keys: readonly number[], order: Uint32Array): void {
  const n = keys.length;
  const where = new Uint32Array(n); // each position's distinct key (its slot)
  let values: Float64Array; // the distinct keys, by slot
  let d = 0;
  // Few distinct keys (ages, statuses, days): slots from a Map.
  const slots = new Map<number, number>();
  let i = 0;
  for (; i < n; i++) {
    const v = keys[i]! + 0; // -0 and 0 are one key
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
    for (let j = 0; j < n; j++)
      if (j === 0 || sorted[j] !== sorted[d - 1]) sorted[d++] = sorted[j]!;
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
export function bulkTree(keys: readonly IndexKey[], ids: readonly Id[], max: number): TreeState {
  if (keys.length !== ids.length)
    throw new RangeError(`keys and ids differ in length (${keys.length} and ${ids.length})`);
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
  let lows: number[] = []; // the position (in `order`) of the smallest pair under each node of `level`
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

// The B+tree both ordered indexes share: nodes, and adding, removing and finding pairs.
import { checkId, checkKey, compareKeys, type Id, type IndexEntry, type IndexKey } from './keys.js';

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

export class Node {
  constructor(
    public keys: IndexKey[],
    public ids: Id[],
    public children: Node[] | null,
  ) {}
}

export function cloneNode(n: Node): Node {
  return new Node(n.keys.slice(), n.ids.slice(), n.children === null ? null : n.children.slice());
}

export function nodeSize(n: Node): number {
  return n.children === null ? n.keys.length : n.children.length;
}

/** First index whose pair is >= (key, id), or with `after`, > (key, id). */
export function searchPairs(
  keys: IndexKey[],
  ids: Id[],
  key: IndexKey,
  id: Id,
  after: boolean,
): number {
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
export function lowerBound(keys: IndexKey[], ids: Id[], key: IndexKey, id: Id): number {
  return searchPairs(keys, ids, key, id, false);
}

/** The child of an inner node that holds (key, id): the number of separators <= it. */
export function childIndex(keys: IndexKey[], ids: Id[], key: IndexKey, id: Id): number {
  return searchPairs(keys, ids, key, id, true);
}

export function isAt(leaf: Node, pos: number, key: IndexKey, id: Id): boolean {
  return (
    pos < leaf.keys.length &&
    compareKeys(leaf.keys[pos]!, key) === 0 &&
    compareKeys(leaf.ids[pos]!, id) === 0
  );
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
export function insertPair(
  node: Node,
  key: IndexKey,
  id: Id,
  mut: boolean,
  max: number,
): Node | null {
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
export function removePair(
  node: Node,
  key: IndexKey,
  id: Id,
  mut: boolean,
  min: number,
): Node | null {
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
export function rebalance(n: Node, i: number, mut: boolean, min: number): void {
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
export interface TreeState {
  root: Node;
  size: number;
}

export function treeAdd(
  t: TreeState,
  key: IndexKey,
  id: Id,
  mut: boolean,
  max: number,
): TreeState | null {
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

export function treeRemove(
  t: TreeState,
  key: IndexKey,
  id: Id,
  mut: boolean,
  min: number,
): TreeState | null {
  checkKey(key);
  checkId(id);
  let root = removePair(t.root, key, id, mut, min);
  if (root === null) return null;
  while (root.children !== null && root.children.length === 1) root = root.children[0]!;
  return { root, size: t.size - 1 };
}

export function treeHas(root: Node, key: IndexKey, id: Id): boolean {
  checkKey(key);
  checkId(id);
  let n = root;
  while (n.children !== null) n = n.children[childIndex(n.keys, n.ids, key, id)]!;
  return isAt(n, lowerBound(n.keys, n.ids, key, id), key, id);
}

export function treeFirst(t: TreeState): IndexEntry | undefined {
  if (t.size === 0) return undefined;
  let n = t.root;
  while (n.children !== null) n = n.children[0]!;
  return [n.keys[0]!, n.ids[0]!];
}

export function treeLast(t: TreeState): IndexEntry | undefined {
  if (t.size === 0) return undefined;
  let n = t.root;
  while (n.children !== null) n = n.children[n.children.length - 1]!;
  const i = n.keys.length - 1;
  return [n.keys[i]!, n.ids[i]!];
}

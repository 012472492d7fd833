// The unique and hash indexes' maps from index keys: strings in a StringTable, other
// primitives in a Map, compound (array) keys by an encoding.
import { compareKeys, type IndexKey } from '../sorted-index/index.js';

/** A map from index keys: primitives as themselves, compound (array) keys by an encoding. */
export class KeyMap<V> {
  #str = new StringTable<V>();
  #prim = new Map<unknown, V>();
  #comp = new Map<string, V>();
  static encode(key: IndexKey[]): string {
    return JSON.stringify(key, (_k, v: unknown) =>
      typeof v === 'bigint' ? { $bigint: v.toString() } : v,
    );
  }
  get(key: IndexKey): V | undefined {
    return typeof key === 'string'
      ? this.#str.get(key)
      : Array.isArray(key)
        ? this.#comp.get(KeyMap.encode(key))
        : this.#prim.get(key);
  }
  has(key: IndexKey): boolean {
    return typeof key === 'string'
      ? this.#str.has(key)
      : Array.isArray(key)
        ? this.#comp.has(KeyMap.encode(key))
        : this.#prim.has(key);
  }
  set(key: IndexKey, value: V): void {
    if (typeof key === 'string') this.#str.set(key, value);
    else if (Array.isArray(key)) this.#comp.set(KeyMap.encode(key), value);
    else this.#prim.set(key, value);
  }
  delete(key: IndexKey): void {
    if (typeof key === 'string') this.#str.delete(key);
    else if (Array.isArray(key)) this.#comp.delete(KeyMap.encode(key));
    else this.#prim.delete(key);
  }
  /** Adds string keys in bulk (see StringTable.load); one at a time when the table is not empty or a key repeats. */
  loadStrings(hashes: Int32Array, keys: string[], values: V[]): void {
    if (this.#str.size === 0 && this.#str.load(hashes, keys, values)) return;
    for (let i = 0; i < keys.length; i++) this.#str.set(keys[i]!, values[i]!);
  }
  clear(): void {
    this.#str.clear();
    this.#prim.clear();
    this.#comp.clear();
  }
}

/**
 * A hash table of string keys for the unique and hash indexes: open addressing with linear
 * probing over a typed array of [hash, entry] pairs (at most 3/4 full), the entries (key,
 * value) appended to one array in insertion order. Against a Map it keeps each key's hash
 * in the probe table, so inserting a million keys compares hashes there instead of reading
 * each colliding key string (a cache miss each), and growing moves stored hashes instead of
 * reading every key again. Appending entries in order (rather than storing them at their
 * hashed slot) keeps the GC's old-to-young slots together, as a Map's are. Lookups cost
 * about what a Map's do.
 */
export class StringTable<V> {
  #slots = new Int32Array(32); // slot i: [2i] the hash (0: empty; hash() is never 0), [2i + 1] the entry
  #mask = 15;
  #kv: unknown[] = []; // entry e: [2e] its key, [2e + 1] its value

  get size(): number {
    return this.#kv.length >> 1;
  }

  /** FNV-1a over the UTF-16 code units, then a final avalanche; never 0. */
  static hash(s: string): number {
    let h = 0x811c9dc5 | 0;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h === 0 ? 1 : h;
  }

  /** The slot holding `key` (hashed `h`), or -1 - the empty slot where it would go. */
  #find(key: string, h: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const x = slots[i << 1]!;
      if (x === 0) return -1 - i;
      if (x === h && this.#kv[slots[(i << 1) + 1]! << 1] === key) return i;
    }
  }

  get(key: string): V | undefined {
    const i = this.#find(key, StringTable.hash(key));
    return i < 0 ? undefined : (this.#kv[(this.#slots[(i << 1) + 1]! << 1) + 1] as V);
  }

  has(key: string): boolean {
    return this.#find(key, StringTable.hash(key)) >= 0;
  }

  set(key: string, value: V): void {
    const h = StringTable.hash(key);
    let i = this.#find(key, h);
    if (i >= 0) {
      this.#kv[(this.#slots[(i << 1) + 1]! << 1) + 1] = value;
      return;
    }
    const e = this.#kv.length >> 1;
    if ((e + 1) * 4 > (this.#mask + 1) * 3) {
      this.#rehash((this.#mask + 1) * 2);
      i = this.#find(key, h);
    }
    i = -1 - i;
    this.#slots[i << 1] = h;
    this.#slots[(i << 1) + 1] = e;
    this.#kv.push(key, value);
  }

  delete(key: string): boolean {
    let i = this.#find(key, StringTable.hash(key));
    if (i < 0) return false;
    const slots = this.#slots;
    const mask = this.#mask;
    const e = slots[(i << 1) + 1]!;
    // Backward-shift deletion: slots after the hole whose home is not between the hole and
    // themselves move into it, so every probe sequence stays unbroken.
    for (let j = (i + 1) & mask; slots[j << 1] !== 0; j = (j + 1) & mask) {
      const home = slots[j << 1]! & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        slots[i << 1] = slots[j << 1]!;
        slots[(i << 1) + 1] = slots[(j << 1) + 1]!;
        i = j;
      }
    }
    slots[i << 1] = 0;
    // The last entry moves into the freed one.
    const kv = this.#kv;
    const last = (kv.length >> 1) - 1;
    if (e !== last) {
      const lastKey = kv[last << 1] as string;
      kv[e << 1] = lastKey;
      kv[(e << 1) + 1] = kv[(last << 1) + 1];
      let j = StringTable.hash(lastKey) & mask;
      while (slots[(j << 1) + 1] !== last || slots[j << 1] === 0) j = (j + 1) & mask;
      slots[(j << 1) + 1] = e;
    }
    kv.length = last << 1;
    return true;
  }

  clear(): void {
    this.#slots = new Int32Array(32);
    this.#mask = 15;
    this.#kv = [];
  }

  /**
   * Fills an empty table with keys[i] -> values[i] (hashes[i] = hash(keys[i])) in one pass:
   * the entries sorted by home slot (a radix sort), then laid into the probe table in slot
   * order, so the table is written front to back instead of at a random slot per key (a
   * cache miss each, at a million keys). Returns false, changing nothing, when a key repeats.
   */
  load(hashes: Int32Array, keys: string[], values: V[]): boolean {
    const n = keys.length;
    if (this.#kv.length !== 0) throw new Error('StringTable.load needs an empty table');
    let cap = 16;
    while (n * 4 > cap * 3) cap *= 2;
    const mask = cap - 1;
    // Entries by home slot (stable: equal homes keep entry order): 11 bits per pass.
    let order = new Uint32Array(n);
    let tmp = new Uint32Array(n);
    for (let e = 0; e < n; e++) order[e] = e;
    const bits = Math.log2(cap);
    for (let shift = 0; shift < bits; shift += 11) {
      const count = new Uint32Array(2049);
      for (let j = 0; j < n; j++) count[(((hashes[order[j]!]! & mask) >>> shift) & 2047) + 1]!++;
      for (let b = 0; b < 2048; b++) count[b + 1]! += count[b]!;
      for (let j = 0; j < n; j++) {
        const e = order[j]!;
        tmp[count[((hashes[e]! & mask) >>> shift) & 2047]!++] = e;
      }
      const t = order;
      order = tmp;
      tmp = t;
    }
    // Lay them out: each at its home or the first free slot after the previous one; those
    // pushed past the end wrap around to the front afterwards.
    const slots = new Int32Array(cap * 2);
    let next = 0;
    let groupStart = 0; // first position in `order` of the current home
    let wrapped = 0;
    for (let j = 0; j < n; j++) {
      const e = order[j]!;
      const h = hashes[e]!;
      const home = h & mask;
      if (j === 0 || home !== (hashes[order[j - 1]!]! & mask)) groupStart = j;
      // A repeated key has the same home: compare with the entries of this home before it.
      for (let g = groupStart; g < j; g++)
        if (hashes[order[g]!] === h && keys[order[g]!] === keys[e]) return false;
      const at = home > next ? home : next;
      if (at >= cap) {
        tmp[wrapped++] = e;
        continue;
      }
      slots[at << 1] = h;
      slots[(at << 1) + 1] = e;
      next = at + 1;
    }
    for (let w = 0; w < wrapped; w++) {
      const e = tmp[w]!;
      let i = hashes[e]! & mask;
      while (slots[i << 1] !== 0) {
        if (slots[i << 1] === hashes[e] && keys[slots[(i << 1) + 1]!] === keys[e]) return false;
        i = (i + 1) & mask;
      }
      slots[i << 1] = hashes[e]!;
      slots[(i << 1) + 1] = e;
    }
    const kv: unknown[] = [];
    for (let e = 0; e < n; e++) kv.push(keys[e], values[e]);
    this.#slots = slots;
    this.#mask = mask;
    this.#kv = kv;
    return true;
  }

  /** Every [key, value], in insertion order (until a delete moves the last entry). */
  *entries(): IterableIterator<[string, V]> {
    const kv = this.#kv;
    for (let e = 0; e < kv.length; e += 2) yield [kv[e] as string, kv[e + 1] as V];
  }

  #rehash(cap: number): void {
    const old = this.#slots;
    const slots = new Int32Array(cap * 2);
    const mask = cap - 1;
    for (let j = 0; j < old.length; j += 2) {
      const h = old[j]!;
      if (h === 0) continue;
      let i = h & mask;
      while (slots[i << 1] !== 0) i = (i + 1) & mask;
      slots[i << 1] = h;
      slots[(i << 1) + 1] = old[j + 1]!;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}

export function sameKey(a: IndexKey, b: IndexKey): boolean {
  return a === b || ((Array.isArray(a) || Array.isArray(b)) && compareKeys(a, b) === 0);
}

export function describeKey(key: IndexKey): string {
  return typeof key === 'bigint'
    ? `${key}n`
    : Array.isArray(key)
      ? KeyMap.encode(key)
      : JSON.stringify(key);
}

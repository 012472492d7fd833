// Checkers for the verification harness (issue 5): linearizability of each key's history as a
// single register, and the end-of-run checks (acknowledged writes visible, replicas equal).
//
// The linearizability search is Wing & Gong's depth-first search with Lowe's memoisation,
// written from the published algorithm:
//
//   - the history is a list of call and return events in time order;
//   - an op may be linearized next iff its call comes before the first return event still in
//     the list (no other unlinearized op returned before it was invoked);
//   - linearizing an op removes its call and return from the list (restored on backtrack);
//   - if the first remaining event is a return, the op that returned there cannot be placed:
//     backtrack;
//   - a cache of (set of linearized ops, register value) prunes configurations already seen.
//
// Indeterminate (info) ops return at +infinity, so they never force a backtrack, and the
// search succeeds once every op that must be linearized is; an info op that is never
// linearized is an op that never took effect.
//
// On top of that, reductions that keep the verdict exact (each argued where it is made, and
// tested against a brute-force search and a plain memoised search):
//   - prepare(): info writes nobody can observe are dropped; values nobody observes are merged;
//     info ops of equal effect form classes, tracked by count;
//   - search(): a callable observation (read, refused cas) that is legal now is taken without
//     branching; an info op is taken only right before an op it enables; required ops are
//     tried before info ops; a configuration is pruned when a finished one with the same set
//     and value had used no more info ops of any class.
// Invalid keys are shrunk to a minimal failing sub-history (shrink()).
import { CAS_CONFLICT, type Op } from './history.js';

// ---- public types ------------------------------------------------------------------------

export interface CheckOptions {
  /** Wall-clock budget for the search of one key (default 10 000 ms). */
  timeoutMs?: number;
  /** Budget of configurations the search may cache per key (default 1 000 000; the search also
   *  stops when the cache holds 256 MB, which comes first for long histories). */
  maxStates?: number;
  /** Shrink an invalid key's history to a minimal failing sub-history (default true). */
  shrink?: boolean;
  /** Wall-clock budget for the shrinking of one key (default: timeoutMs). */
  shrinkTimeoutMs?: number;
}

export interface Anomaly {
  reason: string;
  /** A sub-history that is still not linearizable (and whose failure implies the whole key's),
   *  from which no single op (with the ops that observe it) can be dropped keeping it so — unless
   *  the shrinking ran out of time; in invoke order; the original Ops. */
  minimalSubhistory: Op[];
}

export interface KeyResult {
  key: string;
  valid: true | false | 'unknown';
  /** Ops that entered the search (after dropping the ones that carry no information). */
  opsChecked: number;
  /** Configurations (linearized set, value) the search cached. */
  statesExplored: number;
  elapsedMs: number;
  /** Why the result is 'unknown' (which budget ran out). */
  note?: string;
  anomaly?: Anomaly;
}

export interface HistoryResult {
  valid: true | false | 'unknown';
  keys: KeyResult[];
  opsChecked: number;
  statesExplored: number;
  elapsedMs: number;
}

// ---- preparation: from Ops to search entries ----------------------------------------------

const READ = 0;
const WRITE = 1; // write and delete (delete writes null)
const CAS = 2;
const CAS_FAILED = 3; // a cas refused with PREVAIL_CAS_CONFLICT: observed value !== expect

interface Entry {
  op: Op;
  kind: number;
  /** READ: the value read; WRITE/CAS: the value written (interned; 0 = null). */
  value: number;
  /** CAS/CAS_FAILED: the expected value (interned). */
  expect: number;
  /** ok ops (and cas conflicts) must be linearized; info ops may be. */
  required: boolean;
  call: number;
  ret: number; // Infinity for info ops and ok ops without a completion
  /** Optional ops: their class of interchangeable ops (-1: none, tracked on its own). */
  cls: number;
}

class Interner {
  private readonly ids = new Map<string, number>();
  /** names[id] is the value interned as id (names[0] = null). */
  readonly names: (string | null)[] = [null];
  id(value: string | null | undefined): number {
    if (value === null || value === undefined) return 0;
    let id = this.ids.get(value);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(value, id);
      this.names.push(value);
    }
    return id;
  }
}

/** Whether an op carries information for the linearizability check (see the rules in prepare). */
function isRelevant(op: Op): boolean {
  if (op.type === 'read') return op.outcome === 'ok';
  if (op.outcome === 'fail') return op.type === 'cas' && op.error === CAS_CONFLICT;
  return true;
}

/**
 * The rules:
 *   read    ok → observed value (undefined counts as null); info/fail → dropped (no information).
 *   write   ok → must take effect in [invoke, complete]; info → may take effect any time after
 *           invoke, or never; fail → dropped (certainly did not happen).
 *   delete  as write, with the value null.
 *   cas     ok → must take effect in [invoke, complete], legal only when value === expect;
 *           info → may take effect after invoke (only where value === expect), or never;
 *           fail with error PREVAIL_CAS_CONFLICT → a required observation in [invoke, complete]
 *           that the value !== expect; other fails → dropped.
 * Then two reductions that change no verdict:
 *   - info writes/cas whose value can never be observed are dropped: nothing reads it, no cas
 *     expects it, and no cas conflict could be linearized after it. Such a write, if linearized
 *     in a valid order, can be taken out of it and the order stays valid (every op up to the next
 *     write is indifferent to it).
 *   - all written values that no op observes (no read returns them, no cas expects them) are
 *     one value: every op behaves the same on any of them.
 * And the optional (info) ops are put into classes of equal effect (kind, expect, value): once
 * invoked, two members of a class are interchangeable, so the search state records how many of
 * each class were linearized, not which (see search()). This is what keeps histories with many
 * timed-out writes (never applied, so never read) tractable.
 */
function prepare(ops: readonly Op[]): Entry[] {
  return prepareNamed(ops).entries;
}

function prepareNamed(
  ops: readonly Op[],
  canonical = true,
): { entries: Entry[]; names: (string | null)[] } {
  const interner = new Interner();
  const entries: Entry[] = [];
  for (const op of ops) {
    if (!isRelevant(op)) continue;
    const call = op.invokeMs;
    const finite =
      op.completeMs !== null && op.completeMs !== undefined && Number.isFinite(op.completeMs);
    const complete = finite ? Math.max(op.completeMs as number, call) : Infinity;
    const required = op.outcome !== 'info';
    const ret = required ? complete : Infinity;
    const base = { op, required, call, ret, cls: -1 };
    switch (op.type) {
      case 'read':
        entries.push({
          ...base,
          kind: READ,
          value: interner.id(op.value),
          expect: 0,
          required: true,
        });
        break;
      case 'write':
        entries.push({ ...base, kind: WRITE, value: interner.id(op.value), expect: 0 });
        break;
      case 'delete':
        entries.push({ ...base, kind: WRITE, value: 0, expect: 0 });
        break;
      case 'cas':
        if (op.outcome === 'fail') {
          entries.push({
            ...base,
            kind: CAS_FAILED,
            value: 0,
            expect: interner.id(op.expect),
            required: true,
          });
        } else {
          const value = interner.id(op.value);
          entries.push({ ...base, kind: CAS, value, expect: interner.id(op.expect) });
        }
        break;
    }
  }
  const observed = new Set<number>();
  let lastCasFailedRet = -Infinity;
  for (const e of entries) {
    if (e.kind === READ) observed.add(e.value);
    if (e.kind === CAS || e.kind === CAS_FAILED) observed.add(e.expect);
    if (e.kind === CAS_FAILED) lastCasFailedRet = Math.max(lastCasFailedRet, e.ret);
  }
  const kept = entries.filter(
    (e) => e.required || observed.has(e.value) || lastCasFailedRet >= e.call,
  );
  if (canonical) {
    const unobserved = interner.names.length;
    interner.names.push('(a value no op observed)');
    const classes = new Map<string, number>();
    for (const e of kept) {
      if ((e.kind === WRITE || e.kind === CAS) && !observed.has(e.value)) e.value = unobserved;
      if (!e.required) {
        const id = `${e.kind}:${e.expect}:${e.value}`;
        let cls = classes.get(id);
        if (cls === undefined) classes.set(id, (cls = classes.size));
        e.cls = cls;
      }
    }
  }
  return { entries: kept, names: interner.names };
}

// ---- the search ------------------------------------------------------------------------------

interface SearchOutcome {
  valid: true | false | 'unknown';
  states: number;
  note?: string;
  /** Deepest point of a failed search: how many ops were linearized, the value then, and
   *  the op whose return could not be passed. */
  deepest?: { linearized: number; value: number; blocked: Entry };
  /** Failed search: the time of the latest return it had to stop at. Ops invoked after it
   *  were never candidates, so the search of the history without them fails the same way. */
  horizon?: number;
}

/**
 * The configurations the search has reached: (set of linearized ops tracked one by one, value,
 * how many of each class of optional ops were linearized). A configuration is pruned when it
 * was reached before, or when a finished (fully explored, so failed) configuration with the
 * same set and value had linearized no more of any class: that one had every option this one
 * has, and more. Records with the same set and value form a group; within it, exact matches are
 * found by a hash of the counts, and dominance is checked against the group's most recently
 * finished records (a bounded scan: pruning less is always safe).
 */
interface Group {
  /** The group's first record (it holds the set and value). */
  record: number;
  recordHash: number;
  /** Once there is more than one record: records by count hash (a record, or a list). */
  exact: Map<number, number | number[]> | null;
  finished: number[] | null;
}

const DOMINANCE_SCAN = 48;
const MAX_CACHE_BYTES = 2 ** 28;

function growInt32(a: Int32Array<ArrayBuffer>, need: number): Int32Array<ArrayBuffer> {
  if (need <= a.length) return a;
  const bigger = new Int32Array(Math.max(need, Math.ceil(a.length * 1.5)));
  bigger.set(a);
  return bigger;
}

class ConfigCache {
  private pool: Uint32Array;
  private used = 0; // records
  private readonly stride: number;
  private readonly buckets = new Map<number, Group | Group[]>();
  /** Class counts of record r: countPool[countOff[r] .. countOff[r + 1]) as (class, count) pairs. */
  private countPool = new Int32Array(4096);
  private countOff = new Int32Array(1024);
  private readonly groupOf: Group[] = [];

  constructor(private readonly words: number) {
    this.stride = words + 1;
    this.pool = new Uint32Array(this.stride * 1024);
  }

  get size(): number {
    return this.used;
  }

  /** Bytes held by the records (sets, values, counts), roughly. */
  get bytes(): number {
    return this.used * (this.stride * 4 + 48) + (this.countOff[this.used] ?? 0) * 4;
  }

  /**
   * Adds the configuration (bits, value, classCount restricted to `active`, the classes with a
   * non-zero count; countHash a hash of those counts); returns its record, or -1 if pruned.
   */
  add(
    bits: Uint32Array,
    value: number,
    hash: number,
    active: readonly number[],
    classCount: Int32Array,
    countHash: number,
  ): number {
    const key = (hash ^ Math.imul(value + 1, 0x9e3779b1)) >>> 0;
    const bucket = this.buckets.get(key);
    let group: Group | undefined;
    if (bucket !== undefined) {
      if (!Array.isArray(bucket)) {
        if (this.sameSet(bucket.record, bits, value)) group = bucket;
      } else {
        for (const g of bucket) {
          if (this.sameSet(g.record, bits, value)) {
            group = g;
            break;
          }
        }
      }
    }
    if (group !== undefined) {
      if (group.exact === null) {
        if (group.recordHash === countHash && this.sameCounts(group.record, active, classCount))
          return -1;
      } else {
        const same = group.exact.get(countHash);
        if (same !== undefined) {
          if (typeof same === 'number') {
            if (this.sameCounts(same, active, classCount)) return -1;
          } else {
            for (const r of same) if (this.sameCounts(r, active, classCount)) return -1;
          }
        }
      }
      const finished = group.finished;
      if (finished !== null) {
        for (
          let j = finished.length - 1, stop = Math.max(0, finished.length - DOMINANCE_SCAN);
          j >= stop;
          j--
        ) {
          if (this.fewer(finished[j]!, classCount)) return -1;
        }
      }
    }
    const record = this.store(bits, value, active, classCount);
    if (group === undefined) {
      group = { record, recordHash: countHash, exact: null, finished: null };
      if (bucket === undefined) this.buckets.set(key, group);
      else if (!Array.isArray(bucket)) this.buckets.set(key, [bucket, group]);
      else bucket.push(group);
    } else {
      group.exact ??= new Map([[group.recordHash, group.record]]);
      const same = group.exact.get(countHash);
      if (same === undefined) group.exact.set(countHash, record);
      else if (typeof same === 'number') group.exact.set(countHash, [same, record]);
      else same.push(record);
    }
    this.groupOf.push(group);
    return record;
  }

  /** The record's configuration was fully explored (and failed). */
  finish(record: number): void {
    const group = this.groupOf[record]!;
    if (group.exact === null && group.record === record) return; // alone: nothing to dominate
    (group.finished ??= []).push(record);
  }

  private sameSet(record: number, bits: Uint32Array, value: number): boolean {
    const base = record * this.stride;
    const pool = this.pool;
    if (pool[base + this.words] !== value) return false;
    for (let w = 0; w < this.words; w++) if (pool[base + w] !== bits[w]) return false;
    return true;
  }

  private sameCounts(record: number, active: readonly number[], classCount: Int32Array): boolean {
    const from = this.countOff[record]!;
    const to = this.countOff[record + 1]!;
    if (to - from !== active.length * 2) return false;
    for (let j = from; j < to; j += 2)
      if (classCount[this.countPool[j]!] !== this.countPool[j + 1]) return false;
    return true;
  }

  /** Whether the record had linearized no more of any class than classCount. */
  private fewer(record: number, classCount: Int32Array): boolean {
    const to = this.countOff[record + 1]!;
    for (let j = this.countOff[record]!; j < to; j += 2)
      if (classCount[this.countPool[j]!]! < this.countPool[j + 1]!) return false;
    return true;
  }

  private store(
    bits: Uint32Array,
    value: number,
    active: readonly number[],
    classCount: Int32Array,
  ): number {
    if ((this.used + 1) * this.stride > this.pool.length) {
      const bigger = new Uint32Array(
        Math.ceil((this.pool.length * 1.5) / this.stride) * this.stride,
      );
      bigger.set(this.pool);
      this.pool = bigger;
    }
    const r = this.used;
    const base = r * this.stride;
    this.pool.set(bits, base);
    this.pool[base + this.words] = value;
    this.countOff = growInt32(this.countOff, r + 2);
    const from = this.countOff[r]!;
    this.countPool = growInt32(this.countPool, from + active.length * 2);
    for (let j = 0; j < active.length; j++) {
      const c = active[j]!;
      this.countPool[from + 2 * j] = c;
      this.countPool[from + 2 * j + 1] = classCount[c]!;
    }
    this.countOff[r + 1] = from + active.length * 2;
    return this.used++;
  }
}

/** Deterministic 32-bit hash codes per op (Zobrist hashing of the linearized set). */
function zobrist(n: number): Int32Array {
  const codes = new Int32Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    // xorshift32
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    codes[i] = s;
  }
  return codes;
}

/** The value after linearizing entry e when the register holds `value`, or -1 when it is not legal then. */
function legalAfter(e: Entry, value: number): number {
  switch (e.kind) {
    case READ:
      return value === e.value ? value : -1;
    case WRITE:
      return e.value;
    case CAS:
      return value === e.expect ? e.value : -1;
    default: // CAS_FAILED
      return value !== e.expect ? value : -1;
  }
}

/** The hash contribution of class c having count k (0 for none, so that absent = zero). */
function countCode(c: number, k: number): number {
  return k === 0 ? 0 : Math.imul((c + 1) * 0x9e3779b1 + k, 0x85ebca6b) ^ (k * 0x27d4eb2f);
}

/**
 * The search's position: the linearized ops on a stack, the events of the others in a linked
 * list, the register's value, and the linearized set (bits, class counts and their hashes).
 */
class Frontier {
  /** Events: 2i = call of entry i, 2i + 1 = its return; `head` starts the list. */
  readonly head: number;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly classes: number;
  readonly cache: ConfigCache;
  private readonly ownPos: Int32Array;
  private readonly classCount: Int32Array;
  private readonly active: number[] = []; // classes with a non-zero count, in the order they became so
  private readonly bits: Uint32Array;
  private readonly codes: Int32Array;
  private hash = 0;
  private countHash = 0;
  private readonly stackEntry: Int32Array;
  private readonly stackValue: Int32Array;
  private readonly stackRecord: Int32Array;
  private readonly forced: Uint8Array;
  sp = 0;
  value = 0;

  constructor(
    private readonly entries: Entry[],
    public remaining: number,
  ) {
    const n = entries.length;
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1);
    this.prev = new Int32Array(2 * n + 1);
    linkEvents(entries, this.head, this.next, this.prev);
    // The linearized set: a bit per op tracked one by one (required ops, and optional ops without
    // a class), and a count per class of optional ops. Linearized members of a class were all
    // invoked before the current frontier (the frontier only moves forward), and the members not
    // linearized that were are available from now on with the same effect: configurations with
    // equal counts have the same futures, and fewer linearized leaves at least the same options.
    this.ownPos = new Int32Array(n).fill(-1);
    let classes = 0;
    let positions = 0;
    for (let i = 0; i < n; i++) {
      const c = entries[i]!.cls;
      if (c < 0) this.ownPos[i] = positions++;
      else classes = Math.max(classes, c + 1);
    }
    this.classes = classes;
    this.classCount = new Int32Array(classes);
    const words = Math.max(1, Math.ceil(positions / 32));
    this.bits = new Uint32Array(words);
    this.codes = zobrist(Math.max(1, positions));
    this.cache = new ConfigCache(words);
    this.stackEntry = new Int32Array(n);
    this.stackValue = new Int32Array(n);
    this.stackRecord = new Int32Array(n);
    this.forced = new Uint8Array(n);
  }

  /** Whether the op at the top of the stack was taken without branching. */
  topForced(): boolean {
    return this.forced[this.sp - 1] === 1;
  }

  /** Pushes entry i (legal, giving `after`) unless its configuration is pruned; false if so. */
  push(i: number, after: number, isForced: boolean): boolean {
    const e = this.entries[i]!;
    this.mark(i, e.cls, true);
    const record = this.cache.add(
      this.bits,
      after,
      this.hash,
      this.active,
      this.classCount,
      this.countHash,
    );
    if (record < 0) {
      this.mark(i, e.cls, false);
      return false;
    }
    const sp = this.sp;
    this.stackEntry[sp] = i;
    this.stackValue[sp] = this.value;
    this.stackRecord[sp] = record;
    this.forced[sp] = isForced ? 1 : 0;
    this.sp++;
    this.value = after;
    this.lift(i);
    if (e.required) this.remaining--;
    return true;
  }

  /** Undoes the last push (its configuration is then fully explored); returns the entry. */
  pop(): number {
    const i = this.stackEntry[--this.sp]!;
    this.cache.finish(this.stackRecord[this.sp]!);
    this.value = this.stackValue[this.sp]!;
    this.unlift(i);
    this.mark(i, this.entries[i]!.cls, false);
    if (this.entries[i]!.required) this.remaining++;
    return i;
  }

  private mark(i: number, c: number, on: boolean): void {
    if (c < 0) {
      const pos = this.ownPos[i]!;
      this.bits[pos >> 5]! ^= 1 << (pos & 31);
      this.hash ^= this.codes[pos]!;
      return;
    }
    const k = this.classCount[c]!;
    const k2 = on ? k + 1 : k - 1;
    this.countHash ^= countCode(c, k) ^ countCode(c, k2);
    this.classCount[c] = k2;
    if (on && k === 0) this.active.push(c);
    if (!on && k2 === 0) this.active.pop(); // LIFO: the last class to become non-zero goes first
  }

  private lift(i: number): void {
    const { next, prev } = this;
    for (const ev of [2 * i, 2 * i + 1]) {
      next[prev[ev]!] = next[ev]!;
      if (next[ev] !== -1) prev[next[ev]!] = prev[ev]!;
    }
  }

  private unlift(i: number): void {
    const { next, prev } = this;
    for (const ev of [2 * i + 1, 2 * i]) {
      next[prev[ev]!] = ev;
      if (next[ev] !== -1) prev[next[ev]!] = ev;
    }
  }
}

/**
 * Links the events in time order from `head`. At equal times calls come first, so ops that
 * touch at a millisecond count as concurrent (never a false alarm from clock granularity).
 */
function linkEvents(entries: Entry[], head: number, next: Int32Array, prev: Int32Array): void {
  const order: number[] = [];
  for (let i = 0; i < entries.length; i++) order.push(2 * i, 2 * i + 1);
  const time = (ev: number) => ((ev & 1) === 0 ? entries[ev >> 1]!.call : entries[ev >> 1]!.ret);
  order.sort((a, b) => time(a) - time(b) || (a & 1) - (b & 1) || a - b);
  let last = head;
  for (const ev of order) {
    next[last] = ev;
    prev[ev] = last;
    last = ev;
  }
  next[last] = -1;
}

/**
 * A fresh level's scan of the callable ops. An observation (a read, a refused cas) that is
 * callable and legal now goes first without branching (`forced`): any valid order of the rest
 * can be rearranged to start with it (nothing had to come before it, and it changes no value).
 * If that fails, the whole level fails. (Not a write of the current value: elsewhere in the
 * order it may change the value.) Else: which values some callable op needs and cannot have
 * now (a read of it, a cas expecting it), and whether a callable refused cas needs the value
 * to change.
 */
function scanLevel(
  entries: Entry[],
  f: Frontier,
): { forced: number; needs: number[]; change: number } {
  const { next, value } = f;
  const needs: number[] = [];
  let change = 0;
  for (let ev = next[f.head]!; ev !== -1 && (ev & 1) === 0; ev = next[ev]!) {
    const e = entries[ev >> 1]!;
    if ((e.kind === READ || e.kind === CAS_FAILED) && legalAfter(e, value) !== -1)
      return { forced: ev >> 1, needs, change };
    if (e.kind === CAS_FAILED)
      change = 1; // refused, expecting the current value
    else if (e.kind === READ) needs.push(e.value);
    else if (e.kind === CAS && e.expect !== value) needs.push(e.expect);
  }
  return { forced: -1, needs, change };
}

function search(entries: Entry[], deadline: number, maxStates: number): SearchOutcome {
  const n = entries.length;
  let remaining = 0;
  for (const e of entries) if (e.required) remaining++;
  if (remaining === 0) return { valid: true, states: 0 };
  const f = new Frontier(entries, remaining);
  const { next, head, cache } = f;
  let steps = 0;
  let deepest: SearchOutcome['deepest'];
  let horizon = -Infinity;
  // Per level, the classes already tried: any other member would give the same configuration.
  const levelId = new Int32Array(n + 1);
  const triedAt = new Int32Array(f.classes).fill(-1);
  // Per level: which values some callable op needs and cannot have now, and whether a callable
  // refused cas needs the value to change (see scanLevel).
  const needValues: number[][] = [];
  const needChange = new Uint8Array(n + 1);
  let levels = 0;
  const overBudget = () => (++steps & 255) === 0 && budgetExhausted(cache, maxStates, deadline);

  // `cur` walks the callable ops of the current level; -2 = a fresh level.
  let cur = -2;
  // Each level is scanned twice: required ops first, then optional ones. Not taking an optional
  // op leaves more options, so the configurations reached without it, explored (and finished)
  // first, prune the ones with it (see ConfigCache).
  let optionalPass = false;
  let levelFails = false;
  for (;;) {
    if (f.remaining === 0) return { valid: true, states: cache.size };
    if (cur === -2 && !levelFails) {
      const scan = scanLevel(entries, f);
      if (scan.forced >= 0) {
        if (!f.push(scan.forced, f.value, true)) levelFails = true;
        else if (overBudget()) return exhausted(cache, maxStates);
        continue;
      }
      cur = next[head]!;
      optionalPass = false;
      levelId[f.sp] = levels++;
      needValues[f.sp] = scan.needs;
      needChange[f.sp] = scan.change;
    }
    if (!levelFails && cur !== -1 && (cur & 1) === 0) {
      const i = cur >> 1;
      const e = entries[i]!;
      if (e.required === optionalPass || (e.cls >= 0 && triedAt[e.cls] === levelId[f.sp])) {
        cur = next[cur]!;
        continue;
      }
      if (e.cls >= 0) triedAt[e.cls] = levelId[f.sp]!;
      const after = legalAfter(e, f.value);
      // An optional op is only worth taking right before an op it enables: a callable op that
      // is not legal now and would be right after it (a read of its value, a cas expecting its
      // value, a refused cas expecting the current one). In any valid order an optional op can
      // be moved later, up to the first op that needs it, or left out when none does: the ops
      // in between see the same value either way.
      if (
        after !== -1 &&
        (e.required ||
          (after !== f.value && (needChange[f.sp] === 1 || needValues[f.sp]!.includes(after)))) &&
        f.push(i, after, false)
      ) {
        cur = -2;
        if (overBudget()) return exhausted(cache, maxStates);
        continue;
      }
      cur = next[cur]!;
      continue;
    }
    if (!levelFails && !optionalPass) {
      optionalPass = true;
      cur = next[head]!;
      continue;
    }
    // A return (or the end) was reached: the op that returned there was not linearized; or the
    // level failed as a whole. Backtrack.
    if (!levelFails && cur !== -1) {
      if (deepest === undefined || f.sp > deepest.linearized)
        deepest = { linearized: f.sp, value: f.value, blocked: entries[cur >> 1]! };
      horizon = Math.max(horizon, entries[cur >> 1]!.ret);
    }
    levelFails = false;
    if (f.sp === 0) return { valid: false, states: cache.size, deepest, horizon };
    const wasForced = f.topForced();
    const i = f.pop();
    if (wasForced) {
      levelFails = true; // the level it was forced at has no other way
      continue;
    }
    optionalPass = !entries[i]!.required;
    cur = next[2 * i]!;
  }
}

function budgetExhausted(cache: ConfigCache, maxStates: number, deadline: number): boolean {
  return cache.size > maxStates || cache.bytes > MAX_CACHE_BYTES || Date.now() > deadline;
}

function exhausted(cache: ConfigCache, maxStates: number): SearchOutcome {
  const note =
    cache.size > maxStates
      ? `state budget of ${maxStates} exhausted`
      : cache.bytes > MAX_CACHE_BYTES
        ? `memory budget of ${MAX_CACHE_BYTES >> 20} MB exhausted after ${cache.size} states`
        : 'time budget exhausted';
  return { valid: 'unknown', states: cache.size, note };
}

// ---- shrinking ----------------------------------------------------------------------------

function isMutation(op: Op): boolean {
  return op.type !== 'read' && op.outcome !== 'fail';
}

function mutatedValue(op: Op): string | null {
  return op.type === 'delete' ? null : (op.value ?? null);
}

/**
 * Whether dropping `removed` from a history keeps this true: if the smaller history (`kept`) is
 * not linearizable, neither is the larger one. Dropping a read or a cas conflict always does
 * (an observation less only allows more). Dropping a mutation M of value v does when nothing
 * left can tell v apart from the value before it: no read of v, no cas expecting v, and no cas
 * conflict that could take effect after M's invoke — then any valid order of the larger history,
 * minus M, is a valid order of the smaller one. Without this rule the shrinking would invent
 * anomalies (drop a delete and a later read of null looks stale).
 */
function isSafeRemoval(kept: readonly Op[], removed: readonly Op[]): boolean {
  let mutations = false;
  for (const op of removed) if (isMutation(op)) mutations = true;
  if (!mutations) return true;
  const observed = new Set<string | null>();
  let lastConflictReturn = -Infinity;
  for (const op of kept) {
    if (op.type === 'read') observed.add(op.value ?? null);
    else if (op.type === 'cas') {
      if (op.outcome === 'fail')
        lastConflictReturn = Math.max(lastConflictReturn, op.completeMs ?? Infinity);
      else observed.add(op.expect ?? null);
    }
  }
  for (const op of removed) {
    if (!isMutation(op)) continue;
    if (observed.has(mutatedValue(op)) || lastConflictReturn >= op.invokeMs) return false;
  }
  return true;
}

/**
 * Grows a set of ops to drop until dropping it is safe (isSafeRemoval): the reads and cas that
 * observe a dropped mutation's value, and the cas conflicts that could follow it, are dropped
 * too (a dropped ok/info cas is itself a mutation, so this repeats).
 */
function closeRemoval(ops: readonly Op[], drop: Set<Op>): void {
  for (let grew = true; grew;) {
    grew = false;
    const values = new Set<string | null>();
    let firstInvoke = Infinity;
    for (const op of drop) {
      if (isMutation(op)) {
        values.add(mutatedValue(op));
        firstInvoke = Math.min(firstInvoke, op.invokeMs);
      }
    }
    if (values.size === 0) return;
    for (const op of ops) {
      if (drop.has(op)) continue;
      const observes =
        op.type === 'read'
          ? values.has(op.value ?? null)
          : op.type === 'cas' &&
            (op.outcome === 'fail'
              ? (op.completeMs ?? Infinity) >= firstInvoke
              : values.has(op.expect ?? null));
      if (observes) {
        drop.add(op);
        grew = true;
      }
    }
  }
}

/**
 * Shrinking, in two steps; every sub-history on the way still fails, and fails because the
 * original does (see isSafeRemoval):
 *   1. cut what the failed search never looked at: ops invoked after the latest return it had to
 *      stop at (keeping the writers of values the rest observes — they are never candidates
 *      either, so the search fails the same way; checked again anyway);
 *   2. delta-debugging: try dropping contiguous chunks (halves, quarters, ... single ops), each
 *      grown by closeRemoval, keeping a drop whenever the rest still fails, until no single op
 *      (with what observes it) can be dropped.
 * A search that runs out of budget counts as "does not fail" (the op is kept).
 */
function shrink(ops: Op[], horizon: number | undefined, deadline: number, maxStates: number): Op[] {
  const subBudget = Math.min(maxStates, 200_000);
  const fails = (candidate: Op[]) =>
    candidate.length > 0 && search(prepare(candidate), deadline, subBudget).valid === false;
  let current = ops;

  if (horizon !== undefined && Number.isFinite(horizon)) {
    const late = new Set(ops.filter((op) => op.invokeMs > horizon));
    if (late.size > 0) {
      // Keep (take out of `late`) the mutations the earlier ops need, repeatedly.
      for (let grew = true; grew;) {
        grew = false;
        const kept = ops.filter((op) => !late.has(op));
        for (const m of late) {
          if (isMutation(m) && !isSafeRemoval(kept, [m])) {
            late.delete(m);
            grew = true;
          }
        }
      }
      const candidate = ops.filter((op) => !late.has(op));
      if (late.size > 0 && fails(candidate)) current = candidate;
    }
  }

  let chunk = Math.max(1, Math.floor(current.length / 2));
  for (;;) {
    let changed = false;
    for (let start = 0; start < current.length;) {
      if (Date.now() > deadline) return current;
      const drop = new Set(current.slice(start, start + chunk));
      closeRemoval(current, drop);
      const candidate = current.filter((op) => !drop.has(op));
      if (fails(candidate)) {
        current = candidate;
        changed = true;
      } else {
        start += chunk;
      }
    }
    if (chunk > 1) chunk = Math.max(1, Math.floor(chunk / 2));
    else if (!changed) return current;
  }
}

// ---- explaining --------------------------------------------------------------------------

function show(value: string | null | undefined): string {
  return value === null || value === undefined ? 'null' : JSON.stringify(value);
}

export function describeOp(op: Op): string {
  switch (op.type) {
    case 'read':
      return `read → ${show(op.value)}`;
    case 'write':
      return `write ${show(op.value)}`;
    case 'delete':
      return 'delete';
    case 'cas':
      return `cas ${show(op.expect)} → ${show(op.value)}`;
  }
}

function explain(minimal: Op[], all: readonly Op[]): string {
  const writers = new Set<string>();
  const failedWriters = new Set<string>();
  for (const op of all) {
    if ((op.type === 'write' || op.type === 'cas') && typeof op.value === 'string') {
      if (op.outcome === 'fail') failedWriters.add(op.value);
      else writers.add(op.value);
    }
  }
  for (const op of minimal) {
    if (op.type === 'read' && typeof op.value === 'string' && !writers.has(op.value)) {
      return failedWriters.has(op.value)
        ? `op ${op.id} (${describeOp(op)}) read a value only written by ops that failed (certainly did not take effect)`
        : `op ${op.id} (${describeOp(op)}) read a value that no write or cas on this key ever wrote`;
    }
  }
  // Small enough to search with every value named (no merging of unobserved values).
  const { entries, names } = prepareNamed(minimal, minimal.length > 40);
  const outcome = search(entries, Date.now() + 2_000, 200_000);
  const lead = `no order of these ${minimal.length} ops is consistent with one register and with real time`;
  if (outcome.deepest === undefined) return lead;
  const d = outcome.deepest;
  const why =
    d.blocked.kind === READ
      ? `the value was ${show(names[d.value])} by then`
      : d.blocked.kind === CAS
        ? `the value was ${show(names[d.value])}, not the expected one`
        : d.blocked.kind === CAS_FAILED
          ? `the value was the expected one, yet the cas was refused`
          : 'it could not be placed';
  return `${lead}: at best ${d.linearized} of them fit, then op ${d.blocked.op.id} (${describeOp(d.blocked.op)}, process ${d.blocked.op.process}) had to take effect before its return and could not — ${why}`;
}

// ---- the checks ---------------------------------------------------------------------------

const byInvoke = (a: Op, b: Op) => a.invokeMs - b.invokeMs || a.id - b.id;

/** Checks one key's history (all ops should have the same key) as a linearizable register. */
export function checkKey(ops: Op[], options: CheckOptions = {}): KeyResult {
  const started = Date.now();
  const key = ops[0]?.key ?? '';
  const timeoutMs = options.timeoutMs ?? 10_000;
  const entries = prepare([...ops].sort(byInvoke));
  const maxStates = options.maxStates ?? 1_000_000;
  const outcome = search(entries, started + timeoutMs, maxStates);
  const result: KeyResult = {
    key,
    valid: outcome.valid,
    opsChecked: entries.length,
    statesExplored: outcome.states,
    elapsedMs: 0,
  };
  if (outcome.note) result.note = outcome.note;
  if (outcome.valid === false) {
    const relevant = ops.filter(isRelevant).sort(byInvoke);
    const minimal =
      options.shrink === false
        ? relevant
        : shrink(
            relevant,
            outcome.horizon,
            Date.now() + (options.shrinkTimeoutMs ?? timeoutMs),
            maxStates,
          );
    result.anomaly = { reason: explain(minimal, ops), minimalSubhistory: minimal };
  }
  result.elapsedMs = Date.now() - started;
  return result;
}

/** Groups the history by key and checks each key (options apply per key). */
export function checkHistory(ops: Op[], options: CheckOptions = {}): HistoryResult {
  const started = Date.now();
  const groups = new Map<string, Op[]>();
  for (const op of ops) {
    let group = groups.get(op.key);
    if (!group) groups.set(op.key, (group = []));
    group.push(op);
  }
  const keys = [...groups.keys()].sort().map((key) => checkKey(groups.get(key)!, options));
  return {
    valid: keys.some((k) => k.valid === false)
      ? false
      : keys.some((k) => k.valid === 'unknown')
        ? 'unknown'
        : true,
    keys,
    opsChecked: keys.reduce((s, k) => s + k.opsChecked, 0),
    statesExplored: keys.reduce((s, k) => s + k.statesExplored, 0),
    elapsedMs: Date.now() - started,
  };
}

// ---- the final checks -----------------------------------------------------------------------

export type KeyValues = Record<string, string | null> | Map<string, string | null>;

export interface ReplicaState {
  node: number;
  /** The replica's key → value map, or a hash of its state. */
  state: KeyValues | string;
}

export interface FinalViolation {
  kind: 'lost-write' | 'unexpected-final-value' | 'replica-divergence' | 'node-crash';
  key?: string;
  message: string;
  /** lost-write: the acknowledged mutations one of which should have been visible. */
  ops?: Op[];
  nodes?: number[];
}

function lookup(values: KeyValues, key: string): string | null | undefined {
  return values instanceof Map
    ? values.get(key)
    : Object.prototype.hasOwnProperty.call(values, key)
      ? values[key]
      : undefined;
}

function keysOf(values: KeyValues): string[] {
  return values instanceof Map ? [...values.keys()] : Object.keys(values);
}

/**
 * The end-of-run checks, after healing and after every client stopped.
 *
 * `history` should be the whole history (all outcomes): the acknowledged writes are picked from
 * it, and info ops are needed to know what else may have happened. With only the acknowledged
 * writes the check is stricter than it should be.
 *
 * Final value rule, per key. A mutation is a write, delete (value null) or cas that is ok or
 * info (fail ops and cas conflicts never changed anything). Mutation M is "superseded" when an
 * ok mutation was invoked after M completed: that one took effect after M, so M's value can only
 * be final if some op wrote it again. The final value must be the value of some mutation that is
 * not superseded (info mutations never are: they may have been applied at any time), or null
 * when the key has no ok mutation (the initial value). Anything else is a lost write: every
 * acknowledged mutation that is not superseded is reported. This is sound (a linearizable run
 * always passes it: the last mutation in the linearization cannot be superseded) but not
 * complete; appending the final reads to the history as ok reads and running checkHistory is the
 * precise check.
 *
 * `finalReads`: key → value read after healing (a linearizable read); a key of the history that
 * is missing counts as absent (null). `replicaStates`: all must be equal — maps compared key by
 * key (a missing key equals null), hashes as strings.
 */
export function checkFinal(
  history: Op[],
  finalReads: KeyValues,
  replicaStates: ReplicaState[] = [],
): FinalViolation[] {
  const violations: FinalViolation[] = [];
  const byKey = new Map<string, Op[]>();
  for (const op of history) {
    if (op.type === 'read') continue;
    if (op.outcome === 'fail') continue;
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const key of [...new Set([...byKey.keys(), ...keysOf(finalReads)])].sort()) {
    const mutations = byKey.get(key) ?? [];
    const ok = mutations.filter((m) => m.outcome === 'ok');
    const latestOkInvoke = ok.reduce((t, m) => Math.max(t, m.invokeMs), -Infinity);
    const superseded = (m: Op) =>
      m.outcome === 'ok' && m.completeMs !== null && latestOkInvoke > m.completeMs;
    const live = mutations.filter((m) => !superseded(m));
    const allowed = new Set<string | null>(live.map(mutatedValue));
    if (ok.length === 0) allowed.add(null);
    const actual = lookup(finalReads, key) ?? null;
    if (allowed.has(actual)) continue;
    const lost = live.filter((m) => m.outcome === 'ok');
    if (lost.length > 0) {
      violations.push({
        kind: 'lost-write',
        key,
        message: `key ${JSON.stringify(key)} reads ${show(actual)} after healing, but the last acknowledged ${
          lost.length === 1 ? 'write was' : 'writes were (any one of)'
        } ${lost.map((m) => `op ${m.id} (${describeOp(m)})`).join(', ')}`,
        ops: lost,
      });
    } else {
      violations.push({
        kind: 'unexpected-final-value',
        key,
        message: `key ${JSON.stringify(key)} reads ${show(actual)} after healing, which no acknowledged or indeterminate op could have left there`,
      });
    }
  }

  if (replicaStates.length > 1) {
    const [first, ...rest] = replicaStates;
    for (const other of rest) {
      const a = first!.state;
      const b = other.state;
      if (typeof a === 'string' || typeof b === 'string') {
        if (a !== b) {
          violations.push({
            kind: 'replica-divergence',
            message: `node ${other.node}'s state ${typeof b === 'string' ? `hash ${b}` : '(a map)'} differs from node ${first!.node}'s ${typeof a === 'string' ? `hash ${a}` : '(a map)'}`,
            nodes: [first!.node, other.node],
          });
        }
        continue;
      }
      const differing: string[] = [];
      for (const key of new Set([...keysOf(a), ...keysOf(b)])) {
        if ((lookup(a, key) ?? null) !== (lookup(b, key) ?? null)) differing.push(key);
      }
      if (differing.length > 0) {
        differing.sort();
        const shown = differing
          .slice(0, 5)
          .map((k) => `${JSON.stringify(k)}: ${show(lookup(a, k))} vs ${show(lookup(b, k))}`);
        violations.push({
          kind: 'replica-divergence',
          message: `node ${other.node} differs from node ${first!.node} on ${differing.length} key(s): ${shown.join('; ')}${differing.length > 5 ? '; …' : ''}`,
          nodes: [first!.node, other.node],
        });
      }
    }
  }
  return violations;
}

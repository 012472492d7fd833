// Loading a snapshot's store payload into the replica's state: the meta frame (ids,
// schedules, peers, the effects hash), the objects (migrated if older), their indexes.
import { debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { packr } from '../format/entry.js';
import { SNAPSHOT_FORMAT_READ, fromRows, notePatched } from '../format/snapshot.js';
import type { Schedule } from '../jobs.js';
import { applyPatches, freezeDeep, type Patch } from '../plain-data.js';
import {
  SortedIndex,
  PersistentSortedIndex,
  type IndexKey,
  type Id,
} from '../sorted-index/index.js';
import { seal } from './access.js';
import { addToIndex, clearIndex, type CollectionImpl, type IndexImpl } from './collection.js';
import { initialEffects } from './effects.js';
import { StringTable } from './key-map.js';
import type { ReplicaState } from './state-machine.js';
import { freezeStored, markExotic } from './stored.js';
import { objectCount } from './capture.js';
import { installIndexes, type Versions } from './versions.js';

/** What a snapshot held besides the state itself. */
export interface Restored {
  baseIndex: number;
  /** The snapshot's frames, reusable as the next snapshot's base; null when objects were migrated (serialise again). */
  baseChunks: Uint8Array[] | null;
  /** The entries after the capture: [index, term, payload]. */
  tail: [number, number, Uint8Array][];
}

type Rec = { t: string; [k: string]: any };
type MetaCollections = Record<string, { version: number; nextId: number; size?: number }>;

// Indexes built in one go after the last frame: the (key, id) pairs of each sorted and
// persistent index, and the string keys of unique indexes with their hashes (taken while
// the strings are fresh).
interface PendingIndexes {
  ordered: Map<IndexImpl, { keys: IndexKey[]; ids: Id[] }>;
  strings: Map<IndexImpl, { hashes: Int32Array; n: number; keys: string[]; values: unknown[] }>;
}

/** What restoring the frames has learned so far. */
interface Progress {
  baseIndex: number;
  baseChunks: Uint8Array[];
  tail: [number, number, Uint8Array][];
  versions: Map<string, number>;
  migrated: boolean;
  pending: PendingIndexes;
  // Chunks spread over several frames (see keepFrame).
  spread: Map<CollectionImpl, Set<number>>;
}

/**
 * Replaces the state by a verified snapshot's frames (each kept as is for the next snapshot,
 * no copy, its CRC known). Throws PREVAIL_SNAPSHOT_UNREADABLE for what this code can't read.
 */
export function restoreFrames(
  state: ReplicaState,
  frames: Uint8Array[],
  chunkSize: number,
  versions: Versions,
): Restored {
  clearState(state);
  const started = performance.now();
  const p: Progress = {
    baseIndex: 0,
    baseChunks: [],
    tail: [],
    versions: new Map(),
    migrated: false,
    pending: { ordered: new Map(), strings: new Map() },
    spread: new Map(),
  };
  for (const framed of frames) {
    const rec = packr.unpack(framed.subarray(4)) as Rec;
    if (rec.t === 'meta') {
      restoreMeta(state, rec, p, versions);
      p.baseChunks.push(framed);
    } else if (rec.t === 'objs') {
      restoreObjects(state, rec, framed, chunkSize, p);
      p.baseChunks.push(framed);
    } else if (rec.t === 'tail') {
      p.tail = rec.entries;
    }
  }
  buildPending(p.pending);
  debug(
    'restored %d objects of the snapshot at index %d in %d ms',
    objectCount(state),
    p.baseIndex,
    Math.round(performance.now() - started),
  );
  return { baseIndex: p.baseIndex, baseChunks: p.migrated ? null : p.baseChunks, tail: p.tail };
}

// The schema state as of the snapshot (one from before schema versions ran version 1), and
// the indexes of its active version. Code that can't run that version refuses it here.
function restoreSchema(state: ReplicaState, saved: Rec['schema'], versions: Versions): void {
  const active = Number.isSafeInteger(saved?.active) ? (saved.active as number) : 1;
  versions.checkNotTooOld(active);
  state.schema = {
    active,
    activations: Array.isArray(saved?.activations) ? saved.activations : [],
    support: new Map(Array.isArray(saved?.support) ? saved.support : []),
  };
  const version = versions.get(active);
  if (version) installIndexes(state.collections, version); // else: nothing here runs before a later activation
}

function clearState(state: ReplicaState): void {
  for (const c of state.collections.values()) {
    c.objects.clear();
    c.frames = [];
    c.nextId = 1;
    for (const ix of c.indexes) clearIndex(ix);
  }
  state.lastTimestamp = 0;
}

function restoreMeta(state: ReplicaState, rec: Rec, p: Progress, versions: Versions): void {
  if (rec.format > SNAPSHOT_FORMAT_READ) {
    throw new PrevailError(
      ErrorCodes.SNAPSHOT_UNREADABLE,
      `store snapshot format ${rec.format} is newer than this code (${SNAPSHOT_FORMAT_READ})`,
    );
  }
  p.baseIndex = rec.baseIndex;
  state.lastTimestamp = rec.lastTimestamp;
  state.effects = Array.isArray(rec.effects) ? [rec.effects[0], rec.effects[1]] : initialEffects();
  state.checkpoints = [];
  state.peers = new Map(rec.peers ?? []);
  const schedules = (
    rec.xs ? applyPatches(rec.schedules, rec.xs) : (rec.schedules ?? [])
  ) as Schedule[];
  state.schedules = new Map(schedules.map((s) => [s.id, { ...s, args: freezeDeep(s.args) }]));
  restoreSchema(state, rec.schema, versions);
  for (const [name, info] of Object.entries(rec.collections as MetaCollections)) {
    const c = state.collections.get(name);
    if (!c)
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `snapshot has collection ${name}, which this code does not define`,
      );
    if (info.version > c.version) {
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `snapshot has ${name} at version ${info.version}; this code reads up to ${c.version}`,
      );
    }
    p.versions.set(name, info.version);
    c.nextId = info.nextId;
    for (const ix of c.indexes) {
      if (ix.unique)
        p.pending.strings.set(ix, {
          hashes: new Int32Array(Math.max(16, typeof info.size === 'number' ? info.size : 0)),
          n: 0,
          keys: [],
          values: [],
        });
    }
  }
}

function restoreObjects(
  state: ReplicaState,
  rec: Rec,
  framed: Uint8Array,
  chunkSize: number,
  p: Progress,
): void {
  const c = state.collections.get(rec.c)!;
  const from = p.versions.get(c.name) ?? c.version;
  if (from < c.version && !c.migrate) {
    throw new PrevailError(
      ErrorCodes.SNAPSHOT_UNREADABLE,
      `${c.name} objects are at version ${from} and there is no migrate()`,
    );
  }
  const items = frameItems(rec, framed);
  for (let i = 0; i < items.length; i++) {
    let obj = items[i];
    if (from < c.version) {
      obj = items[i] = { ...(c.migrate!(obj, from) as object), id: obj.id };
      seal(c, obj.id, obj);
    } else freezeStored(obj, true);
    c.objects.set(obj.id, obj);
  }
  if (items.length && from === c.version) keepFrame(c, items, framed, chunkSize, p.spread);
  for (const ix of c.indexes) indexItems(ix, items, p.pending);
  if (from < c.version) p.migrated = true;
}

// An objs frame's objects, made exact again where msgpack alone changed them.
function frameItems(rec: Rec, framed: Uint8Array): any[] {
  const items = (
    Array.isArray(rec.shapes) ? fromRows(rec.shapes, rec.items, rec.values) : rec.items
  ) as any[];
  if (Array.isArray(rec.x)) {
    for (const [i, patches] of rec.x as [number, Patch[]][])
      markExotic((items[i] = applyPatches(items[i], patches) as object));
    notePatched(framed);
  }
  return items;
}

// Frames that hold exactly one chunk of ids (as captures write them) are kept as that
// chunk's frame, so the next capture need not serialise it again; a chunk spread over
// several frames (older snapshots group objects by count) is serialised again.
function keepFrame(
  c: CollectionImpl,
  items: { id: number }[],
  framed: Uint8Array,
  chunkSize: number,
  spread: Map<CollectionImpl, Set<number>>,
): void {
  let lo = Infinity;
  let hi = -1;
  for (let i = 0; i < items.length; i++) {
    const k = Math.floor(items[i]!.id / chunkSize);
    if (k < lo) lo = k;
    if (k > hi) hi = k;
  }
  const spreadHere = spread.get(c) ?? spread.set(c, new Set()).get(c)!;
  if (lo === hi && c.frames[hi] === undefined && !spreadHere.has(hi)) c.frames[hi] = framed;
  else
    for (let k = lo; k <= hi; k++) {
      spreadHere.add(k);
      c.frames[k] = undefined;
    }
}

// Ordered indexes and unique string keys are collected for the end (see PendingIndexes); the others indexed now.
function indexItems(ix: IndexImpl, items: any[], pending: PendingIndexes): void {
  const pairs =
    ix.sorted || ix.persistent
      ? (pending.ordered.get(ix) ?? pending.ordered.set(ix, { keys: [], ids: [] }).get(ix)!)
      : null;
  const strings = ix.unique ? pending.strings.get(ix) : undefined;
  for (let i = 0; i < items.length; i++) {
    const obj = items[i];
    const key = ix.key(obj);
    if (key === undefined) continue;
    if (pairs) {
      pairs.keys.push(key);
      pairs.ids.push(obj.id);
    } else if (strings && typeof key === 'string') {
      if (strings.n === strings.hashes.length) {
        const grown = new Int32Array(strings.n * 2);
        grown.set(strings.hashes);
        strings.hashes = grown;
      }
      strings.hashes[strings.n++] = StringTable.hash(key);
      strings.keys.push(key);
      strings.values.push(obj);
    } else addToIndex(ix, key, obj.id, obj);
  }
}

function buildPending(pending: PendingIndexes): void {
  for (const [ix, { hashes, n, keys, values }] of pending.strings)
    ix.unique!.loadStrings(hashes.subarray(0, n), keys, values);
  for (const [ix, { keys, ids }] of pending.ordered) {
    if (ix.sorted) ix.sorted = SortedIndex.fromPairs(keys, ids);
    else ix.persistent = PersistentSortedIndex.fromPairs(keys, ids);
  }
}

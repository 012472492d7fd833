// Background captures of the whole state, and the engine snapshots made of them: the last
// completed capture (the base) plus the entries applied after it (the tail).
import type { EventEmitter } from 'node:events';

import { debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { packr } from '../format/entry.js';
import { SnapshotFormat, crcOf, formatFor, frame, objsFrame } from '../format/snapshot.js';
import { EncodedTail } from '../format/tail.js';
import { patchesOf } from '../plain-data.js';
import type { Id } from '../sorted-index/index.js';
import { chunkObjects, type CollectionImpl } from './collection.js';
import type { ReplicaState } from './state-machine.js';
import { exoticPatches } from './stored.js';

export interface CaptureOptions {
  /** Entries between captures at least (they grow with the state). */
  captureEvery: number;
  /** Objects serialised per slice at most. */
  sliceSize: number;
  /** Entries between engine snapshots at least (they grow with the state). */
  snapshotThreshold: number;
}

// Longest run of capture work per turn of the event loop (ms).
const SLICE_MS = 0.25;

/** One collection's part of a capture in progress. */
interface CaptureList {
  c: CollectionImpl;
  // The objects' versions as of the capture, saved by writeObject the first time one changes.
  overlay: Map<Id, any>;
  limit: number;
  // Each chunk's frame: reused (unchanged since the last capture) or to be made (in `work`).
  out: (Uint8Array | null | undefined)[];
  work: number[];
}

/**
 * The snapshot header for the state now: as of `index`, with each collection's version
 * and next id. A function of the frames that follow it: their format (formatFor).
 */
export function metaRecord(
  state: ReplicaState,
  index: number,
): (frames: Uint8Array[]) => Uint8Array {
  // `size` (objects in the collection) lets restore size its tables up front; optional.
  const collections = Object.fromEntries(
    [...state.collections.values()].map((c) => [
      c.name,
      { version: c.version, nextId: c.nextId, size: c.objects.size },
    ]),
  );
  const schedules = [...state.schedules.values()];
  const xs = patchesOf(schedules);
  const rec = {
    t: 'meta',
    format: SnapshotFormat.ROWS as number,
    baseIndex: index,
    lastTimestamp: state.lastTimestamp,
    collections,
    effects: [...state.effects],
    peers: [...state.peers],
    schema: {
      active: state.schema.active,
      activations: state.schema.activations.map((a) => [...a]),
      support: [...state.schema.support].map(([id, range]) => [id, [...range]]),
    },
    schedules,
    ...(xs.length ? { xs } : {}),
  };
  return (frames) => {
    rec.format = formatFor(frames, xs.length > 0, rec.schema.active > 1);
    return frame(packr.pack(rec));
  };
}

/** The whole state as of now, serialised at once (restore, after migrating objects). */
export function serializeAll(state: ReplicaState, index: number, chunkSize: number): Uint8Array[] {
  const meta = metaRecord(state, index);
  const chunks: Uint8Array[] = [];
  for (const c of state.collections.values()) {
    c.frames = [];
    for (let k = 0; k * chunkSize < c.objects.limit; k++) {
      const items = chunkObjects(c, k, chunkSize, c.objects.limit, null);
      const f = items.length ? objsFrame(c.name, items, exoticPatches) : null;
      c.frames[k] = f;
      if (f) chunks.push(f);
    }
  }
  chunks.unshift(meta(chunks));
  return chunks;
}

export function objectCount(state: ReplicaState): number {
  let objects = 0;
  for (const c of state.collections.values()) objects += c.objects.size;
  return objects;
}

// Starts one capture: each collection's chunks, the unchanged ones' frames reused.
function captureLists(state: ReplicaState, chunkSize: number): CaptureList[] {
  return [...state.collections.values()].map((c) => {
    const overlay = new Map<Id, any>();
    c.overlays.add(overlay);
    const limit = c.objects.limit;
    const out: (Uint8Array | null | undefined)[] = [];
    const work: number[] = [];
    for (let k = 0; k * chunkSize < limit; k++) {
      out.push(c.frames[k]);
      if (c.frames[k] === undefined) work.push(k);
    }
    return { c, overlay, limit, out, work };
  });
}

// The capture's frames in order; keeps the new frames of chunks no command touched
// meanwhile as their collection's frames (the rest are stale again).
function collectFrames(lists: CaptureList[], chunkSize: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (const { c, overlay, out, work } of lists) {
    const touched = new Set<number>();
    for (const id of overlay.keys()) touched.add(Math.floor((id as number) / chunkSize));
    for (const k of work) if (!touched.has(k)) c.frames[k] = out[k];
    for (const f of out) if (f) chunks.push(f);
  }
  return chunks;
}

/** Where a capture in progress is: the list, the position in its work, objects serialised so far. */
interface Cursor {
  list: number;
  work: number;
  serialised: number;
}

// One slice of a capture: chunks serialised until the slice's time or object budget is spent.
function serialiseSlice(
  lists: CaptureList[],
  cursor: Cursor,
  chunkSize: number,
  sliceSize: number,
): void {
  let budget = sliceSize;
  const until = performance.now() + SLICE_MS;
  while (cursor.list < lists.length && budget > 0 && performance.now() < until) {
    const { c, overlay, limit, out, work } = lists[cursor.list]!;
    if (cursor.work >= work.length) {
      cursor.list++;
      cursor.work = 0;
      continue;
    }
    const k = work[cursor.work++]!;
    const items = chunkObjects(c, k, chunkSize, limit, overlay);
    out[k] = items.length ? objsFrame(c.name, items, exoticPatches) : null;
    budget -= Math.min(limit, (k + 1) * chunkSize) - k * chunkSize;
    cursor.serialised += items.length;
  }
}

/**
 * The capture side of the state machine. Capturing re-serialises the whole state, so its
 * interval grows with the state (amortised, like an append-only-file rewrite at 100%
 * growth): entries between captures ≥ objects/4, and the engine's snapshot interval ≥
 * objects/2 — this is the one place that decides it (snapshotThreshold()).
 */
export class Capture {
  /** Ids per snapshot frame (see CollectionImpl.frames). */
  readonly chunkSize: number;
  readonly #state: ReplicaState;
  readonly #events: EventEmitter;
  readonly #options: CaptureOptions;
  #base: { index: number; chunks: Uint8Array[] };
  #tail = new EncodedTail();
  #running: Promise<number> | null = null;
  // Bumped by every restore: a capture started before it describes a state that is gone.
  #generation = 0;
  #lastCaptureEnd = -Infinity;
  #interval: number;
  // The term of the last entry applied (0 until one is, after a start).
  #lastTerm = 0;

  /** `events` gets 'capture' ({ index, durationMs, serialised }) and 'captureError'. */
  constructor(state: ReplicaState, events: EventEmitter, options: CaptureOptions) {
    this.#state = state;
    this.#events = events;
    this.#options = options;
    this.#interval = options.captureEvery;
    this.chunkSize = Math.max(1, Math.min(512, options.sliceSize));
    // The state at index 0: empty, every collection at its first id.
    this.#base = { index: 0, chunks: [metaRecord(state, 0)([])] };
  }

  /** Notes an entry being applied: it belongs to the tail until a capture covers it. */
  append(index: number, term: number, payload: Uint8Array): void {
    this.#tail.push(index, term, payload);
    this.#lastTerm = term;
  }

  /** The term of the last entry applied, or 0 when none has been since the process started. */
  get lastTerm(): number {
    return this.#lastTerm;
  }

  /** Starts a background capture once the tail is long enough (none is running). */
  startIfDue(): void {
    if (this.#running !== null || this.#tail.length < this.#interval) return;
    this.start().catch((err: unknown) => {
      // The previous capture stays the base; the tail keeps growing until one succeeds.
      debug('background capture failed: %s', (err as Error)?.message);
      this.#events.emit('captureError', err);
    });
  }

  /** After a restore: the snapshot's state is the base; a capture in progress is abandoned. */
  reset(base: { index: number; chunks: Uint8Array[] }): void {
    this.#generation++;
    this.#running = null;
    this.#tail.clear();
    this.#base = base;
  }

  // The engine's snapshot: the last completed capture plus the entries after it (the
  // tail holds only those). No serialisation here: the capture's frames were made in
  // slices, the tail's bytes and CRC as entries were applied (format/tail.ts).
  snapshotBytes(): Uint8Array[] {
    const tail = this.#tail.frame();
    const crcs = [...this.#base.chunks.map(crcOf), tail.crc];
    return [...this.#base.chunks, ...tail.pieces, frame(packr.pack({ t: 'end', crcs }))];
  }

  /** How many entries the engine should let accumulate before a snapshot, for the state now. */
  snapshotThreshold(): number {
    return Math.max(this.#options.snapshotThreshold, Math.floor(objectCount(this.#state) / 2));
  }

  status(): { baseIndex: number; tail: number; running: boolean } {
    return {
      baseIndex: this.#base.index,
      tail: this.#tail.length,
      running: this.#running !== null,
    };
  }

  /**
   * Starts (or joins) a background capture of the state at the current applied index.
   * Incremental: a chunk of ids whose objects did not change since the last capture keeps
   * its frame; only changed chunks are serialised again, in slices of ~0.25 ms (or
   * captureSliceSize objects) per turn of the event loop, so commits keep flowing.
   */
  start(): Promise<number> {
    if (this.#running) return this.#running;
    const index = this.#state.appliedIndex;
    const generation = this.#generation;
    const started = performance.now();
    const lists = captureLists(this.#state, this.chunkSize);
    const meta = metaRecord(this.#state, index);
    const cursor: Cursor = { list: 0, work: 0, serialised: 0 };
    const finish = () => {
      for (const { c, overlay } of lists) c.overlays.delete(overlay);
      if (generation === this.#generation) this.#running = null;
      this.#lastCaptureEnd = performance.now();
    };
    this.#running = new Promise<number>((resolve, reject) => {
      let applied = this.#state.appliedIndex;
      const slice = () => {
        if (generation !== this.#generation) {
          finish();
          reject(
            new PrevailError(
              ErrorCodes.INVALID_STATE,
              `capture at ${index} superseded by a snapshot restore`,
            ),
          );
          return;
        }
        try {
          serialiseSlice(lists, cursor, this.chunkSize, this.#options.sliceSize);
          if (cursor.list < lists.length) {
            // While commands are being applied, the next slice waits for a timer (>= 1 ms),
            // so commits get most of the loop; when idle, it runs right away.
            if (this.#state.appliedIndex !== applied) {
              applied = this.#state.appliedIndex;
              setTimeout(slice, 1);
            } else setImmediate(slice);
            return;
          }
          finish();
          const chunks = collectFrames(lists, this.chunkSize);
          chunks.unshift(meta(chunks));
          this.#completed(index, chunks, performance.now() - started, cursor.serialised);
          resolve(index);
        } catch (err) {
          finish();
          reject(err);
        }
      };
      // A capture starting right after the previous one ended (captureNow() in a loop) waits
      // for a timer, so back-to-back captures run about once a millisecond at most instead
      // of on every turn of the event loop.
      if (performance.now() - this.#lastCaptureEnd < 1) setTimeout(slice, 1);
      else setImmediate(slice);
    });
    return this.#running;
  }

  // A capture is the new base; the entries it covers leave the tail, and the intervals follow the state's size.
  #completed(index: number, chunks: Uint8Array[], durationMs: number, serialised: number): void {
    this.#base = { index, chunks };
    this.#tail.dropThrough(index);
    this.adaptInterval();
    debug(
      'captured state at index %d in %d ms (%d frames, %d objects serialised)',
      index,
      Math.round(durationMs),
      chunks.length,
      serialised,
    );
    this.#events.emit('capture', { index, durationMs, serialised });
  }

  /** Entries between captures follow the state's size (see the class comment). */
  adaptInterval(): void {
    this.#interval = Math.max(this.#options.captureEvery, Math.floor(objectCount(this.#state) / 4));
  }
}

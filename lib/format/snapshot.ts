// The store's snapshot payload: what restore reads and captures write, for the store and
// for `prevail inspect`. (The engine-level header around it, PVS1, is native/'s.)
//
// A payload is frames, each `[u32 little-endian length][msgpack record]`, in this order:
// - `meta`: { format, baseIndex, lastTimestamp, collections: { name: { version, nextId, size } },
//   effects, peers, schema?, schedules, xs? } — the state's header as of baseIndex;
// - `objs`: { c: collection, shapes, items, values, x? } — objects as rows (objsFrame);
// - `tail`: { entries: [index, term, payload][] } — the entries applied after the capture;
// - `end`: { crcs } — each earlier frame's CRC-32 (verifySnapshot).
import { crc32 } from 'node:zlib';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import type { Patch } from '../plain-data.js';
import { packr } from './entry.js';

/**
 * Snapshot formats (meta's `format`):
 * - 1: objs frames hold one map per object (still read).
 * - 2: objs frames hold rows (shapes + values): a third smaller, 2-3 times faster to decode.
 * - 3: objs frames may carry `x`, [item, patches] pairs, and meta `xs`, the schedules'
 *   patches (plain-data.ts). Written only when some value needs them, so older code
 *   refuses such a snapshot instead of restoring values that differ.
 * - 4: as 3, with meta `schema` { active, activations, support } at an active schema version
 *   above 1: written only then, so code from before schema versions refuses it (it would
 *   apply later entries with the wrong handlers). Meta `schema` at version 1 is read by all.
 */
export const SnapshotFormat = { MAPS: 1, ROWS: 2, EXACT: 3, VERSIONED: 4 } as const;
/** The newest format this code reads. */
export const SNAPSHOT_FORMAT_READ = SnapshotFormat.VERSIONED;

/** The format a snapshot made of these frames must declare (see SnapshotFormat). */
export function formatFor(
  frames: readonly Uint8Array[],
  metaPatches: boolean,
  versioned = false,
): number {
  if (versioned) return SnapshotFormat.VERSIONED;
  return metaPatches || frames.some((f) => patchedFrames.has(f))
    ? SnapshotFormat.EXACT
    : SnapshotFormat.ROWS;
}

/** Notes that a frame read from a snapshot carries patches (for formatFor, when it is reused). */
export function notePatched(frame: Uint8Array): void {
  patchedFrames.add(frame);
}
const patchedFrames = new WeakSet<Uint8Array>();

/**
 * A snapshot frame of objects, as rows: `shapes` lists each distinct key list once, `items`
 * gives each object's shape (so its length is the number of objects, what `prevail inspect`
 * counts) and `values` all their values, object after object. Against one map per object
 * this is a third smaller and packs 1.5-2 times and unpacks 2-3 times faster (no key strings
 * per object to write, decode and intern; two arrays per frame, not one per object).
 */
export function objsFrame(
  collection: string,
  objects: unknown[],
  patchesFor: (o: object) => Patch[] | null,
): Uint8Array {
  const shapes: string[][] = [];
  const shapeOf = new Map<string, number>(); // key list (joined) -> its index in shapes
  const items: number[] = new Array(objects.length);
  const values: unknown[] = [];
  const x: [number, Patch[]][] = []; // the exact values of the few objects that need them (plain-data.ts)
  let keys: string[] | null = null;
  let shape = -1;
  for (let i = 0; i < objects.length; i++) {
    const o = objects[i] as Record<string, unknown>;
    // Usually every object has the previous one's keys: checked without allocating.
    let same = keys !== null;
    if (same) {
      let n = 0;
      for (const k in o) {
        if (k !== keys![n++]) {
          same = false;
          break;
        }
      }
      if (n !== keys!.length) same = false;
    }
    if (!same) {
      keys = Object.keys(o);
      const sig = keys.join('\u0000');
      const known = shapeOf.get(sig);
      if (known === undefined) shapeOf.set(sig, (shape = shapes.push(keys) - 1));
      else shape = known;
    }
    items[i] = shape;
    for (let k = 0; k < keys!.length; k++) values.push(o[keys![k]!]);
    const patches = patchesFor(o);
    if (patches) x.push([i, patches]);
  }
  if (x.length === 0) return frame(packr.pack({ t: 'objs', c: collection, shapes, items, values }));
  const f = frame(packr.pack({ t: 'objs', c: collection, shapes, items, values, x }));
  patchedFrames.add(f);
  return f;
}

// Object builders by key list: `(v, at) => ({ k1: v[at], k2: v[at + 1], ... })`, compiled once
// per shape (an object literal is the fastest way to make objects of one layout); at most
// MAX_BUILDERS of them, then a generic loop.
type Builder = (v: unknown[], at: number) => object;
const builders = new Map<string, Builder>();
const MAX_BUILDERS = 1000;

function builderFor(keys: string[]): Builder {
  const sig = keys.join('\u0000');
  let build = builders.get(sig);
  if (build) return build;
  if (builders.size < MAX_BUILDERS && !keys.includes('__proto__')) {
    build = new Function(
      'v',
      'at',
      `return { ${keys.map((k, i) => `${JSON.stringify(k)}: v[at + ${i}]`).join(', ')} };`,
    ) as Builder;
    builders.set(sig, build);
  } else {
    build = (v, at) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++)
        Object.defineProperty(o, keys[i]!, {
          value: v[at + i],
          writable: true,
          enumerable: true,
          configurable: true,
        });
      return o;
    };
  }
  return build;
}

/**
 * The objects of a rows frame (see objsFrame). Also reads the first rows layout, without
 * `values`: each item was [shape, ...its values].
 */
export function fromRows(
  shapes: string[][],
  items: unknown[],
  values: unknown[] | undefined,
): object[] {
  const build = shapes.map(builderFor);
  const out: object[] = new Array(items.length);
  if (values === undefined) {
    for (let i = 0; i < items.length; i++) {
      const row = items[i] as unknown[];
      out[i] = build[row[0] as number]!(row, 1);
    }
    return out;
  }
  let at = 0;
  for (let i = 0; i < items.length; i++) {
    const shape = items[i] as number;
    out[i] = build[shape]!(values, at);
    at += shapes[shape]!.length;
  }
  return out;
}

/**
 * The `tail` frame for these entries: the msgpack of `{ t: 'tail', entries: [[index, term,
 * payload], ...] }`, written by hand (the same bytes any msgpack reader decodes as that
 * record). msgpackr took about a second on the loop thread for the 300k entries a large
 * state's tail can hold, and the engine asks for the snapshot synchronously; this is a
 * size pass and a copy, about 20 times faster. The store goes further and keeps its tail
 * encoded as entries are applied (tail.ts, the same bytes), so a snapshot copies nothing.
 */
export function tailFrame(
  entries: readonly { index: number; term: number; payload: Uint8Array }[],
): Uint8Array {
  let size = TAIL_HEAD.length + 4;
  for (const e of entries) size += tailEntrySize(e);
  const out = Buffer.allocUnsafe(4 + size);
  let at = writeTailHead(out, size, entries.length);
  for (const e of entries) at = writeTailEntry(out, at, e);
  frameCrcs.set(out, crc32(out));
  return out;
}

// `{ t: 'tail', entries: <array 32 of …> }` up to the array's length.
const TAIL_HEAD = [
  0x82, 0xa1, 0x74, 0xa4, 0x74, 0x61, 0x69, 0x6c, 0xa7, 0x65, 0x6e, 0x74, 0x72, 0x69, 0x65, 0x73,
  0xdd,
];
/** Bytes before a tail frame's first entry: the length prefix, TAIL_HEAD and the entry count. */
export const TAIL_HEAD_BYTES = 4 + TAIL_HEAD.length + 4;

/** Writes a tail frame's first TAIL_HEAD_BYTES, for `size` bytes after the prefix and `count` entries; returns the next offset. */
export function writeTailHead(out: Buffer, size: number, count: number): number {
  out.writeUInt32LE(size, 0);
  let at = 4;
  for (const b of TAIL_HEAD) out[at++] = b;
  out.writeUInt32BE(count, at);
  return at + 4;
}

/** The bytes of one entry of a tail frame: [index, term, payload]. */
export function tailEntrySize(e: { index: number; term: number; payload: Uint8Array }): number {
  return (
    1 + uintSize(e.index) + uintSize(e.term) + binHeaderSize(e.payload.length) + e.payload.length
  );
}

/** Writes one entry of a tail frame at `at`; returns the offset after it. */
export function writeTailEntry(
  out: Buffer,
  at: number,
  e: { index: number; term: number; payload: Uint8Array },
): number {
  out[at++] = 0x93; // fixarray of 3
  at = writeUint(out, at, e.index);
  at = writeUint(out, at, e.term);
  const n = e.payload.length;
  if (n < 0x100) {
    out[at++] = 0xc4;
    out[at++] = n;
  } else if (n < 0x10000) {
    out[at++] = 0xc5;
    out.writeUInt16BE(n, at);
    at += 2;
  } else {
    out[at++] = 0xc6;
    out.writeUInt32BE(n, at);
    at += 4;
  }
  out.set(e.payload, at);
  return at + n;
}

// msgpack's unsigned ints; a float64 from 2^32 on (exact for every safe integer, as msgpackr reads it).
function uintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < 0x100000000 ? 5 : 9;
}
function writeUint(out: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    out[at] = v;
    return at + 1;
  }
  if (v < 0x100) {
    out[at] = 0xcc;
    out[at + 1] = v;
    return at + 2;
  }
  if (v < 0x10000) {
    out[at] = 0xcd;
    out.writeUInt16BE(v, at + 1);
    return at + 3;
  }
  if (v < 0x100000000) {
    out[at] = 0xce;
    out.writeUInt32BE(v, at + 1);
    return at + 5;
  }
  out[at] = 0xcb;
  out.writeDoubleBE(v, at + 1);
  return at + 9;
}
function binHeaderSize(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

export function frame(bytes: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32LE(bytes.length, 0);
  out.set(bytes, 4);
  frameCrcs.set(out, crc32(out)); // now, while it is being made: snapshots then only look it up
  return out;
}

// Each frame's CRC-32, so a snapshot can end with the list and restore can refuse a damaged
// one (the engine checksums its log, not snapshot data). Frames are kept and reused across
// captures, so their CRC is computed once.
const frameCrcs = new WeakMap<Uint8Array, number>();
export function crcOf(framed: Uint8Array): number {
  let crc = frameCrcs.get(framed);
  if (crc === undefined) {
    crc = crc32(framed);
    frameCrcs.set(framed, crc);
  }
  return crc;
}

/** A payload's frames (length prefix included); PREVAIL_SNAPSHOT_UNREADABLE if cut. */
export function splitFrames(buf: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    if (at + 4 > buf.length)
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `store snapshot cut inside a frame header at byte ${at}`,
      );
    const len = buf.readUInt32LE(at);
    if (at + 4 + len > buf.length)
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `store snapshot frame at byte ${at} runs past the end`,
      );
    frames.push(buf.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  return frames;
}

/**
 * Checks a snapshot's frames against its closing 'end' frame (absent in snapshots written
 * before it existed: those are read unchecked). Throws PREVAIL_SNAPSHOT_UNREADABLE before
 * anything is restored. Returns the frames (length prefix included) for restore to read.
 */
export function verifySnapshot(buf: Buffer): Buffer[] {
  const frames = splitFrames(buf);
  const last = frames.at(-1);
  let end: { t?: string; crcs?: number[] } | undefined;
  try {
    end = last ? (packr.unpack(last.subarray(4)) as typeof end) : undefined;
  } catch {
    end = undefined;
  }
  if (end?.t !== 'end') return frames; // an older snapshot: no checksums to check
  const crcs = end.crcs ?? [];
  if (crcs.length !== frames.length - 1) {
    throw new PrevailError(
      ErrorCodes.SNAPSHOT_UNREADABLE,
      `store snapshot has ${frames.length - 1} frames, its checksum list ${crcs.length}`,
    );
  }
  for (let i = 0; i < crcs.length; i++) {
    const crc = crc32(frames[i]!);
    if (crc !== crcs[i]) {
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `store snapshot frame ${i} (at byte ${frames[i]!.byteOffset - buf.byteOffset}) fails its CRC-32: damaged`,
      );
    }
    frameCrcs.set(frames[i]!, crc);
  }
  return frames;
}

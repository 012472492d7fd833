// The readers of a data dir's files, offline — the engine's metadata, log segments
// and snapshots, our entry and snapshot framing, the store's commands — and rebuilds the
// state at a chosen index. Read-only: it opens files for reading and nothing else.
//
// The on-disk format is raft 0.22.1's libuv backend (third_party/raft/src: uv_segment.c,
// uv_encoding.c, uv_snapshot.c, uv_metadata.c, uv_list.c, configuration.c). All integers
// are little endian.
import { readFile } from 'node:fs/promises';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { decodeEntry, packr } from '../format/entry.js';
import { splitFrames } from '../format/snapshot.js';
import { hexOf } from '../store/effects.js';

import {
  type InspectedEntry,
  type InspectedMember,
  type InspectedSegment,
  type InspectedSnapshot,
} from './results.js';
import {
  ENTRY_MAGIC,
  HEADER_SIZE,
  SNAPSHOT_HEADER_FORMAT,
  SNAPSHOT_MAGIC,
} from '../format/framing.js';

export const DISK_FORMAT = 1; // first u64 of segments, metadata and snapshot .meta
export const MAX_BATCH_ENTRIES = (8 * 1024 * 1024) / 32; // the engine's own bound on a batch's entry count
export const MAX_CONFIGURATION_SIZE = 1024 * 1024;
export { ENTRY_MAGIC, HEADER_SIZE, SNAPSHOT_MAGIC };
export const LZ4_MAGIC = 0x184d2204;
export const HEX_LIMIT = 256;

export const ENTRY_TYPES = { 1: 'command', 2: 'barrier', 3: 'configuration' } as const;
export const ROLES = ['standby', 'voter', 'spare'] as const;

// The engine's CRC-32 (libiberty's): polynomial 0x04c11db7, most significant bit first,
// initial value 0, no final xor.
export const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array, init = 0): number {
  let crc = init >>> 0;
  for (let i = 0; i < buf.length; i++)
    crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ buf[i]!) & 255]!) >>> 0;
  return crc;
}

export function u64(buf: Buffer, at: number): number {
  const v = buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
  return v;
}

export function hex(bytes: Uint8Array, limit = HEX_LIMIT): { hex: string; truncated: boolean } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, limit));
  return { hex: b.toString('hex'), truncated: bytes.length > limit };
}

export function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export function corrupt(path: string, offset: number, what: string): PrevailError {
  return new PrevailError(ErrorCodes.CORRUPT_ENTRY, `${path}: at byte ${offset}: ${what}`);
}

export function unreadableSnapshot(path: string, offset: number, what: string): PrevailError {
  return new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `${path}: at byte ${offset}: ${what}`);
}

/** A configuration as configuration.c encodes it (format byte, count, id/address/role each). */
export function decodeConfiguration(
  buf: Buffer,
  fail: (offset: number, what: string) => PrevailError,
): InspectedMember[] {
  if (buf.length < 9) throw fail(0, `configuration of ${buf.length} bytes is too short`);
  if (buf[0] !== 1) throw fail(0, `configuration encoding format ${buf[0]} is unknown`);
  const n = u64(buf, 1);
  const members: InspectedMember[] = [];
  let at = 9;
  for (let i = 0; i < n; i++) {
    if (at + 8 > buf.length) throw fail(at, `configuration ends inside server ${i + 1} of ${n}`);
    const id = u64(buf, at);
    at += 8;
    const end = buf.indexOf(0, at);
    if (end < 0) throw fail(at, `configuration: server ${id}'s address is not terminated`);
    const address = buf.toString('utf8', at, end);
    at = end + 1;
    if (at >= buf.length) throw fail(at, `configuration ends before server ${id}'s role`);
    const code = buf[at++]!;
    members.push({ id, address, role: ROLES[code] ?? `unknown(${code})` });
  }
  return members;
}

/** The offset of the next 8-byte aligned position from `from` where a batch with a valid header checksum starts, or -1. */
export function nextValidBatch(buf: Buffer, from: number): number {
  let last = buf.length - 1;
  while (last >= from && buf[last] === 0) last--;
  for (let p = from + ((8 - (from % 8)) % 8); p + 32 <= last + 1; p += 8) {
    const n = u64(buf, p + 8);
    if (n === 0 || n > MAX_BATCH_ENTRIES || p + 16 + 16 * n > buf.length) continue;
    if (crc32(buf.subarray(p + 8, p + 16 + 16 * n)) === buf.readUInt32LE(p)) return p;
  }
  return -1;
}

export interface RawEntry {
  index: number;
  term: number;
  type: 1 | 2 | 3;
  data: Buffer;
  file: string;
  offset: number;
}

export interface ParsedSegment {
  info: InspectedSegment;
  entries: RawEntry[];
}

/**
 * One segment file: u64 format, then batches of
 * [u32 header crc][u32 data crc][u64 n][n × (u64 term, u8 type, 3 unused, u32 length)][data],
 * the header crc over the n and the entry headers, the data crc over the entries' bytes.
 */
export function parseSegment(
  path: string,
  file: string,
  buf: Buffer,
  open: boolean,
  firstIndex: number,
  live: boolean,
  warnings: string[],
): ParsedSegment {
  const info: InspectedSegment = {
    file,
    open,
    firstIndex,
    lastIndex: firstIndex - 1,
    entries: 0,
    batches: 0,
    size: buf.length,
    usedBytes: 0,
  };
  const entries: RawEntry[] = [];
  if (!hasBatches(path, buf, open)) return { info, entries };
  let at = 8;
  let index = firstIndex;
  while (at < buf.length) {
    const batch = readBatch(buf, at);
    if (typeof batch === 'string') {
      damagedBatch(path, buf, at, batch, open, live, warnings);
      break;
    }
    let cursor = batch.headerEnd;
    for (const h of batch.heads) {
      entries.push({
        index: index++,
        term: h.term,
        type: h.type as 1 | 2 | 3,
        data: buf.subarray(cursor, cursor + h.len),
        file,
        offset: cursor,
      });
      cursor += h.len + ((8 - (h.len % 8)) % 8);
    }
    info.batches++;
    at = batch.dataEnd;
  }
  info.usedBytes = at;
  info.entries = entries.length;
  info.lastIndex = index - 1;
  if (!open) checkSegmentName(path, file, firstIndex, info.lastIndex, at);
  return { info, entries };
}

/** False for an open segment the engine never wrote (removed or allocated only); throws on a bad format. */
function hasBatches(path: string, buf: Buffer, open: boolean): boolean {
  if (buf.length === 0) {
    if (open) return false; // the engine removes it
    throw corrupt(path, 0, 'closed segment is empty');
  }
  if (buf.length < 8) throw corrupt(path, 0, `segment has only ${buf.length} bytes`);
  const format = u64(buf, 0);
  if (format !== DISK_FORMAT) {
    if (open && format === 0 && allZero(buf, 8)) return false; // allocated, never written
    throw corrupt(path, 0, `segment format ${format} is not ${DISK_FORMAT}`);
  }
  return true;
}

/** A closed segment's name says its last index: the entries in it must agree. */
function checkSegmentName(
  path: string,
  file: string,
  firstIndex: number,
  lastIndex: number,
  at: number,
): void {
  const named = Number(file.split('-')[1]);
  if (lastIndex !== named) {
    throw corrupt(
      path,
      at,
      `segment named for entries ${firstIndex}..${named} holds ${lastIndex - firstIndex + 1} (${firstIndex}..${lastIndex})`,
    );
  }
}

/**
 * A damaged batch at `batchAt`. In a closed segment it is corruption. In an open segment a
 * damaged batch ends the log: the engine truncates there on start. If nothing that checks out
 * as a batch follows, it is the last write, left unfinished by a crash (normal; reported as a
 * warning). A valid batch after it means damage in the middle of the log: reported as
 * corruption (unless a live node may be writing).
 */
function damagedBatch(
  path: string,
  buf: Buffer,
  batchAt: number,
  what: string,
  open: boolean,
  live: boolean,
  warnings: string[],
): void {
  if (!open) throw corrupt(path, batchAt, what);
  if (allZero(buf, batchAt)) return; // the zero-filled rest of a preallocated segment
  const after = nextValidBatch(buf, batchAt + 8);
  if (live || after < 0) {
    warnings.push(
      `${path}: at byte ${batchAt}: ${what}; an unfinished last write — the engine drops it on start`,
    );
    return;
  }
  throw corrupt(
    path,
    batchAt,
    `${what} (a valid batch follows at byte ${after}: not an unfinished write)`,
  );
}

interface EntryHead {
  term: number;
  type: number;
  len: number;
}

interface Batch {
  heads: EntryHead[];
  headerEnd: number;
  dataEnd: number;
}

/**
 * The batch at `at`: [u32 header crc][u32 data crc][u64 n][n entry headers][data], or what is
 * wrong with it.
 */
function readBatch(buf: Buffer, at: number): Batch | string {
  if (at + 16 > buf.length)
    return `truncated batch preamble (${buf.length - at} bytes left, 16 needed)`;
  const headerCrc = buf.readUInt32LE(at);
  const dataCrc = buf.readUInt32LE(at + 4);
  const n = u64(buf, at + 8);
  if (n === 0) return 'batch with zero entries';
  if (n > MAX_BATCH_ENTRIES) return `batch claims ${n} entries`;
  const headerLen = 8 + 16 * n;
  const headerEnd = at + 8 + headerLen;
  if (headerEnd > buf.length)
    return `truncated batch header: ${headerLen} bytes needed, ${buf.length - at - 8} left`;
  const headerActual = crc32(buf.subarray(at + 8, headerEnd));
  if (headerActual !== headerCrc)
    return `batch header checksum mismatch (stored ${headerCrc.toString(16)}, computed ${headerActual.toString(16)})`;
  const { heads, dataLen, badType } = readEntryHeads(buf, at, n);
  if (badType >= 0) return `entry type ${badType} is not command, barrier or configuration`;
  const dataEnd = headerEnd + dataLen;
  if (dataEnd > buf.length)
    return `truncated batch data: ${dataLen} bytes needed, ${buf.length - headerEnd} left`;
  const dataActual = crc32(buf.subarray(headerEnd, dataEnd));
  if (dataActual !== dataCrc)
    return `batch data checksum mismatch (stored ${dataCrc.toString(16)}, computed ${dataActual.toString(16)})`;
  return { heads, headerEnd, dataEnd };
}

/** A batch's n entry headers (u64 term, u8 type, 3 unused, u32 length); the last bad type, or -1. */
function readEntryHeads(
  buf: Buffer,
  at: number,
  n: number,
): { heads: EntryHead[]; dataLen: number; badType: number } {
  const heads: EntryHead[] = [];
  let dataLen = 0;
  let badType = -1;
  for (let i = 0; i < n; i++) {
    const h = at + 16 + 16 * i;
    const term = u64(buf, h);
    const type = buf[h + 8]!;
    const len = buf.readUInt32LE(h + 12);
    if (type < 1 || type > 3) badType = type;
    heads.push({ term, type, len });
    dataLen += len;
  }
  return { heads, dataLen, badType };
}

/** A snapshot's .meta: u64 format, u64 crc (low 32 bits), u64 configuration index, u64 length, configuration. */
export function parseSnapshotMeta(
  path: string,
  buf: Buffer,
): { configurationIndex: number; configuration: InspectedMember[] } {
  if (buf.length < 32)
    throw unreadableSnapshot(
      path,
      buf.length,
      `metadata truncated: ${buf.length} bytes, at least 32 needed`,
    );
  const format = u64(buf, 0);
  if (format !== DISK_FORMAT)
    throw unreadableSnapshot(path, 0, `metadata format ${format} is not ${DISK_FORMAT}`);
  const stored = buf.readUInt32LE(8);
  const configurationIndex = u64(buf, 16);
  const len = u64(buf, 24);
  if (len === 0 || len > MAX_CONFIGURATION_SIZE)
    throw unreadableSnapshot(path, 24, `configuration length ${len} is out of range`);
  if (32 + len > buf.length)
    throw unreadableSnapshot(
      path,
      buf.length,
      `metadata truncated: configuration of ${len} bytes needs ${32 + len}, file has ${buf.length}`,
    );
  const conf = buf.subarray(32, 32 + len);
  const actual = crc32(conf, crc32(buf.subarray(16, 32)));
  if (actual !== stored) {
    throw unreadableSnapshot(
      path,
      8,
      `metadata checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`,
    );
  }
  return {
    configurationIndex,
    configuration: decodeConfiguration(conf, (o, w) => unreadableSnapshot(path, 32 + o, w)),
  };
}

/** The snapshot data: our PVS1 header (magic, format, u64 payload length), then the payload. */
export function parseSnapshotData(path: string, buf: Buffer): { format: number; payload: Buffer } {
  if (buf.length >= 4 && buf.readUInt32LE(0) === LZ4_MAGIC) {
    throw unreadableSnapshot(
      path,
      0,
      'the snapshot is LZ4-compressed; prevail writes them uncompressed',
    );
  }
  if (buf.length < HEADER_SIZE)
    throw unreadableSnapshot(
      path,
      buf.length,
      `truncated: ${buf.length} bytes, the header alone is ${HEADER_SIZE}`,
    );
  if (buf.readUInt32LE(0) !== SNAPSHOT_MAGIC)
    throw unreadableSnapshot(path, 0, 'not a prevail snapshot (no PVS1 header)');
  const format = buf.readUInt32LE(4);
  if (format !== SNAPSHOT_HEADER_FORMAT)
    throw unreadableSnapshot(
      path,
      4,
      `snapshot format ${format}; this code reads ${SNAPSHOT_HEADER_FORMAT}`,
    );
  const length = u64(buf, 8);
  if (length !== buf.length - HEADER_SIZE) {
    throw unreadableSnapshot(
      path,
      buf.length,
      `truncated: the header says ${length} payload bytes, the file has ${buf.length - HEADER_SIZE}`,
    );
  }
  return { format, payload: buf.subarray(HEADER_SIZE) };
}

/** The store's frames ([u32 length][msgpack]) summarised; null when the payload isn't a store's. */
export function summariseStorePayload(payload: Buffer): InspectedSnapshot['store'] {
  try {
    let summary: NonNullable<InspectedSnapshot['store']> | null = null;
    for (const framed of splitFrames(payload)) {
      const rec = packr.unpack(framed.subarray(4)) as { t?: unknown; [k: string]: any };
      if (summary === null) {
        if (rec?.t !== 'meta') return null;
        const collections: NonNullable<InspectedSnapshot['store']>['collections'] = {};
        for (const [name, c] of Object.entries(
          (rec.collections ?? {}) as Record<string, { version: number; nextId: number }>,
        )) {
          collections[name] = { version: c.version, nextId: c.nextId, objects: 0 };
        }
        summary = {
          baseIndex: rec.baseIndex,
          lastTimestamp: rec.lastTimestamp,
          collections,
          tailEntries: 0,
          effects: Array.isArray(rec.effects) ? hexOf([rec.effects[0], rec.effects[1]]) : null,
        };
      } else if (rec?.t === 'objs') {
        const c = (summary.collections[rec.c] ??= { version: 0, nextId: 0, objects: 0 });
        c.objects += (rec.items as unknown[]).length;
      } else if (rec?.t === 'tail') {
        summary.tailEntries += (rec.entries as unknown[]).length;
      }
    }
    return summary;
  } catch {
    return null;
  }
}

/** A command's data: PVE1 framing, then (when it decodes as one) the store command. */
export function decodeCommand(entry: InspectedEntry, data: Buffer): Buffer | null {
  if (
    data.length < HEADER_SIZE ||
    data.readUInt32LE(0) !== ENTRY_MAGIC ||
    data.readUInt32LE(4) > data.length - HEADER_SIZE
  ) {
    entry.framing = null;
    entry.problem = 'not a prevail entry (no PVE1 framing)';
    entry.payload = { length: data.length, ...hex(data) };
    return null;
  }
  const length = data.readUInt32LE(4);
  entry.framing = { length, term: u64(data, 8) };
  const payload = data.subarray(HEADER_SIZE, HEADER_SIZE + length);
  const decoded = decodeEntry(payload);
  if (typeof decoded === 'string') entry.payload = { length, ...hex(payload) };
  else if (decoded.type === 'command')
    entry.command = { name: decoded.name, args: decoded.args, timestamp: decoded.proposedAt };
  // The store's own entries (e.g. a peer announcing its channel).
  else
    entry.store = {
      format: decoded.format,
      kind: decoded.kind,
      data: decoded.data,
      timestamp: decoded.proposedAt,
    };
  return payload;
}

export async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PrevailError(ErrorCodes.IO, `${path}: ${(err as Error).message}`, { cause: err });
  }
}

export const CLOSED_RE = /^(\d{16})-(\d{16})$/;
export const OPEN_RE = /^open-(\d+)$/;
export const SNAPSHOT_META_RE = /^snapshot-(\d+)-(\d+)-(\d+)\.meta$/;
export const SNAPSHOT_RE = /^snapshot-(\d+)-(\d+)-(\d+)$/;

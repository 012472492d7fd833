// `prevail inspect DIR`: reads a data dir offline — the engine's metadata, log segments
// and snapshots, our entry and snapshot framing, the store's commands — and rebuilds the
// state at a chosen index. Read-only: it opens files for reading and nothing else.
//
// The on-disk format is raft 0.22.1's libuv backend (third_party/raft/src: uv_segment.c,
// uv_encoding.c, uv_snapshot.c, uv_metadata.c, uv_list.c, configuration.c). All integers
// are little endian.
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { ErrorCodes, PrevailError, isPrevailError, type ErrorCode } from './errors.js';
import { pidAlive } from './raft-node.js';
import { decodeEntry, packr } from './format/entry.js';
import { splitFrames } from './format/snapshot.js';
import { Store, type Schema } from './store.js';


const DISK_FORMAT = 1;                           // first u64 of segments, metadata and snapshot .meta
const MAX_BATCH_ENTRIES = (8 * 1024 * 1024) / 32; // the engine's own bound on a batch's entry count
const MAX_CONFIGURATION_SIZE = 1024 * 1024;
const ENTRY_MAGIC = 0x31455650;                  // "PVE1" (native/engine.cc)
const SNAPSHOT_MAGIC = 0x31535650;               // "PVS1"
const SNAPSHOT_FORMAT = 1;
const HEADER_SIZE = 16;
const LZ4_MAGIC = 0x184d2204;
const HEX_LIMIT = 256;

const ENTRY_TYPES = { 1: 'command', 2: 'barrier', 3: 'configuration' } as const;
const ROLES = ['standby', 'voter', 'spare'] as const;

// ---- results --------------------------------------------------------------------

export interface InspectOptions {
  /** Rebuild the state as of this log index (needs `schema`). */
  at?: number;
  /** List entries from this index (default: the first on disk). */
  from?: number;
  /** List entries up to this index (default: the last on disk). */
  to?: number;
  /** A `defineSchema` result: needed for `at`. */
  schema?: Schema<any, any>;
}

export interface InspectedMember {
  id: number;
  address: string;
  role: 'voter' | 'standby' | 'spare' | `unknown(${number})`;
}

export interface InspectedSnapshot {
  file: string;
  metaFile: string;
  term: number;
  index: number;
  /** The engine's clock when it was written (from the file name). */
  timestamp: number;
  size: number;
  configurationIndex: number;
  configuration: InspectedMember[];
  /** prevail's PVS1 header: its format and payload length. */
  format: number;
  payloadLength: number;
  /** The store's frames, when the payload is an object store's snapshot. */
  store: {
    baseIndex: number;
    lastTimestamp: number;
    collections: Record<string, { version: number; nextId: number; objects: number }>;
    /** Entries after the base capture carried in the snapshot (re-applied on restore). */
    tailEntries: number;
  } | null;
}

export interface InspectedSegment {
  file: string;
  open: boolean;
  firstIndex: number;
  lastIndex: number;
  entries: number;
  batches: number;
  size: number;
  /** Bytes holding batches (an open segment is preallocated and zero-filled after them). */
  usedBytes: number;
}

export interface InspectedEntry {
  index: number;
  term: number;
  type: 'command' | 'barrier' | 'configuration';
  /** The entry's length in the log (with our framing and padding). */
  length: number;
  file: string;
  /** Byte offset of the entry's data in `file`. */
  offset: number;
  /** PVE1 framing of a command: the true payload length and the term it was appended in. */
  framing?: { length: number; term: number } | null;
  /** A store command. */
  command?: { name: string; args: unknown; timestamp: number };
  /** One of the store's own entries (not a user command), e.g. `peer` (a member's channel address). */
  store?: { format: number; kind: string; data: unknown; timestamp: number };
  /** A payload that is neither. */
  payload?: { length: number; hex: string; truncated: boolean };
  /** The members, for a configuration change. */
  configuration?: InspectedMember[];
  /** When replayed for `state`, the handler's error (the command changed nothing). */
  handlerError?: string;
  /** Something is off with this entry (it would stop a node that applies it). */
  problem?: string;
}

export interface InspectedState {
  index: number;
  /** The snapshot the state was rebuilt from (null: from an empty state and the log). */
  snapshot: string | null;
  /** Log entries applied after it. */
  appliedEntries: number;
  collections: Record<string, unknown[]>;
  stateHash: string;
  /** Commands whose handler threw when replayed (they changed nothing, as in the live node). */
  handlerErrors: { index: number; message: string }[];
}

export interface InspectResult {
  dir: string;
  /** prevail-node.json. */
  node: { id: number; address?: string; format?: number } | null;
  /** prevail.lock: the pid that holds it and whether that process is alive. */
  lock: { pid: number; live: boolean } | null;
  warnings: string[];
  /** The engine's metadata file in use: current term and vote. */
  metadata: { file: string; version: number; term: number; votedFor: number } | null;
  snapshots: InspectedSnapshot[];
  segments: InspectedSegment[];
  /** First and last index in the log on disk (0 when the log is empty). */
  firstIndex: number;
  lastIndex: number;
  /** The listed entries (`from`..`to`). */
  entries: InspectedEntry[];
  /** The latest configuration at `at` (or at the end of the log), and where it came from. */
  configuration: { index: number; source: string; members: InspectedMember[] } | null;
  state: InspectedState | null;
  /** Files the engine does not read (temporary snapshots, renamed corrupt segments, …). */
  otherFiles: string[];
}

// ---- low-level readers ------------------------------------------------------------

// The engine's CRC-32 (libiberty's): polynomial 0x04c11db7, most significant bit first,
// initial value 0, no final xor.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array, init = 0): number {
  let crc = init >>> 0;
  for (let i = 0; i < buf.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ buf[i]!) & 255]!) >>> 0;
  return crc;
}

function u64(buf: Buffer, at: number): number {
  const v = buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
  return v;
}

function hex(bytes: Uint8Array, limit = HEX_LIMIT): { hex: string; truncated: boolean } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, limit));
  return { hex: b.toString('hex'), truncated: bytes.length > limit };
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function corrupt(path: string, offset: number, what: string): PrevailError {
  return new PrevailError(ErrorCodes.CORRUPT_ENTRY, `${path}: at byte ${offset}: ${what}`);
}

function unreadableSnapshot(path: string, offset: number, what: string): PrevailError {
  return new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `${path}: at byte ${offset}: ${what}`);
}

/** A configuration as configuration.c encodes it (format byte, count, id/address/role each). */
function decodeConfiguration(buf: Buffer, fail: (offset: number, what: string) => PrevailError): InspectedMember[] {
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
function nextValidBatch(buf: Buffer, from: number): number {
  let last = buf.length - 1;
  while (last >= from && buf[last] === 0) last--;
  for (let p = from + ((8 - (from % 8)) % 8); p + 32 <= last + 1; p += 8) {
    const n = u64(buf, p + 8);
    if (n === 0 || n > MAX_BATCH_ENTRIES || p + 16 + 16 * n > buf.length) continue;
    if (crc32(buf.subarray(p + 8, p + 16 + 16 * n)) === buf.readUInt32LE(p)) return p;
  }
  return -1;
}

interface RawEntry {
  index: number;
  term: number;
  type: 1 | 2 | 3;
  data: Buffer;
  file: string;
  offset: number;
}

interface ParsedSegment {
  info: InspectedSegment;
  entries: RawEntry[];
}

/**
 * One segment file: u64 format, then batches of
 * [u32 header crc][u32 data crc][u64 n][n × (u64 term, u8 type, 3 unused, u32 length)][data],
 * the header crc over the n and the entry headers, the data crc over the entries' bytes.
 */
function parseSegment(path: string, file: string, buf: Buffer, open: boolean, firstIndex: number, live: boolean,
  warnings: string[]): ParsedSegment {
  const info: InspectedSegment = { file, open, firstIndex, lastIndex: firstIndex - 1, entries: 0, batches: 0, size: buf.length, usedBytes: 0 };
  const entries: RawEntry[] = [];
  if (buf.length === 0) {
    if (open) return { info, entries };  // the engine removes it
    throw corrupt(path, 0, 'closed segment is empty');
  }
  if (buf.length < 8) throw corrupt(path, 0, `segment has only ${buf.length} bytes`);
  const format = u64(buf, 0);
  if (format !== DISK_FORMAT) {
    if (open && format === 0 && allZero(buf, 8)) return { info, entries };  // allocated, never written
    throw corrupt(path, 0, `segment format ${format} is not ${DISK_FORMAT}`);
  }
  let at = 8;
  let index = firstIndex;
  // In an open segment a damaged batch ends the log: the engine truncates there on start.
  // If nothing that checks out as a batch follows, it is the last write, left unfinished
  // by a crash (normal; reported as a warning). A valid batch after it means damage in
  // the middle of the log: reported as corruption (unless a live node may be writing).
  const damagedOpen = (batchAt: number, what: string): boolean => {
    if (!open) throw corrupt(path, batchAt, what);
    if (allZero(buf, batchAt)) return true;  // the zero-filled rest of a preallocated segment
    const after = nextValidBatch(buf, batchAt + 8);
    if (live || after < 0) {
      warnings.push(`${path}: at byte ${batchAt}: ${what}; an unfinished last write — the engine drops it on start`);
      return true;
    }
    throw corrupt(path, batchAt, `${what} (a valid batch follows at byte ${after}: not an unfinished write)`);
  };
  while (at < buf.length) {
    const batchAt = at;
    if (at + 16 > buf.length) {
      if (damagedOpen(batchAt, `truncated batch preamble (${buf.length - at} bytes left, 16 needed)`)) break;
    }
    const headerCrc = buf.readUInt32LE(at);
    const dataCrc = buf.readUInt32LE(at + 4);
    const n = u64(buf, at + 8);
    if (n === 0) {
      if (damagedOpen(batchAt, 'batch with zero entries')) break;
    }
    if (n > MAX_BATCH_ENTRIES) {
      if (damagedOpen(batchAt, `batch claims ${n} entries`)) break;
    }
    const headerLen = 8 + 16 * n;
    const headerEnd = at + 8 + headerLen;
    if (headerEnd > buf.length) {
      if (damagedOpen(batchAt, `truncated batch header: ${headerLen} bytes needed, ${buf.length - at - 8} left`)) break;
    }
    const header = buf.subarray(at + 8, headerEnd);
    const headerActual = crc32(header);
    if (headerActual !== headerCrc) {
      if (damagedOpen(batchAt, `batch header checksum mismatch (stored ${headerCrc.toString(16)}, computed ${headerActual.toString(16)})`)) break;
    }
    const heads: { term: number; type: number; len: number }[] = [];
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
    if (badType >= 0) {
      if (damagedOpen(batchAt, `entry type ${badType} is not command, barrier or configuration`)) break;
    }
    const dataEnd = headerEnd + dataLen;
    if (dataEnd > buf.length) {
      if (damagedOpen(batchAt, `truncated batch data: ${dataLen} bytes needed, ${buf.length - headerEnd} left`)) break;
    }
    const data = buf.subarray(headerEnd, dataEnd);
    const dataActual = crc32(data);
    if (dataActual !== dataCrc) {
      if (damagedOpen(batchAt, `batch data checksum mismatch (stored ${dataCrc.toString(16)}, computed ${dataActual.toString(16)})`)) break;
    }
    let cursor = headerEnd;
    for (const h of heads) {
      entries.push({ index: index++, term: h.term, type: h.type as 1 | 2 | 3, data: buf.subarray(cursor, cursor + h.len), file, offset: cursor });
      cursor += h.len + ((8 - (h.len % 8)) % 8);
    }
    info.batches++;
    at = dataEnd;
  }
  info.usedBytes = at;
  info.entries = entries.length;
  info.lastIndex = index - 1;
  if (!open) {
    const expected = info.lastIndex;
    const named = Number(file.split('-')[1]);
    if (expected !== named) {
      throw corrupt(path, at, `segment named for entries ${firstIndex}..${named} holds ${entries.length} (${firstIndex}..${expected})`);
    }
  }
  return { info, entries };
}

/** A snapshot's .meta: u64 format, u64 crc (low 32 bits), u64 configuration index, u64 length, configuration. */
function parseSnapshotMeta(path: string, buf: Buffer): { configurationIndex: number; configuration: InspectedMember[] } {
  if (buf.length < 32) throw unreadableSnapshot(path, buf.length, `metadata truncated: ${buf.length} bytes, at least 32 needed`);
  const format = u64(buf, 0);
  if (format !== DISK_FORMAT) throw unreadableSnapshot(path, 0, `metadata format ${format} is not ${DISK_FORMAT}`);
  const stored = buf.readUInt32LE(8);
  const configurationIndex = u64(buf, 16);
  const len = u64(buf, 24);
  if (len === 0 || len > MAX_CONFIGURATION_SIZE) throw unreadableSnapshot(path, 24, `configuration length ${len} is out of range`);
  if (32 + len > buf.length) throw unreadableSnapshot(path, buf.length, `metadata truncated: configuration of ${len} bytes needs ${32 + len}, file has ${buf.length}`);
  const conf = buf.subarray(32, 32 + len);
  const actual = crc32(conf, crc32(buf.subarray(16, 32)));
  if (actual !== stored) {
    throw unreadableSnapshot(path, 8, `metadata checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`);
  }
  return { configurationIndex, configuration: decodeConfiguration(conf, (o, w) => unreadableSnapshot(path, 32 + o, w)) };
}

/** The snapshot data: our PVS1 header (magic, format, u64 payload length), then the payload. */
function parseSnapshotData(path: string, buf: Buffer): { format: number; payload: Buffer } {
  if (buf.length >= 4 && buf.readUInt32LE(0) === LZ4_MAGIC) {
    throw unreadableSnapshot(path, 0, 'the snapshot is LZ4-compressed; prevail writes them uncompressed');
  }
  if (buf.length < HEADER_SIZE) throw unreadableSnapshot(path, buf.length, `truncated: ${buf.length} bytes, the header alone is ${HEADER_SIZE}`);
  if (buf.readUInt32LE(0) !== SNAPSHOT_MAGIC) throw unreadableSnapshot(path, 0, 'not a prevail snapshot (no PVS1 header)');
  const format = buf.readUInt32LE(4);
  if (format !== SNAPSHOT_FORMAT) throw unreadableSnapshot(path, 4, `snapshot format ${format}; this code reads ${SNAPSHOT_FORMAT}`);
  const length = u64(buf, 8);
  if (length !== buf.length - HEADER_SIZE) {
    throw unreadableSnapshot(path, buf.length, `truncated: the header says ${length} payload bytes, the file has ${buf.length - HEADER_SIZE}`);
  }
  return { format, payload: buf.subarray(HEADER_SIZE) };
}

/** The store's frames ([u32 length][msgpack]) summarised; null when the payload isn't a store's. */
function summariseStorePayload(payload: Buffer): InspectedSnapshot['store'] {
  try {
    let summary: NonNullable<InspectedSnapshot['store']> | null = null;
    for (const framed of splitFrames(payload)) {
      const rec = packr.unpack(framed.subarray(4)) as { t?: unknown; [k: string]: any };
      if (summary === null) {
        if (rec?.t !== 'meta') return null;
        const collections: NonNullable<InspectedSnapshot['store']>['collections'] = {};
        for (const [name, c] of Object.entries((rec.collections ?? {}) as Record<string, { version: number; nextId: number }>)) {
          collections[name] = { version: c.version, nextId: c.nextId, objects: 0 };
        }
        summary = { baseIndex: rec.baseIndex, lastTimestamp: rec.lastTimestamp, collections, tailEntries: 0 };
      } else if (rec?.t === 'objs') {
        const c = summary.collections[rec.c] ??= { version: 0, nextId: 0, objects: 0 };
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
function decodeCommand(entry: InspectedEntry, data: Buffer): Buffer | null {
  if (data.length < HEADER_SIZE || data.readUInt32LE(0) !== ENTRY_MAGIC || data.readUInt32LE(4) > data.length - HEADER_SIZE) {
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
  else if (!decoded.system) entry.command = { name: decoded.name, args: decoded.args, timestamp: decoded.proposedAt };
  // The store's own entries (e.g. a peer announcing its channel).
  else entry.store = { format: decoded.format, kind: decoded.name, data: decoded.args, timestamp: decoded.proposedAt };
  return payload;
}

async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PrevailError(ErrorCodes.IO, `${path}: ${(err as Error).message}`, { cause: err });
  }
}

const CLOSED_RE = /^(\d{16})-(\d{16})$/;
const OPEN_RE = /^open-(\d+)$/;
const SNAPSHOT_META_RE = /^snapshot-(\d+)-(\d+)-(\d+)\.meta$/;
const SNAPSHOT_RE = /^snapshot-(\d+)-(\d+)-(\d+)$/;

// ---- the inspection -------------------------------------------------------------

/**
 * Reads a data dir (of a stopped node, or a copy) and describes it: snapshots, segments,
 * entries with their decoded commands, the configuration, and with `at` + `schema` the
 * store's state at that index. Corrupt or truncated files raise PREVAIL_CORRUPT_ENTRY /
 * PREVAIL_SNAPSHOT_UNREADABLE naming the file and byte offset.
 */
export async function inspectDataDir(dir: string, options: InspectOptions = {}): Promise<InspectResult> {
  const { at, from, to, schema } = options;
  for (const [name, v] of Object.entries({ at, from, to })) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `${name} must be a non-negative integer`);
    }
  }
  if (at !== undefined && !schema) throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'the state at an index needs a schema');
  if (schema && (typeof schema.collections !== 'object' || typeof schema.commands !== 'object')) {
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'schema must come from defineSchema({ collections, commands })');
  }
  const root = resolve(dir);
  let names: string[];
  try {
    names = (await readdir(root)).sort();
  } catch (err) {
    throw new PrevailError(ErrorCodes.IO, `cannot read data dir ${root}: ${(err as Error).message}`, { cause: err });
  }
  const result: InspectResult = {
    dir: root, node: null, lock: null, warnings: [], metadata: null, snapshots: [], segments: [],
    firstIndex: 0, lastIndex: 0, entries: [], configuration: null, state: null, otherFiles: [],
  };
  const warnings = result.warnings;

  // Our own files: the identity and the lock.
  const identity = await readOrNull(join(root, 'prevail-node.json'));
  if (identity) {
    try {
      result.node = JSON.parse(identity.toString('utf8')) as InspectResult['node'];
    } catch (err) {
      warnings.push(`prevail-node.json is unreadable: ${(err as Error).message}`);
    }
  } else {
    warnings.push('no prevail-node.json: not a prevail data dir, or never started');
  }
  const lock = await readOrNull(join(root, 'prevail.lock'));
  if (lock) {
    const pid = Number(lock.toString('utf8').trim());
    const live = Number.isInteger(pid) && pid > 0 && pidAlive(pid);
    result.lock = { pid, live };
    if (live) warnings.push(`prevail.lock: process ${pid} holds this data dir and is alive; the log's tail may be in flux`);
  }
  const live = result.lock?.live ?? false;

  // metadata1/metadata2: u64 format, version, term, voted_for; the higher version wins.
  const metas: NonNullable<InspectResult['metadata']>[] = [];
  for (const file of ['metadata1', 'metadata2']) {
    const path = join(root, file);
    const buf = await readOrNull(path);
    if (!buf) continue;
    if (buf.length < 32) {
      warnings.push(`${file}: ${buf.length} bytes, an interrupted write (the engine ignores it)`);
      continue;
    }
    if (buf.length > 32) throw corrupt(path, 32, `metadata file has ${buf.length} bytes instead of 32`);
    const format = u64(buf, 0);
    if (format !== DISK_FORMAT) throw corrupt(path, 0, `metadata format ${format} is not ${DISK_FORMAT}`);
    const version = u64(buf, 8);
    if (version === 0) throw corrupt(path, 8, 'metadata version is zero');
    metas.push({ file, version, term: u64(buf, 16), votedFor: u64(buf, 24) });
  }
  if (metas.length === 2 && metas[0]!.version === metas[1]!.version) {
    throw corrupt(join(root, 'metadata2'), 8, `metadata1 and metadata2 are both at version ${metas[0]!.version}`);
  }
  result.metadata = metas.sort((a, b) => b.version - a.version)[0] ?? null;

  // Classify the files.
  const closed: { file: string; first: number; last: number }[] = [];
  const openSegs: { file: string; counter: number }[] = [];
  const snapshotFiles = new Set<string>();
  const snapMetas: { file: string; term: number; index: number; timestamp: number }[] = [];
  for (const name of names) {
    let m: RegExpExecArray | null;
    if (name === 'metadata1' || name === 'metadata2' || name === 'prevail-node.json' || name === 'prevail.lock') continue;
    if ((m = CLOSED_RE.exec(name))) closed.push({ file: name, first: Number(m[1]), last: Number(m[2]) });
    else if ((m = OPEN_RE.exec(name))) openSegs.push({ file: name, counter: Number(m[1]) });
    else if ((m = SNAPSHOT_META_RE.exec(name))) snapMetas.push({ file: name, term: Number(m[1]), index: Number(m[2]), timestamp: Number(m[3]) });
    else if (SNAPSHOT_RE.test(name)) snapshotFiles.add(name);
    else result.otherFiles.push(name);
  }

  // Snapshots: a .meta with a non-empty data file next to it (uv_snapshot.c).
  snapMetas.sort((a, b) => a.term - b.term || a.index - b.index || a.timestamp - b.timestamp);
  const payloads = new Map<InspectedSnapshot, Buffer>();
  for (const s of snapMetas) {
    const dataFile = s.file.slice(0, -'.meta'.length);
    if (!snapshotFiles.has(dataFile)) {
      warnings.push(`${s.file} has no data file: an unfinished snapshot (the engine ignores it)`);
      continue;
    }
    snapshotFiles.delete(dataFile);
    const dataPath = join(root, dataFile);
    const metaBuf = await readOrNull(join(root, s.file));
    const dataBuf = await readOrNull(dataPath);
    if (!metaBuf || !dataBuf) {
      if (live) { warnings.push(`${s.file} went away while being read`); continue; }
      throw unreadableSnapshot(dataBuf ? join(root, s.file) : dataPath, 0, 'file disappeared');
    }
    if (dataBuf.length === 0) {
      warnings.push(`${dataFile} is empty: an unfinished snapshot (the engine ignores it)`);
      continue;
    }
    const meta = parseSnapshotMeta(join(root, s.file), metaBuf);
    const { format, payload } = parseSnapshotData(dataPath, dataBuf);
    const snap: InspectedSnapshot = {
      file: dataFile, metaFile: s.file, term: s.term, index: s.index, timestamp: s.timestamp, size: dataBuf.length,
      configurationIndex: meta.configurationIndex, configuration: meta.configuration, format, payloadLength: payload.length,
      store: summariseStorePayload(payload),
    };
    payloads.set(snap, payload);
    result.snapshots.push(snap);
  }
  for (const orphan of snapshotFiles) warnings.push(`${orphan} has no .meta: not a complete snapshot (the engine ignores it)`);
  const newestSnapshot = result.snapshots.at(-1);

  // Segments: closed ones in index order, then open ones by counter (uv_segment.c).
  closed.sort((a, b) => a.first - b.first);
  openSegs.sort((a, b) => a.counter - b.counter);
  const raw: RawEntry[] = [];
  let next = closed.length > 0 ? closed[0]!.first : (newestSnapshot ? newestSnapshot.index + 1 : 1);
  for (const seg of closed) {
    const path = join(root, seg.file);
    if (seg.first > seg.last) throw corrupt(path, 0, `segment name ${seg.file} has first index after last`);
    if (seg.first !== next) {
      warnings.push(`${seg.file}: expected a segment starting at ${next}; entries ${next}..${seg.first - 1} are missing ` +
        '(the engine keeps only the contiguous segments after the snapshot)');
      raw.length = 0;  // only the contiguous run ending at the newest segment counts
    }
    const buf = await readOrNull(path);
    if (!buf) {
      if (live) { warnings.push(`${seg.file} went away while being read`); continue; }
      throw corrupt(path, 0, 'file disappeared');
    }
    const parsed = parseSegment(path, seg.file, buf, false, seg.first, live, warnings);
    result.segments.push(parsed.info);
    for (const e of parsed.entries) raw.push(e);
    next = seg.last + 1;
  }
  for (const seg of openSegs) {
    const path = join(root, seg.file);
    const buf = await readOrNull(path);
    if (!buf) continue;
    const parsed = parseSegment(path, seg.file, buf, true, next, live, warnings);
    result.segments.push(parsed.info);
    for (const e of parsed.entries) raw.push(e);
    next = parsed.info.lastIndex + 1;
  }
  result.firstIndex = raw.length > 0 ? raw[0]!.index : 0;
  result.lastIndex = raw.length > 0 ? raw.at(-1)!.index : 0;
  if (newestSnapshot && raw.length > 0 && result.lastIndex < newestSnapshot.index) {
    warnings.push(`the last entry on disk (${result.lastIndex}) is behind the newest snapshot (${newestSnapshot.index})`);
  }
  if (newestSnapshot && raw.length > 0 && result.firstIndex > newestSnapshot.index + 1) {
    warnings.push(`the log starts at ${result.firstIndex}, after the newest snapshot (${newestSnapshot.index}) + 1: entries are missing`);
  }
  const lastKnown = Math.max(result.lastIndex, newestSnapshot?.index ?? 0);

  // The listed entries.
  const lo = from ?? 0;
  const hi = to ?? Number.MAX_SAFE_INTEGER;
  const describe = (e: RawEntry): InspectedEntry => {
    const entry: InspectedEntry = { index: e.index, term: e.term, type: ENTRY_TYPES[e.type], length: e.data.length, file: e.file, offset: e.offset };
    if (e.type === 1) decodeCommand(entry, e.data);
    else if (e.type === 3) {
      try {
        entry.configuration = decodeConfiguration(e.data, (o, w) => corrupt(join(root, e.file), e.offset + o, `entry ${e.index}: ${w}`));
      } catch (err) {
        entry.problem = (err as Error).message;
        entry.payload = { length: e.data.length, ...hex(e.data) };
      }
    }
    return entry;
  };
  const listed = new Map<number, InspectedEntry>();
  for (const e of raw) {
    if (e.index < lo || e.index > hi) continue;
    const entry = describe(e);
    listed.set(e.index, entry);
    result.entries.push(entry);
  }

  // The configuration as of `at` (or the end): the last change entry, else a snapshot's.
  const upTo = at ?? lastKnown;
  for (let i = raw.length - 1; i >= 0; i--) {
    const e = raw[i]!;
    if (e.index > upTo || e.type !== 3) continue;
    try {
      const members = decodeConfiguration(e.data, (o, w) => corrupt(join(root, e.file), e.offset + o, w));
      result.configuration = { index: e.index, source: `entry ${e.index} (${e.file})`, members };
      break;
    } catch {
      // reported on the entry when listed
    }
  }
  if (!result.configuration) {
    const snap = [...result.snapshots].reverse().find((s) => s.configurationIndex <= upTo);
    if (snap) result.configuration = { index: snap.configurationIndex, source: snap.metaFile, members: snap.configuration };
  }

  // The state at `at`: the newest snapshot at or below it, then the log up to it.
  if (at !== undefined && schema) {
    if (at > lastKnown) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `index ${at} is past the end of the log (${lastKnown})`, { index: at });
    }
    const base = [...result.snapshots].filter((s) => s.index <= at).sort((a, b) => a.index - b.index || a.term - b.term || a.timestamp - b.timestamp).at(-1);
    const start = base ? base.index + 1 : 1;
    // Entry 1 is always the bootstrap configuration (raft_bootstrap writes it; a joining
    // node receives the leader's), never a command: a log compacted down to 2 still
    // rebuilds from the empty state.
    const firstNeeded = start === 1 ? 2 : start;
    if (start <= at && (raw.length === 0 || result.firstIndex > firstNeeded || result.lastIndex < at)) {
      const kept = result.snapshots.map((s) => s.index).join(', ') || 'none';
      throw new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE,
        `the state at ${at} can't be rebuilt: ${base ? `the newest snapshot at or below it is at ${base.index}` : 'no snapshot at or below it is kept'} ` +
        `(snapshots: ${kept}) and the log on disk holds ${raw.length ? `${result.firstIndex}..${result.lastIndex}` : 'no entries'}` +
        (base ? '' : ': the entries before it were compacted away'), { index: at });
    }
    const machine = Store.offline(schema);
    if (base) {
      try {
        machine.restore(payloads.get(base)!);
      } catch (err) {
        if (isPrevailError(err)) throw new PrevailError(err.code, `${join(root, base.file)}: ${err.message}`, { cause: err });
        throw unreadableSnapshot(join(root, base.file), HEADER_SIZE, `the store can't restore it: ${(err as Error).message}`);
      }
    }
    const handlerErrors: InspectedState['handlerErrors'] = [];
    let applied = 0;
    for (const e of raw) {
      if (e.index < start || e.index > at || e.type !== 1) continue;
      const probe: InspectedEntry = { index: e.index, term: e.term, type: 'command', length: e.data.length, file: e.file, offset: e.offset };
      const payload = decodeCommand(probe, e.data);
      if (!payload) throw corrupt(join(root, e.file), e.offset, `entry ${e.index} is not a prevail entry (no PVE1 framing)`);
      let outcome: { error?: unknown };
      try {
        outcome = machine.apply(payload, e.index, probe.framing!.term);
      } catch (err) {
        const code: ErrorCode = isPrevailError(err) ? err.code : ErrorCodes.CORRUPT_ENTRY;
        throw new PrevailError(code, `${join(root, e.file)}: at byte ${e.offset}: ${(err as Error).message}`, { index: e.index, cause: err });
      }
      applied++;
      if ('error' in outcome) {
        const message = (outcome.error as Error)?.message ?? String(outcome.error);
        handlerErrors.push({ index: e.index, message });
        const shown = listed.get(e.index);
        if (shown) shown.handlerError = message;
      }
    }
    const collections: Record<string, unknown[]> = {};
    const view = machine.view as Record<string, { values(): IterableIterator<unknown> }>;
    for (const name of Object.keys(schema.collections)) collections[name] = [...view[name]!.values()];
    result.state = { index: at, snapshot: base ? base.file : null, appliedEntries: applied, collections, stateHash: machine.stateHash(), handlerErrors };
  }
  return result;
}

// ---- the command line -------------------------------------------------------------

export interface Sink {
  write(chunk: string): unknown;
}

export interface RunInspectOptions {
  /** The schema used when `--schema` is absent (the CLI passes the reference service's). */
  defaultSchema?: Schema<any, any>;
  /** Where errors and usage go. Default: process.stderr. */
  err?: Sink;
}

const USAGE = 'usage: prevail inspect DIR [--at N] [--from N] [--to N] [--json] [--schema path/to/module.mjs[#exportName]]\n';

class UsageError extends Error {}

function toJson(value: unknown, space?: number): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k];  // before toJSON (a Buffer's would give { type, data })
    if (raw instanceof Uint8Array) return { $bytes: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex') };
    if (typeof v === 'bigint') return `${v}n`;
    if (v instanceof Map) return Object.fromEntries(v);
    if (v instanceof Set) return [...v];
    return v;
  }, space);
}

async function loadSchema(spec: string): Promise<Schema<any, any>> {
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const exportName = hash > 0 ? spec.slice(hash + 1) : undefined;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`--schema ${spec}: can't load ${path}: ${(err as Error).message}`);
  }
  const candidates = exportName ? [exportName] : ['schema', 'default'];
  for (const name of candidates) {
    const s = mod[name] as Schema<any, any> | undefined;
    if (s && typeof s === 'object' && typeof s.collections === 'object' && typeof s.commands === 'object') return s;
  }
  throw new UsageError(`--schema ${spec}: no defineSchema() result exported as ${candidates.join(' or ')}`);
}

function parseIndex(flag: string, value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value)) throw new UsageError(`${flag} needs a non-negative integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} ${value} is too large`);
  return n;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function table(rows: string[][], indent = '  '): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function members(ms: InspectedMember[]): string {
  return ms.map((m) => `${m.id}@${m.address} (${m.role})`).join(', ');
}

function clip(s: string, n = 160): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function describeEntry(e: InspectedEntry): string {
  if (e.type === 'barrier') return `barrier (${e.length} bytes)`;
  if (e.type === 'configuration') return e.configuration ? `configuration: ${members(e.configuration)}` : `configuration, undecodable: ${e.problem}`;
  if (e.command) {
    const date = new Date(e.command.timestamp);
    const when = e.command.timestamp && Number.isFinite(date.getTime()) ? ` @ ${date.toISOString()}` : '';
    const failed = e.handlerError ? `  [handler threw: ${e.handlerError}]` : '';
    return `${e.command.name} ${clip(toJson(e.command.args) ?? 'undefined')}${when}${failed}`;
  }
  if (e.store) return `store entry ${e.store.kind} ${clip(toJson(e.store.data) ?? 'undefined')} (format ${e.store.format})`;
  const body = e.payload ? `${e.payload.length} bytes: ${e.payload.hex.slice(0, 64)}${e.payload.truncated || e.payload.hex.length > 64 ? '…' : ''}` : '';
  return e.problem ? `${e.problem}; ${body}` : `payload ${body}`;
}

function render(r: InspectResult): string {
  let s = `data dir ${r.dir}\n`;
  if (r.node) s += `node ${r.node.id}${r.node.address ? ` at ${r.node.address}` : ''}\n`;
  if (r.lock) s += `lock: process ${r.lock.pid} (${r.lock.live ? 'alive' : 'not running'})\n`;
  if (r.metadata) s += `metadata: term ${r.metadata.term}, voted for ${r.metadata.votedFor || 'nobody'} (${r.metadata.file}, version ${r.metadata.version})\n`;
  for (const w of r.warnings) s += `warning: ${w}\n`;
  s += `\nsnapshots (${r.snapshots.length}):\n`;
  s += table([['INDEX', 'TERM', 'BYTES', 'CONFIG@', 'STORE', 'FILE'], ...r.snapshots.map((x) => [
    String(x.index), String(x.term), String(x.size), String(x.configurationIndex),
    x.store ? `base ${x.store.baseIndex} + ${x.store.tailEntries} entries; ${Object.entries(x.store.collections).map(([n, c]) => `${n}: ${c.objects}`).join(', ')}` : '-',
    x.file,
  ])]);
  s += `\nsegments (${r.segments.length}), log ${r.lastIndex ? `${r.firstIndex}..${r.lastIndex}` : 'empty'}:\n`;
  s += table([['FIRST', 'LAST', 'ENTRIES', 'BATCHES', 'BYTES', 'FILE'], ...r.segments.map((x) => [
    String(x.firstIndex), String(x.lastIndex), String(x.entries), String(x.batches),
    x.open ? `${x.usedBytes}/${x.size}` : String(x.size), x.open ? `${x.file} (open)` : x.file,
  ])]);
  s += `\nentries (${r.entries.length}):\n`;
  s += table([['INDEX', 'TERM', 'TYPE', 'ENTRY'], ...r.entries.map((e) => [String(e.index), String(e.term), e.type, describeEntry(e)])]);
  if (r.configuration) s += `\nconfiguration at ${r.configuration.index} (${r.configuration.source}): ${members(r.configuration.members)}\n`;
  if (r.otherFiles.length) s += `\nother files: ${r.otherFiles.join(', ')}\n`;
  if (r.state) {
    const st = r.state;
    s += `\nstate at ${st.index}: ${st.snapshot ? `from ${st.snapshot}` : 'from the empty state'} + ${st.appliedEntries} entries\n`;
    s += `stateHash ${st.stateHash}\n`;
    for (const h of st.handlerErrors) s += `  entry ${h.index}: handler threw: ${h.message}\n`;
    for (const [name, objs] of Object.entries(st.collections)) {
      s += `${name} (${objs.length}):\n`;
      for (const o of objs) s += `  ${toJson(o)}\n`;
    }
  }
  return s;
}

/**
 * `prevail inspect DIR [--at N] [--from N] [--to N] [--json] [--schema module.mjs[#name]]`.
 * Returns the exit code: 0 ok, 1 a corrupt or unreadable dir (the coded error is
 * printed), 2 usage.
 */
export async function runInspect(argv: string[], out: Sink = process.stdout, options: RunInspectOptions = {}): Promise<number> {
  const err = options.err ?? process.stderr;
  let args = [...argv];
  if (args[0] === 'inspect' && args.slice(1).some((a) => !a.startsWith('--'))) args = args.slice(1);
  let dir: string | undefined;
  let json = false;
  let schemaSpec: string | undefined;
  const opts: InspectOptions = {};
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const eq = a.indexOf('=');
      const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
      const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
      const value = () => inline ?? args[++i];
      if (flag === '--json') json = true;
      else if (flag === '--at') opts.at = parseIndex('--at', value());
      else if (flag === '--from') opts.from = parseIndex('--from', value());
      else if (flag === '--to') opts.to = parseIndex('--to', value());
      else if (flag === '--schema') {
        schemaSpec = value();
        if (!schemaSpec) throw new UsageError('--schema needs a module path');
      } else if (flag === '--help' || flag === '-h') {
        out.write(USAGE);
        return 0;
      } else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
      else if (dir === undefined) dir = a;
      else throw new UsageError(`unexpected argument ${a}`);
    }
    if (dir === undefined) throw new UsageError('DIR is required');
    if (opts.from !== undefined && opts.to !== undefined && opts.from > opts.to) throw new UsageError('--from is after --to');
    const schema = schemaSpec ? await loadSchema(schemaSpec) : options.defaultSchema;
    if (opts.at !== undefined) {
      if (!schema) throw new UsageError('--at needs --schema (the state machine to replay the log with)');
      opts.schema = schema;
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`prevail inspect: ${e.message}\n${USAGE}`);
    return 2;
  }
  try {
    const result = await inspectDataDir(dir, opts);
    out.write(json ? `${toJson(result, 2)}\n` : render(result));
    return 0;
  } catch (e) {
    if (isPrevailError(e)) {
      err.write(`prevail inspect: ${e.code}: ${e.message}\n`);
      if (json) out.write(`${toJson({ error: { code: e.code, message: e.message, index: e.index } }, 2)}\n`);
      return 1;
    }
    throw e;
  }
}

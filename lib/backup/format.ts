// The backup file: what `store.backup()` writes and `restoreBackup()` reads. One file holds a
// header (who took it, at which index and term, the configuration there), the store's snapshot
// payload (the same frames an engine snapshot holds: lib/format/snapshot.ts) and a SHA-256 of
// everything before it. Read as a stream: nothing is trusted, or written anywhere, until the
// whole file has been read and its checksum and every frame's CRC-32 agree.
//
// Layout (integers little-endian):
//   0   4 bytes  magic "PVB1"
//   4   u32      backup format (BACKUP_FORMAT)
//   8   u32      header length H (at most MAX_HEADER_BYTES)
//   12  H bytes  the header, msgpack: BackupHeader
//   …   P bytes  the store payload, P = header.payloadBytes: frames [u32 length][msgpack]
//   …   32 bytes SHA-256 of all the bytes before it
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { packr } from '../format/entry.js';

/**
 * Backup formats (the u32 after the magic):
 * - 1: the first (2026-12): header, store payload (snapshot formats 1-4 inside), SHA-256.
 */
export const BACKUP_FORMAT = 1;
/** "PVB1" as it is on disk. */
export const BACKUP_MAGIC = Buffer.from('PVB1', 'ascii');
export const PREFIX_BYTES = 12;
export const DIGEST_BYTES = 32;
/** A header is small (the configuration and a few numbers): anything larger is damage. */
export const MAX_HEADER_BYTES = 1 << 20;
// The `end` frame lists a CRC-32 per frame (at most 5 bytes each): anything larger is damage.
const MAX_END_FRAME_BYTES = 64 << 20;

/** A member of the configuration a backup was taken under. */
export interface BackupMember {
  id: number;
  address: string;
  role: string;
}

/** What a backup says about itself (the file's header). */
export interface BackupHeader {
  /** The node it was taken on. */
  nodeId: number;
  /** The log index whose state it holds (the last entry applied into it). */
  index: number;
  /** That entry's term. */
  term: number;
  /** When it was taken (ISO 8601). */
  createdAt: string;
  /** The cluster's configuration on that node when it was taken. */
  configuration: BackupMember[];
  /** The schema version active at `index`, and the range the taking node's code supports. */
  schema: { active: number; oldest: number; newest: number };
  /** The state's effects hash at `index` (what the divergence detector compares). */
  effects: { index: number; hash: string };
  /** Bytes of the store payload. */
  payloadBytes: number;
  /** Frames in the store payload. */
  frames: number;
}

/** The bytes before the payload: magic, format, header length, header. */
export function encodePrefix(header: BackupHeader): Buffer {
  const body = packr.pack(header);
  const out = Buffer.allocUnsafe(PREFIX_BYTES + body.length);
  BACKUP_MAGIC.copy(out, 0);
  out.writeUInt32LE(BACKUP_FORMAT, 4);
  out.writeUInt32LE(body.length, 8);
  body.copy(out, PREFIX_BYTES);
  return out;
}

/**
 * The whole file, as pieces to write in order: the prefix, the payload's frames, then the
 * SHA-256 of those (hashed as they are handed out, so a large payload is hashed in steps
 * between writes, not in one stall). `done` is called with the digest.
 */
export function* backupPieces(
  header: Omit<BackupHeader, 'payloadBytes' | 'frames'>,
  frames: readonly Uint8Array[],
  done: (sha256: string, bytes: number) => void,
): Generator<Uint8Array> {
  const payloadBytes = frames.reduce((n, f) => n + f.length, 0);
  const prefix = encodePrefix({ ...header, payloadBytes, frames: frameCount(frames) });
  const hash = createHash('sha256');
  hash.update(prefix);
  yield prefix;
  for (const f of frames) {
    hash.update(f);
    yield f;
  }
  const digest = hash.digest();
  done(digest.toString('hex'), prefix.length + payloadBytes + DIGEST_BYTES);
  yield digest;
}

// The pieces a snapshot is handed as are whole frames, except the tail frame (a head, then
// views of its blocks): counted by walking the lengths.
function frameCount(pieces: readonly Uint8Array[]): number {
  let count = 0;
  let left = 0; // bytes of the current frame still to come
  for (const p of pieces) {
    if (left === 0) {
      const len = Buffer.from(p.buffer, p.byteOffset, p.byteLength).readUInt32LE(0);
      left = 4 + len;
      count++;
    }
    left -= p.length;
  }
  return count;
}

/** What reading a whole backup found (it is only returned when everything checked out). */
export interface VerifiedBackup {
  header: BackupHeader;
  sha256: string;
  /** The file's size. */
  bytes: number;
  /** The first frame (`meta`), length prefix included. */
  meta: Buffer;
  /** The CRC-32 of each frame before `end`, as the `end` frame lists them. */
  crcs: number[];
}

/** Called with the payload's bytes while they are read: `frame` is the frame's number (0 is `meta`). */
export type FrameSink = (frame: number, piece: Buffer) => void | Promise<void>;

/**
 * Reads a backup from `source` to its end, checking everything: magic, format, header, that
 * the payload is whole frames ending with an `end` frame whose CRC-32s match, the size, and
 * the SHA-256. Throws PREVAIL_BACKUP_CORRUPT (naming `name` and the byte) at the first fault.
 * `sink` sees the payload as it goes; a caller that writes must undo that if this throws.
 */
export async function verifyBackup(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  name: string,
  sink?: FrameSink,
): Promise<VerifiedBackup> {
  const reader = new ChunkReader(source, name);
  const header = await readHeader(reader, name);
  const { meta, crcs } = await readPayload(reader, header, name, sink);
  reader.hashing = false;
  const digest = await reader.exact(DIGEST_BYTES, 'the checksum');
  const actual = reader.digest();
  if (!digest.equals(actual)) {
    throw corrupt(
      name,
      reader.position - DIGEST_BYTES,
      `SHA-256 mismatch (file says ${digest.toString('hex')}, content is ${actual.toString('hex')})`,
    );
  }
  if (!(await reader.atEnd())) throw corrupt(name, reader.position, 'bytes after the checksum');
  return { header, sha256: actual.toString('hex'), bytes: reader.position, meta, crcs };
}

async function readHeader(reader: ChunkReader, name: string): Promise<BackupHeader> {
  const prefix = await reader.exact(PREFIX_BYTES, 'the file header');
  if (!prefix.subarray(0, 4).equals(BACKUP_MAGIC))
    throw corrupt(name, 0, 'not a prevail backup (no PVB1 magic)');
  const format = prefix.readUInt32LE(4);
  if (format !== BACKUP_FORMAT)
    throw corrupt(name, 4, `backup format ${format}; this code reads ${BACKUP_FORMAT}`);
  const length = prefix.readUInt32LE(8);
  if (length === 0 || length > MAX_HEADER_BYTES)
    throw corrupt(name, 8, `header length ${length} is out of range`);
  const body = await reader.exact(length, 'the header');
  let header: BackupHeader;
  try {
    header = packr.unpack(body) as BackupHeader;
  } catch (err) {
    throw corrupt(name, PREFIX_BYTES, `header unreadable: ${(err as Error).message}`);
  }
  checkHeader(header, name);
  return header;
}

function checkHeader(h: BackupHeader, name: string): void {
  const counts = [h?.nodeId, h?.index, h?.term, h?.payloadBytes, h?.frames];
  if (!counts.every((n) => Number.isSafeInteger(n) && (n as number) >= 0))
    throw corrupt(name, PREFIX_BYTES, 'header lacks its ids, index, term or sizes');
  if (!Array.isArray(h.configuration) || typeof h.createdAt !== 'string')
    throw corrupt(name, PREFIX_BYTES, 'header lacks its configuration or time');
  if (h.frames < 2) throw corrupt(name, PREFIX_BYTES, `header says ${h.frames} frames`);
}

// The payload, frame by frame: each frame's CRC-32 as it streams by; the first kept (meta) and
// the last decoded (end), whose list must match.
async function readPayload(
  reader: ChunkReader,
  header: BackupHeader,
  name: string,
  sink?: FrameSink,
): Promise<{ meta: Buffer; crcs: number[] }> {
  const start = reader.position;
  const end = start + header.payloadBytes;
  const computed: number[] = [];
  let meta: Buffer | null = null;
  let last: Buffer | null = null; // the end frame
  for (let frame = 0; reader.position < end; frame++) {
    const at = reader.position;
    if (end - at < 4) throw corrupt(name, at, 'payload ends inside a frame header');
    const lengthBytes = await reader.exact(4, 'a frame header');
    const len = lengthBytes.readUInt32LE(0);
    if (at + 4 + len > end) throw corrupt(name, at, `frame ${frame} runs past the payload`);
    if (frame >= header.frames)
      throw corrupt(name, at, `more frames than the ${header.frames} the header says`);
    if (frame === header.frames - 1 && len > MAX_END_FRAME_BYTES)
      throw corrupt(name, at, `the last frame has ${len} bytes: too large for a CRC list`);
    let crc = crc32(lengthBytes);
    // Only the first (meta) and the last (end) are kept: copying every frame would make the
    // whole payload garbage for the collector of a large heap.
    const keep = frame === 0 || frame === header.frames - 1 ? [lengthBytes] : null;
    await sink?.(frame, lengthBytes);
    await reader.each(len, `frame ${frame}`, async (piece) => {
      crc = crc32(piece, crc);
      keep?.push(Buffer.from(piece)); // the reader's chunks may be reused
      await sink?.(frame, piece);
    });
    computed.push(crc);
    if (keep && frame === 0) meta = Buffer.concat(keep);
    if (keep && frame === header.frames - 1) last = Buffer.concat(keep);
  }
  if (computed.length !== header.frames)
    throw corrupt(
      name,
      end,
      `payload has ${computed.length} frames, the header says ${header.frames}`,
    );
  const crcs = endCrcs(last, name, end);
  if (crcs.length !== computed.length - 1)
    throw corrupt(name, end, `${computed.length - 1} frames, the end frame lists ${crcs.length}`);
  for (let i = 0; i < crcs.length; i++)
    if (crcs[i] !== computed[i]) throw corrupt(name, start, `frame ${i} fails its CRC-32`);
  return { meta: meta!, crcs };
}

function endCrcs(last: Buffer | null, name: string, at: number): number[] {
  let rec: { t?: unknown; crcs?: unknown } | undefined;
  try {
    rec = last ? (packr.unpack(last.subarray(4)) as typeof rec) : undefined;
  } catch {
    rec = undefined;
  }
  if (rec?.t !== 'end' || !Array.isArray(rec.crcs))
    throw corrupt(name, at, 'the payload does not end with an end frame');
  return rec.crcs as number[];
}

export function corrupt(name: string, offset: number, what: string): PrevailError {
  return new PrevailError(ErrorCodes.BACKUP_CORRUPT, `backup ${name}: at byte ${offset}: ${what}`, {
    file: name,
  });
}

/** Reads exact byte counts from a stream of chunks, hashing what it reads (while `hashing`). */
class ChunkReader {
  hashing = true;
  position = 0;
  readonly #it: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  readonly #hash = createHash('sha256');
  readonly #name: string;
  #chunk: Buffer = Buffer.alloc(0);
  #at = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, name: string) {
    this.#it =
      Symbol.asyncIterator in source
        ? source[Symbol.asyncIterator]()
        : (source as Iterable<Uint8Array>)[Symbol.iterator]();
    this.#name = name;
  }

  digest(): Buffer {
    return this.#hash.digest();
  }

  // Whether the source is exhausted (nothing left past `position`).
  async atEnd(): Promise<boolean> {
    return this.#at < this.#chunk.length ? false : !(await this.#fill());
  }

  async #fill(): Promise<boolean> {
    for (;;) {
      const next = await this.#it.next();
      if (next.done) return false;
      const c = next.value;
      if (c.length === 0) continue;
      this.#chunk = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      this.#at = 0;
      return true;
    }
  }

  /** `n` bytes to `fn`, in the pieces they arrive in. */
  async each(n: number, what: string, fn: (piece: Buffer) => void | Promise<void>): Promise<void> {
    while (n > 0) {
      if (this.#at >= this.#chunk.length && !(await this.#fill()))
        throw corrupt(this.#name, this.position, `cut short inside ${what}`);
      const piece = this.#chunk.subarray(this.#at, this.#at + n);
      this.#at += piece.length;
      this.position += piece.length;
      n -= piece.length;
      if (this.hashing) this.#hash.update(piece);
      await fn(piece);
    }
  }

  async exact(n: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    await this.each(n, what, (piece) => {
      parts.push(Buffer.from(piece));
    });
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

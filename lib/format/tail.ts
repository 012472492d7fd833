// The store's tail (the entries applied since its last capture), kept already encoded as
// the body of the snapshot's `tail` frame. Each entry is written into large blocks as it is
// applied, with a running CRC-32, so the engine's snapshot gets the frame as a 25-byte
// header plus views of those blocks: no encoding, copy or checksum of the whole tail on the
// loop thread while the engine waits (that took ~230 ms of CPU for the ~500k entries of a
// 1M-object store). The bytes are exactly tailFrame()'s.
import { crc32 } from 'node:zlib';

import { crc32Combine } from './crc32.js';
import { TAIL_HEAD_BYTES, tailEntrySize, writeTailEntry, writeTailHead } from './snapshot.js';

// One external allocation per block (V8 counts each towards its external-memory limit).
const BLOCK_BYTES = 1 << 20;

interface Block {
  bytes: Buffer;
  end: number;
}
interface Placed {
  index: number;
  block: Block;
  at: number;
}

export class EncodedTail {
  #entries: Placed[] = [];
  #blocks: Block[] = []; // in order; the first is read from #headAt, the last is being written
  #headAt = 0;
  #bytes = 0; // of the encoded entries, from #headAt on
  #crc = 0; // CRC-32 of those bytes

  get length(): number {
    return this.#entries.length;
  }

  push(index: number, term: number, payload: Uint8Array): void {
    const entry = { index, term, payload };
    const size = tailEntrySize(entry);
    let last = this.#blocks.at(-1);
    if (last === undefined || last.end + size > last.bytes.length) {
      last = { bytes: Buffer.allocUnsafe(Math.max(BLOCK_BYTES, size)), end: 0 };
      if (this.#blocks.length === 0) this.#headAt = 0;
      this.#blocks.push(last);
    }
    const at = last.end;
    last.end = writeTailEntry(last.bytes, at, entry);
    this.#crc = crc32(last.bytes.subarray(at, last.end), this.#crc);
    this.#bytes += size;
    this.#entries.push({ index, block: last, at });
  }

  /** Forgets the entries up to `index` (a capture now covers them). */
  dropThrough(index: number): void {
    const keep = this.#entries.findIndex((e) => e.index > index);
    if (keep < 0) return this.clear();
    if (keep === 0) return;
    const head = this.#entries[keep]!;
    this.#entries = this.#entries.slice(keep);
    this.#blocks = this.#blocks.slice(this.#blocks.indexOf(head.block));
    this.#headAt = head.at;
    // Usually few entries remain (those applied while the capture ran): checksum them again.
    this.#crc = 0;
    this.#bytes = 0;
    for (const piece of this.#pieces()) {
      this.#crc = crc32(piece, this.#crc);
      this.#bytes += piece.length;
    }
  }

  clear(): void {
    this.#entries = [];
    this.#blocks = [];
    this.#headAt = 0;
    this.#bytes = 0;
    this.#crc = 0;
  }

  /**
   * The tail frame as buffers to write one after another, and its CRC-32. The views stay
   * valid: blocks are only ever written past the end of what was handed out.
   */
  frame(): { pieces: Uint8Array[]; crc: number } {
    const head = Buffer.allocUnsafe(TAIL_HEAD_BYTES);
    writeTailHead(head, TAIL_HEAD_BYTES - 4 + this.#bytes, this.#entries.length);
    return {
      pieces: [head, ...this.#pieces()],
      crc: crc32Combine(crc32(head), this.#crc, this.#bytes),
    };
  }

  #pieces(): Uint8Array[] {
    return this.#blocks.map((b, i) => b.bytes.subarray(i === 0 ? this.#headAt : 0, b.end));
  }
}

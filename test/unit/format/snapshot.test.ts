// The snapshot payload's hand-written tail frame (lib/format/snapshot.ts) decodes, with any
// msgpack reader, to exactly the record msgpackr makes of the same entries; the store's
// incrementally encoded tail (lib/format/tail.ts) is the same bytes.
import { crc32 } from 'node:zlib';

import fc from 'fast-check';

import { crc32Combine } from '../../../lib/format/crc32.js';
import { packr } from '../../../lib/format/entry.js';
import { frame, splitFrames, tailFrame } from '../../../lib/format/snapshot.js';
import { EncodedTail } from '../../../lib/format/tail.js';

const entry = fc.record({
  index: fc.oneof(
    fc.integer({ min: 0, max: 300 }),
    fc.integer({ min: 0, max: 2 ** 32 + 5 }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  ),
  term: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 40 })),
  payload: fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.uint8Array({ minLength: 65_530, maxLength: 65_545 }),
  ),
});

test('tailFrame decodes to what msgpackr makes of the same entries', () => {
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 40 }), (entries) => {
      const mine = tailFrame(entries);
      const theirs = frame(
        packr.pack({ t: 'tail', entries: entries.map((e) => [e.index, e.term, e.payload]) }),
      );
      const [one] = splitFrames(Buffer.from(mine.buffer, mine.byteOffset, mine.byteLength));
      expect(one!.length).toBe(mine.length);
      // Compared as bytes: toEqual walks byte arrays element by element (minutes for 64 KiB ones).
      const a = packr.unpack(one!.subarray(4)) as {
        t: string;
        entries: [number, number, Uint8Array][];
      };
      const b = packr.unpack((theirs as Buffer).subarray(4)) as typeof a;
      expect(a.t).toBe(b.t);
      expect(a.entries.map(([i, t]) => [i, t])).toEqual(b.entries.map(([i, t]) => [i, t]));
      a.entries.forEach(([, , p], k) => expect(Buffer.compare(p, b.entries[k]![2])).toBe(0));
    }),
    { numRuns: 50 },
  );
});

test('crc32Combine gives the CRC-32 of two byte strings joined', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ maxLength: 2000 }), (a, b) => {
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(Buffer.concat([a, b])));
    }),
    { numRuns: 200 },
  );
});

// The store's tail, kept encoded as entries are applied: its pieces are tailFrame()'s bytes
// for the entries it still holds, across block boundaries and drops, and its CRC theirs.
test('EncodedTail: the same bytes and CRC as tailFrame of the entries it holds', () => {
  const step = fc.oneof(
    fc.record({
      length: fc.oneof(
        fc.integer({ max: 300, min: 0 }),
        fc.integer({ min: 200_000, max: 700_000 }),
      ),
      term: fc.integer({ min: 1, max: 2 ** 40 }),
    }),
    fc.record({ drop: fc.integer({ min: 0, max: 60 }) }),
  );
  fc.assert(
    fc.property(
      fc.array(step, { maxLength: 60 }),
      fc.integer({ min: 1, max: 2 ** 33 }),
      (steps, first) => {
        const tail = new EncodedTail();
        let held: { index: number; term: number; payload: Uint8Array }[] = [];
        let index = first;
        for (const s of steps) {
          if ('drop' in s) {
            const through = first + s.drop;
            tail.dropThrough(through);
            held = held.filter((e) => e.index > through);
          } else {
            const payload = new Uint8Array(s.length).fill(index % 251);
            tail.push(index, s.term, payload);
            held.push({ index, term: s.term, payload });
            index++;
          }
        }
        const { pieces, crc } = tail.frame();
        const mine = Buffer.concat(pieces);
        const theirs = tailFrame(held);
        expect(tail.length).toBe(held.length);
        expect(Buffer.compare(mine, theirs)).toBe(0);
        expect(crc).toBe(crc32(theirs));
      },
    ),
    { numRuns: 40 },
  );
});

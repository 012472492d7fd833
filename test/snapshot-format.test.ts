// The snapshot payload's hand-written tail frame (lib/format/snapshot.ts) decodes, with any
// msgpack reader, to exactly the record msgpackr makes of the same entries.
import fc from 'fast-check';

import { packr } from '../lib/format/entry.js';
import { frame, splitFrames, tailFrame } from '../lib/format/snapshot.js';

const entry = fc.record({
  index: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 32 + 5 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  term: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 2 ** 40 })),
  payload: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 65_530, maxLength: 65_545 })),
});

test('tailFrame decodes to what msgpackr makes of the same entries', () => {
  fc.assert(fc.property(fc.array(entry, { maxLength: 40 }), (entries) => {
    const mine = tailFrame(entries);
    const theirs = frame(packr.pack({ t: 'tail', entries: entries.map((e) => [e.index, e.term, e.payload]) }));
    const [one] = splitFrames(Buffer.from(mine.buffer, mine.byteOffset, mine.byteLength));
    expect(one!.length).toBe(mine.length);
    // Compared as bytes: toEqual walks byte arrays element by element (minutes for 64 KiB ones).
    const a = packr.unpack(one!.subarray(4)) as { t: string; entries: [number, number, Uint8Array][] };
    const b = packr.unpack((theirs as Buffer).subarray(4)) as typeof a;
    expect(a.t).toBe(b.t);
    expect(a.entries.map(([i, t]) => [i, t])).toEqual(b.entries.map(([i, t]) => [i, t]));
    a.entries.forEach(([, , p], k) => expect(Buffer.compare(p, b.entries[k]![2])).toBe(0));
  }), { numRuns: 50 });
});

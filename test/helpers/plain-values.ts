// Generated plain values (docs/guide.md, "Plain data") and an exact signature to compare them
// by: -0, lone surrogates, bigints, dates and byte arrays told apart.
import fc from 'fast-check';

export function sig(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'string')
    return `s:${Array.from({ length: v.length }, (_, i) => v.charCodeAt(i).toString(16)).join(',')}`;
  if (typeof v === 'bigint') return `n:${v}`;
  if (v === null || typeof v !== 'object') return String(v);
  if (v instanceof Uint8Array) return `${Buffer.isBuffer(v) ? 'buf' : 'u8'}:${[...v].join(',')}`;
  if (v instanceof Date) return `d:${v.getTime()}`;
  if (Array.isArray(v)) return `[${v.map(sig).join(';')}]`;
  return `{${Object.keys(v)
    .map((k) => `${JSON.stringify(k)}=${sig((v as Record<string, unknown>)[k])}`)
    .join(';')}}`;
}

// Any UTF-16 code unit, lone surrogates included.
const anyString = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  maxLength: 12,
});
// Keys are well-formed strings (a key with a lone surrogate is refused: see below).
const key = fc
  .oneof(
    fc.string({ unit: 'grapheme', maxLength: 6 }),
    fc.constantFrom('id', 'a', '0', '10', 'constructor', 'toString'),
  )
  .filter((k) => k !== '__proto__');
export const { value: plainValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('leaf'),
    tie('array'),
    tie('object'),
  ),
  leaf: fc.oneof(
    fc.constant(null),
    fc.constant(undefined),
    fc.boolean(),
    fc.double(),
    fc.integer(),
    fc.constant(-0),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
    anyString,
    fc.date({ noInvalidDate: false }),
    fc.uint8Array({ maxLength: 8 }),
  ),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc
    .array(fc.tuple(key, tie('value')), { maxLength: 4 })
    .map((entries) => Object.fromEntries(entries)),
}));

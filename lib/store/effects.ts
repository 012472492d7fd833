// The divergence detector's running hash of every command's effects: two 32-bit lanes,
// multiply-xorshift per byte. Not cryptographic; it only has to make an accidental match of
// two different histories unlikely.
export type EffectsHash = [number, number];
export const CHECKPOINT_EVERY = 64; // entries between the (index, hash) pairs replicas compare
export const CHECKPOINTS_KEPT = 64;
/** The effects hash of the empty history (a new store, or a snapshot from before effects were kept). */
export const initialEffects = (): EffectsHash => [0x811c9dc5, 0x9747b28c];
export function foldBytes(h: EffectsHash, bytes: Uint8Array): void {
  let a = h[0];
  let b = h[1];
  for (let i = 0; i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i]!, 0x01000193);
    b = Math.imul(b ^ bytes[i]!, 0x5bd1e995);
    b ^= b >>> 15;
  }
  h[0] = a;
  h[1] = b;
}
export function foldNumber(h: EffectsHash, n: number): void {
  h[0] = Math.imul(h[0] ^ (n | 0), 0x85ebca6b) ^ Math.floor(n / 4294967296);
  h[1] = Math.imul(h[1] ^ (h[0] >>> 13), 0xc2b2ae35) ^ (n | 0);
}
export function foldString(h: EffectsHash, str: string): void {
  let a = h[0] ^ str.length;
  let b = h[1];
  for (let i = 0; i < str.length; i++) {
    const c = str.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  h[0] = a;
  h[1] = b ^ (b >>> 15);
}
// Folds a stored value (plain data: frozen objects, arrays, primitives, Dates, byte arrays)
// without serialising it: a type tag, then the contents, keys in their (deterministic) order.
export function foldValue(h: EffectsHash, v: unknown): void {
  switch (typeof v) {
    case 'string':
      foldNumber(h, 1);
      foldString(h, v);
      return;
    case 'number':
      foldNumber(h, v === 0 && 1 / v < 0 ? 12 : 2); // -0 is not 0 to a reader (Object.is)
      foldNumber(h, v);
      if (!Number.isInteger(v)) foldString(h, String(v));
      return;
    case 'boolean':
      foldNumber(h, v ? 3 : 4);
      return;
    case 'bigint':
      foldNumber(h, 5);
      foldString(h, v.toString());
      return;
    case 'undefined':
      foldNumber(h, 6);
      return;
    default:
  }
  if (v === null) {
    foldNumber(h, 7);
    return;
  }
  if (Array.isArray(v)) {
    foldNumber(h, 8);
    foldNumber(h, v.length);
    for (let i = 0; i < v.length; i++) foldValue(h, v[i]);
  } else if (ArrayBuffer.isView(v)) {
    foldNumber(h, Buffer.isBuffer(v) ? 13 : 9);
    foldBytes(h, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  } else if (v instanceof Date) {
    foldNumber(h, 10);
    foldNumber(h, v.getTime());
  } else {
    foldNumber(h, 11);
    for (const k in v as object) {
      foldString(h, k);
      foldValue(h, (v as Record<string, unknown>)[k]);
    }
  }
}
export const hexOf = (h: EffectsHash) =>
  (h[0] >>> 0).toString(16).padStart(8, '0') + (h[1] >>> 0).toString(16).padStart(8, '0');

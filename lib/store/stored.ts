// Stored objects: what an object becomes when a handler stores it or a snapshot restores
// it (frozen, long strings flattened), and which few need patches to be written exactly.
import { freezeDeep, patchesOf, type Patch } from '../plain-data.js';

// msgpackr decodes the strings of a large buffer as slices of one long string (V8
// SlicedStrings, for lengths >= 13): each keeps the whole buffer's text alive, and comparing
// one takes a slow path (a Map lookup on a unique index key ran at half speed). Stored
// objects get flat copies instead: a two-part concatenation, flattened at once, which the
// GC then replaces by its flat string.
const SLICED_MIN = 13;
function flat(s: string): string {
  const c = s[0] + s.slice(1);
  c.charCodeAt(0);
  return c;
}

/**
 * Freezes an object about to be stored (see freezeDeep), replacing long string values by
 * flat copies (see flat()): with `nested`, at every depth (objects fresh from the
 * decoder), else only its own (the rest is the handler's, flattened already or short-lived).
 */
export function freezeStored<T extends object>(value: T, nested: boolean): T {
  if (nested) return freezeDeep(value, flatLong);
  const rec = value as Record<string, unknown>;
  for (const k in rec) {
    const v = rec[k];
    if (typeof v === 'string' && v.length >= SLICED_MIN && Object.hasOwn(rec, k)) rec[k] = flat(v);
  }
  return freezeDeep(value);
}
const flatLong = (s: string) => (s.length >= SLICED_MIN ? flat(s) : s);

// Stored objects whose exact values need patches in a snapshot (-0, lone surrogates,
// bytes): nearly none, so frames look them up here instead of checking every value.
const exotic = new WeakSet<object>();
/** Notes that a stored object holds values that need patches (see plain-data.ts). */
export function markExotic(obj: object): void {
  exotic.add(obj);
}
/** A stored object's patches for a snapshot frame, or null (nearly always). */
export function exoticPatches(obj: object): Patch[] | null {
  return exotic.has(obj) ? patchesOf(obj) : null;
}

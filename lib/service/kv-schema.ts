// The reference service's state machine: a key-value schema on the object store.
import { invalid } from '../core/errors.js';
import { collection, defineSchema, type Store } from '../store.js';

export interface KvEntry {
  key: string;
  value: string;
}

/** Where a key's bytes may go: non-empty, at most this many bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;

export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key === '') throw invalid('the key must be a non-empty string');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES)
    throw invalid(`the key is longer than ${MAX_KEY_BYTES} bytes of UTF-8`);
  return key;
}

function checkValue(value: unknown, what = 'value'): string {
  if (typeof value !== 'string') throw invalid(`${what} must be a string`);
  return value;
}

/**
 * The key-value schema: one collection `kv` of `{ key, value }` with a unique index on the
 * key, and three commands. Handlers check their arguments too, so a bad entry fails the
 * same way on every replica.
 */
export const kvSchema = defineSchema({
  collections: {
    kv: collection<KvEntry>()({ indexes: (ix) => ({ byKey: ix.unique((e) => e.key) }) }),
  },
  commands: {
    /** Sets a key. Result: whether the key was new. */
    put: (s, args: { key: string; value: string }) => {
      const key = checkKey(args?.key);
      const value = checkValue(args.value);
      const current = s.kv.byKey.get(key);
      if (current) s.kv.update(current.id, { value });
      else s.kv.insert({ key, value });
      return { created: current === undefined };
    },
    /** Sets a key only if its value is `expect` (null: the key is absent). Result: ok, and the value found. */
    cas: (s, args: { key: string; expect: string | null; value: string }) => {
      const key = checkKey(args?.key);
      const value = checkValue(args.value);
      if (args.expect !== null) checkValue(args.expect, 'expect');
      const current = s.kv.byKey.get(key);
      const found = current ? current.value : null;
      if (found !== args.expect) return { ok: false, current: found };
      if (current) s.kv.update(current.id, { value });
      else s.kv.insert({ key, value });
      return { ok: true, current: found };
    },
    /** Deletes a key. Result: whether it existed. */
    del: (s, args: { key: string }) => {
      const key = checkKey(args?.key);
      const current = s.kv.byKey.get(key);
      if (!current) return { deleted: false };
      s.kv.delete(current.id);
      return { deleted: true };
    },
  },
});

export type KvStore = Store<typeof kvSchema.collections, typeof kvSchema.commands>;

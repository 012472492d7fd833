// Closures as URLs: `/c/<random id>` names a function kept in this process's memory,
// together with whatever it captured (an issue object, a form's starting point). A page
// can offer "edit" or "delete" on a row without putting the row's id into the link or
// a hidden field: the server remembers which object the link was made for.
//
// This registry is node-local and lives outside the replicated state machine: links
// work only on the server process that made them, vanish when it restarts, expire after
// a TTL, and the oldest-used are evicted beyond a maximum count (LRU). That is also why
// randomness (crypto.randomUUID) is fine here and would not be inside a command handler.
import { randomUUID } from 'node:crypto';

const PREFIX = '/c/';

export class ClosureRegistry {
  #entries = new Map(); // id -> { fn, expiresAt }; Map order is least recently used first
  #ttlMs;
  #maxEntries;
  #now;
  #sweeper;

  /**
   * @param {{ ttlMs?: number, maxEntries?: number, sweepEveryMs?: number, now?: () => number }} [options]
   *   ttlMs: how long a link works after it was made (default 30 minutes);
   *   maxEntries: how many links are kept before the least recently used are dropped (default 10 000);
   *   sweepEveryMs: how often expired links are purged in the background (default 1 minute; 0: never);
   *   now: the clock (for tests).
   */
  constructor({
    ttlMs = 30 * 60_000,
    maxEntries = 10_000,
    sweepEveryMs = 60_000,
    now = Date.now,
  } = {}) {
    if (!(ttlMs > 0)) throw new RangeError('ttlMs must be positive');
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('maxEntries must be a positive integer');
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#now = now;
    if (sweepEveryMs > 0) {
      this.#sweeper = setInterval(() => this.sweep(), sweepEveryMs);
      this.#sweeper.unref(); // never keeps the process alive
    }
  }

  get ttlMs() {
    return this.#ttlMs;
  }
  get size() {
    return this.#entries.size;
  }

  /**
   * Registers `fn` and returns its URL path, `/c/<id>`. `fn(call)` is invoked with
   * whatever the caller passes to `call()` plus `revoke()`, which kills the link (for
   * one-shot actions).
   */
  link(fn, { ttlMs = this.#ttlMs } = {}) {
    if (typeof fn !== 'function') throw new TypeError('link() needs a function');
    const id = randomUUID();
    this.#entries.set(id, { fn, expiresAt: this.#now() + ttlMs });
    while (this.#entries.size > this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value); // the least recently used
    }
    return PREFIX + id;
  }

  /** The id in a `/c/<id>` path, or null when the path is not a closure link. */
  static idOf(path) {
    return path.startsWith(PREFIX) &&
      path.length > PREFIX.length &&
      !path.includes('/', PREFIX.length)
      ? path.slice(PREFIX.length)
      : null;
  }

  /**
   * Looks a link up: its function bound to the link (so it can revoke itself), or
   * undefined when the id is unknown, revoked, evicted or expired. A hit counts as a use
   * for the LRU order; it does not extend the TTL.
   */
  resolve(id) {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(id);
      return undefined;
    }
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    return (call = {}) =>
      entry.fn({ ...call, revoke: () => this.revoke(id), expiresAt: entry.expiresAt });
  }

  revoke(id) {
    return this.#entries.delete(id);
  }

  /** Drops expired links now; returns how many. */
  sweep() {
    const now = this.#now();
    let dropped = 0;
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt <= now) {
        this.#entries.delete(id);
        dropped++;
      }
    }
    return dropped;
  }

  /** Forgets every link and stops the background sweep. */
  close() {
    clearInterval(this.#sweeper);
    this.#entries.clear();
  }
}

import type { Id } from '../sorted-index/index.js';

/**
 * A collection's objects by id. Ids are the store's own sequential integers, so a dense
 * array beats a Map: no hashing, no rehash as it grows (restart inserts millions), and
 * one pointer per object. Iteration is in id order.
 */
export class ObjectTable {
  #slots: any[] = [];
  #size = 0;
  get size(): number {
    return this.#size;
  }
  /** Every id in use is below this. */
  get limit(): number {
    return this.#slots.length;
  }
  get(id: Id): any {
    return typeof id === 'number' ? this.#slots[id] : undefined;
  }
  has(id: Id): boolean {
    return typeof id === 'number' && this.#slots[id] !== undefined;
  }
  set(id: Id, obj: unknown): void {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
      throw new TypeError(`bad object id ${String(id)}`);
    if (this.#slots[id] === undefined) this.#size++;
    this.#slots[id] = obj;
  }
  delete(id: Id): boolean {
    if (!this.has(id)) return false;
    this.#slots[id as number] = undefined;
    this.#size--;
    return true;
  }
  clear(): void {
    this.#slots = [];
    this.#size = 0;
  }
  *values(): IterableIterator<any> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) yield slots[i];
  }
  *keys(): IterableIterator<number> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== undefined) yield i;
  }
}

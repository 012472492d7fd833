// The data the store benches share: users with a unique and a sorted index, made by a small
// deterministic PRNG so a run is repeatable (and SQLite gets the same rows in bench/store.js).
import { collection } from '../dist/index.js';

export function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const email = (i) => `user${i}@example.com`;

export function makeUser(i, rand) {
  return {
    name: `User ${i}`,
    email: email(i),
    age: 18 + Math.floor(rand() * 82),
    score: Math.round(rand() * 1e6) / 100,
  };
}

/** The users collection: by email (unique) and by age (sorted). */
export const users = () =>
  collection()({
    indexes: (ix) => ({
      byEmail: ix.unique((u) => u.email),
      byAge: ix.sorted((u) => u.age),
    }),
  });

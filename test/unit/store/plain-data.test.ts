// The value model (lib/plain-data.ts, docs/guide.md "Plain data"): every value the store
// accepts arrives exactly as sent and survives log replay and snapshot restore bit for
// bit; everything else is refused where it enters with PREVAIL_NOT_PLAIN_DATA and the path.
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { Packr } from 'msgpackr';

import { applyPatches, checkPlain, type PathStep } from '../../../lib/plain-data.js';
import { decodeEntry, packr as entryPackr, packrOptions } from '../../../lib/format/entry.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import { tempDir } from '../../helpers/cluster.js';
import { plainValue, sig } from '../../helpers/plain-values.js';

/** A signature that tells apart everything a reader can observe of a plain value. */

describe('the value model, unit', () => {
  const packr = new Packr(packrOptions);
  test('generated plain values survive encode → decode → patches exactly', () => {
    fc.assert(
      fc.property(plainValue, (v) => {
        const patches = checkPlain(v, 'v');
        const back = applyPatches(packr.unpack(packr.pack(v)), patches);
        expect(sig(back)).toBe(sig(v));
      }),
      { numRuns: 500 },
    );
  });

  test.each([
    ['a Map', { m: new Map([[1, 2]]) }, 'args.m'],
    ['a Set', { s: [1, new Set([1])] }, 'args.s[1]'],
    [
      'a class instance',
      {
        k: new (class Point {
          x = 1;
        })(),
      },
      'args.k',
    ],
    ['a null-prototype object', { o: Object.create(null) }, 'args.o'],
    [
      'a "__proto__" key (as JSON.parse makes it)',
      { p: JSON.parse('{"a":{"__proto__":{"admin":true}}}') },
      'args.p.a',
    ],
    // eslint-disable-next-line no-sparse-arrays -- the hole is what is tested
    ['a sparse array', { a: [1, , 3] }, 'args.a'],
    ['an array with extra properties', { a: Object.assign([1], { extra: true }) }, 'args.a'],
    ['a typed array other than Uint8Array', { f: new Float64Array(2) }, 'args.f'],
    ['a DataView', { d: new DataView(new ArrayBuffer(2)) }, 'args.d'],
    ['an ArrayBuffer', { b: new ArrayBuffer(2) }, 'args.b'],
    ['a symbol key', { [Symbol('s')]: 1 }, 'args'],
    ['a symbol', { s: Symbol('s') }, 'args.s'],
    ['a function', { f: () => 1 }, 'args.f'],
    ['a Date with own properties', { d: Object.assign(new Date(0), { tz: 'UTC' }) }, 'args.d'],
    ['a RegExp', { r: /x/ }, 'args.r'],
    ['an odd key path', { 'a b': [{ c: new Map() }] }, 'args["a b"][0].c'],
    ['a key with a lone surrogate', { o: { 'a\ud800': 1 } }, 'args.o'],
  ])('refuses %s, naming the path', (_what, value, path) => {
    expect(() => checkPlain(value, 'args')).toThrow(
      expect.objectContaining({ code: 'PREVAIL_NOT_PLAIN_DATA', path }),
    );
  });

  test('hostile patches (off the wire or the disk) reach nothing but the value: no prototype pollution', () => {
    const hostile: [PathStep[], number, number[]?][] = [
      [['__proto__', 'polluted'], 2, [104, 105]],
      [['constructor', 'prototype', 'polluted'], 1],
      [['toString'], 1],
      [['a', '__proto__', 'polluted'], 1],
      [['missing', 'x'], 1],
      [['n', 'x'], 1],
    ];
    for (const patch of hostile) {
      expect(() => applyPatches({ a: {}, n: 5 }, [patch as never])).toThrow(TypeError);
    }
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, 'polluted')).toBe(false);
    // A damaged entry carrying such a patch is refused as corrupt, not applied.
    const entry = entryPackr.pack([3, 'echo', { a: 1 }, 0, [[['__proto__', 'polluted'], 1]]]);
    expect(decodeEntry(entry)).toMatch(/patches don't fit/);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  test('a cycle is refused; a shared (acyclic) sub-object is not', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = { back: cyclic };
    expect(() => checkPlain(cyclic, 'args')).toThrow(
      expect.objectContaining({ code: 'PREVAIL_NOT_PLAIN_DATA', path: 'args.self.back' }),
    );
    const shared = { x: 1 };
    expect(checkPlain({ a: shared, b: [shared] }, 'args')).toEqual([]);
  });
});

const schema = defineSchema({
  collections: { x: collection<{ v: unknown }>()({}) },
  commands: {
    put: (s, a: { v: unknown }) => s.x.insert({ v: a.v }).id,
    // Returns what arrived, to compare with what was sent.
    echo: (_s, a: unknown) => a,
    // Builds values in the handler (nothing travels in the entry but the id).
    build: (s, a: { kind: string }) => {
      if (a.kind === 'negzero') return s.x.insert({ v: -0 }).id;
      if (a.kind === 'surrogate') return s.x.insert({ v: 'a\ud800b' }).id;
      if (a.kind === 'proto') return s.x.insert({ v: JSON.parse('{"n":{"__proto__":1}}') }).id;
      if (a.kind === 'bytes')
        return s.x.insert({ v: { bytes: new Uint8Array([1, 2, 3]), when: new Date(5) } }).id;
      if (a.kind === 'instance')
        return s.x.insert(
          new (class Row {
            v = 1;
          })(),
        ).id;
      if (a.kind === 'array') return s.x.insert([1, 2] as unknown as { v: unknown }).id;
      if (a.kind === 'updateInstance')
        return s.x.update(
          1,
          () =>
            new (class Row {
              v = 2;
            })(),
        ).id;
      return s.x.insert({ v: new Map() }).id;
    },
  },
});

describe('the value model through a store: propose, log replay, snapshot restore', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('generated values arrive exactly, and come back exactly from replay and from a snapshot', async () => {
    const values = fc.sample(plainValue, { numRuns: 150, seed: 4242 });
    values.push(
      {
        neg: -0,
        s: 'a\ud800b',
        b: new Uint8Array([1, 2]),
        buf: Buffer.from([3]),
        big: 2n ** 70n,
        d: new Date(NaN),
      },
      -0,
      'x\udfff',
      Buffer.from([9]),
    );
    let store = await open({ schema, dataDir: dir });
    const ids: number[] = [];
    try {
      for (const v of values) {
        expect(sig(await store.propose('echo', v))).toBe(sig(v));
        ids.push((await store.propose('put', { v })) as number);
      }
    } finally {
      await store.close();
    }
    const expectStored = (s: typeof store) =>
      ids.forEach((id, i) => expect(sig(s.view.x.get(id)!.v)).toBe(sig(values[i])));

    store = await open({ schema, dataDir: dir }); // log replay (no snapshot yet)
    let replayed: string;
    try {
      expectStored(store);
      replayed = store.stateHash();
      await store.snapshot();
    } finally {
      await store.close();
    }
    store = await open({ schema, dataDir: dir }); // snapshot restore
    try {
      expectStored(store);
      expect(store.stateHash()).toBe(replayed);
    } finally {
      await store.close();
    }
  });

  test('values a handler builds: -0, lone surrogates and bytes survive a snapshot; a "__proto__" key or a Map is refused, changing nothing', async () => {
    let store = await open({ schema, dataDir: dir });
    const ids: Record<string, number> = {};
    try {
      for (const kind of ['negzero', 'surrogate', 'bytes'])
        ids[kind] = (await store.propose('build', { kind })) as number;
      const before = store.view.x.size;
      await expect(store.propose('build', { kind: 'proto' })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'x[4].v.n',
      });
      await expect(store.propose('build', { kind: 'map' })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'x[4].v',
      }); // the same id: the failed command's insert was undone
      // insert/update copy fields: a class instance or an array would become a plain object silently.
      await expect(store.propose('build', { kind: 'instance' })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'x[4]',
      });
      await expect(store.propose('build', { kind: 'array' })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'x[4]',
      });
      await expect(store.propose('build', { kind: 'updateInstance' })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'x[1]',
      });
      expect(store.view.x.size).toBe(before);
      await store.snapshot();
    } finally {
      await store.close();
    }
    store = await open({ schema, dataDir: dir });
    try {
      expect(Object.is(store.view.x.get(ids.negzero!)!.v, -0)).toBe(true);
      expect(sig(store.view.x.get(ids.surrogate!)!.v)).toBe(sig('a\ud800b'));
      const { bytes, when } = store.view.x.get(ids.bytes!)!.v as { bytes: Uint8Array; when: Date };
      expect(bytes).toEqual(new Uint8Array([1, 2, 3]));
      expect(when.getTime()).toBe(5);
    } finally {
      await store.close();
    }
  });

  test('stateHash tells -0 from 0, a lone surrogate from U+FFFD, and bytes from a Buffer', async () => {
    const hashOf = async (v: unknown) => {
      const d = tempDir();
      const s = await open({ schema, dataDir: d });
      try {
        await s.propose('put', { v });
        return s.stateHash();
      } finally {
        await s.close();
        rmSync(d, { recursive: true, force: true });
      }
    };
    expect(await hashOf(-0)).not.toBe(await hashOf(0));
    expect(await hashOf('a\ud800')).not.toBe(await hashOf('a\ufffd'));
    expect(await hashOf(new Uint8Array([1]))).not.toBe(await hashOf(Buffer.from([1])));
  });

  test("stored bytes and Dates can't be changed outside a command", async () => {
    const store = await open({ schema, dataDir: dir });
    try {
      const id = (await store.propose('put', {
        v: { bytes: new Uint8Array([1, 2, 3]), when: new Date(5) },
      })) as number;
      const hash = store.stateHash();
      const got = store.view.x.get(id)!.v as { bytes: Uint8Array; when: Date };
      got.bytes[0] = 9;
      got.bytes.fill(7);
      got.when.setTime(0);
      expect(() => {
        (got as { bytes: unknown }).bytes = new Uint8Array(1);
      }).toThrow(TypeError);
      const again = store.view.x.get(id)!.v as { bytes: Uint8Array; when: Date };
      expect([...again.bytes]).toEqual([1, 2, 3]);
      expect(again.when.getTime()).toBe(5);
      expect(store.stateHash()).toBe(hash);
    } finally {
      await store.close();
    }
  });

  test('bytes in the state survive a snapshot, a close and an open (the data dir stays openable)', async () => {
    let store = await open({ schema, dataDir: dir });
    let id: number;
    try {
      id = (await store.propose('put', { v: new Uint8Array([1, 2, 3]) })) as number;
      await store.snapshot();
    } finally {
      await store.close();
    }
    store = await open({ schema, dataDir: dir });
    try {
      expect(store.view.x.get(id)!.v).toEqual(new Uint8Array([1, 2, 3]));
    } finally {
      await store.close();
    }
  });

  test('arguments that are not plain data are refused before anything is proposed', async () => {
    const store = await open({ schema, dataDir: dir });
    try {
      const applied = store.status().appliedIndex;
      await expect(store.propose('echo', { m: new Map() })).rejects.toMatchObject({
        code: 'PREVAIL_NOT_PLAIN_DATA',
        path: 'args.m',
      });
      await expect(
        store.propose('echo', JSON.parse('{"__proto__":{"x":1}}')),
      ).rejects.toMatchObject({ code: 'PREVAIL_NOT_PLAIN_DATA', path: 'args' });
      await expect(
        store.schedule('echo', { s: new Set() }, Date.now() + 60_000),
      ).rejects.toMatchObject({ code: 'PREVAIL_NOT_PLAIN_DATA', path: 'args.s' });
      expect(store.status().appliedIndex).toBe(applied);
    } finally {
      await store.close();
    }
  });

  test("a schedule's exact arguments are frozen and survive a snapshot", async () => {
    let store = await open({ schema, dataDir: dir });
    const args = { z: -0, s: 'a\udc00', b: new Uint8Array([4]) };
    try {
      await store.schedule('echo', args, Date.now() + 3_600_000);
      // The replicated schedule can't be changed through what schedules() hands out.
      expect(() => {
        (store.schedules()[0]!.args as { z: number }).z = 1;
      }).toThrow(TypeError);
      await store.snapshot();
    } finally {
      await store.close();
    }
    store = await open({ schema, dataDir: dir });
    try {
      expect(sig(store.schedules()[0]!.args)).toBe(sig(args));
    } finally {
      await store.close();
    }
  });
});

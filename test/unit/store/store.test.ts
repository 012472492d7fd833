import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

import fc from 'fast-check';

import { Packr } from 'msgpackr';

import { packrOptions } from '../../../lib/format/entry.js';
import { collection, defineSchema, open, Store } from '../../../lib/store.js';
import { StringTable } from '../../../lib/store/key-map.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

interface Item {
  name: string;
  owner: string;
  price: number;
  tags: string[];
}

const schema = defineSchema({
  collections: {
    items: collection<Item>()({
      indexes: (ix) => ({
        byName: ix.unique((i) => i.name),
        byOwner: ix.hash((i) => i.owner),
        byPrice: ix.sorted((i) => i.price),
        byOwnerPrice: ix.sorted((i) => [i.owner, i.price]),
        history: ix.persistent((i) => i.price),
      }),
    }),
  },
  commands: {
    add(s, a: { name: string; owner: string; price: number }, ctx) {
      return s.items.insert({ ...a, tags: [ctx.id()] }).id;
    },
    reprice(s, a: { name: string; price: number }) {
      const item = s.items.byName.get(a.name);
      if (!item) throw new Error(`no item ${a.name}`);
      return s.items.update(item.id, { price: a.price }).price;
    },
    remove(s, a: { name: string }) {
      const item = s.items.byName.get(a.name);
      return item ? s.items.delete(item.id) : false;
    },
    // Changes several objects, then throws: none of it may remain.
    addThenFail(s, a: { names: string[] }) {
      for (const name of a.names) s.items.insert({ name, owner: 'x', price: 1, tags: [] });
      const first = s.items.values().next().value;
      if (first) s.items.update(first.id, { price: -1 });
      throw new Error('changed my mind');
    },
    stamp(_s, _a: Record<string, never>, ctx) {
      return { index: ctx.index, timestamp: ctx.timestamp, r: ctx.random(), id: ctx.id() };
    },
  },
});

type S = Store<typeof schema.collections, typeof schema.commands>;

const commandArb = fc.oneof(
  fc.record({
    op: fc.constant('add' as const),
    name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'),
    owner: fc.constantFrom('u1', 'u2', 'u3'),
    price: fc.integer({ min: 0, max: 20 }),
  }),
  fc.record({
    op: fc.constant('reprice' as const),
    name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'zz'),
    price: fc.integer({ min: 0, max: 20 }),
  }),
  fc.record({
    op: fc.constant('remove' as const),
    name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'),
  }),
  fc.record({
    op: fc.constant('addThenFail' as const),
    names: fc.array(fc.constantFrom('g', 'h', 'a'), { maxLength: 3 }),
  }),
);
type Cmd = typeof commandArb extends fc.Arbitrary<infer T> ? T : never;

async function run(store: S, cmds: Cmd[]): Promise<void> {
  for (const c of cmds) {
    try {
      if (c.op === 'add')
        await store.propose('add', { name: c.name, owner: c.owner, price: c.price });
      else if (c.op === 'reprice') await store.propose('reprice', { name: c.name, price: c.price });
      else if (c.op === 'remove') await store.propose('remove', { name: c.name });
      else await store.propose('addThenFail', { names: c.names });
    } catch {
      // unique violations, missing items and deliberate failures are part of the model
    }
  }
}

/** Every index agrees with a brute-force scan of the objects. */
function checkIndexes(store: S): void {
  const all = [...store.view.items.values()];
  for (const item of all) {
    expect(store.view.items.byName.get(item.name)).toBe(item);
    expect(store.view.items.get(item.id)).toBe(item);
  }
  expect(new Set(all.map((i) => i.name)).size).toBe(all.length);
  for (const owner of ['u1', 'u2', 'u3', 'x']) {
    const brute = all
      .filter((i) => i.owner === owner)
      .map((i) => i.id)
      .sort();
    expect(
      store.view.items.byOwner
        .get(owner)
        .map((i) => i.id)
        .sort(),
    ).toEqual(brute);
    expect(store.view.items.byOwner.count(owner)).toBe(brute.length);
  }
  const byPrice = [...store.view.items.byPrice.range()].map((i) => [i.price, i.id]);
  expect(byPrice).toEqual(
    all.map((i) => [i.price, i.id] as [number, number]).sort((x, y) => x[0] - y[0] || x[1] - y[1]),
  );
  const mid = [...store.view.items.byPrice.range({ gte: 5, lt: 12 })].map((i) => i.id).sort();
  expect(mid).toEqual(
    all
      .filter((i) => i.price >= 5 && i.price < 12)
      .map((i) => i.id)
      .sort(),
  );
  const u2 = [...store.view.items.byOwnerPrice.range({ prefix: ['u2'] })].map((i) => i.price);
  for (const [key, item] of store.view.items.byOwnerPrice.entries({ prefix: ['u1'], limit: 3 }))
    expect(key).toEqual([item.owner, item.price]);
  expect(u2).toEqual(
    all
      .filter((i) => i.owner === 'u2')
      .map((i) => i.price)
      .sort((x, y) => x - y),
  );
  expect([...store.view.items.history.range()].length).toBe(all.length);
  for (const item of all) expect(item.price).toBeGreaterThanOrEqual(0); // addThenFail's -1 never stays
  expect(all.some((i) => i.owner === 'x')).toBe(false); // nor its inserts
}

describe('object store', () => {
  const dirs: string[] = [];
  const stores: S[] = [];
  const newDir = () => {
    const d = tempDir('prevail-store-');
    dirs.push(d);
    return d;
  };
  async function openStore(dataDir: string, extra: Record<string, unknown> = {}): Promise<S> {
    const store = await open({ schema, dataDir, ...extra });
    stores.push(store);
    return store;
  }
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test('random command sequences: indices always agree with a brute-force scan', async () => {
    const store = await openStore(newDir());
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { maxLength: 25 }), async (cmds) => {
        await run(store, cmds);
        checkIndexes(store);
      }),
      { numRuns: 40 },
    );
  });

  test('the same sequence gives one state hash: live, replayed after restart, restored from a snapshot', async () => {
    let restoredFromSnapshot = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 20, maxLength: 80 }), async (cmds) => {
        const dir = newDir();
        const store = await openStore(dir, {
          snapshotThreshold: 16,
          snapshotTrailing: 4,
          captureEvery: 6,
          captureSliceSize: 3,
        });
        await run(store, cmds);
        const live = store.stateHash();
        checkIndexes(store);
        await store.close();
        const again = await openStore(dir, {
          snapshotThreshold: 16,
          snapshotTrailing: 4,
          captureEvery: 6,
          captureSliceSize: 3,
        });
        expect(again.stateHash()).toBe(live);
        checkIndexes(again);
        if (again.node.status().snapshot.index > 0) restoredFromSnapshot++;
        await again.close();
      }),
      { numRuns: 12 },
    );
    expect(restoredFromSnapshot).toBeGreaterThan(0);
  });

  test('three replicas applying the same commands reach the same state hash', async () => {
    const ports = await freePorts(3);
    const cluster = ports.map((p, i) => ({ id: i + 1, address: `127.0.0.1:${p}` }));
    const replicas = await Promise.all(
      cluster.map((m) =>
        openStore(newDir(), {
          id: m.id,
          address: m.address,
          cluster,
          insecure: true,
          electionTimeoutMs: 1000,
          heartbeatMs: 100,
          snapshotThreshold: 32,
          snapshotTrailing: 8,
          captureEvery: 10,
        }),
      ),
    );
    const leader = await waitFor('a leader', () => replicas.find((r) => r.node.isLeader));
    const cmds = fc.sample(fc.array(commandArb, { minLength: 150, maxLength: 150 }), {
      numRuns: 1,
      seed: 42,
    })[0]!;
    await run(leader, cmds);
    const index = await leader.node.barrier();
    await waitFor('replicas to apply', () =>
      replicas.every((r) => r.node.status().appliedIndex >= index),
    );
    const hashes = new Set(replicas.map((r) => r.stateHash()));
    expect(hashes.size).toBe(1);
    for (const r of replicas) checkIndexes(r);
  });

  test('a throwing handler leaves no trace, and its error reaches the proposer', async () => {
    const store = await openStore(newDir());
    await store.propose('add', { name: 'a', owner: 'u1', price: 3 });
    const before = store.stateHash();
    await expect(store.propose('addThenFail', { names: ['g', 'h'] })).rejects.toThrow(
      'changed my mind',
    );
    expect(store.stateHash()).toBe(before);
    await expect(store.propose('add', { name: 'a', owner: 'u2', price: 1 })).rejects.toMatchObject({
      code: 'PREVAIL_UNIQUE_VIOLATION',
    });
    expect(store.stateHash()).toBe(before);
    // ids are not consumed by rolled-back inserts
    const id = await store.propose('add', { name: 'b', owner: 'u1', price: 4 });
    expect(id).toBe(2);
  });

  test('mutations outside commands throw a coded error; stored objects are frozen', async () => {
    const store = await openStore(newDir());
    await store.propose('add', { name: 'a', owner: 'u1', price: 3 });
    const items = store.view.items as unknown as {
      insert(o: unknown): unknown;
      update(id: number, p: unknown): unknown;
      delete(id: number): unknown;
    };
    expect(() => items.insert({ name: 'z' })).toThrow(
      expect.objectContaining({ code: 'PREVAIL_OUTSIDE_COMMAND' }),
    );
    expect(() => items.update(1, { price: 9 })).toThrow(
      expect.objectContaining({ code: 'PREVAIL_OUTSIDE_COMMAND' }),
    );
    expect(() => items.delete(1)).toThrow(
      expect.objectContaining({ code: 'PREVAIL_OUTSIDE_COMMAND' }),
    );
    const item = store.view.items.byName.get('a')!;
    expect(Object.isFrozen(item)).toBe(true);
    expect(Object.isFrozen(item.tags)).toBe(true);
    expect(() => {
      (item as { price: number }).price = 0;
    }).toThrow(TypeError);
    await expect(store.propose('nope' as 'add', {} as never)).rejects.toMatchObject({
      code: 'PREVAIL_UNKNOWN_COMMAND',
    });
  });

  test('snapshot on demand: captured, written, and restored from on restart', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    for (let i = 0; i < 30; i++)
      await store.propose('add', { name: `n${i}`, owner: 'u1', price: i });
    expect(store.node.status().snapshot.index).toBe(0);
    const snap = await store.snapshot();
    expect(snap.index).toBeGreaterThan(30);
    expect(store.status().capture.baseIndex).toBeGreaterThan(0);
    await store.propose('add', { name: 'after', owner: 'u2', price: 99 });
    const hash = store.stateHash();
    await store.close();
    const again = await openStore(dir);
    expect(again.node.status().snapshot.index).toBe(snap.index);
    expect(again.stateHash()).toBe(hash);
    checkIndexes(again);
  });

  test('restore keeps long strings, nested values and frozenness of objects inserted in bulk', async () => {
    // A bulk command's payload is large enough for msgpackr to decode its strings as slices
    // of one string; stored objects get flat copies: values must be unchanged.
    const bulk = defineSchema({
      collections: {
        docs: collection<{ title: string; meta: { tags: string[]; note: string } }>()({
          indexes: (ix) => ({
            byTitle: ix.unique((d) => d.title),
            byNote: ix.hash((d) => d.meta.note),
            byTag: ix.sorted((d) => d.meta.tags[0]),
          }),
        }),
      },
      commands: {
        addMany(s, a: { docs: { title: string; meta: { tags: string[]; note: string } }[] }) {
          for (const d of a.docs) s.docs.insert(d);
        },
        retitle(s, a: { id: number; title: string }) {
          return s.docs.update(a.id, { title: a.title }).title;
        },
      },
    });
    const docs = Array.from({ length: 300 }, (_, i) => ({
      title: `a long title number ${i} \u00e9\u{1F600}`,
      meta: {
        tags: [`tag-${i % 7}-with-a-long-name`, 'short'],
        note: `note ${i % 5} long enough to be sliced`,
      },
    }));
    const dir = newDir();
    const s1 = await open({ schema: bulk, dataDir: dir });
    stores.push(s1 as unknown as S);
    await s1.propose('addMany', { docs });
    await s1.propose('retitle', { id: 5, title: 'a retitled document, long' });
    await s1.snapshot();
    const hash = s1.stateHash();
    await s1.close();
    const s2 = await open({ schema: bulk, dataDir: dir });
    stores.push(s2 as unknown as S);
    expect(s2.node.status().snapshot.index).toBeGreaterThan(0);
    expect(s2.stateHash()).toBe(hash);
    const all = [...s2.view.docs.values()];
    expect(all.map((d) => ({ title: d.title, meta: d.meta }))).toEqual(
      docs.map((d, i) => (i === 4 ? { ...d, title: 'a retitled document, long' } : d)),
    );
    for (const d of all) {
      expect(Object.isFrozen(d) && Object.isFrozen(d.meta) && Object.isFrozen(d.meta.tags)).toBe(
        true,
      );
      expect(s2.view.docs.byTitle.get(d.title)).toBe(d);
    }
    expect(s2.view.docs.byTitle.get(docs[4]!.title)).toBeUndefined();
    expect(s2.view.docs.byNote.count('note 3 long enough to be sliced')).toBe(60);
    expect(s2.view.docs.byTag.get('tag-2-with-a-long-name').map((d) => d.id)).toEqual(
      all.filter((d) => d.meta.tags[0] === 'tag-2-with-a-long-name').map((d) => d.id),
    );
  });

  test('captures are incremental: unchanged chunks keep their frames, changed ones (also during a capture) are redone', async () => {
    const dir = newDir();
    const opts = { captureSliceSize: 10, snapshotThreshold: 1e9, captureEvery: 1e9 }; // chunks of 10 ids
    const store = await openStore(dir, opts);
    const serialised: number[] = [];
    store.on('capture', (e: { serialised: number }) => serialised.push(e.serialised));
    for (let i = 0; i < 100; i++)
      await store.propose('add', { name: `n${i}`, owner: 'u1', price: i });
    await store.captureNow();
    expect(serialised.pop()).toBe(100);
    await store.propose('reprice', { name: 'n4', price: 1000 }); // id 5: chunk 0 (ids 1-9)
    await store.propose('remove', { name: 'n55' }); // id 56: chunk 5 (ids 50-59)
    await store.captureNow();
    expect(serialised.pop()).toBe(9 + 9);
    await store.captureNow();
    expect(serialised.pop()).toBe(0);
    // Writes while a capture runs: the capture describes the state at its start, and the
    // chunks they touched are serialised again by the next one.
    const running = store.captureNow();
    const during = [
      store.propose('reprice', { name: 'n20', price: 2000 }),
      store.propose('add', { name: 'late', owner: 'u2', price: 7 }),
    ];
    await Promise.all([running, ...during]);
    await store.captureNow();
    expect(serialised.pop()).toBe(10 + 2); // chunk 2 (ids 20-29) and chunk 10 (ids 100, 101: the new object)
    await store.node.snapshot();
    await store.propose('reprice', { name: 'n30', price: 31 }); // in the log tail
    const hash = store.stateHash();
    await store.close();
    const again = await openStore(dir, opts);
    expect(again.stateHash()).toBe(hash);
    checkIndexes(again);
    const after: number[] = [];
    again.on('capture', (e: { serialised: number }) => after.push(e.serialised));
    await again.captureNow();
    expect(after).toEqual([10]); // restored frames are reused; only the tail's chunk (ids 30-39) is redone
    await again.close();
    // Frames that do not match this store's chunks (another slice size, or older snapshots,
    // which grouped objects by count) are restored as they are and serialised again.
    const other = await openStore(dir, { ...opts, captureSliceSize: 25 });
    expect(other.stateHash()).toBe(hash);
    const redone: number[] = [];
    other.on('capture', (e: { serialised: number }) => redone.push(e.serialised));
    await other.snapshot();
    // All but ids 100-101: their old frame still holds exactly the objects of one new chunk (100-124).
    expect(redone).toEqual([other.view.items.size - 2]);
    await other.close();
    const last = await openStore(dir, { ...opts, captureSliceSize: 25 });
    expect(last.stateHash()).toBe(hash);
    checkIndexes(last);
  });

  test('snapshot rows: objects of many shapes and odd keys come back equal; format-1 snapshots (one map per object) are still read', async () => {
    const free = defineSchema({
      collections: {
        things: collection<Record<string, unknown>>()({
          indexes: (ix) => ({ byK: ix.sorted((t) => (typeof t.k === 'number' ? t.k : undefined)) }),
        }),
      },
      commands: {
        put(s, a: { things: Record<string, unknown>[] }) {
          for (const t of a.things) s.things.insert(t);
        },
        // JSON.parse keeps a "__proto__" key as an own property: refused (plain-data.ts).
        putJson(s, a: { json: string }) {
          s.things.insert(JSON.parse(a.json) as Record<string, unknown>);
        },
      },
    });
    const things: Record<string, unknown>[] = [
      { k: 1, a: 'x' },
      { a: 'y', k: 2 },
      { k: 3, a: 'z' },
      { k: 4 },
      {},
      { ['__proto_']: 'not quite', k: 5 },
      {
        0: 'zero',
        10: 'ten',
        k: 6,
        'a b': [1, { deep: 'a long nested string value' }],
        'quote"s': null,
        u: undefined,
      },
      { constructor: 'c', toString: 't', k: 7, big: 2n ** 60n, when: new Date(0) },
      ...Array.from({ length: 40 }, (_, i) => ({
        [`key${i}`]: i,
        k: 100 + i,
        text: `a long string value number ${i}`,
      })),
    ];
    const dir = newDir();
    const s1 = await open({ schema: free, dataDir: dir, captureSliceSize: 16 });
    stores.push(s1 as unknown as S);
    await s1.propose('put', { things });
    await expect(
      s1.propose('putJson', {
        json: '{"__proto__": {"polluted": true}, "k": 8, "x": "an own __proto__ key"}',
      }),
    ).rejects.toMatchObject({ code: 'PREVAIL_NOT_PLAIN_DATA', path: 'things[49]' });
    await s1.snapshot();
    const live = [...s1.view.things.values()];
    const hash = s1.stateHash();
    await s1.close();
    const s2 = await open({ schema: free, dataDir: dir, captureSliceSize: 16 });
    stores.push(s2 as unknown as S);
    expect(s2.node.status().snapshot.index).toBeGreaterThan(0);
    expect(s2.stateHash()).toBe(hash);
    const back = [...s2.view.things.values()];
    expect(back).toEqual(live);
    for (let i = 0; i < back.length; i++) {
      expect(Object.keys(back[i]!)).toEqual(Object.keys(live[i]!));
      expect(Object.getPrototypeOf(back[i])).toBe(Object.prototype);
      expect(Object.isFrozen(back[i])).toBe(true);
    }
    expect(back.find((t) => t.k === 5)!.__proto_).toBe('not quite');
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    expect(s2.view.things.byK.get(5).length).toBe(1);

    // Format 1, as earlier versions wrote it: a meta frame, then one map per object.
    const packr = new Packr(packrOptions);
    const framed = (v: unknown) => {
      const b = packr.pack(v);
      const f = Buffer.alloc(4 + b.length);
      f.writeUInt32LE(b.length, 0);
      f.set(b, 4);
      return f;
    };
    const old = Buffer.concat([
      framed({
        t: 'meta',
        format: 1,
        baseIndex: 7,
        lastTimestamp: 5,
        collections: { things: { version: 1, nextId: 4 } },
      }),
      framed({
        t: 'objs',
        c: 'things',
        items: [
          { id: 1, k: 10, a: 'a long string in an old frame' },
          { id: 3, k: 30 },
        ],
      }),
      framed({ t: 'tail', entries: [] }),
    ]);
    const offline = Store.offline(free);
    offline.restore(old);
    expect([...offline.view.things.values()]).toEqual([
      { id: 1, k: 10, a: 'a long string in an old frame' },
      { id: 3, k: 30 },
    ]);
    expect(offline.view.things.byK.get(30).map((t) => t.id)).toEqual([3]);
    // The first rows layout (format 2 as first written): each item [shape, ...values].
    const rows = Buffer.concat([
      framed({
        t: 'meta',
        format: 2,
        baseIndex: 7,
        lastTimestamp: 5,
        collections: { things: { version: 1, nextId: 5 } },
      }),
      framed({
        t: 'objs',
        c: 'things',
        shapes: [
          ['id', 'k'],
          ['id', 'a', 'k'],
        ],
        items: [
          [0, 1, 10],
          [1, 4, 'a long string in a rows frame', 40],
        ],
      }),
      framed({ t: 'tail', entries: [] }),
    ]);
    const offline2 = Store.offline(free);
    offline2.restore(rows);
    expect([...offline2.view.things.values()]).toEqual([
      { id: 1, k: 10 },
      { id: 4, a: 'a long string in a rows frame', k: 40 },
    ]);
  });

  test('ctx gives the index, a monotonic leader timestamp, deterministic ids and randoms', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    const a = await store.propose('stamp', {});
    const b = await store.propose('stamp', {});
    expect(b.index).toBe(a.index + 1);
    expect(b.timestamp).toBeGreaterThanOrEqual(a.timestamp);
    expect(a.r).toBeGreaterThanOrEqual(0);
    expect(a.r).toBeLessThan(1);
    expect(a.id).not.toBe(b.id);
  });

  test('a persistent index view stays consistent while commands go on', async () => {
    const store = await openStore(newDir());
    for (const [name, price] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ] as const)
      await store.propose('add', { name, owner: 'u1', price });
    const view = store.view.items.history.view();
    await store.propose('reprice', { name: 'a', price: 10 });
    await store.propose('remove', { name: 'b' });
    await store.propose('add', { name: 'd', owner: 'u1', price: 0 });
    expect([...view.range()].map((i) => [i.name, i.price])).toEqual([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    expect([...store.view.items.history.range()].map((i) => i.name)).toEqual(['d', 'c', 'a']);
  });

  test('a snapshot of an older collection version is migrated on restore; a newer one is refused', async () => {
    const dir = newDir();
    const v1 = defineSchema({
      collections: { people: collection<{ name: string }>()({ version: 1 }) },
      commands: {
        add(s, a: { name: string }) {
          return s.people.insert(a).id;
        },
      },
    });
    const s1 = await open({
      schema: v1,
      dataDir: dir,
      snapshotThreshold: 4,
      snapshotTrailing: 1,
      captureEvery: 2,
    });
    stores.push(s1 as unknown as S);
    const names = [
      'Ada Lovelace',
      'Alan Turing',
      'Grace Hopper',
      'Edsger Dijkstra',
      'Barbara Liskov',
      'Ken Thompson',
    ];
    for (const name of names.slice(0, 4)) await s1.propose('add', { name });
    // Taken on purpose: an automatic one may still hold no captured objects (the capture runs
    // in the background), and then there is nothing to migrate (that case is issue-14 work).
    await s1.snapshot();
    for (const name of names.slice(4)) await s1.propose('add', { name });
    await s1.close();
    const v2 = defineSchema({
      collections: {
        people: collection<{ first: string; last: string }>()({
          version: 2,
          indexes: (ix) => ({ byLast: ix.sorted((p) => p.last) }),
          migrate: (old) => {
            const [first, ...rest] = String(old.name).split(' ');
            return { first: first!, last: rest.join(' ') };
          },
        }),
      },
      commands: {
        add(s, a: { first: string; last: string }) {
          return s.people.insert(a).id;
        },
      },
    });
    // Entries after the snapshot still carry v1 arguments: this v2 handler takes them as they are.
    const s2 = await open({ schema: v2, dataDir: dir });
    stores.push(s2 as unknown as S);
    const lasts = [...s2.view.people.byLast.range()].map((p) => p.last).filter(Boolean);
    expect(lasts.length).toBeGreaterThan(0);
    expect(lasts).toEqual([...lasts].sort());
    expect(s2.view.people.get(1)).toMatchObject({ first: 'Ada', last: 'Lovelace' });
    await s2.close();
    // a snapshot written at version 2 can't be read by version-1 code: coded error, nothing lost
    const s3 = await open({
      schema: v2,
      dataDir: dir,
      snapshotThreshold: 2,
      snapshotTrailing: 1,
      captureEvery: 1,
    });
    stores.push(s3 as unknown as S);
    const opened = s3.node.status().appliedIndex;
    for (let i = 0; i < 6; i++) await s3.propose('add', { first: `F${i}`, last: `L${i}` });
    await waitFor('a snapshot written by v2 code', () => s3.node.status().snapshot.index > opened);
    const hash = s3.stateHash();
    await s3.close();
    await expect(open({ schema: v1, dataDir: dir })).rejects.toMatchObject({
      code: 'PREVAIL_SNAPSHOT_UNREADABLE',
    });
    const s4 = await open({ schema: v2, dataDir: dir });
    stores.push(s4 as unknown as S);
    expect(s4.stateHash()).toBe(hash);
    await s4.close();
  });
});

describe('StringTable (string keys of unique and hash indexes)', () => {
  test('behaves like a Map under random set/delete sequences', () => {
    const keyArb = fc.oneof(
      fc.constantFrom('', 'a', 'b', 'ab', '\u{1F600}', 'x'.repeat(40)),
      fc.string({ maxLength: 3 }),
      fc.nat(300).map((n) => `key-${n}`),
    );
    const opArb = fc.oneof(
      fc.record({ op: fc.constant('set' as const), key: keyArb, value: fc.nat() }),
      fc.record({ op: fc.constant('delete' as const), key: keyArb }),
    );
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 400 }),
        fc.uniqueArray(keyArb, { maxLength: 60 }),
        (ops, initial) => {
          const table = new StringTable<number>();
          const model = new Map<string, number>();
          // Bulk-loaded first (restore's path), then changed one key at a time.
          expect(
            table.load(
              Int32Array.from(initial, (k) => StringTable.hash(k)),
              initial,
              initial.map((_, i) => i),
            ),
          ).toBe(true);
          initial.forEach((k, i) => model.set(k, i));
          expect(new Map(table.entries())).toEqual(model);
          for (const o of ops) {
            if (o.op === 'set') {
              table.set(o.key, o.value);
              model.set(o.key, o.value);
            } else {
              expect(table.delete(o.key)).toBe(model.delete(o.key));
            }
            expect(table.get(o.key)).toBe(model.get(o.key));
          }
          expect(table.size).toBe(model.size);
          expect(new Map(table.entries())).toEqual(model);
          for (const k of [...model.keys(), 'absent', '']) {
            expect(table.has(k)).toBe(model.has(k));
            expect(table.get(k)).toBe(model.get(k));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('load refuses repeated keys and leaves the table empty', () => {
    const table = new StringTable<number>();
    const keys = ['a', 'b', 'a'];
    expect(
      table.load(
        Int32Array.from(keys, (k) => StringTable.hash(k)),
        keys,
        [1, 2, 3],
      ),
    ).toBe(false);
    expect(table.size).toBe(0);
    expect(table.get('a')).toBeUndefined();
    const many = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
    expect(
      table.load(
        Int32Array.from(many, (k) => StringTable.hash(k)),
        many,
        many.map((_, i) => i),
      ),
    ).toBe(true);
    let wrong = 0;
    for (let i = 0; i < many.length; i++) if (table.get(`k${i}`) !== i) wrong++;
    expect(wrong).toBe(0);
    expect(() => table.load(new Int32Array(0), [], [])).toThrow('empty');
  });

  test('50k keys: growth, deletion of every other key (probe chains wrap around), reinsertion, clear', () => {
    const table = new StringTable<number>();
    const n = 50_000;
    for (let i = 0; i < n; i++) table.set(`user${i}@example.com`, i);
    expect(table.size).toBe(n);
    for (let i = 0; i < n; i += 2) expect(table.delete(`user${i}@example.com`)).toBe(true);
    expect(table.size).toBe(n / 2);
    let wrong = 0;
    for (let i = 0; i < n; i++)
      if (table.get(`user${i}@example.com`) !== (i % 2 ? i : undefined)) wrong++;
    for (let i = 0; i < n; i += 2) table.set(`user${i}@example.com`, -i);
    for (let i = 0; i < n; i++) if (table.get(`user${i}@example.com`) !== (i % 2 ? i : -i)) wrong++;
    expect(wrong).toBe(0);
    expect(table.size).toBe(n);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.get('user1@example.com')).toBeUndefined();
  });
});

test('an entry this code cannot decode stops the replica loudly instead of diverging', () => {
  const dir = tempDir('prevail-store-');
  const script = `
    import { open, defineSchema, collection } from './dist/index.js';
    const schema = defineSchema({ collections: { c: collection()() }, commands: { ok: () => 1 } });
    const store = await open({ schema, dataDir: ${JSON.stringify(dir)} });
    await store.propose('ok', {});
    await store.node.propose(new Uint8Array([1, 2, 3]));
    console.log('NOT REACHED');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(),
    encoding: 'utf8',
    timeout: 20_000,
  });
  rmSync(dir, { recursive: true, force: true });
  expect(r.status).not.toBe(0);
  expect(r.stdout).not.toContain('NOT REACHED');
  expect(r.stderr).toContain('PREVAIL_CORRUPT_ENTRY');
});

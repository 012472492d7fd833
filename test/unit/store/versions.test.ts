// Schema versions on a single durable node: faithful replay of entries under the version they
// were proposed in, activation with migrations at one index, refusals of code too old or too
// new for the data, aliases and retirement, and snapshots at any point giving the same state.
import { rmSync } from 'node:fs';

import fc from 'fast-check';
import { Packr } from 'msgpackr';

import { ErrorCodes } from '../../../lib/core/errors.js';
import { EntryFormat, decodeEntry, encodeEntry, packrOptions } from '../../../lib/format/entry.js';
import { collection, defineSchema, open, type Schema, type Store } from '../../../lib/store.js';
import { tempDir } from '../../helpers/cluster.js';
import { plainValue, sig } from '../../helpers/plain-values.js';

interface Account {
  owner: string;
  balance: number;
}
interface AccountV2 extends Account {
  currency: string;
}

const v1 = defineSchema({
  collections: { accounts: collection<Account>()() },
  commands: {
    open(s, a: { owner: string }) {
      return s.accounts.insert({ owner: a.owner, balance: 0 }).id;
    },
    deposit(s, a: { id: number; amount: number }) {
      const acc = s.accounts.get(a.id);
      if (!acc) throw new Error('no account');
      return s.accounts.update(a.id, { balance: acc.balance + a.amount }).balance;
    },
  },
});

// v2: deposits charge a fee of 1, accounts gain a currency and an index by owner, transfers are new.
const v2 = v1.next({
  collections: {
    accounts: collection<AccountV2>()({
      indexes: (ix) => ({ byOwner: ix.unique((a) => a.owner) }),
    }),
  },
  commands: {
    deposit(s, a: { id: number; amount: number }) {
      const acc = s.accounts.get(a.id);
      if (!acc) throw new Error('no account');
      return s.accounts.update(a.id, { balance: acc.balance + a.amount - 1 }).balance;
    },
    transfer(s, a: { from: string; to: string; amount: number }) {
      const from = s.accounts.byOwner.get(a.from)!;
      const to = s.accounts.byOwner.get(a.to)!;
      s.accounts.update(from.id, { balance: from.balance - a.amount });
      s.accounts.update(to.id, { balance: to.balance + a.amount });
      return true;
    },
  },
  migrate: { accounts: (a) => ({ owner: a.owner, balance: a.balance, currency: 'EUR' }) },
});

// v3: `open` becomes `create` (the old name an alias).
const v3 = v2.next({
  commands: {
    create(s, a: { owner: string }) {
      return s.accounts.insert({ owner: a.owner, balance: 0, currency: 'EUR' }).id;
    },
  },
  retire: ['open'],
  aliases: { open: 'create' },
});

type AnyStore = Store<any, any>;
const dirs: string[] = [];
const stores: AnyStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => undefined)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function openOn<S extends Schema<any, any>>(
  dataDir: string,
  schema: S,
  extra: Record<string, unknown> = {},
): Promise<Store<S['collections'], S['commands']>> {
  const store = await open({ dataDir, schema, ...extra });
  stores.push(store);
  return store;
}
async function closeAll() {
  await Promise.all(stores.splice(0).map((s) => s.close()));
}
function newDir() {
  const d = tempDir('versions');
  dirs.push(d);
  return d;
}

describe('declaring versions', () => {
  it('keeps each version complete and the newest on top', () => {
    expect(v1.version).toBe(1);
    expect(v3.version).toBe(3);
    expect(v3.versions.map((v) => v.version)).toEqual([1, 2, 3]);
    expect(Object.keys(v3.commands).sort()).toEqual(['create', 'deposit', 'transfer']);
    expect(v3.versions[0]!.commands.deposit).toBe(v1.commands.deposit);
    expect(v3.versions[2]!.retired.has('open')).toBe(true);
  });

  it('refuses a retirement or alias that names nothing', () => {
    expect(() => v1.next({ retire: ['nope' as never] })).toThrow(
      expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
    );
    expect(() => v1.next({ aliases: { x: 'nope' as never } })).toThrow(
      expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
    );
  });
});

describe('a single node deploying new code', () => {
  it('replays old entries with old semantics, then activates and migrates at open', async () => {
    const dir = newDir();
    const a = await openOn(dir, v1);
    const id = (await a.propose('open', { owner: 'ann' })) as number;
    for (let i = 0; i < 5; i++) await a.propose('deposit', { id, amount: 10 });
    expect(a.schemaStatus().active).toBe(1);
    await closeAll();

    const b = await openOn(dir, v2);
    // The five v1 deposits were replayed without the fee; then v2 became active here.
    const status = b.schemaStatus();
    expect(status.active).toBe(2);
    expect(status.code).toEqual({ oldest: 1, newest: 2 });
    expect(b.view.accounts.get(id)).toEqual({ id, owner: 'ann', balance: 50, currency: 'EUR' });
    expect(b.view.accounts.byOwner.get('ann')?.id).toBe(id);
    expect(await b.propose('deposit', { id, amount: 10 })).toBe(59);
    const hash = b.status().effects.hash;
    const state = b.view.accounts.get(id);
    await closeAll();

    // And again from the log alone, and from a snapshot: the same state, the same effects.
    const c = await openOn(dir, v2);
    expect(c.view.accounts.get(id)).toEqual(state);
    expect(c.status().effects.hash).toBe(hash);
    await c.snapshot();
    await closeAll();
    const d = await openOn(dir, v2);
    expect(d.view.accounts.get(id)).toEqual(state);
    expect(d.schemaStatus().activations).toEqual(c.schemaStatus().activations);
  });

  it('refuses to open with code older than the active version (no downgrade after activation)', async () => {
    const dir = newDir();
    const a = await openOn(dir, v2);
    expect(a.schemaStatus().active).toBe(2);
    await a.propose('open', { owner: 'ann' });
    await a.snapshot();
    await closeAll();
    await expect(openOn(dir, v1)).rejects.toMatchObject({
      code: ErrorCodes.SCHEMA_TOO_OLD,
      version: 2,
    });
  });

  it('refuses the log of a version the code dropped, and runs once snapshots are past it', async () => {
    const dir = newDir();
    const a = await openOn(dir, v1);
    await a.propose('open', { owner: 'ann' });
    await closeAll();
    const onlyV2 = defineSchema({ version: 2, collections: v2.collections, commands: v2.commands });
    // The log starts under version 1, which onlyV2 doesn't have.
    await expect(openOn(dir, onlyV2)).rejects.toMatchObject({ code: ErrorCodes.SCHEMA_TOO_NEW });
    const b = await openOn(dir, v2);
    expect(b.schemaStatus().replayNeeds).toBe(1);
    await b.snapshot(); // past the activation
    expect(b.schemaStatus().replayNeeds).toBe(2);
    await closeAll();
    const c = await openOn(dir, onlyV2);
    expect(c.schemaStatus().active).toBe(2);
    expect([...c.view.accounts.values()].map((x) => x.owner)).toEqual(['ann']);
  });

  it('with manual activation, refuses new commands until activate()', async () => {
    const dir = newDir();
    const a = await openOn(dir, v2, { activation: 'manual' });
    const id = (await a.propose('open', { owner: 'ann' })) as number;
    await a.propose('open', { owner: 'bob' });
    expect(await a.propose('deposit', { id, amount: 10 })).toBe(10); // v1 semantics
    await expect(
      a.propose('transfer', { from: 'ann', to: 'bob', amount: 1 }),
    ).rejects.toMatchObject({ code: ErrorCodes.VERSION_NOT_ACTIVE, version: 2, holdingBack: [] });
    await expect(
      a.schedule('transfer', { from: 'ann', to: 'bob', amount: 1 }, Date.now() + 60_000),
    ).rejects.toMatchObject({ code: ErrorCodes.VERSION_NOT_ACTIVE });
    expect(() => a.view.accounts.byOwner).toThrow(
      expect.objectContaining({ code: ErrorCodes.VERSION_NOT_ACTIVE }),
    );
    expect(await a.activate()).toBe(2);
    expect(await a.propose('transfer', { from: 'ann', to: 'bob', amount: 4 })).toBe(true);
    expect(a.view.accounts.byOwner.get('bob')?.balance).toBe(4);
    expect(await a.propose('deposit', { id, amount: 10 })).toBe(15); // v2: the fee
  });

  it('retries commands caught by an activation under the new version (each applied once, under one version)', async () => {
    const dir = newDir();
    const a = await openOn(dir, v2, { activation: 'manual' });
    const id = (await a.propose('open', { owner: 'ann' })) as number;
    // Deposits proposed while the activation is in flight: those encoded under version 1 but
    // committed after it fail with SCHEMA_CHANGED inside, and the store proposes them again.
    const deposits = Array.from({ length: 40 }, () =>
      a.proposeWithIndex('deposit', { id, amount: 10 }),
    );
    const activated = a.activate(2);
    const more = Array.from({ length: 40 }, () =>
      a.proposeWithIndex('deposit', { id, amount: 10 }),
    );
    const results = await Promise.all([...deposits, ...more]);
    expect(await activated).toBe(2);
    const at = a.schemaStatus().activations.find((x) => x.version === 2)!.index;
    const charged = results.filter((r) => r.index > at).length;
    expect(charged).toBeGreaterThan(0);
    // Every deposit applied exactly once: 10 each, less 1 for those after the activation.
    expect(a.view.accounts.get(id)?.balance).toBe(80 * 10 - charged);
    expect(new Set(results.map((r) => r.index)).size).toBe(80);
    // Some were proposed twice (open, 80 deposits, the activation, and the retries).
    expect(a.metrics().proposals).toBeGreaterThan(82);
  });

  it('leaves everything as it was when a migration fails, on every reopen alike', async () => {
    const dir = newDir();
    const a = await openOn(dir, v1);
    await a.propose('open', { owner: 'ann' });
    await a.propose('open', { owner: 'ann' }); // a unique index by owner can't hold both
    await closeAll();
    const b = await openOn(dir, v2);
    expect(b.schemaStatus().active).toBe(1);
    expect(b.schemaStatus().failed).toEqual([
      { version: 2, message: expect.stringContaining('accounts.byOwner') },
    ]);
    expect([...b.view.accounts.values()]).toEqual([
      { id: 1, owner: 'ann', balance: 0 },
      { id: 2, owner: 'ann', balance: 0 },
    ]);
    const effects = b.status().effects.hash;
    await expect(b.activate(2)).rejects.toMatchObject({
      code: ErrorCodes.MIGRATION_FAILED,
      version: 2,
    });
    expect(b.schemaStatus().active).toBe(1);
    expect(b.view.accounts.get(2)).toEqual({ id: 2, owner: 'ann', balance: 0 });
    // Still version 1: its handlers, its (absent) indexes.
    expect(await b.propose('deposit', { id: 2, amount: 3 })).toBe(3);
    expect(() => b.view.accounts.byOwner).toThrow(
      expect.objectContaining({ code: ErrorCodes.VERSION_NOT_ACTIVE }),
    );
    expect(b.status().effects.hash).not.toBe(effects);
    // The same on a replay of the same log.
    const state = [...b.view.accounts.values()];
    await closeAll();
    const c = await openOn(dir, v2);
    expect([...c.view.accounts.values()]).toEqual(state);
    expect(c.schemaStatus().active).toBe(1);
  });

  it('accepts a retired name through its alias, and applies old entries under it', async () => {
    const dir = newDir();
    const a = await openOn(dir, v2);
    const id = (await a.propose('open', { owner: 'ann' })) as number;
    await closeAll();
    const b = await openOn(dir, v3);
    expect(b.schemaStatus().active).toBe(3);
    const id2 = (await b.propose('open' as 'create', { owner: 'bob' })) as number;
    expect(v3.versions[2]!.aliases).toEqual({ open: 'create' });
    expect(b.view.accounts.get(id2)).toEqual({
      id: id2,
      owner: 'bob',
      balance: 0,
      currency: 'EUR',
    });
    expect(b.view.accounts.get(id)?.owner).toBe('ann');
  });

  it('gives the same state on reopen wherever snapshots and the activation fall (generated runs)', async () => {
    const step = fc.oneof(
      fc.record({ op: fc.constant('deposit' as const), amount: fc.integer({ min: 0, max: 99 }) }),
      fc.record({ op: fc.constant('snapshot' as const) }),
      fc.record({ op: fc.constant('reopen' as const) }),
      fc.record({ op: fc.constant('activate' as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
        const dir = newDir();
        let s = await openOn(dir, v2, { activation: 'manual' });
        const id = (await s.propose('open', { owner: 'ann' })) as number;
        let expected = 0;
        for (const x of steps) {
          if (x.op === 'deposit') {
            const fee = s.schemaStatus().active === 2 ? 1 : 0;
            await s.propose('deposit', { id, amount: x.amount });
            expected += x.amount - fee;
          } else if (x.op === 'snapshot') await s.snapshot();
          else if (x.op === 'activate') await s.activate(2);
          else {
            await closeAll();
            s = await openOn(dir, v2, { activation: 'manual' });
          }
          expect(s.view.accounts.get(id)?.balance).toBe(expected);
        }
        const live = { hash: s.status().effects.hash, state: [...s.view.accounts.values()] };
        await closeAll();
        const again = await openOn(dir, v2, { activation: 'manual' });
        expect([...again.view.accounts.values()]).toEqual(live.state);
        expect(again.status().effects.hash).toBe(live.hash);
        await closeAll();
      }),
      { numRuns: 8 },
    );
  });

  it('carries generated values exactly through a migration, its snapshot and a reopen', async () => {
    const holderV1 = defineSchema({
      collections: { items: collection<{ data: unknown }>()() },
      commands: { put: (st, a: { data: unknown }) => st.items.insert({ data: a.data }).id },
    });
    // The migration moves each value under another key and keeps a copy: both must stay exact.
    const holderV2 = holderV1.next({
      collections: { items: collection<{ data: unknown; was: unknown; v: number }>()() },
      migrate: { items: (o) => ({ data: { moved: o.data }, was: o.data, v: 2 }) },
    });
    await fc.assert(
      fc.asyncProperty(fc.array(plainValue, { minLength: 1, maxLength: 6 }), async (values) => {
        const dir = newDir();
        const a = await openOn(dir, holderV1);
        for (const data of values) await a.propose('put', { data });
        await closeAll();
        const b = await openOn(dir, holderV2);
        expect(b.schemaStatus().active).toBe(2);
        const live = [...b.view.items.values()];
        expect(live.map((o) => sig(o.was))).toEqual(values.map(sig));
        expect(live.map((o) => sig(o.data))).toEqual(values.map((v) => sig({ moved: v })));
        const effects = b.status().effects.hash;
        await b.snapshot();
        await closeAll();
        const c = await openOn(dir, holderV2);
        expect([...c.view.items.values()].map(sig)).toEqual(live.map(sig));
        expect(c.status().effects.hash).toBe(effects);
        await closeAll();
      }),
      { numRuns: 10 },
    );
  });

  it('writes version 1 commands as before (older builds read them) and later ones with their version', () => {
    const packr = new Packr(packrOptions);
    const at1 = encodeEntry({ type: 'command', name: 'open', args: { owner: 'a' }, version: 1 }, 5);
    const at2 = encodeEntry({ type: 'command', name: 'open', args: { owner: -0 }, version: 2 }, 5);
    expect(packr.unpack(at1)).toEqual([EntryFormat.COMMAND, 'open', { owner: 'a' }, 5]);
    expect(packr.unpack(at2)[0]).toBe(EntryFormat.COMMAND_VERSIONED);
    expect(decodeEntry(at2)).toMatchObject({ type: 'command', version: 2, args: { owner: -0 } });
    expect(Object.is((decodeEntry(at2) as { args: { owner: number } }).args.owner, -0)).toBe(true);
    const bad = packr.pack([EntryFormat.COMMAND_VERSIONED, 'open', {}, 5, [], 0]);
    expect(typeof decodeEntry(bad)).toBe('string');
  });
});

// prevail upgrade-check: a data dir written by a real store on disk, replayed offline with other
// code — the same code, a handler changed without a version bump, code missing a command.
import { cpSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { inspectDataDir, runUpgradeCheck, upgradeCheck } from '../../../lib/inspect/index.js';
import { collection, defineSchema, open, type Store } from '../../../lib/store.js';
import { runCli, tempDir, waitFor } from '../../helpers/cluster.js';

interface Account {
  owner: string;
  balance: number;
}
interface Note {
  text: string;
}

const collections = {
  accounts: collection<Account>()({ indexes: (ix) => ({ byOwner: ix.unique((a) => a.owner) }) }),
  notes: collection<Note>()(),
};

function bank(fee: number) {
  return {
    open(s: any, a: { owner: string }) {
      return s.accounts.insert({ owner: a.owner, balance: 0 }).id;
    },
    deposit(s: any, a: { owner: string; amount: number }) {
      const acc = s.accounts.byOwner.get(a.owner);
      if (!acc) throw new Error(`no account ${a.owner}`); // refused by the old code too: normal
      return s.accounts.update(acc.id, { balance: acc.balance + a.amount - fee }).balance;
    },
    note(s: any, a: { text: string }) {
      return s.notes.insert({ text: a.text }).id;
    },
  };
}

const schema = defineSchema({ collections, commands: bank(0) });
// The same commands, but deposit charges a fee: a changed handler, no version bump.
const feeSchema = defineSchema({ collections, commands: bank(1) });
// Code that dropped `note`.
const { note: _dropped, ...withoutNote } = bank(0);
const noNoteSchema = defineSchema({ collections, commands: withoutNote });

// The three as modules, for the command line (plain objects: what defineSchema/collection return).
function schemaModule(fee: number, withNote = true): string {
  return `
export const bank = {
  collections: {
    accounts: { def: { indexes: (ix) => ({ byOwner: ix.unique((a) => a.owner) }) } },
    notes: { def: {} },
  },
  commands: {
    open(s, a) { return s.accounts.insert({ owner: a.owner, balance: 0 }).id; },
    deposit(s, a) {
      const acc = s.accounts.byOwner.get(a.owner);
      if (!acc) throw new Error('no account ' + a.owner);
      return s.accounts.update(acc.id, { balance: acc.balance + a.amount - ${fee} }).balance;
    },
    ${withNote ? 'note(s, a) { return s.notes.insert({ text: a.text }).id; },' : ''}
  },
};
`;
}

/** A writable sink that keeps what was written. */
function sink() {
  const chunks: string[] = [];
  return {
    write: (t: string) => chunks.push(t),
    text: () => chunks.join(''),
  };
}

type S = Store<typeof schema.collections, typeof schema.commands>;

describe('prevail upgrade-check', () => {
  const dirs: string[] = [];
  const stores: S[] = [];
  const newDir = (prefix = 'prevail-upgrade-') => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function openStore(dataDir: string, extra: Record<string, unknown> = {}): Promise<S> {
    const store = await open({ schema, dataDir, ...extra });
    stores.push(store);
    await waitFor('a single node to lead', () => store.node.isLeader);
    return store;
  }

  /** 6 notes, an account, then (unless notesOnly) 6 deposits to it, one to nobody (refused). 13 entries. */
  async function work(store: S, round: number, notesOnly = false) {
    const deposits: number[] = [];
    let refused = 0;
    for (let i = 0; i < 6; i++)
      await store.propose('note', { text: `round ${round} note ${i}` } as never);
    await store.propose('open', { owner: `o${round}` } as never);
    for (let i = 0; i < 6; i++) {
      const owner = notesOnly ? `o${round}x` : i === 3 ? 'nobody' : `o${round}`;
      try {
        deposits.push(
          (await store.proposeWithIndex('deposit', { owner, amount: 10 } as never)).index,
        );
      } catch {
        refused++;
      }
    }
    return { deposits, refused };
  }

  /**
   * A stopped node's dir: a round without a successful deposit, then a snapshot (store.snapshot()
   * writes two: at the last entry, and at the barrier it appends), then rounds with deposits
   * until the small threshold has taken one more. The engine keeps the two newest: one before any
   * deposit, one after. With the default trailing the log is kept whole.
   */
  async function dataDir(extra: Record<string, unknown> = {}) {
    const dir = newDir();
    const store = await openStore(dir, { snapshotThreshold: 20, ...extra });
    const first = await work(store, 1, true);
    const s1 = await store.snapshot();
    const rounds = [first];
    for (let round = 2; round <= 4; round++) rounds.push(await work(store, round));
    await waitFor(
      'the threshold to take a snapshot',
      () => store.node.status().snapshot.index > s1.index,
    );
    const hash = store.stateHash();
    const last = store.node.status().lastIndex;
    const newest = store.node.status().snapshot.index;
    await store.close();
    const deposits = rounds.flatMap((r) => r.deposits);
    const refused = rounds.reduce((n, r) => n + r.refused, 0);
    return { dir, hash, last, deposits, refused, snapshots: [s1.index, newest] };
  }

  test('the same code: every recorded hash and every entry matches, handler refusals are listed but pass', async () => {
    const d = await dataDir();
    const inspected = await inspectDataDir(d.dir);
    expect(inspected.firstIndex).toBe(1);
    expect(inspected.snapshots.length).toBeGreaterThanOrEqual(2);

    const alone = await upgradeCheck(d.dir, { schema });
    expect(alone.problems).toEqual([]);
    expect(alone.ok).toBe(true);
    expect(alone.start).toEqual({ index: 0, snapshot: null });
    expect(alone.lastIndex).toBeLessThanOrEqual(d.last);
    expect(alone.stateHash).toBe(d.hash);
    expect(alone.unknownCommands).toEqual([]);
    expect(alone.fatal).toBeNull();
    // Every snapshot's recorded hash lies after the start and is compared.
    expect(alone.recorded.compared).toBe(inspected.snapshots.length);
    expect(alone.recorded.mismatched).toBe(0);
    expect(alone.recorded.checks.every((c) => c.match === true)).toBe(true);
    // Deposits to accounts that don't exist: errors the old code raised as well, listed without --old.
    expect(alone.handlerErrors).toEqual([
      {
        command: 'deposit',
        code: null,
        count: d.refused,
        firstIndex: expect.any(Number),
        message: 'no account o1x',
      },
    ]);
    expect(d.refused).toBeGreaterThan(1);
    expect(alone.changedOutcomes).toBeNull();
    expect(alone.old).toBeNull();

    const withOld = await upgradeCheck(d.dir, { schema, old: schema });
    expect(withOld.ok).toBe(true);
    expect(withOld.handlerErrors).toEqual([]); // the old code raised them too
    expect(withOld.changedOutcomes).toEqual([]);
    expect(withOld.old).toEqual({
      fatal: null,
      firstDifference: null,
      stateHash: { old: d.hash, new: d.hash, match: true },
    });
  });

  test('a changed handler without a version bump fails: the first differing index and command via --old, the range via recorded hashes', async () => {
    const d = await dataDir();
    const firstDeposit = Math.min(...d.deposits);

    const withOld = await upgradeCheck(d.dir, { schema: feeSchema, old: schema });
    expect(withOld.ok).toBe(false);
    expect(withOld.old!.firstDifference).toMatchObject({
      index: firstDeposit,
      command: 'deposit',
      oldOutcome: { ok: true },
      newOutcome: { ok: true },
    });
    expect(withOld.old!.stateHash!.match).toBe(false);
    expect(withOld.old!.stateHash!.old).toBe(d.hash);
    expect(withOld.changedOutcomes).toEqual([]); // same outcomes, other effects
    expect(withOld.problems.join('\n')).toContain(`first at ${firstDeposit} (deposit)`);

    const recorded = await upgradeCheck(d.dir, { schema: feeSchema });
    expect(recorded.ok).toBe(false);
    expect(recorded.unknownCommands).toEqual([]);
    // The first snapshot (no deposit before it) matches; the second brackets the first deposit.
    const [before, after] = recorded.recorded.checks;
    expect(recorded.recorded).toMatchObject({ compared: 2, mismatched: 1 });
    expect(before).toMatchObject({ match: true, after: 0 });
    expect(before!.index).toBeLessThan(firstDeposit);
    expect(after).toMatchObject({ match: false, after: before!.index });
    expect(after!.index).toBeGreaterThanOrEqual(firstDeposit);
    expect(after!.index).toBeLessThanOrEqual(d.snapshots[1]!);
    expect(recorded.problems).toEqual([
      `effects hash at ${after!.index} (${after!.snapshot}) differs from the recorded one: a command in ${before!.index + 1}..${after!.index} changed its effects`,
    ]);
  });

  test('a compacted log starts at the oldest snapshot the log continues; the later one still catches the change', async () => {
    // 13 entries a round: the log is kept from about the first snapshot on.
    const d = await dataDir({ snapshotTrailing: 13 });
    const inspected = await inspectDataDir(d.dir);
    expect(inspected.firstIndex).toBeGreaterThan(2);
    const oldest = inspected.snapshots.find((s) => s.index === d.snapshots[0])!;
    expect(inspected.firstIndex).toBeLessThanOrEqual(oldest.index + 1);

    const same = await upgradeCheck(d.dir, { schema });
    expect(same.ok).toBe(true);
    expect(same.stateHash).toBe(d.hash);
    expect(same.start).toEqual({ index: oldest.store!.baseIndex, snapshot: oldest.file });
    expect(same.recorded).toMatchObject({ compared: 1, mismatched: 0 });

    const recorded = await upgradeCheck(d.dir, { schema: feeSchema });
    expect(recorded.recorded).toMatchObject({ compared: 1, mismatched: 1 });
    expect(recorded.recorded.checks[0]!.after).toBe(oldest.store!.baseIndex);
    const changed = await upgradeCheck(d.dir, { schema: feeSchema, old: schema });
    expect(changed.ok).toBe(false);
    expect(changed.old!.firstDifference).toMatchObject({
      index: Math.min(...d.deposits),
      command: 'deposit',
    });
  });

  test('a backup holding only the newer snapshot: the replay starts at it and checks the entries its tail carries one by one', async () => {
    const d = await dataDir({ snapshotTrailing: 13 });
    const inspected = await inspectDataDir(d.dir);
    const older = inspected.snapshots.find((s) => s.index === d.snapshots[0])!;
    const newest = inspected.snapshots.find((s) => s.index === d.snapshots[1])!;
    expect(inspected.firstIndex).toBeGreaterThan(2);
    expect(newest.store!.tailEntries).toBeGreaterThan(0);
    const base = newest.store!.baseIndex;
    const inTail = d.deposits.filter((i) => i > base && i <= newest.index);
    expect(inTail.length).toBeGreaterThan(0);
    const backup = newDir('prevail-upgrade-backup-');
    cpSync(d.dir, backup, { recursive: true });
    rmSync(join(backup, older.file));
    rmSync(join(backup, older.metaFile));

    const same = await upgradeCheck(backup, { schema });
    expect(same.start).toEqual({ index: base, snapshot: newest.file });
    expect(same).toMatchObject({ ok: true, stateHash: d.hash });
    expect(same.recorded.compared).toBe(0);
    const changed = await upgradeCheck(backup, { schema: feeSchema, old: schema });
    expect(changed.old!.firstDifference).toMatchObject({ index: inTail[0], command: 'deposit' });
    const alone = await upgradeCheck(backup, { schema: feeSchema });
    expect(alone.ok).toBe(true); // nothing recorded after the start to compare with
    const mod = join(newDir('prevail-upgrade-mods-'), 'fee.mjs');
    writeFileSync(mod, schemaModule(1));
    const out = sink();
    expect(await runUpgradeCheck([backup, '--schema', `${mod}#bank`], out, { err: out })).toBe(0);
    expect(out.text()).toContain('0 hashes compared: pass --old');
  });

  test('new code missing a command: the unknown command is reported with its count and first index, and the replay stops there', async () => {
    const d = await dataDir();
    const inspected = await inspectDataDir(d.dir);
    const notes = inspected.entries.filter((e) => e.command?.name === 'note');
    const r = await upgradeCheck(d.dir, { schema: noNoteSchema });
    expect(r.ok).toBe(false);
    expect(r.unknownCommands).toEqual([
      { name: 'note', count: notes.length, firstIndex: notes[0]!.index },
    ]);
    expect(r.fatal).toMatchObject({ index: notes[0]!.index, code: 'PREVAIL_UNKNOWN_COMMAND' });
    expect(r.lastIndex).toBe(notes[0]!.index);
    expect(r.recorded.checks.every((c) => c.match === null)).toBe(true); // none reached
  });

  test("a live node's dir is refused; a copy of it is checked", async () => {
    const dir = newDir();
    const store = await openStore(dir);
    await work(store, 1);
    await expect(upgradeCheck(dir, { schema })).rejects.toMatchObject({
      code: 'PREVAIL_DATADIR_LOCKED',
    });
    const copy = newDir();
    cpSync(dir, copy, { recursive: true });
    writeFileSync(join(copy, 'prevail.lock'), '999999999\n'); // no such process
    const hash = store.stateHash();
    await store.close();
    const r = await upgradeCheck(copy, { schema });
    expect(r.ok).toBe(true);
    expect(r.stateHash).toBe(hash);
    expect(r.recorded.compared).toBe(0);
  });

  test('the command line, as a child process: exit codes 0, 1 and 2, text and --json', async () => {
    const d = await dataDir();
    const firstDeposit = Math.min(...d.deposits);
    const mods = newDir('prevail-upgrade-mods-');
    writeFileSync(join(mods, 'old.mjs'), schemaModule(0));
    writeFileSync(join(mods, 'fee.mjs'), schemaModule(1));
    writeFileSync(join(mods, 'no-note.mjs'), schemaModule(0, false));
    const before = readdirSync(d.dir).sort();

    let run = await runCli(['upgrade-check', d.dir, '--schema', join(mods, 'old.mjs#bank')]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/recorded hashes compared, 0 differ/);
    expect(run.stdout).toMatch(/\nok\n$/);

    run = await runCli([
      'upgrade-check',
      d.dir,
      `--schema=${join(mods, 'fee.mjs')}#bank`,
      '--old',
      `${join(mods, 'old.mjs')}#bank`,
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(
      `effects first differ from the old code's at ${firstDeposit} (deposit)`,
    );
    expect(run.stdout).toContain('FAILED');

    run = await runCli(['upgrade-check', d.dir, '--schema', join(mods, 'fee.mjs#bank'), '--json']);
    expect(run.code).toBe(1);
    const json = JSON.parse(run.stdout) as { ok: boolean; recorded: { mismatched: number } };
    expect(json.ok).toBe(false);
    expect(json.recorded.mismatched).toBeGreaterThan(0);

    run = await runCli(['upgrade-check', d.dir, '--schema', join(mods, 'no-note.mjs#bank')]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/unknown command "note": \d+ entries, first at \d+/);
    expect(run.stdout).toContain('PREVAIL_UNKNOWN_COMMAND');

    for (const argv of [
      [d.dir],
      [d.dir, '--schema'],
      [d.dir, '--schema', join(mods, 'missing.mjs')],
      [d.dir, '--schema', join(mods, 'old.mjs#nope')],
      [d.dir, '--schema', join(mods, 'old.mjs#bank'), '--bogus'],
      ['--schema', join(mods, 'old.mjs#bank')],
    ]) {
      run = await runCli(['upgrade-check', ...argv]);
      expect({ argv, code: run.code }).toEqual({ argv, code: 2 });
      expect(run.stderr).toMatch(/^prevail upgrade-check: .*\nusage: prevail upgrade-check DIR/);
      expect(run.stdout).toBe('');
    }
    run = await runCli([
      'upgrade-check',
      join(mods, 'no-such-dir'),
      '--schema',
      join(mods, 'old.mjs#bank'),
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('PREVAIL_IO');
    // Read-only: the dir holds what it held.
    expect(readdirSync(d.dir).sort()).toEqual(before);
  });
});

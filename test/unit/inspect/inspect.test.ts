// prevail inspect: a data dir written by a real store, read back offline.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
  closeSync,
} from 'node:fs';
import { join } from 'node:path';

import { inspectDataDir, runInspect, type InspectResult } from '../../../lib/inspect/index.js';
import { RaftNode } from '../../../lib/engine/raft-node.js';
import { collection, defineSchema, open, type Store } from '../../../lib/store.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

interface Account {
  owner: string;
  balance: number;
}
interface Note {
  text: string;
  tags: string[];
}

// Handlers use no ctx values, so a reference store with a different log (other indices,
// other timestamps) reaches the same state from the same commands.
const schema = defineSchema({
  collections: {
    accounts: collection<Account>()({ indexes: (ix) => ({ byOwner: ix.unique((a) => a.owner) }) }),
    notes: collection<Note>()(),
  },
  commands: {
    open(s, a: { owner: string }) {
      return s.accounts.insert({ owner: a.owner, balance: 0 }).id;
    },
    deposit(s, a: { owner: string; amount: number }) {
      const acc = s.accounts.byOwner.get(a.owner);
      if (!acc) throw new Error(`no account ${a.owner}`);
      return s.accounts.update(acc.id, { balance: acc.balance + a.amount }).balance;
    },
    close(s, a: { owner: string }) {
      const acc = s.accounts.byOwner.get(a.owner);
      return acc ? s.accounts.delete(acc.id) : false;
    },
    note(s, a: { text: string; tags: string[] }) {
      return s.notes.insert({ text: a.text, tags: a.tags }).id;
    },
  },
});

// The same schema as a module, for --schema (plain objects: what defineSchema/collection return).
const schemaModule = `
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
      return s.accounts.update(acc.id, { balance: acc.balance + a.amount }).balance;
    },
    close(s, a) { const acc = s.accounts.byOwner.get(a.owner); return acc ? s.accounts.delete(acc.id) : false; },
    note(s, a) { return s.notes.insert({ text: a.text, tags: a.tags }).id; },
  },
};
`;

type S = Store<typeof schema.collections, typeof schema.commands>;
type Cmd = { name: 'open' | 'deposit' | 'close' | 'note'; args: any };

function commands(n: number, seed: number): Cmd[] {
  const owners = ['ann', 'bob', 'cy', 'dee'];
  const out: Cmd[] = [];
  for (let i = 0; i < n; i++) {
    const k = (i * 7 + seed) % 11;
    const owner = owners[(i + seed) % owners.length]!;
    if (k < 2) out.push({ name: 'open', args: { owner } });
    else if (k < 7)
      out.push({ name: 'deposit', args: { owner: k === 6 ? 'nobody' : owner, amount: i + 1 } }); // 'nobody' throws
    else if (k < 8) out.push({ name: 'close', args: { owner } });
    else out.push({ name: 'note', args: { text: `note ${i} ✓`, tags: [owner, String(k)] } });
  }
  return out;
}

/** A writable sink that keeps what was written. */
function sink() {
  const chunks: string[] = [];
  return {
    write: (s: string) => {
      chunks.push(s);
      return true;
    },
    text: () => chunks.join(''),
  };
}

function flipByte(path: string, offset: number): void {
  const buf = readFileSync(path);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([buf[offset]! ^ 0xff]), 0, 1, offset);
  closeSync(fd);
}

async function expectCode(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await p;
  } catch (err) {
    expect((err as { code?: string }).code).toBe(code);
    return err as Error & { code: string };
  }
  throw new Error(`expected a rejection with ${code}`);
}

describe('prevail inspect', () => {
  const dirs: string[] = [];
  const stores: S[] = [];
  const nodes: RaftNode<unknown>[] = [];
  const newDir = (prefix = 'prevail-inspect-') => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
    await Promise.all(nodes.splice(0).map((n) => n.close().catch(() => {})));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function openStore(dataDir: string, extra: Record<string, unknown> = {}): Promise<S> {
    const store = await open({ schema, dataDir, ...extra });
    stores.push(store);
    await waitFor('a single node to lead', () => store.node.isLeader);
    return store;
  }

  /** Proposes each command in order; returns the log index of each (null when its handler threw). */
  async function run(store: S, cmds: Cmd[]): Promise<(number | null)[]> {
    const indices: (number | null)[] = [];
    for (const c of cmds) {
      try {
        indices.push((await store.proposeWithIndex(c.name, c.args)).index);
      } catch {
        indices.push(null);
      }
    }
    return indices;
  }

  /**
   * A store that applies exactly the commands with index ≤ N, for each N: the hash and
   * objects it reaches. Failed commands change nothing, so only the indexed ones matter.
   */
  async function reference(cmds: Cmd[], indices: (number | null)[], at: number[]) {
    const ref = await openStore(newDir('prevail-inspect-ref-'));
    const out = new Map<number, { hash: string; accounts: unknown[]; notes: unknown[] }>();
    const record = (n: number) =>
      out.set(n, {
        hash: ref.stateHash(),
        accounts: [...ref.view.accounts.values()],
        notes: [...ref.view.notes.values()],
      });
    const wanted = [...at].sort((a, b) => a - b);
    let w = 0;
    for (let i = 0; i <= cmds.length; i++) {
      const index = i < cmds.length ? indices[i] : Number.MAX_SAFE_INTEGER;
      if (index === null) continue;
      while (w < wanted.length && wanted[w]! < index!) record(wanted[w++]!);
      if (i < cmds.length) await ref.propose(cmds[i]!.name, cmds[i]!.args);
    }
    await ref.close();
    return out;
  }

  test('lists every entry and snapshot; the state at chosen indices matches a store that applied those commands', async () => {
    const dir = newDir();
    // A long trailing log: entries before the snapshots stay on disk.
    const store = await openStore(dir, {
      snapshotThreshold: 40,
      snapshotTrailing: 1000,
      captureEvery: 10,
      captureSliceSize: 3,
    });
    const before = commands(30, 1);
    const after = commands(25, 5);
    const i1 = await run(store, before);
    const snap = await store.snapshot();
    const i2 = await run(store, after);
    const cmds = [...before, ...after];
    const indices = [...i1, ...i2];
    expect(indices.some((i) => i === null)).toBe(true); // some handlers threw: listed, replayed, no effect
    const liveHash = store.stateHash();
    const last = store.node.status().lastIndex;
    await store.close();

    const r = await inspectDataDir(dir);
    expect(r.node?.id).toBe(1);
    expect(r.lock).toBeNull();
    expect(r.warnings).toEqual([]);
    expect(r.metadata?.term).toBeGreaterThanOrEqual(1);
    expect(r.firstIndex).toBe(1);
    expect(r.lastIndex).toBe(last);
    // Every index, in order, once.
    expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    // Entry 1: the bootstrap configuration with this node.
    expect(r.entries[0]!.type).toBe('configuration');
    expect(r.entries[0]!.configuration).toEqual([
      { id: 1, address: expect.any(String), role: 'voter' },
    ]);
    expect(r.configuration?.members.map((m) => m.id)).toEqual([1]);
    // The commands, decoded, in proposal order; those that committed at their own index.
    const listed = r.entries.filter((e) => e.command); // (the store may add entries of its own)
    expect(listed.map((e) => ({ name: e.command!.name, args: e.command!.args }))).toEqual(cmds);
    for (const e of listed) {
      expect(e.framing).toEqual({ length: expect.any(Number), term: e.term });
      expect(e.command!.timestamp).toBeGreaterThan(1_600_000_000_000);
    }
    for (const [k, index] of indices.entries()) {
      if (index !== null)
        expect(r.entries[index - 1]!.command).toMatchObject({
          name: cmds[k]!.name,
          args: cmds[k]!.args,
        });
    }
    // The snapshot store.snapshot() wrote is there, at a barrier, with the store's frames.
    expect(r.entries[snap.index - 1]!.type).toBe('barrier');
    const s = r.snapshots.find((x) => x.index === snap.index);
    expect(s).toBeDefined();
    expect(s!.term).toBe(snap.term);
    expect(s!.configuration.map((m) => m.id)).toEqual([1]);
    expect(s!.store).not.toBeNull();
    expect(s!.store!.baseIndex).toBeLessThanOrEqual(snap.index);
    expect(Object.keys(s!.store!.collections).sort()).toEqual(['accounts', 'notes']);
    expect(r.segments.length).toBeGreaterThan(0);
    expect(r.segments.reduce((n, g) => n + g.entries, 0)).toBe(last);

    // States: empty, before the snapshot (log only), at it, just after, the end.
    const firstSnap = Math.min(...r.snapshots.map((x) => x.index));
    const at = [0, 5, firstSnap - 1, snap.index, snap.index + 3, last];
    const ref = await reference(cmds, indices, at);
    for (const n of at) {
      const got = await inspectDataDir(dir, { at: n, schema });
      expect({ n, hash: got.state!.stateHash }).toEqual({ n, hash: ref.get(n)!.hash });
      expect(got.state!.collections.accounts).toEqual(ref.get(n)!.accounts);
      expect(got.state!.collections.notes).toEqual(ref.get(n)!.notes);
      if (n >= firstSnap) expect(got.state!.snapshot).not.toBeNull();
      else expect(got.state!.snapshot).toBeNull();
    }
    expect(ref.get(last)!.hash).toBe(liveHash);
    const end = await inspectDataDir(dir, {
      at: snap.index,
      schema,
      from: snap.index - 2,
      to: snap.index + 2,
    });
    expect(end.entries.map((e) => e.index)).toEqual([
      snap.index - 2,
      snap.index - 1,
      snap.index,
      snap.index + 1,
      snap.index + 2,
    ]);
    expect(end.state!.snapshot).toBe(s!.file);
    expect(end.state!.appliedEntries).toBe(0);
    // Replayed from the empty state, every command whose handler threw is reported (and changed nothing).
    const fromEmpty = await inspectDataDir(dir, { at: firstSnap - 1, schema });
    const succeeded = new Set(indices.filter((i) => i !== null));
    expect(fromEmpty.state!.handlerErrors.map((h) => h.index)).toEqual(
      listed.filter((e) => e.index <= firstSnap - 1 && !succeeded.has(e.index)).map((e) => e.index),
    );
    expect(fromEmpty.state!.handlerErrors.length).toBeGreaterThan(0);
    await expectCode(inspectDataDir(dir, { at: last + 1, schema }), 'PREVAIL_INVALID_ARGUMENT');
    await expectCode(inspectDataDir(dir, { at: 3 }), 'PREVAIL_INVALID_ARGUMENT'); // no schema
  });

  test('a compacted log: the state below the kept snapshots is refused with a coded error', async () => {
    const dir = newDir();
    const store = await openStore(dir, { snapshotThreshold: 1000, snapshotTrailing: 2 });
    const cmds = [...commands(12, 2), ...commands(12, 3), ...commands(12, 4)];
    const indices = await run(store, cmds.slice(0, 12));
    await store.snapshot();
    indices.push(...(await run(store, cmds.slice(12, 24))));
    const snap = await store.snapshot();
    indices.push(...(await run(store, cmds.slice(24))));
    const last = store.node.status().lastIndex;
    await store.close();

    const r = await inspectDataDir(dir);
    expect(r.firstIndex).toBeGreaterThan(2); // the early segments were removed
    const oldest = Math.min(...r.snapshots.map((x) => x.index));
    const err = await expectCode(
      inspectDataDir(dir, { at: oldest - 1, schema }),
      'PREVAIL_SNAPSHOT_UNREADABLE',
    );
    expect(err.message).toMatch(/can't be rebuilt/);
    const ref = await reference(cmds, indices, [snap.index, last]);
    expect((await inspectDataDir(dir, { at: snap.index, schema })).state!.stateHash).toBe(
      ref.get(snap.index)!.hash,
    );
    expect((await inspectDataDir(dir, { at: last, schema })).state!.stateHash).toBe(
      ref.get(last)!.hash,
    );
  });

  test('a flipped byte in a segment, a truncated snapshot and a damaged .meta give coded errors naming the file', async () => {
    const dir = newDir();
    const store = await openStore(dir, { snapshotThreshold: 1000, snapshotTrailing: 1000 });
    await run(store, commands(20, 0));
    await store.snapshot();
    await run(store, commands(5, 1));
    await store.close();
    const ok = await inspectDataDir(dir);
    const segment = ok.segments[ok.segments.length - 1]!.file;
    const snapshot = ok.snapshots[ok.snapshots.length - 1]!;

    // Every byte of a batch (but the format word) is under a checksum: header or data.
    for (const offset of [
      8 + 2,
      8 + 8 + 3,
      Math.floor(statSync(join(dir, segment)).size / 2),
      statSync(join(dir, segment)).size - 1,
    ]) {
      const bad = newDir();
      cpSync(dir, bad, { recursive: true });
      flipByte(join(bad, segment), offset);
      const err = await expectCode(inspectDataDir(bad), 'PREVAIL_CORRUPT_ENTRY');
      expect(err.message).toContain(join(bad, segment));
      expect(err.message).toMatch(/at byte \d+/);
    }

    const truncated = newDir();
    cpSync(dir, truncated, { recursive: true });
    const snapPath = join(truncated, snapshot.file);
    truncateSync(snapPath, statSync(snapPath).size - 5);
    let err = await expectCode(inspectDataDir(truncated), 'PREVAIL_SNAPSHOT_UNREADABLE');
    expect(err.message).toContain(snapPath);
    expect(err.message).toMatch(/truncated/);

    const badMeta = newDir();
    cpSync(dir, badMeta, { recursive: true });
    const metaPath = join(badMeta, snapshot.metaFile);
    flipByte(metaPath, statSync(metaPath).size - 12); // inside the configuration
    err = await expectCode(inspectDataDir(badMeta), 'PREVAIL_SNAPSHOT_UNREADABLE');
    expect(err.message).toContain(metaPath);
    expect(err.message).toMatch(/checksum/);

    // The CLI: exit 1 with the coded error printed.
    const out = sink();
    const errOut = sink();
    expect(await runInspect([truncated], out, { err: errOut })).toBe(1);
    expect(errOut.text()).toContain('PREVAIL_SNAPSHOT_UNREADABLE');
    expect(errOut.text()).toContain(snapshot.file);
  });

  test('a live node: warned about the lock; a copy of it reads clean; an unfinished last write is a warning, damage before it an error', async () => {
    const dir = newDir();
    const store = await openStore(dir);
    const indices = await run(store, commands(12, 3));
    const r = await inspectDataDir(dir);
    expect(r.lock).toEqual({ pid: process.pid, live: true });
    expect(r.warnings.join('\n')).toMatch(/tail may be in flux/);
    expect(r.segments.some((g) => g.open)).toBe(true);
    for (const index of indices)
      if (index !== null) expect(r.entries.find((e) => e.index === index)?.type).toBe('command');

    // A copy, as a node killed now would leave it: open segments, a lock held by a dead process.
    const copy = newDir();
    cpSync(dir, copy, { recursive: true });
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(copy, 'prevail.lock'), `${deadPid}\n`);
    const hash = store.stateHash();
    const last = store.node.status().lastIndex;
    await store.close();
    const c = await inspectDataDir(copy, { at: last, schema });
    expect(c.lock).toEqual({ pid: deadPid, live: false });
    expect(c.warnings).toEqual([]);
    expect(c.lastIndex).toBe(last);
    expect(c.state!.stateHash).toBe(hash);
    const seg = c.segments.find((g) => g.open && g.batches >= 2)!;
    expect(seg).toBeDefined();
    expect(seg.usedBytes).toBeLessThan(seg.size); // preallocated, zero-filled after the batches

    // An unfinished last write (non-zero bytes after the last batch, zeros after them): a warning.
    const torn = newDir();
    cpSync(copy, torn, { recursive: true });
    const fd = openSync(join(torn, seg.file), 'r+');
    writeSync(fd, Buffer.alloc(40, 0xab), 0, 40, seg.usedBytes);
    closeSync(fd);
    const t = await inspectDataDir(torn);
    expect(t.lastIndex).toBe(last);
    expect(t.warnings.join('\n')).toMatch(
      new RegExp(`${seg.file}: at byte ${seg.usedBytes}: .*unfinished`),
    );

    // Damage in an earlier batch, with valid batches after it: corruption.
    const bad = newDir();
    cpSync(copy, bad, { recursive: true });
    flipByte(join(bad, seg.file), 8 + 16 + 4); // the first batch's first entry header
    const err = await expectCode(inspectDataDir(bad), 'PREVAIL_CORRUPT_ENTRY');
    expect(err.message).toContain(join(bad, seg.file));
    expect(err.message).toMatch(/at byte 8: .*a valid batch follows/);
  });

  test('payloads that are not store commands are shown as hex; a raw snapshot has no store summary', async () => {
    const dir = newDir();
    const [port] = await freePorts(1);
    let state = Buffer.alloc(0);
    const node = await RaftNode.start({
      id: 1,
      address: `127.0.0.1:${port}`,
      dataDir: dir,
      snapshotThreshold: 1000,
      fsm: {
        apply: (cmd) => {
          state = Buffer.concat([state, cmd]);
          return state.length;
        },
        snapshot: () => state,
        restore: (data) => {
          state = Buffer.from(data);
        },
      },
    });
    nodes.push(node);
    await node.propose(Buffer.from('hello'));
    await node.propose(new Uint8Array(0));
    await node.snapshot();
    await node.propose(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await node.close();
    const r = await inspectDataDir(dir);
    const payloads = r.entries.filter((e) => e.type === 'command').map((e) => e.payload);
    expect(payloads).toEqual([
      { length: 5, hex: '68656c6c6f', truncated: false },
      { length: 0, hex: '', truncated: false },
      { length: 9, hex: '010203040506070809', truncated: false },
    ]);
    expect(r.snapshots.length).toBeGreaterThan(0);
    for (const s of r.snapshots)
      expect({ store: s.store, payloadLength: s.payloadLength }).toEqual({
        store: null,
        payloadLength: 5,
      });
  });

  test('the CLI: tables, --json, --at with --schema module#export or the default schema, exit codes', async () => {
    const dir = newDir();
    const store = await openStore(dir, { snapshotThreshold: 1000 });
    const cmds = commands(15, 7);
    const indices = await run(store, cmds);
    const snap = await store.snapshot();
    await run(store, commands(3, 8));
    const blobAt = (
      await store.proposeWithIndex('note', {
        text: 'bytes',
        tags: [],
        blob: new Uint8Array([1, 2, 255]),
        big: 2n ** 62n,
      } as never)
    ).index;
    const hash = store.stateHash();
    const last = store.node.status().lastIndex;
    await store.close();

    let out = sink();
    let err = sink();
    expect(await runInspect([dir], out, { err })).toBe(0);
    const text = out.text();
    expect(text).toMatch(/snapshots \(\d+\):/);
    expect(text).toContain(`snapshot-${snap.term}-${snap.index}-`);
    expect(text).toMatch(/\n {2}\d+\s+\d+\s+command\s+deposit \{"owner":/);
    expect(text).toMatch(/configuration: 1@127\.0\.0\.1:\d+ \(voter\)/);
    expect(err.text()).toBe('');

    // `inspect` as the first word (as a dispatcher may pass it) is accepted too.
    out = sink();
    expect(
      await runInspect(['inspect', dir, '--json', '--from', '2', '--to', '6'], out, { err }),
    ).toBe(0);
    const json = JSON.parse(out.text()) as InspectResult;
    expect(json.entries.map((e) => e.index)).toEqual([2, 3, 4, 5, 6]);
    expect(json.entries.find((e) => e.command)!.command).toMatchObject({
      name: cmds[0]!.name,
      args: cmds[0]!.args,
    });

    out = sink();
    expect(
      await runInspect([dir, '--json', '--from', String(blobAt), '--to', String(blobAt)], out, {
        err,
      }),
    ).toBe(0);
    expect((JSON.parse(out.text()) as InspectResult).entries[0]!.command!.args).toEqual({
      text: 'bytes',
      tags: [],
      blob: { $bytes: '0102ff' },
      big: `${2n ** 62n}n`,
    });

    const moduleDir = newDir('prevail-inspect-schema-');
    const modulePath = join(moduleDir, 'bank.mjs');
    writeFileSync(modulePath, schemaModule);
    out = sink();
    expect(
      await runInspect([dir, '--json', `--at=${last}`, '--schema', `${modulePath}#bank`], out, {
        err,
      }),
    ).toBe(0);
    expect((JSON.parse(out.text()) as InspectResult).state!.stateHash).toBe(hash);

    out = sink();
    expect(await runInspect([dir, '--at', String(last)], out, { err, defaultSchema: schema })).toBe(
      0,
    );
    expect(out.text()).toContain(`stateHash ${hash}`);
    expect(out.text()).toMatch(/accounts \(\d+\):/);
    const firstOk = indices.find((i) => i !== null)!;
    out = sink();
    expect(
      await runInspect([dir, '--json', '--at', String(firstOk)], out, {
        err,
        defaultSchema: schema,
      }),
    ).toBe(0);
    expect((JSON.parse(out.text()) as InspectResult).state!.snapshot).toBeNull();
    expect(err.text()).toBe('');

    // Usage: exit 2, nothing on out.
    for (const argv of [
      [],
      [dir, '--bogus'],
      [dir, '--at'],
      [dir, '--at', 'x'],
      [dir, '--at', '3'],
      [dir, 'extra'],
      [dir, '--from', '5', '--to', '2'],
      [dir, '--at', '3', '--schema', join(moduleDir, 'missing.mjs')],
      [dir, '--at', '3', '--schema', `${modulePath}#nope`],
    ]) {
      out = sink();
      err = sink();
      expect({ argv, code: await runInspect(argv, out, { err }) }).toEqual({ argv, code: 2 });
      expect(err.text()).toMatch(/^prevail inspect: .*\nusage: prevail inspect DIR/);
      expect(out.text()).toBe('');
    }
    // Unreadable: exit 1.
    err = sink();
    expect(await runInspect([join(moduleDir, 'no-such-dir')], sink(), { err })).toBe(1);
    expect(err.text()).toContain('PREVAIL_IO');
    err = sink();
    expect(
      await runInspect([dir, '--at', String(last + 5)], sink(), { err, defaultSchema: schema }),
    ).toBe(1);
    expect(err.text()).toContain('PREVAIL_INVALID_ARGUMENT');
    expect(readdirSync(dir).length).toBeGreaterThan(0);
  });
});

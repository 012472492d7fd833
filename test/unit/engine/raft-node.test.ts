import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';

import { RaftNode, versions, type Fsm } from '../../../lib/index.js';
import { addon } from '../../../lib/engine/native.js';
import { tickPeriodMs, validateOptions } from '../../../lib/engine/options.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

/** A test FSM: a log of every applied command with a running hash; throws on demand. */
class RecordingFsm implements Fsm<{ index: number; length: number }> {
  hash = '';
  count = 0;
  applies = 0;
  restores = 0;
  payloads: Uint8Array[] = [];

  apply(command: Uint8Array, meta: { index: number; term: number }) {
    this.applies++;
    if (command.length === 3 && command[0] === 0xff) throw new Error('handler refused');
    this.hash = createHash('sha256').update(this.hash).update(command).digest('hex');
    this.count++;
    this.payloads.push(new Uint8Array(command));
    return { index: meta.index, length: command.length };
  }

  snapshot() {
    const body = Buffer.concat(
      this.payloads.map((p) => {
        const len = Buffer.alloc(4);
        len.writeUInt32LE(p.length);
        return Buffer.concat([len, p]);
      }),
    );
    const head = Buffer.from(JSON.stringify({ hash: this.hash, count: this.count }) + '\n');
    return [head, body];
  }

  restore(data: Uint8Array) {
    this.restores++;
    const buf = Buffer.from(data);
    const nl = buf.indexOf(10);
    const head = JSON.parse(buf.subarray(0, nl).toString()) as { hash: string; count: number };
    this.hash = head.hash;
    this.count = head.count;
    this.payloads = [];
    for (let at = nl + 1; at < buf.length;) {
      const len = buf.readUInt32LE(at);
      this.payloads.push(new Uint8Array(buf.subarray(at + 4, at + 4 + len)));
      at += 4 + len;
    }
  }
}

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

describe('RaftNode, single node', () => {
  let dir: string;
  let address: string;
  const open: RaftNode<unknown>[] = [];

  async function start(fsm: Fsm<unknown>, extra: Record<string, unknown> = {}) {
    const node = await RaftNode.start({ id: 1, address, dataDir: dir, fsm, ...extra });
    open.push(node);
    return node;
  }

  beforeEach(async () => {
    dir = tempDir();
    address = `127.0.0.1:${(await freePorts(1))[0]}`;
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((n) => n.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  test("exactly one libuv in the process: the addon uses node's own", () => {
    expect(addon.uvVersion).toBe(process.versions.uv);
    expect(versions.raft).toBe('0.22.1');
    const maps = readFileSync('/proc/self/maps', 'utf8');
    expect(maps).toContain('prevail.node');
    expect(maps).not.toMatch(/libuv\.so/);
  });

  test('bootstraps, becomes leader, and reports status and role events', async () => {
    const fsm = new RecordingFsm();
    const roles: string[] = [];
    const node = await start(fsm);
    node.on('role', (e: { role: string }) => roles.push(e.role));
    await waitFor('leadership', () => node.isLeader);
    const s = node.status();
    expect(s).toMatchObject({ id: 1, role: 'leader', leader: { id: 1, address } });
    expect(s.members).toEqual([{ id: 1, address, role: 'voter', matchIndex: s.lastIndex }]);
    expect(s.commitIndex).toBe(s.appliedIndex);
  });

  test('thousands in flight: all apply, in order, each result from its own entry', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm);
    const n = 5000;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => node.proposeWithIndex(bytes(i % 50, i % 251))),
    );
    for (let i = 0; i < n; i++) {
      expect(results[i]!.result).toEqual({ index: results[i]!.index, length: i % 50 });
      if (i > 0) expect(results[i]!.index).toBe(results[i - 1]!.index + 1);
    }
    expect(fsm.count).toBe(n);
    expect(node.status().appliedIndex).toBe(results[n - 1]!.index);
  });

  // One ArrayBuffer per applied entry made V8 run a marking step per entry once its external
  // memory was above the limit (native/payload_slab.h): small payloads share slabs.
  test('applied payloads are Buffers cut from shared slabs, not one ArrayBuffer each; bytes intact', async () => {
    const seen = new Map<
      number,
      { buffer: ArrayBufferLike; isBuffer: boolean; bytes: Uint8Array }
    >();
    const fsm: Fsm<null> = {
      apply(command, meta) {
        seen.set(meta.index, {
          buffer: command.buffer,
          isBuffer: Buffer.isBuffer(command),
          bytes: new Uint8Array(command),
        });
        return null;
      },
      snapshot: () => [],
      restore() {},
    };
    const node = await start(fsm);
    const sizes = Array.from({ length: 3000 }, (_, i) => (i === 1500 ? 10_000 : i % 97));
    const proposed = await Promise.all(
      sizes.map((n, i) => node.proposeWithIndex(bytes(n, i % 251))),
    );
    const small = new Set<ArrayBufferLike>();
    let smallBytes = 0;
    proposed.forEach(({ index }, i) => {
      const got = seen.get(index)!;
      expect(got.isBuffer).toBe(true);
      expect(got.bytes).toEqual(bytes(sizes[i]!, i % 251));
      if (i === 1500)
        expect(got.buffer.byteLength).toBe(10_000); // large: a buffer of its own
      else {
        small.add(got.buffer);
        smallBytes += sizes[i]!;
      }
    });
    expect(small.size).toBeLessThanOrEqual(
      Math.ceil((smallBytes + 8 * sizes.length) / (60 * 1024)) + 1,
    );
  });

  test('a throwing handler rejects its own proposal only; the log stays consistent', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm);
    const outcomes = await Promise.allSettled([
      node.propose(bytes(5)),
      node.propose(Uint8Array.from([0xff, 0, 0])),
      node.propose(bytes(6)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(((outcomes[1] as PromiseRejectedResult).reason as Error).message).toBe(
      'handler refused',
    );
    expect(fsm.count).toBe(2);
    const before = fsm.hash;
    await node.close();
    const again = new RecordingFsm();
    await start(again);
    expect(again.hash).toBe(before); // the failing entry replays to the same (failed) outcome
    expect(again.count).toBe(2);
  });

  test('restart on the same dataDir replays to the same state, odd payload lengths intact', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm);
    const lengths = [0, 1, 7, 8, 9, 15, 17, 100_003];
    for (const len of lengths) await node.propose(bytes(len, len % 256));
    await node.close();
    const again = new RecordingFsm();
    await start(again);
    expect(again.hash).toBe(fsm.hash);
    expect(again.payloads.map((p) => p.length)).toEqual(lengths);
    expect(again.payloads[7]![100_002]).toBe(100_003 % 256);
    expect(again.restores).toBe(0);
  });

  test('snapshot + restart restores from the snapshot plus the tail', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm, { snapshotThreshold: 64, snapshotTrailing: 8 });
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => node.propose(bytes((round * 30 + i) % 13, round))),
      );
    }
    await waitFor('a snapshot', () => node.status().snapshot.index > 0);
    const { snapshot, appliedIndex } = node.status();
    expect(snapshot.term).toBe(node.status().term);
    await node.close();
    const again = new RecordingFsm();
    const restarted = await start(again, { snapshotThreshold: 64, snapshotTrailing: 8 });
    expect(again.restores).toBe(1);
    expect(again.applies).toBeLessThan(300); // only the tail after the snapshot replays
    expect(again.hash).toBe(fsm.hash);
    expect(again.count).toBe(300);
    expect(restarted.status().appliedIndex).toBe(appliedIndex);
  });

  test('barrier resolves once everything before it is applied', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm);
    const pending = Array.from({ length: 100 }, () => node.propose(bytes(3)));
    const index = await node.barrier();
    expect(fsm.count).toBe(100);
    expect(node.status().appliedIndex).toBeGreaterThanOrEqual(index);
    await Promise.all(pending);
  });

  test('close settles everything in flight and further calls get PREVAIL_CLOSED', async () => {
    const fsm = new RecordingFsm();
    const node = await start(fsm);
    const inflight = Array.from({ length: 3000 }, (_, i) => node.propose(bytes(i % 9)));
    const closed = node.close();
    const outcomes = await Promise.allSettled(inflight);
    await closed;
    for (const o of outcomes) {
      if (o.status === 'rejected')
        expect(o.reason).toMatchObject({ code: 'PREVAIL_CLOSED', mayHaveApplied: true });
    }
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBe(fsm.count);
    await expect(node.propose(bytes(1))).rejects.toMatchObject({ code: 'PREVAIL_CLOSED' });
    await expect(node.barrier()).rejects.toMatchObject({ code: 'PREVAIL_CLOSED' });
    expect(node.status().role).toBe('closed');
    await node.close(); // idempotent
  });

  test('an AbortSignal rejects with PREVAIL_ABORTED', async () => {
    const node = await start(new RecordingFsm());
    const controller = new AbortController();
    controller.abort();
    await expect(node.propose(bytes(1), { signal: controller.signal })).rejects.toMatchObject({
      code: 'PREVAIL_ABORTED',
    });
    const live = new AbortController();
    await expect(node.propose(bytes(1), { signal: live.signal })).resolves.toBeDefined();
  });

  test('proposing from inside apply is refused with PREVAIL_REENTRANT', async () => {
    let node!: RaftNode<unknown>;
    let inner: Promise<unknown> | undefined;
    const fsm: Fsm<unknown> = {
      apply(cmd) {
        if (cmd.length === 1 && !inner) inner = node.propose(bytes(2));
        return cmd.length;
      },
      snapshot: () => new Uint8Array(0),
      restore: () => {},
    };
    node = await start(fsm);
    await node.propose(bytes(1));
    await expect(inner).rejects.toMatchObject({ code: 'PREVAIL_REENTRANT' });
  });

  // The engine sees a randomized election timeout expire only on a tick: at the heartbeat
  // (40 ms) the followers of a failed leader often started elections in the same tick.
  test('the engine ticks every twentieth of the election timeout (+0–50 %), at most the heartbeat', () => {
    expect(tickPeriodMs(200, 40, () => 0)).toBe(10);
    expect(tickPeriodMs(200, 40, () => 0.999)).toBe(15);
    expect(tickPeriodMs(1000, 100, () => 0.5)).toBe(63);
    expect(tickPeriodMs(1000, 20, () => 0)).toBe(20);
    expect(tickPeriodMs(10, 2, () => 0)).toBe(1);
    const fsm: Fsm<null> = { apply: () => null, snapshot: () => [], restore: () => undefined };
    const periods = new Set<number>();
    for (let i = 0; i < 50; i++)
      periods.add(validateOptions({ id: 1, address, dataDir: dir, fsm }).tickMs); // 200 / 40
    expect([...periods].every((p) => p >= 10 && p <= 15)).toBe(true);
    expect(periods.size).toBeGreaterThan(1); // nodes started together don't tick in phase
  });

  describe('bad input gets a coded error', () => {
    const fsm = new RecordingFsm();
    test.each([
      ['id 0', { id: 0 }],
      ['id as string', { id: '1' }],
      ['fractional id', { id: 1.5 }],
      ['address without port', { address: '127.0.0.1' }],
      ['address port out of range', { address: '127.0.0.1:70000' }],
      ['address not a string', { address: 7001 }],
      ['dataDir missing', { dataDir: undefined }],
      ['fsm missing', { fsm: undefined }],
      [
        'fsm without restore',
        {
          fsm: {
            apply() {},
            snapshot() {
              return new Uint8Array(0);
            },
          },
        },
      ],
      ['heartbeat >= election', { heartbeatMs: 500, electionTimeoutMs: 300 }],
      ['maxInflightEntries 0', { maxInflightEntries: 0 }],
      ['negative snapshotThreshold', { snapshotThreshold: -1 }],
      ['preVote not boolean', { preVote: 'yes' }],
      ['join not boolean', { join: 1 }],
      [
        'duplicate ids',
        {
          cluster: [
            { id: 1, address: '127.0.0.1:1' },
            { id: 1, address: '127.0.0.1:2' },
          ],
        },
      ],
      [
        'duplicate addresses',
        {
          cluster: [
            { id: 1, address: '127.0.0.1:1' },
            { id: 2, address: '127.0.0.1:1' },
          ],
        },
      ],
      ['empty cluster', { cluster: [] }],
      ['self at another address', { cluster: [{ id: 1, address: '127.0.0.1:9' }] }],
    ])('%s', async (_name, override) => {
      const options = { id: 1, address, dataDir: dir, fsm, ...override } as unknown as Parameters<
        typeof RaftNode.start
      >[0];
      await expect(RaftNode.start(options)).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
    });

    test('an address in use (insecure: the engine listens at start)', async () => {
      const port = Number(address.split(':')[1]);
      const server: Server = createServer();
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      try {
        await expect(start(new RecordingFsm(), { insecure: true })).rejects.toMatchObject({
          code: 'PREVAIL_ADDRESS_IN_USE',
        });
      } finally {
        await new Promise((r) => server.close(r));
      }
      // the failed start released everything: the same dir and address work now
      const node = await start(new RecordingFsm(), { insecure: true });
      await expect(node.propose(bytes(1))).resolves.toBeDefined();
    });

    test('a dataDir that belongs to another node id', async () => {
      const node = await start(new RecordingFsm());
      await node.close();
      await expect(
        RaftNode.start({
          id: 2,
          address,
          dataDir: dir,
          fsm: new RecordingFsm(),
          cluster: [{ id: 2, address }],
        }),
      ).rejects.toMatchObject({ code: 'PREVAIL_DATADIR_MISMATCH' });
    });

    test('a dataDir already open', async () => {
      await start(new RecordingFsm());
      const [port] = await freePorts(1);
      await expect(
        RaftNode.start({
          id: 1,
          address: `127.0.0.1:${port}`,
          dataDir: dir,
          fsm: new RecordingFsm(),
          cluster: [{ id: 1, address: `127.0.0.1:${port}` }],
        }),
      ).rejects.toMatchObject({ code: 'PREVAIL_DATADIR_LOCKED' });
    });

    test('a command that is not bytes', async () => {
      const node = await start(new RecordingFsm());
      await expect(node.propose('text' as unknown as Uint8Array)).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
    });

    test('membership calls with bad arguments', async () => {
      const node = await start(new RecordingFsm());
      await expect(node.addMember({ id: -1, address: '127.0.0.1:1' })).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
      await expect(node.removeMember(42)).rejects.toMatchObject({ code: 'PREVAIL_BAD_MEMBER' });
      await expect(node.transferLeadership()).rejects.toMatchObject({ code: 'PREVAIL_BAD_MEMBER' });
      await expect(node.assignRole(1, 'boss' as 'voter')).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
    });

    test('a snapshot in an unknown format: coded error naming it, nothing overwritten', async () => {
      const fsm = new RecordingFsm();
      const node = await start(fsm, { snapshotThreshold: 16, snapshotTrailing: 4 });
      for (let i = 0; i < 40; i++) await node.propose(bytes(i % 5));
      await waitFor('a snapshot', () => node.status().snapshot.index > 0);
      await node.close();
      const snap = readdirSync(dir)
        .filter((f) => /^snapshot-\d+-\d+-\d+$/.test(f))
        .sort((a, b) => Number(a.split('-')[2]) - Number(b.split('-')[2]))
        .pop()!;
      const file = join(dir, snap);
      const data = readFileSync(file);
      data.writeUInt32LE(99, 4); // the format version in prevail's snapshot header
      writeFileSync(file, data);
      const before = readdirSync(dir).sort();
      await expect(start(new RecordingFsm())).rejects.toMatchObject({
        code: 'PREVAIL_SNAPSHOT_UNREADABLE',
      });
      expect(readdirSync(dir).sort()).toEqual(before);
      expect(readFileSync(file).equals(data)).toBe(true);
    });
  });
});

describe('RaftNode.refusesProposals and leadsNow', () => {
  // A follower that forwards asks this instead of proposing only to be refused: it must say
  // true exactly when propose() would fail with PREVAIL_NOT_LEADER, and with nothing else.
  test('true on a follower (whose propose gets NOT_LEADER); false on the leader, inside apply, and once closed', async () => {
    const dirs = [tempDir(), tempDir()];
    const ports = await freePorts(2);
    const cluster = ports.map((p, i) => ({ id: i + 1, address: `127.0.0.1:${p}` }));
    const seenInApply: boolean[] = [];
    const fsms = [new RecordingFsm(), new RecordingFsm()];
    // Each node's FSM notes what its node says from inside apply (REENTRANT there, not NOT_LEADER).
    const watching = fsms.map((fsm, i) => ({
      apply: (command: Uint8Array, meta: { index: number; term: number }) => {
        if (nodes[i] && command[0] === 7) seenInApply.push(nodes[i].refusesProposals);
        return fsm.apply(command, meta);
      },
      snapshot: () => fsm.snapshot(),
      restore: (data: Uint8Array) => fsm.restore(data),
    }));
    const nodes: RaftNode<unknown>[] = [];
    try {
      nodes.push(
        ...(await Promise.all(
          cluster.map((m, i) =>
            RaftNode.start({
              id: m.id,
              address: m.address,
              dataDir: dirs[i]!,
              fsm: watching[i]!,
              cluster,
              insecure: true,
            }),
          ),
        )),
      );
      const leader = await waitFor('a leader', () => nodes.find((n) => n.isLeader), 20_000);
      const follower = nodes.find((n) => n !== leader)!;
      expect(leader.refusesProposals).toBe(false);
      expect(follower.refusesProposals).toBe(true);
      // leadsNow is status().role === 'leader', without building a status.
      expect([leader.leadsNow, follower.leadsNow]).toEqual([true, false]);
      expect(leader.status().role).toBe('leader');
      await expect(follower.propose(bytes(2, 7))).rejects.toMatchObject({
        code: 'PREVAIL_NOT_LEADER',
      });
      await leader.propose(bytes(2, 7));
      await waitFor('both applied it', () => (seenInApply.length === 2 ? true : undefined));
      // Both nodes applied the entry; neither said "refuses" from inside apply.
      expect(seenInApply).toEqual([false, false]);
      await follower.close();
      expect([follower.refusesProposals, follower.leadsNow]).toEqual([false, false]);
      await expect(follower.propose(bytes(2, 7))).rejects.toMatchObject({ code: 'PREVAIL_CLOSED' });
    } finally {
      for (const n of nodes) await n.close().catch(() => undefined);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});

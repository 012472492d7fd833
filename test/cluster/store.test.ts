// The object store across three real processes: write forwarding, read consistency levels,
// read-your-writes, health. Every node is a child process (test/fixtures/store-process.mjs).
import { Cluster, fixtures, waitFor, type NodeProcess, type Status } from '../helpers/cluster.js';

// (testTimeout comes from jest.config.js; the slow ones pass their own.)

interface Outcome<T> {
  ok?: T;
  error?: {
    code?: string;
    message: string;
    mayHaveApplied?: boolean;
    leader?: { id: number } | null;
    detail?: unknown;
  };
}
type Write = Outcome<{ index: number; result: { prev: string | null; index: number } }>;
type Read = Outcome<{ value: string | null; applied: number }>;
interface Health {
  leader: boolean;
  ready: boolean;
  appliedIndex: number;
  leaderCommitIndex: number | null;
  lag: number | null;
  diverged: { index: number; majority: number[] } | null;
}

const timing = { electionTimeoutMs: 1000, heartbeatMs: 100 };

/** Waits until a follower knows the leader's peer channel (announced through the log). */
async function forwardingReady(node: NodeProcess): Promise<void> {
  await waitFor(
    'the leader to announce its channel',
    async () => {
      const r = await node.call<Read>('read', {
        key: 'none',
        consistency: 'linearizable',
        timeoutMs: 500,
      });
      return r.ok !== undefined;
    },
    20_000,
    50,
  );
}

describe('a store cluster (3 processes)', () => {
  let cluster: Cluster;
  let leader: NodeProcess;
  let follower: NodeProcess;

  beforeAll(async () => {
    cluster = await Cluster.create(3, timing, fixtures.store);
    leader = await cluster.leader();
    [follower] = cluster.others(leader);
    await forwardingReady(follower!);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('a forwarded write carries values msgpack alone would change (-0, lone surrogates, bytes, big bigints) exactly, both ways', async () => {
    const r = await follower.call<{
      index: number;
      key: string;
      sent: string;
      result: string;
      stored: string;
    }>('proposeExotic');
    expect(r.sent).toContain('-0');
    expect({ result: r.result, stored: r.stored }).toEqual({ result: r.sent, stored: r.sent });
    for (const n of cluster.running()) {
      await waitFor(`node ${n.spec.id} to apply ${r.index}`, async () =>
        (await n.call<Status>('status')).appliedIndex >= r.index ? true : undefined,
      );
      expect(await n.call<string>('storedSig', { key: r.key })).toBe(r.sent);
    }
  });

  test("a write on a follower is forwarded, returns the leader's result and is applied there when it resolves", async () => {
    const w1 = await follower.call<Write>('propose', {
      name: 'put',
      args: { key: 'f', value: 'one' },
    });
    expect(w1.error).toBeUndefined();
    expect(w1.ok!.result).toEqual({ prev: null, index: w1.ok!.index });
    // Applied on the follower already: a stale (local) read there sees it at once.
    const r = await follower.call<Read>('read', { key: 'f', consistency: 'stale' });
    expect(r.ok!.value).toBe('one');
    expect(r.ok!.applied).toBeGreaterThanOrEqual(w1.ok!.index);
    const w2 = await follower.call<Write>('propose', {
      name: 'put',
      args: { key: 'f', value: 'two' },
    });
    expect(w2.ok!.result.prev).toBe('one');
    expect(w2.ok!.index).toBeGreaterThan(w1.ok!.index);
  });

  test('a handler error travels back to the follower with its code and fields, and leaves no trace', async () => {
    const w = await follower.call<Write>('propose', {
      name: 'fail',
      args: { message: 'refused by the app' },
    });
    expect(w.error).toMatchObject({
      code: 'APP_REFUSED',
      message: 'refused by the app',
      detail: 42,
    });
    const b = await follower.call<Write>('propose', { name: 'boom', args: { key: 'ghost' } });
    expect(b.error?.message).toBe('boom');
    const mark = await follower.call<Write>('propose', {
      name: 'put',
      args: { key: 'mark', value: 'x' },
    });
    for (const n of cluster.running()) {
      const r = await n.call<Read>('read', {
        key: 'ghost',
        consistency: 'stale',
        minIndex: mark.ok!.index,
      });
      expect(r.ok).toEqual({ value: null, applied: expect.any(Number) });
    }
  });

  test('a linearizable read on a follower sees a write acknowledged by the leader just before', async () => {
    for (let i = 0; i < 20; i++) {
      const w = await leader.call<Write>('propose', {
        name: 'put',
        args: { key: 'lin', value: `v${i}` },
      });
      expect(w.error).toBeUndefined();
      const r = await follower.call<Read>('read', { key: 'lin', consistency: 'linearizable' });
      expect(r.ok!.value).toBe(`v${i}`);
      const l = await follower.call<Read>('read', { key: 'lin', consistency: 'lease' });
      expect(l.ok!.value).toBe(`v${i}`);
      const own = await leader.call<Read>('read', { key: 'lin', consistency: 'lease' });
      expect(own.ok!.value).toBe(`v${i}`);
    }
  });

  test('minIndex: a stale read waits until this node applied the index, and times out with a coded error past it', async () => {
    const w = await leader.call<Write>('propose', {
      name: 'put',
      args: { key: 'ryw', value: 'mine' },
    });
    const r = await follower.call<Read>('read', {
      key: 'ryw',
      consistency: 'stale',
      minIndex: w.ok!.index,
    });
    expect(r.ok!.value).toBe('mine');
    const far = await follower.call<Read>('read', {
      key: 'ryw',
      consistency: 'stale',
      minIndex: w.ok!.index + 1_000_000,
      timeoutMs: 200,
    });
    expect(far.error?.code).toBe('PREVAIL_TIMEOUT');
    const bad = await follower.call<Read>('read', { key: 'ryw', consistency: 'eventual' });
    expect(bad.error?.code).toBe('PREVAIL_INVALID_ARGUMENT');
  });

  test("health: only the leader says leader; followers become ready once they know the leader's commit index", async () => {
    expect(await leader.call<Health>('health')).toMatchObject({
      leader: true,
      ready: true,
      lag: 0,
    });
    const h = await waitFor('follower readiness', async () => {
      const x = await follower.call<Health>('health');
      return x.ready ? x : undefined;
    });
    expect(h.leader).toBe(false);
    expect(h.leaderCommitIndex).toBeGreaterThan(0);
  });

  test('kill -9 of the leader during forwarded writes: every write settles, every acknowledged one survives', async () => {
    const writer = cluster.others(leader)[0]!;
    const writing = writer.call<Write[]>(
      'writeMany',
      { prefix: 'k', count: 400, concurrency: 8, timeoutMs: 8000 },
      60_000,
    );
    await new Promise((r) => setTimeout(r, 150));
    const old = leader;
    await old.kill();
    const outcomes = await writing;
    const acked = outcomes.map((o, i) => (o.ok ? i : -1)).filter((i) => i >= 0);
    const failed = outcomes.filter((o) => o.error);
    for (const f of failed) {
      // A clear outcome for every failure: a stable code and whether it may have applied.
      expect(f.error!.code).toMatch(/^PREVAIL_/);
      expect(
        typeof f.error!.mayHaveApplied === 'boolean' || f.error!.code === 'PREVAIL_TIMEOUT',
      ).toBe(true);
    }
    expect(acked.length).toBeGreaterThan(0);
    leader = await cluster.leader(15_000);
    const survivor = cluster.others(leader)[0]!;
    const keys = new Map(await survivor.call<[string, string][]>('keys'));
    // The survivor may be a little behind: a linearizable read first.
    await survivor.call<Read>('read', { key: 'k0', consistency: 'linearizable' });
    const now = new Map(await survivor.call<[string, string][]>('keys'));
    for (const i of acked) expect(now.get(`k${i}`) ?? keys.get(`k${i}`)).toBe(String(i));
    // Bring the old leader back for the next test.
    await cluster.start(old.spec.id);
  });

  // A write sent to a survivor waits through the election; when that survivor is the one that
  // wins, the write is done there. (It used to wait for a leader's channel other than its own
  // until its deadline, and fail with PREVAIL_UNAVAILABLE "leader N is not reachable yet".)
  test('kill -9 of the leader: writes sent to both survivors at once are both done, on the winner too', async () => {
    const old = leader;
    await old.kill();
    const survivors = cluster.others(old);
    const outcomes = await Promise.all(
      survivors.map((n, i) =>
        n.call<{ ok?: unknown; error?: { code: string; message: string } }>(
          'propose',
          { name: 'put', args: { key: `after-kill-${i}`, value: 'v' }, timeoutMs: 8000 },
          20_000,
        ),
      ),
    );
    leader = await cluster.leader(15_000);
    expect(outcomes.map((o) => o.error ?? 'ok')).toEqual(['ok', 'ok']);
    await cluster.start(old.spec.id);
    await forwardingReady(cluster.others(leader)[0]!);
  });

  test("a paused old leader can't serve a stale linearizable or lease read after it resumes", async () => {
    leader = await cluster.leader(15_000);
    const before = await leader.call<Write>('propose', {
      name: 'put',
      args: { key: 'p', value: 'before' },
    });
    expect(before.error).toBeUndefined();
    await waitFor('all to apply', async () => {
      const s = await Promise.all(cluster.running().map((n) => n.call<Status>('status')));
      return s.every((x) => x.appliedIndex >= before.ok!.index);
    });
    const paused = leader;
    paused.child.kill('SIGSTOP');
    try {
      const others = cluster.others(paused);
      const next = await waitFor(
        'a new leader',
        async () => {
          for (const n of others)
            if ((await n.call<Status>('status', undefined, 2000)).role === 'leader') return n;
          return undefined;
        },
        20_000,
        50,
      );
      const after = await next.call<Write>('propose', {
        name: 'put',
        args: { key: 'p', value: 'after' },
      });
      expect(after.error).toBeUndefined();
    } finally {
      paused.child.kill('SIGCONT');
    }
    // The resumed node may still believe it leads for a moment; its reads must not be stale.
    const [lin, lease] = await Promise.all([
      paused.call<Read>('read', { key: 'p', consistency: 'linearizable', timeoutMs: 10_000 }),
      paused.call<Read>('read', { key: 'p', consistency: 'lease', timeoutMs: 10_000 }),
    ]);
    expect(lin.ok?.value).toBe('after');
    expect(lease.ok?.value).toBe('after');
    leader = await cluster.leader(15_000);
  });
});

describe('followers closed and restarted under write load', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  // A follower may apply an entry its leader reports committed before its own copy is on
  // disk; a clean close can then leave its log an entry short of what it applied. Restarting
  // must work. (An earlier high-water check refused such a node; the rolling-restart bench hit it
  // about once in three runs. This test did not reproduce that timing when tried against the old
  // check: it guards restarts under load in general, not that exact race.)
  test('each restart starts, catches up, and loses nothing acknowledged', async () => {
    cluster = await Cluster.create(3, timing, fixtures.store);
    const leader = await cluster.leader();
    for (let round = 0; round < 8; round++) {
      const follower = cluster.others(leader)[round % 2]!;
      const writing = leader.call<Write[]>(
        'writeMany',
        { prefix: `r${round}-`, count: 3000, concurrency: 128 },
        60_000,
      );
      await new Promise((r) => setTimeout(r, 50 + round * 20));
      await follower.call('close');
      await follower.waitExit(10_000);
      const restarted = await cluster.start(follower.spec.id);
      const outcomes = await writing;
      expect(outcomes.filter((o) => o.error)).toEqual([]);
      const r = await restarted.call<Read>('read', {
        key: `r${round}-2999`,
        consistency: 'linearizable',
        timeoutMs: 10_000,
      });
      expect(r.ok?.value).toBe('2999');
    }
  }, 150_000); // 8 rounds: ~35 s alone, more on a shared CI machine
});

describe('forwarding turned off', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  test('a follower refuses writes and linearizable reads with PREVAIL_NOT_LEADER and the leader hint; stale reads work', async () => {
    cluster = await Cluster.create(3, { ...timing, forward: false }, fixtures.store);
    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0]!;
    await waitFor(
      'the follower to know the leader',
      async () => (await follower.call<Status>('status')).leader?.id === leader.spec.id,
    );
    const w = await follower.call<Write>('propose', {
      name: 'put',
      args: { key: 'a', value: '1' },
    });
    expect(w.error).toMatchObject({ code: 'PREVAIL_NOT_LEADER', leader: { id: leader.spec.id } });
    const r = await follower.call<Read>('read', { key: 'a', consistency: 'linearizable' });
    expect(r.error?.code).toBe('PREVAIL_NOT_LEADER');
    const ok = await leader.call<Write>('propose', { name: 'put', args: { key: 'a', value: '1' } });
    const s = await follower.call<Read>('read', {
      key: 'a',
      consistency: 'stale',
      minIndex: ok.ok!.index,
    });
    expect(s.ok!.value).toBe('1');
  });
});

describe('the divergence detector', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  // One odd replica against a majority, and its resync: test/cluster/divergence.test.ts.
  test('a command nondeterministic on every replica is caught: no majority, PREVAIL_DIVERGED names all three', async () => {
    cluster = await Cluster.create(3, timing, fixtures.store);
    const leader = await cluster.leader();
    // Deterministic commands first: replicas agree, so no alarm.
    for (let i = 0; i < 70; i++)
      await leader.call<Write>('propose', { name: 'put', args: { key: `d${i}`, value: 'same' } });
    await new Promise((r) => setTimeout(r, 1500));
    expect(leader.events.filter((e) => e.event === 'divergence')).toEqual([]);
    const statuses = await Promise.all(
      cluster.running().map((n) => n.call<{ effects: { index: number; hash: string } }>('status')),
    );
    expect(statuses.every((s) => typeof s.effects.hash === 'string' && s.effects.index > 0)).toBe(
      true,
    );
    // Then one command that isn't, and enough after it to reach the next checkpoint.
    await leader.call<Write>('propose', { name: 'nondet', args: { key: 'random' } });
    for (let i = 0; i < 70; i++)
      await leader.call<Write>('propose', { name: 'put', args: { key: `e${i}`, value: 'same' } });
    const alarm = await waitFor(
      'the divergence alarm',
      () => leader.events.find((e) => e.event === 'divergence'),
      15_000,
      50,
    );
    expect(alarm).toMatchObject({ code: 'PREVAIL_DIVERGED', node: null, majority: [] });
    expect(alarm.nodes).toEqual([1, 2, 3]);
    expect(alarm.index as number).toBeGreaterThan(70);
    // Nobody can tell which is right: no replica is marked diverged (all stay ready).
    const health = await Promise.all(cluster.running().map((n) => n.call<Health>('health')));
    expect(health.map((h) => h.diverged)).toEqual([null, null, null]);
  });
});

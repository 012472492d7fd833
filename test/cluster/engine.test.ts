// Multi-node integration tests: every node is a real child process (test/fixtures/node-process.mjs)
// with its own data directory on disk, talking raft over loopback TCP. Waits are bounded;
// nothing asserts on timing. Every child is killed in afterEach.
import {
  Cluster,
  type FsmState,
  type NodeProcess,
  type RawRecord,
  type Status,
  waitFor,
} from '../helpers/cluster.js';

type ProposeError = {
  code: string;
  message: string;
  mayHaveApplied?: boolean;
  leader?: { id: number } | null;
};
type ProposeResult = { ok?: number; error?: ProposeError };
type BytesResult = ProposeResult & { length: number; digest: string };
type LoadResult = { elapsedMs: number; latencies: number[]; failed: number };

const set = (key: string, value = 'v') => ({ op: 'set', key, value });
const keys = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** Proposes `set` commands for `names` on `node`; every one must succeed. Returns the highest index. */
async function proposeAll(node: NodeProcess, names: string[]): Promise<number> {
  const results = await node.call<ProposeResult[]>('propose', {
    commands: names.map((k) => set(k)),
  });
  const failed = results.filter((r) => r.ok === undefined);
  expect(failed).toEqual([]);
  return Math.max(...results.map((r) => r.ok!));
}

/** All given states have one hash (and one key count); returns that hash. */
function sameState(states: Map<number, FsmState>): string {
  const hashes = new Set([...states.values()].map((s) => s.hash));
  expect(hashes.size).toBe(1);
  expect(new Set([...states.values()].map((s) => s.size)).size).toBe(1);
  return [...hashes][0]!;
}

/**
 * Timeouts well above the library's defaults: these tests run next to other suites on
 * small machines, and a starved process missing heartbeats would trigger elections the
 * assertions below don't expect. Nothing here measures how fast a failover is.
 */
const timing = { electionTimeoutMs: 1000, heartbeatMs: 100 };

describe('three nodes in child processes', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.stop();
  });

  test('elects a leader, replicates, and all three states match', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    const results = await leader.call<ProposeResult[]>('propose', {
      commands: Array.from({ length: 200 }, (_, i) => set(`k${i}`)),
    });
    expect(results.every((r) => r.ok !== undefined)).toBe(true);
    const last = Math.max(...results.map((r) => r.ok!));
    const states = await cluster.converge(last);
    const hashes = new Set([...states.values()].map((s: FsmState) => s.hash));
    expect(hashes.size).toBe(1);
    expect([...states.values()].every((s) => s.size === 200)).toBe(true);
    // a follower refuses with the leader's address
    const follower = cluster.others(leader)[0]!;
    const [refused] = await follower.call<ProposeResult[]>('propose', { commands: [set('x')] });
    expect(refused!.error!.code).toBe('PREVAIL_NOT_LEADER');
    const st = await follower.call<Status>('status');
    expect(st.leader!.id).toBe(leader.spec.id);
  });

  test('kill -9 of the leader: the survivors elect a new leader and keep every acknowledged entry', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    const acked = new Set<string>();
    const batch = async (b: number): Promise<void> => {
      const names = keys(`b${b}-`, 100);
      try {
        const results = await leader.call<ProposeResult[]>('propose', {
          commands: names.map((k) => set(k)),
        });
        results.forEach((r, i) => {
          if (r.ok !== undefined) acked.add(names[i]!);
        });
      } catch {
        // the leader died before answering: nothing in this batch was acknowledged
      }
    };
    for (let b = 0; b < 5; b++) await batch(b);
    expect(acked.size).toBe(500);
    // Kill it while two more batches are in flight.
    const inFlight = [batch(5), batch(6)];
    await leader.kill();
    await Promise.all(inFlight);

    const newLeader = await cluster.leader(15_000);
    expect(newLeader.spec.id).not.toBe(leader.spec.id);
    const last = await proposeAll(newLeader, keys('after-', 100));
    const states = await cluster.converge(last);
    expect([...states.keys()].sort()).toEqual(
      cluster
        .others(leader)
        .map((n) => n.spec.id)
        .sort(),
    );
    sameState(states);
    for (const s of states.values()) {
      const present = new Set(s.keys);
      expect([...acked].filter((k) => !present.has(k))).toEqual([]);
      expect(keys('after-', 100).every((k) => present.has(k))).toBe(true);
    }
  });

  test('a killed follower restarts on its data directory and catches up to the same state', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    await cluster.converge(await proposeAll(leader, keys('a', 100)));
    const follower = cluster.others(leader)[0]!;
    const id = follower.spec.id;
    await follower.kill();
    for (let b = 0; b < 3; b++) await proposeAll(leader, keys(`b${b}-`, 100));

    const restarted = await cluster.start(id);
    expect(restarted).not.toBe(follower);
    const last = await proposeAll(leader, ['c']);
    const states = await cluster.converge(last);
    expect(states.size).toBe(3);
    sameState(states);
    expect(states.get(id)!.size).toBe(401);
    // caught up from its own log plus replication: no snapshot was involved
    expect(states.get(id)!.restores).toBe(0);
    // and it follows the same leader as everyone else
    await waitFor('all three nodes to agree on the leader', async () => {
      const statuses = await Promise.all(cluster.running().map((n) => n.call<Status>('status')));
      const leaders = new Set(statuses.map((s) => s.leader?.id));
      return (
        statuses.length === 3 &&
        leaders.size === 1 &&
        !leaders.has(undefined) &&
        statuses.filter((s) => s.role === 'leader').length === 1 &&
        statuses.some((s) => s.id === id && s.role === 'follower')
      );
    });
  });

  test('a follower far behind a truncated log is brought up to date by a snapshot install', async () => {
    cluster = await Cluster.create(3, { ...timing, snapshotThreshold: 64, snapshotTrailing: 16 });
    const leader = await cluster.leader();
    await cluster.converge(await proposeAll(leader, keys('a', 20)));
    const follower = cluster.others(leader)[0]!;
    const id = follower.spec.id;
    const before = await follower.call<Status>('status');
    expect(before.snapshot.index).toBe(0); // it has no snapshot of its own
    await follower.kill();

    const load = await leader.call<LoadResult>(
      'load',
      { count: 2000, concurrency: 64, prefix: 'L' },
      60_000,
    );
    expect(load.failed).toBe(0);
    const leaderStatus = await leader.call<Status>('status');
    // The leader's log no longer holds the entry after the follower's last one.
    expect(leaderStatus.snapshot.index - 16).toBeGreaterThan(before.lastIndex);

    const restarted = await cluster.start(id);
    const last = await proposeAll(leader, ['tail']);
    const states = await cluster.converge(last, 20_000);
    expect(states.size).toBe(3);
    sameState(states);
    expect(states.get(id)!.size).toBe(2021);
    expect(states.get(id)!.restores).toBeGreaterThanOrEqual(1);
    const st = await restarted.call<Status>('status');
    expect(st.snapshot.index).toBeGreaterThan(before.lastIndex);
  });

  test('membership: a joining node is added as a voter, then an original follower is removed', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    await proposeAll(leader, keys('a', 100));
    const spec = await cluster.addSpec(4);
    // On a follower a membership change is refused with a coded error (the engine itself
    // would abort the process: it asserts leadership), and the follower keeps running.
    const follower = cluster.others(leader)[0]!;
    for (const [cmd, args] of [
      ['addMember', { member: { id: 4, address: spec.address } }],
      ['removeMember', { id: leader.spec.id }],
    ] as const) {
      await expect(follower.call(cmd, args)).rejects.toMatchObject({
        code: 'PREVAIL_NOT_LEADER',
        leader: { id: leader.spec.id },
      });
    }
    expect((await follower.call<Status>('status')).role).toBe('follower');
    // join: no bootstrap, so the new node starts with no configuration at all.
    const joiner = await cluster.start(4, { join: true });
    const fresh = await joiner.call<Status>('status');
    expect(fresh.members).toEqual([]);
    expect(fresh.lastIndex).toBe(0);
    expect(fresh.role).toBe('follower');

    await leader.call('addMember', { member: { id: 4, address: spec.address } }, 30_000);
    let last = await proposeAll(leader, keys('b', 100));
    let states = await cluster.converge(last);
    expect(states.size).toBe(4);
    sameState(states);
    expect(states.get(4)!.size).toBe(200);
    let members = (await leader.call<Status>('status')).members;
    expect(members.map((m) => [m.id, m.role]).sort()).toEqual([
      [1, 'voter'],
      [2, 'voter'],
      [3, 'voter'],
      [4, 'voter'],
    ]);
    const joined = await joiner.call<Status>('status');
    expect(joined.leader?.id).toBe(leader.spec.id);
    expect(joined.members.map((m) => m.id).sort()).toEqual([1, 2, 3, 4]);

    const [victim, keeper] = cluster.others(leader).filter((n) => n !== joiner);
    await leader.call('removeMember', { id: victim!.spec.id }, 30_000);
    members = (await leader.call<Status>('status')).members;
    expect(members.map((m) => m.id).sort()).toEqual([leader.spec.id, keeper!.spec.id, 4].sort());
    const remaining = [leader, keeper!, joiner];
    last = await proposeAll(leader, keys('c', 100));
    states = await cluster.converge(last, 15_000, remaining);
    sameState(states);
    expect(states.get(4)!.size).toBe(300);

    // With the removed node and the other original follower both dead, the leader and
    // node 4 are 2 of 3 voters: they can commit only if node 4 votes and the removed one doesn't count.
    await victim!.kill();
    await keeper!.kill();
    last = await proposeAll(leader, keys('d', 50));
    states = await cluster.converge(last, 15_000, [leader, joiner]);
    sameState(states);
    expect(states.get(4)!.size).toBe(350);
  });

  // Engine fix p1 (scripts/fetch-engine.sh): a configuration entry that reached a follower in
  // the middle of a batch was recorded at the batch's first index, never cleared, and that
  // node, once leader, refused every membership change. Found by npm run verify.
  test('a follower that caught up over a configuration change can change membership once it leads', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    const lagging = cluster.others(leader)[0]!;
    await lagging.kill();
    await proposeAll(leader, keys('before', 5));
    await leader.call(
      'addMember',
      { member: { id: 4, address: '127.0.0.1:9' }, role: 'spare' },
      30_000,
    );
    const last = await proposeAll(leader, keys('after', 5));
    const back = await cluster.start(lagging.spec.id); // receives the missing entries, the change inside a batch
    await cluster.converge(last, 15_000, [back]);
    await leader.call('transfer', { id: back.spec.id });
    await waitFor(
      'the caught-up node to lead',
      async () => (await back.call<Status>('status')).role === 'leader',
    );
    await back.call('removeMember', { id: 4 }, 30_000); // MEMBERSHIP_BUSY before the fix
    expect((await back.call<Status>('status')).members.map((m) => m.id).sort()).toEqual([1, 2, 3]);
  });

  test('transferLeadership hands the lead to the chosen follower, which then takes proposals', async () => {
    cluster = await Cluster.create(3, timing);
    const leader = await cluster.leader();
    await cluster.converge(await proposeAll(leader, keys('a', 50)));
    const target = cluster.others(leader)[1]!;
    const to = await leader.call<{ id: number; address: string }>(
      'transfer',
      { id: target.spec.id },
      15_000,
    );
    expect(to.id).toBe(target.spec.id);

    await waitFor(
      'every node to follow the new leader',
      async () => {
        const statuses = await Promise.all(cluster.running().map((n) => n.call<Status>('status')));
        return (
          statuses.every(
            (s) =>
              s.leader?.id === target.spec.id &&
              s.role === (s.id === target.spec.id ? 'leader' : 'follower'),
          ) || undefined
        );
      },
      10_000,
    );
    const last = await proposeAll(target, keys('b', 50));
    const [refused] = await leader.call<ProposeResult[]>('propose', { commands: [set('x')] });
    expect(refused!.error!.code).toBe('PREVAIL_NOT_LEADER');
    expect(refused!.error!.leader?.id).toBe(target.spec.id);
    const states = await cluster.converge(last);
    sameState(states);
    expect(states.get(target.spec.id)!.size).toBe(100);
  });

  test('close with thousands of proposals in flight settles every one and the process exits by itself', async () => {
    cluster = await Cluster.create(3, timing);
    type Closed = {
      results: ProposeResult[];
      close: { resolved?: boolean; error?: ProposeError };
      status: Status;
    };
    const check = (out: Closed, count: number) => {
      expect(out.close).toEqual({ resolved: true });
      expect(out.results).toHaveLength(count);
      const unexpected = out.results.filter(
        (r) =>
          r.ok === undefined &&
          !(r.error?.code === 'PREVAIL_CLOSED' && r.error.mayHaveApplied === true),
      );
      expect(unexpected).toEqual([]);
      expect(out.status.role).toBe('closed');
    };
    const ackedKeys = (out: Closed, prefix: string) =>
      out.results.flatMap((r, i) => (r.ok !== undefined ? [`${prefix}${i}`] : []));

    // 1: the default drain: in-flight proposals get up to 5 s to apply.
    const first = await cluster.leader();
    const out1 = await first.call<Closed>('proposeThenClose', { count: 3000, prefix: 'p' }, 30_000);
    check(out1, 3000);
    expect(await first.waitExit(10_000)).toBe(0);

    // 2: no drain at all: whatever is not applied by the cut-off is rejected with PREVAIL_CLOSED.
    await cluster.start(first.spec.id);
    const second = await cluster.leader(15_000);
    const out2 = await second.call<Closed>(
      'proposeThenClose',
      { count: 3000, prefix: 'q', closeOptions: { drainTimeoutMs: 0 } },
      30_000,
    );
    check(out2, 3000);
    expect(await second.waitExit(10_000)).toBe(0);

    // Everything acknowledged before either close is on the remaining nodes.
    const leader = await cluster.leader(15_000);
    const states = await cluster.converge(await proposeAll(leader, ['after']));
    expect(states.size).toBe(2);
    sameState(states);
    const acked = [...ackedKeys(out1, 'p'), ...ackedKeys(out2, 'q')];
    expect(acked.length).toBeGreaterThan(0);
    for (const s of states.values()) {
      const present = new Set(s.keys);
      expect(acked.filter((k) => !present.has(k))).toEqual([]);
    }
  });

  test('odd payload lengths survive replication, restart from disk, and snapshot install byte for byte', async () => {
    cluster = await Cluster.create(3, { ...timing, snapshotThreshold: 64, snapshotTrailing: 16 });
    const expected: RawRecord[] = [];
    const proposeBytes = async (node: NodeProcess, sizes: number[], seed: number) => {
      const results = await node.call<BytesResult[]>('proposeBytes', { sizes, seed }, 30_000);
      expect(results.filter((r) => r.ok === undefined)).toEqual([]);
      expect(results.map((r) => r.length)).toEqual(sizes);
      for (const r of results) expected.push({ index: r.ok!, length: r.length, digest: r.digest });
      expected.sort((a, b) => a.index - b.index);
      return Math.max(...results.map((r) => r.ok!));
    };
    /** Converges every running node and checks each holds exactly the expected raw payloads. */
    const verify = async (index: number) => {
      const states = await cluster.converge(index, 20_000);
      sameState(states);
      for (const s of states.values()) expect(s.raw).toEqual(expected);
      return states;
    };

    let leader = await cluster.leader();
    await proposeAll(leader, keys('a', 5));
    const sizes = [0, 1, 7, 9, 100_000, 2, 3, 8, 15, 16, 17, 4095, 4097, 65_537];
    await verify(await proposeBytes(leader, sizes, 1));

    // Restart every node from its own disk (log replay, no snapshot yet).
    for (const n of cluster.running()) await n.kill();
    await cluster.startAll();
    leader = await cluster.leader(15_000);
    let states = await verify(await proposeAll(leader, ['restarted']));
    for (const s of states.values()) expect(s.restores).toBe(0);

    // A follower misses odd payloads and enough entries for the leader to snapshot past it.
    const follower = cluster.others(leader)[0]!;
    const id = follower.spec.id;
    const before = await follower.call<Status>('status');
    await follower.kill();
    await proposeBytes(leader, [9, 0, 100_001, 7, 1], 50);
    const load = await leader.call<LoadResult>(
      'load',
      { count: 300, concurrency: 32, prefix: 'L' },
      30_000,
    );
    expect(load.failed).toBe(0);
    const tail = await proposeBytes(leader, [1, 7, 0, 9, 99_999], 80); // most likely sent as log entries
    expect((await leader.call<Status>('status')).snapshot.index - 16).toBeGreaterThan(
      before.lastIndex,
    );
    await cluster.start(id);
    states = await verify(tail);
    expect(states.get(id)!.restores).toBeGreaterThanOrEqual(1);

    // And once more, every node from disk: snapshot plus the log after it.
    for (const n of cluster.running()) await n.kill();
    await cluster.startAll();
    leader = await cluster.leader(15_000);
    states = await verify(await proposeAll(leader, ['restarted-again']));
    expect(states.get(id)!.size).toBe(5 + 1 + 300 + 1);
  });
});

import { Cluster, type FsmState, type Status, waitFor } from './helpers/cluster.js';

type ProposeResult = { ok?: number; error?: { code: string; message: string; mayHaveApplied?: boolean } };

const set = (key: string, value = 'v') => ({ op: 'set', key, value });

describe('three nodes in child processes', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.stop();
  });

  test('elects a leader, replicates, and all three states match', async () => {
    cluster = await Cluster.create(3);
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
    const follower = cluster.running().find((n) => n !== leader)!;
    const [refused] = await follower.call<ProposeResult[]>('propose', { commands: [set('x')] });
    expect(refused!.error!.code).toBe('PREVAIL_NOT_LEADER');
    const st = await follower.call<Status>('status');
    expect(st.leader!.id).toBe(leader.spec.id);
  });
});

// The admin page's monitor (lib/admin/monitor.ts), its pure parts driven with a clock of the
// test's own: the leader's down verdict from match indices, and the live chart's points from
// commit indices and a real apply-latency histogram.
import { ChartHistory, DownTracker } from '../../../lib/admin/monitor.js';
import type { MemberRole, RaftNodeStatus } from '../../../lib/engine/types.js';
import { Histogram, histogramDelta, snapshotQuantile } from '../../../lib/metrics.js';

/** A leader's status (node 1, term 3) at `lastIndex` with these members' match indices. */
function leaderStatus(
  lastIndex: number,
  matches: Record<number, number>,
  roles: Record<number, MemberRole> = {},
  extra: Partial<RaftNodeStatus> = {},
): RaftNodeStatus {
  return {
    id: 1,
    role: 'leader',
    term: 3,
    leader: { id: 1, address: 'h:1' },
    commitIndex: lastIndex,
    appliedIndex: lastIndex,
    lastIndex,
    snapshot: { index: 0, term: 0 },
    security: 'insecure',
    members: [1, ...Object.keys(matches).map(Number)].map((id) => ({
      id,
      address: `h:${id}`,
      role: roles[id] ?? 'voter',
      matchIndex: id === 1 ? lastIndex : matches[id],
    })),
    ...extra,
  };
}

const downList = (t: DownTracker, time: number) => [...t.down(time)].sort((a, b) => a[0] - b[0]);

describe('DownTracker', () => {
  test('a member that acknowledges none of the entries it has to take is down, since it last did', () => {
    const t = new DownTracker(3000);
    t.observe(leaderStatus(10, { 2: 10, 3: 10 }), 1000);
    // Node 3 stops at 10 while the log grows; node 2 keeps up.
    t.observe(leaderStatus(12, { 2: 12, 3: 10 }), 2000);
    t.observe(leaderStatus(15, { 2: 14, 3: 10 }), 3000);
    expect(downList(t, 3000)).toEqual([]);
    // 2999 ms after it last answered (at 1000, with everything): not yet.
    expect(downList(t, 3999)).toEqual([]);
    t.observe(leaderStatus(20, { 2: 20, 3: 10 }), 4000);
    expect(downList(t, 4000)).toEqual([[3, 1000]]);
    expect(downList(t, 60_000)).toEqual([[3, 1000]]);
    // It answers again: cleared at once.
    t.observe(leaderStatus(20, { 2: 20, 3: 14 }), 61_000);
    expect(downList(t, 61_000)).toEqual([]);
    // Still behind, but moving: up. Then stuck behind again, since 61 000.
    t.observe(leaderStatus(21, { 2: 21, 3: 14 }), 63_000);
    expect(downList(t, 63_000)).toEqual([]);
    expect(downList(t, 64_000)).toEqual([[3, 61_000]]);
  });

  test('a member that has everything is not down however long its match index stays', () => {
    const t = new DownTracker(1000);
    for (let time = 0; time <= 10_000; time += 1000)
      t.observe(leaderStatus(7, { 2: 7, 3: 7 }), time);
    expect(downList(t, 10_000)).toEqual([]);
    // The next entry: whoever does not take it is down once downAfterMs has passed.
    t.observe(leaderStatus(8, { 2: 8, 3: 7 }), 10_500);
    expect(downList(t, 10_999)).toEqual([]);
    expect(downList(t, 11_000)).toEqual([[3, 10_000]]);
  });

  test('only on the leader; a new term starts over; spares and members that left are not judged', () => {
    const t = new DownTracker(1000);
    t.observe(leaderStatus(5, { 2: 1, 3: 1, 4: 1 }, { 4: 'spare' }), 0);
    t.observe(leaderStatus(9, { 2: 1, 3: 1, 4: 1 }, { 4: 'spare' }), 5000);
    // The leader does not judge itself, nor the spare (which gets no entries).
    expect(downList(t, 5000)).toEqual([
      [2, 0],
      [3, 0],
    ]);
    // Node 3 leaves the configuration.
    t.observe(leaderStatus(9, { 2: 1 }), 5000);
    expect(downList(t, 5000)).toEqual([[2, 0]]);
    // As a follower this node knows nothing of the others' match indices.
    const follower = leaderStatus(
      9,
      {},
      {},
      { role: 'follower', leader: { id: 2, address: 'h:2' } },
    );
    t.observe(follower, 6000);
    expect(downList(t, 60_000)).toEqual([]);
    // Leader again, in a later term: the clock starts at the first look.
    t.observe(leaderStatus(12, { 2: 0 }, {}, { term: 5 }), 70_000);
    expect(downList(t, 70_500)).toEqual([]);
    expect(downList(t, 71_000)).toEqual([[2, 70_000]]);
    // A new term without a look as follower in between also starts over.
    t.observe(leaderStatus(13, { 2: 0 }, {}, { term: 6 }), 80_000);
    expect(downList(t, 80_500)).toEqual([]);
  });
});

describe('ChartHistory', () => {
  test('commits per second and the apply latency of each interval, from a real histogram', () => {
    const h = new Histogram();
    const c = new ChartHistory(1000, 3);
    c.sample(10_000, 100, h.snapshot());
    expect(c.data().points).toEqual([]);
    for (let i = 0; i < 98; i++) h.observe(0.3);
    h.observe(40);
    h.observe(40);
    c.sample(11_000, 150, h.snapshot());
    // Only the interval's observations count: the next one's are all slow.
    for (let i = 0; i < 4; i++) h.observe(800);
    c.sample(13_000, 155, h.snapshot());
    // No applies: no latency; the commit index moved back (a restore): no negative rate.
    c.sample(14_000, 140, h.snapshot());
    expect(c.data()).toEqual({
      intervalMs: 1000,
      windowMs: 3000,
      points: [
        { time: 11_000, commitsPerSec: 50, applyP50Ms: 0.5, applyP99Ms: 50 },
        { time: 13_000, commitsPerSec: 2.5, applyP50Ms: 1000, applyP99Ms: 1000 },
        { time: 14_000, commitsPerSec: 0, applyP50Ms: null, applyP99Ms: null },
      ],
    });
    // Beyond the last bucket: its bound (JSON has no Infinity). The oldest point goes.
    h.observe(60_000);
    c.sample(15_000, 141, h.snapshot());
    expect(c.data().points.map((p) => p.time)).toEqual([13_000, 14_000, 15_000]);
    expect(c.data(1).points).toEqual([
      { time: 15_000, commitsPerSec: 1, applyP50Ms: 10_000, applyP99Ms: 10_000 },
    ]);
  });

  test('without a histogram (a RaftNode): commits only', () => {
    const c = new ChartHistory(500, 10);
    c.sample(0, 0, null);
    c.sample(500, 3, null);
    expect(c.data().points).toEqual([
      { time: 500, commitsPerSec: 6, applyP50Ms: null, applyP99Ms: null },
    ]);
  });
});

test('histogramDelta and snapshotQuantile agree with Histogram.quantile on the difference', () => {
  const h = new Histogram();
  for (const ms of [0.05, 3, 3, 7]) h.observe(ms);
  const before = h.snapshot();
  const fresh = new Histogram();
  for (const ms of [0.2, 0.2, 30, 30, 30, 4000, 99_999]) {
    h.observe(ms);
    fresh.observe(ms);
  }
  const delta = histogramDelta(h.snapshot(), before);
  const expected = fresh.snapshot();
  expect({ ...delta, sumMs: 0 }).toEqual({ ...expected, sumMs: 0 });
  expect(delta.sumMs).toBeCloseTo(expected.sumMs, 6);
  for (const q of [0.1, 0.5, 0.8, 0.9, 0.99])
    expect([q, snapshotQuantile(delta, q)]).toEqual([q, fresh.quantile(q)]);
  expect(snapshotQuantile(histogramDelta(before, before), 0.5)).toBeNull();
});

// The divergence detector's verdict (lib/cluster/divergence.ts): majority by index, splits,
// the leader's standing verdict and what a replica concludes about itself.
import fc from 'fast-check';

import {
  carryOver,
  judge,
  selfVerdict,
  type CheckpointReports,
  type Diverged,
  type PublishedVerdict,
} from '../../../lib/cluster/divergence.js';

const reports = (r: Record<number, [number, string][]>): CheckpointReports =>
  new Map(Object.entries(r).map(([id, c]) => [Number(id), c]));

// Checkpoints as replicas keep them: every 64 entries, a running hash of what was applied
// (here a string of the step's outcomes), over a window of the most recent ones.
function replica(outcomes: string[], from: number, to: number): [number, string][] {
  const out: [number, string][] = [];
  let running = '';
  outcomes.forEach((o, i) => {
    running += o;
    const index = (i + 1) * 64;
    if (i >= from && i < to) out.push([index, `h:${running}`]);
  });
  return out;
}

describe('judge', () => {
  test('an equal cluster yields no verdict, whatever windows the replicas hold', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 30 }),
        fc.array(fc.tuple(fc.nat(30), fc.nat(30)), { minLength: 1, maxLength: 6 }),
        (outcomes, windows) => {
          const r = new Map(
            windows.map(([a, b], i) => [i + 1, replica(outcomes, Math.min(a, b), Math.max(a, b))]),
          );
          const v = judge(r);
          expect(v.diverged).toEqual([]);
          expect(v.split).toBeNull();
        },
      ),
    );
  });

  test('one replica that applied something else is named, with the majority, whoever leads', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 7 }),
        fc.array(fc.constantFrom('a', 'b'), { minLength: 2, maxLength: 20 }),
        fc.nat(),
        fc.nat(),
        (n, outcomes, oddPick, stepPick) => {
          const odd = 1 + (oddPick % n);
          const step = stepPick % outcomes.length;
          const skewed = outcomes.map((o, i) => (i === step ? `${o}!` : o));
          const r = new Map<number, [number, string][]>();
          for (let id = 1; id <= n; id++)
            r.set(id, replica(id === odd ? skewed : outcomes, 0, outcomes.length));
          const v = judge(r);
          const others = [...r.keys()].filter((id) => id !== odd);
          expect(v.diverged).toEqual([
            {
              node: odd,
              index: (step + 1) * 64,
              expected: r.get(others[0]!)![step]![1],
              actual: r.get(odd)![step]![1],
              majority: others,
            },
          ]);
          expect(v.split).toBeNull();
          expect([...v.agreed.keys()].sort((a, b) => a - b)).toEqual(others);
        },
      ),
    );
  });

  test('over random hash tables it agrees with a direct reading of the majority rule', () => {
    const table = fc.dictionary(
      fc.integer({ min: 1, max: 6 }).map(String),
      fc.dictionary(
        fc.integer({ min: 1, max: 8 }).map((i) => String(i * 64)),
        fc.constantFrom('x', 'y', 'z'),
      ),
    );
    fc.assert(
      fc.property(table, (t) => {
        const r = new Map(
          Object.entries(t).map(([id, c]) => [
            Number(id),
            Object.entries(c).map(([i, h]) => [Number(i), h] as [number, string]),
          ]),
        );
        const v = judge(r);
        for (const [node, checkpoints] of r) {
          // The node's latest checkpoint that other reporters share and a majority settles.
          let last: { agrees: boolean } | undefined;
          for (const [index, hash] of [...checkpoints].sort((a, b) => a[0] - b[0])) {
            const at = [...r.values()].flatMap((c) => c.filter(([i]) => i === index));
            if (at.length < 2) continue;
            // A majority of the members reporting, not only of those holding the index.
            const top = ['x', 'y', 'z'].find(
              (h) => at.filter(([, x]) => x === h).length * 2 > r.size,
            );
            if (top !== undefined) last = { agrees: hash === top };
          }
          const named = v.diverged.find((d) => d.node === node);
          expect([node, named !== undefined]).toEqual([node, last?.agrees === false]);
          expect([node, v.agreed.has(node)]).toEqual([node, last?.agrees === true]);
          if (named) {
            const at = [...r].filter(([, c]) => c.some(([i]) => i === named.index));
            expect(named.actual).not.toBe(named.expected);
            expect(named.majority.length * 2).toBeGreaterThan(r.size);
            expect(at.length).toBeGreaterThanOrEqual(named.majority.length + 1);
            for (const m of named.majority)
              expect(r.get(m)!.find(([i]) => i === named.index)![1]).toBe(named.expected);
          }
        }
      }),
    );
  });

  test('two reporting, different: "disagree, no majority", naming both and neither diverged', () => {
    const v = judge(reports({ 1: [[64, 'p']], 3: [[64, 'q']] }));
    expect(v.diverged).toEqual([]);
    expect(v.split).toEqual({
      index: 64,
      hashes: [
        { hash: 'p', nodes: [1] },
        { hash: 'q', nodes: [3] },
      ],
    });
    // A third reporter settles it.
    const w = judge(reports({ 1: [[64, 'p']], 2: [[64, 'q']], 3: [[64, 'q']] }));
    expect(w.split).toBeNull();
    expect(w.diverged.map((d) => [d.node, d.majority])).toEqual([[1, [2, 3]]]);
  });

  test('a member that lacks the index yet counts: two of three agreeing decide, two differing wait', () => {
    const lagging: [number, string][] = [[64, 'p']];
    const v = judge(
      reports({
        1: [
          [64, 'p'],
          [128, 'p'],
        ],
        2: [
          [64, 'p'],
          [128, 'q'],
        ],
        3: lagging,
      }),
    );
    expect(v).toEqual({
      diverged: [],
      agreed: new Map([
        [1, 64],
        [2, 64],
        [3, 64],
      ]),
      split: null,
    });
    // Two of five agreeing at an index the other three lack is not a majority.
    const five = judge(
      reports({ 1: [[64, 'p']], 2: [[64, 'p']], 3: [[64, 'q']], 4: [[0, 'z']], 5: [[0, 'z']] }),
    );
    expect(five.diverged).toEqual([]);
  });

  test('a lone reporter, or no shared index, is no verdict', () => {
    expect(judge(reports({ 1: [[64, 'p']] })).diverged).toEqual([]);
    const v = judge(reports({ 1: [[64, 'p']], 2: [[128, 'q']] }));
    expect(v).toEqual({ diverged: [], agreed: new Map(), split: null });
  });
});

const d3: Diverged = { node: 3, index: 128, expected: 'e', actual: 'a', majority: [1, 2] };
const members = new Set([1, 2, 3]);

describe('carryOver: the standing verdict', () => {
  test('a diverged replica stays named while it is silent or still differs', () => {
    const first = carryOver(new Map(), { diverged: [d3], agreed: new Map(), split: null }, members);
    expect(first.added).toEqual([d3]);
    // Silent next round (down, or its checkpoints rolled away): still named, not reported again.
    const silent = carryOver(
      first.standing,
      { diverged: [], agreed: new Map(), split: null },
      members,
    );
    expect([...silent.standing.values()]).toEqual([d3]);
    expect(silent.added).toEqual([]);
    const again = carryOver(
      silent.standing,
      { diverged: [{ ...d3, index: 192 }], agreed: new Map([[1, 192]]), split: null },
      members,
    );
    expect([...again.standing.values()]).toEqual([d3]);
    expect(again.added).toEqual([]);
    // Agreeing at or before the index it diverged at says nothing about a resync.
    const early = carryOver(
      first.standing,
      { diverged: [], agreed: new Map([[3, 128]]), split: null },
      members,
    );
    expect([...early.standing.keys()]).toEqual([3]);
  });

  test('cleared when it leaves the configuration, or agrees with a majority later (resynced)', () => {
    const standing = new Map([[3, d3]]);
    const none = { diverged: [], agreed: new Map<number, number>(), split: null };
    expect(carryOver(standing, none, new Set([1, 2])).standing.size).toBe(0);
    const resynced = { ...none, agreed: new Map([[3, 256]]) };
    expect(carryOver(standing, resynced, members).standing.size).toBe(0);
  });
});

describe('selfVerdict: a replica about itself', () => {
  const published = (p: Partial<PublishedVerdict>): PublishedVerdict => ({
    leader: 1,
    diverged: [],
    agreed: [],
    split: null,
    ...p,
  });

  test('named → diverged; a new leader that has not judged yet does not clear it; agreeing later does', () => {
    const named = selfVerdict(3, null, published({ diverged: [d3] }));
    expect(named).toEqual(d3);
    expect(selfVerdict(3, named, published({ leader: 2 }))).toEqual(d3);
    expect(selfVerdict(3, named, published({ agreed: [[3, 128]] }))).toEqual(d3);
    expect(selfVerdict(3, named, published({ agreed: [[3, 192]] }))).toBeNull();
    // The first report is kept (where to look for the command that differed).
    expect(selfVerdict(3, d3, published({ diverged: [{ ...d3, index: 192 }] }))).toEqual(d3);
    expect(selfVerdict(2, null, published({ diverged: [d3] }))).toBeNull();
  });
});

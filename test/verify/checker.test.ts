// The verification checkers (lib/verify/checker.ts) and report (lib/verify/report.ts): known-good
// and known-bad register histories, shrinking, budgets, checkFinal, randomised histories made by
// executing ops against a register (always linearizable) and corrupted copies of them, a
// brute-force oracle on tiny histories, the report and the SVG plot, and a timing check.
import fc from 'fast-check';

import { checkFinal, checkHistory, checkKey } from '../../lib/verify/checker.js';
import { CAS_CONFLICT, type Op, type OpType, type Outcome } from '../../lib/verify/history.js';
import { renderLatencySvg, renderReport } from '../../lib/verify/report.js';

// ---- building histories by hand -------------------------------------------------------------

class H {
  ops: Op[] = [];
  constructor(readonly key = 'k') {}
  private add(
    process: number,
    type: OpType,
    invokeMs: number,
    completeMs: number | null,
    outcome: Outcome,
    extra: Partial<Op> = {},
  ): this {
    this.ops.push({
      id: this.ops.length + 1,
      process,
      type,
      key: this.key,
      invokeMs,
      completeMs,
      outcome,
      ...extra,
    });
    return this;
  }
  w(p: number, value: string, inv: number, comp: number | null, outcome: Outcome = 'ok') {
    return this.add(p, 'write', inv, comp, outcome, { value });
  }
  r(p: number, value: string | null, inv: number, comp: number | null, outcome: Outcome = 'ok') {
    return this.add(p, 'read', inv, comp, outcome, outcome === 'ok' ? { value } : {});
  }
  del(p: number, inv: number, comp: number | null, outcome: Outcome = 'ok') {
    return this.add(p, 'delete', inv, comp, outcome);
  }
  cas(
    p: number,
    expect: string | null,
    value: string,
    inv: number,
    comp: number | null,
    outcome: Outcome = 'ok',
  ) {
    return this.add(p, 'cas', inv, comp, outcome, { expect, value });
  }
  /** A cas refused with 409: the value was not `expect`. */
  conflict(p: number, expect: string | null, value: string, inv: number, comp: number) {
    return this.add(p, 'cas', inv, comp, 'fail', { expect, value, error: CAS_CONFLICT });
  }
}

const valid = (h: H, options = {}) => checkKey(h.ops, options).valid;

describe('known-good histories', () => {
  test('empty and sequential histories', () => {
    expect(checkKey([]).valid).toBe(true);
    expect(checkHistory([]).valid).toBe(true);
    const h = new H()
      .r(1, null, 0, 1)
      .w(1, 'a', 2, 3)
      .r(2, 'a', 4, 5)
      .w(2, 'b', 6, 7)
      .r(1, 'b', 8, 9)
      .del(1, 10, 11)
      .r(2, null, 12, 13)
      .w(1, 'c', 14, 15)
      .r(1, 'c', 16, 17);
    const result = checkKey(h.ops);
    expect(result).toMatchObject({ key: 'k', valid: true, opsChecked: 9 });
    expect(result.anomaly).toBeUndefined();
  });

  test('concurrent writes; reads during them see either, later reads agree on the winner', () => {
    for (const first of ['a', 'b']) {
      const second = first === 'a' ? 'b' : 'a';
      const h = new H()
        .w(1, 'a', 0, 100)
        .w(2, 'b', 0, 100)
        .r(3, first, 50, 150)
        .r(3, second, 160, 170)
        .r(4, second, 200, 210);
      expect(valid(h)).toBe(true);
    }
    // Both seen during the writes, the winner afterwards.
    expect(
      valid(
        new H()
          .w(1, 'a', 0, 100)
          .w(2, 'b', 0, 100)
          .r(3, 'a', 10, 20)
          .r(4, 'b', 30, 40)
          .r(3, 'b', 200, 210),
      ),
    ).toBe(true);
  });

  test('a read concurrent with a write sees the old or the new value', () => {
    for (const seen of ['a', 'b']) {
      expect(
        valid(new H().w(1, 'a', 0, 10).w(1, 'b', 20, 40).r(2, seen, 25, 35).r(2, 'b', 50, 60)),
      ).toBe(true);
    }
    // Ops touching at the same millisecond count as concurrent.
    expect(valid(new H().w(1, 'a', 0, 10).r(2, null, 10, 20))).toBe(true);
  });

  test('info writes: seen later as applied, or never applied; applied even after the client gave up', () => {
    expect(
      valid(
        new H()
          .w(1, 'a', 0, 10)
          .w(2, 'b', 20, null, 'info')
          .r(3, 'a', 30, 40)
          .r(3, 'b', 100, 110)
          .r(1, 'b', 200, 210),
      ),
    ).toBe(true);
    expect(
      valid(
        new H().w(1, 'a', 0, 10).w(2, 'b', 20, null, 'info').r(3, 'a', 30, 40).r(3, 'a', 100, 110),
      ),
    ).toBe(true);
    // Timed out at 50, applied at some point after 60.
    expect(
      valid(
        new H().w(1, 'a', 0, 10).w(2, 'b', 20, 50, 'info').r(3, 'a', 55, 60).r(3, 'b', 300, 310),
      ),
    ).toBe(true);
    // Info and failed reads carry no information.
    expect(
      valid(new H().w(1, 'a', 0, 10).r(2, 'zzz', 20, 30, 'info').r(3, null, 20, 30, 'fail')),
    ).toBe(true);
    // A failed write never happened.
    expect(valid(new H().w(1, 'a', 0, 10).w(2, 'b', 20, 30, 'fail').r(1, 'a', 40, 50))).toBe(true);
    // An info delete, applied.
    expect(valid(new H().w(1, 'a', 0, 10).del(2, 20, null, 'info').r(1, null, 40, 50))).toBe(true);
  });

  test('cas chains, with conflicts as observations and indeterminate cas', () => {
    const h = new H()
      .cas(1, null, 'a', 0, 10)
      .cas(2, 'a', 'b', 20, 30)
      .conflict(3, 'a', 'c', 40, 50) // the value was b, not a
      .cas(1, 'b', 'c', 60, 70)
      .r(2, 'c', 80, 90)
      .cas(3, 'c', 'd', 100, null, 'info') // maybe
      .conflict(1, 'c', 'e', 200, 210) // so it was applied
      .r(2, 'd', 220, 230);
    expect(valid(h)).toBe(true);
    // Two concurrent cas from the same value: one wins, the other is refused.
    expect(
      valid(
        new H()
          .w(1, 'a', 0, 10)
          .cas(2, 'a', 'x', 20, 40)
          .conflict(3, 'a', 'y', 20, 40)
          .r(1, 'x', 50, 60),
      ),
    ).toBe(true);
    // A failed cas with another error did not happen and is not an observation.
    const other = new H().w(1, 'a', 0, 10);
    other.ops.push({
      id: 99,
      process: 2,
      type: 'cas',
      key: 'k',
      expect: 'a',
      value: 'q',
      invokeMs: 20,
      completeMs: 30,
      outcome: 'fail',
      error: 'PREVAIL_NOT_LEADER',
    });
    expect(valid(other.r(1, 'a', 40, 50))).toBe(true);
  });
});

describe('known-bad histories', () => {
  test('a stale read after an acknowledged write, shrunk to the conflicting ops', () => {
    const h = new H().w(1, 'a', 0, 10).w(2, 'b', 20, 30).r(3, 'a', 40, 50);
    const result = checkKey(h.ops);
    expect(result.valid).toBe(false);
    expect(result.anomaly!.minimalSubhistory.map((o) => o.id).sort()).toEqual([1, 2, 3]);
    expect(result.anomaly!.reason).toMatch(/op 3 \(read → "a"/);
  });

  test('a read of a value never written (or only written by a failed write)', () => {
    const result = checkKey(new H().w(1, 'a', 0, 10).r(2, 'ghost', 20, 30).r(2, 'a', 40, 50).ops);
    expect(result.valid).toBe(false);
    expect(result.anomaly!.minimalSubhistory.map((o) => o.id)).toEqual([2]);
    expect(result.anomaly!.reason).toMatch(/never wrote|ever wrote/);
    const failed = checkKey(new H().w(1, 'a', 0, 10, 'fail').r(2, 'a', 20, 30).ops);
    expect(failed.valid).toBe(false);
    expect(failed.anomaly!.reason).toMatch(/failed/);
  });

  test('non-monotonic reads: new then old, not overlapping', () => {
    const h = new H().w(1, 'a', 0, 10).w(2, 'b', 15, 100).r(3, 'b', 20, 30).r(4, 'a', 40, 50);
    expect(valid(h)).toBe(false);
    // The same reads overlapping each other are fine (a, then b written while both run).
    expect(
      valid(new H().w(1, 'a', 0, 10).w(2, 'b', 15, 100).r(3, 'b', 20, 45).r(4, 'a', 40, 50)),
    ).toBe(true);
    expect(
      valid(new H().w(1, 'a', 0, 10).w(2, 'b', 15, 100).r(3, 'b', 20, 50).r(4, 'a', 20, 50)),
    ).toBe(true);
  });

  test('a cas that succeeded although the value did not match; a conflict although it did', () => {
    expect(valid(new H().w(1, 'a', 0, 10).cas(2, 'b', 'c', 20, 30))).toBe(false);
    expect(valid(new H().w(1, 'a', 0, 10).conflict(2, 'a', 'c', 20, 30))).toBe(false);
    expect(valid(new H().cas(1, null, 'a', 0, 10).cas(2, null, 'b', 20, 30))).toBe(false);
    // ... unless an indeterminate write explains it.
    expect(
      valid(new H().w(1, 'a', 0, 10).w(3, 'z', 5, null, 'info').conflict(2, 'a', 'c', 20, 30)),
    ).toBe(true);
  });

  test('an indeterminate write cannot take effect before it was invoked', () => {
    expect(valid(new H().w(1, 'a', 0, 10).r(2, 'b', 20, 30).w(3, 'b', 40, null, 'info'))).toBe(
      false,
    );
  });

  test('stale reads recorded by the harness (npm run verify -- --reads stale, seed 8), shrunk', () => {
    const real: Op[] = [
      {
        id: 422,
        process: 14,
        type: 'write',
        key: 'k3',
        value: '6.21',
        invokeMs: 7343.4,
        completeMs: 8614.4,
        outcome: 'ok',
        node: 3,
      },
      {
        id: 449,
        process: 21,
        type: 'cas',
        key: 'k3',
        expect: '6.21',
        value: '8.16',
        invokeMs: 8735.1,
        completeMs: 8740,
        outcome: 'ok',
        node: 3,
      },
      {
        id: 452,
        process: 20,
        type: 'write',
        key: 'k3',
        value: '4.21',
        invokeMs: 8767.4,
        completeMs: 8769.7,
        outcome: 'ok',
        node: 1,
      },
      {
        id: 458,
        process: 19,
        type: 'read',
        key: 'k3',
        value: '8.16',
        invokeMs: 8812,
        completeMs: 8812.5,
        outcome: 'ok',
        node: 3,
      },
    ];
    const result = checkKey(real);
    expect(result.valid).toBe(false);
    expect(result.anomaly!.minimalSubhistory).toHaveLength(4);
    expect(result.anomaly!.reason).toMatch(/op 458 \(read → "8\.16".*the value was "4\.21"/);
    // The same read a few ms earlier, overlapping the write of 4.21, is fine.
    expect(
      checkKey(real.map((o) => (o.id === 458 ? { ...o, invokeMs: 8768, completeMs: 8768.5 } : o)))
        .valid,
    ).toBe(true);
  });

  test('checkHistory groups by key: one bad key fails the history', () => {
    const good = new H('good').w(1, 'x', 0, 10).r(2, 'x', 20, 30);
    const bad = new H('bad').w(1, 'a', 0, 10).w(2, 'b', 20, 30).r(3, 'a', 40, 50);
    const result = checkHistory([...good.ops, ...bad.ops.map((o) => ({ ...o, id: o.id + 100 }))]);
    expect(result.valid).toBe(false);
    expect(result.keys.map((k) => [k.key, k.valid])).toEqual([
      ['bad', false],
      ['good', true],
    ]);
    expect(result.opsChecked).toBe(5);
  });
});

describe('shrinking and budgets', () => {
  test('the minimal sub-history of a long history is small and still fails', () => {
    // 200 ops of sequential and overlapping traffic, with one stale read in the middle.
    const h = new H();
    let t = 0;
    let current: string;
    for (let i = 0; i < 100; i++) {
      const v = `v${i}`;
      h.w(1 + (i % 3), v, t, t + 5);
      current = v;
      h.r(4 + (i % 3), i === 60 ? 'v40' : current, t + 6, t + 9);
      t += 10;
    }
    const result = checkKey(h.ops);
    expect(result.valid).toBe(false);
    const minimal = result.anomaly!.minimalSubhistory;
    expect(minimal.length).toBeLessThanOrEqual(4);
    expect(minimal.map((o) => o.id)).toContain(122); // the stale read
    expect(checkKey(minimal).valid).toBe(false);
    // Dropping any one op of it makes it pass (or leaves a read without its writer).
    for (const o of minimal) {
      const rest = minimal.filter((x) => x !== o);
      const readsWithoutWriter =
        rest.some((x) => x.type === 'read' && x.value === 'v40') &&
        !rest.some((x) => x.value === 'v40' && x.type === 'write');
      if (!readsWithoutWriter) expect(checkKey(rest).valid).not.toBe(false);
    }
  });

  test('unknown when the state or time budget runs out', () => {
    const h = new H();
    for (let i = 0; i < 2000; i++)
      h.w(1, `v${i}`, i * 10, i * 10 + 5).r(2, `v${i}`, i * 10 + 6, i * 10 + 8);
    const bounded = checkKey(h.ops, { maxStates: 100 });
    expect(bounded.valid).toBe('unknown');
    expect(bounded.note).toMatch(/state budget/);
    expect(checkKey(h.ops, { timeoutMs: -1 }).valid).toBe('unknown');
    expect(checkHistory(h.ops, { maxStates: 100 }).valid).toBe('unknown');
    expect(checkKey(h.ops).valid).toBe(true);
  });
});

describe('checkFinal', () => {
  test('the last acknowledged write is visible; a lost one is reported', () => {
    const h = new H().w(1, 'a', 0, 10).w(2, 'b', 20, 30);
    expect(checkFinal(h.ops, { k: 'b' })).toEqual([]);
    const lost = checkFinal(h.ops, { k: 'a' });
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ kind: 'lost-write', key: 'k' });
    expect(lost[0]!.ops!.map((o) => o.id)).toEqual([2]);
    expect(checkFinal(h.ops, new Map([['k', null]]))[0]!.kind).toBe('lost-write');
    expect(checkFinal(h.ops, {})[0]!.kind).toBe('lost-write'); // missing = absent
  });

  test('concurrent last writes, info writes, deletes and failures', () => {
    const h = new H().w(1, 'a', 0, 30).w(2, 'b', 10, 20);
    expect(checkFinal(h.ops, { k: 'a' })).toEqual([]);
    expect(checkFinal(h.ops, { k: 'b' })).toEqual([]);
    const info = new H().w(1, 'a', 0, 10).w(2, 'b', 20, null, 'info').w(3, 'c', 30, 40, 'fail');
    expect(checkFinal(info.ops, { k: 'a' })).toEqual([]);
    expect(checkFinal(info.ops, { k: 'b' })).toEqual([]);
    expect(checkFinal(info.ops, { k: 'c' })[0]!.kind).toBe('lost-write');
    expect(checkFinal(new H().w(1, 'a', 0, 10).del(1, 20, 30).ops, {})).toEqual([]);
    expect(checkFinal(new H().w(1, 'a', 0, 10).del(1, 20, 30).ops, { k: 'a' })[0]!.kind).toBe(
      'lost-write',
    );
    expect(checkFinal(new H().w(1, 'a', 0, 10, 'info').ops, { k: null })).toEqual([]);
    expect(checkFinal([], { other: 'x' })[0]).toMatchObject({
      kind: 'unexpected-final-value',
      key: 'other',
    });
    // A cas conflict changed nothing.
    const conflicted = new H().w(1, 'a', 0, 10).conflict(2, 'q', 'z', 20, 30);
    expect(checkFinal(conflicted.ops, { k: 'z' })[0]!.kind).toBe('lost-write');
  });

  test('replicas must hold the same state', () => {
    const ops = new H().w(1, 'a', 0, 10).ops;
    expect(
      checkFinal(ops, { k: 'a' }, [
        { node: 1, state: { k: 'a' } },
        { node: 2, state: new Map([['k', 'a']]) },
      ]),
    ).toEqual([]);
    const diverged = checkFinal(ops, { k: 'a' }, [
      { node: 1, state: { k: 'a', j: 'x' } },
      { node: 2, state: { k: 'a' } },
      { node: 3, state: { k: 'a', j: 'x' } },
    ]);
    expect(diverged).toHaveLength(1);
    expect(diverged[0]).toMatchObject({ kind: 'replica-divergence', nodes: [1, 2] });
    expect(diverged[0]!.message).toContain('"j"');
    expect(
      checkFinal(ops, { k: 'a' }, [
        { node: 1, state: 'abc' },
        { node: 2, state: 'abd' },
      ])[0]!.kind,
    ).toBe('replica-divergence');
    expect(
      checkFinal(ops, { k: 'a' }, [
        { node: 1, state: 'abc' },
        { node: 2, state: 'abc' },
      ]),
    ).toEqual([]);
  });
});

// ---- randomised histories ---------------------------------------------------------------------

interface Spec {
  process: number;
  key: number;
  kind: number; // 0-3 read, 4-5 write, 6 delete, 7-8 cas
  think: number;
  lin: number;
  tail: number;
  roll: number;
  pick: number;
}

const specArb = fc.record({
  process: fc.nat(9),
  key: fc.nat(4),
  kind: fc.nat(8),
  think: fc.nat(20),
  lin: fc.nat(30),
  tail: fc.nat(30),
  roll: fc.nat(99),
  pick: fc.nat(99),
});

/**
 * Executes the ops against one register per key, each at a point between its invoke and
 * complete (info ops: at some point after invoke, maybe after the client gave up, or never), so
 * the history is linearizable by construction. Returns the ops and the final state.
 */
function simulate(
  specs: Spec[],
  processes: number,
  keyCount: number,
  infoPercent = 8,
): { ops: Op[]; final: Map<string, string | null> } {
  const free = new Array<number>(processes).fill(0);
  const planned: { op: Op; at: number; applies: boolean; pick: number }[] = [];
  specs.forEach((s, i) => {
    const p = s.process % processes;
    const invokeMs = free[p]! + 1 + s.think;
    const at = invokeMs + s.lin;
    const completeMs = at + s.tail;
    free[p] = completeMs;
    const type: OpType =
      s.kind <= 3 ? 'read' : s.kind <= 5 ? 'write' : s.kind === 6 ? 'delete' : 'cas';
    const op: Op = {
      id: i + 1,
      process: p,
      type,
      key: `k${s.key % keyCount}`,
      invokeMs,
      completeMs,
      outcome: 'ok',
    };
    if (type === 'write' || type === 'cas') op.value = `${op.key}-${op.id}`;
    let applies = true;
    let when = at;
    if (s.roll < infoPercent) {
      op.outcome = 'info';
      op.error = 'PREVAIL_TIMEOUT';
      applies = s.roll % 2 === 0;
      if (s.roll % 4 === 0) when = completeMs + s.pick * 3; // applied after the client gave up
      if (s.roll % 3 === 0) op.completeMs = null;
    } else if (s.roll < infoPercent + 4 && type !== 'cas') {
      op.outcome = 'fail';
      op.error = 'PREVAIL_NOT_LEADER';
      applies = false;
    }
    planned.push({ op, at: when, applies, pick: s.pick });
  });
  planned.sort((a, b) => a.at - b.at || a.op.id - b.op.id);
  const state = new Map<string, string | null>();
  const written = new Map<string, string[]>();
  for (const { op, applies, pick } of planned) {
    const current = state.get(op.key) ?? null;
    const history = written.get(op.key) ?? [];
    switch (op.type) {
      case 'read':
        if (op.outcome === 'ok') op.value = current;
        break;
      case 'write':
        if (applies) state.set(op.key, op.value!);
        break;
      case 'delete':
        if (applies) state.set(op.key, null);
        break;
      case 'cas': {
        op.expect =
          pick < 60
            ? current
            : pick < 80 || history.length === 0
              ? null
              : history[pick % history.length]!;
        if (current !== op.expect) {
          if (op.outcome === 'ok') {
            op.outcome = 'fail';
            op.error = CAS_CONFLICT;
          }
        } else if (applies) {
          state.set(op.key, op.value!);
        }
        break;
      }
    }
    if (applies && op.outcome !== 'fail' && op.type !== 'read' && op.type !== 'delete') {
      history.push(op.value!);
      written.set(op.key, history);
    }
  }
  return { ops: planned.map((p) => p.op).sort((a, b) => a.id - b.id), final: state };
}

describe('randomised histories (fast-check)', () => {
  test('histories executed against a register are linearizable, and checkFinal accepts the final state', () => {
    fc.assert(
      fc.property(
        fc.array(specArb, { minLength: 1, maxLength: 120 }),
        fc.integer({ min: 1, max: 8 }),
        (specs, processes) => {
          const { ops, final } = simulate(specs, processes, 3);
          const result = checkHistory(ops, { timeoutMs: 5_000 });
          expect(result.valid).toBe(true);
          expect(
            checkFinal(ops, final, [
              { node: 1, state: final },
              { node: 2, state: new Map(final) },
            ]),
          ).toEqual([]);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('a read corrupted to a value never written is caught, and shrinks to that read', () => {
    fc.assert(
      fc.property(
        fc.array(specArb, { minLength: 1, maxLength: 120 }),
        fc.integer({ min: 1, max: 8 }),
        fc.nat(),
        (specs, processes, which) => {
          const { ops } = simulate(specs, processes, 2);
          const reads = ops.filter((o) => o.type === 'read' && o.outcome === 'ok');
          fc.pre(reads.length > 0);
          const victim = reads[which % reads.length]!;
          victim.value = 'corrupted';
          const result = checkHistory(ops, { timeoutMs: 5_000 });
          expect(result.valid).toBe(false);
          const bad = result.keys.find((k) => k.key === victim.key)!;
          expect(bad.anomaly!.minimalSubhistory).toEqual([victim]);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('a read corrupted to a value first written after it completed is caught', () => {
    let asserted = 0;
    fc.assert(
      fc.property(
        fc.array(specArb, { minLength: 10, maxLength: 120 }),
        fc.integer({ min: 1, max: 8 }),
        fc.nat(),
        (specs, processes, which) => {
          const { ops } = simulate(specs, processes, 2);
          const reads = ops.filter((o) => o.type === 'read' && o.outcome === 'ok');
          fc.pre(reads.length > 0);
          const victim = reads[which % reads.length]!;
          const future = ops.find(
            (o) =>
              o.key === victim.key &&
              (o.type === 'write' || o.type === 'cas') &&
              o.outcome !== 'fail' &&
              o.invokeMs > victim.completeMs!,
          );
          fc.pre(future !== undefined);
          victim.value = future.value!;
          asserted++;
          const result = checkKey(
            ops.filter((o) => o.key === victim.key),
            { timeoutMs: 5_000 },
          );
          expect(result.valid).toBe(false);
          expect(checkKey(result.anomaly!.minimalSubhistory).valid).toBe(false);
          expect(result.anomaly!.minimalSubhistory).toContain(victim);
        },
      ),
      { numRuns: 100 },
    );
    expect(asserted).toBeGreaterThan(50);
  });

  test('a read corrupted to another written value: no crash, and a decided verdict', () => {
    let caught = 0;
    fc.assert(
      fc.property(
        fc.array(specArb, { minLength: 10, maxLength: 120 }),
        fc.nat(),
        fc.nat(),
        (specs, a, b) => {
          const { ops } = simulate(specs, 5, 1);
          const reads = ops.filter((o) => o.type === 'read' && o.outcome === 'ok');
          const values = ops.filter((o) => o.type === 'write').map((o) => o.value!);
          fc.pre(reads.length > 0 && values.length > 0);
          reads[a % reads.length]!.value = values[b % values.length]!;
          const result = checkKey(ops, { timeoutMs: 5_000 });
          expect([true, false]).toContain(result.valid);
          if (result.valid === false) caught++;
        },
      ),
      { numRuns: 100 },
    );
    expect(caught).toBeGreaterThan(0);
  });
});

// ---- a brute-force oracle on tiny histories ------------------------------------------------------

/** Linearizable iff some ordering of a subset (all required ops, any optional ones) respects
 *  real time and the register. Enumerates permutations; only for a handful of ops. */
function bruteForce(ops: Op[]): boolean {
  type E = {
    op: Op;
    required: boolean;
    call: number;
    ret: number;
    kind: 'read' | 'write' | 'cas' | 'conflict';
  };
  const es: E[] = [];
  for (const op of ops) {
    if (op.type === 'read' && op.outcome !== 'ok') continue;
    if (op.outcome === 'fail' && !(op.type === 'cas' && op.error === CAS_CONFLICT)) continue;
    const required = op.outcome !== 'info';
    const ret = required && op.completeMs !== null ? op.completeMs : Infinity;
    const kind =
      op.type === 'delete'
        ? 'write'
        : op.type === 'cas' && op.outcome === 'fail'
          ? 'conflict'
          : op.type;
    es.push({ op, required, call: op.invokeMs, ret, kind });
  }
  const used = new Array<boolean>(es.length).fill(false);
  const order: E[] = [];
  const legal = (): boolean => {
    // Real time: nothing placed after an op that returned before it was invoked... i.e. for
    // each pair in order, the later one must not have returned before the earlier was invoked;
    // and an op left out must be optional.
    for (let i = 0; i < order.length; i++)
      for (let j = i + 1; j < order.length; j++) if (order[j]!.ret < order[i]!.call) return false;
    let v: string | null = null;
    for (const e of order) {
      const op = e.op;
      if (e.kind === 'read' && (op.value ?? null) !== v) return false;
      if (e.kind === 'cas' && v !== (op.expect ?? null)) return false;
      if (e.kind === 'conflict' && v === (op.expect ?? null)) return false;
      if (e.kind === 'write' || e.kind === 'cas')
        v = op.type === 'delete' ? null : (op.value ?? null);
    }
    return true;
  };
  const go = (): boolean => {
    if (es.every((e, i) => used[i] || !e.required) && legal()) return true;
    for (let i = 0; i < es.length; i++) {
      if (used[i]) continue;
      used[i] = true;
      order.push(es[i]!);
      const ok = go();
      order.pop();
      used[i] = false;
      if (ok) return true;
    }
    return false;
  };
  return go();
}

/** VERIFY_ORACLE_RUNS / VERIFY_ORACLE_OPS run it longer (e.g. 100000 / 7) when changing the search. */
const TINY_RUNS = Number(process.env.VERIFY_ORACLE_RUNS ?? 1500);
const TINY_MAX = Number(process.env.VERIFY_ORACLE_OPS ?? 6);
const MEDIUM_RUNS = Number(process.env.VERIFY_ORACLE_RUNS ?? 1500) / 5;

test('agrees with a brute-force search on tiny random histories', () => {
  const tinyOp = fc.record({
    process: fc.nat(3),
    type: fc.constantFrom<OpType>('read', 'read', 'write', 'write', 'cas', 'delete'),
    value: fc.constantFrom<string | null>('a', 'b', 'c', null),
    expect: fc.constantFrom<string | null>('a', 'b', null),
    invokeMs: fc.nat(20),
    len: fc.nat(15),
    outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'info', 'fail'),
    open: fc.boolean(),
    conflict: fc.boolean(),
  });
  let invalid = 0;
  let validCount = 0;
  fc.assert(
    fc.property(fc.array(tinyOp, { minLength: 1, maxLength: TINY_MAX }), (raw) => {
      const ops: Op[] = raw.map((r, i) => {
        const op: Op = {
          id: i + 1,
          process: r.process,
          type: r.type,
          key: 'k',
          invokeMs: r.invokeMs,
          completeMs: r.invokeMs + r.len,
          outcome: r.outcome,
        };
        if (r.type === 'read' || r.type === 'write' || r.type === 'cas')
          op.value = r.type === 'write' || r.type === 'cas' ? (r.value ?? 'a') : r.value;
        if (r.type === 'cas') op.expect = r.expect;
        if (r.outcome === 'info' && r.open) op.completeMs = null;
        if (r.outcome === 'fail' && r.type === 'cas' && r.conflict) op.error = CAS_CONFLICT;
        return op;
      });
      const expected = bruteForce(ops);
      const result = checkKey(ops);
      expect(result.valid).toBe(expected);
      if (expected) validCount++;
      else {
        invalid++;
        expect(bruteForce(result.anomaly!.minimalSubhistory)).toBe(false);
      }
    }),
    { numRuns: TINY_RUNS },
  );
  expect(invalid).toBeGreaterThan(TINY_RUNS / 15);
  expect(validCount).toBeGreaterThan(TINY_RUNS / 15);
});

/** The plain search, without the checker's reductions (forced observations, classes of info
 *  ops, merged unobserved values, dropped unobservable writes): a differential oracle for
 *  medium-sized histories. Memoised on (linearized set, value). */
function plainSearch(ops: Op[]): boolean {
  type E = { op: Op; required: boolean; call: number; ret: number };
  const es: E[] = [];
  for (const op of ops) {
    if (op.type === 'read' && op.outcome !== 'ok') continue;
    if (op.outcome === 'fail' && !(op.type === 'cas' && op.error === CAS_CONFLICT)) continue;
    const required = op.outcome !== 'info';
    es.push({
      op,
      required,
      call: op.invokeMs,
      ret: required && op.completeMs !== null ? op.completeMs : Infinity,
    });
  }
  const done = new Array<boolean>(es.length).fill(false);
  const seen = new Set<string>();
  const step = (v: string | null, e: E): string | null | undefined => {
    const op = e.op;
    if (op.type === 'read') return (op.value ?? null) === v ? v : undefined;
    if (op.type === 'write') return op.value ?? null;
    if (op.type === 'delete') return null;
    if (op.outcome === 'fail') return (op.expect ?? null) !== v ? v : undefined;
    return (op.expect ?? null) === v ? (op.value ?? null) : undefined;
  };
  const go = (v: string | null): boolean => {
    if (es.every((e, i) => done[i] || !e.required)) return true;
    const key = done.map((d) => (d ? 1 : 0)).join('') + '|' + String(v);
    if (seen.has(key)) return false;
    seen.add(key);
    let minRet = Infinity;
    es.forEach((e, i) => {
      if (!done[i]) minRet = Math.min(minRet, e.ret);
    });
    for (let i = 0; i < es.length; i++) {
      if (done[i] || es[i]!.call > minRet) continue;
      const after = step(v, es[i]!);
      if (after === undefined) continue;
      done[i] = true;
      const ok = go(after);
      done[i] = false;
      if (ok) return true;
    }
    return false;
  };
  return go(null);
}

test('agrees with the plain search on medium random histories with many info ops and corrupted reads', () => {
  const counts = { valid: 0, invalid: 0 };
  fc.assert(
    fc.property(
      fc.array(specArb, { minLength: 5, maxLength: 40 }),
      fc.integer({ min: 2, max: 6 }),
      fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 2 }),
      (specs, processes, corruptions) => {
        const { ops } = simulate(specs, processes, 1, 30);
        const reads = ops.filter((o) => o.type === 'read' && o.outcome === 'ok');
        const values = [
          null,
          ...ops.filter((o) => o.type === 'write' || o.type === 'cas').map((o) => o.value!),
        ];
        for (const [a, b] of corruptions)
          if (reads.length) reads[a % reads.length]!.value = values[b % values.length]!;
        const expected = plainSearch(ops);
        const result = checkKey(ops, { timeoutMs: 5_000 });
        expect(result.valid).toBe(expected);
        counts[expected ? 'valid' : 'invalid']++;
        if (!expected) expect(plainSearch(result.anomaly!.minimalSubhistory)).toBe(false);
      },
    ),
    { numRuns: MEDIUM_RUNS },
  );
  expect(counts.invalid).toBeGreaterThan(MEDIUM_RUNS / 10);
  expect(counts.valid).toBeGreaterThan(MEDIUM_RUNS / 10);
});

// ---- the report -------------------------------------------------------------------------------------

function isWellFormed(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (closing) {
      if (stack.pop() !== name) return false;
    } else if (!selfClosing) {
      stack.push(name!);
    }
  }
  // No stray markup characters in text.
  const text = svg.replace(/<[^>]*>/g, '');
  return stack.length === 0 && !/[<>]/.test(text) && !/&(?!(amp|lt|gt|quot|#39);)/.test(text);
}

describe('report', () => {
  test('verdict, counts, anomalies with their minimal sub-history, final violations', () => {
    const good = new H('good').w(1, 'x', 0, 10).r(2, 'x', 20, 30).r(3, 'x', 20, 30, 'info');
    const bad = new H('bad')
      .w(1, 'a', 0, 10)
      .w(2, 'b', 20, 30)
      .r(3, 'a', 40, 50)
      .conflict(4, 'zz', 'q', 60, 70);
    const ops = [...good.ops, ...bad.ops.map((o) => ({ ...o, id: o.id + 100, node: 2 }))];
    const results = checkHistory(ops);
    const final = checkFinal(ops, { good: 'x', bad: 'a' });
    const { text, json } = renderReport({
      results,
      ops,
      faults: [{ kind: 'partition', startMs: 15, endMs: 45, detail: '{1,2} | {3}' }],
      meta: { seed: 42, nodes: 3 },
      final,
    });
    expect(text.split('\n')[0]).toMatch(
      /^VERDICT: FAIL — 1 of 2 keys not linearizable; 1 final-state violation$/,
    );
    expect(text).toContain('run: seed=42 nodes=3');
    expect(text).toMatch(/read\s+2\s+0\s+1\s+3/);
    expect(text).toMatch(/total\s+5\s+1\s+1\s+7/);
    expect(text).toContain('minimal failing sub-history (3 ops)');
    expect(text).toMatch(/103\s+3\s+2\s+read → "a"\s+ok\s+40\s+50/);
    expect(text).toContain('partition');
    expect(text).toContain('lost-write');
    expect(json.verdict).toBe('FAIL');
    expect(json.counts.cas).toEqual({ ok: 0, fail: 1, info: 0, total: 1 });
    expect(json.casConflicts).toBe(1);
    expect(json.anomalies).toHaveLength(1);
    expect(JSON.parse(JSON.stringify(json)).anomalies[0].minimalSubhistory).toHaveLength(3);

    const pass = renderReport({
      results: checkHistory(good.ops),
      ops: good.ops,
      faults: [],
      final: [],
    });
    expect(pass.text.split('\n')[0]).toBe(
      'VERDICT: PASS — 1 key linearizable, acknowledged writes visible, replicas equal',
    );
    const unchecked = renderReport({ results: checkHistory(good.ops), ops: good.ops, faults: [] });
    expect(unchecked.json.summary).toContain('final state not checked');
    const unknown = renderReport({
      results: { valid: 'unknown', keys: [], opsChecked: 0, statesExplored: 0, elapsedMs: 0 },
      ops: good.ops,
      faults: [],
    });
    expect(unknown.json.verdict).toBe('UNKNOWN');
    expect(unknown.json.summary).toBe('linearizability not established');
  });

  test('the latency SVG is well formed and shades the fault windows', () => {
    const { ops } = simulate(fc.sample(specArb, { numRuns: 300, seed: 7 }), 5, 2);
    ops[3]!.outcome = 'info';
    ops[3]!.completeMs = null;
    const faults = [
      { kind: 'partition', startMs: 100, endMs: 400, detail: 'majority <-> minority & co' },
      { kind: 'kill', startMs: 600, endMs: 650 },
      { kind: 'partition', startMs: 900, endMs: 1000 },
    ];
    const svg = renderLatencySvg(ops, faults, { width: 800, height: 300 });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="800" height="300"')).toBe(
      true,
    );
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(isWellFormed(svg)).toBe(true);
    expect(svg.match(/<rect class="fault"/g)).toHaveLength(3);
    expect(svg.match(/class="fault-label"[^>]*>partition</g)).toHaveLength(2);
    expect(svg).toContain('>kill<');
    expect(svg).toContain('&lt;-&gt; minority &amp; co');
    expect(svg.match(/<circle /g)!.length).toBe(ops.length + 3); // + the legend
    expect(isWellFormed(renderLatencySvg([], []))).toBe(true);
  });
});

// ---- performance ------------------------------------------------------------------------------------

test('a 5-key history of ~2000 ops from 10 clients with info ops checks in well under a few seconds', () => {
  const specs = fc.sample(specArb, { numRuns: 2000, seed: 12345 });
  const { ops } = simulate(specs, 10, 5, 6);
  const info = ops.filter((o) => o.outcome === 'info').length;
  expect(info).toBeGreaterThan(50);
  const started = performance.now();
  const result = checkHistory(ops);
  const elapsed = performance.now() - started;
  expect(result.valid).toBe(true);
  expect(result.keys).toHaveLength(5);
  // Corrupt one read: the invalid path (search exhaustion + shrinking) must be fast too.
  const victim = ops.filter((o) => o.type === 'read' && o.outcome === 'ok')[500]!;
  // A value overwritten (by an acknowledged write after it) before the read was invoked.
  const okWrites = ops.filter(
    (o) => o.key === victim.key && o.type === 'write' && o.outcome === 'ok',
  );
  const wrote = okWrites.find((w) =>
    okWrites.some((later) => later.invokeMs > w.completeMs! && later.completeMs! < victim.invokeMs),
  )!;
  victim.value = wrote.value!;
  const started2 = performance.now();
  const bad = checkHistory(ops);
  const elapsed2 = performance.now() - started2;
  process.stdout.write(
    `verify-checker perf: ${ops.length} ops (${info} info), valid in ${elapsed.toFixed(0)} ms (${result.statesExplored} states); ` +
      `with one stale read: ${String(bad.valid)} in ${elapsed2.toFixed(0)} ms, minimal ${bad.keys.find((k) => k.valid === false)?.anomaly?.minimalSubhistory.length} ops\n`,
  );
  expect(elapsed).toBeLessThan(3_000);
  expect(bad.valid).toBe(false);
  expect(elapsed2).toBeLessThan(5_000);
});

// Leader-scoped jobs and scheduled commands on a 3-process store cluster
// (test/fixtures/store-process.mjs with `job: true`): a job runs on the leader only, moves
// with leadership (kill -9, transfer) and aborts when leadership goes; scheduled commands
// fire once each through a failover and through a full restart.
import { rmSync } from 'node:fs';

import { collection, defineSchema, open } from '../../lib/store.js';
import {
  Cluster,
  fixtures,
  tempDir,
  waitFor,
  type NodeProcess,
  type Status,
} from '../helpers/cluster.js';

interface Count {
  key: string;
  n: number;
  dues: number[];
}
interface Outcome<T> {
  ok?: T;
  error?: { code?: string; message: string };
}

const timing = { electionTimeoutMs: 1000, heartbeatMs: 100, job: true };

function jobEvents(n: NodeProcess): string[] {
  return n.events.filter((e) => e.event === 'job').map((e) => e.what as string);
}

/** Each node's job has started as many times as it has aborted, plus one if it is running now. */
function running(n: NodeProcess): boolean {
  const ev = jobEvents(n);
  return ev.filter((w) => w === 'start').length > ev.filter((w) => w === 'abort').length;
}

async function counts(n: NodeProcess): Promise<Map<string, Count>> {
  await n.call('read', { key: 'none', consistency: 'linearizable', timeoutMs: 10_000 });
  return new Map((await n.call<Count[]>('counts')).map((c) => [c.key, c]));
}

describe('leader jobs and schedules (3 processes)', () => {
  let cluster: Cluster;
  afterEach(async () => {
    await cluster?.stop();
  });

  test('a job runs on the leader only and moves with leadership: kill -9, then a transfer', async () => {
    cluster = await Cluster.create(3, timing, fixtures.store);
    let leader = await cluster.leader();
    await waitFor('the job on the leader', () => running(leader));
    await waitFor(
      'ticks',
      async () => ((await counts(leader)).get(`tick-${leader.spec.id}`)?.n ?? 0) >= 5,
    );
    for (const n of cluster.running()) expect(running(n)).toBe(n === leader);

    // kill -9: the job starts on the new leader, and only there.
    const dead = leader;
    await dead.kill();
    leader = await cluster.leader(15_000, [dead.spec.id]);
    await waitFor('the job on the new leader', () => running(leader));
    await waitFor(
      'its ticks',
      async () => ((await counts(leader)).get(`tick-${leader.spec.id}`)?.n ?? 0) >= 3,
    );
    for (const n of cluster.running()) expect(running(n)).toBe(n === leader);

    // A transfer: the old leader's job is aborted, the target's starts.
    const target = cluster.others(leader)[0]!;
    await leader.call('transfer', { id: target.spec.id });
    await waitFor('the job to move', () => running(target) && !running(leader));
    expect(jobEvents(leader).at(-1)).toBe('abort');
    const before = (await counts(target)).get(`tick-${leader.spec.id}`)?.n ?? 0;
    await waitFor(
      'the new leader ticking',
      async () => ((await counts(target)).get(`tick-${target.spec.id}`)?.n ?? 0) >= 3,
    );
    // The old leader's ticks stopped with its job (nothing proposed for it after the abort).
    expect((await counts(target)).get(`tick-${leader.spec.id}`)?.n ?? 0).toBe(before);
  });

  test('scheduled commands fire once each through a kill -9 of the leader; a recurring one never twice for a due time', async () => {
    cluster = await Cluster.create(3, { ...timing, job: false }, fixtures.store);
    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0]!;
    const now = Date.now();
    // One-shots spread over the next 1.5 s, scheduled through a follower (forwarded).
    for (let i = 0; i < 6; i++) {
      const r = await follower.call<Outcome<string>>('schedule', {
        name: 'count',
        args: { key: `once-${i}` },
        at: now + 300 + i * 250,
        id: `once-${i}`,
      });
      expect(r.ok).toBe(`once-${i}`);
    }
    const rec = await follower.call<Outcome<string>>('schedule', {
      name: 'count',
      args: { key: 'every' },
      at: now + 100,
      every: 100,
    });
    expect(typeof rec.ok).toBe('string');
    const bad = await follower.call<Outcome<string>>('schedule', {
      name: 'nope',
      args: {},
      at: now,
    });
    expect(bad.error?.code).toBe('PREVAIL_UNKNOWN_COMMAND');
    // Kill the leader in the middle of it.
    await new Promise((r) => setTimeout(r, 700));
    await leader.kill();
    const next = await cluster.leader(15_000, [leader.spec.id]);
    await waitFor(
      'every one-shot fired',
      async () => {
        const c = await counts(next);
        return [0, 1, 2, 3, 4, 5].every((i) => c.has(`once-${i}`));
      },
      20_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 500)); // any duplicate would have had time to land
    const c = await counts(next);
    for (let i = 0; i < 6; i++) {
      expect(c.get(`once-${i}`)).toMatchObject({ n: 1, dues: [now + 300 + i * 250] });
    }
    const every = c.get('every')!;
    expect(every.n).toBeGreaterThan(3);
    expect(new Set(every.dues).size).toBe(every.dues.length); // no due time fired twice
    expect((await next.call<{ id: string }[]>('schedules')).map((s) => s.id)).toEqual([rec.ok]); // one-shots are gone
    const un = await next.call<Outcome<boolean>>('unschedule', { id: rec.ok });
    expect(un.ok).toBe(true);
    expect(await next.call('schedules')).toEqual([]);
  });

  test('a schedule due while every node is down fires once, late, after a full restart', async () => {
    cluster = await Cluster.create(3, { ...timing, job: false }, fixtures.store);
    const leader = await cluster.leader();
    const at = Date.now() + 1500;
    expect(
      (
        await leader.call<Outcome<string>>('schedule', {
          name: 'count',
          args: { key: 'late' },
          at,
          id: 'late',
        })
      ).ok,
    ).toBe('late');
    for (const n of cluster.running()) await n.call('close');
    await Promise.all([...cluster.nodes.values()].map((n) => n.waitExit(10_000)));
    await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now()) + 200)); // it falls due while all are down
    await cluster.startAll();
    const next = await cluster.leader(15_000);
    await waitFor('the late fire', async () => (await counts(next)).has('late'), 20_000, 100);
    await new Promise((r) => setTimeout(r, 500));
    for (const n of cluster.running()) {
      await waitFor(
        `node ${n.spec.id} to have it`,
        async () => (await n.call<Status>('status')).appliedIndex > 0,
      );
      expect((await counts(n)).get('late')).toMatchObject({ n: 1, dues: [at] });
    }
  });
});

test('a job that throws is reported and restarted with backoff; stop() ends it; onLeader checks its argument', async () => {
  const dir = tempDir();
  const schema = defineSchema({
    collections: { x: collection<{ v: number }>()({}) },
    commands: { noop: () => 0 },
  });
  const store = await open({ schema, dataDir: dir });
  try {
    const errors: { name: string; attempt: number }[] = [];
    store.on('jobError', (e: { name: string; attempt: number }) => errors.push(e));
    let runs = 0;
    const handle = store.onLeader(
      async function flaky() {
        runs++;
        throw new Error(`failure ${runs}`);
      },
      { minBackoffMs: 5, maxBackoffMs: 20 },
    );
    await waitFor('three failures', () => errors.length >= 3);
    expect(errors.slice(0, 3).map((e) => [e.name, e.attempt])).toEqual([
      ['flaky', 1],
      ['flaky', 2],
      ['flaky', 3],
    ]);
    await handle.stop();
    const after = runs;
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(after);
    expect(() => store.onLeader('not a function' as never)).toThrow(
      expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' }),
    );
    expect(() => defineSchema({ collections: {}, commands: { 'prevail:x': () => 0 } })).toThrow(
      expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' }),
    );
    await expect(store.schedule('noop', {}, Number.NaN)).rejects.toMatchObject({
      code: 'PREVAIL_INVALID_ARGUMENT',
    });
    await expect(store.schedule('noop', {}, Date.now(), { every: 0 })).rejects.toMatchObject({
      code: 'PREVAIL_INVALID_ARGUMENT',
    });
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// diagnostics_channel events, store.metrics() and the prom-client bridge, on a real single node.
import diagnostics_channel from 'node:diagnostics_channel';
import { rmSync } from 'node:fs';

import * as promClient from 'prom-client';

import { registerPrometheus, type PromClientLike } from '../../../lib/metrics.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import { tempDir } from '../../helpers/cluster.js';

const schema = defineSchema({
  collections: { notes: collection<{ text: string }>()({}) },
  commands: {
    add(s, a: { text: string }) {
      return s.notes.insert({ text: a.text }).id;
    },
    // Busy for a while (deterministically): the slow-apply report must name it.
    slow(_s, a: { ms: number }) {
      const until = performance.now() + a.ms;
      let n = 0;
      while (performance.now() < until) n++;
      return n > 0;
    },
    fail() {
      throw new Error('no');
    },
  },
});

function collect(name: string): { events: any[]; stop: () => void } {
  const events: any[] = [];
  const fn = (msg: unknown) => events.push(msg);
  diagnostics_channel.subscribe(name, fn);
  return { events, stop: () => diagnostics_channel.unsubscribe(name, fn) };
}

test('role, slow-apply and snapshot events; metrics; a prom-client registry', async () => {
  const dir = tempDir();
  const role = collect('prevail:role');
  const slow = collect('prevail:slow-apply');
  const snap = collect('prevail:snapshot');
  const store = await open({ schema, dataDir: dir, slowApplyMs: 20 });
  try {
    const registry = new promClient.Registry();
    registerPrometheus(store, promClient as unknown as PromClientLike, { registry });

    for (let i = 0; i < 10; i++) await store.propose('add', { text: `n${i}` });
    await store.propose('slow', { ms: 30 });
    await expect(store.propose('fail', {})).rejects.toThrow('no');
    await store.read();
    await store.captureNow();

    expect(role.events).toContainEqual(expect.objectContaining({ id: 1, role: 'leader' }));
    // Only 'slow' is slow by construction; on a loaded machine any apply may pass 20 ms too.
    const slowOnes = slow.events.filter((e) => e.command === 'slow');
    expect(slowOnes).toHaveLength(1);
    expect(slowOnes[0]).toMatchObject({ id: 1, command: 'slow' });
    expect(slowOnes[0].durationMs).toBeGreaterThanOrEqual(20);
    expect(snap.events).toContainEqual(expect.objectContaining({ id: 1, kind: 'capture' }));

    const m = store.metrics();
    expect(m).toMatchObject({
      proposals: 12,
      proposalsFailed: 1,
      forwarded: 0,
      reads: 1,
      role: 'leader',
      lag: 0,
    });
    expect(m.applied).toBeGreaterThanOrEqual(12);
    expect(m.proposeMs.count).toBe(11);
    expect(m.applyMs.count).toBe(m.applied);
    expect(m.proposeMs.buckets.at(-1)!.count).toBe(11); // cumulative: the last bucket holds them all
    expect(m.snapshotMs.count).toBeGreaterThanOrEqual(1);

    const text = await registry.metrics();
    expect(text).toContain('prevail_proposals_total{node="1"} 12');
    expect(text).toContain('prevail_proposals_failed_total{node="1"} 1');
    expect(text).toContain('prevail_is_leader{node="1"} 1');
    expect(text).toContain('prevail_lag_entries{node="1"} 0');
    expect(text).toMatch(/prevail_apply_duration_seconds_count\{node="1"\} \d+/);
    expect(text).toContain('prevail_propose_duration_seconds_count{node="1"} 11'); // the failed one isn't timed
    await store.propose('add', { text: 'after' });
    expect(await registry.metrics()).toContain(
      'prevail_propose_duration_seconds_bucket{le="+Inf",node="1"} 12',
    );
    expect(await registry.metrics()).toContain('prevail_proposals_total{node="1"} 13');
  } finally {
    role.stop();
    slow.stop();
    snap.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

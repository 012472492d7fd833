// Handlers that are not synchronous, and entries a replica can't apply (an unknown command):
// the command fails atomically and the same on every replay; a replica that can't apply an
// entry rejects open() or, once open, stops and says so in an 'error' event (and with no
// listener, ends its process with the coded error). Real processes, disk and TCP.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { Packr } from 'msgpackr';

import { RaftNode } from '../../../lib/engine/raft-node.js';
import type { Fsm } from '../../../lib/engine/types.js';
import { PrevailError } from '../../../lib/core/errors.js';
import { packrOptions } from '../../../lib/format/entry.js';
import { collection, defineSchema, open } from '../../../lib/store.js';
import {
  Cluster,
  ServeProcess,
  fixtures,
  freePorts,
  tempDir,
  waitFor,
  type NodeProcess,
} from '../../helpers/cluster.js';

const dist = join(process.cwd(), 'dist', 'index.js');

/** Runs an ES module script in a child node process (bounded; killed on timeout). */
function runScript(script: string, timeoutMs = 30_000) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: process.cwd(),
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

interface Item {
  v: number;
  late?: boolean;
}

/** Collects this process's unhandled rejections until stop(). */
function watchUnhandled(): { unhandled: unknown[]; stop: () => void } {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  return { unhandled, stop: () => process.off('unhandledRejection', onUnhandled) };
}

describe('a handler must be synchronous (PREVAIL_ASYNC_HANDLER)', () => {
  test('defineSchema and open() refuse async handlers and async generator handlers', async () => {
    const collections = { items: collection<Item>()() };
    expect(() => defineSchema({ collections, commands: { a: (async () => 1) as never } })).toThrow(
      expect.objectContaining({ code: 'PREVAIL_ASYNC_HANDLER' }),
    );
    expect(() =>
      defineSchema({
        collections,
        commands: {
          g: async function* gen() {
            yield 1;
          } as never,
        },
      }),
    ).toThrow(expect.objectContaining({ code: 'PREVAIL_ASYNC_HANDLER' }));
    // A schema not made by defineSchema is checked by open(), before anything is on disk.
    const dir = tempDir('prevail-async-');
    try {
      await expect(
        open({ schema: { collections, commands: { a: async () => 1 } } as never, dataDir: dir }),
      ).rejects.toMatchObject({ code: 'PREVAIL_ASYNC_HANDLER' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a handler returning a promise fails atomically, with no unhandled rejection, and the data dir reopens', async () => {
    const dir = tempDir('prevail-async-');
    const { unhandled, stop: stopWatching } = watchUnhandled();
    const schema = defineSchema({
      collections: { items: collection<Item>()() },
      commands: {
        put: (s, a: { v: number }) => s.items.insert(a).id,
        // Not `async`, so only seen when it runs: changes, then hands back promises.
        rejected: ((s: any, a: { v: number }) => {
          s.items.insert(a);
          return Promise.reject(new Error('x'));
        }) as never,
        resolved: ((s: any, a: { v: number }) => {
          s.items.insert(a);
          return Promise.resolve(1);
        }) as never,
        // Goes on after an await: that write happens outside the command and is refused.
        late: ((s: any, a: { v: number }) => {
          s.items.insert(a);
          return (async () => {
            await null;
            s.items.insert({ v: -1, late: true });
          })();
        }) as never,
      },
    });
    try {
      const store = await open({ schema, dataDir: dir });
      await store.propose('put', { v: 1 });
      for (const name of ['rejected', 'resolved', 'late'] as const) {
        await expect(store.propose(name, { v: 2 } as never)).rejects.toMatchObject({
          code: 'PREVAIL_ASYNC_HANDLER',
        });
      }
      await store.propose('put', { v: 3 });
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      expect([...store.view.items.values()].map((o) => o.v)).toEqual([1, 3]);
      expect(unhandled).toEqual([]);
      const hash = store.stateHash();
      await store.close();

      // Replaying those entries (in a process of its own: an unhandled rejection there would
      // end it) gives the same outcome: the data dir opens, in the same state.
      const r = runScript(`
        import { open, defineSchema, collection } from ${JSON.stringify(dist)};
        const schema = defineSchema({ collections: { items: collection()() }, commands: {
          put: (s, a) => s.items.insert(a).id,
          rejected: (s, a) => { s.items.insert(a); return Promise.reject(new Error('x')); },
          resolved: (s, a) => { s.items.insert(a); return Promise.resolve(1); },
          late: (s, a) => { s.items.insert(a); return (async () => { await null; s.items.insert({ v: -1, late: true }); })(); },
        } });
        const store = await open({ schema, dataDir: ${JSON.stringify(dir)} });
        await new Promise((r) => setTimeout(r, 100));
        console.log(JSON.stringify({ values: [...store.view.items.values()].map((o) => o.v), hash: store.stateHash() }));
        await store.close();
      `);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ values: [1, 3], hash });
    } finally {
      stopWatching();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('a handler calling back into the store (propose, read, schedule…) fails atomically with PREVAIL_REENTRANT; replay opens the data dir', async () => {
  const dir = tempDir('prevail-reentrant-');
  const { unhandled, stop: stopWatching } = watchUnhandled();
  // The handlers drop the promise they start: before the guard, its rejection was unhandled,
  // and on a replay in a process of its own that ended the process.
  const script = (dataDir: string) => `
    import { open, defineSchema, collection } from ${JSON.stringify(dist)};
    let store;
    const schema = defineSchema({ collections: { items: collection()() }, commands: {
      put: (s, a) => s.items.insert(a).id,
      chain: (s, a) => { s.items.insert(a); void store.propose('put', { v: 99 }); return 1; },
      reads: (s, a) => { s.items.insert(a); void store.read(); return 1; },
      plans: (s, a) => { s.items.insert(a); void store.schedule('put', { v: 98 }, Date.now() + 1e9); return 1; },
    } });
    store = await open({ schema, dataDir: ${JSON.stringify(dataDir)} });
    const codes = [];
    await store.propose('put', { v: 1 });
    for (const name of ['chain', 'reads', 'plans']) codes.push(await store.propose(name, { v: 2 }).then(() => 'ok', (e) => e.code));
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify({ codes, values: [...store.view.items.values()].map((o) => o.v), schedules: store.schedules().length }));
    await store.close();
  `;
  try {
    const first = runScript(script(dir));
    expect(first.stderr).toBe('');
    expect(JSON.parse(first.stdout)).toEqual({
      codes: ['PREVAIL_REENTRANT', 'PREVAIL_REENTRANT', 'PREVAIL_REENTRANT'],
      values: [1],
      schedules: 0,
    });
    const again = runScript(script(dir)); // replays the log above, then does it all again
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ values: [1, 1], schedules: 0 });
    expect(unhandled).toEqual([]);
  } finally {
    stopWatching();
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('an entry this replica cannot apply', () => {
  const collections = { items: collection<Item>()() };
  const newer = defineSchema({
    collections,
    commands: {
      put: (s, a: { v: number }) => s.items.insert(a).id,
      extra: (s, a: { v: number }) => s.items.insert(a).id,
    },
  });
  const older = defineSchema({
    collections,
    commands: { put: (s, a: { v: number }) => s.items.insert(a).id },
  });

  test('during open(): open() rejects with the code (catchable), and the data dir opens again with code that defines it', async () => {
    const dir = tempDir('prevail-fatal-');
    try {
      const store = await open({ schema: newer, dataDir: dir });
      await store.propose('put', { v: 1 });
      await store.propose('extra', { v: 2 });
      await store.propose('put', { v: 3 });
      await store.close();

      await expect(open({ schema: older, dataDir: dir })).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
        index: 4, // after the configuration, the node's schema-support record and put
      });
      // Again (a supervisor's restart): the same coded rejection, nothing changed on disk.
      await expect(open({ schema: older, dataDir: dir })).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
        index: 4,
      });

      const fixed = await open({ schema: newer, dataDir: dir });
      expect([...fixed.view.items.values()].map((o) => o.v)).toEqual([1, 2, 3]);
      await fixed.propose('put', { v: 4 });
      await fixed.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a running single node stops: pending work rejects with the code, then the store emits error', async () => {
    const dir = tempDir('prevail-fatal-');
    try {
      const store = await open({ schema: older, dataDir: dir });
      await store.propose('put', { v: 1 });
      const errors: { code: string; index?: number }[] = [];
      store.on('error', (err) => errors.push(err));
      // Pending work: a read waiting for an index far ahead.
      const read = store.read({ consistency: 'stale', minIndex: 1_000_000, timeoutMs: 30_000 });
      read.catch(() => undefined);
      // An entry naming a command this code does not define (as newer code on another node would write).
      const entry = new Packr(packrOptions).pack([1, 'extra', { v: 2 }, Date.now()]);
      await expect(store.node.propose(entry)).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
        mayHaveApplied: true,
      });
      await expect(read).rejects.toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND' });
      await waitFor('the error event', () => errors.length > 0 || undefined);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND' });
      expect(store.node.failure).toBe(errors[0]);
      expect(store.node.status().role).toBe('closed');
      await expect(store.propose('put', { v: 3 })).rejects.toMatchObject({
        code: 'PREVAIL_CLOSED',
      });
      await store.close();
      await expect(open({ schema: older, dataDir: dir })).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
      });
      const fixed = await open({ schema: newer, dataDir: dir });
      expect([...fixed.view.items.values()].map((o) => o.v)).toEqual([1, 2]);
      await fixed.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a handler's own error fails its command, whatever its fields (fatal: true included), also on replay", async () => {
    const dir = tempDir('prevail-fatal-');
    const throwing = defineSchema({
      collections,
      commands: {
        put: (s, a: { v: number }) => s.items.insert(a).id,
        refuse: (s, a: { v: number }) => {
          s.items.insert(a);
          throw Object.assign(new Error('refused'), { code: 'APP_REFUSED', fatal: true });
        },
      },
    });
    try {
      const store = await open({ schema: throwing, dataDir: dir });
      await expect(store.propose('refuse', { v: 1 })).rejects.toMatchObject({
        message: 'refused',
        code: 'APP_REFUSED',
      });
      await store.propose('put', { v: 2 });
      expect(store.node.failure).toBeNull();
      expect([...store.view.items.values()].map((o) => o.v)).toEqual([2]);
      await store.close();
      const again = await open({ schema: throwing, dataDir: dir });
      expect([...again.view.items.values()].map((o) => o.v)).toEqual([2]);
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('with no error listener, the process exits non-zero with the coded error', () => {
    const dir = tempDir('prevail-fatal-');
    try {
      const r = runScript(`
        import { open, defineSchema, collection } from ${JSON.stringify(dist)};
        import { packrOptions } from ${JSON.stringify(join(process.cwd(), 'dist', 'format', 'entry.js'))};
        import { Packr } from 'msgpackr';
        const schema = defineSchema({ collections: { c: collection()() }, commands: { ok: () => 1 } });
        const store = await open({ schema, dataDir: ${JSON.stringify(dir)} });
        await store.propose('ok', {});
        store.node.propose(new Packr(packrOptions).pack([1, 'nope', {}, Date.now()])).catch(() => console.log('REJECTED'));
        setTimeout(() => console.log('NOT REACHED'), 20_000);
      `);
      expect(r.signal).toBeNull();
      expect(r.status).not.toBe(0);
      expect(r.stdout).toContain('REJECTED');
      expect(r.stdout).not.toContain('NOT REACHED');
      expect(r.stderr).toContain('PREVAIL_UNKNOWN_COMMAND');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('RaftNode: an fsm.apply error marked fatal', () => {
  // Applies UTF-8 commands; 'bad' can't be applied (the error the store raises for an unknown command).
  function fsm(applied: string[]): Fsm<string> {
    return {
      apply(command, { index }) {
        const text = Buffer.from(command).toString();
        if (text === 'bad')
          throw Object.assign(
            new PrevailError('PREVAIL_UNKNOWN_COMMAND', `entry ${index} is bad`),
            { fatal: true },
          );
        applied.push(text);
        return text;
      },
      snapshot: () => Buffer.from(JSON.stringify(applied)),
      restore: (data) => {
        applied.splice(
          0,
          applied.length,
          ...(JSON.parse(Buffer.from(data).toString()) as string[]),
        );
      },
    };
  }

  test('stops the running node (pending requests reject, then error), and fails start() on replay', async () => {
    const dir = tempDir('prevail-fatal-node-');
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    try {
      const applied: string[] = [];
      const node = await RaftNode.start({ id: 1, address, dataDir: dir, fsm: fsm(applied) });
      await waitFor('leadership', () => node.isLeader || undefined);
      await node.propose(Buffer.from('a'));
      const errors: PrevailError[] = [];
      node.on('error', (err: PrevailError) => errors.push(err));
      const bad = node.proposeWithIndex(Buffer.from('bad'));
      const after = node.proposeWithIndex(Buffer.from('c'));
      await expect(bad).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
        index: 3,
        mayHaveApplied: true,
      });
      await expect(after).rejects.toMatchObject({
        code: 'PREVAIL_UNKNOWN_COMMAND',
        mayHaveApplied: true,
      });
      await waitFor('the error event', () => errors[0]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND', index: 3 });
      expect(node.failure).toBe(errors[0]);
      expect(node.status().role).toBe('closed');
      expect(applied).toEqual(['a']); // nothing after the failed entry reached the state machine
      await expect(node.propose(Buffer.from('d'))).rejects.toMatchObject({
        code: 'PREVAIL_CLOSED',
      });
      await node.close();

      // Replaying the log at start meets the entry again: start() rejects, the dir is unlocked.
      const again: string[] = [];
      await expect(
        RaftNode.start({ id: 1, address, dataDir: dir, fsm: fsm(again) }),
      ).rejects.toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND', index: 3 });
      expect(again).toEqual(['a']);
      await expect(
        RaftNode.start({ id: 1, address, dataDir: dir, fsm: fsm([]) }),
      ).rejects.toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND', index: 3 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a follower whose code lacks a command the leader has (3 nodes)', () => {
  let cluster: Cluster;
  const timing = { electionTimeoutMs: 300, heartbeatMs: 50 };

  afterEach(async () => {
    await cluster?.stop();
  });

  /** Waits until every running node's store has applied `index`. */
  async function applied(index: number): Promise<void> {
    await waitFor(
      `every node to apply ${index}`,
      async () => {
        const hs = await Promise.all(
          cluster.running().map((n) => n.call<{ applied: number }>('stateHash', undefined, 2000)),
        );
        return hs.every((h) => h.applied >= index) || undefined;
      },
      15_000,
    );
  }

  test('stops with an error event (pending work rejected); without a listener it exits non-zero; fixed code catches up', async () => {
    cluster = new Cluster(timing, fixtures.store);
    const ports = await freePorts(3);
    cluster.specs = ports.map((port, i) => ({
      id: i + 1,
      address: `127.0.0.1:${port}`,
      dataDir: join(cluster.root, `n${i + 1}`),
    }));
    // Node 1 runs the newer code; node 2 the older, listening for 'error'; node 3 the older, not listening.
    await Promise.all([
      cluster.start(1),
      cluster.start(2, { omit: ['extra'], errors: true }),
      cluster.start(3, { omit: ['extra'] }, true),
    ]);
    // Only a leader running the newer code accepts the new command.
    await waitFor(
      'node 1 to lead',
      async () => {
        const l = await cluster.leader();
        if (l.spec.id === 1) return l;
        await l.call('transfer', { id: 1 }).catch(() => undefined);
        return undefined;
      },
      20_000,
      200,
    );
    const n1 = cluster.node(1);
    const n2 = cluster.node(2);
    const n3: NodeProcess = cluster.node(3);
    const first = await n1.call<{ ok: { index: number } }>('propose', {
      name: 'put',
      args: { key: 'a', value: '1' },
    });
    await applied(first.ok.index);

    // Pending on node 2: a read waiting for an index far ahead.
    const read = n2.call<{ error?: { code: string } }>(
      'read',
      { key: 'a', consistency: 'stale', minIndex: 1_000_000, timeoutMs: 30_000 },
      40_000,
    );
    const extra = await n1.call<{ ok: { index: number } }>('propose', {
      name: 'extra',
      args: { key: 'e' },
    });
    expect(extra.ok.index).toBeGreaterThan(first.ok.index);

    expect((await read).error).toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND' });
    const event = await waitFor('node 2 to report the error', () =>
      n2.events.find((e) => e.event === 'error'),
    );
    expect(event).toMatchObject({
      code: 'PREVAIL_UNKNOWN_COMMAND',
      index: extra.ok.index,
      role: 'closed',
    });
    expect(n2.alive).toBe(true); // it listened: its process decides
    const after = await n2.call<{ error?: { code: string } }>('propose', {
      name: 'put',
      args: { key: 'b', value: '2' },
    });
    expect(after.error).toMatchObject({ code: 'PREVAIL_CLOSED' });

    expect(await n3.waitExit(15_000)).toBe(1);
    expect(n3.output).toContain('PREVAIL_UNKNOWN_COMMAND');
    expect(n3.output).toContain(`entry ${extra.ok.index}`);

    // Fixed code on both: they open their data dirs and catch up to the same state.
    await n2.kill();
    await Promise.all([cluster.start(2), cluster.start(3)]);
    const next = await waitFor(
      'a write after the restart',
      async () => {
        const r = await (
          await cluster.leader()
        ).call<{ ok?: { index: number } }>('propose', {
          name: 'put',
          args: { key: 'c', value: '3' },
        });
        return r.ok;
      },
      15_000,
    );
    await applied(next.index);
    await waitFor(
      'the same state on every node',
      async () => {
        const hs = await Promise.all(
          cluster.running().map((n) => n.call<{ hash: string; applied: number }>('stateHash')),
        );
        return (
          (hs.length === 3 &&
            hs.every((h) => h.hash === hs[0]!.hash && h.applied === hs[0]!.applied)) ||
          undefined
        );
      },
      15_000,
    );
    const keys = await cluster.node(3).call<[string, string][]>('keys');
    expect(keys.map(([k]) => k).sort()).toEqual(['a', 'c', 'e']);
  });
});

describe('a follower that cannot restore the snapshot its leader sends (3 nodes)', () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  test('stops with an error event (PREVAIL_SNAPSHOT_UNREADABLE) instead of crashing; newer code opens its data dir', async () => {
    const options = {
      electionTimeoutMs: 300,
      heartbeatMs: 50,
      snapshotThreshold: 64,
      snapshotTrailing: 16,
      captureEvery: 32,
    };
    cluster = new Cluster(options, fixtures.store);
    const ports = await freePorts(3);
    cluster.specs = ports.map((port, i) => ({
      id: i + 1,
      address: `127.0.0.1:${port}`,
      dataDir: join(cluster!.root, `n${i + 1}`),
    }));
    // Nodes 1 and 2 run code with a second collection; node 3, the older code without it,
    // starts only once the leader's log no longer holds the start: it gets a snapshot.
    await Promise.all([cluster.start(1, { more: true }), cluster.start(2, { more: true })]);
    const leader = await cluster.leader(20_000);
    const writes = await leader.call<{ ok?: unknown }[]>(
      'writeMany',
      { prefix: 'k', count: 300, concurrency: 8 },
      60_000,
    );
    expect(writes.filter((w) => w.ok).length).toBeGreaterThan(200);
    // A snapshot on the leader now (not an automatic one whenever it comes): it truncates its
    // log to the last snapshotTrailing entries, so node 3 can only catch up from a snapshot.
    await leader.call('snapshot');
    const n3 = await cluster.start(3, { errors: true });
    const event = await waitFor(
      'node 3 to report the error',
      () => n3.events.find((e) => e.event === 'error'),
      20_000,
    );
    expect(event).toMatchObject({ code: 'PREVAIL_SNAPSHOT_UNREADABLE', role: 'closed' });
    expect(String(event.message)).toContain('more');
    expect(n3.alive).toBe(true);
    await n3.kill();

    // Newer code on node 3: it opens and catches up.
    await cluster.start(3, { more: true });
    const last = await waitFor(
      'a write',
      async () =>
        (
          await (
            await cluster!.leader()
          ).call<{ ok?: { index: number } }>('propose', {
            name: 'put',
            args: { key: 'z', value: '1' },
          })
        ).ok,
      15_000,
    );
    await waitFor(
      'the same state on every node',
      async () => {
        const hs = await Promise.all(
          cluster!.running().map((n) => n.call<{ hash: string; applied: number }>('stateHash')),
        );
        return (
          (hs.length === 3 &&
            hs.every(
              (h) =>
                h.applied >= last.index && h.hash === hs[0]!.hash && h.applied === hs[0]!.applied,
            )) ||
          undefined
        );
      },
      20_000,
    );
  });
});

describe('prevail serve on an entry it cannot apply', () => {
  let cluster: Cluster | undefined;
  let serve: ServeProcess | undefined;

  afterEach(async () => {
    await serve?.kill();
    await cluster?.stop();
    serve = undefined;
    cluster = undefined;
  });

  test('while running (a leader with newer code wrote it): it says why and exits 1', async () => {
    // Nodes 1 and 2 run the store fixture (its schema: the kv collection, more commands than
    // the service's); node 3 is `prevail serve`, whose schema lacks `extra`.
    cluster = new Cluster(
      { electionTimeoutMs: 300, heartbeatMs: 50, insecure: true },
      fixtures.store,
    );
    const ports = await freePorts(4);
    cluster.specs = [1, 2, 3].map((id, i) => ({
      id,
      address: `127.0.0.1:${ports[i]}`,
      dataDir: join(cluster!.root, `n${id}`),
    }));
    const flag = cluster.specs.map((s) => `${s.id}=${s.address}`).join(',');
    const spec3 = { ...cluster.specs[2]!, http: `127.0.0.1:${ports[3]}` };
    serve = new ServeProcess(spec3, [
      '--insecure',
      '--cluster',
      flag,
      '--election-timeout',
      '300',
      '--heartbeat',
      '50',
    ]);
    await Promise.all([cluster.start(1), cluster.start(2), serve.ready()]);
    // Only a leader running the newer code accepts the new command.
    const leader = await waitFor(
      'a leader with the newer code',
      async () => {
        const s = await serve!.request('GET', '/status', undefined, 2000);
        const id = s.body?.leader?.id;
        if (id === 3)
          await serve!.request('POST', '/admin/transfer', { id: 1 }, 5000).catch(() => undefined);
        return id === 1 || id === 2 ? cluster!.node(id) : undefined;
      },
      20_000,
      200,
    );
    const w = await leader.call<{ ok?: { index: number } }>('propose', {
      name: 'extra',
      args: { key: 'e' },
    });
    expect(w.ok?.index).toBeGreaterThan(0);
    const exit = await serve.waitExit(20_000);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(serve.output).toMatch(
      /prevail serve: node 3 stopped: PREVAIL_UNKNOWN_COMMAND: entry \d+ names command "extra"/,
    );
  });

  test('at open (its own log holds it): it says why and exits 1, every time', async () => {
    const dir = tempDir('prevail-serve-fatal-');
    const [raft, http] = await freePorts(2);
    try {
      const { kvSchema } = await import('../../../lib/service/kv-schema.js');
      const newer = defineSchema({
        collections: kvSchema.collections,
        commands: {
          ...kvSchema.commands,
          extra: (s, a: { key: string }) => s.kv.insert({ key: a.key, value: 'extra' }).id,
        },
      });
      const store = await open({ schema: newer, dataDir: dir, address: `127.0.0.1:${raft}` });
      await store.propose('put', { key: 'a', value: '1' });
      await store.propose('extra', { key: 'e' });
      await store.close();
      for (let attempt = 0; attempt < 2; attempt++) {
        serve = new ServeProcess(
          { id: 1, address: `127.0.0.1:${raft}`, http: `127.0.0.1:${http}`, dataDir: dir },
          [],
        );
        const exit = await serve.waitExit(20_000);
        expect(exit).toEqual({ code: 1, signal: null });
        expect(serve.output).toMatch(
          /prevail serve: PREVAIL_UNKNOWN_COMMAND: entry 4 names command "extra"/,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

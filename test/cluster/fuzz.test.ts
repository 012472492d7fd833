// Bad input from the network and from callers, for a bounded time: random bytes, cut-off
// handshakes and half-open connections on the raft port and on the peer channel; arguments
// that can't be encoded. Every one gets a coded error or a closed connection; the cluster
// goes on, replicas agree, nothing crashes.
import { connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

import { parseAddress } from '../../lib/core/address.js';
import { PeerClient } from '../../lib/cluster/peer-channel.js';
import { collection, defineSchema, open } from '../../lib/store.js';
import {
  Cluster,
  fixtures,
  tempDir,
  waitFor,
  type NodeProcess,
  type Status,
} from '../helpers/cluster.js';

const FUZZ_MS = Number(process.env.FUZZ_MS ?? 3000);

let seed = 99;
const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
const randomBytes = (n: number) =>
  Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** One connection's worth of abuse; resolves when the peer closed it or after a while. */
function abuse(address: string, bytes: Buffer, holdMs: number): Promise<'closed' | 'held'> {
  return new Promise((resolve) => {
    const socket: Socket = connect(parseAddress(address));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('held');
    }, holdMs);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.on('connect', () => {
      if (bytes.length) socket.write(bytes);
    });
  });
}

// Raft handshake shapes: [protocol u64][server id u64][address length u64][address…], then messages.
function raftGarbage(kind: number): Buffer {
  switch (kind % 6) {
    case 0:
      return randomBytes(1 + Math.floor(random() * 2048)); // noise
    case 1:
      return Buffer.concat([u64(1), u64(99)]); // handshake cut off
    case 2:
      return Buffer.concat([u64(7), u64(2), u64(9), Buffer.from('127.0.0.1')]); // unknown protocol
    case 3:
      return Buffer.concat([u64(1), u64(2), u64(2 ** 40), randomBytes(64)]); // absurd address length
    case 4:
      return Buffer.concat([
        u64(1),
        u64(2),
        u64(14),
        Buffer.from('127.0.0.1:9999'),
        randomBytes(512),
      ]); // then noise
    default:
      return Buffer.alloc(0); // half-open, silent
  }
}

// Peer channel frames: [u32 BE length][msgpack]: noise, a huge length, a valid length with junk.
function channelGarbage(kind: number): Buffer {
  switch (kind % 4) {
    case 0:
      return randomBytes(1 + Math.floor(random() * 1024));
    case 1:
      return Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    case 2: {
      const b = randomBytes(40);
      b.writeUInt32BE(36, 0);
      return b;
    }
    default:
      return Buffer.alloc(0);
  }
}

// With TLS the garbage never gets past the handshake; `insecure` lets it reach the engine's
// decoder and the channel's frame reader.
describe.each([
  ['mutual TLS', {}],
  ['insecure', { insecure: true }],
])('network fuzz on a 3-process store cluster (%s)', (_mode, security) => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  test(`random bytes, cut handshakes and half-open connections on the raft port and the peer channel for ${FUZZ_MS} ms`, async () => {
    cluster = await Cluster.create(
      3,
      { electionTimeoutMs: 1000, heartbeatMs: 100, ...security },
      fixtures.store,
    );
    const leader = await cluster.leader();
    const victim = cluster.running().find((n) => n !== leader)!;
    const channel = (victim.events.find((e) => e.event === 'ready') as { channel?: string })
      .channel!;
    const targets = [victim.spec.address, leader.spec.address];
    let writes = 0;
    const deadline = Date.now() + FUZZ_MS;
    const outcomes = { closed: 0, held: 0 };
    const writer = (async () => {
      while (Date.now() < deadline) {
        const r = await victim.call<{ ok?: unknown; error?: unknown }>('propose', {
          name: 'put',
          args: { key: `w${writes}`, value: 'v' },
        });
        expect(r.error).toBeUndefined();
        writes++;
      }
    })();
    let k = 0;
    while (Date.now() < deadline) {
      const batch: Promise<'closed' | 'held'>[] = [];
      for (let j = 0; j < 20; j++, k++) {
        batch.push(abuse(targets[k % 2]!, raftGarbage(k), 300));
        batch.push(abuse(channel, channelGarbage(k), 300));
      }
      for (const r of await Promise.all(batch)) outcomes[r]++;
    }
    await writer;
    // Still one cluster: every node alive, same leader, writes applied everywhere, same state.
    for (const n of cluster.nodes.values()) expect(n.alive).toBe(true);
    expect((await cluster.leader()).spec.id).toBe(leader.spec.id);
    const last = await victim.call<{ ok: { index: number } }>('propose', {
      name: 'put',
      args: { key: 'last', value: 'v' },
    });
    const hashes = await waitFor('replicas to agree', async () => {
      const all = await Promise.all(
        cluster.running().map(async (n: NodeProcess) => {
          const s = await n.call<Status & { effects: { index: number } }>('status');
          return s.appliedIndex >= last.ok.index
            ? (await n.call<{ hash: string }>('stateHash')).hash
            : undefined;
        }),
      );
      return all.every((h) => h !== undefined) ? all : undefined;
    });
    expect(new Set(hashes).size).toBe(1);
    expect(writes).toBeGreaterThan(0);
    expect(outcomes.closed).toBeGreaterThan(0); // garbage got the connection closed
  });
});

test('arguments that cannot travel get a coded error and change nothing', async () => {
  const dir = tempDir();
  const schema = defineSchema({
    collections: { x: collection<{ v: unknown }>()({}) },
    commands: { put: (s, a: { v: unknown }) => s.x.insert({ v: a.v }).id },
  });
  const store = await open({ schema, dataDir: dir });
  try {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(store.propose('put', { v: cyclic })).rejects.toMatchObject({
      code: 'PREVAIL_NOT_PLAIN_DATA',
    });
    await expect(store.propose('put', { v: () => 1 })).rejects.toMatchObject({
      code: 'PREVAIL_NOT_PLAIN_DATA',
    });
    await expect(store.propose('nope' as 'put', { v: 1 })).rejects.toMatchObject({
      code: 'PREVAIL_UNKNOWN_COMMAND',
    });
    await expect(store.propose('prevail:peer' as 'put', { v: 1 })).rejects.toMatchObject({
      code: 'PREVAIL_UNKNOWN_COMMAND',
    });
    expect(store.view.x.size).toBe(0);
    expect(await store.propose('put', { v: 'fine' })).toBe(1);
    // Byte arrays are fine (they can't be frozen, so they are stored as they are).
    const id = await store.propose('put', { v: new Uint8Array([1, 2, 3]) });
    expect([...(store.view.x.get(id)!.v as Uint8Array)]).toEqual([1, 2, 3]);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a peer-channel request can make a store entry only as one, of a kind peers forward, in its shape', async () => {
  const dir = tempDir();
  const schema = defineSchema({
    collections: { x: collection<{ v: unknown }>()({}) },
    commands: { put: (s, a: { v: unknown }) => s.x.insert({ v: a.v }).id },
  });
  const store = await open({ schema, dataDir: dir, insecure: true }); // a channel port of its own
  const client = new PeerClient(store.channelAddress);
  try {
    await waitFor('a single node to lead', () => store.node.isLeader);
    const before = store.node.status().lastIndex;
    // A store request of a kind no peer forwards (peer addresses are announced), or out of
    // shape: refused as 'proposeSystem', and as 'propose' under its old name (an older follower's).
    const refused: [string, unknown][] = [
      ['peer', { id: 9, channel: '127.0.0.1:1' }],
      ['nonsense', { id: 's1' }],
      ['', { id: 's1' }],
      ['schedule', { name: 'put', args: {}, at: 'soon' }],
      ['schedule', { args: {}, at: 0 }],
      ['schedule', { name: 'put', args: {}, at: 0, every: 0 }],
      ['schedule', null],
      ['fire', { id: 's1' }],
      ['unschedule', {}],
    ];
    for (const [kind, data] of refused) {
      await expect(client.request('proposeSystem', { kind, data }, 5000)).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
      const legacy = { name: `prevail:${kind}`, args: data };
      await expect(client.request('propose', legacy, 5000)).rejects.toMatchObject({
        code: 'PREVAIL_INVALID_ARGUMENT',
      });
    }
    // Nor is a store request ever a command of its kind's name.
    await expect(
      client.request('propose', { name: 'schedule', args: { name: 'put', args: {}, at: 0 } }, 5000),
    ).rejects.toMatchObject({ code: 'PREVAIL_UNKNOWN_COMMAND' });
    expect(store.node.status().lastIndex).toBe(before); // nothing was appended
    expect(store.schedules()).toEqual([]);
    // What a follower's schedule() forwards is accepted.
    const r = await client.request(
      'proposeSystem',
      {
        kind: 'schedule',
        data: { id: 'later', name: 'put', args: { v: 1 }, at: Date.now() + 3_600_000 },
      },
      5000,
    );
    expect(r).toMatchObject({ result: 'later' });
    expect(store.schedules().map((s) => s.id)).toEqual(['later']);
    // And what an older follower forwards under the old names (a rolling upgrade), the same way.
    const oldSchedule = { id: 'old', name: 'put', args: { v: 2 }, at: Date.now() + 3_600_000 };
    await client.request('propose', { name: 'prevail:schedule', args: oldSchedule }, 5000);
    expect(store.schedules().map((s) => s.id)).toEqual(['later', 'old']);
    const gone = await client.request(
      'propose',
      { name: 'prevail:unschedule', args: { id: 'old' } },
      5000,
    );
    expect(gone).toMatchObject({ result: true });
    const due = store.schedules()[0]!.at;
    const fired = await client.request(
      'propose',
      { name: 'prevail:fire', args: { id: 'later', due } },
      5000,
    );
    expect(fired).toMatchObject({ result: { fired: true, name: 'put' } });
    expect(store.schedules()).toEqual([]);
    expect(store.view.x.size).toBe(1);
  } finally {
    client.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

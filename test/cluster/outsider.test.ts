// Only members get in (issue 13): a three-process store cluster on mutual TLS, under a steady
// write load, attacked on the leader's and a follower's port by everything that is not a
// member: no certificate, another CA's, a client's, a certificate for a non-member id, replayed
// and spliced TLS records, a member's certificate sending garbage, a member overreaching on the
// peer channel, and a stranger holding connections open. Each attempt must be refused (the
// connection closed); the cluster must not notice: every node up, no term blown up, every
// acknowledged write on every replica at the end, replicas equal.
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

import { PeerClient } from '../../lib/cluster/peer-channel.js';
import { parseAddress } from '../../lib/core/address.js';
import { ALPN_PEER, ALPN_RAFT } from '../../lib/engine/member-transport.js';
import { Cluster, fixtures, waitFor, type NodeProcess, type Status } from '../helpers/cluster.js';
import {
  appendEntries,
  configuration,
  installSnapshot,
  prng,
  requestVote,
} from '../helpers/raft-wire.js';
import { testCa, type TestCa, type TestCert } from '../helpers/test-certs.js';

const timing = { electionTimeoutMs: 1000, heartbeatMs: 100 };
const OUTSIDER = 9; // not a member
const DISRUPT_LEADER = 1; // RequestVote flag: vote even while a leader is heard
// A term no election in this test reaches: one above it means an outsider's term took.
const TERM_CEILING = 1000;

let cluster: Cluster;
let ca: TestCa;
let firstLeader: number;
const acked: string[] = [];
let writing = true;
let writer: Promise<void> | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The client's steady load: one write at a time through each node in turn (followers forward);
// only acknowledged writes are recorded, and a refused one is simply not.
async function writeLoop(): Promise<void> {
  for (let i = 0; writing; i++) {
    const nodes = cluster.running();
    const key = `w${i}`;
    try {
      const r = await nodes[i % nodes.length]!.call<{ ok?: unknown }>(
        'propose',
        { name: 'put', args: { key, value: key }, timeoutMs: 5000 },
        10_000,
      );
      if (r.ok) acked.push(key);
    } catch {
      // a node busy or gone: the end of the test says which
    }
    await sleep(10);
  }
}

beforeAll(async () => {
  cluster = await Cluster.create(3, timing, fixtures.store);
  ca = await cluster.authority();
  firstLeader = (await cluster.leader(20_000)).spec.id;
  writer = writeLoop();
  await waitFor('the first acknowledged write', () => acked.length > 0 || undefined, 20_000);
}, 60_000);

afterAll(async () => {
  writing = false;
  await writer;
  await cluster?.stop();
});

const everyNode = () => cluster.specs.map((s) => cluster.node(s.id));

/** The leader and a follower, as they are now. */
async function targets(): Promise<NodeProcess[]> {
  const leader = await cluster.leader(20_000);
  return [leader, cluster.others(leader)[0]!];
}

/** Every node up, one leader, no term anyone but a member could have made. */
async function expectUnharmed(): Promise<void> {
  expect(everyNode().map((n) => n.alive)).toEqual([true, true, true]);
  await cluster.leader(20_000);
  const statuses = await Promise.all(everyNode().map((n) => n.call<Status>('status')));
  for (const s of statuses) {
    expect({ node: s.id, termTaken: s.term >= TERM_CEILING }).toEqual({
      node: s.id,
      termTaken: false,
    });
    if (s.leader) expect(s.leader.id).not.toBe(OUTSIDER);
  }
}

/** Resolves 'closed' when the other side closes `socket` (bounded), 'open' otherwise; then drops it. */
function outcome(socket: Socket, timeoutMs = 10_000): Promise<'closed' | 'open'> {
  return new Promise<'closed' | 'open'>((resolve) => {
    const timer = setTimeout(() => resolve('open'), timeoutMs);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    // Read (and drop) what the server sends: unread bytes would hold back the 'end' of its close.
    socket.resume();
  }).finally(() => socket.destroy());
}

function portOf(node: NodeProcess): { host: string; port: number } {
  return parseAddress(node.spec.address, 'a member address');
}

interface Attempt {
  cert?: TestCert;
  alpn?: string[];
  /** Written once the client side thinks the handshake is done. */
  then?: (socket: TLSSocket) => void;
}

/** A TLS client (that trusts any server: it is the attacker) on `node`'s port. */
function tlsTo(to: { host: string; port: number }, { cert, alpn }: Attempt): TLSSocket {
  return tlsConnect({
    ...to,
    ...(cert ?? {}),
    ALPNProtocols: alpn,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
  });
}

function attempt(node: NodeProcess, how: Attempt): Promise<'closed' | 'open'> {
  const socket = tlsTo(portOf(node), how);
  socket.once('secureConnect', () => how.then?.(socket));
  return outcome(socket);
}

/** Runs `how` against the leader and a follower; each must be refused. */
async function refusedByBoth(how: Attempt | ((node: NodeProcess) => Promise<'closed' | 'open'>)) {
  for (const node of await targets()) {
    const result = typeof how === 'function' ? await how(node) : await attempt(node, how);
    expect({ node: node.spec.id, result }).toEqual({ node: node.spec.id, result: 'closed' });
  }
  await expectUnharmed();
}

/** The raft preamble: the sender's address, 1-byte length first. */
function preamble(address: string): Buffer {
  const bytes = Buffer.from(address);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** A member's certificate and key, as the cluster wrote them. */
function memberCert(id: number): TestCert {
  return {
    cert: readFileSync(join(cluster.certDir, `node-${id}.pem`), 'utf8'),
    key: readFileSync(join(cluster.certDir, `node-${id}-key.pem`), 'utf8'),
  };
}

/** A member other than `node` (whose certificate speaks to it). */
const otherMember = (node: NodeProcess) => (node.spec.id % 3) + 1;

/** A peer-channel client on `address` (default: `node`'s) holding `cert`. */
function peerClient(node: NodeProcess, cert: TestCert, address = node.spec.address): PeerClient {
  return new PeerClient(address, (to) =>
    tlsTo(parseAddress(to, 'a member address'), { cert, alpn: [ALPN_PEER] }),
  );
}

describe('1. no certificate', () => {
  test('raw TCP, random bytes', () =>
    refusedByBoth((node) => {
      const socket = tcpConnect(portOf(node));
      const random = prng(1);
      socket.write(Buffer.from(Array.from({ length: 512 }, () => random() & 0xff)));
      return outcome(socket);
    }));

  for (const alpn of [[ALPN_RAFT], [ALPN_PEER], undefined]) {
    test(`TLS without a client certificate, ALPN ${alpn?.[0] ?? 'none'}`, () =>
      refusedByBoth({ alpn, then: (s) => s.write(preamble('127.0.0.1:1')) }));
  }
});

describe('2. a certificate from another CA', () => {
  for (const id of [1, 2, 3]) {
    test(`naming member ${id}`, async () => {
      const cert = await (await testCa('not the cluster CA')).node(id);
      await refusedByBoth({ cert, alpn: [ALPN_RAFT], then: (s) => s.write(preamble('1.1.1.1:1')) });
    });
  }
});

test('3. a client certificate from the cluster CA (not a member)', async () => {
  const cert = await ca.client('x');
  await refusedByBoth({ cert, alpn: [ALPN_RAFT], then: (s) => s.write(preamble('127.0.0.1:1')) });
  await refusedByBoth({ cert, alpn: [ALPN_PEER] });
});

describe('4. a certificate from the cluster CA for a non-member id', () => {
  let cert: TestCert;
  beforeAll(async () => {
    cert = await ca.node(OUTSIDER);
  });

  // Well-formed raft messages, each built from the target's status: what a member would send.
  const messages: [string, (s: Status) => Buffer][] = [
    [
      'RequestVote with a huge term, disrupting the leader',
      (s) => requestVote(2 ** 40, OUTSIDER, s.lastIndex + 1000, 2 ** 40, DISRUPT_LEADER),
    ],
    [
      'AppendEntries in the current term (an entry, committing it)',
      (s) =>
        appendEntries({
          term: s.term,
          prevIndex: s.lastIndex,
          prevTerm: s.term,
          commit: s.lastIndex + 1,
          entries: [{ term: s.term, data: Buffer.alloc(16, 0x41) }],
        }),
    ],
    [
      'InstallSnapshot in the current term (a configuration of the outsider alone)',
      (s) =>
        installSnapshot({
          term: s.term,
          lastIndex: s.lastIndex + 10,
          lastTerm: s.term,
          conf: configuration([{ id: OUTSIDER, address: '127.0.0.1:1' }]),
        }),
    ],
  ];

  for (const [name, message] of messages) {
    test(name, () =>
      refusedByBoth(async (node) => {
        const s = await node.call<Status>('status');
        return attempt(node, {
          cert,
          alpn: [ALPN_RAFT],
          then: (socket) => socket.write(Buffer.concat([preamble('127.0.0.1:1'), message(s)])),
        });
      }),
    );
  }

  test('on the peer channel: a write and an announcement', async () => {
    for (const node of await targets()) {
      const client = peerClient(node, cert);
      try {
        const put = { name: 'put', args: { key: 'outsider', value: 'x' } };
        await expect(client.request('propose', put, 5000)).rejects.toMatchObject({
          code: 'PREVAIL_UNAVAILABLE',
        });
        await expect(
          client.request('announce', { id: OUTSIDER, channel: '127.0.0.1:1' }, 5000),
        ).rejects.toMatchObject({ code: 'PREVAIL_UNAVAILABLE' });
      } finally {
        client.close();
      }
    }
    await expectUnharmed();
  });
});

interface Proxy {
  port: number;
  /** What the client sent, chunk by chunk. */
  up: Buffer[];
  /** Flips one byte in the middle of the next client chunk of at least `min` bytes. */
  spliceNext(min: number): void;
  close(): Promise<void>;
}

/** A byte-copying TCP proxy to `target` (node:net), recording the client's bytes. */
async function proxy(target: { host: string; port: number }): Promise<Proxy> {
  const up: Buffer[] = [];
  let splice = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined).on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      up.push(Buffer.from(chunk));
      if (splice && chunk.length >= splice) {
        chunk = Buffer.from(chunk);
        chunk[chunk.length >> 1]! ^= 0x01;
        splice = 0;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    up,
    spliceNext: (min) => (splice = min),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('5. replayed and spliced TLS records', () => {
  test("a member's recorded handshake and request, replayed on a new connection", () =>
    refusedByBoth(async (node) => {
      const relay = await proxy(portOf(node));
      const client = peerClient(node, memberCert(otherMember(node)), `127.0.0.1:${relay.port}`);
      try {
        expect(typeof (await client.request('commitIndex', null, 5000))).toBe('number');
      } finally {
        client.close();
        await relay.close();
      }
      const socket = tcpConnect(portOf(node));
      socket.write(Buffer.concat(relay.up));
      return outcome(socket);
    }));

  test('one byte flipped in an application-data record: that connection is dropped', () =>
    refusedByBoth(async (node) => {
      const relay = await proxy(portOf(node));
      const client = peerClient(node, memberCert(otherMember(node)), `127.0.0.1:${relay.port}`);
      try {
        expect(typeof (await client.request('commitIndex', null, 5000))).toBe('number');
        relay.spliceNext(20); // the next request's record (a header alone is 5 bytes)
        const error = await client.request('commitIndex', null, 5000).catch((e: unknown) => e);
        return (error as { code?: string }).code === 'PREVAIL_UNAVAILABLE' ? 'closed' : 'open';
      } finally {
        client.close();
        await relay.close();
      }
    }));
});

// Connections each holding a member's certificate, each sent `bytes(i)`; all must be closed.
async function fuzzAsMember(
  alpn: string,
  count: number,
  bytes: (i: number, node: NodeProcess) => Buffer,
): Promise<void> {
  for (const node of await targets()) {
    const cert = memberCert(otherMember(node));
    const results: ('closed' | 'open')[] = [];
    for (let i = 0; i < count; i += 10) {
      const batch = Array.from({ length: Math.min(10, count - i) }, (_, j) =>
        attempt(node, {
          cert,
          alpn: [alpn],
          then: (socket) => socket.write(bytes(i + j, node)),
        }),
      );
      results.push(...(await Promise.all(batch)));
    }
    expect({ node: node.spec.id, open: results.filter((r) => r === 'open').length }).toEqual({
      node: node.spec.id,
      open: 0,
    });
  }
  await expectUnharmed();
}

describe("6. garbage after the handshake, with a member's certificate", () => {
  test('200 random raft frames (seeded) after a valid preamble', async () => {
    const random = prng(20261213);
    await fuzzAsMember(ALPN_RAFT, 100, (_i, node) => {
      const frame = Buffer.from(Array.from({ length: 16 + (random() % 496) }, () => random()));
      // No message type, and at least the 16-byte preamble the engine reads a message's
      // type and lengths from: refused whatever its lengths say.
      frame[0]! |= 0x40;
      return Buffer.concat([preamble(cluster.node(otherMember(node)).spec.address), frame]);
    });
  }, 60_000);

  test('200 peer-channel frames: oversized, unknown op, garbage msgpack', async () => {
    const random = prng(1213);
    const noise = (n: number) => Buffer.from(Array.from({ length: n }, () => random()));
    const framed = (body: Buffer) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(body.length);
      return Buffer.concat([length, body]);
    };
    // msgpack [1, 'nope', {}]: a request, of no kind the channel carries.
    const unknownOp = Buffer.from([0x93, 0x01, 0xa4, ...Buffer.from('nope'), 0x80]);
    await fuzzAsMember(ALPN_PEER, 100, (i) => {
      if (i % 3 === 0) return Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), noise(16)]);
      if (i % 3 === 1) return framed(unknownOp);
      // Garbage that msgpack can't read, or reads as something that is not a request.
      return framed(Buffer.concat([Buffer.from([0xc1]), noise(random() % 64)]));
    });
  }, 60_000);
});

describe('7. the peer channel checks what a member may ask', () => {
  test('member 2 announcing member 1 elsewhere → PREVAIL_FORBIDDEN', async () => {
    for (const node of await targets()) {
      const client = peerClient(node, memberCert(2));
      try {
        await expect(
          client.request('announce', { id: 1, channel: 'outsider:1' }, 5000),
        ).rejects.toMatchObject({ code: 'PREVAIL_FORBIDDEN' });
        const system = { name: 'prevail:x', args: {} };
        await expect(client.request('propose', system, 5000)).rejects.toMatchObject({
          code: 'PREVAIL_INVALID_ARGUMENT',
        });
      } finally {
        client.close();
      }
    }
    await expectUnharmed();
  });
});

test(
  '8. a stranger opening 200 TCP connections and never handshaking: each closed',
  () =>
    refusedByBoth(async (node) => {
      const sockets = Array.from({ length: 200 }, () => tcpConnect(portOf(node)));
      const results = await Promise.all(sockets.map((s) => outcome(s, 20_000)));
      return results.every((r) => r === 'closed') ? 'closed' : 'open';
    }),
  60_000,
);

test('at the end: every acknowledged write on every replica, replicas equal', async () => {
  writing = false;
  await writer;
  const leader = await cluster.leader(20_000);
  const last = await leader.call<{ ok: { index: number } }>('propose', {
    name: 'put',
    args: { key: 'last', value: 'v' },
  });
  expect(last.ok).toBeDefined();
  acked.push('last');
  const hashes = await waitFor('every replica to apply the last write', async () => {
    const all = await Promise.all(
      everyNode().map((n) => n.call<{ hash: string; applied: number }>('stateHash')),
    );
    return all.every((h) => h.applied >= last.ok.index) ? all.map((h) => h.hash) : undefined;
  });
  expect(new Set(hashes).size).toBe(1);
  for (const node of everyNode()) {
    const keys = new Set((await node.call<[string, unknown][]>('keys')).map(([k]) => k));
    expect({ node: node.spec.id, missing: acked.filter((k) => !keys.has(k)) }).toEqual({
      node: node.spec.id,
      missing: [],
    });
  }
  expect(acked.length).toBeGreaterThan(10);
  await expectUnharmed();
  // Nothing above is an election's cause but load: say so when the leader changed anyway.
  const leaderNow = (await cluster.leader()).spec.id;
  if (leaderNow !== firstLeader) console.warn(`leader ${firstLeader} → ${leaderNow}`);
});

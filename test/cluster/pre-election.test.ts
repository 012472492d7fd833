// Engine patches p7 and p8 (docs/engine-patches.md): how fast a cluster elects a new leader
// once the old one is gone. One real node (insecure transport, a 4 s election timeout) in a
// configuration of three; the two other members are played here over TCP in the engine's wire
// format, so that each test can put the real node exactly in the state a patch is about.
// - p7: a pre-candidate that refuses another's pre-vote for a less up-to-date log asks for its
//   own pre-votes again at once, instead of after a whole new election timeout.
// - p8: of two pre-candidates with equal logs, the lower id refuses the higher's pre-vote (and
//   asks again), so the two don't both stand and split the vote; only early in its campaign.
import { createServer, connect, type Server, type Socket } from 'node:net';

import { Cluster, fixtures, freePorts, type NodeProcess } from '../helpers/cluster.js';
import {
  REQUEST_VOTE,
  REQUEST_VOTE_RESULT,
  handshake,
  requestVote,
  requestVoteResult,
} from '../helpers/raft-wire.js';

const ELECTION_TIMEOUT_MS = 4000;
const PRE_VOTE = 2; // RequestVote flags: bit 1

/** What the real node sent to a fake member. */
interface Seen {
  to: number; // which fake member received it
  type: number;
  term: bigint;
  at: number;
  /** RequestVote: the candidate's last log entry, and whether it is a pre-vote. */
  lastIndex: bigint;
  lastTerm: bigint;
  preVote: boolean;
  /** RequestVoteResult: whether the vote was granted. */
  granted: boolean;
}

/** A fake member: accepts the real node's connections and records what it sends. */
function fakeMember(id: number, port: number, seen: Seen[]): Promise<Server> {
  const server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    let greeted = false;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!greeted) {
          // protocol, id, address length, address (padded)
          if (buf.length < 24) return;
          const length = 24 + Number(buf.readBigUInt64LE(16));
          if (buf.length < length) return;
          buf = buf.subarray(length);
          greeted = true;
          continue;
        }
        if (buf.length < 16) return;
        const headerLength = Number(buf.readBigUInt64LE(8));
        if (buf.length < 16 + headerLength) return;
        seen.push(decode(id, buf[0]!, buf.subarray(16, 16 + headerLength)));
        buf = buf.subarray(16 + headerLength); // votes and results carry no payload
      }
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

function decode(to: number, type: number, header: Buffer): Seen {
  const word = (i: number) => (header.length >= 8 * (i + 1) ? header.readBigUInt64LE(8 * i) : 0n);
  return {
    to,
    type,
    term: word(0),
    at: performance.now(),
    lastIndex: type === REQUEST_VOTE ? word(2) : 0n,
    lastTerm: type === REQUEST_VOTE ? word(3) : 0n,
    preVote: type === REQUEST_VOTE && (word(4) & BigInt(PRE_VOTE)) !== 0n,
    granted: type === REQUEST_VOTE_RESULT && word(1) !== 0n,
  };
}

/** A connection to `node` as member `id`, handshake sent. */
function dialAs(node: NodeProcess, id: number, address: string): Promise<Socket> {
  const port = Number(node.spec.address.split(':')[1]);
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(handshake(id, address));
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function until<T>(what: string, f: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const clusters: Cluster[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  await Promise.all(clusters.map((c) => c.stop()));
});

const address = (port: number) => `127.0.0.1:${port}`;

/**
 * Starts real member `real` of members 1–3; the other two are fakes that record what it sends
 * them in `seen`. Returns the node and a function that dials it as a fake member.
 */
async function oneRealNode(real: number) {
  const ports = await freePorts(3);
  const seen: Seen[] = [];
  for (const id of [1, 2, 3].filter((id) => id !== real))
    servers.push(await fakeMember(id, ports[id - 1]!, seen));
  const cluster = new Cluster(
    { insecure: true, electionTimeoutMs: ELECTION_TIMEOUT_MS, heartbeatMs: 400 },
    fixtures.raftNode,
  );
  clusters.push(cluster);
  cluster.specs = [1, 2, 3].map((id) => ({
    id,
    address: address(ports[id - 1]!),
    dataDir: `${cluster.root}/n${id}`,
  }));
  const node = await cluster.start(real);
  const as = async (id: number) => {
    const socket = await dialAs(node, id, address(ports[id - 1]!));
    sockets.push(socket);
    return socket;
  };
  return { node, seen, as };
}

/** The next pre-vote request the real node sends after index `from` of `seen`. */
const preVoteAfter = (seen: Seen[], from: number, what: string, timeoutMs: number) =>
  until(what, () => seen.slice(from).find((s) => s.preVote), timeoutMs);

/** The next RequestVoteResult the real node sends to fake member `to` after index `from`. */
const resultTo = (seen: Seen[], to: number, from: number) =>
  until(
    `a vote result to ${to}`,
    () => seen.slice(from).find((s) => s.type === REQUEST_VOTE_RESULT && s.to === to),
    ELECTION_TIMEOUT_MS,
  );

test('p7: a pre-candidate refusing a behind pre-candidate asks for its pre-votes again at once', async () => {
  const { seen, as } = await oneRealNode(1);

  // Its first pre-election, after its election timeout (4–8 s): pre-votes to 2 and 3.
  const first = await preVoteAfter(seen, 0, 'the first pre-vote', 4 * ELECTION_TIMEOUT_MS);
  expect(first.lastIndex).toBeGreaterThan(0n); // the bootstrap configuration entry
  // 2 and 3 refuse it: each still has a leader (as followers do until their own timer fires).
  const as2 = await as(2);
  const as3 = await as(3);
  as2.write(requestVoteResult(first.term, 0, true));
  as3.write(requestVoteResult(first.term, 0, true));
  // Then 3's own timer fires: it asks for a pre-vote with a log behind member 1's (empty).
  const asked = performance.now();
  const before = seen.length;
  as3.write(requestVote(first.term, 3, 0, 0, PRE_VOTE));

  // Member 1 refuses it (its log is ahead), and asks 2 and 3 again at once: long before its
  // next election timeout (at least 4 s after its first pre-vote) could make it.
  const again = await preVoteAfter(seen, before, 'a second pre-vote', 2 * ELECTION_TIMEOUT_MS);
  expect(again.at - asked).toBeLessThan(ELECTION_TIMEOUT_MS / 2);
  expect(again.at - first.at).toBeLessThan(ELECTION_TIMEOUT_MS);
  expect({ term: again.term, lastIndex: again.lastIndex }).toEqual({
    term: first.term,
    lastIndex: first.lastIndex,
  });
}, 60_000);

test('p8: of two pre-candidates with equal logs, the lower id refuses the higher early in its campaign', async () => {
  // Member 2 is real. Once it campaigns (no leader ever), members 1 and 3 ask it for pre-votes
  // with a log equal to its own, as a pre-candidate does when both timers fire together.
  const { seen, as } = await oneRealNode(2);
  const first = await preVoteAfter(seen, 0, 'the first pre-vote', 4 * ELECTION_TIMEOUT_MS);
  const as1 = await as(1);
  const as3 = await as(3);
  const equal = (id: number) =>
    requestVote(first.term, id, first.lastIndex, first.lastTerm, PRE_VOTE);

  // 3 is refused, and 2 asks for its own pre-votes again at once.
  let from = seen.length;
  as3.write(equal(3));
  expect((await resultTo(seen, 3, from)).granted).toBe(false);
  const again = await preVoteAfter(seen, from, 'a second pre-vote', ELECTION_TIMEOUT_MS / 2);
  expect({ term: again.term, lastIndex: again.lastIndex }).toEqual({
    term: first.term,
    lastIndex: first.lastIndex,
  });
  // 1, a lower id, is granted.
  from = seen.length;
  as1.write(equal(1));
  expect((await resultTo(seen, 1, from)).granted).toBe(true);

  // An election timeout into its campaign, 2 grants 3 too: a lower id that cannot win (here:
  // no one answers it) must not hold back a higher one for longer than that.
  await sleep(first.at + ELECTION_TIMEOUT_MS + 600 - performance.now());
  from = seen.length;
  as3.write(equal(3));
  expect((await resultTo(seen, 3, from)).granted).toBe(true);
}, 60_000);

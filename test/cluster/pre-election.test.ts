// Engine patch p7 (docs/engine-patches.md): a pre-candidate that refuses another's pre-vote for
// a less up-to-date log asks for its own pre-votes again at once, instead of after a whole new
// election timeout. One real node (member 1, insecure transport, a 4 s election timeout) in a
// configuration of three; members 2 and 3 are played here over TCP in the engine's wire format.
// Member 1 campaigns, 2 and 3 refuse (they "still have a leader"); then 3 asks member 1 for a
// pre-vote with an empty log, as a follower that missed the last entries does once its own
// timer fires. Member 1 must ask 2 and 3 again well before its next election timeout could.
import { createServer, connect, type Server, type Socket } from 'node:net';

import { Cluster, fixtures, freePorts, type NodeProcess } from '../helpers/cluster.js';
import { REQUEST_VOTE, handshake, requestVote, requestVoteResult } from '../helpers/raft-wire.js';

const ELECTION_TIMEOUT_MS = 4000;
const PRE_VOTE = 2; // RequestVote flags: bit 1

interface Seen {
  from: number; // which fake member received it
  term: bigint;
  lastIndex: bigint;
  lastTerm: bigint;
  preVote: boolean;
  at: number;
}

/** A fake member: accepts the node's connections and records the RequestVotes on them. */
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
        const header = buf.subarray(16, 16 + headerLength);
        if (buf[0] === REQUEST_VOTE)
          seen.push({
            from: id,
            term: header.readBigUInt64LE(0),
            lastIndex: header.readBigUInt64LE(16),
            lastTerm: header.readBigUInt64LE(24),
            preVote: (header.readBigUInt64LE(32) & BigInt(PRE_VOTE)) !== 0n,
            at: performance.now(),
          });
        buf = buf.subarray(16 + headerLength); // a candidate sends no payloads
      }
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
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

let cluster: Cluster | undefined;
const servers: Server[] = [];
const sockets: Socket[] = [];
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  await cluster?.stop();
});

test('a pre-candidate refusing a behind pre-candidate asks for its pre-votes again at once', async () => {
  const [p1, p2, p3] = await freePorts(3);
  const address = (port: number) => `127.0.0.1:${port}`;
  const seen: Seen[] = [];
  servers.push(await fakeMember(2, p2!, seen), await fakeMember(3, p3!, seen));
  cluster = new Cluster(
    { insecure: true, electionTimeoutMs: ELECTION_TIMEOUT_MS, heartbeatMs: 400 },
    fixtures.raftNode,
  );
  cluster.specs = [1, 2, 3].map((id, i) => ({
    id,
    address: address([p1!, p2!, p3!][i]!),
    dataDir: `${cluster!.root}/n${id}`,
  }));
  const node = await cluster.start(1);

  // Its first pre-election, after its election timeout (4–8 s): pre-votes to 2 and 3.
  const first = await until(
    'the first pre-vote',
    () => seen.find((s) => s.preVote),
    4 * ELECTION_TIMEOUT_MS,
  );
  expect(first.lastIndex).toBeGreaterThan(0n); // the bootstrap configuration entry
  // 2 and 3 refuse it: each still has a leader (as followers do until their own timer fires).
  const as2 = await dialAs(node, 2, address(p2!));
  const as3 = await dialAs(node, 3, address(p3!));
  sockets.push(as2, as3);
  as2.write(requestVoteResult(first.term, 0, true));
  as3.write(requestVoteResult(first.term, 0, true));
  // Then 3's own timer fires: it asks for a pre-vote with a log behind member 1's (empty).
  const asked = performance.now();
  const before = seen.length;
  as3.write(requestVote(first.term, 3, 0, 0, PRE_VOTE));

  // Member 1 refuses it (its log is ahead), and asks 2 and 3 again at once: long before its
  // next election timeout (at least 4 s after its first pre-vote) could make it.
  const again = await until(
    'a second pre-vote',
    () => seen.slice(before).find((s) => s.preVote),
    2 * ELECTION_TIMEOUT_MS,
  );
  expect(again.at - asked).toBeLessThan(ELECTION_TIMEOUT_MS / 2);
  expect(again.at - first.at).toBeLessThan(ELECTION_TIMEOUT_MS);
  expect({ term: again.term, lastIndex: again.lastIndex }).toEqual({
    term: first.term,
    lastIndex: first.lastIndex,
  });
}, 60_000);

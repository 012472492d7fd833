// The harness's partitions (lib/verify/netns.ts) really stop the bytes: three network namespaces
// on a bridge, a TCP server in each; while a node is cut off, a connect from its namespace to a
// peer's address fails or times out (and so does one towards it), the other pairs still connect,
// and the harness in the root namespace still reaches every node; after heal() every pair
// connects again. Needs root and `ip netns`; elsewhere the test logs why and passes without
// checking anything. Every child is killed by pid, the namespaces deleted in afterAll.
import { execFile, spawn, type ChildProcess } from 'node:child_process';

import { NetnsNetwork, netnsAvailable, partitionPairs } from '../../lib/verify/netns.js';

const PORT = 7001;

/** A TCP connect from inside namespace `ns` (or the root namespace when null): 'connected', 'error CODE' or 'timeout'. */
function probe(ns: string | null, host: string, timeoutMs = 1500): Promise<string> {
  const script = `const s = require('net').connect(${PORT}, ${JSON.stringify(host)});
    s.on('data', () => { console.log('connected'); process.exit(0); });
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
    setTimeout(() => { console.log('timeout'); process.exit(0); }, ${timeoutMs});`;
  const [cmd, args] = ns
    ? ['ip', ['netns', 'exec', ns, process.execPath, '-e', script]]
    : [process.execPath, ['-e', script]];
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs + 5000, killSignal: 'SIGKILL' }, (err, stdout) => {
      resolve(stdout.trim() || `failed: ${err?.message ?? 'no output'}`);
    });
  });
}

let net: NetnsNetwork | null = null;
const servers: ChildProcess[] = [];
let skipReason: string | null = null;

beforeAll(async () => {
  const avail = await netnsAvailable();
  if (!avail.ok) {
    skipReason = avail.reason;
    return;
  }
  net = await NetnsNetwork.create();
  for (const id of [1, 2, 3]) {
    const node = await net.addNode(id);
    // A server that greets every connection, bound to the node's own address in its namespace.
    const script = `require('net').createServer((s) => s.end('hi')).listen(${PORT}, ${JSON.stringify(node.address)}, () => console.log('listening'))`;
    const child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    servers.push(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server in ${node.ns} did not listen`)),
        10_000,
      );
      child.stdout!.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}, 60_000);

afterAll(async () => {
  for (const s of servers)
    if (s.exitCode === null && s.signalCode === null && s.pid) process.kill(s.pid, 'SIGKILL');
  if (net) expect(await net.destroy()).toEqual([]);
}, 60_000);

test('a partitioned node truly cannot reach the others, and can again after heal', async () => {
  if (!net) {
    console.log(`verify-netns: skipped: ${skipReason}`);
    return;
  }
  const n = net;
  const addr = (id: number) => n.addressOf(id);
  // `ip netns exec` execs: the pid we hold is node's own (the harness kills nodes by this pid).
  expect(
    await import('node:fs').then((fs) =>
      fs.readFileSync(`/proc/${servers[0]!.pid}/comm`, 'utf8').trim(),
    ),
  ).toMatch(/^(node|MainThread)$/);

  // Connected at first: every pair, and the root namespace to every node.
  for (const [a, b] of [
    [1, 2],
    [2, 3],
    [3, 1],
  ] as const)
    expect(await probe(n.nsOf(a), addr(b))).toBe('connected');
  for (const id of [1, 2, 3]) expect(await probe(null, addr(id))).toBe('connected');

  // Isolate node 1.
  const plan = partitionPairs('isolate', [2, 3, 1], 1);
  expect(plan.pairs).toEqual([
    [1, 2],
    [1, 3],
  ]);
  await n.partition(plan.pairs);
  expect(await n.routes(1)).toContain(`blackhole ${addr(2)}`);
  for (const peer of [2, 3]) {
    expect(await probe(n.nsOf(1), addr(peer))).toMatch(/^(error |timeout)/); // from the cut node
    expect(await probe(n.nsOf(peer), addr(1))).toMatch(/^(error |timeout)/); // towards it
  }
  expect(await probe(n.nsOf(2), addr(3))).toBe('connected'); // the majority still talks
  expect(await probe(null, addr(1))).toBe('connected'); // the harness still reaches it

  await n.heal();
  expect(await n.routes(1)).toBe('');
  for (const [a, b] of [
    [1, 2],
    [1, 3],
    [2, 1],
    [3, 1],
  ] as const)
    expect(await probe(n.nsOf(a), addr(b))).toBe('connected');

  // A bridge: 2 and 3 can't see each other, 1 sees both.
  const bridge = partitionPairs('bridge', [1, 2, 3]);
  await n.partition(bridge.pairs);
  expect(await probe(n.nsOf(2), addr(3))).toMatch(/^(error |timeout)/);
  expect(await probe(n.nsOf(3), addr(2))).toMatch(/^(error |timeout)/);
  expect(await probe(n.nsOf(1), addr(2))).toBe('connected');
  expect(await probe(n.nsOf(1), addr(3))).toBe('connected');
  await n.heal();
  expect(await probe(n.nsOf(2), addr(3))).toBe('connected');
}, 60_000);

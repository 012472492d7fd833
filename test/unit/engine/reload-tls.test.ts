// Rotating a member's TLS material in-process (RaftNode.reloadTls, MemberTransport.reload) on a
// 3-node cluster of RaftNodes in this process: material for another member is refused and
// changes nothing; after a reload the connections made with the old material are closed, so a
// replaced certificate (here: one from a CA the others don't trust) stops being used.
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { RaftNode, type Fsm } from '../../../lib/index.js';
import { loadMemberTls } from '../../../lib/engine/member-transport.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';
import { testCa, tlsFiles, writeClusterCerts } from '../../helpers/test-certs.js';

/** Counts what it applies: enough to see who has which entries. */
class CountingFsm implements Fsm<number> {
  count = 0;
  apply(): number {
    return ++this.count;
  }
  snapshot(): Uint8Array {
    return Buffer.from(String(this.count));
  }
  restore(data: Uint8Array): void {
    this.count = Number(Buffer.from(data).toString());
  }
}

describe('reloading TLS material on a running member', () => {
  let root: string;
  let certDir: string;
  let nodes: RaftNode<number>[] = [];

  beforeAll(async () => {
    root = tempDir('prevail-reload-');
    certDir = join(root, 'certs');
    await writeClusterCerts(certDir, [1, 2, 3]);
    const ports = await freePorts(3);
    const cluster = [1, 2, 3].map((id) => ({ id, address: `127.0.0.1:${ports[id - 1]}` }));
    nodes = await Promise.all(
      cluster.map((m) =>
        RaftNode.start<number>({
          id: m.id,
          address: m.address,
          dataDir: join(root, `n${m.id}`),
          cluster,
          tls: tlsFiles(certDir, m.id),
          electionTimeoutMs: 300,
          heartbeatMs: 50,
          fsm: new CountingFsm(),
        }),
      ),
    );
  }, 30_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close().catch(() => undefined)));
    rmSync(root, { recursive: true, force: true });
  });

  const leader = () =>
    waitFor('a leader', () => nodes.find((n) => n.status().role === 'leader'), 15_000);
  const appliedEverywhere = (among: RaftNode<number>[], index: number) =>
    waitFor(
      `index ${index} applied on ${among.map((n) => n.id).join(',')}`,
      () => among.every((n) => n.status().appliedIndex >= index),
      15_000,
    );

  test('a certificate for another member: PREVAIL_BAD_CERTIFICATE, the node keeps working', async () => {
    const node = nodes[0]!;
    const before = node.transport!.material;
    expect(() => node.reloadTls(tlsFiles(certDir, 2))).toThrow(
      expect.objectContaining({
        code: 'PREVAIL_BAD_CERTIFICATE',
        message: expect.stringContaining('urn:prevail:node:1'),
      }),
    );
    expect(node.transport!.material).toBe(before);
    expect(node.transport!.staleConnections).toBe(0); // nothing to cycle: nothing was taken
    const index = (await (await leader()).propose(Buffer.from('x'))) as number;
    expect(index).toBeGreaterThan(0);
    await appliedEverywhere(nodes, (await leader()).status().commitIndex);
    // Its own files, read again: fine.
    node.reloadTls();
    expect(node.transport!.material.cert).toBe(before.cert);
  });

  test('after a reload the old connections are closed: a certificate the others do not trust stops working, the right one brings the node back', async () => {
    const lead = await leader();
    // A follower takes a certificate from a CA the others don't know (as if its own had been
    // replaced by a stranger's). Its established connections would go on working if kept.
    const follower = nodes.find((n) => n !== lead)!;
    const stranger = await testCa('another CA');
    const foreign = await stranger.node(follower.id);
    const material = loadMemberTls({ ca: stranger.cert, ...foreign }, follower.id);
    follower.transport!.reload(material, 100);
    await waitFor('the old connections closed', () => follower.transport!.staleConnections === 0);
    // The other two commit without it; it gets none of it.
    const others = nodes.filter((n) => n !== follower);
    let last = 0;
    for (let i = 0; i < 20; i++) last = (await lead.propose(Buffer.from(`w${i}`))) as number;
    await appliedEverywhere(others, last);
    await new Promise((r) => setTimeout(r, 1000)); // heartbeats and retries had their chance
    expect(follower.status().appliedIndex).toBeLessThan(last);
    // Its own material back (the files, read again): it reconnects and catches up.
    follower.reloadTls();
    await appliedEverywhere(nodes, last);
  }, 60_000);
});

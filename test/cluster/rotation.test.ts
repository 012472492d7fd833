// Certificate rotation on a running 3-node `prevail serve` cluster on mutual TLS (HTTPS API,
// members on mTLS), under write load: new leaves from the same CA (SIGHUP one node at a time),
// a kill -9 and restart (new connections made with the new material), then a move to a new CA
// in two steps through a CA bundle (old+new CA everywhere, new leaves, old CA dropped), and a
// SIGHUP with a broken certificate file, which keeps the node serving its old one. No
// acknowledged write is lost, no write fails beyond retries of transient errors, and the
// cluster ends with one leader.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ServiceCluster, runCli, tempDir, waitFor, type ServeProcess } from '../helpers/cluster.js';
import { testCa, type TestCa } from '../helpers/test-certs.js';
import { startWriteLoad } from '../helpers/write-load.js';

const IDS = [1, 2, 3];
const WRITERS = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('certificate rotation under write load (prevail serve, 3 nodes, mutual TLS)', () => {
  let cluster: ServiceCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  test('new leaves, a restart, a new CA through a bundle, a broken file: no write lost or failed', async () => {
    const dir = tempDir('prevail-rotation-certs-');
    const caOne = await testCa('rotation CA one');
    const caTwo = await testCa('rotation CA two');
    const caFile = join(dir, 'ca.pem');
    const certFile = (id: number) => join(dir, `node-${id}.pem`);
    const keyFile = (id: number) => join(dir, `node-${id}-key.pem`);
    const writeLeaf = async (ca: TestCa, id: number) => {
      const { cert, key } = await ca.node(id);
      writeFileSync(certFile(id), cert);
      writeFileSync(keyFile(id), key, { mode: 0o600 });
    };
    writeFileSync(caFile, caOne.cert);
    for (const id of IDS) await writeLeaf(caOne, id);
    const bothCas = `${caOne.cert.trim()}\n${caTwo.cert.trim()}\n`; // a CA bundle
    const clientCaFile = join(dir, 'client-ca.pem');
    writeFileSync(clientCaFile, bothCas);

    cluster = await ServiceCluster.create(
      3,
      (id) => ['--ca', caFile, '--cert', certFile(id), '--key', keyFile(id)],
      { ca: bothCas }, // the test's client trusts both CAs throughout
    );
    const c = cluster;
    expect(c.node(1).url).toMatch(/^https:/);
    await c.leader(20_000);

    // The load: writers put through random running nodes (followers forward).
    const load = startWriteLoad(() => {
      const nodes = c.running();
      return nodes[Math.floor(Math.random() * nodes.length)]!;
    }, WRITERS);
    const progress = (count?: number) => load.progress(count);
    const said = (node: ServeProcess, text: string) => node.output.split(text).length - 1;
    /** SIGHUP node `id` and wait (bounded) until it says it reloaded. */
    const sighup = async (id: number) => {
      const node = c.node(id);
      const before = said(node, 'reloaded its certificates');
      process.kill(node.pid, 'SIGHUP');
      await waitFor(`node ${id} to reload`, () => {
        if (said(node, 'kept its old') > 0) throw new Error(node.output.slice(-2000));
        return said(node, 'reloaded its certificates') > before;
      });
      await progress();
    };
    /** A kill -9 and a restart of node `id`: it connects anew with the files as they are now. */
    const restart = async (id: number) => {
      await c.node(id).kill();
      await progress(10);
      await c.start(id);
      await waitFor(
        `node ${id} to rejoin`,
        async () => {
          const [mine, theirs] = await Promise.all([
            c.node(id).request('GET', '/status'),
            (await c.leader(20_000)).request('GET', '/status'),
          ]);
          return mine.body.appliedIndex >= theirs.body.commitIndex - 50 && mine.body.leader;
        },
        30_000,
      );
      await progress();
    };

    try {
      await progress();
      // 1. New leaves from the same CA, one node at a time.
      for (const id of IDS) {
        await writeLeaf(caOne, id);
        await sighup(id);
      }
      // 2. A node killed and restarted: its connections (and its peers' to it) are new ones.
      await restart(1);

      // 3. A new CA: first the bundle everywhere (both CAs trusted) ...
      writeFileSync(caFile, bothCas);
      for (const id of IDS) await sighup(id);
      // ... then leaves from the new CA (the others trust it already) ...
      for (const id of IDS) {
        await writeLeaf(caTwo, id);
        await sighup(id);
      }
      // ... then the old CA dropped: by the API on one node, by the CLI on another.
      writeFileSync(caFile, caTwo.cert);
      await sighup(1);
      const answer = await c.node(2).request('POST', '/admin/reload');
      expect(answer).toMatchObject({
        status: 200,
        body: { reloaded: true, notAfter: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) },
      });
      const cli = await runCli(['reload', '--node', c.node(3).url, '--ca', clientCaFile]);
      expect(cli).toMatchObject({ code: 0 });
      expect(JSON.parse(cli.stdout)[c.node(3).url]).toMatchObject({ reloaded: true });
      await progress();
      // Connections made before each reload are cycled (10 s after it): past that, every
      // connection is on the new CA's certificates, and the cluster still works.
      await sleep(11_000);
      await progress();
      // New connections forced once more, now with the old CA trusted nowhere.
      await restart(2);

      // 4. A broken certificate file: the node keeps its old material and serves on.
      writeFileSync(certFile(3), 'not a certificate\n');
      const node3 = c.node(3);
      const refusals = said(node3, 'kept its old certificates');
      process.kill(node3.pid, 'SIGHUP');
      await waitFor(
        'node 3 to refuse the broken file',
        () => said(node3, 'kept its old certificates') > refusals,
      );
      expect(node3.output).toMatch(
        /kept its old certificates and auth settings: PREVAIL_BAD_CERTIFICATE/,
      );
      const refused = await node3.request('POST', '/admin/reload');
      expect(refused).toMatchObject({
        status: 422,
        body: { error: { code: 'PREVAIL_BAD_CERTIFICATE' } },
      });
      expect(node3.alive).toBe(true);
      expect((await node3.request('GET', '/status')).status).toBe(200);
      await progress();
    } finally {
      await load.stop();
    }

    expect(load.failed).toEqual([]);
    // Every acknowledged write is there, with its value (linearizable reads on the leader).
    const leader = await c.leader(20_000);
    await load.expectAllPresent(leader);
    const statuses = await Promise.all(c.running().map((n) => n.request('GET', '/status')));
    expect(statuses.map((s) => s.body.security)).toEqual(['tls', 'tls', 'tls']);
    expect(new Set(statuses.map((s) => s.body.leader?.id)).size).toBe(1);
    console.log(
      `rotation: ${load.acked.size} writes acknowledged, ${load.retries()} transient retries`,
    );
  }, 240_000);
});

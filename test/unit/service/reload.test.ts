// Reloading a running service's certificates and auth settings (Service.reload, POST
// /admin/reload): a real service in this process on HTTPS, its settings "read again" from what
// the test hands it; and `prevail serve` warning of a certificate that expires within 30 days.
import { rmSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';

import { revoke } from '../../../lib/certs/index.js';
import { startService, type Service } from '../../../lib/index.js';
import type { ReloadSettings } from '../../../lib/service/reload.js';
import { ServiceCluster, tempDir, waitFor } from '../../helpers/cluster.js';
import { testCa, type TestCa } from '../../helpers/test-certs.js';

const OLD = 'old-admin-token-0123456789';
const NEW = 'new-admin-token-9876543210';
const authWith = (token: string) => ({
  users: [
    { name: 'ops', token, permissions: ['read' as const, 'write' as const, 'admin' as const] },
  ],
});

let ca: TestCa;
let service: Service;
let dataDir: string;
let fresh: ReloadSettings;

beforeAll(async () => {
  ca = await testCa('reload CA');
  const leaf = await ca.node(1);
  fresh = { tls: { ca: ca.cert, ...leaf }, auth: authWith(OLD) };
  dataDir = tempDir('prevail-reload-');
  service = await startService({ dataDir, ...fresh, reread: () => fresh });
});
afterAll(async () => {
  await service?.close({ transferLeadership: false });
  rmSync(dataDir, { recursive: true, force: true });
});

/** One HTTPS request (a new connection each time) with `token`; the server certificate's fingerprint too. */
function call(method: string, path: string, token: string) {
  return new Promise<{ status: number; body: any; fingerprint: string }>((resolve, reject) => {
    const req = request(
      `${service.url}${path}`,
      {
        method,
        ca: ca.cert,
        agent: false,
        headers: { authorization: `Bearer ${token}` },
        timeout: 20_000,
      },
      (res) => {
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
          .fingerprint256;
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(text), fingerprint }),
        );
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}

test('/status says how members are reached and until when the certificate is valid', async () => {
  const status = await call('GET', '/status', OLD);
  expect(status.body).toMatchObject({
    security: 'tls',
    certificateNotAfter: expect.stringMatching(/^\d{4}-/),
  });
});

test('POST /admin/reload takes new tokens and a new certificate', async () => {
  const before = await call('GET', '/status', OLD);
  const leaf = await ca.node(1);
  fresh = { tls: { ca: ca.cert, ...leaf }, auth: authWith(NEW) };
  const answer = await call('POST', '/admin/reload', OLD);
  expect(answer).toMatchObject({ status: 200, body: { reloaded: true } });
  expect(Date.parse(answer.body.notAfter)).toBeGreaterThan(Date.now());
  expect((await call('GET', '/status', OLD)).status).toBe(401);
  const after = await call('GET', '/status', NEW);
  expect(after.status).toBe(200);
  expect(after.fingerprint).not.toBe(before.fingerprint); // new connections get the new certificate
});

test('a reload that does not fit changes nothing: a certificate for another member', async () => {
  const other = await ca.node(2);
  fresh = { tls: { ca: ca.cert, ...other }, auth: authWith(OLD) };
  const refused = await call('POST', '/admin/reload', NEW);
  expect(refused).toMatchObject({
    status: 422,
    body: { error: { code: 'PREVAIL_BAD_CERTIFICATE' } },
  });
  expect(() => service.reload()).toThrow(
    expect.objectContaining({ code: 'PREVAIL_BAD_CERTIFICATE' }),
  );
  // Neither the tokens nor the certificate changed, and the node serves on.
  expect((await call('GET', '/status', OLD)).status).toBe(401);
  expect((await call('PUT', '/kv/k', NEW)).status).toBe(200);
});

// A revoked client certificate: refused on new connections, and the keep-alive connection made
// with it before the reload is closed (it would otherwise go on being that user), over
// HTTP/1.1 and HTTP/2.
test('a reload with a revocation list closes the revoked client’s connection and refuses it after', async () => {
  const ops = await ca.client('ops');
  const leaf = await ca.node(1);
  fresh = { tls: { ca: ca.cert, ...leaf }, auth: authWith(NEW) };
  service.reload();
  const agent = new Agent({ keepAlive: true, ca: ca.cert, ...ops });
  const get = () =>
    new Promise<{ status: number; socket: TLSSocket }>((resolve, reject) => {
      const req = request(`${service.url}/status`, { agent, timeout: 20_000 }, (res) => {
        const socket = res.socket as TLSSocket;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, socket }));
      });
      req.on('error', reject);
      req.end();
    });
  // The same over HTTP/2: the session's connection is closed too.
  const session = http2Connect(service.url, { ca: ca.cert, ...ops });
  session.on('error', () => undefined);
  try {
    const before = await get();
    expect(before.status).toBe(200); // the certificate names user ops
    const closed = new Promise((resolve) => before.socket.once('close', resolve));
    const h2status = await new Promise((resolve, reject) => {
      const stream = session.request({ ':path': '/status' });
      stream.once('response', (h) => resolve(h[':status']));
      stream.once('error', reject);
      stream.resume();
      stream.end();
    });
    expect(h2status).toBe(200);
    const h2closed = new Promise((resolve) => session.once('close', resolve));
    const { crl } = await revoke(ca, [ops.cert]);
    fresh = { tls: { ca: ca.cert, ...leaf, crl }, auth: authWith(NEW) };
    service.reload();
    await closed;
    await h2closed;
    // A new connection: the handshake goes through (the API lets a token try), but the
    // certificate authenticates no one.
    expect((await get()).status).toBe(401);
    const status = await call('GET', '/status', NEW);
    expect(status).toMatchObject({
      status: 200,
      body: { revocation: { revoked: 1, nextUpdate: expect.stringMatching(/^\d{4}-/) } },
    });
    // A list from another CA would refuse every peer: refused, and nothing changes.
    const stranger = await testCa('a stranger CA');
    fresh = {
      tls: { ca: ca.cert, ...leaf, crl: (await revoke(stranger, [])).crl },
      auth: authWith(OLD),
    };
    expect(() => service.reload()).toThrow(
      expect.objectContaining({ code: 'PREVAIL_BAD_CERTIFICATE' }),
    );
    expect((await call('GET', '/status', NEW)).status).toBe(200); // NEW still the token
  } finally {
    agent.destroy();
    session.destroy();
    fresh = { tls: { ca: ca.cert, ...leaf }, auth: authWith(NEW) };
    service.reload();
  }
});

test('a service not told where to read its settings again cannot reload', async () => {
  const dir = tempDir('prevail-reload-plain-');
  const plain = await startService({ dataDir: dir });
  try {
    expect(() => plain.reload()).toThrow(
      expect.objectContaining({ code: 'PREVAIL_INVALID_STATE' }),
    );
  } finally {
    await plain.close({ transferLeadership: false });
    rmSync(dir, { recursive: true, force: true });
  }
});

// Members on mTLS behind a TLS-terminating proxy: the API speaks plain HTTP, on loopback only.
test('plainHttp: the API on plain HTTP, the members on TLS (reloadable); refused off loopback', async () => {
  const dir = tempDir('prevail-reload-plain-http-');
  const tls = { ca: ca.cert, ...(await ca.node(1)) };
  const proxied = await startService({
    dataDir: dir,
    tls,
    plainHttp: true,
    reread: () => ({ tls }),
  });
  try {
    expect(proxied.url).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const status = (await (await fetch(`${proxied.url}/status`)).json()) as { security: string };
    expect(status.security).toBe('tls');
    expect(proxied.reload()).toMatchObject({ reloaded: true, notAfter: expect.any(String) });
    expect(proxied.store.node.transport?.staleConnections).toBe(0);
  } finally {
    await proxied.close({ transferLeadership: false });
    rmSync(dir, { recursive: true, force: true });
  }
  await expect(
    startService({
      dataDir: tempDir('prevail-reload-plain-http-'),
      tls,
      plainHttp: true,
      httpAddress: '0.0.0.0:0',
      auth: authWith(OLD),
    }),
  ).rejects.toMatchObject({ code: 'PREVAIL_INVALID_ARGUMENT' });
});

test('prevail serve warns of a certificate that expires within 30 days', async () => {
  const dir = tempDir('prevail-reload-expiring-');
  const { cert, key } = await ca.node(1, { days: 10 });
  const files = ['ca', 'cert', 'key'].map((f) => join(dir, `${f}.pem`));
  writeFileSync(files[0]!, ca.cert);
  writeFileSync(files[1]!, cert);
  writeFileSync(files[2]!, key, { mode: 0o600 });
  const cluster = await ServiceCluster.create(
    1,
    ['--ca', files[0]!, '--cert', files[1]!, '--key', files[2]!],
    { ca: ca.cert },
  );
  try {
    const node = cluster.node(1);
    await waitFor('the warning', () =>
      /WARNING: node 1's certificate expires on .* \(in \d+ days\)/.test(node.output),
    );
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

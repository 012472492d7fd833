// HTTPS and client certificates (ServiceOptions.tls): a certificate from the service's CA naming
// a client authenticates as that user (with its permissions); one from another CA, one naming a
// member, or one naming no known user does not; a bearer token works over HTTPS too.
// A connection keeps the client it was made with (its identity is read once): renegotiation,
// which could change the certificate, is refused.
// A real service in this process, real HTTPS on 127.0.0.1; certificates from test-certs.ts.
import { rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { connect, type TLSSocket } from 'node:tls';

import { startService, type Service } from '../../../lib/index.js';
import { tempDir, waitFor } from '../../helpers/cluster.js';
import { testCa, type TestCert } from '../../helpers/test-certs.js';

const ADMIN = 'admin-token-0123456789ab';

let service: Service;
let dataDir: string;
let caCert: string;
let certs: Record<'alice' | 'stranger' | 'member' | 'bob', TestCert>;

beforeAll(async () => {
  const ca = await testCa('cluster CA');
  const other = await testCa('another CA');
  caCert = ca.cert;
  certs = {
    alice: await ca.client('alice'),
    stranger: await other.client('alice'),
    member: await ca.node(2),
    bob: await ca.client('bob'),
  };
  const server = await ca.node(1);
  dataDir = tempDir('prevail-auth-tls-');
  service = await startService({
    dataDir,
    tls: { ca: ca.cert, cert: server.cert, key: server.key },
    auth: {
      users: [
        { name: 'alice', permissions: ['read', 'write'] },
        { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
      ],
    },
  });
});
afterAll(async () => {
  await service?.close({ transferLeadership: false });
  rmSync(dataDir, { recursive: true, force: true });
});

/** One HTTPS request verifying the service by the CA, with `cert` and/or `token` when given. */
function call(
  method: string,
  path: string,
  who: { cert?: TestCert; token?: string; agent?: Agent } = {},
) {
  return new Promise<{ status: number; body: any; socket: TLSSocket }>((resolve, reject) => {
    const req = request(
      `${service.url}${path}`,
      {
        method,
        ca: caCert,
        ...(who.cert ?? {}),
        ...(who.agent ? { agent: who.agent } : {}),
        headers: who.token ? { authorization: `Bearer ${who.token}` } : {},
        timeout: 20_000,
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            body: JSON.parse(text),
            socket: res.socket as TLSSocket,
          }),
        );
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(method === 'PUT' ? 'v' : undefined);
  });
}

test('the service serves HTTPS', () => {
  expect(service.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
});

test("a client certificate from the service's CA authenticates as the user it names", async () => {
  await waitFor('a leader', async () => (await call('GET', '/health/leader')).status === 200);
  expect((await call('PUT', '/kv/k', { cert: certs.alice })).status).toBe(200);
  const got = await call('GET', '/kv/k', { cert: certs.alice });
  expect({ status: got.status, value: got.body.value }).toEqual({ status: 200, value: 'v' });
  const status = await call('GET', '/status', { cert: certs.alice });
  expect({ status: status.status, permission: status.body.error.permission }).toEqual({
    status: 403,
    permission: 'admin',
  });
});

test.each([
  ['from another CA', 'stranger'],
  ['naming a member, not a client', 'member'],
  ['naming a client that is not a user', 'bob'],
] as const)('a client certificate %s is not a credential (401)', async (_what, who) => {
  const a = await call('GET', '/kv/k', { cert: certs[who] });
  expect({ status: a.status, code: a.body.error.code }).toEqual({
    status: 401,
    code: 'PREVAIL_UNAUTHORIZED',
  });
});

test('no certificate: 401, and a bearer token works over HTTPS', async () => {
  expect((await call('GET', '/kv/k')).status).toBe(401);
  expect((await call('GET', '/status', { token: ADMIN })).status).toBe(200);
});

test('a token, when given, decides: a wrong one is 401 even with a good certificate', async () => {
  const a = await call('GET', '/kv/k', { cert: certs.alice, token: 'wrong-token-0123456789' });
  expect(a.status).toBe(401);
});

test('each request on one connection is authenticated as the client its certificate names', async () => {
  for (const [who, status] of [
    ['alice', 200],
    ['bob', 401],
  ] as const) {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: caCert, ...certs[who] });
    try {
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await call('GET', '/kv/k', { agent }));
      expect(answers.map((a) => a.status)).toEqual([status, status, status]);
      expect(new Set(answers.map((a) => a.socket)).size).toBe(1); // one connection
    } finally {
      agent.destroy();
    }
  }
});

test('a TLS 1.2 client cannot renegotiate (and so cannot change its certificate mid-connection)', async () => {
  const { port } = new URL(service.url);
  const socket = connect({
    host: '127.0.0.1',
    port: Number(port),
    ca: caCert,
    ...certs.alice,
    maxVersion: 'TLSv1.2',
    checkServerIdentity: () => undefined,
  });
  try {
    await new Promise((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    expect(socket.getProtocol()).toBe('TLSv1.2');
    const refused = await new Promise<Error | null>((resolve) => {
      socket.once('error', resolve);
      socket.renegotiate({ rejectUnauthorized: false, ...certs.bob }, (err) => {
        if (err) resolve(err);
        else socket.write('GET /kv/k HTTP/1.1\r\nhost: x\r\n\r\n', () => undefined);
      });
      socket.once('data', () => resolve(null)); // renegotiated and answered: the failure
    });
    expect(refused).toEqual(expect.objectContaining({ code: 'ERR_SSL_NO_RENEGOTIATION' }));
  } finally {
    socket.destroy();
  }
  expect((await call('GET', '/kv/k', { cert: certs.alice })).status).toBe(200);
});

test('unusable TLS settings are PREVAIL_BAD_CERTIFICATE', async () => {
  const dir = tempDir('prevail-auth-tls-bad-');
  try {
    await expect(
      startService({
        dataDir: dir,
        tls: { ca: caCert, cert: certs.alice.cert, key: certs.bob.key },
      }),
    ).rejects.toEqual(expect.objectContaining({ code: 'PREVAIL_BAD_CERTIFICATE' }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

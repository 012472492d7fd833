// HTTP API authentication (ServiceOptions.auth, lib/core/auth.ts): every route class refuses a
// request without valid credentials (401, WWW-Authenticate: Bearer), a user lacking the route's
// permission gets 403 naming it, tokens may be given hashed; the admin page mounted on its own
// takes the same settings; a non-loopback HTTP address needs auth or `insecure`.
// Real services in this process, real HTTP on 127.0.0.1.
import { createHash } from 'node:crypto';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';

import { adminHandler } from '../../../lib/admin/admin.js';
import { HttpAuth, isLoopback, permissionFor, type AuthOptions } from '../../../lib/core/auth.js';
import { startService, type Service } from '../../../lib/index.js';
import { tempDir, waitFor } from '../../helpers/cluster.js';

const READ = 'reader-token-0123456789';
const WRITE = 'writer-token-0123456789';
const ADMIN = 'admin-token-0123456789ab';
const sha256 = (t: string) => createHash('sha256').update(t).digest('hex');

const AUTH: AuthOptions = {
  users: [
    { name: 'reader', token: READ, permissions: ['read'] },
    { name: 'writer', token: { sha256: sha256(WRITE) }, permissions: ['read', 'write'] },
    { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
  ],
};

const dirs: string[] = [];
const services: Service[] = [];
async function serve(options: Partial<Parameters<typeof startService>[0]>): Promise<Service> {
  const dataDir = tempDir('prevail-auth-');
  dirs.push(dataDir);
  const service = await startService({ dataDir, ...options });
  services.push(service);
  return service;
}
afterAll(async () => {
  await Promise.all(services.map((s) => s.close({ transferLeadership: false })));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: any;
  headers: IncomingMessage['headers'];
}

/** One request with the path sent as is (fetch would resolve `..` before sending). */
function call(base: string, method: string, path: string, token?: string, body?: string) {
  return new Promise<Answer>((resolve, reject) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const req = request(`${base}${path}`, { method, headers, timeout: 20_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // the admin page is HTML
        }
        resolve({ status: res.statusCode!, body: parsed, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    // The event stream never ends: its status line is all a test needs.
    req.on('response', (res) => {
      if (res.headers['content-type']?.startsWith('text/event-stream')) {
        resolve({ status: res.statusCode!, body: '', headers: res.headers });
        req.destroy();
      }
    });
    req.end(body);
  });
}

const ROUTES: [string, string, string | undefined][] = [
  ['GET', '/kv/a', undefined],
  ['PUT', '/kv/a', 'x'],
  ['POST', '/kv/a/cas', '{"expect":null,"value":"x"}'],
  ['DELETE', '/kv/a', undefined],
  ['GET', '/status', undefined],
  ['POST', '/admin/members', '{"id":2,"address":"127.0.0.1:1"}'],
  ['DELETE', '/admin/members/2', undefined],
  ['POST', '/admin/transfer', '{}'],
  ['POST', '/admin/snapshot', undefined],
  ['GET', '/admin', undefined],
  ['GET', '/admin/status.json', undefined],
  ['GET', '/admin/events', undefined],
  ['GET', '/no-such-route', undefined],
  ['GET', '/kv/../status', undefined],
];

describe('a service with auth', () => {
  let url: string;
  beforeAll(async () => {
    const service = await serve({ auth: AUTH });
    url = service.url;
    await waitFor(
      'a leader',
      async () => (await call(url, 'GET', '/health/leader')).status === 200,
    );
  });

  test.each(ROUTES)('no credentials: %s %s is 401 with WWW-Authenticate', async (m, path, body) => {
    const a = await call(url, m, path, undefined, body);
    expect({ status: a.status, code: a.body?.error?.code }).toEqual({
      status: 401,
      code: 'PREVAIL_UNAUTHORIZED',
    });
    expect(a.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  test.each(ROUTES)('a wrong token: %s %s is 401', async (m, path, body) => {
    const a = await call(url, m, path, 'not-a-token-of-anyone-here', body);
    expect({ status: a.status, code: a.body?.error?.code }).toEqual({
      status: 401,
      code: 'PREVAIL_UNAUTHORIZED',
    });
  });

  test('a write without credentials carrying a large body gets its 401, not a reset', async () => {
    const res = await fetch(`${url}/kv/big`, {
      method: 'PUT',
      body: Buffer.alloc(8 * 1024 * 1024, 120),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await res.json()) as { error: { code: string } };
    expect({
      status: res.status,
      code: body.error.code,
      connection: res.headers.get('connection'),
    }).toEqual({ status: 401, code: 'PREVAIL_UNAUTHORIZED', connection: 'close' });
  });

  test('health checks answer without credentials (the documented default)', async () => {
    expect((await call(url, 'GET', '/health/leader')).status).toBe(200);
    expect((await call(url, 'GET', '/health/ready')).status).toBe(200);
  });

  test('a read token reads, and is refused writes and the admin routes with 403', async () => {
    expect((await call(url, 'GET', '/kv/none', READ)).status).toBe(404);
    const put = await call(url, 'PUT', '/kv/a', READ, 'x');
    expect({ status: put.status, error: put.body.error }).toEqual({
      status: 403,
      error: {
        code: 'PREVAIL_FORBIDDEN',
        message: expect.stringMatching(/reader lacks the write permission/),
        permission: 'write',
      },
    });
    for (const [m, path, body] of ROUTES.slice(4)) {
      const a = await call(url, m, path, READ, body);
      expect({
        route: `${m} ${path}`,
        status: a.status,
        permission: a.body.error?.permission,
      }).toEqual({ route: `${m} ${path}`, status: 403, permission: 'admin' });
    }
  });

  test('a write token given hashed writes and reads; still no admin', async () => {
    expect((await call(url, 'PUT', '/kv/w', WRITE, 'hello')).status).toBe(200);
    const got = await call(url, 'GET', '/kv/w', WRITE);
    expect({ status: got.status, value: got.body.value }).toEqual({ status: 200, value: 'hello' });
    expect(
      (await call(url, 'POST', '/kv/w/cas', WRITE, '{"expect":"hello","value":"2"}')).status,
    ).toBe(200);
    expect((await call(url, 'DELETE', '/kv/w', WRITE)).status).toBe(200);
    expect((await call(url, 'POST', '/admin/snapshot', WRITE)).status).toBe(403);
  });

  test('an admin token manages: status, snapshot, the admin page and its event stream', async () => {
    const status = await call(url, 'GET', '/status', ADMIN);
    expect({ code: status.status, insecure: status.body.insecure }).toEqual({
      code: 200,
      insecure: false,
    });
    expect((await call(url, 'POST', '/admin/snapshot', ADMIN)).status).toBe(200);
    expect((await call(url, 'GET', '/admin', ADMIN)).status).toBe(200);
    expect((await call(url, 'GET', '/admin/status.json', ADMIN)).status).toBe(200);
    expect((await call(url, 'GET', '/admin/events', ADMIN)).status).toBe(200);
    // A bad request from an admin is the route's own error, not an auth one.
    expect((await call(url, 'POST', '/admin/members', ADMIN, '{}')).status).toBe(400);
  });

  test('the scheme is case-insensitive; anything but a bearer token is not a credential', async () => {
    const raw = (authorization: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${url}/kv/none`, { headers: { authorization } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await raw(`bearer ${READ}`)).toBe(404);
    expect(await raw(`Basic ${Buffer.from(`reader:${READ}`).toString('base64')}`)).toBe(401);
    expect(await raw(`Bearer ${READ} extra`)).toBe(401);
  });
});

test('the admin page mounted on its own takes the same auth settings', async () => {
  const service = await serve({});
  const admin = adminHandler(service.store, { auth: AUTH });
  const server = createServer((req, res) => {
    if (!admin(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    expect((await call(base, 'GET', '/admin/status.json')).status).toBe(401);
    expect((await call(base, 'GET', '/admin/events', READ)).status).toBe(403);
    expect((await call(base, 'GET', '/admin/status.json', ADMIN)).status).toBe(200);
    expect((await call(base, 'GET', '/elsewhere')).status).toBe(404); // not the handler's
  } finally {
    admin.close();
    await new Promise((r) => server.close(r));
  }
});

describe('the settings', () => {
  test.each([
    [{ users: [{ name: 'a', token: 'short', permissions: ['read'] }] }, /at least 16/],
    [{ users: [{ name: 'a b', permissions: ['read'] }] }, /name must be/],
    [{ users: [{ name: 'a', permissions: ['root'] }] }, /permissions must be/],
    [{ users: [{ name: 'a', token: { sha256: 'abc' }, permissions: [] }] }, /64 hex digits/],
    [
      {
        users: [
          { name: 'a', token: READ, permissions: ['read'] },
          { name: 'b', token: { sha256: sha256(READ) }, permissions: ['admin'] },
        ],
      },
      /same token/,
    ],
    [{ users: [], health: 'closed' }, /auth.health/],
    [{}, /auth must be/],
  ])('%j is refused', (options, message) => {
    expect(() => new HttpAuth(options as AuthOptions)).toThrow(
      expect.objectContaining({
        code: 'PREVAIL_INVALID_ARGUMENT',
        message: expect.stringMatching(message),
      }),
    );
  });

  test("health: 'read' makes the health checks need read", () => {
    expect(permissionFor('GET', '/health/ready', 'open')).toBeNull();
    expect(permissionFor('GET', '/health/ready', 'read')).toBe('read');
    const auth = new HttpAuth({ ...AUTH, health: 'read' });
    const req = { headers: {}, socket: {} } as IncomingMessage;
    expect(auth.check(req, permissionFor('GET', '/health/ready', auth.health))?.status).toBe(401);
  });

  test.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['127.example.com', false],
  ])('isLoopback(%s) is %s', (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });
});

describe('binding beyond loopback', () => {
  test('without auth is refused before anything opens', async () => {
    await expect(serve({ httpAddress: '0.0.0.0:0' })).rejects.toEqual(
      expect.objectContaining({
        code: 'PREVAIL_INVALID_ARGUMENT',
        message: expect.stringMatching(/reachable from other machines.*insecure/),
      }),
    );
  });

  test('with insecure: served, warned on stderr, and said in /status', async () => {
    // The warning goes to console.error: keep what it says while the service starts.
    const said: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => said.push(args.join(' '));
    let service: Service;
    try {
      service = await serve({ httpAddress: '0.0.0.0:0', insecure: true });
    } finally {
      console.error = original;
    }
    expect(said.join('\n')).toMatch(/WARNING: INSECURE/);
    const port = new URL(service.url).port;
    const status = await call(`http://127.0.0.1:${port}`, 'GET', '/status');
    expect({ status: status.status, insecure: status.body.insecure }).toEqual({
      status: 200,
      insecure: true,
    });
  });

  test('with auth: served, and requests need credentials', async () => {
    const service = await serve({ httpAddress: '0.0.0.0:0', auth: AUTH });
    const port = new URL(service.url).port;
    expect((await call(`http://127.0.0.1:${port}`, 'GET', '/status')).status).toBe(401);
    expect((await call(`http://127.0.0.1:${port}`, 'GET', '/status', ADMIN)).status).toBe(200);
  });
});

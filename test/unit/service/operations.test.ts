// The operations handler (operationsHandler) in an app of its own: a real single-node store on
// disk, mounted in a node:http server beside the app's routes. It refuses to be made without
// auth unless `insecure: true`; credentials come first on every path of its own (401/403, the
// admin page included, dot segments resolved); each route answers; paths not its own go to
// next() (or 404 without one); a prefix, Express's stripped mount path and a body a framework
// already parsed all work.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';

import {
  collection,
  defineSchema,
  open,
  operationsHandler,
  type AuthOptions,
  type OperationsHandler,
} from '../../../lib/index.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

const READ = 'reader-token-0123456789';
const ADMIN = 'admin-token-0123456789ab';
const AUTH: AuthOptions = {
  users: [
    { name: 'reader', token: READ, permissions: ['read'] },
    { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
  ],
};

const schema = defineSchema({
  collections: { notes: collection<{ text: string }>()() },
  commands: {
    add: (s, { text }: { text: string }) => s.notes.insert({ text }).id,
  },
});

let store: Awaited<ReturnType<typeof openNotes>>;
// insecure: members without TLS, so a member can be added (the handler's own auth is apart).
const openNotes = (dataDir: string) => open({ schema, dataDir, insecure: true });
const dir = tempDir('prevail-ops-');
const servers: Server[] = [];
const handlers: OperationsHandler[] = [];

beforeAll(async () => {
  store = await openNotes(dir);
  await waitFor('a leader', () => store.health().leader, 20_000);
});
afterAll(async () => {
  for (const h of handlers) h.close();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An app: `mount` runs the handler (as the app wires it), and the app's own route after it. */
async function app(
  mount: (req: IncomingMessage, res: any, next: () => void) => void,
): Promise<string> {
  const server = createServer((req, res) =>
    mount(req, res, () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('the app');
    }),
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function handler(options: Parameters<typeof operationsHandler>[1]): OperationsHandler {
  const h = operationsHandler(store, options);
  handlers.push(h);
  return h;
}

interface Answer {
  status: number;
  body: any;
  headers: IncomingMessage['headers'];
}

/** One request, the path sent as is (fetch would resolve `..`); an event stream's head only. */
function call(base: string, method: string, path: string, token?: string, body?: unknown) {
  return new Promise<Answer>((resolve, reject) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = request(`${base}${path}`, { method, headers, timeout: 20_000 }, (res) => {
      if (res.headers['content-type']?.startsWith('text/event-stream')) {
        resolve({ status: res.statusCode!, body: '', headers: res.headers });
        req.destroy();
        return;
      }
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // the admin page, the app's own text
        }
        resolve({ status: res.statusCode!, body: parsed, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const code = (a: Answer) => ({ status: a.status, code: a.body?.error?.code });

test('with a backup destination, POST /admin/backup writes there and answers what it wrote', async () => {
  const destination = join(dir, '..', `${basename(dir)}-backups`);
  const ops = handler({ auth: AUTH, backup: { destination } });
  const base = await app((req, res, next) => ops(req, res, next));
  try {
    const r = await call(base, 'POST', '/admin/backup', ADMIN);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ index: expect.any(Number), sha256: expect.any(String) });
    expect(readdirSync(destination)).toEqual([r.body.name]);
  } finally {
    rmSync(destination, { recursive: true, force: true });
  }
});

test('made without auth it refuses, unless insecure: true; a bad prefix is refused', () => {
  expect(() => operationsHandler(store)).toThrow(
    expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' }),
  );
  expect(() => operationsHandler(store, { insecure: false })).toThrow(/needs auth/);
  expect(() => operationsHandler(store, { auth: AUTH, prefix: 'ops' })).toThrow(/prefix/);
  expect(() => operationsHandler(store, { auth: { users: [{ name: 'x' }] } as never })).toThrow(
    expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' }),
  );
  handler({ insecure: true }).close();
});

describe('mounted at the root with auth', () => {
  let base: string;
  beforeAll(async () => {
    const ops = handler({ auth: AUTH });
    base = await app((req, res, next) => ops(req, res, next));
  });

  const ADMIN_ROUTES: [string, string, unknown][] = [
    ['GET', '/status', undefined],
    ['GET', '/admin/members', undefined],
    ['POST', '/admin/members', { id: 2, address: '127.0.0.1:1' }],
    ['DELETE', '/admin/members/2', undefined],
    ['POST', '/admin/members/2/role', { role: 'voter' }],
    ['POST', '/admin/transfer', {}],
    ['POST', '/admin/snapshot', undefined],
    ['POST', '/admin/backup', undefined],
    ['POST', '/admin/schema/activate', {}],
    ['GET', '/admin', undefined],
    ['GET', '/admin/status.json', undefined],
    ['GET', '/admin/events', undefined],
    ['GET', '/admin/no-such-route', undefined],
    ['GET', '/app/../status', undefined],
  ];

  test.each(ADMIN_ROUTES)('%s %s: 401 without credentials, 403 for a reader', async (m, p, b) => {
    const none = await call(base, m, p, undefined, b);
    expect(code(none)).toEqual({ status: 401, code: 'PREVAIL_UNAUTHORIZED' });
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const wrong = await call(base, m, p, 'not-a-valid-token-at-all', b);
    expect(code(wrong)).toEqual({ status: 401, code: 'PREVAIL_UNAUTHORIZED' });
    const reader = await call(base, m, p, READ, b);
    expect(code(reader)).toEqual({ status: 403, code: 'PREVAIL_FORBIDDEN' });
    expect(reader.body.error.permission).toBe('admin');
  });

  test('the health checks are open by default', async () => {
    const live = await call(base, 'GET', '/health');
    expect(live.status).toBe(200);
    expect(live.body).toMatchObject({ live: true, id: 1, leader: true });
    expect((await call(base, 'GET', '/health/leader')).body).toEqual({ leader: true, id: 1 });
    expect((await call(base, 'GET', '/health/ready')).body).toMatchObject({ ready: true });
  });

  test('GET /status: this node, and the members with their lag (known: it leads)', async () => {
    await store.propose('add', { text: 'one' });
    const s = await call(base, 'GET', '/status', ADMIN);
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ id: 1, role: 'leader', insecure: false });
    expect(s.body.appliedIndex).toBeGreaterThan(0);
    expect(s.body.cluster.lagKnown).toBe(true);
    expect(s.body.cluster.members).toEqual([
      expect.objectContaining({ id: 1, role: 'voter', leader: true, self: true, lag: 0 }),
    ]);
    expect(s.body.schema.active).toBe(1);
  });

  test('members: add a spare, assign it standby, remove it; bad ids and roles are 400', async () => {
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const added = await call(base, 'POST', '/admin/members', ADMIN, {
      id: 2,
      address,
      role: 'spare',
    });
    expect(added.status).toBe(200);
    expect(added.body.members).toContainEqual(expect.objectContaining({ id: 2, role: 'spare' }));
    const listed = await call(base, 'GET', '/admin/members', ADMIN);
    expect(listed.body).toMatchObject({ id: 1, leader: { id: 1 }, lagKnown: true });
    expect(listed.body.members.map((m: { id: number }) => m.id)).toEqual([1, 2]);

    const bad = [
      ['/admin/members/2/role', { role: 'king' }],
      ['/admin/members/2/role', null],
      ['/admin/members/x/role', { role: 'standby' }],
      ['/admin/members', { address }],
    ] as const;
    for (const [p, b] of bad) {
      const a = await call(base, 'POST', p, ADMIN, b);
      expect({ p, b, ...code(a) }).toEqual({ p, b, status: 400, code: 'PREVAIL_INVALID_ARGUMENT' });
    }
    const assigned = await call(base, 'POST', '/admin/members/2/role', ADMIN, { role: 'standby' });
    expect(assigned.status).toBe(200);
    expect(assigned.body.members).toContainEqual(
      expect.objectContaining({ id: 2, role: 'standby' }),
    );
    const removed = await call(base, 'DELETE', '/admin/members/2', ADMIN);
    expect(removed.status).toBe(200);
    expect(removed.body.members.map((m: { id: number }) => m.id)).toEqual([1]);
  });

  test('snapshot, schema activation, backup and reload', async () => {
    const snap = await call(base, 'POST', '/admin/snapshot', ADMIN);
    expect(snap.status).toBe(200);
    expect(snap.body.index).toBeGreaterThan(0);
    expect((await call(base, 'POST', '/admin/schema/activate', ADMIN)).body).toEqual({
      active: 1,
    });
    // No destination configured: the answer is the backup file itself.
    const file = await call(base, 'POST', '/admin/backup', ADMIN);
    expect(file.status).toBe(200);
    expect(file.headers['content-type']).toBe('application/octet-stream');
    expect(file.headers['x-prevail-backup-sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(Number(file.headers['x-prevail-backup-index'])).toBeGreaterThan(0);
    expect(Number(file.headers['content-length'])).toBeGreaterThan(100);
    expect(code(await call(base, 'POST', '/admin/backup?capture=maybe', ADMIN))).toEqual({
      status: 400,
      code: 'PREVAIL_INVALID_ARGUMENT',
    });
    // An app reloads its own settings; only prevail serve takes POST /admin/reload.
    expect(code(await call(base, 'POST', '/admin/reload', ADMIN))).toEqual({
      status: 501,
      code: 'PREVAIL_NOT_AVAILABLE',
    });
  });

  test('the admin page, its status document and its event stream', async () => {
    const page = await call(base, 'GET', '/admin', ADMIN);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const json = await call(base, 'GET', '/admin/status.json', ADMIN);
    expect(json.body).toMatchObject({ id: 1, role: 'leader', lagKnown: true });
    const events = await call(base, 'GET', '/admin/events', ADMIN);
    expect(events.status).toBe(200);
  });

  test('a wrong method is 405 with Allow; an unknown path of its own is 404', async () => {
    const a = await call(base, 'POST', '/status', ADMIN);
    expect(code(a)).toEqual({ status: 405, code: 'PREVAIL_METHOD_NOT_ALLOWED' });
    expect(a.headers.allow).toBe('GET');
    expect(code(await call(base, 'GET', '/admin/nothing', ADMIN))).toEqual({
      status: 404,
      code: 'PREVAIL_NOT_FOUND',
    });
  });

  test("paths not its own go to the app's next(), unauthenticated", async () => {
    for (const p of ['/', '/notes', '/statusx', '/administration']) {
      const a = await call(base, 'GET', p);
      expect({ p, status: a.status, body: a.body }).toEqual({ p, status: 200, body: 'the app' });
    }
  });
});

test("health: 'read' makes the health checks need the read permission", async () => {
  const ops = handler({ auth: { ...AUTH, health: 'read' } });
  const base = await app((req, res, next) => ops(req, res, next));
  expect(code(await call(base, 'GET', '/health'))).toEqual({
    status: 401,
    code: 'PREVAIL_UNAUTHORIZED',
  });
  expect((await call(base, 'GET', '/health/leader', READ)).status).toBe(200);
});

test('without next(), a path not its own is a 404; insecure: true answers anyone and says so', async () => {
  const ops = handler({ insecure: true });
  const base = await app((req, res) => ops(req, res));
  expect(code(await call(base, 'GET', '/elsewhere'))).toEqual({
    status: 404,
    code: 'PREVAIL_NOT_FOUND',
  });
  const s = await call(base, 'GET', '/status');
  expect(s.status).toBe(200);
  expect(s.body.insecure).toBe(true);
});

test('under a prefix, also when the framework strips the mount path and parsed the body', async () => {
  const ops = handler({ auth: AUTH, prefix: '/_prevail' });
  // As Express does for app.use('/_prevail', …) after express.json(): req.url without the
  // mount path, originalUrl with it, the body read and parsed into req.body.
  const base = await app((req, res, next) => {
    const full = req.url!;
    if (!full.startsWith('/_prevail/')) return ops(req, res, next);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      Object.assign(req, {
        originalUrl: full,
        url: full.slice('/_prevail'.length),
        body: chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {},
      });
      ops(req, res, next);
    });
  });
  expect((await call(base, 'GET', '/_prevail/status', ADMIN)).body.id).toBe(1);
  expect((await call(base, 'GET', '/status', ADMIN)).body).toBe('the app');
  expect(code(await call(base, 'GET', '/_prevail/status'))).toEqual({
    status: 401,
    code: 'PREVAIL_UNAUTHORIZED',
  });
  const activated = await call(base, 'POST', '/_prevail/admin/schema/activate', ADMIN, {
    version: 1,
  });
  expect(activated.body).toEqual({ active: 1 });
  const bad = await call(base, 'POST', '/_prevail/admin/schema/activate', ADMIN, { version: 0 });
  expect(code(bad)).toEqual({ status: 400, code: 'PREVAIL_INVALID_ARGUMENT' });
  // The admin page's own links are under the prefix.
  const page = await call(base, 'GET', '/_prevail/admin', ADMIN);
  expect(page.body).toContain('/_prevail/admin');
  expect((await call(base, 'GET', '/_prevail/admin/status.json', ADMIN)).body.id).toBe(1);
});

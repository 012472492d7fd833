// prevail/fastify and prevail/express with the real frameworks: each serves the same little
// app over real HTTP on 127.0.0.1, on a single-node store on disk, and on a follower of a
// 3-node cluster in this process (forwarding off, so the follower refuses with the leader's
// name). The same cases run against both: the status of each prevail error, an app's own
// error left to the app, the read helper's consistency, and the mount behind its auth.
import { rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import express, { type NextFunction, type Request, type Response } from 'express';
import Fastify, { type FastifyInstance } from 'fastify';

import type { Consistency, ReadOptions } from '../../../lib/cluster/cluster-link.js';
import { ErrorCodes, PrevailError } from '../../../lib/core/errors.js';
import { prevail, prevailErrors } from '../../../lib/integrations/express.js';
import { prevailPlugin } from '../../../lib/integrations/fastify.js';
import type { MountOptions } from '../../../lib/integrations/common.js';
import { httpErrorOf } from '../../../lib/service/http-errors.js';
import { operationsHandler, type OperationsHandler } from '../../../lib/service/operations.js';
import { collection, defineSchema, open, type Store } from '../../../lib/store.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

const schema = defineSchema({
  collections: {
    users: collection<{ email: string; name: string }>()({
      indexes: (ix) => ({ byEmail: ix.unique((u) => u.email) }),
    }),
  },
  commands: {
    addUser: (s, a: { email: string; name: string }) => s.users.insert(a).id,
    rename: (s, a: { id: number; name: string }) => s.users.update(a.id, { name: a.name }).name,
  },
});
type AppStore = Store<(typeof schema)['collections'], (typeof schema)['commands']>;

const ADMIN = 'admin-token-0123456789';
const READER = 'reader-token-0123456789';
const auth = {
  users: [
    { name: 'ops', token: ADMIN, permissions: ['admin' as const] },
    { name: 'viewer', token: READER, permissions: ['read' as const] },
  ],
};

/** A request's options for the read helper, from its query: `consistency`, `minIndex`. */
function readOptions(query: Record<string, unknown>): Consistency | ReadOptions {
  if (query.minIndex === undefined) return query.consistency as Consistency;
  return { minIndex: Number(query.minIndex), timeoutMs: 300 };
}

// What both apps do, whatever the framework: the routes' work, given the store's context.
const work = {
  add: (store: AppStore, body: { email: string; name: string }) => store.propose('addUser', body),
  rename: (store: AppStore, id: string, name: string) =>
    store.propose('rename', { id: Number(id), name }),
  // A name straight from the URL: a command the schema doesn't define is the client's fault.
  command: (store: AppStore, name: string) => store.propose(name as 'addUser', {} as never),
  get: async (
    read: (o: Consistency | ReadOptions) => Promise<AppStore['view']>,
    id: string,
    query: Record<string, unknown>,
  ) => {
    const view = await read(readOptions(query));
    return view.users.get(Number(id)) ?? null;
  },
};

class Teapot extends Error {
  readonly statusCode = 418;
}

interface Running {
  url: string;
  close(): Promise<void>;
}

async function fastifyApp(store: AppStore, mount?: string | MountOptions): Promise<Running> {
  const app: FastifyInstance = Fastify();
  await app.register(prevailPlugin, { store, mount, auth });
  app.post('/users', async (req, reply) => {
    reply.code(201);
    return { id: await work.add(req.prevail.store as AppStore, req.body as never) };
  });
  app.put('/users/:id/name', async (req) => {
    const { id } = req.params as { id: string };
    return {
      name: await work.rename(
        req.prevail.store as AppStore,
        id,
        (req.body as { name: string }).name,
      ),
    };
  });
  app.post('/commands/:name', async (req) => {
    return {
      result: await work.command(
        req.prevail.store as AppStore,
        (req.params as { name: string }).name,
      ),
    };
  });
  app.get('/users/:id', async (req) => {
    const user = await work.get(
      (o) => req.prevail.read(o),
      (req.params as { id: string }).id,
      req.query as Record<string, unknown>,
    );
    return { user };
  });
  app.get('/teapot', async () => {
    throw new Teapot('the app says no');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

async function expressApp(store: AppStore, mount?: string | MountOptions): Promise<Running> {
  const app = express();
  const middleware = prevail({ store, mount, auth });
  app.use(middleware);
  app.use(express.json());
  app.post('/users', async (req: Request, res: Response) => {
    res.status(201).json({ id: await work.add(req.prevail.store as AppStore, req.body) });
  });
  app.put('/users/:id/name', async (req: Request, res: Response) => {
    res.json({
      name: await work.rename(
        req.prevail.store as AppStore,
        req.params.id as string,
        req.body.name,
      ),
    });
  });
  app.post('/commands/:name', async (req: Request, res: Response) => {
    res.json({
      result: await work.command(req.prevail.store as AppStore, req.params.name as string),
    });
  });
  app.get('/users/:id', async (req: Request, res: Response) => {
    const user = await work.get((o) => req.prevail.read(o), req.params.id as string, req.query);
    res.json({ user });
  });
  app.get('/teapot', () => {
    throw new Teapot('the app says no');
  });
  app.use(prevailErrors());
  // The app's own error handler: gets what prevailErrors passes on.
  app.use(
    (err: Error & { statusCode?: number }, _req: Request, res: Response, _next: NextFunction) => {
      res.status(err.statusCode ?? 500).json({ app: err.message });
    },
  );
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      middleware.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

async function call(url: string, method = 'GET', body?: unknown, token?: string): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

const frameworks = [
  ['fastify', fastifyApp],
  ['express', expressApp],
] as const;

describe.each(frameworks)('%s on a single-node store', (framework, start) => {
  let dir: string;
  let store: AppStore;
  let app: Running;

  beforeAll(async () => {
    dir = tempDir(`prevail-${framework}-`);
    store = await open({ schema, dataDir: dir });
    app = await start(store, '/_prevail');
  });
  afterAll(async () => {
    await app?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a write, then a read through the read helper', async () => {
    const added = await call(`${app.url}/users`, 'POST', { email: 'ada@x', name: 'Ada' });
    expect(added.status).toBe(201);
    const read = await call(`${app.url}/users/${added.body.id}?consistency=linearizable`);
    expect(read).toMatchObject({ status: 200, body: { user: { email: 'ada@x', name: 'Ada' } } });
  });

  test('PREVAIL_UNIQUE_VIOLATION is 409 in the service shape', async () => {
    await call(`${app.url}/users`, 'POST', { email: 'bob@x', name: 'Bob' });
    const again = await call(`${app.url}/users`, 'POST', { email: 'bob@x', name: 'Bobby' });
    expect(again.status).toBe(409);
    expect(again.body).toEqual({
      error: { code: ErrorCodes.UNIQUE_VIOLATION, message: expect.any(String) },
    });
    expect(again.headers.get('retry-after')).toBeNull();
  });

  test('PREVAIL_NOT_FOUND (update of a missing id) is 404', async () => {
    const answer = await call(`${app.url}/users/999/name`, 'PUT', { name: 'Nobody' });
    expect(answer.status).toBe(404);
    expect(answer.body.error.code).toBe(ErrorCodes.NOT_FOUND);
  });

  test('validation: a bad consistency level and an unknown command are 400', async () => {
    const level = await call(`${app.url}/users/1?consistency=eventual`);
    expect(level.status).toBe(400);
    expect(level.body.error.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    const command = await call(`${app.url}/commands/dropEverything`, 'POST', {});
    expect(command.status).toBe(400);
    expect(command.body.error.code).toBe(ErrorCodes.UNKNOWN_COMMAND);
  });

  test("the read helper's minIndex bound: a wait past the log's end is 504 PREVAIL_TIMEOUT", async () => {
    const answer = await call(`${app.url}/users/1?minIndex=1000000`);
    expect(answer.status).toBe(504);
    expect(answer.body.error.code).toBe(ErrorCodes.TIMEOUT);
  });

  test("an app's own error reaches the framework's handling untouched", async () => {
    const answer = await call(`${app.url}/teapot`);
    expect(answer.status).toBe(418);
    expect(JSON.stringify(answer.body)).toContain('the app says no');
    expect(JSON.stringify(answer.body)).not.toContain('PREVAIL_');
  });

  test('the mount: the admin page behind auth (401 without credentials, 403 without admin)', async () => {
    const none = await call(`${app.url}/_prevail/status.json`);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe(ErrorCodes.UNAUTHORIZED);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const reader = await call(`${app.url}/_prevail/status.json`, 'GET', undefined, READER);
    expect(reader.status).toBe(403);
    expect(reader.body.error).toMatchObject({ code: ErrorCodes.FORBIDDEN, permission: 'admin' });
    const admin = await call(`${app.url}/_prevail/status.json`, 'GET', undefined, ADMIN);
    expect(admin.status).toBe(200);
    expect(admin.body).toMatchObject({ role: 'leader', members: [{ id: 1, self: true }] });
    const page = await call(`${app.url}/_prevail`, 'GET', undefined, ADMIN);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    // Below the mount, a path the handler doesn't serve: not found, not the page.
    const other = await call(`${app.url}/_prevail/nothing-here`, 'GET', undefined, ADMIN);
    expect(other.status).toBe(404);
  });
});

describe.each(frameworks)('%s with a mounted handler of its own', (framework, start) => {
  let dir: string;
  let store: AppStore;
  let app: Running;

  beforeAll(async () => {
    dir = tempDir(`prevail-${framework}-mount-`);
    store = await open({ schema, dataDir: dir });
    const handler: MountOptions['handler'] = (req, res) => {
      if (req.url !== '/ops/ping') return false;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`pong ${req.method}`);
      return true;
    };
    app = await start(store, { path: '/ops', handler });
  });
  afterAll(async () => {
    await app?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('gets the raw request at its path (also a POST with a body), after the auth check', async () => {
    expect((await call(`${app.url}/ops/ping`)).status).toBe(401);
    const get = await call(`${app.url}/ops/ping`, 'GET', undefined, ADMIN);
    expect(get).toMatchObject({ status: 200, body: 'pong GET' });
    const post = await call(`${app.url}/ops/ping`, 'POST', { any: 'body' }, ADMIN);
    expect(post).toMatchObject({ status: 200, body: 'pong POST' });
    expect((await call(`${app.url}/ops/other`, 'GET', undefined, ADMIN)).status).toBe(404);
  });
});

// The package's operations handler in each framework: the mount authorises (admin), the handler
// serves its routes under the mount's path.
describe.each(frameworks)('%s with the operations handler mounted', (framework, start) => {
  let dir: string;
  let store: AppStore;
  let app: Running;
  let ops: OperationsHandler;

  beforeAll(async () => {
    dir = tempDir(`prevail-${framework}-ops-`);
    store = await open({ schema, dataDir: dir });
    ops = operationsHandler(store, { insecure: true, prefix: '/_prevail' });
    app = await start(store, { path: '/_prevail', handler: ops });
  });
  afterAll(async () => {
    await app?.close();
    ops?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('status, snapshot and the admin page answer under the mount, behind its auth', async () => {
    expect((await call(`${app.url}/_prevail/status`)).status).toBe(401);
    const status = await call(`${app.url}/_prevail/status`, 'GET', undefined, ADMIN);
    expect(status).toMatchObject({ status: 200, body: { id: 1, role: 'leader' } });
    await store.propose('addUser', { email: 'ops@example.com', name: 'ops' });
    const snap = await call(`${app.url}/_prevail/admin/snapshot`, 'POST', {}, ADMIN);
    expect(snap.status).toBe(200);
    const page = await call(`${app.url}/_prevail/admin`, 'GET', undefined, ADMIN);
    expect(page.status).toBe(200);
    expect(String(page.body)).toContain('<html');
  });
});

describe('a follower of a 3-node cluster (forwarding off)', () => {
  const dirs: string[] = [];
  const stores: AppStore[] = [];
  const apps: Running[] = [];
  let leader: AppStore;
  let follower: AppStore;

  beforeAll(async () => {
    const ports = await freePorts(3);
    const cluster = ports.map((port, i) => ({ id: i + 1, address: `127.0.0.1:${port}` }));
    const opened = cluster.map(({ id }) => {
      const dataDir = tempDir(`prevail-fw-${id}-`);
      dirs.push(dataDir);
      return open({ schema, dataDir, id, cluster, insecure: true, forward: false });
    });
    stores.push(...(await Promise.all(opened)));
    leader = await waitFor(
      'a leader',
      () => stores.find((s) => s.node.status().role === 'leader'),
      30_000,
    );
    await leader.propose('addUser', { email: 'eve@x', name: 'Eve' });
    follower = stores.find((s) => s !== leader)!;
    // The follower has applied the write: its stale reads see it.
    await waitFor(
      'the follower to apply',
      () => follower.view.users.size === 1 || undefined,
      30_000,
    );
    for (const [, start] of frameworks) apps.push(await start(follower));
  }, 120_000);
  afterAll(async () => {
    for (const app of apps) await app.close();
    await Promise.all(stores.map((s) => s.close()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  test.each([0, 1])('NOT_LEADER is 503 with Retry-After and the leader (app %i)', async (i) => {
    const { id, address } = leader.node.status().members.find((m) => m.id === leader.node.id)!;
    const write = await call(`${apps[i]!.url}/users`, 'POST', { email: 'x@x', name: 'X' });
    expect(write.status).toBe(503);
    expect(write.headers.get('retry-after')).toBe('1');
    expect(write.body.error).toMatchObject({
      code: ErrorCodes.NOT_LEADER,
      leader: { id, address },
    });
    // The read helper passes the level on: linearizable needs the leader, stale reads here.
    const linearizable = await call(`${apps[i]!.url}/users/1?consistency=linearizable`);
    expect(linearizable.status).toBe(503);
    expect(linearizable.body.error).toMatchObject({ code: ErrorCodes.NOT_LEADER, leader: { id } });
    const stale = await call(`${apps[i]!.url}/users/1?consistency=stale`);
    expect(stale).toMatchObject({ status: 200, body: { user: { name: 'Eve' } } });
  });
});

describe('httpErrorOf (the one table) and the options', () => {
  test('503s carry Retry-After and a leader; path only on a 400; other errors are not ours', () => {
    const hint = { id: 2, address: '127.0.0.1:2' };
    const closed = httpErrorOf(new PrevailError(ErrorCodes.CLOSED, 'closed'), () => hint);
    expect(closed).toMatchObject({ status: 503, headers: { 'retry-after': '1' } });
    expect(closed!.body.error).toEqual({
      code: ErrorCodes.CLOSED,
      message: 'closed',
      leader: hint,
    });
    const plain = new PrevailError(ErrorCodes.NOT_PLAIN_DATA, 'a Map', { path: 'args.m' });
    expect(httpErrorOf(plain)!.body.error).toMatchObject({ path: 'args.m' });
    const io = new PrevailError(ErrorCodes.IO, 'disk', { path: '/srv/data/log' });
    expect(httpErrorOf(io)).toMatchObject({ status: 500 });
    expect(httpErrorOf(io)!.body.error.path).toBeUndefined();
    const held = new PrevailError(ErrorCodes.VERSION_NOT_ACTIVE, 'v2', {
      version: 2,
      holdingBack: [3],
    });
    expect(httpErrorOf(held)).toMatchObject({
      status: 409,
      body: { error: { version: 2, holdingBack: [3] } },
    });
    expect(httpErrorOf(new Error('app'))).toBeNull();
    expect(httpErrorOf({ code: 'ENOENT' })).toBeNull();
  });

  test('a mount without auth is refused (auth: null opens it deliberately)', async () => {
    const dir = tempDir('prevail-fw-opts-');
    const store = await open({ schema, dataDir: dir });
    try {
      expect(() => prevail({ store, mount: '/_prevail' })).toThrow(
        expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
      );
      expect(() => prevail({ store, mount: 'no-slash', auth: null })).toThrow(
        expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
      );
      prevail({ store, mount: '/_prevail', auth: null }).close();
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The service's schema-version surfaces: POST /admin/schema/activate (the admin permission, its
// body checked, the active version answered, a version no voter's code has refused with the
// voters holding it back), `schema` in /status and in the health figures, and the `activation`
// option reaching the store. A real service in this process, real HTTP on 127.0.0.1.
import { request } from 'node:http';
import { rmSync } from 'node:fs';

import type { AuthOptions } from '../../../lib/core/auth.js';
import { startService, type Service } from '../../../lib/index.js';
import { tempDir } from '../../helpers/cluster.js';

const READ = 'reader-token-0123456789';
const WRITE = 'writer-token-0123456789';
const ADMIN = 'admin-token-0123456789ab';

const AUTH: AuthOptions = {
  users: [
    { name: 'reader', token: READ, permissions: ['read'] },
    { name: 'writer', token: WRITE, permissions: ['read', 'write'] },
    { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
  ],
};

const dirs: string[] = [];
let service: Service;
beforeAll(async () => {
  const dataDir = tempDir('prevail-schema-activate-');
  dirs.push(dataDir);
  service = await startService({ dataDir, auth: AUTH });
});
afterAll(async () => {
  await service?.close({ transferLeadership: false });
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function call(
  method: string,
  path: string,
  token?: string,
  body?: string,
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const req = request(`${service.url}${path}`, { method, headers, timeout: 20_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}

const activate = (token: string | undefined, body?: string) =>
  call('POST', '/admin/schema/activate', token, body);

test('POST /admin/schema/activate needs the admin permission', async () => {
  expect((await activate(undefined)).status).toBe(401);
  for (const token of [READ, WRITE]) {
    const r = await activate(token, '{}');
    expect({
      status: r.status,
      code: r.body.error.code,
      permission: r.body.error.permission,
    }).toEqual({ status: 403, code: 'PREVAIL_FORBIDDEN', permission: 'admin' });
  }
  // Everything is active already (the service's schema has one version): the active version.
  expect(await activate(ADMIN, '{}')).toEqual({ status: 200, body: { active: 1 } });
  expect(await activate(ADMIN)).toEqual({ status: 200, body: { active: 1 } });
  expect(await activate(ADMIN, '{"version":1}')).toEqual({ status: 200, body: { active: 1 } });
});

test('a bad body is 400; a version no voter supports is 409 naming who holds it back', async () => {
  for (const body of [
    'not json',
    '[1]',
    'null',
    '{"version":"2"}',
    '{"version":0}',
    '{"version":1.5}',
  ]) {
    const r = await activate(ADMIN, body);
    expect({ body, status: r.status, code: r.body.error?.code }).toEqual({
      body,
      status: 400,
      code: 'PREVAIL_INVALID_ARGUMENT',
    });
  }
  const r = await activate(ADMIN, '{"version":2}');
  expect(r.status).toBe(409);
  expect(r.body.error).toMatchObject({
    code: 'PREVAIL_VERSION_NOT_ACTIVE',
    version: 2,
    holdingBack: [1],
  });
  expect(r.body.error.message).toMatch(/voter 1 runs code without it/);
  // Nothing changed.
  expect((await call('GET', '/status', ADMIN)).body.schema.active).toBe(1);
});

test('/status carries the schema status, and its health figures the schema versions', async () => {
  const s = (await call('GET', '/status', ADMIN)).body;
  expect(s.schema).toEqual({
    active: 1,
    activations: [],
    code: { oldest: 1, newest: 1 },
    nodes: [{ id: 1, voter: true, oldest: 1, newest: 1, canRunActive: true }],
    holdingBack: [],
    failed: [],
    replayNeeds: 1,
  });
  expect(s.health.schema).toEqual({ active: 1, code: { oldest: 1, newest: 1 } });
  expect(service.store.health().schema).toEqual(s.health.schema);
});

test('the activation option reaches the store (checked there)', async () => {
  const dataDir = tempDir('prevail-schema-activate-');
  dirs.push(dataDir);
  await expect(
    startService({ dataDir, activation: 'sometimes' as 'manual' }),
  ).rejects.toMatchObject({
    code: 'PREVAIL_INVALID_ARGUMENT',
    message: expect.stringMatching(/activation/),
  });
  const manual = await startService({ dataDir, activation: 'manual' });
  try {
    expect(await manual.store.activate()).toBe(1);
  } finally {
    await manual.close({ transferLeadership: false });
  }
});

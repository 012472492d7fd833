// `prevail backup` against a running `prevail serve --auth` (POST /admin/backup needs the admin
// permission), then `prevail restore` into a new data dir and `prevail serve` on it: the keys
// are there. A damaged backup or a used data dir is refused with its code, and nothing written.
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  freePorts,
  runCli,
  ServeProcess,
  tempDir,
  waitFor,
  type ServeSpec,
} from '../helpers/cluster.js';

const ADMIN = 'admin-token-0123456789ab';
const READ = 'reader-token-0123456789';

const root = tempDir('prevail-backup-cli-');
const started: ServeProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.kill()));
  rmSync(root, { recursive: true, force: true });
});

const authFile = join(root, 'auth.json');
writeFileSync(
  authFile,
  JSON.stringify({
    users: [
      { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
      { name: 'reader', token: READ, permissions: ['read'] },
    ],
  }),
  { mode: 0o600 },
);

async function serve(dataDir: string, raft?: string): Promise<ServeProcess> {
  const [r, http] = await freePorts(2);
  const spec: ServeSpec = {
    id: 1,
    address: raft ?? `127.0.0.1:${r}`,
    http: `127.0.0.1:${http}`,
    dataDir,
  };
  const node = new ServeProcess(spec, ['--auth', authFile]);
  started.push(node);
  await waitFor('serve to start', () => /serving/.test(node.output) || !node.alive, 15_000, 50);
  if (!node.alive) throw new Error(node.output);
  return node;
}

async function kv(node: ServeProcess, method: string, key: string, body?: string) {
  const res = await fetch(`${node.url}/kv/${key}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}` },
    body: body ?? null,
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, body: (await res.json()) as { value?: string } };
}

test('prevail backup from a running node, prevail restore, and serve on the restored dir', async () => {
  const source = await serve(join(root, 'src'));
  for (let i = 0; i < 50; i++) expect((await kv(source, 'PUT', `k${i}`, `v${i}`)).status).toBe(200);
  const out = join(root, 'backups');

  const refused = await runCli(['backup', '--node', source.url, '--out', out, '--token', READ]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('PREVAIL_FORBIDDEN');
  expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);

  const taken = await runCli(['backup', '--node', source.url, '--out', out, '--token', ADMIN]);
  expect({ code: taken.code, stderr: taken.stderr }).toEqual({ code: 0, stderr: '' });
  const info = JSON.parse(taken.stdout) as { file: string; index: number; sha256: string };
  expect(readdirSync(out)).toEqual([info.file.split('/').pop()]);
  expect(info.index).toBeGreaterThanOrEqual(50);
  // Without a fresh capture (the last one plus the entries since).
  const light = await runCli([
    'backup',
    '--node',
    source.url,
    '--out',
    join(root, 'light'),
    '--token',
    ADMIN,
    '--capture',
    'false',
  ]);
  expect(light.code).toBe(0);
  expect(JSON.parse(light.stdout).index).toBeGreaterThanOrEqual(info.index);
  await kv(source, 'PUT', 'later', 'not in the backup');

  // A damaged copy: refused, nothing written.
  const bad = Buffer.from(readFileSync(info.file));
  bad[bad.length >> 1] ^= 0xff;
  writeFileSync(join(root, 'bad.pvb'), bad);
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const restoreArgs = (file: string, dir: string) => [
    'restore',
    file,
    '--data-dir',
    dir,
    '--id',
    '1',
    '--address',
    address,
  ];
  const damaged = await runCli(restoreArgs(join(root, 'bad.pvb'), join(root, 'nothing')));
  expect(damaged.code).toBe(1);
  expect(damaged.stderr).toContain('PREVAIL_BACKUP_CORRUPT');
  expect(existsSync(join(root, 'nothing'))).toBe(false);

  const dataDir = join(root, 'restored');
  const restored = await runCli(restoreArgs(info.file, dataDir));
  expect({ code: restored.code, stderr: restored.stderr }).toEqual({ code: 0, stderr: '' });
  expect(JSON.parse(restored.stdout)).toMatchObject({ index: info.index, dataDir });
  const again = await runCli(restoreArgs(info.file, dataDir));
  expect(again.code).toBe(1);
  expect(again.stderr).toContain('PREVAIL_DATADIR_NOT_EMPTY');

  const copy = await serve(dataDir, address);
  for (let i = 0; i < 50; i++)
    expect(await kv(copy, 'GET', `k${i}`)).toMatchObject({ status: 200, body: { value: `v${i}` } });
  expect((await kv(copy, 'GET', 'later')).status).toBe(404);
  expect((await kv(copy, 'PUT', 'new', 'x')).status).toBe(200);
}, 90_000);

test('prevail backup and restore: their usage; bad usage exits 2', async () => {
  for (const [args, usage] of [
    [['backup', '--help'], 'Usage: prevail backup --out DIR'],
    [['help', 'restore'], 'Usage: prevail restore BACKUP'],
  ] as const) {
    const r = await runCli([...args]);
    expect({ code: r.code, usage: r.stdout.startsWith(usage) }).toEqual({ code: 0, usage: true });
  }
  for (const args of [
    ['backup'],
    ['backup', 'extra', '--out', root],
    ['backup', '--out', root, '--capture', 'maybe'],
    ['restore'],
    ['restore', 'f.pvb', '--data-dir', root, '--id', 'one', '--address', '127.0.0.1:1'],
    ['restore', 'f.pvb', '--data-dir', root, '--id', '1'],
    ['restore', 'f.pvb', '--data-dir', root, '--id', '1', '--address', 'nowhere'],
    ['restore', 'f.pvb', '--id', '1', '--address', '127.0.0.1:1'],
    [
      'restore',
      'f.pvb',
      '--data-dir',
      root,
      '--id',
      '1',
      '--address',
      '127.0.0.1:1',
      '--cluster',
      '1=x',
    ],
  ]) {
    const r = await runCli(args);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
    expect(r.stderr).toMatch(/prevail (backup|restore)/);
  }
});

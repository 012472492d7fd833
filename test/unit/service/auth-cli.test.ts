// `prevail serve --auth FILE` (and --ca/--cert/--key, --insecure) with the CLI's client commands
// against it: --token or PREVAIL_TOKEN, a client certificate over https, and a 401 or 403 told
// plainly. Real `node dist/cli.js` processes (npm run build:ts first); every wait is bounded and
// every serve is killed at the end.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { revoke } from '../../../lib/certs/index.js';

import {
  freePorts,
  runCli,
  ServeProcess,
  tempDir,
  waitFor,
  type ServeSpec,
} from '../../helpers/cluster.js';
import { testCa } from '../../helpers/test-certs.js';

const ADMIN = 'admin-token-0123456789ab';
const READ = 'reader-token-0123456789';

const cli = join(process.cwd(), 'dist', 'cli.js');
/** What `prevail status` says on stderr about a node of the service's one schema version. */
const SCHEMA_LINE = "schema: version 1 active from the start; this node's code supports 1\n";
const root = tempDir('prevail-auth-cli-');
const started: ServeProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((p) => p.kill()));
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
/** A file in the test's directory with `mode`. */
function file(name: string, text: string, mode = 0o600): string {
  const path = join(root, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

const authFile = file(
  'auth.json',
  JSON.stringify({
    users: [
      { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
      { name: 'reader', token: { sha256: sha256(READ) }, permissions: ['read'] },
      { name: 'alice', permissions: ['read', 'write', 'admin'] },
    ],
  }),
);

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Starts `prevail serve` with `args` on `host`, and waits until it says it serves (or exits). */
async function serve(args: string[], host = '127.0.0.1'): Promise<ServeProcess> {
  const [raft, http] = await freePorts(2);
  const spec: ServeSpec = {
    id: 1,
    address: `127.0.0.1:${raft}`,
    http: `${host}:${http}`,
    dataDir: join(root, `n${++n}`),
  };
  const node = new ServeProcess(spec, args);
  started.push(node);
  await waitFor(
    'serve to start or exit',
    () => /serving/.test(node.output) || !node.alive,
    15_000,
    50,
  );
  return node;
}

describe('serve --auth', () => {
  let node: ServeProcess;
  beforeAll(async () => {
    node = await serve(['--auth', authFile]);
  });

  test('status with --token works', async () => {
    const out = await runCli(['status', '--node', node.url, '--token', ADMIN]);
    expect({ code: out.code, id: JSON.parse(out.stdout).id }).toEqual({ code: 0, id: 1 });
  });

  test('status with PREVAIL_TOKEN works', () => {
    // runCli's child gets the environment of the process outside Jest's sandbox: spawn here.
    const out = spawnSync(process.execPath, [cli, 'status', '--node', node.url], {
      env: { ...process.env, PREVAIL_TOKEN: ADMIN },
      encoding: 'utf8',
      timeout: 30_000,
    });
    // The JSON on stdout; on stderr only the schema line.
    expect({ code: out.status, stderr: out.stderr }).toEqual({ code: 0, stderr: SCHEMA_LINE });
  });

  test('without a token: the 401 is said plainly, exit 1', async () => {
    const out = await runCli(['status', '--node', node.url]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/PREVAIL_UNAUTHORIZED: this request needs credentials/);
    expect(out.stderr).toMatch(/give --token TOKEN, set PREVAIL_TOKEN/);
  });

  test('a read-only token: snapshot is refused with the permission named, exit 1', async () => {
    await waitFor(
      'a leader',
      async () => (await node.request('GET', '/health/leader')).status === 200,
    );
    const out = await runCli(['snapshot', '--node', node.url, '--token', READ]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/PREVAIL_FORBIDDEN: user reader lacks the admin permission/);
    const ok = await runCli(['snapshot', '--node', node.url, '--token', ADMIN]);
    expect(ok.code).toBe(0);
  });

  test('activate: refused to a read-only token, done with an admin one', async () => {
    const refused = await runCli(['activate', '--node', node.url, '--token', READ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/PREVAIL_FORBIDDEN: user reader lacks the admin permission/);
    const ok = await runCli(['activate', '1', '--node', node.url, '--token', ADMIN]);
    expect({ code: ok.code, out: JSON.parse(ok.stdout) }).toEqual({ code: 0, out: { active: 1 } });
  });
});

test('an auth file holding plain tokens that anyone can read is refused', async () => {
  const open = file(
    'open.json',
    JSON.stringify({ users: [{ name: 'ops', token: ADMIN, permissions: ['admin'] }] }),
    0o644,
  );
  const node = await serve(['--auth', open]);
  expect(await node.waitExit()).toEqual({ code: 1, signal: null });
  expect(node.output).toMatch(
    /holds tokens in the clear and every account on this machine can read it/,
  );
});

test('--http beyond loopback without --auth is refused; with --insecure it serves, loudly', async () => {
  const refused = await serve([], '0.0.0.0');
  expect(await refused.waitExit()).toEqual({ code: 1, signal: null });
  expect(refused.output).toMatch(
    /PREVAIL_INVALID_ARGUMENT: the HTTP address 0\.0\.0\.0 is reachable/,
  );
  const node = await serve(['--insecure'], '0.0.0.0');
  expect(node.output).toMatch(/WARNING: INSECURE/);
  const port = node.spec.http.split(':')[1];
  const out = await runCli(['status', '--node', `http://127.0.0.1:${port}`]);
  expect({ code: out.code, insecure: JSON.parse(out.stdout).insecure }).toEqual({
    code: 0,
    insecure: true,
  });
});

test('serve --ca/--cert/--key: the CLI over https with a client certificate', async () => {
  const ca = await testCa();
  const server = await ca.node(1);
  const alice = await ca.client('alice');
  const caPath = file('ca.pem', ca.cert, 0o644);
  const node = await serve([
    '--auth',
    authFile,
    '--ca',
    caPath,
    '--cert',
    file('node1.pem', server.cert, 0o644),
    '--key',
    file('node1.key', server.key),
  ]);
  expect(node.output).toMatch(/serving https:\/\//);
  const url = `https://${node.spec.http}`;
  const cert = ['--cert', file('alice.pem', alice.cert), '--key', file('alice.key', alice.key)];
  const out = await runCli(['status', '--node', url, '--ca', caPath, ...cert]);
  expect({ code: out.code, stderr: out.stderr }).toEqual({ code: 0, stderr: SCHEMA_LINE });
  const untrusted = await runCli(['status', '--node', url, ...cert]);
  expect({ code: untrusted.code, stderr: untrusted.stderr }).toEqual({
    code: 1,
    stderr: expect.stringMatching(/failed: .*(CERT|certificate)/i),
  });

  // --crl: an empty list changes nothing; one naming the node's certificate refuses the node.
  const status = (...flags: string[]) => runCli(['status', '--node', url, ...flags, ...cert]);
  const empty = file('empty-crl.pem', (await revoke(ca, [])).crl, 0o644);
  expect((await status('--ca', caPath, '--crl', empty)).code).toBe(0);
  const revoked = file('crl.pem', (await revoke(ca, [server.cert])).crl, 0o644);
  const refused = await status('--ca', caPath, '--crl', revoked);
  expect({ code: refused.code, stderr: refused.stderr }).toEqual({
    code: 1,
    stderr: expect.stringMatching(/failed: CERT_REVOKED/),
  });
  const alone = await status('--crl', revoked);
  expect({ code: alone.code, stderr: alone.stderr }).toEqual({
    code: 2,
    stderr: expect.stringMatching(/--crl needs --ca/),
  });
  const stranger = await testCa('a stranger CA');
  const foreign = file('foreign-crl.pem', (await revoke(stranger, [])).crl, 0o644);
  const other = await status('--ca', caPath, '--crl', foreign);
  expect({ code: other.code, stderr: other.stderr }).toEqual({
    code: 2,
    stderr: expect.stringMatching(/--crl .*foreign-crl\.pem/),
  });
});

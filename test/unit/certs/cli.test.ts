// `prevail certs` as a user runs it: a real `node dist/cli.js certs …` process (npm run build:ts
// first) writing into a temporary directory.
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { identityOf } from '../../../lib/core/identity.js';
import { runCli, tempDir } from '../../helpers/cluster.js';

let dir: string;
beforeEach(() => {
  dir = tempDir('prevail-certs-cli-');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const read = (name: string) => readFileSync(join(dir, name), 'utf8');
const mode = (name: string) => statSync(join(dir, name)).mode & 0o777;

async function certs(...args: string[]) {
  return runCli(['certs', ...args]);
}

async function ok(...args: string[]) {
  const run = await certs(...args);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  return run.stdout;
}

test('ca, node and client write their files with key 0600 and certificate 0644', async () => {
  await ok('ca', '--dir', dir);
  await ok('node', '--dir', dir, '--id', '2', '--host', 'db2.internal', '--host', '10.0.0.2');
  await ok('client', '--dir', dir, '--name', 'ops', '--days', '30');
  for (const base of ['ca', 'node-2', 'client-ops']) {
    expect(mode(`${base}.pem`)).toBe(0o644);
    expect(mode(`${base}-key.pem`)).toBe(0o600);
    expect(read(`${base}-key.pem`)).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  }
  const ca = new X509Certificate(read('ca.pem'));
  const node = new X509Certificate(read('node-2.pem'));
  expect(node.verify(ca.publicKey)).toBe(true);
  expect(node.subjectAltName).toBe('URI:urn:prevail:node:2, DNS:db2.internal, IP Address:10.0.0.2');
  expect(identityOf(node.subjectAltName)).toEqual({ kind: 'node', id: 2 });
  const client = new X509Certificate(read('client-ops.pem'));
  expect(client.verify(ca.publicKey)).toBe(true);
  // A client certificate names a client, never a node.
  expect(identityOf(client.subjectAltName)).toEqual({ kind: 'client', name: 'ops' });
});

test('an existing CA is replaced only with --force', async () => {
  await ok('ca', '--dir', dir);
  const first = read('ca.pem');
  const firstKey = read('ca-key.pem');
  const again = await certs('ca', '--dir', dir);
  expect(again.code).toBe(2);
  expect(again.stderr).toMatch(/--force/);
  expect(read('ca.pem')).toBe(first);
  expect(read('ca-key.pem')).toBe(firstKey);
  // The key alone is enough to refuse: it is the part that can't be got back.
  rmSync(join(dir, 'ca.pem'));
  expect((await certs('ca', '--dir', dir)).code).toBe(2);
  await ok('ca', '--dir', dir, '--force');
  expect(read('ca-key.pem')).not.toBe(firstKey);
  expect(mode('ca-key.pem')).toBe(0o600);
});

test('a node certificate is rotated in place: new key, same names, same modes', async () => {
  await ok('ca', '--dir', dir);
  await ok('node', '--dir', dir, '--id', '1');
  const old = new X509Certificate(read('node-1.pem'));
  const oldKey = read('node-1-key.pem');
  await ok('node', '--dir', dir, '--id', '1');
  const renewed = new X509Certificate(read('node-1.pem'));
  expect(renewed.fingerprint256).not.toBe(old.fingerprint256);
  expect(read('node-1-key.pem')).not.toBe(oldKey);
  expect(renewed.subjectAltName).toBe(old.subjectAltName);
  expect(mode('node-1-key.pem')).toBe(0o600);
  expect(mode('node-1.pem')).toBe(0o644);
});

test('show prints identity, validity and fingerprint', async () => {
  await ok('ca', '--dir', dir);
  await ok('node', '--dir', dir, '--id', '3', '--days', '10');
  const out = await ok('show', join(dir, 'node-3.pem'));
  const fingerprint = new X509Certificate(read('node-3.pem')).fingerprint256;
  expect(out).toMatch(/^identity +node 3$/m);
  expect(out).toMatch(/^not after .*\(valid, (9|10) days left\)$/m);
  expect(out).toContain(fingerprint);
  const key = await certs('show', join(dir, 'node-3-key.pem'));
  expect(key.code).toBe(1);
  expect(key.stderr).toMatch(/PREVAIL_BAD_CERTIFICATE/);
});

test('revoke adds to DIR/crl.pem (0644, earlier entries kept); show lists it; serve --crl checks it', async () => {
  await ok('ca', '--dir', dir);
  await ok('node', '--dir', dir, '--id', '2');
  await ok('client', '--dir', dir, '--name', 'ops');
  expect(await ok('revoke', '--dir', dir)).toMatch(/\(0 revoked, 0 new\)/); // a list to start with
  const first = await ok('revoke', '--dir', dir, join(dir, 'node-2.pem'));
  expect(first).toMatch(/\(1 revoked, 1 new\)/);
  expect(mode('crl.pem')).toBe(0o644);
  const second = await ok(
    'revoke',
    '--dir',
    dir,
    join(dir, 'client-ops.pem'),
    join(dir, 'node-2.pem'),
  );
  expect(second).toMatch(/\(2 revoked, 1 new\)/);
  const shown = await ok('show', join(dir, 'crl.pem'));
  const serials = ['node-2.pem', 'client-ops.pem'].map((f) =>
    new X509Certificate(read(f)).serialNumber.toLowerCase().replace(/^0+/, ''),
  );
  for (const serial of serials) expect(shown).toContain(`serial ${serial} since`);
  // A certificate of another CA can't be revoked by this one: nothing written.
  const other = join(dir, 'other');
  await ok('ca', '--dir', other);
  await ok('node', '--dir', other, '--id', '2');
  const before = read('crl.pem');
  const refused = await certs('revoke', '--dir', dir, join(other, 'node-2.pem'));
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/PREVAIL_BAD_CERTIFICATE: .*not signed by this CA/);
  expect(read('crl.pem')).toBe(before);
  // serve refuses a list that is not its CA's before it opens anything.
  await ok('revoke', '--dir', other, join(other, 'node-2.pem'));
  await ok('node', '--dir', dir, '--id', '1');
  const serve = await runCli([
    'serve',
    '--id',
    '1',
    '--data',
    join(dir, 'data'),
    '--http',
    '127.0.0.1:0',
    '--raft',
    '127.0.0.1:7999',
    '--ca',
    join(dir, 'ca.pem'),
    '--cert',
    join(dir, 'node-1.pem'),
    '--key',
    join(dir, 'node-1-key.pem'),
    '--crl',
    join(other, 'crl.pem'),
  ]);
  expect(serve.code).toBe(1);
  expect(serve.stderr).toMatch(/PREVAIL_BAD_CERTIFICATE: .*not signed by the CA/);
});

test('bad usage exits 2 and writes nothing; a missing CA exits 1', async () => {
  for (const args of [
    ['node', '--dir', dir],
    ['node', '--dir', dir, '--id', '0'],
    ['node', '--dir', dir, '--id', '2147483648'],
    ['node', '--dir', dir, '--id', '1', '--host', 'not a host'],
    ['client', '--dir', dir, '--name', '../x'],
    ['ca'],
    ['ca', '--dir', dir, '--id', '1'],
    ['frob'],
  ]) {
    const run = await certs(...args);
    expect({ args, code: run.code }).toEqual({ args, code: 2 });
  }
  const noCa = await certs('node', '--dir', dir, '--id', '1');
  expect(noCa.code).toBe(1);
  expect(noCa.stderr).toContain(`PREVAIL_BAD_CERTIFICATE: can't read certificate file`);
  expect(existsSync(join(dir, 'node-1.pem'))).toBe(false);
});

test('certs --help prints the certs usage', async () => {
  const run = await certs('--help');
  expect(run.code).toBe(0);
  expect(run.stdout).toMatch(/^Usage: prevail certs/);
  expect(run.stdout).toContain('--host H');
});

test('the CommonJS build makes certificates too (the x509 library loads there as well)', () => {
  const script = `
    const certs = require('./dist/cjs/certs/index.js');
    (async () => {
      const ca = await certs.createCa({ days: 1 });
      const node = await certs.createNodeCert(ca, { id: 4 });
      console.log(JSON.stringify([certs.describeCert(node.cert).identity, typeof Reflect.getMetadata]));
    })();`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect(run.stderr).toBe('');
  expect(JSON.parse(run.stdout)).toEqual([{ kind: 'node', id: 4 }, 'undefined']);
});

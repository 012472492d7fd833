// lib/certs: the certificates `prevail certs` makes are what the cluster transport and the HTTP
// API will check. The real check is a handshake: two member certificates from one CA complete a
// mutual TLS handshake over 127.0.0.1 (each side verifying the other), and the identity each side
// reads from the peer's certificate is the member it is; anything from another CA is refused.
import { createPrivateKey, KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';

import fc from 'fast-check';

import {
  createCa,
  createClientCert,
  createNodeCert,
  describeCert,
  loadTlsFiles,
  type CertAndKey,
} from '../../../lib/certs/index.js';
import { x509 as loadX509 } from '../../../lib/certs/x509.js';
import { identityOf } from '../../../lib/core/identity.js';

const DAY_MS = 86_400_000;
const badCertificate = (path?: string) =>
  expect.objectContaining({ code: 'PREVAIL_BAD_CERTIFICATE', ...(path ? { path } : {}) });
const invalidArgument = expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' });

let ca: CertAndKey;
let otherCa: CertAndKey;
let node1: CertAndKey;
let node2: CertAndKey;
let stranger: CertAndKey; // node 2 by the name it carries, but signed by another CA

beforeAll(async () => {
  ca = await createCa();
  otherCa = await createCa();
  node1 = await createNodeCert(ca, { id: 1 });
  node2 = await createNodeCert(ca, { id: 2 });
  stranger = await createNodeCert(otherCa, { id: 2 });
});

const x509 = (pem: string) => new X509Certificate(pem);

describe('what the certificates say', () => {
  test('a CA: self-signed, a CA, ten years by default, no identity', () => {
    const cert = x509(ca.cert);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=prevail CA');
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(identityOf(cert.subjectAltName)).toBeUndefined();
    const d = describeCert(ca.cert);
    expect(d.notAfter.getTime() - Date.now()).toBeGreaterThan(3649 * DAY_MS);
    expect(d.notAfter.getTime() - Date.now()).toBeLessThan(3651 * DAY_MS);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  test('a member: signed by its CA only, names its id and the hosts, server and client auth', () => {
    const cert = x509(node1.cert);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toBe('CN=prevail node 1');
    expect(cert.issuer).toBe('CN=prevail CA');
    expect(cert.verify(x509(ca.cert).publicKey)).toBe(true);
    expect(cert.verify(x509(otherCa.cert).publicKey)).toBe(false);
    expect(cert.checkIssued(x509(ca.cert))).toBe(true);
    expect(cert.subjectAltName).toBe(
      'URI:urn:prevail:node:1, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(identityOf(cert.subjectAltName)).toEqual({ kind: 'node', id: 1 });
    // X509Certificate.keyUsage is the extended key usage.
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(cert.checkPrivateKey(createPrivateKey(node1.key))).toBe(true);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
  });

  test('a client: names a client, not a node, and may only authenticate as a client', async () => {
    const client = await createClientCert(ca, { name: 'ops' });
    const cert = x509(client.cert);
    expect(cert.subject).toBe('CN=prevail client ops');
    expect(cert.subjectAltName).toBe('URI:urn:prevail:client:ops');
    expect(identityOf(cert.subjectAltName)).toEqual({ kind: 'client', name: 'ops' });
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.verify(x509(ca.cert).publicKey)).toBe(true);
  });

  test('hosts become DNS and IP SANs; days sets the lifetime; notBefore allows for skew', async () => {
    const before = Date.now();
    const pair = await createNodeCert(ca, {
      id: 7,
      hosts: ['db7.internal', '*.example.org', '10.0.0.7', 'fd00::7'],
      days: 2,
    });
    const cert = x509(pair.cert);
    expect(cert.subjectAltName).toBe(
      'URI:urn:prevail:node:7, DNS:db7.internal, DNS:*.example.org, IP Address:10.0.0.7, IP Address:FD00:0:0:0:0:0:0:7',
    );
    const d = describeCert(pair.cert);
    expect(d.notBefore.getTime()).toBeLessThan(before - 60_000);
    expect(d.notBefore.getTime()).toBeGreaterThan(before - 10 * 60_000);
    expect(d.notAfter.getTime() - before).toBeGreaterThan(2 * DAY_MS - 60_000);
    expect(d.notAfter.getTime() - before).toBeLessThan(2 * DAY_MS + 60_000);
    expect(describeCert(node1.cert).notAfter.getTime() - before).toBeGreaterThan(364 * DAY_MS);
  });

  test('serials are random 128-bit numbers', async () => {
    const serials = [ca, otherCa, node1, node2, stranger].map((p) => x509(p.cert).serialNumber);
    expect(new Set(serials).size).toBe(serials.length);
    // 16 random bytes: fewer than 15 significant bytes has a chance of 2^-16.
    for (const s of serials) expect(s.replace(/^(00)+/, '').length).toBeGreaterThanOrEqual(30);
  });

  test('keys are unencrypted PKCS#8 PEM', () => {
    for (const pair of [ca, node1]) expect(pair.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  test('the x509 library is loaded without leaving a Reflect polyfill behind', () => {
    expect((Reflect as unknown as Record<string, unknown>).getMetadata).toBeUndefined();
  });

  test('any valid member id and client name round-trip through a certificate', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
        async (id, name) => {
          const member = await createNodeCert(ca, { id });
          expect(describeCert(member.cert).identity).toEqual({ kind: 'node', id });
          const client = await createClientCert(ca, { name });
          expect(describeCert(client.cert).identity).toEqual({ kind: 'client', name });
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('what is refused', () => {
  test.each([0, -1, 1.5, 2 ** 31, NaN, '3' as unknown as number])('node id %p', async (id) => {
    await expect(createNodeCert(ca, { id })).rejects.toEqual(invalidArgument);
  });

  test.each(['', 'a/b', 'a b', 'x'.repeat(65), 'ü'])('client name %p', async (name) => {
    await expect(createClientCert(ca, { name })).rejects.toEqual(invalidArgument);
  });

  test.each(['bad host', '', 'a..b', '-a.example', 'a_b', 'http://x'])('host %p', async (host) => {
    await expect(createNodeCert(ca, { id: 1, hosts: [host] })).rejects.toEqual(invalidArgument);
  });

  test.each([0, -3, 1.5, 36501])('days %p', async (days) => {
    await expect(createCa({ days })).rejects.toEqual(invalidArgument);
    await expect(createNodeCert(ca, { id: 1, days })).rejects.toEqual(invalidArgument);
  });

  test('an expired CA signs nothing', async () => {
    const expired = await rsaCaWithOwnKeyId(-DAY_MS);
    await expect(createNodeCert(expired, { id: 1 })).rejects.toEqual(badCertificate());
  });

  test('a CA whose key is not its own, a leaf as a CA, text that is not PEM', async () => {
    const mismatched = { cert: ca.cert, key: otherCa.key };
    await expect(createNodeCert(mismatched, { id: 1 })).rejects.toEqual(badCertificate());
    await expect(createNodeCert(node1, { id: 3 })).rejects.toEqual(badCertificate());
    const garbage = { cert: 'not a cert', key: ca.key };
    await expect(createClientCert(garbage, { name: 'x' })).rejects.toEqual(badCertificate());
    expect(() => describeCert('not a cert')).toThrow(badCertificate());
  });
});

describe('loadTlsFiles', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'prevail-certs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  test('reads the three files as PEM text', () => {
    const paths = {
      ca: file('ca.pem', ca.cert),
      cert: file('node-1.pem', node1.cert),
      key: file('node-1-key.pem', node1.key),
    };
    expect(loadTlsFiles(paths)).toEqual({ ca: ca.cert, cert: node1.cert, key: node1.key });
  });

  test('names the file that is missing, not PEM, or not the certificate’s key', () => {
    const good = {
      ca: file('ca.pem', ca.cert),
      cert: file('node-1.pem', node1.cert),
      key: file('node-1-key.pem', node1.key),
    };
    const missing = join(dir, 'missing.pem');
    expect(() => loadTlsFiles({ ...good, ca: missing })).toThrow(badCertificate(missing));
    const text = file('text.pem', 'hello\n');
    expect(() => loadTlsFiles({ ...good, cert: text })).toThrow(badCertificate(text));
    expect(() => loadTlsFiles({ ...good, key: text })).toThrow(badCertificate(text));
    // A key where the certificate goes, and the other way round.
    expect(() => loadTlsFiles({ ...good, cert: good.key })).toThrow(badCertificate(good.key));
    expect(() => loadTlsFiles({ ...good, key: good.ca })).toThrow(badCertificate(good.ca));
    const otherKey = file('node-2-key.pem', node2.key);
    expect(() => loadTlsFiles({ ...good, key: otherKey })).toThrow(badCertificate(otherKey));
  });
});

// ---- a real mutual TLS handshake over 127.0.0.1 --------------------------------------------

interface Outcome {
  /** The identity the server read from the client's certificate, if the handshake completed. */
  serverSaw?: ReturnType<typeof identityOf>;
  /** The identity the client read from the server's certificate. */
  clientSaw?: ReturnType<typeof identityOf>;
  /** The server's reason for refusing the client (tlsClientError). */
  serverRefused?: string;
  /** The client's reason for refusing, or noticing it was refused. */
  clientError?: string;
}

/** A server with `server`'s files and a client with `client`'s, both verifying against `trust`. */
async function handshake(trust: string, server: CertAndKey, client: CertAndKey): Promise<Outcome> {
  const outcome: Outcome = {};
  const tlsServer = createServer(
    { ca: trust, cert: server.cert, key: server.key, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      outcome.serverSaw = identityOf(socket.getPeerCertificate().subjectaltname);
      socket.end('hello');
    },
  );
  tlsServer.on('tlsClientError', (err) => {
    outcome.serverRefused = err.message;
  });
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  const { port } = tlsServer.address() as { port: number };
  try {
    await new Promise<void>((resolve) => {
      const socket: TLSSocket = connect({
        host: '127.0.0.1',
        port,
        ca: trust,
        cert: client.cert,
        key: client.key,
        rejectUnauthorized: true,
      });
      socket.on('secureConnect', () => {
        outcome.clientSaw = identityOf(socket.getPeerCertificate().subjectaltname);
      });
      socket.on('error', (err) => {
        outcome.clientError = err.message;
      });
      socket.on('data', () => undefined);
      socket.on('close', () => resolve());
    });
  } finally {
    await new Promise((resolve) => tlsServer.close(resolve));
  }
  return outcome;
}

describe('mutual TLS with generated certificates', () => {
  test('two members of one CA complete a mutual handshake and read each other’s id', async () => {
    const outcome = await handshake(ca.cert, node1, node2);
    expect(outcome).toEqual({
      serverSaw: { kind: 'node', id: 2 },
      clientSaw: { kind: 'node', id: 1 },
    });
  });

  test('a client certificate from another CA is refused by the server', async () => {
    const outcome = await handshake(ca.cert, node1, stranger);
    expect(outcome.serverSaw).toBeUndefined();
    expect(outcome.serverRefused).toBeDefined();
  });

  test('a server certificate from another CA is refused by the client', async () => {
    const outcome = await handshake(ca.cert, stranger, node1);
    expect(outcome.serverSaw).toBeUndefined();
    expect(outcome.clientSaw).toBeUndefined();
    expect(outcome.clientError).toMatch(/certificate/i);
  });

  test('a client certificate cannot serve: it lacks serverAuth', async () => {
    const client = await createClientCert(ca, { name: 'ops' });
    const outcome = await handshake(ca.cert, client, node1);
    expect(outcome.clientSaw).toBeUndefined();
    expect(outcome.clientError).toMatch(/purpose/i);
  });

  test('a CA of your own (RSA, its own key identifier) signs members that handshake', async () => {
    const own = await rsaCaWithOwnKeyId();
    const a = await createNodeCert(own, { id: 5 });
    const b = await createNodeCert(own, { id: 6 });
    expect(x509(a.cert).verify(x509(own.cert).publicKey)).toBe(true);
    expect(await handshake(own.cert, a, b)).toEqual({
      serverSaw: { kind: 'node', id: 6 },
      clientSaw: { kind: 'node', id: 5 },
    });
  });

  test('a client certificate authenticates a client to a member', async () => {
    const client = await createClientCert(ca, { name: 'ops' });
    const outcome = await handshake(ca.cert, node1, client);
    expect(outcome.serverSaw).toEqual({ kind: 'client', name: 'ops' });
  });
});

/** A CA not made by createCa: an RSA key, and a subjectKeyIdentifier that is not a key hash. */
async function rsaCaWithOwnKeyId(lifetimeMs = 30 * DAY_MS): Promise<CertAndKey> {
  const X = loadX509();
  const algorithm = {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-256',
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const cert = await X.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: 'CN=Example Corp Root',
      notBefore: new Date(Date.now() - 2 * DAY_MS),
      notAfter: new Date(Date.now() + lifetimeMs),
      keys,
      signingAlgorithm: algorithm,
      extensions: [
        new X.BasicConstraintsExtension(true, undefined, true),
        new X.KeyUsagesExtension(X.KeyUsageFlags.keyCertSign, true),
        new X.SubjectKeyIdentifierExtension('0102030405060708'),
      ],
    },
    webcrypto,
  );
  const key = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' });
  return { cert: cert.toString('pem'), key: key as string };
}

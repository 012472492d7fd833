// Revocation lists (lib/certs/crl.ts): what revoke() makes, what describeCrl() refuses (a list
// that would shut every peer out: another CA's, an expired one, a damaged one), and what a real
// TLS handshake in this process does with one: a revoked member or client is refused.
import { createPrivateKey, webcrypto } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';

import fc from 'fast-check';

import {
  createCa,
  createClientCert,
  createNodeCert,
  describeCrl,
  revoke,
  type CertAndKey,
} from '../../../lib/certs/index.js';
import { certificateListParts, serialKey } from '../../../lib/certs/crl.js';
import { x509 as loadX509 } from '../../../lib/certs/x509.js';
import { loadMemberTls } from '../../../lib/engine/member-transport.js';

const badCertificate = expect.objectContaining({ code: 'PREVAIL_BAD_CERTIFICATE' });

let ca: CertAndKey;
let otherCa: CertAndKey;
let node1: CertAndKey;
let node2: CertAndKey;
let client: CertAndKey;

beforeAll(async () => {
  ca = await createCa();
  otherCa = await createCa(); // the same name, "prevail CA": only the key tells them apart
  node1 = await createNodeCert(ca, { id: 1 });
  node2 = await createNodeCert(ca, { id: 2 });
  client = await createClientCert(ca, { name: 'ops' });
});

describe('revoke', () => {
  test('lists the serials, keeps the earlier entries, and counts only the new', async () => {
    const first = await revoke(ca, [node2.cert]);
    expect(first.added).toHaveLength(1);
    expect(first.crl).toMatch(/^-----BEGIN X509 CRL-----\n/);
    const second = await revoke(ca, [client.cert, node2.cert], first.crl);
    expect(second.added).toHaveLength(1);
    const d = describeCrl(second.crl, ca.cert);
    expect(d.revoked.map((r) => r.serial).sort()).toEqual([...first.added, ...second.added].sort());
    // Valid until the CA is: it never expires under the cluster's feet.
    expect(Math.abs(d.nextUpdate!.getTime() - Date.parse(new X509(ca.cert).validTo))).toBeLessThan(
      2000,
    );
  });

  test("another CA's certificate, or a previous list from another CA: PREVAIL_BAD_CERTIFICATE", async () => {
    const strangers = await createNodeCert(otherCa, { id: 2 });
    await expect(revoke(ca, [strangers.cert])).rejects.toEqual(badCertificate);
    const theirs = await revoke(otherCa, [strangers.cert]);
    await expect(revoke(ca, [node2.cert], theirs.crl)).rejects.toEqual(badCertificate);
  });
});

describe('describeCrl refuses a list that would refuse every peer', () => {
  test('signed by another CA of the same name', async () => {
    const { crl } = await revoke(otherCa, []);
    expect(() => describeCrl(crl, ca.cert)).toThrow(badCertificate);
    // A CA bundle that holds the signer takes it (a move between CAs).
    expect(describeCrl(crl, ca.cert + otherCa.cert).revoked).toEqual([]);
  });

  test('past its nextUpdate', async () => {
    const X = loadX509();
    const der = createPrivateKey(ca.key).export({ type: 'pkcs8', format: 'der' });
    const signingKey = await webcrypto.subtle.importKey(
      'pkcs8',
      der,
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    );
    const old = await X.X509CrlGenerator.create(
      {
        issuer: new X.X509Certificate(ca.cert).subjectName,
        thisUpdate: new Date(Date.now() - 2 * 86_400_000),
        nextUpdate: new Date(Date.now() - 86_400_000),
        signingKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      },
      webcrypto,
    );
    const pem = old.toString('pem').replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
    expect(() => describeCrl(pem, ca.cert)).toThrow(
      expect.objectContaining({
        code: 'PREVAIL_BAD_CERTIFICATE',
        message: expect.stringMatching(/expired/),
      }),
    );
  });

  test('not a CRL, or one with a byte changed', async () => {
    expect(() => describeCrl('hello', ca.cert)).toThrow(badCertificate);
    expect(() => describeCrl(ca.cert, ca.cert)).toThrow(badCertificate);
    const { crl } = await revoke(ca, [node2.cert]);
    const der = Buffer.from(crl.replace(/-----[A-Z0-9 ]+-----|\s/g, ''), 'base64');
    // Any one byte of the signed part changed: the signature no longer holds (or it no longer parses).
    fc.assert(
      fc.property(fc.nat(der.length - 1), fc.integer({ min: 1, max: 255 }), (at, xor) => {
        const bad = Buffer.from(der);
        bad[at] ^= xor;
        const pem = `-----BEGIN X509 CRL-----\n${bad.toString('base64')}\n-----END X509 CRL-----\n`;
        expect(() => describeCrl(pem, ca.cert)).toThrow(badCertificate);
      }),
      { numRuns: 200 },
    );
  });

  test('certificateListParts: any truncation or random bytes give null or parts inside the input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const parts = certificateListParts(Buffer.from(bytes));
        if (parts) expect(parts.tbs.length + parts.signature.length).toBeLessThan(bytes.length);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('loadMemberTls takes a list (crl or crlFile), checked', () => {
  test('a good list is kept; another CA’s is PREVAIL_BAD_CERTIFICATE; both forms together are invalid', async () => {
    const { crl } = await revoke(ca, [node2.cert]);
    expect(loadMemberTls({ ca: ca.cert, ...node1, crl }, 1).crl).toBe(crl);
    const theirs = (await revoke(otherCa, [])).crl;
    expect(() => loadMemberTls({ ca: ca.cert, ...node1, crl: theirs }, 1)).toThrow(badCertificate);
    expect(() => loadMemberTls({ ca: ca.cert, ...node1, crl, crlFile: '/x' }, 1)).toThrow(
      expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' }),
    );
  });
});

const X509 = (await import('node:crypto')).X509Certificate;

/** Whether a TLS server with `ca` + `crl` that requires a client certificate accepts `leaf`. */
async function handshake(crl: string | undefined, leaf: CertAndKey): Promise<boolean> {
  const server = createServer({
    ...node1,
    ca: ca.cert,
    ...(crl ? { crl } : {}),
    requestCert: true,
    rejectUnauthorized: true,
  });
  server.on('secureConnection', (s: TLSSocket) => s.end('ok'));
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise<boolean>((resolve) => {
      const socket = connect({
        port,
        host: '127.0.0.1',
        ...leaf,
        ca: ca.cert,
        checkServerIdentity: () => undefined,
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(text === 'ok'));
    });
  } finally {
    server.close();
  }
}

test('a real handshake: the listed member and client are refused, the others accepted', async () => {
  const { crl } = await revoke(ca, [node2.cert, client.cert]);
  expect(await handshake(undefined, node2)).toBe(true);
  expect(await handshake(crl, node2)).toBe(false);
  expect(await handshake(crl, client)).toBe(false);
  const node3 = await createNodeCert(ca, { id: 3 });
  expect(await handshake(crl, node3)).toBe(true);
});

// Serials are random: about one in sixteen starts with a zero nibble, and one in two has its high
// bit set (a DER integer then needs a leading zero byte). Each must be listed as the handshake
// reads it.
test('40 random serials: each listed as Node reads it, and each refused in a handshake', async () => {
  const certs = await Promise.all(
    Array.from({ length: 40 }, (_, i) => createNodeCert(ca, { id: i + 10 })),
  );
  const { crl } = await revoke(
    ca,
    certs.map((c) => c.cert),
  );
  const listed = new Set(describeCrl(crl, ca.cert).revoked.map((r) => r.serial));
  for (const c of certs) expect(listed.has(serialKey(new X509(c.cert).serialNumber))).toBe(true);
  const odd = certs.filter((c) => /^0|^[89a-f]/i.test(new X509(c.cert).serialNumber));
  for (const c of odd.slice(0, 8)) expect(await handshake(crl, c)).toBe(false);
});

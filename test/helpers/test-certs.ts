// Certificates for tests, made in-process (no openssl binary): a CA, and certificates it signs
// naming a member (`urn:prevail:node:<id>`) or an HTTP client (`urn:prevail:client:<name>`),
// each valid for 127.0.0.1 and localhost so one can also serve.
import { webcrypto } from 'node:crypto';

import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import * as x509 from '@peculiar/x509';

import { clientUri, nodeUri } from '../../lib/core/identity.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 24 * 3600 * 1000;

export interface TestCa {
  /** The CA certificate (PEM). */
  cert: string;
  /** A certificate this CA signs for member `id`. */
  node(id: number): Promise<TestCert>;
  /** A certificate this CA signs for HTTP client `name`. */
  client(name: string): Promise<TestCert>;
}

export interface TestCert {
  cert: string;
  key: string;
}

let serial = 1;

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** A new CA named `name`, valid from a day ago for a day. */
export async function testCa(name = 'prevail test CA'): Promise<TestCa> {
  const keys = await keyPair();
  const notBefore = new Date(Date.now() - DAY);
  const notAfter = new Date(Date.now() + DAY);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const leaf = async (cn: string, uri: string): Promise<TestCert> => {
    const own = await keyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: (serial++).toString(16).padStart(2, '0'),
      subject: `CN=${cn}`,
      issuer: ca.subject,
      notBefore,
      notAfter,
      signingKey: keys.privateKey,
      publicKey: own.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: uri },
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(ca),
      ],
    });
    return { cert: cert.toString('pem'), key: await keyPem(own.privateKey) };
  };
  return {
    cert: ca.toString('pem'),
    node: (id) => leaf(`node ${id}`, nodeUri(id)),
    client: (name) => leaf(`client ${name}`, clientUri(name)),
  };
}

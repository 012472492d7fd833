// Creating a cluster's certificates without an `openssl` binary: a CA, a certificate per member
// and one per HTTP client. ECDSA P-256 keys (small, fast handshakes, accepted everywhere), random
// 128-bit serials, and a notBefore a few minutes back so that a peer whose clock runs a little
// behind accepts a certificate made a moment ago. Identity is the SAN URI (lib/core/identity.ts);
// the common name is only for people reading the certificate.
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

import { ErrorCodes, invalid, PrevailError } from '../core/errors.js';
import { clientUri, isClientName, nodeUri } from '../core/identity.js';
import { describeCrl, serialKey } from './crl.js';
import { x509, type X509Module } from './x509.js';

/** A certificate and its private key, both PEM (the key PKCS#8). */
export interface CertAndKey {
  cert: string;
  key: string;
}

export interface CaOptions {
  /** Lifetime in days (default 3650). */
  days?: number;
  /** The CA's common name (default `prevail CA`). */
  name?: string;
}

export interface NodeCertOptions {
  /** The member id the certificate names (`urn:prevail:node:<id>`). */
  id: number;
  /** DNS names and IP addresses the member is reached at (default localhost, 127.0.0.1, ::1). */
  hosts?: string[];
  /** Lifetime in days (default 365). */
  days?: number;
}

export interface ClientCertOptions {
  /** The client name the certificate names (`urn:prevail:client:<name>`). */
  name: string;
  /** Lifetime in days (default 365). */
  days?: number;
}

export const CA_DAYS = 3650;
export const LEAF_DAYS = 365;
export const DEFAULT_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];
/** How far back notBefore is set, for peers whose clocks are behind. */
const CLOCK_SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;
const MAX_NODE_ID = 2 ** 31 - 1;

const P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A new self-signed CA (basicConstraints CA:true pathlen 0; keyCertSign, cRLSign). */
export async function createCa(options: CaOptions = {}): Promise<CertAndKey> {
  const X = x509();
  const days = checkDays(options.days, CA_DAYS);
  const name = options.name ?? 'prevail CA';
  if (typeof name !== 'string' || !/^[^\p{Cc}]{1,64}$/u.test(name))
    throw invalid(`the CA name must be 1–64 printable characters, got ${JSON.stringify(name)}`);
  const keys = await webcrypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  const cert = await X.X509CertificateGenerator.createSelfSigned(
    {
      ...validity(days),
      name: [{ CN: [name] }],
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new X.BasicConstraintsExtension(true, 0, true),
        new X.KeyUsagesExtension(X.KeyUsageFlags.keyCertSign | X.KeyUsageFlags.cRLSign, true),
        await X.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { cert: cert.toString('pem'), key: pkcs8Pem(keys.privateKey) };
}

/**
 * A certificate for member `id`, signed by `ca`: SAN URI `urn:prevail:node:<id>` and the hosts
 * (DNS names and IPs), usable as a TLS server and client (members dial each other).
 */
export async function createNodeCert(
  ca: CertAndKey,
  options: NodeCertOptions,
): Promise<CertAndKey> {
  return issue(ca, nodeLeaf(options));
}

/** What a member's certificate will hold; PREVAIL_INVALID_ARGUMENT for a bad id, host or days. */
export function nodeLeaf(options: NodeCertOptions): Leaf {
  const { id } = options;
  if (!Number.isInteger(id) || id < 1 || id > MAX_NODE_ID)
    throw invalid(`a node id is an integer in 1..${MAX_NODE_ID}, got ${JSON.stringify(id)}`);
  const hosts = options.hosts ?? DEFAULT_HOSTS;
  if (!Array.isArray(hosts)) throw invalid('hosts must be an array of DNS names and IP addresses');
  return {
    commonName: `prevail node ${id}`,
    names: [{ type: 'url', value: nodeUri(id) }, ...hosts.map(hostName)],
    usages: ['serverAuth', 'clientAuth'],
    days: checkDays(options.days, LEAF_DAYS),
  };
}

/** A certificate for HTTP API client `name`, signed by `ca`: SAN URI `urn:prevail:client:<name>`. */
export async function createClientCert(
  ca: CertAndKey,
  options: ClientCertOptions,
): Promise<CertAndKey> {
  return issue(ca, clientLeaf(options));
}

/** What a client's certificate will hold; PREVAIL_INVALID_ARGUMENT for a bad name or days. */
export function clientLeaf(options: ClientCertOptions): Leaf {
  const { name } = options;
  if (!isClientName(name))
    throw invalid(
      `a client name is 1–64 letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`,
    );
  return {
    commonName: `prevail client ${name}`,
    names: [{ type: 'url', value: clientUri(name) }],
    usages: ['clientAuth'],
    days: checkDays(options.days, LEAF_DAYS),
  };
}

type GeneralName = { type: 'url' | 'dns' | 'ip'; value: string };

/** A leaf certificate's contents, checked. */
export interface Leaf {
  commonName: string;
  names: GeneralName[];
  usages: ('serverAuth' | 'clientAuth')[];
  days: number;
}

async function issue(ca: CertAndKey, leaf: Leaf): Promise<CertAndKey> {
  const X = x509();
  const signer = await caSigner(X, ca);
  const keys = await webcrypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  const cert = await X.X509CertificateGenerator.create(
    {
      ...validity(leaf.days),
      subject: [{ CN: [leaf.commonName] }],
      issuer: signer.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: signer.key,
      signingAlgorithm: signer.algorithm,
      extensions: [
        new X.BasicConstraintsExtension(false, undefined, true),
        new X.KeyUsagesExtension(X.KeyUsageFlags.digitalSignature, true),
        new X.ExtendedKeyUsageExtension(leaf.usages.map((u) => X.ExtendedKeyUsage[u])),
        new X.SubjectAlternativeNameExtension(leaf.names),
        await X.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        await authorityKeyId(X, signer.cert),
      ],
    },
    webcrypto,
  );
  return { cert: cert.toString('pem'), key: pkcs8Pem(keys.privateKey) };
}

/**
 * A new list: `previous`'s entries (a list from the same CA) and the certificates `certs` (PEM,
 * each signed by `ca`), signed by `ca`. Valid until the CA itself expires: a list past its
 * nextUpdate would shut every connection out. Returns the PEM and the serials it added.
 */
export async function revoke(
  ca: CertAndKey,
  certs: string[],
  previous?: string,
): Promise<{ crl: string; added: string[] }> {
  const X = x509();
  const signer = await caSigner(X, ca);
  const caCert = new X509Certificate(ca.cert);
  const entries = new Map<string, Date>();
  if (previous !== undefined)
    for (const r of describeCrl(previous, ca.cert).revoked) entries.set(r.serial, r.revokedAt);
  const added: string[] = [];
  const now = new Date();
  for (const pem of certs) {
    const cert = new X509Certificate(pem);
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey))
      throw new PrevailError(
        ErrorCodes.BAD_CERTIFICATE,
        `${cert.subject.replace(/\n/g, ', ')} is not signed by this CA: its list can't revoke it`,
      );
    const serial = serialKey(cert.serialNumber);
    if (!entries.has(serial)) added.push(serial);
    entries.set(serial, entries.get(serial) ?? now);
  }
  const crl = await X.X509CrlGenerator.create(
    {
      issuer: signer.cert.subjectName,
      thisUpdate: now,
      nextUpdate: new Date(caCert.validTo),
      entries: [...entries].map(([serial, revocationDate]) => ({
        serialNumber: serial.length % 2 ? `0${serial}` : serial, // whole bytes
        revocationDate,
      })),
      signingKey: signer.key,
      signingAlgorithm: signer.algorithm,
    },
    webcrypto,
  );
  return { crl: crlPem(crl.rawData), added };
}

/** PEM under the label OpenSSL reads a CRL by (x509's own writer says `CRL`). */
function crlPem(der: ArrayBuffer): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN X509 CRL-----\n${lines.join('\n')}\n-----END X509 CRL-----\n`;
}
/** The CA certificate parsed, and its key imported for signing (ECDSA on any curve, or RSA). */
async function caSigner(X: X509Module, ca: CertAndKey) {
  const bad = (message: string, cause?: unknown) =>
    new PrevailError(ErrorCodes.BAD_CERTIFICATE, message, cause ? { cause } : {});
  let checked: X509Certificate;
  let cert: InstanceType<X509Module['X509Certificate']>;
  try {
    checked = new X509Certificate(ca.cert);
    cert = new X.X509Certificate(ca.cert);
  } catch (err) {
    throw bad('the CA certificate is not a PEM certificate', err);
  }
  if (!checked.ca) throw bad(`the CA certificate (${checked.subject}) is not a CA certificate`);
  // What it signed would be refused by every peer from the start.
  if (new Date(checked.validTo).getTime() <= Date.now())
    throw bad(`the CA certificate expired on ${new Date(checked.validTo).toISOString()}`);
  let key;
  try {
    key = createPrivateKey(ca.key);
  } catch (err) {
    throw bad('the CA key is not a PEM private key (an encrypted key is not supported)', err);
  }
  if (!checked.checkPrivateKey(key)) throw bad('the CA key does not belong to the CA certificate');
  const { importParams, algorithm } = signingAlgorithm(key);
  if (!importParams) throw bad(`a CA key of type ${key.asymmetricKeyType} can't sign here`);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, importParams, false, ['sign']);
  return { cert, key: signingKey, algorithm };
}

/**
 * The issuer's key identifier as the issuer states it (its subjectKeyIdentifier): a CA of your
 * own may have derived it otherwise than from a SHA-1 of its key, and chain building matches
 * the two. Computed from its key only when it states none.
 */
async function authorityKeyId(X: X509Module, ca: InstanceType<X509Module['X509Certificate']>) {
  const ski = ca.getExtension(X.SubjectKeyIdentifierExtension);
  if (ski) return new X.AuthorityKeyIdentifierExtension(ski.keyId);
  return X.AuthorityKeyIdentifierExtension.create(ca.publicKey, false, webcrypto);
}

const CURVES: Record<string, { namedCurve: string; hash: string }> = {
  prime256v1: { namedCurve: 'P-256', hash: 'SHA-256' },
  secp384r1: { namedCurve: 'P-384', hash: 'SHA-384' },
  secp521r1: { namedCurve: 'P-521', hash: 'SHA-512' },
};

function signingAlgorithm(key: ReturnType<typeof createPrivateKey>) {
  if (key.asymmetricKeyType === 'ec') {
    const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    if (!curve) return {};
    return {
      importParams: { name: 'ECDSA', namedCurve: curve.namedCurve },
      algorithm: { name: 'ECDSA', hash: curve.hash },
    };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const rsa = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { importParams: rsa, algorithm: rsa };
  }
  return {};
}

function hostName(host: unknown): GeneralName {
  if (typeof host === 'string' && isIP(host)) return { type: 'ip', value: host };
  // A DNS name: labels of letters, digits and '-', a leading '*.' for a wildcard.
  if (
    typeof host === 'string' &&
    host.length <= 253 &&
    /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      host,
    )
  )
    return { type: 'dns', value: host };
  throw invalid(`a host is a DNS name or an IP address, got ${JSON.stringify(host)}`);
}

function checkDays(days: unknown, fallback: number): number {
  if (days === undefined) return fallback;
  if (!Number.isInteger(days) || (days as number) < 1 || (days as number) > 100 * 365)
    throw invalid(`days must be an integer in 1..36500, got ${JSON.stringify(days)}`);
  return days as number;
}

function validity(days: number) {
  const now = Date.now();
  return {
    serialNumber: randomBytes(16).toString('hex'),
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + days * DAY_MS),
  };
}

function pkcs8Pem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

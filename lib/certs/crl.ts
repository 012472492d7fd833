// Certificate revocation lists: `prevail certs revoke` adds certificates to the CA's list, and
// every TLS side of a member (its port, its dials, the HTTPS API) given the list refuses them.
// A list is checked before it is used: one from another CA, or past its nextUpdate, would make
// OpenSSL refuse every peer ("unable to get certificate CRL", "CRL has expired"), so it is
// refused up front with PREVAIL_BAD_CERTIFICATE instead.
import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { x509 } from './x509.js';

/** A certificate serial as lists are compared: hex, lower case, no leading zeros. */
export function serialKey(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

export interface RevokedCert {
  /** Hex, lower case, no leading zeros (serialKey). */
  serial: string;
  revokedAt: Date;
}

export interface CrlDescription {
  issuer: string;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  revoked: RevokedCert[];
}

function bad(message: string, path?: string, cause?: unknown): PrevailError {
  return new PrevailError(ErrorCodes.BAD_CERTIFICATE, message, {
    ...(path !== undefined ? { path } : {}),
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Reads a file of lists and checks it against the CA bundle `caPem` (describeCrls).
 * PREVAIL_BAD_CERTIFICATE (with `path`) when it can't be read or doesn't pass.
 */
export function readCrl(path: string, caPem: string): string {
  const text = readCrlText(path);
  describeCrls(text, caPem, path);
  return text;
}

/** A CRL file's text, unchecked; PREVAIL_BAD_CERTIFICATE (with `path`) when it can't be read. */
export function readCrlText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw bad(`can't read CRL file ${path}: ${reason}`, path, err);
  }
}

/** The PEM blocks of the lists in `pem`, one per CA (what Node's `crl` option takes). */
export function crlBlocks(pem: string | Buffer): string[] {
  return pem.toString().match(CRL_BLOCKS) ?? [];
}

/**
 * Every list in `pem`, each checked as describeCrl checks it, and one for each CA of the bundle
 * `caPem`: OpenSSL, given lists, refuses a certificate whose issuer has none ("unable to get
 * certificate CRL"), so during a move between CAs the file holds both CAs' lists.
 */
export function describeCrls(pem: string, caPem: string, path?: string): CrlDescription[] {
  const blocks = crlBlocks(pem);
  if (!blocks.length) throw bad(`${path ?? 'the CRL'} is not a PEM CRL (no X509 CRL block)`, path);
  const cas = caBlocks(caPem);
  const checked = blocks.map((block) => checkList(block, cas, path));
  const uncovered = cas.filter((_, i) => !checked.some((c) => c.signer === i));
  if (uncovered.length)
    throw bad(
      `${path ?? 'the CRL'} has no list from ${uncovered.map((ca) => new X509Certificate(ca).subject.replace(/\n/g, ', ')).join('; ')}: every certificate that CA signed would be refused; add its crl.pem (prevail certs revoke --dir <its dir>)`,
      path,
    );
  return checked.map((c) => c.description);
}

/** The first list in `pem`, checked: signed by a CA of the bundle `caPem`, not past its nextUpdate. */
export function describeCrl(pem: string, caPem: string, path?: string): CrlDescription {
  const block = crlBlocks(pem)[0];
  if (!block) throw bad(`${path ?? 'the CRL'} is not a PEM CRL (no X509 CRL block)`, path);
  return checkList(block, caBlocks(caPem), path).description;
}

const CRL_BLOCKS = /-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g;

function caBlocks(caPem: string): string[] {
  return caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** One list checked against the CAs `cas`; `signer` is the index of the CA that signed it. */
function checkList(
  block: string,
  cas: string[],
  path: string | undefined,
): { description: CrlDescription; signer: number } {
  const X = x509();
  let crl: InstanceType<typeof X.X509Crl>;
  try {
    crl = new X.X509Crl(block);
  } catch (err) {
    throw bad(`${path ?? 'the CRL'} is not a PEM CRL (${(err as Error).message})`, path, err);
  }
  const signer = cas.findIndex((ca) => signedBy(crl.rawData, hashOf(crl), ca));
  if (signer < 0)
    throw bad(
      `${path ?? 'the CRL'} (issuer ${crl.issuer}) is not signed by the CA: with it every peer would be refused`,
      path,
    );
  if (crl.nextUpdate !== undefined && crl.nextUpdate.getTime() <= Date.now())
    throw bad(
      `${path ?? 'the CRL'} expired on ${crl.nextUpdate.toISOString()}: with it every peer would be refused; make a new one (prevail certs revoke)`,
      path,
    );
  const description = {
    issuer: crl.issuer,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    revoked: crl.entries.map((e) => ({
      serial: serialKey(e.serialNumber),
      revokedAt: e.revocationDate,
    })),
  };
  return { description, signer };
}

/** The list's signature hash ('SHA-256'), or '' when its algorithm is one x509 can't name. */
function hashOf(crl: { signatureAlgorithm: { hash?: { name?: unknown } } }): string {
  try {
    const name = crl.signatureAlgorithm.hash?.name;
    return typeof name === 'string' ? name : '';
  } catch {
    return '';
  }
}

/** Whether the DER CertificateList `der` carries a valid signature by `caPem`'s key. */
function signedBy(der: ArrayBuffer, hash: string, caPem: string): boolean {
  const parts = certificateListParts(Buffer.from(der));
  if (!parts || !/^SHA-(256|384|512)$/.test(hash)) return false;
  try {
    const key = createPublicKey(caPem);
    return verify(hash.replace('-', '').toLowerCase(), parts.tbs, key, parts.signature);
  } catch {
    return false;
  }
}

/**
 * The signed part and the signature of a DER CertificateList (RFC 5280 §5.1: SEQUENCE {
 * tbsCertList SEQUENCE, signatureAlgorithm SEQUENCE, signatureValue BIT STRING }), or null.
 */
export function certificateListParts(der: Buffer): { tbs: Buffer; signature: Buffer } | null {
  const outer = derElement(der, 0);
  if (!outer || outer.tag !== 0x30) return null;
  const tbs = derElement(der, outer.contentStart);
  if (!tbs || tbs.tag !== 0x30) return null;
  const algorithm = derElement(der, tbs.end);
  if (!algorithm || algorithm.tag !== 0x30) return null;
  const bits = derElement(der, algorithm.end);
  if (!bits || bits.tag !== 0x03 || bits.end !== outer.end || der[bits.contentStart] !== 0)
    return null;
  return {
    tbs: der.subarray(tbs.start, tbs.end),
    signature: der.subarray(bits.contentStart + 1, bits.end),
  };
}

/** One DER element at `at`: its tag and where it, and its content, start and end; null if it overruns. */
function derElement(
  der: Buffer,
  at: number,
): { tag: number; start: number; contentStart: number; end: number } | null {
  if (at + 2 > der.length) return null;
  const tag = der[at]!;
  let length = der[at + 1]!;
  let contentStart = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || contentStart + bytes > der.length) return null;
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[contentStart + i]!;
    contentStart += bytes;
  }
  const end = contentStart + length;
  return end > der.length ? null : { tag, start: at, contentStart, end };
}

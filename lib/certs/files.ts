// Certificate files: reading a member's CA, certificate and key (checked enough that a mistake
// is named with its path rather than surfacing as an OpenSSL error in a handshake), describing a
// certificate (who it names, until when), and writing certificates and keys with their modes.
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { identityOf, type Identity } from '../core/identity.js';
import type { CertAndKey } from './create.js';

/** Paths to, or (from loadTlsFiles) the PEM text of, a member's TLS files. */
export interface TlsFiles {
  /** The CA certificate(s) peers must be signed by. */
  ca: string;
  /** This member's certificate. */
  cert: string;
  /** This member's private key. */
  key: string;
}

export interface CertDescription {
  /** The identity the certificate names (lib/core/identity.ts), or undefined when none or several. */
  identity: Identity | undefined;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 fingerprint, colon-separated hex (as `openssl x509 -fingerprint -sha256`). */
  fingerprint256: string;
  subject: string;
  issuer: string;
  /** The SANs as Node writes them (`URI:urn:prevail:node:1, DNS:localhost`), or undefined. */
  subjectAltName: string | undefined;
  /** Whether it is a CA certificate. */
  ca: boolean;
}

function badCertificate(path: string | undefined, message: string, cause?: unknown): PrevailError {
  return new PrevailError(ErrorCodes.BAD_CERTIFICATE, message, {
    ...(path !== undefined ? { path } : {}),
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Reads the PEM text of a member's CA, certificate and key, or throws PREVAIL_BAD_CERTIFICATE
 * with the `path` of the first file that is unreadable, not PEM of its kind, or (the key) not
 * the certificate's.
 */
export function loadTlsFiles(paths: TlsFiles): TlsFiles {
  const ca = readPem(paths.ca, 'certificate');
  const cert = readPem(paths.cert, 'certificate');
  const key = readPem(paths.key, 'private key');
  checkKeyFits(cert, key, paths.key, paths.cert);
  return { ca, cert, key };
}

/**
 * Throws PREVAIL_BAD_CERTIFICATE (`path`: the key's file, when given) unless `key` is the private
 * key of `cert` (both PEM).
 */
export function checkKeyFits(cert: string, key: string, keyPath?: string, certPath?: string): void {
  let fits: boolean;
  try {
    fits = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw badCertificate(keyPath, `the key can't be read: ${(err as Error).message}`, err);
  }
  if (!fits)
    throw badCertificate(
      keyPath,
      `${keyPath ?? 'the key'} is not the key of ${certPath ?? 'the certificate'}`,
    );
}

/** One PEM file's text, checked to hold a certificate or a (unencrypted) private key. */
export function readPem(path: string, kind: 'certificate' | 'private key'): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw badCertificate(path, `can't read ${kind} file ${path}: ${reason}`, err);
  }
  try {
    if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) throw new Error('no PEM block');
    if (kind === 'certificate') new X509Certificate(text);
    else createPrivateKey(text);
  } catch (err) {
    throw badCertificate(path, `${path} is not a PEM ${kind} (${(err as Error).message})`, err);
  }
  return text;
}

/** Who a PEM certificate names and when it is valid; PREVAIL_BAD_CERTIFICATE if it isn't one. */
export function describeCert(pem: string | Buffer): CertDescription {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw badCertificate(undefined, `not a PEM certificate (${(err as Error).message})`, err);
  }
  return {
    identity: identityOf(cert.subjectAltName),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
    subject: cert.subject,
    issuer: cert.issuer,
    subjectAltName: cert.subjectAltName,
    ca: cert.ca,
  };
}

/** The file names `prevail certs` uses for `base` (`ca`, `node-1`, `client-ops`) in `dir`. */
export function certPaths(dir: string, base: string): { cert: string; key: string } {
  return { cert: join(dir, `${base}.pem`), key: join(dir, `${base}-key.pem`) };
}

/**
 * Writes a certificate (mode 0644) and its key (0600) as `<base>.pem` and `<base>-key.pem` in
 * `dir`, each replacing any file of that name in one rename: a process reloading them (SIGHUP)
 * sees the old file or the new one, never part of one.
 */
export function writeCertFiles(
  dir: string,
  base: string,
  pair: CertAndKey,
): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = certPaths(dir, base);
  replaceFile(paths.key, pair.key, 0o600);
  replaceFile(paths.cert, pair.cert, 0o644);
  return paths;
}

/** Where `prevail certs revoke` keeps the CA's revocation list in `dir`. */
export function crlPath(dir: string): string {
  return join(dir, 'crl.pem');
}

/** Writes `dir`/crl.pem (mode 0644) in one rename, as writeCertFiles does. */
export function writeCrlFile(dir: string, pem: string): string {
  const path = crlPath(dir);
  replaceFile(path, pem, 0o644);
  return path;
}

/** Whether either of `<base>.pem`, `<base>-key.pem` exists in `dir`. */
export function certFilesExist(dir: string, base: string): boolean {
  const paths = certPaths(dir, base);
  return existsSync(paths.cert) || existsSync(paths.key);
}

function replaceFile(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    // The mode is set at creation (a key is never readable by others, even briefly), then again
    // because the umask may have narrowed it.
    writeFileSync(tmp, text, { mode, flag: 'wx' });
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

// The TLS settings named by `--ca`, `--cert`, `--key` (and `--crl`): read once, here, for both the
// HTTP API (ServiceOptions.tls) and the cluster's transport, which take the same files.
import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

import { crlBlocks, describeCrls, readCrl } from '../certs/crl.js';
import { loadTlsFiles } from '../certs/files.js';
import { ErrorCodes, PrevailError } from './errors.js';

/** A CA bundle, this side's certificate chain and its private key, in PEM. */
export interface TlsMaterial {
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
  /** A revocation list from the CA (PEM): the certificates it names are refused. */
  crl?: string | Buffer | undefined;
}

export interface TlsPaths {
  ca?: string;
  cert?: string;
  key?: string;
  crl?: string | undefined;
}

/**
 * The three PEM files, or undefined when none is named. Naming some but not all, or a file that
 * can't be read or is not PEM, is PREVAIL_BAD_CERTIFICATE with `path`.
 */
export function readTlsFiles(paths: TlsPaths): TlsMaterial | undefined {
  const named = (['ca', 'cert', 'key'] as const).filter((k) => paths[k] !== undefined);
  if (named.length === 0 && paths.crl !== undefined)
    throw new PrevailError(ErrorCodes.BAD_CERTIFICATE, '--crl needs --ca, --cert and --key');
  if (named.length === 0) return undefined;
  if (named.length !== 3)
    throw new PrevailError(
      ErrorCodes.BAD_CERTIFICATE,
      `TLS needs all of --ca, --cert and --key; got only ${named.map((k) => `--${k}`).join(', ')}`,
    );
  const files = loadTlsFiles({ ca: paths.ca!, cert: paths.cert!, key: paths.key! });
  return paths.crl === undefined ? files : { ...files, crl: readCrl(paths.crl, files.ca) };
}

/** The serials `material`'s revocation list names (as serialKey() writes them). */
export function revokedSerials(material: TlsMaterial): Set<string> {
  if (material.crl === undefined) return new Set();
  const ca = material.ca.toString();
  const lists = describeCrls(material.crl.toString(), ca);
  return new Set(lists.flatMap((list) => list.revoked.map((r) => r.serial)));
}

/**
 * Node's TLS settings for `material` (the revocation lists as Node takes them: one per CA).
 * TLS 1.2 renegotiation is off: a connection then keeps the client certificate it was made
 * with, so its identity is read once per connection (core/auth.ts), and a client cannot make
 * the server redo a handshake's work on demand. TLS 1.3 has no renegotiation.
 */
export function contextOptions(
  { ca, cert, key, crl }: TlsMaterial,
  minVersion: 'TLSv1.2' | 'TLSv1.3',
): SecureContextOptions {
  return {
    ca,
    cert,
    key,
    minVersion,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
    ...(crl !== undefined ? { crl: crlBlocks(crl) } : {}),
  };
}

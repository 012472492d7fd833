// The TLS settings named by `--ca`, `--cert` and `--key`: read once, here, for both the HTTP API
// (ServiceOptions.tls) and the cluster's transport, which take the same three files.
import { loadTlsFiles } from '../certs/files.js';
import { ErrorCodes, PrevailError } from './errors.js';

/** A CA bundle, this side's certificate chain and its private key, in PEM. */
export interface TlsMaterial {
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

export interface TlsPaths {
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * The three PEM files, or undefined when none is named. Naming some but not all, or a file that
 * can't be read or is not PEM, is PREVAIL_BAD_CERTIFICATE with `path`.
 */
export function readTlsFiles(paths: TlsPaths): TlsMaterial | undefined {
  const named = (['ca', 'cert', 'key'] as const).filter((k) => paths[k] !== undefined);
  if (named.length === 0) return undefined;
  if (named.length !== 3)
    throw new PrevailError(
      ErrorCodes.BAD_CERTIFICATE,
      `TLS needs all of --ca, --cert and --key; got only ${named.map((k) => `--${k}`).join(', ')}`,
    );
  return loadTlsFiles({ ca: paths.ca!, cert: paths.cert!, key: paths.key! });
}

// The client commands' one HTTP(S) request to a node: with the bearer token and, for https
// URLs, the CA to verify the node with and the client certificate to show it.
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

import { crlBlocks, readCrl } from '../certs/crl.js';
import type { TlsPaths } from '../core/tls-files.js';
import { fail } from './args.js';

export interface Transport {
  timeoutMs: number;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /**
   * For https URLs: the CA (else the system's), the client certificate and key (else none),
   * and the CA's revocation lists (a node whose certificate they name is refused).
   */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; crl?: string[] };
}

/** The status and text of the answer; rejects with a one-line reason when there is none. */
export function call(
  transport: Transport,
  url: string,
  method: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string | number> = {};
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  if (transport.token !== undefined) headers.authorization = `Bearer ${transport.token}`;
  const https = url.startsWith('https:');
  const options = {
    method,
    headers,
    signal: AbortSignal.timeout(transport.timeoutMs),
    ...(https ? transport.tls : {}),
  };
  return new Promise((resolve, reject) => {
    const onAnswer = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString() }),
      );
      res.on('error', (err) => reject(reason(err)));
    };
    const req = https ? httpsRequest(url, options, onAnswer) : httpRequest(url, options, onAnswer);
    req.on('error', (err) => reject(reason(err)));
    req.end(payload);
  });
}

/** --ca, --cert, --key, --crl as a client's TLS options (any of them; the files read now). */
export function clientTls(paths: TlsPaths): Transport['tls'] {
  const read = (flag: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      return fail(`${flag} ${path}: ${(err as Error).message}`);
    }
  };
  if ((paths.cert === undefined) !== (paths.key === undefined))
    fail('--cert and --key go together');
  const ca = read('--ca', paths.ca);
  const cert = read('--cert', paths.cert);
  const key = read('--key', paths.key);
  const crl = paths.crl === undefined ? undefined : checkedCrl(paths.crl, ca);
  return {
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(crl ? { crl } : {}),
  };
}

/**
 * The lists of a --crl file, checked as `serve --crl` checks them (signed by a CA of --ca, not
 * expired, one per CA): a bad list would make every node look revoked, or none.
 */
function checkedCrl(path: string, ca: Buffer | undefined): string[] {
  if (ca === undefined) return fail('--crl needs --ca: the lists are checked against the CA');
  try {
    return crlBlocks(readCrl(path, ca.toString()));
  } catch (err) {
    return fail(`--crl ${path}: ${(err as Error).message}`);
  }
}

function reason(err: Error & { code?: string }): Error {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return new Error('TimeoutError');
  return new Error(err.code ? `${err.code}: ${err.message}` : err.message);
}

// Request bodies: read within a limit, decoded (UTF-8, JSON), and the rest of one over the limit
// discarded so the client sees its 413.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { debug } from '../core/diagnostics.js';
import { ErrorCodes, invalid, isPrevailError } from '../core/errors.js';
import { CLIENT_CLOSED, HttpError } from './http-errors.js';

/** The largest request body by default (ServiceOptions.maxBodyBytes, OperationsOptions.maxBodyBytes). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function decodeUtf8(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid('the body is not valid UTF-8');
  }
}

export function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(decodeUtf8(bytes));
  } catch (err) {
    if (isPrevailError(err)) throw err;
    throw invalid(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

/** How much of a body over the limit is read and thrown away so the client sees its 413. */
const DISCARD_BYTES = 256 * 1024 * 1024;
/** How long (ms) a connection answered with 413 waits for the rest of the body before it is cut. */
const DISCARD_MS = 30_000;

/**
 * Reads the body, at most `limit` bytes. Over the limit (by Content-Length, or once the bytes
 * or chunks received pass it) it rejects with a 413 at once, without waiting for the rest: the
 * answer closes the connection, and `endAfterBody` reads and discards the rest first.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new HttpError(
      413,
      ErrorCodes.TOO_LARGE,
      `the body is larger than the limit of ${limit} bytes (prevail serve --max-body)`,
      { limit },
      { connection: 'close' },
    );
  if (Number(req.headers['content-length']) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Settled once: 'close' follows every request, and an error made for nothing costs a
    // stack trace on each.
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      outcome();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      chunks.length = 0;
      settle(() => reject(tooLarge()));
    };
    // A client that goes away mid-body: HTTP/1.1 reports an 'error' (ECONNRESET), an HTTP/2
    // stream reset only 'close' (and its request calls itself `complete`). Either way nothing
    // was proposed and nobody hears an answer.
    const onGone = (cause?: Error) => settle(() => reject(clientClosed(size, cause)));
    req.on('data', onData);
    req.once('end', () => settle(() => resolve(Buffer.concat(chunks, size))));
    req.once('error', onGone);
    req.once('close', () => onGone());
  });
}

function clientClosed(received: number, cause?: Error): HttpError {
  const err = new HttpError(
    499,
    CLIENT_CLOSED,
    `the client closed the request after ${received} bytes of its body`,
    { received },
  );
  if (cause) err.cause = cause;
  return err;
}

/**
 * Sends the whole answer now, then reads and discards the rest of the request body before
 * ending the response (which closes the connection), so the client never writes into a closed
 * socket: it reads the answer whenever it looks (fetch and curl stop sending once they see it;
 * a raw client that sends everything first finds it waiting). Bounded: past DISCARD_BYTES or
 * DISCARD_MS the connection is cut.
 */
export function endAfterBody(res: ServerResponse, text: string): void {
  const req = res.req;
  res.write(text);
  let discarded = 0;
  const done = () => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', done);
    res.off('close', done);
    if (!res.writableEnded) res.end();
  };
  const onData = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_BYTES) {
      debug(
        'service: %s %s: cut after discarding %d bytes of a body over the limit',
        req.method,
        req.url,
        discarded,
      );
      done();
    }
  };
  const timer = setTimeout(() => {
    debug(
      'service: %s %s: cut after %d ms waiting for the rest of a body over the limit',
      req.method,
      req.url,
      DISCARD_MS,
    );
    done();
  }, DISCARD_MS);
  timer.unref();
  req.on('data', onData);
  req.once('end', done);
  res.once('close', done);
  req.resume();
}

/**
 * The JSON body, or undefined when there is none. A framework's body parser (express.json())
 * may have read it already: then its `req.body` is taken as is.
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const parsed = (req as { body?: unknown }).body;
  if (parsed !== undefined && req.readableEnded) {
    if (Buffer.isBuffer(parsed)) return parsed.length === 0 ? undefined : parseJson(parsed);
    if (typeof parsed === 'string')
      return parsed === '' ? undefined : parseJson(Buffer.from(parsed));
    // express.json() leaves {} for a request without a body.
    return typeof parsed === 'object' && parsed !== null && Object.keys(parsed).length === 0
      ? undefined
      : parsed;
  }
  const raw = await readBody(req, limit);
  return raw.length === 0 ? undefined : parseJson(raw);
}

// Writing the service's answers: JSON with its headers, and every error as
// { "error": { code, message, leader?, mayHaveApplied?, version?, holdingBack? } } with its HTTP status.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { debug } from '../core/diagnostics.js';
import type { MemberRef } from '../core/errors.js';
import { endAfterBody } from './body.js';
import { CLIENT_CLOSED, HttpError, httpErrorOf } from './http-errors.js';

/** Sends `body` as JSON; `closing` adds `connection: close` (the node is shutting down). */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  closing = false,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  const all: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...(closing ? { connection: 'close' } : {}),
    ...headers,
  };
  // HTTP/2 has no such header: a connection closes with GOAWAY, and an answer ends its stream
  // alone, so it ends at once (no body to drain first). node:http2 would drop it with a warning.
  if (res.req.httpVersionMajor === 2) delete all.connection;
  res.writeHead(status, all);
  // Closing the connection while the client is still sending would reset it, and the client
  // (fetch, a raw socket) would see the reset instead of this answer: end only after the body.
  if (all.connection === 'close' && !res.req.complete) endAfterBody(res, text);
  else res.end(text);
}

/** The error as its HTTP answer; `leaderHint` names the leader on a 503 that doesn't. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  req: IncomingMessage,
  leaderHint: () => MemberRef | null,
  closing: boolean,
): void {
  if (err instanceof HttpError && err.code === CLIENT_CLOSED) {
    debug('%s %s: %s', req.method, req.url, err.message);
    res.destroy();
    return;
  }
  const answer = httpErrorOf(err, leaderHint);
  if (answer) {
    if (answer.status === 500) console.error(`${req.method} ${req.url}:`, err);
    send(res, answer.status, answer.body, answer.headers, closing);
    return;
  }
  // A command handler's own error (a bad argument that got past the checks above), or a bug.
  console.error(`${req.method} ${req.url}:`, err);
  const error = {
    code: 'PREVAIL_INTERNAL',
    message: 'the server failed on this request; the error is in its log',
  };
  send(res, 500, { error }, {}, closing);
}

// The key-value routes of the reference service, and the dispatch that runs the route a request
// names or answers 405 (with Allow) or 404. The key handlers live in kv-routes.ts; status,
// health and the admin routes are the operations handler's (operations.ts), which the service
// mounts beside these.
import type { IncomingMessage } from 'node:http';

import { ErrorCodes, invalid } from '../core/errors.js';
import { BAD_METHOD, HttpError } from './http-errors.js';
import { casKey, deleteKey, getKey, putKey } from './kv-routes.js';
import type { KvStore } from './kv-schema.js';
import { checkKey } from './kv-schema.js';

/** What every key route may use. */
export interface RouteContext {
  store: KvStore;
  maxBody: number;
  readTimeoutMs: number;
}

/** A handler's answer: [status, body], or just a body for 200. */
export type RouteResult = [number, unknown] | unknown;

export type Route = [
  method: string,
  pattern: RegExp,
  run: (m: string[], req: IncomingMessage, url: URL, signal: AbortSignal) => RouteResult,
];

/** The key routes, in the order the 405's Allow header lists methods. */
export function kvRoutes(ctx: RouteContext): Route[] {
  return [
    ['PUT', /^\/kv\/([^/]*)$/, ([k], req) => putKey(ctx, req, pathKey(k!))],
    ['GET', /^\/kv\/([^/]*)$/, ([k], _req, url, signal) => getKey(ctx, url, pathKey(k!), signal)],
    ['DELETE', /^\/kv\/([^/]*)$/, ([k]) => deleteKey(ctx, pathKey(k!))],
    ['POST', /^\/kv\/([^/]*)\/cas$/, ([k], req) => casKey(ctx, req, pathKey(k!))],
  ];
}

/** Runs the route `url` names (default: the request's); its answer as [status, body]. */
export async function dispatch(
  routes: Route[],
  req: IncomingMessage,
  signal: AbortSignal,
  url = new URL(req.url ?? '/', 'http://localhost'),
): Promise<[number, unknown]> {
  const allowed: string[] = [];
  for (const [method, pattern, run] of routes) {
    const m = pattern.exec(url.pathname);
    if (!m) continue;
    if (method !== req.method) {
      allowed.push(method);
      continue;
    }
    const out = await run(m.slice(1), req, url, signal);
    return Array.isArray(out) ? (out as [number, unknown]) : [200, out];
  }
  if (allowed.length)
    throw new HttpError(
      405,
      BAD_METHOD,
      `${req.method} is not allowed here`,
      {},
      { allow: allowed.join(', ') },
    );
  throw new HttpError(404, ErrorCodes.NOT_FOUND, `no route for ${req.method} ${url.pathname}`);
}

/** The key in a path segment: percent-decoded, non-empty, at most MAX_KEY_BYTES. */
function pathKey(segment: string): string {
  let key: string;
  try {
    key = decodeURIComponent(segment);
  } catch {
    throw invalid('the key is not valid percent-encoding');
  }
  return checkKey(key);
}

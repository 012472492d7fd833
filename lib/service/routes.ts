// The service's routing table, and the dispatch that runs the route a request names or answers
// 405 (with Allow) or 404. Each route's handler lives with its concern: kv-routes.ts (the keys),
// node-routes.ts (status and health), member-routes.ts (membership, transfer, snapshot).
import type { IncomingMessage } from 'node:http';

import { ErrorCodes, invalid } from '../core/errors.js';
import { backup } from './backup-route.js';
import { BAD_METHOD, HttpError } from './http-errors.js';
import { casKey, deleteKey, getKey, putKey } from './kv-routes.js';
import type { KvStore } from './kv-schema.js';
import { checkKey } from './kv-schema.js';
import { addMember, removeMember, snapshot, transfer } from './member-routes.js';
import { healthLeader, healthReady, reload, status } from './node-routes.js';

/** What every route may use. */
export interface RouteContext {
  store: KvStore;
  maxBody: number;
  readTimeoutMs: number;
  /** Serving beyond loopback without auth (ServiceOptions.insecure): said in /status. */
  insecure?: boolean;
  /** The service's reload() (POST /admin/reload). */
  reload?: () => unknown;
}

/** A handler's answer: [status, body], or just a body for 200. */
export type RouteResult = [number, unknown] | unknown;

type Route = [
  method: string,
  pattern: RegExp,
  run: (m: string[], req: IncomingMessage, url: URL, signal: AbortSignal) => RouteResult,
];

/** The table, in the order the 405's Allow header lists methods. */
export function serviceRoutes(ctx: RouteContext): Route[] {
  return [
    ['PUT', /^\/kv\/([^/]*)$/, ([k], req) => putKey(ctx, req, pathKey(k!))],
    ['GET', /^\/kv\/([^/]*)$/, ([k], _req, url, signal) => getKey(ctx, url, pathKey(k!), signal)],
    ['DELETE', /^\/kv\/([^/]*)$/, ([k]) => deleteKey(ctx, pathKey(k!))],
    ['POST', /^\/kv\/([^/]*)\/cas$/, ([k], req) => casKey(ctx, req, pathKey(k!))],
    ['GET', /^\/status$/, () => status(ctx)],
    ['GET', /^\/health\/leader$/, () => healthLeader(ctx)],
    ['GET', /^\/health\/ready$/, () => healthReady(ctx)],
    ['POST', /^\/admin\/members$/, (_m, req) => addMember(ctx, req)],
    ['DELETE', /^\/admin\/members\/([^/]+)$/, ([id]) => removeMember(ctx, id!)],
    ['POST', /^\/admin\/transfer$/, (_m, req) => transfer(ctx, req)],
    ['POST', /^\/admin\/snapshot$/, () => snapshot(ctx)],
    ['POST', /^\/admin\/reload$/, () => reload(ctx)],
    ['POST', /^\/admin\/backup$/, (_m, _req, url) => backup(ctx, url)],
  ];
}

/** Runs the route the request names; its answer as [status, body]. */
export async function dispatch(
  routes: Route[],
  req: IncomingMessage,
  signal: AbortSignal,
): Promise<[number, unknown]> {
  const url = new URL(req.url ?? '/', 'http://localhost');
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

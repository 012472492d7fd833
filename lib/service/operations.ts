// The operations handler: everything an operator or the CLI asks of a node, mountable in any
// app on `open()` (node:http, Express, Fastify) and the very routes `prevail serve` answers.
//
//   GET    /status                            this node, and the members as it sees them
//   GET    /health, /health/ready, /health/leader   the load balancer's checks
//   GET    /admin/members                     the members (lag on the leader)
//   POST   /admin/members { id, address, role? }, DELETE /admin/members/:id,
//   POST   /admin/members/:id/role { role }, POST /admin/transfer { id? },
//   POST   /admin/snapshot                    (leader only)
//   POST   /admin/backup[?capture=false]      a backup: to the destination the app configured,
//                                             else (or on accept: application/octet-stream) the file
//   POST   /admin/schema/activate { version? }  (forwarded to the leader)
//   POST   /admin/reload                      (`prevail serve` only: its files read again)
//   GET    /admin, /admin/status.json, /admin/events   the admin page
//
// Each under `prefix`. Credentials are checked first, for every path of its own: /health*
// as `auth.health` says (open by default), everything else needs `admin`.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { adminHandler, type AdminHandler, type AdminOptions } from '../admin/admin.js';
import {
  HttpAuth,
  refusalBody,
  type AuthOptions,
  type AuthRefusal,
  type Permission,
} from '../core/auth.js';
import { ErrorCodes, invalid } from '../core/errors.js';
import type { Store } from '../store.js';
import { FileAnswer } from './backup-route.js';
import { DEFAULT_MAX_BODY_BYTES } from './body.js';
import { HttpError } from './http-errors.js';
import {
  activate,
  addMember,
  assignRole,
  backup,
  listMembers,
  removeMember,
  snapshot,
  transfer,
} from './member-routes.js';
import { healthLeader, healthLive, healthReady, reload, status } from './node-routes.js';
import { send, sendError } from './respond.js';
import { dispatch, type Route } from './routes.js';

/** Any store: the handler uses only what every Store has (and `backup` when it exists). */
export type OpsStore = Store<any, any>;

/** What every operations route may use. */
export interface OpsContext {
  store: OpsStore;
  maxBody: number;
  /** Answering without credentials (no auth): said in /status as `insecure`. */
  insecure: boolean;
  /** POST /admin/reload (the service's reload()); without it the route is INVALID_STATE. */
  reload?: (() => unknown) | undefined;
  /** Where POST /admin/backup writes (OperationsOptions.backup). */
  backup?: { destination: unknown } | undefined;
}

export interface OperationsOptions {
  /**
   * Who may do what: users with tokens and/or client certificate names and their permissions
   * (the same settings as `prevail serve --auth`). Required, unless `insecure: true`.
   */
  auth?: AuthOptions | HttpAuth;
  /**
   * Answer without credentials: anyone who reaches the app may change the membership, move
   * the leadership and read the cluster's status. Only for an app bound to loopback, or behind
   * a proxy that authenticates. Ignored when `auth` is given.
   */
  insecure?: boolean;
  /** Where the routes live: '' (default: /status, /admin/…) or '/segment[/segment…]'. */
  prefix?: string;
  /** Largest request body. Default 1 MiB; beyond it: 413. */
  maxBodyBytes?: number;
  /** The admin page's history size and push interval (adminHandler's options). */
  admin?: Pick<AdminOptions, 'historySize' | 'intervalMs'>;
  /** POST /admin/backup writes `store.backup(destination)`; without it the route answers 501. */
  backup?: { destination: unknown };
}

/**
 * A request handler. For a path of its own it answers (and returns true); for any other it
 * calls `next()` when given (Express, Connect, a node:http app chaining to its own routes),
 * else answers 404, and returns false.
 */
export interface OperationsHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): boolean;
  /** The admin page's handler inside (its status document: `ops.admin.status()`). */
  readonly admin: AdminHandler;
  /** Ends the admin page's event streams and stops listening to the store (before `server.close()`). */
  close(): void;
}

/** The service's own settings besides the public ones (operations.ts's callers in lib/service). */
export interface OpsSettings {
  /** Read on each request: a reload swaps `auth` in place. */
  guard: { auth?: HttpAuth | undefined };
  prefix: string;
  maxBody: number;
  insecure: boolean;
  admin?: Pick<AdminOptions, 'historySize' | 'intervalMs'> | undefined;
  backup?: { destination: unknown } | undefined;
  reload?: () => unknown;
  /** True once the app is shutting down: requests are answered 503 CLOSED. */
  closing?: () => boolean;
  /** Called once a request's response closed while shutting down (the service closes idle connections). */
  onClosed?: () => void;
}

/** The code of POST /admin/backup when this build or this app has no backup to take (501). */
export const NOT_AVAILABLE = 'PREVAIL_NOT_AVAILABLE';

const PREFIX = /^(\/[A-Za-z0-9._~-]+)*$/;
/** The paths the handler owns (below its prefix); anything else goes to `next()`. */
const OWN = /^\/(status|health|admin)(\/.*)?$/;

/**
 * The operations handler of `store`. Refuses (PREVAIL_INVALID_ARGUMENT) to be made without
 * `auth` unless `insecure: true`: an app that forgot auth must not hand its cluster to anyone.
 */
export function operationsHandler(
  store: OpsStore,
  options: OperationsOptions = {},
): OperationsHandler {
  const auth =
    options.auth === undefined || options.auth instanceof HttpAuth
      ? options.auth
      : new HttpAuth(options.auth);
  if (!auth && options.insecure !== true)
    throw invalid(
      'operationsHandler needs auth (users with the admin permission), or insecure: true to answer anyone who reaches the app',
    );
  const prefix = options.prefix ?? '';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix))
    throw invalid(`prefix must be '' or '/segment[/segment…]', got ${JSON.stringify(prefix)}`);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!(Number.isSafeInteger(maxBody) && maxBody > 0))
    throw invalid(`maxBodyBytes must be a positive integer, got ${maxBody}`);
  return createOperations(store, {
    guard: { auth },
    prefix,
    maxBody,
    insecure: !auth,
    admin: options.admin,
    backup: options.backup,
  });
}

/** The handler on checked settings: operationsHandler's, and `prevail serve`'s. */
export function createOperations(store: OpsStore, settings: OpsSettings): OperationsHandler {
  const { guard, prefix } = settings;
  const admin = adminHandler(store, { ...settings.admin, basePath: `${prefix}/admin` });
  const ctx: OpsContext = {
    store,
    maxBody: settings.maxBody,
    insecure: settings.insecure,
    reload: settings.reload,
    backup: settings.backup,
  };
  const routes = opsRoutes(ctx);
  const leaderHint = () => store.node.status().leader;
  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    const url = urlOf(req);
    const path = url && ownPath(url.pathname, prefix);
    if (path === null || path === undefined) {
      if (next) next();
      else send(res, 404, notFoundBody(req), {}, false);
      return false;
    }
    // Credentials before anything else, the admin page included: nothing is said to a stranger.
    const auth = guard.auth;
    const refusal = auth?.check(req, permissionOf(path, auth.health));
    if (refusal) refuse(req, res, refusal);
    else if (!admin.answer(req, res, url!.pathname)) run(req, res, url!, path);
    return true;
  }) as OperationsHandler;

  const run = (req: IncomingMessage, res: ServerResponse, url: URL, path: string): void => {
    const closing = () => settings.closing?.() === true;
    if (closing()) {
      refuseClosing(req, res);
      return;
    }
    const aborter = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborter.abort(new Error('the client went away'));
      if (closing()) settings.onClosed?.();
    });
    const routed = new URL(`${path}${url.search}`, 'http://localhost');
    dispatch(routes, req, aborter.signal, routed).then(
      ([status, body]) =>
        body instanceof FileAnswer ? body.send(res) : send(res, status, body, {}, closing()),
      (err) => sendError(res, err, req, leaderHint, closing()),
    );
  };

  Object.defineProperty(handler, 'admin', { value: admin });
  handler.close = () => admin.close();
  return handler;
}

/** The table, in the order the 405's Allow header lists methods. */
function opsRoutes(ctx: OpsContext): Route[] {
  return [
    ['GET', /^\/status$/, () => status(ctx)],
    ['GET', /^\/health$/, () => healthLive(ctx)],
    ['GET', /^\/health\/leader$/, () => healthLeader(ctx)],
    ['GET', /^\/health\/ready$/, () => healthReady(ctx)],
    ['GET', /^\/admin\/members$/, () => listMembers(ctx)],
    ['POST', /^\/admin\/members$/, (_m, req) => addMember(ctx, req)],
    ['DELETE', /^\/admin\/members\/([^/]+)$/, ([id]) => removeMember(ctx, id!)],
    ['POST', /^\/admin\/members\/([^/]+)\/role$/, ([id], req) => assignRole(ctx, id!, req)],
    ['POST', /^\/admin\/transfer$/, (_m, req) => transfer(ctx, req)],
    ['POST', /^\/admin\/snapshot$/, () => snapshot(ctx)],
    ['POST', /^\/admin\/backup$/, (_m, req, url) => backup(ctx, req, url)],
    ['POST', /^\/admin\/reload$/, () => reload(ctx)],
    ['POST', /^\/admin\/schema\/activate$/, (_m, req) => activate(ctx, req)],
  ];
}

/**
 * The request's URL, dot segments resolved (`/kv/../status` is /status: credentials are checked
 * for the path that is routed). Express mounted under a path strips it from `req.url`;
 * `originalUrl` keeps it, so `prefix` is always the full path. Null when it doesn't parse.
 */
function urlOf(req: IncomingMessage): URL | null {
  const raw = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  try {
    return new URL(raw, 'http://localhost');
  } catch {
    return null;
  }
}

/** The path below `prefix` when it is one of the handler's own, else null. */
function ownPath(pathname: string, prefix: string): string | null {
  if (!pathname.startsWith(prefix)) return null;
  const rest = pathname.slice(prefix.length);
  return OWN.test(rest) ? rest : null;
}

/** The permission a path of the handler's own needs: health checks per `health`, the rest admin. */
export function permissionOf(path: string, health: 'open' | 'read'): Permission | null {
  if (path === '/health' || path.startsWith('/health/')) return health === 'open' ? null : 'read';
  return 'admin';
}

function notFoundBody(req: IncomingMessage): unknown {
  return {
    error: { code: ErrorCodes.NOT_FOUND, message: `no route for ${req.method} ${req.url}` },
  };
}

/**
 * A 401 or 403. A request that came with a body is answered at once and the connection closed
 * once the body is discarded (bounded, as for a 413): the client sees the answer, not a reset,
 * and a stranger can't make this node read an unbounded body.
 */
export function refuse(req: IncomingMessage, res: ServerResponse, refusal: AuthRefusal): void {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0;
  send(res, refusal.status, refusalBody(refusal), refusal.headers, hasBody);
}

export function refuseClosing(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  send(
    res,
    503,
    { error: { code: ErrorCodes.CLOSED, message: 'this node is shutting down', leader: null } },
    { 'retry-after': '1' },
    true,
  );
}

/** POST /admin/backup without a backup to take: 501 with what is missing. */
export function backupUnavailable(why: string): HttpError {
  return new HttpError(501, NOT_AVAILABLE, why);
}

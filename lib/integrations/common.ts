// What the Fastify plugin and the Express middleware share: the read helper handlers get on
// each request, the error answer (the one code→status table, lib/service/http-errors.ts), and
// the mount point that serves the admin page (or any node:http handler) behind the auth of
// lib/core/auth.ts. Neither framework is imported here: they are optional peers.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { adminHandler, pathOf } from '../admin/admin.js';
import { checkConsistency, type Consistency } from '../cluster/consistency.js';
import type { ReadOptions } from '../cluster/cluster-link.js';
import { HttpAuth, sendRefusal, type AuthOptions } from '../core/auth.js';
import { ErrorCodes, invalid, type MemberRef } from '../core/errors.js';
import { httpErrorOf, type HttpErrorAnswer } from '../service/http-errors.js';
import type { Store } from '../store.js';

// Any store, whatever its schema: the integrations only read, and name the leader.
export type AnyStore = Store<any, any>;

/** A node:http handler to mount: true (or nothing) when it answered, false to pass the request on. */
export type MountHandler = (
  req: IncomingMessage,
  res: ServerResponse,
) => boolean | void | Promise<boolean | void>;

export interface MountOptions {
  /** Where: `/segment[/segment…]`; the handler gets every request at or below it, its URL unchanged. */
  path: string;
  /** Default: the store's admin page (`adminHandler(store, { basePath: path })`). */
  handler?: MountHandler;
}

export interface PrevailOptions<S extends AnyStore = AnyStore> {
  store: S;
  /** The level `read()` uses when given none. Default 'linearizable'. */
  consistency?: Consistency;
  /** The bound `read()` waits for when given none, in ms (then PREVAIL_TIMEOUT, 504). Default 5000. */
  readTimeoutMs?: number;
  /** Mounts the admin page (or `handler`) at this path: `'/_prevail'` or `{ path, handler }`. */
  mount?: string | MountOptions;
  /**
   * Who may use the mount: users with the `admin` permission (bearer token or client
   * certificate). Required with `mount`; `null` leaves it open to anyone who reaches the app.
   */
  auth?: AuthOptions | HttpAuth | null;
}

/** What handlers get as `request.prevail` (Fastify) or `req.prevail` (Express). */
export interface PrevailContext<S extends AnyStore = AnyStore> {
  readonly store: S;
  /**
   * Waits until reading `store.view` is consistent at the level asked for (a level, or
   * `{ consistency, minIndex, timeoutMs, signal }`; see `store.read`), then gives the view.
   * Read it synchronously, right after the await.
   */
  read(options?: Consistency | ReadOptions): Promise<S['view']>;
  /** As `read`, also giving the applied index read at (for read-your-writes: `minIndex`). */
  readWithIndex(options?: Consistency | ReadOptions): Promise<{ view: S['view']; index: number }>;
  /** The HTTP answer for a prevail error (null for any other error); see `httpErrorOf`. */
  errorAnswer(err: unknown): HttpErrorAnswer | null;
}

/** The context for `options.store`, checking the options it uses. */
export function prevailContext<S extends AnyStore>(options: PrevailOptions<S>): PrevailContext<S> {
  const { store } = options;
  if (typeof store !== 'object' || store === null || typeof store.read !== 'function')
    throw invalid('prevail integration: options.store must be an open Store');
  const defaultLevel = checkConsistency(options.consistency);
  const timeoutMs = options.readTimeoutMs ?? 5000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw invalid(`readTimeoutMs must be a positive integer, got ${String(timeoutMs)}`);
  const leaderHint = (): MemberRef | null => store.node.status().leader;
  const readWithIndex = async (
    given: Consistency | ReadOptions = {},
  ): Promise<{ view: S['view']; index: number }> => {
    const asked = typeof given === 'object' && given !== null ? given : { consistency: given };
    const index = await store.read({
      timeoutMs,
      ...asked,
      consistency: asked.consistency ?? defaultLevel,
    });
    return { view: store.view, index };
  };
  return {
    store,
    readWithIndex,
    read: async (given) => (await readWithIndex(given)).view,
    errorAnswer: (err) => httpErrorOf(err, leaderHint),
  };
}

/** Writes an error answer as JSON (the reference service's shape and headers). */
export function sendAnswer(res: ServerResponse, answer: HttpErrorAnswer): void {
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...answer.headers,
  });
  res.end(text);
}

/** The mount point: answers the requests under its path, after checking their credentials. */
export interface Mount {
  readonly path: string;
  /** Whether the request's path is at or below the mount's. */
  covers(req: IncomingMessage): boolean;
  /** Serves a covered request: true when answered (also a refusal), false when the handler passed. */
  serve(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Closes the default admin handler (its event streams would keep a server's close waiting). */
  close(): void;
}

const MOUNT_PATH = /^(\/[A-Za-z0-9._~-]+)+$/;

/** The mount asked for in `options`, or null without one. Throws PREVAIL_INVALID_ARGUMENT. */
export function mountOf(options: PrevailOptions): Mount | null {
  if (options.mount === undefined) return null;
  const { path, handler } =
    typeof options.mount === 'string' ? { path: options.mount, handler: undefined } : options.mount;
  if (typeof path !== 'string' || !MOUNT_PATH.test(path))
    throw invalid(`mount path must be /segment[/segment…], got ${JSON.stringify(path)}`);
  if (options.auth === undefined)
    throw invalid('mount needs auth: { users } (or auth: null to leave it open to anyone)');
  const { auth } = options;
  const guard = auth === null ? null : auth instanceof HttpAuth ? auth : new HttpAuth(auth);
  const admin = handler ? null : adminHandler(options.store, { basePath: path });
  const serveWith: MountHandler = handler ?? admin!;
  const covers = (req: IncomingMessage): boolean => {
    const p = pathOf(req.url);
    return p === path || p.startsWith(`${path}/`);
  };
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const refusal = guard?.check(req, 'admin');
    if (refusal) {
      sendRefusal(res, refusal);
      return true;
    }
    return (await serveWith(req, res)) !== false;
  };
  return { path, covers, serve, close: () => admin?.close() };
}

/** The answer for a covered path that the mounted handler passed on. */
export function notFoundAnswer(req: IncomingMessage): HttpErrorAnswer {
  const message = `no route for ${req.method ?? 'GET'} ${pathOf(req.url)}`;
  return { status: 404, headers: {}, body: { error: { code: ErrorCodes.NOT_FOUND, message } } };
}

/** The answer for a failure that is not prevail's (the mounted handler's bug): its detail goes to the log. */
export function internalAnswer(): HttpErrorAnswer {
  const message = 'the server failed on this request; the error is in its log';
  return { status: 500, headers: {}, body: { error: { code: 'PREVAIL_INTERNAL', message } } };
}

// The service's HTTP(S) server: the operations handler's paths (status, health, admin) to it,
// the rest checked against the auth settings and routed to the key routes, refused with 503
// once the service is closing; listening; and the bounded drain on close.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { acceptWithoutNagle } from '../core/tls-tcp.js';
import { API_PORT_LIMITS, gateHandshakes } from '../core/handshake-gate.js';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';

import { permissionFor, type HttpAuth } from '../core/auth.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { serialKey } from '../certs/crl.js';
import { contextOptions, type TlsMaterial } from '../core/tls-files.js';
import { refuse, refuseClosing, type OperationsHandler } from './operations.js';
import { send, sendError } from './respond.js';
import { dispatch, kvRoutes, type RouteContext } from './routes.js';

/** Whether the service is closing, shared by its server and its close(). */
export interface Lifecycle {
  closing: Promise<void> | null;
}

/**
 * Who may ask (without `auth`: anyone), and HTTPS settings (without `tls`: plain HTTP). Read on
 * each request: a reload (reload.ts) swaps them in place.
 */
export interface Guard {
  auth?: HttpAuth | undefined;
  tls?: TlsMaterial | undefined;
}

/** The server: `ops` (made on the same `guard` and `life`) first, then the key routes. */
export function createServiceServer(
  ctx: RouteContext,
  ops: OperationsHandler,
  life: Lifecycle,
  guard: Guard = {},
): Server {
  const routes = kvRoutes(ctx);
  const leaderHint = () => ctx.store.node.status().leader;
  const kv = (req: IncomingMessage, res: ServerResponse): void => {
    // Credentials before anything else: nothing is said to a stranger.
    const auth = guard.auth;
    const refusal = auth?.check(req, permissionFor(req.method, pathOf(req.url), auth.health));
    if (refusal) {
      refuse(req, res, refusal);
      return;
    }
    if (life.closing) {
      refuseClosing(req, res);
      return;
    }
    const aborter = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborter.abort(new Error('the client went away'));
      if (life.closing) server.closeIdleConnections();
    });
    dispatch(routes, req, aborter.signal).then(
      ([status, body]) => send(res, status, body, {}, life.closing !== null),
      (err) => sendError(res, err, req, leaderHint, life.closing !== null),
    );
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    ops(req, res, () => kv(req, res));
  };
  const server = guard.tls ? httpsServer(guard.tls, onRequest) : createServer(onRequest);
  // A client that asks before sending its body (curl's `Expect: 100-continue`) gets the 413 at
  // once instead of a go-ahead when the declared length is over the limit.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (!(Number(req.headers['content-length']) > ctx.maxBody)) res.writeContinue();
    onRequest(req, res);
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  return server;
}

// The HTTPS servers' connections, for closeRevoked().
const connections = new WeakMap<Server, Set<TLSSocket>>();

/**
 * Closes `server`'s connections whose client certificate has a serial in `revoked`: a reload
 * that revokes a certificate must not leave a keep-alive connection made with it open.
 */
export function closeRevoked(server: Server, revoked: ReadonlySet<string>): number {
  let closed = 0;
  for (const socket of connections.get(server) ?? []) {
    // null once the socket is gone
    const serial = socket.authorized ? socket.getPeerCertificate()?.serialNumber : undefined;
    if (serial !== undefined && revoked.has(serialKey(serial))) {
      socket.destroy();
      closed++;
    }
  }
  return closed;
}

/** The HTTPS API's TLS settings from `material`, at start and on a reload (setSecureContext). */
export function apiContextOptions(material: TlsMaterial): SecureContextOptions {
  return contextOptions(material, 'TLSv1.2');
}

// Node's default is 120 s: a connection that never finishes its handshake would hold one of the
// gate's places (and a descriptor) that long.
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * An HTTPS server that asks for a client certificate but lets a connection without one (or
 * with one it can't verify) through: a bearer token may still authenticate it, and
 * HttpAuth trusts a certificate only when `socket.authorized`.
 */
function httpsServer(
  material: TlsMaterial,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
): Server {
  try {
    const server = createHttpsServer(
      {
        ...apiContextOptions(material),
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      },
      onRequest,
    );
    acceptWithoutNagle(server); // as node:http does for plain HTTP
    gateHandshakes(server, API_PORT_LIMITS, 'http');
    const open = new Set<TLSSocket>();
    server.on('secureConnection', (socket: TLSSocket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    });
    connections.set(server, open);

    return server;
  } catch (err) {
    throw new PrevailError(
      ErrorCodes.BAD_CERTIFICATE,
      `the HTTP API's TLS settings can't be used: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The path as dispatch() routes it (dot segments resolved: `/kv/../status` is /status). */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://localhost').pathname;
  } catch {
    return url ?? '/'; // dispatch fails on it too; anything but /kv/ and /health/ needs admin
  }
}

/** Listens on host:port; resolves with the server's http(s)://host:port. */
export async function listen(
  server: Server,
  host: string,
  port: number,
  scheme: 'http' | 'https' = 'http',
): Promise<string> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new PrevailError(
        ErrorCodes.ADDRESS_IN_USE,
        `HTTP address ${host}:${port} is already in use`,
        { cause: err },
      );
    }
    throw err;
  }
  const bound = server.address() as AddressInfo;
  return `${scheme}://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
}

/**
 * Stops taking connections and waits for those open: requests in progress finish (their writes
 * are acknowledged only once applied); whatever is still open after `drainTimeoutMs` is cut.
 */
export async function drain(
  server: Server,
  ops: { close(): void },
  drainTimeoutMs: number,
): Promise<void> {
  const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
  ops.close(); // the admin page's event streams would hold server.close() open
  server.closeIdleConnections();
  const force = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
  force.unref();
  await stopped;
  clearTimeout(force);
}

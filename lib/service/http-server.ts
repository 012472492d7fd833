// The service's HTTP(S) server: the operations handler's paths (status, health, admin) to it,
// the rest checked against the auth settings and routed to the key routes, refused with 503
// once the service is closing; listening; and the bounded drain on close.
// HTTPS speaks HTTP/2 and HTTP/1.1 on one port (ALPN) unless told not to. HTTP/2 is there for
// its cost: a client with many requests in flight sends them over one connection, and the
// answers ready in one event-loop turn leave in one TLS record instead of one record (an
// encryption, a write, a wake-up on each side) per answer (docs/benchmarks.md, "HTTP/2 on the
// HTTPS API").
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  constants as http2,
  createSecureServer,
  type Http2ServerResponse,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2Session,
} from 'node:http2';
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

/** node:http's server for plain HTTP; for HTTPS, node:http2's, which also speaks HTTP/1.1. */
export type ServiceServer = Server | Http2SecureServer;

/**
 * The server: `ops` (made on the same `guard` and `life`) first, then the key routes. With
 * `guard.tls`, HTTPS: HTTP/2 and HTTP/1.1 when `http2`, else HTTP/1.1 only.
 */
export function createServiceServer(
  ctx: RouteContext,
  ops: OperationsHandler,
  life: Lifecycle,
  guard: Guard = {},
  { http2: withHttp2 = false }: { http2?: boolean } = {},
): ServiceServer {
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
      if (life.closing) closeIdleConnections(server);
    });
    dispatch(routes, req, aborter.signal).then(
      ([status, body]) => send(res, status, body, {}, life.closing !== null),
      (err) => sendError(res, err, req, leaderHint, life.closing !== null),
    );
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.httpVersionMajor === 2) boundHttp2Request(req as unknown as Http2ServerRequest);
    ops(req, res, () => kv(req, res));
  };
  const server = guard.tls ? httpsServer(guard.tls, onRequest, withHttp2) : createServer(onRequest);
  // A client that asks before sending its body (curl's `Expect: 100-continue`) gets the 413 at
  // once instead of a go-ahead when the declared length is over the limit.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (!(Number(req.headers['content-length']) > ctx.maxBody)) res.writeContinue();
    onRequest(req, res);
  });
  // HTTP/1.1's bounds on a slow client (node:http2's server applies them to its HTTP/1.1
  // connections); HTTP/2 requests get the same bound in boundHttp2Request.
  Object.assign(server, { headersTimeout: 20_000, requestTimeout: REQUEST_TIMEOUT_MS });
  return server;
}

/** How long a client has to send a whole request (headers and body). */
const REQUEST_TIMEOUT_MS = 120_000;

/**
 * The HTTPS servers' connections (HTTP/1.1 and HTTP/2 alike), for closeRevoked() and the end of
 * a drain, and their HTTP/2 sessions, which a drain asks to finish (GOAWAY).
 */
interface OpenConnections {
  sockets: Set<TLSSocket>;
  sessions: Set<Http2Session>;
}
const connections = new WeakMap<ServiceServer, OpenConnections>();

/**
 * Closes `server`'s connections whose client certificate has a serial in `revoked`: a reload
 * that revokes a certificate must not leave a keep-alive connection made with it open.
 */
export function closeRevoked(server: ServiceServer, revoked: ReadonlySet<string>): number {
  let closed = 0;
  for (const socket of connections.get(server)?.sockets ?? []) {
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
 * HTTP/2's limits. Requests in progress on one connection: what a client gets in flight over
 * one connection (it may open more), and what one connection can make this node hold. An
 * HTTP/2 connection with no traffic is closed (GOAWAY) after HTTP2_IDLE_MS, as HTTP/1.1's
 * keep-alive connections are after 5 s: a client reconnects when it needs to.
 */
const HTTP2_MAX_STREAMS = 128;
const HTTP2_IDLE_MS = 30_000;

/**
 * An HTTPS server, HTTP/2 or HTTP/1.1 as the client chooses (ALPN), that asks for a client
 * certificate but lets a connection without one (or with one it can't verify) through: a
 * bearer token may still authenticate it, and HttpAuth trusts a certificate only when
 * `socket.authorized`. The handlers take HTTP/2 requests through node:http2's compatibility
 * API (Http2ServerRequest/Response), which has what they use of IncomingMessage and
 * ServerResponse.
 */
function httpsServer(
  material: TlsMaterial,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
  withHttp2: boolean,
): ServiceServer {
  try {
    const options = {
      ...apiContextOptions(material),
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    };
    const server = withHttp2
      ? (createSecureServer(
          {
            ...options,
            allowHTTP1: true,
            settings: { maxConcurrentStreams: HTTP2_MAX_STREAMS },
          },
          onRequest as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void,
        ) as unknown as Http2SecureServer)
      : createHttpsServer(options, onRequest);
    acceptWithoutNagle(server); // as node:http does for plain HTTP
    gateHandshakes(server, API_PORT_LIMITS, 'http');
    const open: OpenConnections = { sockets: new Set(), sessions: new Set() };
    server.on('secureConnection', (socket: TLSSocket) => {
      open.sockets.add(socket);
      socket.once('close', () => open.sockets.delete(socket));
    });
    server.on('session', (session: Http2Session) => {
      open.sessions.add(session);
      session.once('close', () => open.sessions.delete(session));
      session.setTimeout(HTTP2_IDLE_MS, () => session.close());
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

/**
 * Whether the service serves HTTP/2: as `asked`, else where Node has the HTTP/2 fixes (saying
 * on stderr, once, why it does not).
 */
export function http2Wanted(asked: boolean | undefined, version = process.versions.node): boolean {
  if (asked !== undefined) return asked;
  if (hasHttp2Fixes(version)) return true;
  if (!http2Refused) {
    http2Refused = true;
    console.warn(
      `prevail: HTTPS serves HTTP/1.1 only: Node ${version} lacks HTTP/2 security fixes (20.20.2, 22.22.2, 24.14.1 or 25.8.2 has them)`,
    );
  }
  return false;
}
let http2Refused = false;

/**
 * The first release of each Node line with the HTTP/2 fixes of the March 2026 security release
 * (CVE-2026-21714, a memory leak a client drives with WINDOW_UPDATE frames), and with them the
 * earlier ones (stream-reset and CONTINUATION floods). Lines not listed before 26 are end of
 * life without them.
 */
const HTTP2_FIXED: Record<number, [number, number]> = {
  20: [20, 2],
  22: [22, 2],
  24: [14, 1],
  25: [8, 2],
};

/** Whether Node `version` (major.minor.patch) has the HTTP/2 fixes above. */
export function hasHttp2Fixes(version: string): boolean {
  const [major, minor, patch] = version.split('.').map(Number) as [number, number, number];
  if (major >= 26) return true;
  const fixed = HTTP2_FIXED[major];
  if (!fixed) return false;
  return minor > fixed[0] || (minor === fixed[0] && patch >= fixed[1]);
}

/**
 * HTTP/1.1's requestTimeout for an HTTP/2 request: a stream whose request has not ended
 * REQUEST_TIMEOUT_MS after its headers is cancelled (RST_STREAM), so a client can't hold its
 * streams open by sending a body a byte at a time.
 */
function boundHttp2Request(req: Http2ServerRequest): void {
  if (req.complete) return;
  const timer = setTimeout(() => {
    if (!req.stream.destroyed) req.stream.close(http2.NGHTTP2_CANCEL);
  }, REQUEST_TIMEOUT_MS);
  timer.unref();
  const done = () => clearTimeout(timer);
  req.once('end', done);
  req.stream.once('close', done);
}

/** The path as dispatch() routes it (dot segments resolved: `/kv/../status` is /status). */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://localhost').pathname;
  } catch {
    return url ?? '/'; // dispatch fails on it too; anything but /kv/ and /health/ needs admin
  }
}

/**
 * Closes the HTTP/1.1 connections with no request in progress. node:http2's server has this too
 * (for its HTTP/1.1 connections), though its type does not say so.
 */
export function closeIdleConnections(server: ServiceServer): void {
  (server as Server).closeIdleConnections();
}

/** Listens on host:port; resolves with the server's http(s)://host:port. */
export async function listen(
  server: ServiceServer,
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
  server: ServiceServer,
  ops: { close(): void },
  drainTimeoutMs: number,
): Promise<void> {
  const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
  ops.close(); // the admin page's event streams would hold server.close() open
  closeIdleConnections(server); // HTTP/1.1
  const open = connections.get(server);
  // HTTP/2: GOAWAY; a session closes once its requests in progress are answered.
  for (const session of open?.sessions ?? []) session.close();
  // An HTTPS server's connections are all in `open` (node:http2's has no closeAllConnections).
  const force = setTimeout(() => {
    if (open) for (const socket of open.sockets) socket.destroy();
    else (server as Server).closeAllConnections();
  }, drainTimeoutMs);
  force.unref();
  await stopped;
  clearTimeout(force);
}

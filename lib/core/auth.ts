// Who may do what over HTTP: the users of the reference service and of the admin page, each
// known by a bearer token and/or a TLS client certificate naming it, with the permissions it
// has. The one place a request's credentials are checked (the service and adminHandler both
// call `HttpAuth.check`) and the one place tokens are compared.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { TLSSocket } from 'node:tls';

import { ErrorCodes, invalid } from './errors.js';
import { identityOf, isClientName } from './identity.js';

export type Permission = 'read' | 'write' | 'admin';

export const PERMISSIONS: readonly Permission[] = ['read', 'write', 'admin'];

export interface AuthUser {
  /** The user's name; a client certificate naming `urn:prevail:client:<name>` authenticates as it. */
  name: string;
  /** The bearer token, as is or as the hex SHA-256 of it (so the config need not hold the secret). */
  token?: string | { sha256: string };
  permissions: Permission[];
}

export interface AuthOptions {
  users: AuthUser[];
  /** What `/health/*` needs: 'open' (default: load balancers probe without credentials) or 'read'. */
  health?: 'open' | 'read';
}

/** A request refused: 401 (no valid credentials) or 403 (lacks `permission`). */
export interface AuthRefusal {
  status: 401 | 403;
  code: string;
  message: string;
  permission?: Permission;
  headers: Record<string, string>;
}

interface User {
  name: string;
  digest: Buffer | null;
  permissions: ReadonlySet<Permission>;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** The checked options as users and their token digests. Throws PREVAIL_INVALID_ARGUMENT. */
export class HttpAuth {
  readonly health: 'open' | 'read';
  readonly #users: User[];

  constructor(options: AuthOptions) {
    if (typeof options !== 'object' || options === null || !Array.isArray(options.users))
      throw invalid('auth must be { users: [{ name, token?, permissions }] }');
    if (options.health !== undefined && options.health !== 'open' && options.health !== 'read')
      throw invalid(`auth.health must be 'open' or 'read', got ${JSON.stringify(options.health)}`);
    this.health = options.health ?? 'open';
    this.#users = options.users.map((u, i) => checkUser(u, i));
    const names = new Set(this.#users.map((u) => u.name));
    if (names.size !== this.#users.length) throw invalid('auth.users names a user twice');
    const digests = this.#users.filter((u) => u.digest).map((u) => u.digest!.toString('hex'));
    if (new Set(digests).size !== digests.length)
      throw invalid('auth.users gives two users the same token');
  }

  /** The user a request authenticates as: its bearer token when it has one, else its client certificate. */
  #userOf(req: IncomingMessage): User | null | 'bad-token' {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
      return (m && this.#byToken(m[1]!)) ?? 'bad-token';
    }
    const name = clientNameOf(req);
    return name === undefined ? null : (this.#users.find((u) => u.name === name) ?? null);
  }

  /** Null when the request may go on with `permission` (null: needs none), else why not. */
  check(req: IncomingMessage, permission: Permission | null): AuthRefusal | null {
    if (permission === null) return null;
    const user = this.#userOf(req);
    if (user === null || user === 'bad-token') {
      const message =
        user === null
          ? 'this request needs credentials: a bearer token (Authorization: Bearer …) or a client certificate'
          : 'the bearer token is not valid';
      return {
        status: 401,
        code: ErrorCodes.UNAUTHORIZED,
        message,
        headers: { 'www-authenticate': 'Bearer realm="prevail"' },
      };
    }
    if (user.permissions.has(permission)) return null;
    return {
      status: 403,
      code: ErrorCodes.FORBIDDEN,
      message: `user ${user.name} lacks the ${permission} permission this request needs`,
      permission,
      headers: {},
    };
  }

  /**
   * The user whose token digest equals the token's. Every user is compared, in constant time
   * each: the time taken says nothing of which user (if any) matched, nor how closely.
   */
  #byToken(token: string): User | null {
    const digest = sha256(token);
    let found: User | null = null;
    for (const user of this.#users) {
      const same = user.digest !== null && timingSafeEqual(user.digest, digest);
      if (same) found = user;
    }
    return found;
  }
}

/** What a request needs: GET/HEAD /kv reads, other /kv writes, /health per `health`, the rest admin. */
export function permissionFor(
  method: string | undefined,
  path: string,
  health: 'open' | 'read',
): Permission | null {
  if (path.startsWith('/kv/')) return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
  if (path.startsWith('/health/')) return health === 'open' ? null : 'read';
  return 'admin';
}

/** A refusal as the service's JSON error: { error: { code, message, permission? } }. */
export function refusalBody({ code, message, permission }: AuthRefusal): unknown {
  return { error: { code, message, ...(permission ? { permission } : {}) } };
}

/** Answers a refusal (to a request without a body: the admin page's GET and HEAD). */
export function sendRefusal(res: ServerResponse, refusal: AuthRefusal): void {
  const text = JSON.stringify(refusalBody(refusal));
  res.writeHead(refusal.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...refusal.headers,
  });
  res.end(text);
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost): reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * Each connection's client name (null: its certificate names no client). Read once per
 * connection: getPeerCertificate() builds a whole object (~30 µs here), and a connection's
 * certificate cannot change, since renegotiation is off (core/tls-files.ts contextOptions).
 */
const clientNames = new WeakMap<object, string | null>();

/** The client a verified certificate names; undefined without one (or for a member's). */
function clientNameOf(req: IncomingMessage): string | undefined {
  const socket = connectionOf(req);
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function')
    return undefined;
  let name = clientNames.get(socket);
  if (name === undefined) {
    const identity = identityOf(socket.getPeerCertificate().subjectaltname);
    name = identity?.kind === 'client' ? identity.name : null;
    clientNames.set(socket, name);
  }
  return name ?? undefined;
}

/**
 * The request's TLS connection. An HTTP/2 request's `socket` is a proxy made for that request;
 * its session's is made once, so the cache above holds per connection for both protocols.
 */
function connectionOf(req: IncomingMessage): Partial<TLSSocket> {
  const session = (req as unknown as Partial<Http2ServerRequest>).stream?.session;
  return (session?.socket ?? req.socket) as Partial<TLSSocket>;
}

function checkUser(user: AuthUser, i: number): User {
  const where = `auth.users[${i}]`;
  if (typeof user !== 'object' || user === null) throw invalid(`${where} must be an object`);
  if (!isClientName(user.name))
    throw invalid(`${where}.name must be 1–64 of letters, digits, '.', '_', '-'`);
  const perms = user.permissions;
  if (!Array.isArray(perms) || perms.some((p) => !PERMISSIONS.includes(p)))
    throw invalid(`${where}.permissions must be a list of 'read', 'write', 'admin'`);
  return { name: user.name, digest: tokenDigest(user.token, where), permissions: new Set(perms) };
}

function tokenDigest(token: AuthUser['token'], where: string): Buffer | null {
  if (token === undefined) return null;
  if (typeof token === 'string') {
    // A short token can be guessed; a header value can't hold spaces or control characters.
    if (token.length < 16 || !/^[\x21-\x7e]+$/.test(token))
      throw invalid(`${where}.token must be at least 16 printable characters without spaces`);
    return sha256(token);
  }
  const hex = (token as { sha256?: unknown })?.sha256;
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex))
    throw invalid(`${where}.token must be a string or { sha256: <64 hex digits> }`);
  return Buffer.from(hex, 'hex');
}

/** Whether the options hold a token in the clear (an auth file holding one must not be world-readable). */
export function hasPlainTokens(options: AuthOptions): boolean {
  return Array.isArray(options?.users) && options.users.some((u) => typeof u?.token === 'string');
}

// The reference service: a replicated key-value store over HTTP, built only on the object
// store. `prevail serve` (lib/cli.ts) runs one node of it; `startService()` runs it in-process.
//
//   PUT    /kv/:key                   body = the value (raw bytes, UTF-8)   → 200 { index }
//   GET    /kv/:key?consistency=linearizable|lease|stale&minIndex=n      → 200 { value, index } | 404
//   POST   /kv/:key/cas               { expect: string | null, value }    → 200 { index } | 409
//   DELETE /kv/:key                                                       → 200 { index, deleted }
//   GET    /status, /health/leader, /health/ready
//   POST   /admin/members { id, address, role? }, DELETE /admin/members/:id,
//   POST   /admin/transfer { id? }, POST /admin/snapshot                  (leader only)
//
// Every error is JSON: { "error": { "code": "PREVAIL_…", "message": "…", leader?, mayHaveApplied? } }.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { debug } from '../core/diagnostics.js';
import { adminHandler } from '../admin/admin.js';
import { ErrorCodes, PrevailError, isPrevailError, type MemberRef } from '../core/errors.js';
import type { MemberRole } from '../engine/types.js';
import type { ReadOptions } from '../cluster/cluster-link.js';
import { checkConsistency } from '../cluster/consistency.js';
import { collection, defineSchema, open, type Store } from '../store.js';


// ---- the state machine ---------------------------------------------------------------

export interface KvEntry {
  key: string;
  value: string;
}

/** Where a key's bytes may go: non-empty, at most this many bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key === '') throw invalid('the key must be a non-empty string');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalid(`the key is longer than ${MAX_KEY_BYTES} bytes of UTF-8`);
  return key;
}

function checkValue(value: unknown, what = 'value'): string {
  if (typeof value !== 'string') throw invalid(`${what} must be a string`);
  return value;
}

/**
 * The key-value schema: one collection `kv` of `{ key, value }` with a unique index on the
 * key, and three commands. Handlers check their arguments too, so a bad entry fails the
 * same way on every replica.
 */
export const kvSchema = defineSchema({
  collections: {
    kv: collection<KvEntry>()({ indexes: (ix) => ({ byKey: ix.unique((e) => e.key) }) }),
  },
  commands: {
    /** Sets a key. Result: whether the key was new. */
    put: (s, args: { key: string; value: string }) => {
      const key = checkKey(args?.key);
      const value = checkValue(args.value);
      const current = s.kv.byKey.get(key);
      if (current) s.kv.update(current.id, { value });
      else s.kv.insert({ key, value });
      return { created: current === undefined };
    },
    /** Sets a key only if its value is `expect` (null: the key is absent). Result: ok, and the value found. */
    cas: (s, args: { key: string; expect: string | null; value: string }) => {
      const key = checkKey(args?.key);
      const value = checkValue(args.value);
      if (args.expect !== null) checkValue(args.expect, 'expect');
      const current = s.kv.byKey.get(key);
      const found = current ? current.value : null;
      if (found !== args.expect) return { ok: false, current: found };
      if (current) s.kv.update(current.id, { value });
      else s.kv.insert({ key, value });
      return { ok: true, current: found };
    },
    /** Deletes a key. Result: whether it existed. */
    del: (s, args: { key: string }) => {
      const key = checkKey(args?.key);
      const current = s.kv.byKey.get(key);
      if (!current) return { deleted: false };
      s.kv.delete(current.id);
      return { deleted: true };
    },
  },
});

export type KvStore = Store<typeof kvSchema.collections, typeof kvSchema.commands>;

// ---- HTTP ----------------------------------------------------------------------------

/** The HTTP status for each error code; anything else is a 500. */
export const httpStatusOf: Readonly<Record<string, number>> = Object.freeze({
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.NOT_PLAIN_DATA]: 400,
  [ErrorCodes.TOO_LARGE]: 413,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.BAD_MEMBER]: 409,
  [ErrorCodes.MEMBERSHIP_BUSY]: 409,
  [ErrorCodes.UNIQUE_VIOLATION]: 409,
  [ErrorCodes.NOT_LEADER]: 503,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.NOT_READY]: 503,
  [ErrorCodes.CLOSED]: 503,
  [ErrorCodes.LEADERSHIP_LOST]: 503,
  [ErrorCodes.TRANSFER_FAILED]: 503,
  [ErrorCodes.TIMEOUT]: 504,
  [ErrorCodes.NO_SPACE]: 507,
});

/** The code of a refused compare-and-set (409). Not a library error, so not in ErrorCodes. */
export const CAS_CONFLICT = 'PREVAIL_CAS_CONFLICT';
/** A method the route doesn't take (405). */
const BAD_METHOD = 'PREVAIL_METHOD_NOT_ALLOWED';

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string,
    readonly extra: Record<string, unknown> = {}, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

function invalid(message: string): PrevailError {
  return new PrevailError(ErrorCodes.INVALID_ARGUMENT, message);
}

export interface ServiceOptions {
  /** Where the log and snapshots live. Required. */
  dataDir: string;
  /** This node's id. Default 1. */
  id?: number;
  /** The raft address (host:port). Default: this id's entry in `cluster`, else 127.0.0.1 on a free port. */
  raftAddress?: string;
  /** The initial members (bootstrap only). Default: this node alone. */
  cluster?: MemberRef[];
  /** Start empty and wait to be added by the leader (`prevail members add`). */
  join?: boolean;
  /** host:port of the store's peer channel (forwarding, read indexes). Default: the raft host, any free port. */
  channelAddress?: string;
  /** Where HTTP listens: host:port. Default 127.0.0.1:0 (a free port). */
  httpAddress?: string;
  electionTimeoutMs?: number;
  heartbeatMs?: number;
  snapshotThreshold?: number;
  snapshotTrailing?: number;
  /** Forward writes made on a follower to the leader. Default true; false answers 503 with the leader. */
  forward?: boolean;
  /** Largest request body. Default 1 MiB; beyond it: 413. */
  maxBodyBytes?: number;
  /** How long a read may wait (for the leader, or for `minIndex`) before 504. Default 5000 ms. */
  readTimeoutMs?: number;
  /** On close, how long requests in progress get before their connections are cut. Default 10000 ms. */
  drainTimeoutMs?: number;
}

/**
 * A running service. When its store stops on an entry it can't apply (the store's 'error'
 * event), the service closes its HTTP server and leaves the error to the application's
 * listener on `service.store`; with none, it is rethrown (an uncaught exception ends the process).
 */
export interface Service {
  store: KvStore;
  server: Server;
  /** http://host:port */
  url: string;
  /** Stops taking requests, lets those in progress finish (bounded), closes the store handing leadership over. Idempotent. */
  close(options?: { transferLeadership?: boolean }): Promise<void>;
}

/** Parses "host:port" (IPv6 hosts in brackets). */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : -1;
  if (!m || port > 65535) throw invalid(`${what} must be host:port, got ${JSON.stringify(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** Opens the store and serves the key-value API. Resolves once HTTP listens. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const readTimeoutMs = options.readTimeoutMs ?? 5000;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const { host, port } = parseHostPort(options.httpAddress ?? '127.0.0.1:0', 'the HTTP address');
  const store = await open({
    schema: kvSchema, dataDir: options.dataDir, id: options.id, address: options.raftAddress, cluster: options.cluster,
    join: options.join, channelAddress: options.channelAddress, forward: options.forward,
    electionTimeoutMs: options.electionTimeoutMs, heartbeatMs: options.heartbeatMs,
    snapshotThreshold: options.snapshotThreshold, snapshotTrailing: options.snapshotTrailing,
  });
  // When the store stops (see Service), so does the service.
  let service: Service | undefined;
  let stoppedEarly: unknown;
  store.on('error', (err: unknown) => {
    debug('service: the store stopped (%s); closing HTTP', (err as Error)?.message);
    if (!service) {
      stoppedEarly = err;  // startService rejects with it
      return;
    }
    service.close({ transferLeadership: false }).catch(() => undefined);
    if (store.listenerCount('error') === 1) throw err;  // only this listener: nobody else will hear of it
  });
  // The admin page (GET /admin, /admin/status.json, /admin/events) comes before the API routes.
  const admin = adminHandler(store, { basePath: '/admin' });

  let closing: Promise<void> | null = null;

  const leaderHint = (): MemberRef | null => store.node.status().leader;

  // Membership calls on a non-leader must never reach the engine: raft 0.22.1's raft_add
  // and raft_remove assert leadership (the process aborts) instead of returning NOTLEADER.
  // No await may come between this check and the call it guards.
  const requireLeader = (what: string): void => {
    const st = store.node.status();
    if (st.role !== 'leader') {
      throw new PrevailError(st.leader ? ErrorCodes.NOT_LEADER : ErrorCodes.UNAVAILABLE,
        `${what} is done by the leader; this node is ${st.role}`, { leader: st.leader });
    }
  };

  // ---- routes ----------------------------------------------------------------------

  async function putKey(req: IncomingMessage, key: string): Promise<unknown> {
    const value = decodeUtf8(await readBody(req, maxBody));
    const { index } = await store.proposeWithIndex('put', { key, value });
    return { index };
  }

  async function getKey(url: URL, key: string, signal: AbortSignal): Promise<[number, unknown]> {
    const consistency = checkConsistency(url.searchParams.get('consistency'));
    const readOptions: ReadOptions = { consistency, timeoutMs: readTimeoutMs, signal };
    const minIndex = url.searchParams.get('minIndex');
    if (minIndex !== null) {
      const n = /^\d{1,15}$/.test(minIndex) ? Number(minIndex) : NaN;
      if (!Number.isSafeInteger(n)) throw invalid(`minIndex must be a non-negative integer, got ${JSON.stringify(minIndex)}`);
      readOptions.minIndex = n;
    }
    const index = await store.read(readOptions);
    // Safe to read the view synchronously now, at the level asked for.
    const entry = store.view.kv.byKey.get(key);
    if (!entry) return [404, { error: { code: ErrorCodes.NOT_FOUND, message: `no key ${JSON.stringify(key)}` }, index }];
    return [200, { value: entry.value, index }];
  }

  async function casKey(req: IncomingMessage, key: string): Promise<[number, unknown]> {
    const body = parseJson(await readBody(req, maxBody));
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the body must be a JSON object { expect, value }');
    const { expect, value } = body as { expect?: unknown; value?: unknown };
    if (expect === undefined) throw invalid('expect is required: the current value, or null for an absent key');
    if (expect !== null && typeof expect !== 'string') throw invalid('expect must be a string or null');
    if (typeof value !== 'string') throw invalid('value must be a string');
    const { index, result } = await store.proposeWithIndex('cas', { key, expect, value });
    if (result.ok) return [200, { index }];
    return [409, {
      error: { code: CAS_CONFLICT, message: `the value of ${JSON.stringify(key)} is not the expected one` },
      current: result.current, index,
    }];
  }

  async function deleteKey(key: string): Promise<unknown> {
    const { index, result } = await store.proposeWithIndex('del', { key });
    return { index, deleted: result.deleted };
  }

  function status(): unknown {
    const s = store.status();
    return {
      id: s.id, role: s.role, term: s.term, leader: s.leader,
      commitIndex: s.commitIndex, appliedIndex: s.appliedIndex, lastIndex: s.lastIndex,
      members: s.members, snapshot: s.snapshot, health: store.health(),
      effects: s.effects,  // the divergence detector's running hash at this node's applied index
    };
  }

  function healthLeader(): [number, unknown] {
    const h = store.health();
    if (h.leader) return [200, { leader: true, id: store.node.id }];
    throw new PrevailError(ErrorCodes.NOT_LEADER, 'this node is not the leader', { leader: leaderHint() });
  }

  function healthReady(): [number, unknown] {
    const h = store.health();
    if (h.ready) return [200, { ready: true, appliedIndex: h.appliedIndex, leaderCommitIndex: h.leaderCommitIndex, lag: h.lag }];
    throw new HttpError(503, ErrorCodes.NOT_READY, h.leaderCommitIndex === null
      ? 'not ready: no leader is known'
      : `not ready: ${h.lag ?? '?'} entries behind the leader's commit index ${h.leaderCommitIndex}`,
    { leader: leaderHint(), appliedIndex: h.appliedIndex, leaderCommitIndex: h.leaderCommitIndex, lag: h.lag });
  }

  async function addMember(req: IncomingMessage): Promise<unknown> {
    const body = parseJson(await readBody(req, maxBody)) as { id?: unknown; address?: unknown; role?: unknown } | null;
    if (typeof body !== 'object' || body === null) throw invalid('the body must be a JSON object { id, address, role? }');
    const role = (body.role ?? 'voter') as MemberRole;
    requireLeader('adding a member');
    await store.node.addMember({ id: body.id as number, address: body.address as string }, role);
    return { members: store.node.status().members };
  }

  async function removeMember(id: string): Promise<unknown> {
    const n = /^\d{1,10}$/.test(id) ? Number(id) : NaN;
    if (!Number.isSafeInteger(n) || n <= 0) throw invalid(`a member id is a positive integer, got ${JSON.stringify(id)}`);
    requireLeader('removing a member');
    await store.node.removeMember(n);
    return { members: store.node.status().members };
  }

  async function transfer(req: IncomingMessage): Promise<unknown> {
    const raw = await readBody(req, maxBody);
    const body = raw.length === 0 ? {} : parseJson(raw) as { id?: unknown } | null;
    if (typeof body !== 'object' || body === null) throw invalid('the body must be a JSON object { id? }');
    const id = body.id ?? undefined;
    if (id !== undefined && typeof id !== 'number') throw invalid('id must be a number');
    requireLeader('a leadership transfer');
    const leader = await store.node.transferLeadership(id);
    return { leader };
  }

  async function snapshot(): Promise<unknown> {
    requireLeader('a snapshot on demand');
    return store.snapshot();
  }

  type Route = [method: string, pattern: RegExp, run: (m: string[], req: IncomingMessage, url: URL, signal: AbortSignal) => unknown];
  const routes: Route[] = [
    ['PUT', /^\/kv\/([^/]*)$/, ([k], req) => putKey(req, pathKey(k!))],
    ['GET', /^\/kv\/([^/]*)$/, ([k], _req, url, signal) => getKey(url, pathKey(k!), signal)],
    ['DELETE', /^\/kv\/([^/]*)$/, ([k]) => deleteKey(pathKey(k!))],
    ['POST', /^\/kv\/([^/]*)\/cas$/, ([k], req) => casKey(req, pathKey(k!))],
    ['GET', /^\/status$/, () => status()],
    ['GET', /^\/health\/leader$/, () => healthLeader()],
    ['GET', /^\/health\/ready$/, () => healthReady()],
    ['POST', /^\/admin\/members$/, (_m, req) => addMember(req)],
    ['DELETE', /^\/admin\/members\/([^/]+)$/, ([id]) => removeMember(id!)],
    ['POST', /^\/admin\/transfer$/, (_m, req) => transfer(req)],
    ['POST', /^\/admin\/snapshot$/, () => snapshot()],
  ];

  async function route(req: IncomingMessage, signal: AbortSignal): Promise<[number, unknown]> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const allowed: string[] = [];
    for (const [method, pattern, run] of routes) {
      const m = pattern.exec(url.pathname);
      if (!m) continue;
      if (method !== req.method) { allowed.push(method); continue; }
      const out = await run(m.slice(1), req, url, signal);
      return Array.isArray(out) ? out as [number, unknown] : [200, out];
    }
    if (allowed.length) throw new HttpError(405, BAD_METHOD, `${req.method} is not allowed here`, {}, { allow: allowed.join(', ') });
    throw new HttpError(404, ErrorCodes.NOT_FOUND, `no route for ${req.method} ${url.pathname}`);
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) { res.destroy(); return; }
    const text = JSON.stringify(body);
    const all: Record<string, string | number> = {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...(closing ? { connection: 'close' } : {}),
      ...headers,
    };
    res.writeHead(status, all);
    // Closing the connection while the client is still sending would reset it, and the client
    // (fetch, a raw socket) would see the reset instead of this answer: end only after the body.
    if (all.connection === 'close' && !res.req.complete) endAfterBody(res, text);
    else res.end(text);
  }

  function sendError(res: ServerResponse, err: unknown, req: IncomingMessage): void {
    if (err instanceof HttpError) {
      send(res, err.status, { error: { code: err.code, message: err.message, ...err.extra } },
        err.status === 503 ? { 'retry-after': '1', ...err.headers } : err.headers);
      return;
    }
    if (isPrevailError(err)) {
      const status = httpStatusOf[err.code] ?? 500;
      const error: Record<string, unknown> = { code: err.code, message: err.message };
      if (status === 503) error.leader = err.leader ?? leaderHint();
      else if (err.leader !== undefined) error.leader = err.leader;
      if (err.mayHaveApplied !== undefined) error.mayHaveApplied = err.mayHaveApplied;
      if (status === 500) console.error(`${req.method} ${req.url}:`, err);
      send(res, status, { error }, status === 503 ? { 'retry-after': '1' } : {});
      return;
    }
    // A command handler's own error (a bad argument that got past the checks above), or a bug.
    console.error(`${req.method} ${req.url}:`, err);
    send(res, 500, { error: { code: 'PREVAIL_INTERNAL', message: 'the server failed on this request; the error is in its log' } });
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (admin(req, res)) return;
    if (closing) {
      req.resume();
      send(res, 503, { error: { code: ErrorCodes.CLOSED, message: 'this node is shutting down', leader: null } }, { 'retry-after': '1' });
      return;
    }
    const aborter = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborter.abort(new Error('the client went away'));
      if (closing) server.closeIdleConnections();
    });
    route(req, aborter.signal).then(([status, body]) => send(res, status, body), (err) => sendError(res, err, req));
  };
  const server = createServer(onRequest);
  // A client that asks before sending its body (curl's `Expect: 100-continue`) gets the 413 at
  // once instead of a go-ahead when the declared length is over the limit.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (!(Number(req.headers['content-length']) > maxBody)) res.writeContinue();
    onRequest(req, res);
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
  } catch (err) {
    admin.close();
    await store.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new PrevailError(ErrorCodes.ADDRESS_IN_USE, `HTTP address ${host}:${port} is already in use`, { cause: err });
    }
    throw err;
  }
  const bound = server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  debug('service: node %d serving %s', store.node.id, url);

  service = {
    store, server, url,
    close({ transferLeadership = true } = {}) {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        admin.close();  // its event streams would hold server.close() open
        server.closeIdleConnections();
        // Requests in progress finish (their writes are acknowledged only once applied);
        // whatever is still open after the drain time is cut.
        const force = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
        force.unref();
        await stopped;
        clearTimeout(force);
        debug('service: HTTP closed; closing the store (transferLeadership %s)', transferLeadership);
        await store.close({ transferLeadership });
        debug('service: store closed');
      })();
      return closing;
    },
  };
  if (stoppedEarly !== undefined) {
    await service.close({ transferLeadership: false });
    throw stoppedEarly;
  }
  return service;
}

// ---- request helpers -------------------------------------------------------------------

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

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid('the body is not valid UTF-8');
  }
}

function parseJson(bytes: Buffer): unknown {
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
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new HttpError(413, ErrorCodes.TOO_LARGE,
    `the body is larger than the limit of ${limit} bytes (prevail serve --max-body)`, { limit }, { connection: 'close' });
  if (Number(req.headers['content-length']) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) { chunks.push(chunk); return; }
      req.off('data', onData);
      req.off('end', onEnd);
      chunks.length = 0;
      reject(tooLarge());
    };
    const onEnd = () => resolve(Buffer.concat(chunks, size));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', reject);
  });
}

/**
 * Sends the whole answer now, then reads and discards the rest of the request body before
 * ending the response (which closes the connection), so the client never writes into a closed
 * socket: it reads the answer whenever it looks (fetch and curl stop sending once they see it;
 * a raw client that sends everything first finds it waiting). Bounded: past DISCARD_BYTES or
 * DISCARD_MS the connection is cut.
 */
function endAfterBody(res: ServerResponse, text: string): void {
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
      debug('service: %s %s: cut after discarding %d bytes of a body over the limit', req.method, req.url, discarded);
      done();
    }
  };
  const timer = setTimeout(() => {
    debug('service: %s %s: cut after %d ms waiting for the rest of a body over the limit', req.method, req.url, DISCARD_MS);
    done();
  }, DISCARD_MS);
  timer.unref();
  req.on('data', onData);
  req.once('end', done);
  res.once('close', done);
  req.resume();
}

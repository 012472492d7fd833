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

import { adminHandler } from '../admin/admin.js';
import { checkConsistency } from '../cluster/consistency.js';
import type { ReadOptions } from '../cluster/cluster-link.js';
import { parseAddress } from '../core/address.js';
import { debug } from '../core/diagnostics.js';
import {
  ErrorCodes,
  PrevailError,
  invalid,
  isPrevailError,
  type MemberRef,
} from '../core/errors.js';
import type { RaftNodeOptions } from '../engine/options.js';
import type { MemberRole } from '../engine/types.js';
import { open } from '../store.js';
import { decodeUtf8, endAfterBody, parseJson, readBody } from './body.js';
import { BAD_METHOD, CAS_CONFLICT, HttpError, httpStatusOf } from './http-errors.js';
import { checkKey, kvSchema, type KvStore } from './kv-schema.js';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The service's options; the engine's timings are RaftNodeOptions' (documented there). */
export interface ServiceOptions extends Pick<
  RaftNodeOptions,
  'electionTimeoutMs' | 'heartbeatMs' | 'snapshotThreshold' | 'snapshotTrailing'
> {
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

/** Opens the store and serves the key-value API. Resolves once HTTP listens. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const readTimeoutMs = options.readTimeoutMs ?? 5000;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const { host, port } = parseAddress(options.httpAddress ?? '127.0.0.1:0', 'the HTTP address');
  const store = await open({
    schema: kvSchema,
    dataDir: options.dataDir,
    id: options.id,
    address: options.raftAddress,
    cluster: options.cluster,
    join: options.join,
    channelAddress: options.channelAddress,
    forward: options.forward,
    electionTimeoutMs: options.electionTimeoutMs,
    heartbeatMs: options.heartbeatMs,
    snapshotThreshold: options.snapshotThreshold,
    snapshotTrailing: options.snapshotTrailing,
  });
  // When the store stops (see Service), so does the service.
  let service: Service | undefined;
  let stoppedEarly: unknown;
  store.on('error', (err: unknown) => {
    debug('service: the store stopped (%s); closing HTTP', (err as Error)?.message);
    if (!service) {
      stoppedEarly = err; // startService rejects with it
      return;
    }
    service.close({ transferLeadership: false }).catch(() => undefined);
    if (store.listenerCount('error') === 1) throw err; // only this listener: nobody else will hear of it
  });
  // The admin page (GET /admin, /admin/status.json, /admin/events) comes before the API routes.
  const admin = adminHandler(store, { basePath: '/admin' });

  let closing: Promise<void> | null = null;

  const leaderHint = (): MemberRef | null => store.node.status().leader;

  // The addon already refuses membership changes on a non-leader (raft 0.22.1 would abort), with
  // PREVAIL_NOT_LEADER. This check answers first, the same for every leader-only route: UNAVAILABLE
  // while no leader is known (clients retry), and before the arguments are checked or a follower's
  // transfer tells its lease readers to stop trusting it.
  const requireLeader = (what: string): void => {
    const st = store.node.status();
    if (st.role !== 'leader') {
      throw new PrevailError(
        st.leader ? ErrorCodes.NOT_LEADER : ErrorCodes.UNAVAILABLE,
        `${what} is done by the leader; this node is ${st.role}`,
        { leader: st.leader },
      );
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
      if (!Number.isSafeInteger(n))
        throw invalid(`minIndex must be a non-negative integer, got ${JSON.stringify(minIndex)}`);
      readOptions.minIndex = n;
    }
    const index = await store.read(readOptions);
    // Safe to read the view synchronously now, at the level asked for.
    const entry = store.view.kv.byKey.get(key);
    if (!entry)
      return [
        404,
        { error: { code: ErrorCodes.NOT_FOUND, message: `no key ${JSON.stringify(key)}` }, index },
      ];
    return [200, { value: entry.value, index }];
  }

  async function casKey(req: IncomingMessage, key: string): Promise<[number, unknown]> {
    const body = parseJson(await readBody(req, maxBody));
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw invalid('the body must be a JSON object { expect, value }');
    const { expect, value } = body as { expect?: unknown; value?: unknown };
    if (expect === undefined)
      throw invalid('expect is required: the current value, or null for an absent key');
    if (expect !== null && typeof expect !== 'string')
      throw invalid('expect must be a string or null');
    if (typeof value !== 'string') throw invalid('value must be a string');
    const { index, result } = await store.proposeWithIndex('cas', { key, expect, value });
    if (result.ok) return [200, { index }];
    return [
      409,
      {
        error: {
          code: CAS_CONFLICT,
          message: `the value of ${JSON.stringify(key)} is not the expected one`,
        },
        current: result.current,
        index,
      },
    ];
  }

  async function deleteKey(key: string): Promise<unknown> {
    const { index, result } = await store.proposeWithIndex('del', { key });
    return { index, deleted: result.deleted };
  }

  function status(): unknown {
    const s = store.status();
    return {
      id: s.id,
      role: s.role,
      term: s.term,
      leader: s.leader,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      lastIndex: s.lastIndex,
      members: s.members,
      snapshot: s.snapshot,
      health: store.health(),
      effects: s.effects, // the divergence detector's running hash at this node's applied index
    };
  }

  function healthLeader(): [number, unknown] {
    const h = store.health();
    if (h.leader) return [200, { leader: true, id: store.node.id }];
    throw new PrevailError(ErrorCodes.NOT_LEADER, 'this node is not the leader', {
      leader: leaderHint(),
    });
  }

  function healthReady(): [number, unknown] {
    const h = store.health();
    if (h.ready)
      return [
        200,
        {
          ready: true,
          appliedIndex: h.appliedIndex,
          leaderCommitIndex: h.leaderCommitIndex,
          lag: h.lag,
        },
      ];
    throw new HttpError(
      503,
      ErrorCodes.NOT_READY,
      h.leaderCommitIndex === null
        ? 'not ready: no leader is known'
        : `not ready: ${h.lag ?? '?'} entries behind the leader's commit index ${h.leaderCommitIndex}`,
      {
        leader: leaderHint(),
        appliedIndex: h.appliedIndex,
        leaderCommitIndex: h.leaderCommitIndex,
        lag: h.lag,
      },
    );
  }

  async function addMember(req: IncomingMessage): Promise<unknown> {
    const body = parseJson(await readBody(req, maxBody)) as {
      id?: unknown;
      address?: unknown;
      role?: unknown;
    } | null;
    if (typeof body !== 'object' || body === null)
      throw invalid('the body must be a JSON object { id, address, role? }');
    const role = (body.role ?? 'voter') as MemberRole;
    requireLeader('adding a member');
    await store.node.addMember({ id: body.id as number, address: body.address as string }, role);
    return { members: store.node.status().members };
  }

  async function removeMember(id: string): Promise<unknown> {
    const n = /^\d{1,10}$/.test(id) ? Number(id) : NaN;
    if (!Number.isSafeInteger(n) || n <= 0)
      throw invalid(`a member id is a positive integer, got ${JSON.stringify(id)}`);
    requireLeader('removing a member');
    await store.node.removeMember(n);
    return { members: store.node.status().members };
  }

  async function transfer(req: IncomingMessage): Promise<unknown> {
    const raw = await readBody(req, maxBody);
    const body = raw.length === 0 ? {} : (parseJson(raw) as { id?: unknown } | null);
    if (typeof body !== 'object' || body === null)
      throw invalid('the body must be a JSON object { id? }');
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

  type Route = [
    method: string,
    pattern: RegExp,
    run: (m: string[], req: IncomingMessage, url: URL, signal: AbortSignal) => unknown,
  ];
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

  function send(
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
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
    res.writeHead(status, all);
    // Closing the connection while the client is still sending would reset it, and the client
    // (fetch, a raw socket) would see the reset instead of this answer: end only after the body.
    if (all.connection === 'close' && !res.req.complete) endAfterBody(res, text);
    else res.end(text);
  }

  function sendError(res: ServerResponse, err: unknown, req: IncomingMessage): void {
    if (err instanceof HttpError) {
      send(
        res,
        err.status,
        { error: { code: err.code, message: err.message, ...err.extra } },
        err.status === 503 ? { 'retry-after': '1', ...err.headers } : err.headers,
      );
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
    send(res, 500, {
      error: {
        code: 'PREVAIL_INTERNAL',
        message: 'the server failed on this request; the error is in its log',
      },
    });
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (admin(req, res)) return;
    if (closing) {
      req.resume();
      send(
        res,
        503,
        { error: { code: ErrorCodes.CLOSED, message: 'this node is shutting down', leader: null } },
        { 'retry-after': '1' },
      );
      return;
    }
    const aborter = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) aborter.abort(new Error('the client went away'));
      if (closing) server.closeIdleConnections();
    });
    route(req, aborter.signal).then(
      ([status, body]) => send(res, status, body),
      (err) => sendError(res, err, req),
    );
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
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    admin.close();
    await store.close();
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
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  debug('service: node %d serving %s', store.node.id, url);

  service = {
    store,
    server,
    url,
    close({ transferLeadership = true } = {}) {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        admin.close(); // its event streams would hold server.close() open
        server.closeIdleConnections();
        // Requests in progress finish (their writes are acknowledged only once applied);
        // whatever is still open after the drain time is cut.
        const force = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
        force.unref();
        await stopped;
        clearTimeout(force);
        debug(
          'service: HTTP closed; closing the store (transferLeadership %s)',
          transferLeadership,
        );
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

// The admin page: one node's view of the cluster (members, roles, leader, term, commit
// and applied index, lag per member, last snapshot, recent leader changes), as a
// self-contained HTML page, a JSON document and a Server-Sent Events stream. Mount it in
// any node:http server: `if (admin(req, res)) return;`.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { HttpAuth, sendRefusal, type AuthOptions } from '../core/auth.js';
import type { MemberRef } from '../core/errors.js';
import type { RaftNodeStatus } from '../engine/types.js';
import { kMetrics, type StoreMetrics } from '../metrics.js';
import { EventStreams } from './events.js';
import { Monitor, type ChartData } from './monitor.js';
import { renderPage } from './page.js';
import type { AdminMemberSchema, AdminSchema, AdminSchemaSource } from './schema.js';
import { LeaderHistory, adminStatus } from './status.js';

/** What the handler needs: a Store or a RaftNode (anything with `status()` and their events). */
export interface AdminSource {
  /**
   * A Store's status also carries `divergence` (the diverged members get a badge) and
   * `schema` (schema versions: the Schema line, each member's code range and markers).
   */
  status(): RaftNodeStatus & {
    divergence?: { diverged: readonly { node: number }[] };
    schema?: AdminSchemaSource;
  };
  on(
    event: 'role' | 'leader',
    listener: (e: { term: number; leader: MemberRef | null }) => void,
  ): unknown;
  off(
    event: 'role' | 'leader',
    listener: (e: { term: number; leader: MemberRef | null }) => void,
  ): unknown;
  /** A Store's RaftNode, which emits `leader` (the Store itself re-emits only `role`). */
  readonly node?: AdminSource;
  /** A Store's metrics: the live chart's apply latency (without them it shows commits/s only). */
  readonly [kMetrics]?: StoreMetrics;
  /** A RaftNode's election timeout: the default of `downAfterMs` follows it. */
  readonly electionTimeoutMs?: number;
  /** A RaftNode's member transport (with TLS): its certificate's end of validity is shown. */
  readonly transport?: { readonly material: { readonly notAfter: number } } | null;
}

export interface AdminOptions {
  /** Where the page is served; `${basePath}/status.json` and `${basePath}/events` beside it. Default '/admin'. */
  basePath?: string;
  /** How many leader changes to keep. Default 50. */
  historySize?: number;
  /** How often the event stream pushes the status besides on role and leader changes. Default 500 ms. */
  intervalMs?: number;
  /**
   * On the leader, a member that has entries to take and acknowledges none for this long is
   * marked down. Default: 3 election timeouts, at least 2000 ms.
   */
  downAfterMs?: number;
  /**
   * Who may see the page, status.json and the event stream: users with the `admin` permission
   * (bearer token or client certificate, as for the reference service). Default: anyone.
   */
  auth?: AuthOptions | HttpAuth;
}

export interface LeaderChange {
  /** When this node saw the change (ms since the epoch, this node's clock). */
  time: number;
  term: number;
  /** The new leader, or null while there is none. */
  leader: MemberRef | null;
  /** True for the leader already known when the handler was created (not a change seen happening). */
  initial?: boolean;
}

export interface AdminMember {
  id: number;
  address: string;
  role: string;
  /** On the leader: the highest log index known replicated on this member. */
  matchIndex?: number;
  /** On the leader: its commitIndex − matchIndex (0 when the member has everything committed). */
  lag?: number;
  leader: boolean;
  self: boolean;
  /**
   * On the leader: when this member stopped answering (ms since the epoch, this node's clock),
   * null while it answers (and always on other nodes, which can't tell). See `downAfterMs`.
   */
  downSince: number | null;
  /** The leader's divergence verdict names this member (a Store's page): not ready until resynced. */
  diverged: boolean;
  /** Its schema versions (a Store's page): recorded code range, holding back, can't run the active version. */
  schema?: AdminMemberSchema;
}

/** The document served at `${basePath}/status.json` and pushed on `${basePath}/events`. */
export interface AdminStatus extends Omit<RaftNodeStatus, 'members'> {
  /** This node's clock when the status was taken (ms since the epoch). */
  time: number;
  /** This node's raft address (from the member list; '' when not a member). */
  address: string;
  /** True when the lag figures are known: only the leader tracks what its followers have. */
  lagKnown: boolean;
  members: AdminMember[];
  /** Newest first. */
  leaderChanges: LeaderChange[];
  /** When this node's member certificate stops being valid (ms since the epoch); null without TLS. */
  certificateNotAfter: number | null;
  /** True when that is less than 30 days away: the page warns to rotate it. */
  certificateExpiring: boolean;
  /** Schema versions (a Store's page; null for a RaftNode's). */
  schema: AdminSchema | null;
  /**
   * How long a member with entries to take must acknowledge none to be marked down (ms; null
   * from `adminStatus` without a monitor).
   */
  downAfterMs: number | null;
  /**
   * The live chart: commits/s and apply latency per sampling interval, over the last minutes
   * (the whole window in status.json and an event stream's first message, the newest few after).
   */
  chart: ChartData | null;
}

/** A request handler: true when it answered the request, false to let the app handle it. */
export interface AdminHandler {
  (req: IncomingMessage, res: ServerResponse): boolean;
  /**
   * The same, for the request's path as the caller resolved it (the operations handler: the
   * path it checked credentials for, from Express's `originalUrl` when mounted under a path).
   */
  answer(req: IncomingMessage, res: ServerResponse, path: string): boolean;
  /** The current status document. */
  status(): AdminStatus;
  /** Stops listening to the store and ends every open event stream (they would keep `server.close()` waiting). */
  close(): void;
}

const BASE_PATH = /^(\/[A-Za-z0-9._~-]+)*$/;

type Route = 'page' | 'json' | 'events';

/**
 * The admin page of `store` (a Store or a RaftNode). Serves `basePath` (the page, also
 * with a trailing slash), `${basePath}/status.json` and `${basePath}/events` (SSE);
 * returns false for every other path.
 */
export function adminHandler(
  store: AdminSource,
  { basePath = '/admin', historySize = 50, intervalMs = 500, auth, downAfterMs }: AdminOptions = {},
): AdminHandler {
  if (basePath === '/') basePath = '';
  checkOptions(basePath, historySize, intervalMs);
  if (downAfterMs !== undefined && !(downAfterMs > 0))
    throw new TypeError(`downAfterMs must be positive, got ${downAfterMs}`);
  const guard = auth === undefined || auth instanceof HttpAuth ? auth : new HttpAuth(auth);
  const leaderSource = store.node ?? store;
  const history = new LeaderHistory(safeStatus(store), historySize);
  const notAfter = () => (store.node ?? store).transport?.material.notAfter ?? null;
  const monitor = startMonitor(store, downAfterMs);
  // The chart's whole window, or (`full` false: an event after a stream's first) its newest points.
  const status = (full = true): AdminStatus => {
    const s = store.status();
    const time = Date.now();
    const view = monitor.view(s, time, full ? undefined : CHART_TAIL);
    return adminStatus(s, time, history.newestFirst(), notAfter(), view);
  };
  const streams = new EventStreams(status, intervalMs);
  let closed = false;

  const onLeader = (e: { term: number; leader: MemberRef | null }): void => {
    history.record(e);
    streams.queuePush();
  };
  const onRole = (): void => streams.queuePush();
  leaderSource.on('leader', onLeader);
  store.on('role', onRole);

  const page = renderPage(basePath);
  const headers = pageHeaders(page);
  const answer = (req: IncomingMessage, res: ServerResponse, path: string): boolean => {
    const route = routeOf(path, basePath);
    if (!route) return false;
    const refusal = guard?.check(req, 'admin');
    if (refusal) {
      sendRefusal(res, refusal);
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return true;
    }
    const head = req.method === 'HEAD';
    if (route === 'page') {
      res.writeHead(200, headers);
      res.end(head ? undefined : page.html);
    } else if (route === 'json') {
      sendStatus(res, status, head);
    } else {
      startEvents(res, head || closed ? null : (r) => streams.add(req, r));
    }
    return true;
  };
  const handler = ((req: IncomingMessage, res: ServerResponse): boolean =>
    answer(req, res, pathOf(req.url))) as AdminHandler;

  handler.answer = answer;
  handler.status = () => status();
  handler.close = () => {
    if (closed) return;
    closed = true;
    leaderSource.off('leader', onLeader);
    store.off('role', onRole);
    monitor.stop();
    streams.endAll();
  };
  return handler;
}

/** Chart points sent with each event after a stream's first (the page merges them by time). */
const CHART_TAIL = 5;

/** Samples the node once a second, the last 3 minutes kept for the chart. */
function startMonitor(store: AdminSource, downAfterMs: number | undefined): Monitor {
  const node = store.node ?? store;
  const election = node.electionTimeoutMs ?? 0;
  const metrics = store[kMetrics];
  const monitor = new Monitor(
    {
      status: () => node.status(),
      ...(metrics ? { applyMs: () => metrics.applyMs.snapshot() } : {}),
    },
    { downAfterMs: downAfterMs ?? Math.max(2000, 3 * election), intervalMs: 1000, points: 180 },
  );
  monitor.start();
  return monitor;
}

function checkOptions(basePath: string, historySize: number, intervalMs: number): void {
  if (typeof basePath !== 'string' || !BASE_PATH.test(basePath)) {
    throw new TypeError(
      `basePath must be '' or '/segment[/segment...]' (letters, digits, . _ ~ -), got ${JSON.stringify(basePath)}`,
    );
  }
  if (!Number.isInteger(historySize) || historySize < 1)
    throw new TypeError(`historySize must be a positive integer, got ${historySize}`);
  if (!(intervalMs > 0)) throw new TypeError(`intervalMs must be positive, got ${intervalMs}`);
}

function routeOf(path: string, basePath: string): Route | null {
  if (path === basePath || path === `${basePath}/`) return 'page';
  if (path === `${basePath}/status.json`) return 'json';
  if (path === `${basePath}/events`) return 'events';
  return null;
}

function pageHeaders(page: { html: string; scriptHash: string; styleHash: string }) {
  return {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(page.html),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': `default-src 'none'; script-src '${page.scriptHash}'; style-src '${page.styleHash}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  };
}

/** The status document, or a 503 when the status can't be taken. */
function sendStatus(res: ServerResponse, status: () => AdminStatus, head: boolean): void {
  let body: string;
  try {
    body = `${JSON.stringify(status())}\n`;
  } catch (err) {
    res.writeHead(503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(`${JSON.stringify({ error: (err as Error)?.message ?? String(err) })}\n`);
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(head ? undefined : body);
}

/** The event stream's headers, then `stream` (or the end: for HEAD, or once closed). */
function startEvents(res: ServerResponse, stream: ((res: ServerResponse) => void) | null): void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Accel-Buffering': 'no',
    ...(res.req.httpVersionMajor === 2 ? {} : { Connection: 'keep-alive' }), // none in HTTP/2
  });
  if (stream) stream(res);
  else res.end();
}

function safeStatus(store: AdminSource): RaftNodeStatus | null {
  try {
    return store.status();
  } catch {
    return null;
  }
}

/** A request URL's path, without its query or fragment (as given: dot segments left as they are). */
export function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

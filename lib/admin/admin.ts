// The admin page: one node's view of the cluster (members, roles, leader, term, commit
// and applied index, lag per member, last snapshot, recent leader changes), as a
// self-contained HTML page, a JSON document and a Server-Sent Events stream. Mount it in
// any node:http server: `if (admin(req, res)) return;`.
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { MemberRef } from '../core/errors.js';
import type { RaftNodeStatus } from '../engine/types.js';
import { renderPage } from './page.js';

/** What the handler needs: a Store or a RaftNode (anything with `status()` and their events). */
export interface AdminSource {
  status(): RaftNodeStatus;
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
}

export interface AdminOptions {
  /** Where the page is served; `${basePath}/status.json` and `${basePath}/events` beside it. Default '/admin'. */
  basePath?: string;
  /** How many leader changes to keep. Default 50. */
  historySize?: number;
  /** How often the event stream pushes the status besides on role and leader changes. Default 500 ms. */
  intervalMs?: number;
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
}

/** A request handler: true when it answered the request, false to let the app handle it. */
export interface AdminHandler {
  (req: IncomingMessage, res: ServerResponse): boolean;
  /** The current status document. */
  status(): AdminStatus;
  /** Stops listening to the store and ends every open event stream (they would keep `server.close()` waiting). */
  close(): void;
}

const BASE_PATH = /^(\/[A-Za-z0-9._~-]+)*$/;

/**
 * The admin page of `store` (a Store or a RaftNode). Serves `basePath` (the page, also
 * with a trailing slash), `${basePath}/status.json` and `${basePath}/events` (SSE);
 * returns false for every other path.
 */
export function adminHandler(
  store: AdminSource,
  { basePath = '/admin', historySize = 50, intervalMs = 500 }: AdminOptions = {},
): AdminHandler {
  if (basePath === '/') basePath = '';
  if (typeof basePath !== 'string' || !BASE_PATH.test(basePath)) {
    throw new TypeError(
      `basePath must be '' or '/segment[/segment...]' (letters, digits, . _ ~ -), got ${JSON.stringify(basePath)}`,
    );
  }
  if (!Number.isInteger(historySize) || historySize < 1)
    throw new TypeError(`historySize must be a positive integer, got ${historySize}`);
  if (!(intervalMs > 0)) throw new TypeError(`intervalMs must be positive, got ${intervalMs}`);

  const leaderSource = store.node ?? store;
  const history: LeaderChange[] = [];
  const initial = safeStatus(store);
  if (initial?.leader)
    history.push({ time: Date.now(), term: initial.term, leader: initial.leader, initial: true });
  let lastLeaderId = initial?.leader?.id ?? 0;

  const clients = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | null = null;
  let pushQueued = false;
  let closed = false;

  const onLeader = (e: { term: number; leader: MemberRef | null }): void => {
    const id = e.leader?.id ?? 0;
    if (id !== lastLeaderId) {
      lastLeaderId = id;
      history.push({
        time: Date.now(),
        term: e.term,
        leader: e.leader ? { id: e.leader.id, address: e.leader.address } : null,
      });
      if (history.length > historySize) history.splice(0, history.length - historySize);
    }
    queuePush();
  };
  const onRole = (): void => queuePush();
  leaderSource.on('leader', onLeader);
  store.on('role', onRole);

  function status(): AdminStatus {
    const s = store.status();
    const isLeader = s.role === 'leader';
    const self = s.members.find((m) => m.id === s.id);
    return {
      ...s,
      time: Date.now(),
      address: self?.address ?? '',
      lagKnown: isLeader,
      members: s.members.map((m) => {
        const member: AdminMember = {
          id: m.id,
          address: m.address,
          role: m.role,
          leader: m.id === s.leader?.id,
          self: m.id === s.id,
        };
        if (isLeader && m.matchIndex !== undefined) {
          member.matchIndex = m.matchIndex;
          member.lag = Math.max(0, s.commitIndex - m.matchIndex);
        }
        return member;
      }),
      leaderChanges: history.slice().reverse(),
    };
  }

  // Events arrive from inside the engine's callbacks: push from a fresh tick, once per burst.
  function queuePush(): void {
    if (pushQueued || clients.size === 0) return;
    pushQueued = true;
    setImmediate(() => {
      pushQueued = false;
      push();
    });
  }

  function push(): void {
    if (clients.size === 0) return;
    let data: string;
    try {
      data = `data: ${JSON.stringify(status())}\n\n`;
    } catch (err) {
      data = `event: failure\ndata: ${JSON.stringify({ message: (err as Error)?.message ?? String(err) })}\n\n`;
    }
    for (const res of clients) {
      // A client that can't keep up skips pushes until its socket drains.
      if (!res.writableNeedDrain) res.write(data);
    }
  }

  function removeClient(res: ServerResponse): void {
    if (!clients.delete(res)) return;
    if (clients.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  }

  const page = renderPage(basePath);
  const headers = {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(page.html),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': `default-src 'none'; script-src '${page.scriptHash}'; style-src '${page.styleHash}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  };

  const handler = ((req: IncomingMessage, res: ServerResponse): boolean => {
    const path = pathOf(req.url);
    const route =
      path === basePath || path === `${basePath}/`
        ? 'page'
        : path === `${basePath}/status.json`
          ? 'json'
          : path === `${basePath}/events`
            ? 'events'
            : null;
    if (!route) return false;
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
      let body: string;
      try {
        body = `${JSON.stringify(status())}\n`;
      } catch (err) {
        res.writeHead(503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(`${JSON.stringify({ error: (err as Error)?.message ?? String(err) })}\n`);
        return true;
      }
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
      });
      res.end(head ? undefined : body);
    } else {
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        'X-Accel-Buffering': 'no',
        Connection: 'keep-alive',
      });
      if (head || closed) {
        res.end();
        return true;
      }
      req.socket.setNoDelay(true);
      req.socket.setTimeout(0);
      res.write('retry: 1000\n\n');
      clients.add(res);
      res.once('close', () => removeClient(res));
      if (!timer) {
        timer = setInterval(push, intervalMs);
        timer.unref();
      }
      // The first status right away (the browser should not wait for the first tick).
      let data: string | null = null;
      try {
        data = `data: ${JSON.stringify(status())}\n\n`;
      } catch {
        /* the next tick reports the failure */
      }
      if (data) res.write(data);
    }
    return true;
  }) as AdminHandler;

  handler.status = status;
  handler.close = () => {
    if (closed) return;
    closed = true;
    leaderSource.off('leader', onLeader);
    store.off('role', onRole);
    for (const res of [...clients]) {
      removeClient(res);
      res.end();
    }
  };
  return handler;
}

function safeStatus(store: AdminSource): RaftNodeStatus | null {
  try {
    return store.status();
  } catch {
    return null;
  }
}

function pathOf(url: string | undefined): string {
  if (!url) return '';
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

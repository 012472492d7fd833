// This node's routes: its status, the health checks a load balancer asks, and reloading its
// certificates and auth settings.
import { adminStatus } from '../admin/status.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { HttpError } from './http-errors.js';
import { NOT_AVAILABLE, type OpsContext, type OpsStore } from './operations.js';

type RouteContext = OpsContext;

/**
 * This node's status, and `cluster`: the members as it sees them. On the leader each member has
 * `matchIndex` and `lag`; a follower doesn't know them (`lagKnown: false`): ask the leader, or
 * each node (`prevail status` with several --node puts the answers side by side).
 */
export function status({ store, insecure }: RouteContext): unknown {
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
    divergence: s.divergence, // its verdict: this replica, and the replicas the leader names
    schema: s.schema, // schema versions: the active one, this code's range, each node's, who holds back
    insecure: insecure === true,
    security: s.security, // how members reach this node: 'tls', 'insecure' (plain TCP) or 'none'
    certificateNotAfter: notAfterOf(store),
    revocation: revocationOf(store),
    cluster: clusterView(store, s),
  };
}

/** The members with their role, leadership, lag (on the leader) and divergence: the admin page's facts. */
export function clusterView(
  store: OpsStore,
  s: ReturnType<OpsStore['status']> = store.status(),
): { lagKnown: boolean; members: unknown[] } {
  const view = adminStatus(s, Date.now(), []);
  return { lagKnown: view.lagKnown, members: view.members };
}

/** When this node's member certificate stops being valid (ISO 8601), or null without TLS. */
function notAfterOf(store: RouteContext['store']): string | null {
  const notAfter = store.node.transport?.material.notAfter;
  return notAfter === undefined ? null : new Date(notAfter).toISOString();
}

/** The revocation lists this node's members' TLS uses: `{ revoked, nextUpdate }`, or null without. */
function revocationOf(store: RouteContext['store']): unknown {
  const r = store.node.transport?.material.revocation;
  if (r === undefined) return null;
  return {
    revoked: r.revoked,
    nextUpdate: r.nextUpdate === null ? null : new Date(r.nextUpdate).toISOString(),
  };
}

/** POST /admin/reload: `prevail serve`'s; an app reloads its own settings its own way (501). */
export function reload({ reload }: RouteContext): unknown {
  if (!reload)
    throw new HttpError(
      501,
      NOT_AVAILABLE,
      'this app does not reload its settings over HTTP (prevail serve does: POST /admin/reload)',
    );
  return reload();
}

/** Liveness: this process answers and its store is open (CLOSED, 503, once it has stopped). */
export function healthLive({ store }: RouteContext): unknown {
  const h = store.health();
  return { live: true, id: store.node.id, leader: h.leader, ready: h.ready };
}

export function healthLeader({ store }: RouteContext): [number, unknown] {
  const h = store.health();
  if (h.leader) return [200, { leader: true, id: store.node.id }];
  throw new PrevailError(ErrorCodes.NOT_LEADER, 'this node is not the leader', {
    leader: store.node.status().leader,
  });
}

export function healthReady({ store }: RouteContext): [number, unknown] {
  const h = store.health();
  const figures = {
    appliedIndex: h.appliedIndex,
    leaderCommitIndex: h.leaderCommitIndex,
    lag: h.lag,
    diverged: h.diverged,
  };
  if (h.ready) return [200, { ready: true, ...figures }];
  throw new HttpError(503, ErrorCodes.NOT_READY, notReadyBecause(h), {
    leader: store.node.status().leader,
    ...figures,
  });
}

function notReadyBecause(h: ReturnType<RouteContext['store']['health']>): string {
  if (h.diverged)
    return `not ready: this replica diverged from the majority (nodes ${h.diverged.majority.join(', ')}) at index ${h.diverged.index}; resync it (docs/operations.md, "When a replica diverges")`;
  if (h.leaderCommitIndex === null) return 'not ready: no leader is known';
  return `not ready: ${h.lag ?? '?'} entries behind the leader's commit index ${h.leaderCommitIndex}`;
}

// This node's routes: its status, the health checks a load balancer asks, and reloading its
// certificates and auth settings.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { HttpError } from './http-errors.js';
import type { RouteContext } from './routes.js';

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
  };
}

/** When this node's member certificate stops being valid (ISO 8601), or null without TLS. */
function notAfterOf(store: RouteContext['store']): string | null {
  const notAfter = store.node.transport?.material.notAfter;
  return notAfter === undefined ? null : new Date(notAfter).toISOString();
}

export function reload({ reload }: RouteContext): unknown {
  if (!reload) throw new PrevailError(ErrorCodes.INVALID_STATE, 'this service cannot reload');
  return reload();
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

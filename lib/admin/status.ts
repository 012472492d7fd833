// The admin page's status document: the node's status with per-member lag and down markers
// (known on the leader only), the leader changes this node has seen, and the live chart's points.
import type { MemberRef } from '../core/errors.js';
import type { RaftNodeStatus } from '../engine/types.js';
import type { AdminMember, AdminSource, AdminStatus, LeaderChange } from './admin.js';
import type { MonitorView } from './monitor.js';
import { adminMemberSchema, adminSchema } from './schema.js';

/** A certificate closer than this to its end is flagged (certificateExpiring). */
export const CERTIFICATE_WARNING_MS = 30 * 24 * 3600_000;

/** The last `size` leader changes, from the leader known at the start. */
export class LeaderHistory {
  private readonly changes: LeaderChange[] = [];
  private lastLeaderId: number;

  constructor(
    initial: RaftNodeStatus | null,
    private readonly size: number,
  ) {
    if (initial?.leader)
      this.changes.push({
        time: Date.now(),
        term: initial.term,
        leader: initial.leader,
        initial: true,
      });
    this.lastLeaderId = initial?.leader?.id ?? 0;
  }

  /** Records a `leader` event that names another leader than the last one. */
  record(e: { term: number; leader: MemberRef | null }): void {
    const id = e.leader?.id ?? 0;
    if (id === this.lastLeaderId) return;
    this.lastLeaderId = id;
    this.changes.push({
      time: Date.now(),
      term: e.term,
      leader: e.leader ? { id: e.leader.id, address: e.leader.address } : null,
    });
    if (this.changes.length > this.size) this.changes.splice(0, this.changes.length - this.size);
  }

  newestFirst(): LeaderChange[] {
    return this.changes.slice().reverse();
  }
}

export function adminStatus(
  s: ReturnType<AdminSource['status']>,
  time: number,
  leaderChanges: LeaderChange[],
  certificateNotAfter: number | null = null,
  monitor: MonitorView | null = null,
): AdminStatus {
  const isLeader = s.role === 'leader';
  const self = s.members.find((m) => m.id === s.id);
  const diverged = new Set(s.divergence?.diverged.map((d) => d.node) ?? []);
  const schema = s.schema ? adminSchema(s.schema, s.members) : null;
  return {
    ...s,
    time,
    address: self?.address ?? '',
    lagKnown: isLeader,
    members: s.members.map((m) => {
      const member = adminMember(s, m, isLeader, diverged);
      member.downSince = monitor?.down.get(m.id) ?? null;
      if (schema && s.schema) member.schema = adminMemberSchema(schema, s.schema, m.id);
      return member;
    }),
    leaderChanges,
    certificateNotAfter,
    certificateExpiring:
      certificateNotAfter !== null && certificateNotAfter - time < CERTIFICATE_WARNING_MS,
    schema,
    downAfterMs: monitor?.downAfterMs ?? null,
    chart: monitor?.chart ?? null,
  };
}

function adminMember(
  s: RaftNodeStatus,
  m: RaftNodeStatus['members'][number],
  isLeader: boolean,
  diverged: ReadonlySet<number>,
): AdminMember {
  const member: AdminMember = {
    id: m.id,
    address: m.address,
    role: m.role,
    leader: m.id === s.leader?.id,
    self: m.id === s.id,
    diverged: diverged.has(m.id),
    downSince: null,
  };
  if (isLeader && m.matchIndex !== undefined) {
    member.matchIndex = m.matchIndex;
    member.lag = Math.max(0, s.commitIndex - m.matchIndex);
  }
  return member;
}

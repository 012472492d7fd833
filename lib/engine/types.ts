// The shapes RaftNode speaks in: the state machine it drives and the status it reports.
import type { MemberRef } from '../core/errors.js';

/** Facts about the log entry being applied. */
export interface ApplyMeta {
  /** The entry's log index (1-based, strictly increasing). */
  index: number;
  /** The term of the leader that appended the entry. */
  term: number;
}

/**
 * The replicated state machine. All three methods run on the JS thread and must be
 * deterministic: given the same entries in the same order, every replica must reach
 * the same state (no `Date.now()`, `Math.random()`, or I/O).
 */
export interface Fsm<R = unknown> {
  /** Applies one committed command, in log order, on every node (also on replay after restart). */
  apply(command: Uint8Array, meta: ApplyMeta): R;
  /**
   * Captures the state as of the last applied entry. Must capture synchronously; the
   * returned bytes are then written to disk on the threadpool while applies go on,
   * so they must not be mutated afterwards. Return several chunks to avoid a concat.
   */
  snapshot(): Uint8Array | Uint8Array[];
  /** Replaces the whole state with a snapshot's bytes (on restart and on snapshot install). */
  restore(data: Uint8Array): void;
}

export type MemberRole = 'voter' | 'standby' | 'spare';

export interface Member extends MemberRef {
  role: MemberRole;
  /** On the leader: the highest log index known to be replicated on this member. */
  matchIndex?: number;
}

export type NodeRole = 'leader' | 'follower' | 'candidate' | 'unavailable' | 'closed';

export interface RaftNodeStatus {
  id: number;
  role: NodeRole;
  term: number;
  leader: MemberRef | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  members: Member[];
  snapshot: { index: number; term: number };
  /**
   * How members reach this node: 'tls' (mutual TLS), 'insecure' (plain TCP anyone can use:
   * `insecure: true`), or 'none' (a single node that opens no port).
   */
  security: 'tls' | 'insecure' | 'none';
}

/**
 * Shared types for the verification harness (lib/verify/run.ts records histories
 * of these; lib/verify/checker.ts checks them; lib/verify/report.ts renders them).
 *
 * Keep these compatible: the harness codes against exactly these shapes.
 */

export type OpType = 'read' | 'write' | 'cas' | 'delete';

/**
 * ok:   took effect / the read returned a value.
 * fail: certainly did not take effect (a cas that failed with PREVAIL_CAS_CONFLICT
 *       is still an observation: the current value was not `expect`).
 * info: unknown (timeout, crash, mayHaveApplied): may or may not have taken effect.
 */
export type Outcome = 'ok' | 'fail' | 'info';

export interface Op {
  /** Unique per history. */
  id: number;
  /** Client id; a client has at most one op in flight. */
  process: number;
  type: OpType;
  key: string;
  /** write/cas: the new value; read: the value returned when ok (null = absent). */
  value?: string | null;
  /** cas: the expected current value (null = absent). */
  expect?: string | null;
  /** ms since the run started. */
  invokeMs: number;
  /** null when the client never got an answer (treated as completing at +infinity). */
  completeMs: number | null;
  outcome: Outcome;
  /** The node the request went to. */
  node?: number;
  /** Error code / message when outcome is fail or info (e.g. 'PREVAIL_CAS_CONFLICT'). */
  error?: string;
  /** Raft log index when known. */
  index?: number;
}

/** A fault injected during the run (partition, kill, pause, clock skew, ...). */
export interface FaultWindow {
  kind: string;
  startMs: number;
  endMs: number;
  detail?: string;
}

/** The error code a cas carries when it failed because the value did not match. */
export const CAS_CONFLICT = 'PREVAIL_CAS_CONFLICT';

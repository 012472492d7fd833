/**
 * Every error prevail raises is an `Error` with a stable `code`. Compare by `code`
 * (Jest's vm contexts break `instanceof` for errors made in native code).
 */
export const ErrorCodes = {
  /** An option or argument has the wrong type or value. */
  INVALID_ARGUMENT: 'PREVAIL_INVALID_ARGUMENT',
  /** This node is not the leader; `leader` holds `{ id, address }` when known. */
  NOT_LEADER: 'PREVAIL_NOT_LEADER',
  /** Leadership was lost while the request was in flight; `mayHaveApplied` is true. */
  LEADERSHIP_LOST: 'PREVAIL_LEADERSHIP_LOST',
  /** The node is closed or closing; in-flight requests cut off by close carry `mayHaveApplied`. */
  CLOSED: 'PREVAIL_CLOSED',
  /** The caller's AbortSignal fired; a proposal already submitted may still apply. */
  ABORTED: 'PREVAIL_ABORTED',
  /** A request was made from inside `fsm.apply`, which must be synchronous and self-contained. */
  REENTRANT: 'PREVAIL_REENTRANT',
  /** The raft address (host:port) is already bound by another process. */
  ADDRESS_IN_USE: 'PREVAIL_ADDRESS_IN_USE',
  /** The data directory belongs to another node id. */
  DATADIR_MISMATCH: 'PREVAIL_DATADIR_MISMATCH',
  /** The data directory is in use by another RaftNode (in this or another process). */
  DATADIR_LOCKED: 'PREVAIL_DATADIR_LOCKED',
  /** A membership change is already in progress (one at a time). */
  MEMBERSHIP_BUSY: 'PREVAIL_MEMBERSHIP_BUSY',
  /** A member id/address is unknown, duplicated, or not allowed for this operation. */
  BAD_MEMBER: 'PREVAIL_BAD_MEMBER',
  /** Leadership transfer did not complete within the election timeout. */
  TRANSFER_FAILED: 'PREVAIL_TRANSFER_FAILED',
  /** A snapshot could not be read (not prevail's, newer format, truncated, or restore threw). */
  SNAPSHOT_UNREADABLE: 'PREVAIL_SNAPSHOT_UNREADABLE',
  /** A log entry is not a prevail entry (corruption). */
  CORRUPT_ENTRY: 'PREVAIL_CORRUPT_ENTRY',
  /** A command is too large. */
  TOO_LARGE: 'PREVAIL_TOO_LARGE',
  /** The disk is full. */
  NO_SPACE: 'PREVAIL_NO_SPACE',
  /** A disk read or write failed. */
  IO: 'PREVAIL_IO',
  /** The engine reported an error not covered above; `raftName` says which. */
  ENGINE: 'PREVAIL_ENGINE',
  /** A store command name that this code does not define (fatal when found in the log). */
  UNKNOWN_COMMAND: 'PREVAIL_UNKNOWN_COMMAND',
  /** A unique index already holds the key. */
  UNIQUE_VIOLATION: 'PREVAIL_UNIQUE_VIOLATION',
  /** State was changed outside a command handler. */
  OUTSIDE_COMMAND: 'PREVAIL_OUTSIDE_COMMAND',
  /** No object with that id. */
  NOT_FOUND: 'PREVAIL_NOT_FOUND',
  /** The call is not valid in the node's current state. */
  INVALID_STATE: 'PREVAIL_INVALID_STATE',
  /** A bounded wait (a read's `minIndex`, a forwarded request) ran out of time; writes carry `mayHaveApplied`. */
  TIMEOUT: 'PREVAIL_TIMEOUT',
  /** No leader is known or reachable right now (elections, partitions); retry. `leader` holds the hint when known. */
  UNAVAILABLE: 'PREVAIL_UNAVAILABLE',
  /** This node is not caught up with the leader (readiness). */
  NOT_READY: 'PREVAIL_NOT_READY',
  /** A value is not plain data (docs/guide.md, "Plain data"); `path` names where it is, e.g. `args.tags[2]`. */
  NOT_PLAIN_DATA: 'PREVAIL_NOT_PLAIN_DATA',
  /** A command handler is async or returned a promise (a thenable): handlers must be synchronous; its changes are undone. */
  ASYNC_HANDLER: 'PREVAIL_ASYNC_HANDLER',
  /** A replica's applied effects differ from the leader's at the same index: a command handler is not deterministic. */
  DIVERGED: 'PREVAIL_DIVERGED',
  /** A cluster of more than one member was asked for without `tls` settings and without `insecure: true`. */
  TLS_REQUIRED: 'PREVAIL_TLS_REQUIRED',
  /** A certificate or key can't be used: unreadable, not PEM, expired, or not naming what it must (`path` says which file). */
  BAD_CERTIFICATE: 'PREVAIL_BAD_CERTIFICATE',
  /** An HTTP request carried no valid credentials (no token, an unknown token, no client certificate). */
  UNAUTHORIZED: 'PREVAIL_UNAUTHORIZED',
  /** The credentials are valid but lack the permission the request needs (`permission` names it). */
  FORBIDDEN: 'PREVAIL_FORBIDDEN',
  /** A command (or index) of a schema version the cluster has not activated yet; `version` needs it, `holdingBack` names the voters whose code lacks it. */
  VERSION_NOT_ACTIVE: 'PREVAIL_VERSION_NOT_ACTIVE',
  /** This code can't apply the cluster's active schema version (it is older); `version` is the one it needs. */
  SCHEMA_TOO_OLD: 'PREVAIL_SCHEMA_TOO_OLD',
  /** This code no longer has the schema version the data still needs (it dropped it too soon); `version` names it. */
  SCHEMA_TOO_NEW: 'PREVAIL_SCHEMA_TOO_NEW',
  /** A command proposed under an older schema version was committed after a newer one became active: not applied (the store retries it once). */
  SCHEMA_CHANGED: 'PREVAIL_SCHEMA_CHANGED',
  /** Activating a schema version failed: its migration threw (nothing changed; `version` names it). */
  MIGRATION_FAILED: 'PREVAIL_MIGRATION_FAILED',
  /** A backup file is damaged, cut short, not a prevail backup, or of a format this code can't read (`file` names it). */
  BACKUP_CORRUPT: 'PREVAIL_BACKUP_CORRUPT',
  /** A restore was asked to seed a data dir that already holds files (it only seeds new ones). */
  DATADIR_NOT_EMPTY: 'PREVAIL_DATADIR_NOT_EMPTY',
  /** A feature needs an optional package that is not installed (the message names it and how to install it). */
  MISSING_DEPENDENCY: 'PREVAIL_MISSING_DEPENDENCY',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface MemberRef {
  id: number;
  address: string;
}

export interface PrevailErrorFields {
  /** For NOT_LEADER: the current leader, when known. */
  leader?: MemberRef | null;
  /** True when a submitted command may still be (or have been) applied. */
  mayHaveApplied?: boolean;
  /** The engine's own error name (e.g. `NOTLEADER`) when the engine raised it. */
  raftName?: string;
  /** The log index involved, when known. */
  index?: number;
  /** The data file involved (a damaged segment or snapshot), when known. */
  file?: string;
  /**
   * Where the problem is: for NOT_PLAIN_DATA, in the value (`args.items[2]`); for a failed
   * file-system call, the path it was given (the error from Node is the `cause`).
   */
  path?: string;
  /** For a failed file-system call: which call (`mkdir`, `open`, …). */
  syscall?: string;
  /** For the schema-version errors: the version involved (needed, or not active yet). */
  version?: number;
  /** For VERSION_NOT_ACTIVE: the voters whose code does not support `version` yet (or never said). */
  holdingBack?: number[];
  cause?: unknown;
}

// The fields are declared once, in PrevailErrorFields, and merged into the class: they are all
// optional, and the constructor sets only those given (never an own `undefined`).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface PrevailError extends PrevailErrorFields {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class PrevailError extends Error {
  readonly code: ErrorCode;
  /**
   * True when the error stops this replica (an entry in the log it can't apply): thrown from
   * apply, it is not a command's failure but the end of the node (see `RaftNode.failure`).
   * Set by markFatal only (not an own property otherwise, and not sent to peers' constructors).
   */
  declare fatal?: boolean;

  constructor(code: ErrorCode, message: string, fields: PrevailErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'PrevailError';
    this.code = code;
    if (fields.leader !== undefined) this.leader = fields.leader;
    if (fields.mayHaveApplied !== undefined) this.mayHaveApplied = fields.mayHaveApplied;
    if (fields.raftName !== undefined) this.raftName = fields.raftName;
    if (fields.index !== undefined) this.index = fields.index;
    if (fields.file !== undefined) this.file = fields.file;
    if (fields.path !== undefined) this.path = fields.path;
    if (fields.syscall !== undefined) this.syscall = fields.syscall;
    if (fields.version !== undefined) this.version = fields.version;
    if (fields.holdingBack !== undefined) this.holdingBack = fields.holdingBack;
  }
}

/** A PREVAIL_INVALID_ARGUMENT error: an option or argument has the wrong type or value. */
export function invalid(message: string): PrevailError {
  return new PrevailError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** Marks `err` as stopping the replica that raises it from apply (see PrevailError.fatal). */
export function markFatal<E extends Error>(err: E): E & { fatal: true } {
  return Object.assign(err, { fatal: true as const });
}

/** Whether `err` stops the replica that raised it (see PrevailError.fatal). */
export function isFatal(err: unknown): boolean {
  return (err as { fatal?: unknown } | null)?.fatal === true;
}

export function isPrevailError(err: unknown, code?: ErrorCode): err is PrevailError {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (err as { code: string }).code.startsWith('PREVAIL_') &&
    (code === undefined || (err as { code: string }).code === code)
  );
}

const byRaftName: Record<string, ErrorCode> = {
  NOTLEADER: ErrorCodes.NOT_LEADER,
  LEADERSHIPLOST: ErrorCodes.LEADERSHIP_LOST,
  CANTCHANGE: ErrorCodes.MEMBERSHIP_BUSY,
  BADID: ErrorCodes.BAD_MEMBER,
  DUPLICATEID: ErrorCodes.BAD_MEMBER,
  DUPLICATEADDRESS: ErrorCodes.BAD_MEMBER,
  BADROLE: ErrorCodes.BAD_MEMBER,
  NOTFOUND: ErrorCodes.BAD_MEMBER,
  NOSPACE: ErrorCodes.NO_SPACE,
  IOERR: ErrorCodes.IO,
  CORRUPT: ErrorCodes.CORRUPT_ENTRY,
  TOOBIG: ErrorCodes.TOO_LARGE,
};

interface NativeError {
  message: string;
  code?: string;
  raftName?: string;
  leaderId?: number;
  leaderAddress?: string;
  index?: number;
  cause?: unknown;
}

/** Turns an error raised by the addon into a PrevailError with a precise code. */
export function fromNative(err: unknown, context?: { submitted?: boolean }): PrevailError {
  if (err instanceof PrevailError) return err;
  const e = err as NativeError;
  let code = (e?.code ?? ErrorCodes.ENGINE) as ErrorCode;
  if (
    code === ErrorCodes.ENGINE &&
    e.raftName !== undefined &&
    byRaftName[e.raftName] !== undefined
  ) {
    code = byRaftName[e.raftName]!;
  }
  const fields: PrevailErrorFields = {};
  if (e.raftName !== undefined) fields.raftName = e.raftName;
  if (e.index !== undefined) fields.index = e.index;
  if (e.cause !== undefined) fields.cause = e.cause;
  if (code === ErrorCodes.NOT_LEADER) {
    fields.leader = e.leaderId ? { id: e.leaderId, address: e.leaderAddress ?? '' } : null;
  }
  if (context?.submitted && (code === ErrorCodes.LEADERSHIP_LOST || code === ErrorCodes.CLOSED)) {
    fields.mayHaveApplied = true;
  }
  let message = String(e?.message ?? err);
  if (code === ErrorCodes.NOT_LEADER) {
    message = fields.leader
      ? `not the leader; the leader is ${fields.leader.id} at ${fields.leader.address}`
      : 'not the leader; no leader is known';
  }
  return new PrevailError(code, message, fields);
}

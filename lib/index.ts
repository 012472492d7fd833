export { RaftNode, versions } from './raft-node.js';
export type {
  ApplyMeta,
  CloseOptions,
  Fsm,
  Member,
  MemberRole,
  NodeRole,
  ProposeOptions,
  RaftNodeOptions,
  RaftNodeStatus,
} from './raft-node.js';
export { ErrorCodes, PrevailError, isPrevailError } from './errors.js';
export type { ErrorCode, MemberRef } from './errors.js';

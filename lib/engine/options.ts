// RaftNode's options: every field documented, their defaults, and the one function that
// validates them (and the arguments of membership calls, by the same rules).
import { resolve } from 'node:path';

import { parseAddress } from '../core/address.js';
import { ErrorCodes, PrevailError, invalid, type MemberRef } from '../core/errors.js';
import { loadMemberTls, type MemberTls, type TlsOptions } from './member-transport.js';
import type { Fsm, MemberRole } from './types.js';

export interface RaftNodeOptions<R = unknown> {
  /** This node's id: a positive integer, unique in the cluster. Required. */
  id: number;
  /** `host:port` the raft transport listens on and peers dial. Required. */
  address: string;
  /** Directory for the log, snapshots and metadata; created if missing. Required. */
  dataDir: string;
  /**
   * The initial members, used only to bootstrap an empty `dataDir` (give every initial
   * member the same list). Default: `[{ id, address }]`, a single-node cluster.
   */
  cluster?: MemberRef[];
  /**
   * Join an existing cluster instead of bootstrapping one: an empty `dataDir` starts
   * with no configuration (`cluster` is not used) and receives it from the leader once
   * a member calls `addMember` for this node. Without it, an empty `dataDir` bootstraps
   * `cluster` (by default a single-node cluster of its own). Default false.
   */
  join?: boolean;
  /** The state machine. Required. */
  fsm: Fsm<R>;
  /**
   * Election timeout in ms (randomised by the engine between this and twice this). Default 200:
   * a kill -9'd leader is replaced in ~0.35 s (p99 ~0.45 s) on loopback. Raise it where event-loop
   * stalls or network delays approach it, or followers will start needless elections.
   */
  electionTimeoutMs?: number;
  /** Heartbeat interval in ms (must be below the election timeout). Default 40. */
  heartbeatMs?: number;
  /** Take a snapshot after this many entries since the last one. Default 8192. */
  snapshotThreshold?: number;
  /** Entries kept in the log after a snapshot, so slightly-behind followers need no snapshot. Default 2048. */
  snapshotTrailing?: number;
  /**
   * How many entries the leader sends a follower before hearing back (pipelining). Default 1024;
   * the engine's own default, 32, capped a 3-node cluster at ~10k commits/s (2.3× less at 256 in flight).
   */
  maxInflightEntries?: number;
  /** Pre-vote (Raft thesis §9.6): a partitioned node can't disrupt the cluster on rejoin. Default true. */
  preVote?: boolean;
  /**
   * Mutual TLS between members: the cluster's CA, this member's certificate (naming it; see
   * `prevail certs`) and key. Members then share one port (`address`) for the engine and the
   * peer channel, and only a peer whose certificate the CA signed and that names the id it
   * speaks for gets in. A node with `tls` listens only once it has company (a configuration of
   * more than one member, `join`, or `addMember`). See docs/operations.md, "Security".
   */
  tls?: TlsOptions;
  /**
   * Run a cluster without TLS: anyone who can reach `address` can then read, write and break
   * it. Without `tls` or this, a configuration of more than one member is refused
   * (PREVAIL_TLS_REQUIRED), and a single node opens no port at all. Default false.
   */
  insecure?: boolean;
}

/** The defaults of the tunable options (documented on RaftNodeOptions). */
export const defaults = {
  electionTimeoutMs: 200,
  heartbeatMs: 40,
  snapshotThreshold: 8192,
  snapshotTrailing: 2048,
  maxInflightEntries: 1024,
  preVote: true,
} as const;

/**
 * The options once checked: every default filled in, `dataDir` absolute, and the configuration
 * an empty data dir starts with (`cluster`; undefined with `join`).
 */
export type ValidOptions<R = unknown> = Required<
  Omit<RaftNodeOptions<R>, 'cluster' | 'join' | 'tls'>
> & {
  bootstrap: MemberRef[] | undefined;
  join: boolean;
  /** The TLS material, read and checked; null without `tls`. */
  tls: MemberTls | null;
  /** The files to read again on reloadTls(), when the material came from files. */
  tlsOptions: TlsOptions | null;
  /** The engine's: its own TCP with `insecure`, else connections made in JS (TLS, or none). */
  transport: 'tcp' | 'streams';
  /** How often the engine checks its timers: tickPeriodMs(). */
  tickMs: number;
};

/**
 * The engine's timer period: about a twentieth of the election timeout, at most the heartbeat.
 * The engine would tick at the heartbeat and see a randomized election timeout expire only on a
 * tick (40 ms steps of a 200–400 ms range by default): the followers of a failed leader often
 * started their elections on the same step, a split vote and another round
 * (native/engine_start.cc). Each node also stretches its period by a random 0–50 %
 * (`random()` in [0, 1)): nodes started together would otherwise tick in phase forever.
 */
export function tickPeriodMs(
  electionTimeoutMs: number,
  heartbeatMs: number,
  random: () => number = Math.random,
): number {
  const base = electionTimeoutMs / 20;
  return Math.max(1, Math.min(heartbeatMs, Math.round(base * (1 + random() / 2))));
}

/** The error for a cluster asked for without TLS and without `insecure`. */
export function tlsRequired(what: string): PrevailError {
  return new PrevailError(
    ErrorCodes.TLS_REQUIRED,
    `${what} needs TLS between members: give tls { ca, cert, key } (prevail certs makes them), ` +
      'or insecure: true to run a cluster anyone on the network can read and write',
  );
}

/** Checks the options (PREVAIL_INVALID_ARGUMENT naming the first bad one) and fills in the defaults. */
export function validateOptions<R>(options: RaftNodeOptions<R>): ValidOptions<R> {
  if (typeof options !== 'object' || options === null)
    throw invalid('RaftNode.start() needs an options object');
  const id = checkPositiveInt('id', options.id);
  const address = checkAddress('address', options.address);
  if (typeof options.dataDir !== 'string' || options.dataDir === '')
    throw invalid('dataDir must be a non-empty string');
  const fsm = checkFsm(options.fsm);
  const electionTimeoutMs = checkPositiveInt(
    'electionTimeoutMs',
    options.electionTimeoutMs ?? defaults.electionTimeoutMs,
  );
  const heartbeatMs = checkPositiveInt('heartbeatMs', options.heartbeatMs ?? defaults.heartbeatMs);
  if (heartbeatMs >= electionTimeoutMs)
    throw invalid('heartbeatMs must be below electionTimeoutMs');
  const snapshotThreshold = checkPositiveInt(
    'snapshotThreshold',
    options.snapshotThreshold ?? defaults.snapshotThreshold,
  );
  const snapshotTrailing = checkPositiveInt(
    'snapshotTrailing',
    options.snapshotTrailing ?? defaults.snapshotTrailing,
  );
  const maxInflightEntries = checkPositiveInt(
    'maxInflightEntries',
    options.maxInflightEntries ?? defaults.maxInflightEntries,
    1 << 20,
  );
  if (options.join !== undefined && typeof options.join !== 'boolean')
    throw invalid('join must be a boolean');
  const preVote = options.preVote ?? defaults.preVote;
  if (typeof preVote !== 'boolean') throw invalid('preVote must be a boolean');
  const cluster = checkCluster(options.cluster ?? [{ id, address }], id, address);
  const insecure = options.insecure ?? false;
  if (typeof insecure !== 'boolean') throw invalid('insecure must be a boolean');
  if (options.tls !== undefined && insecure) throw invalid('give tls or insecure: true, not both');
  const tls = options.tls === undefined ? null : loadMemberTls(options.tls, id);
  if (!tls && !insecure && (options.join || cluster.length > 1))
    throw tlsRequired(
      options.join ? 'joining a cluster' : `a cluster of ${cluster.length} members`,
    );
  return {
    id,
    address,
    dataDir: resolve(options.dataDir),
    fsm,
    electionTimeoutMs,
    heartbeatMs,
    snapshotThreshold,
    snapshotTrailing,
    maxInflightEntries,
    preVote,
    bootstrap: options.join ? undefined : cluster,
    join: options.join ?? false,
    insecure,
    tls,
    tlsOptions: options.tls ?? null,
    transport: insecure ? 'tcp' : 'streams',
    tickMs: tickPeriodMs(electionTimeoutMs, heartbeatMs),
  };
}

function checkFsm<R>(fsm: Fsm<R>): Fsm<R> {
  if (
    typeof fsm !== 'object' ||
    fsm === null ||
    typeof fsm.apply !== 'function' ||
    typeof fsm.snapshot !== 'function' ||
    typeof fsm.restore !== 'function'
  ) {
    throw invalid('fsm must be an object with apply(), snapshot() and restore() methods');
  }
  return fsm;
}

// Distinct ids and addresses; this node, if listed, at its own address. Copies just { id, address }.
export function checkCluster(cluster: MemberRef[], id: number, address: string): MemberRef[] {
  if (!Array.isArray(cluster) || cluster.length === 0)
    throw invalid('cluster must be a non-empty array of { id, address }');
  const ids = new Set<number>();
  const addresses = new Set<string>();
  for (const [i, m] of cluster.entries()) {
    if (typeof m !== 'object' || m === null) throw invalid(`cluster[${i}] must be { id, address }`);
    checkPositiveInt(`cluster[${i}].id`, m.id);
    checkAddress(`cluster[${i}].address`, m.address);
    if (ids.has(m.id)) throw invalid(`cluster has duplicate id ${m.id}`);
    if (addresses.has(m.address)) throw invalid(`cluster has duplicate address ${m.address}`);
    ids.add(m.id);
    addresses.add(m.address);
  }
  const self = cluster.find((m) => m.id === id);
  if (self && self.address !== address) {
    throw invalid(`cluster lists id ${id} at ${self.address}, but address is ${address}`);
  }
  return cluster.map((m) => ({ id: m.id, address: m.address }));
}

export function checkPositiveInt(name: string, value: unknown, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > max) {
    throw invalid(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkRole(role: unknown): MemberRole {
  if (role !== 'voter' && role !== 'standby' && role !== 'spare') {
    throw invalid(`role must be voter, standby or spare, got ${String(role)}`);
  }
  return role;
}

/** A raft address: "host:port" by the one grammar (lib/core/address.ts), and a port peers can dial (not 0). */
export function checkAddress(name: string, value: unknown): string {
  if (parseAddress(value, name).port === 0)
    throw invalid(`${name} must have a port in 1..65535, got ${JSON.stringify(value)}`);
  return value as string;
}

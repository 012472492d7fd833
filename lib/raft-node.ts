import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync, openSync, closeSync, unlinkSync, fsyncSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';

import { debug } from './core/diagnostics.js';
import { splitAddress } from './address.js';
import { ErrorCodes, PrevailError, fromNative, isPrevailError, type MemberRef } from './errors.js';
import { channels } from './metrics.js';
import { addon, type NativeEngine, type NativeStatus } from './native.js';


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
}

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
}

export interface CloseOptions {
  /** On the leader, hand leadership to another voter before closing. Default false. */
  transferLeadership?: boolean;
  /** How long to wait for in-flight proposals to apply before cutting them off. Default 5000 ms. */
  drainTimeoutMs?: number;
}

export interface ProposeOptions {
  /** Aborting rejects the promise with PREVAIL_ABORTED; a submitted command may still apply. */
  signal?: AbortSignal;
}

/** The defaults of the tunable options (documented on RaftNodeOptions). */
export const defaults = {
  electionTimeoutMs: 200,
  heartbeatMs: 40,
  snapshotThreshold: 8192,
  snapshotTrailing: 2048,
  maxInflightEntries: 1024,
} as const;

/** Wraps a handler's exception so it travels back to the proposer as a rejection. */
class ApplyFailure {
  constructor(readonly error: unknown) {}
}

const openDirs = new Set<string>();

function invalid(message: string): PrevailError {
  return new PrevailError(ErrorCodes.INVALID_ARGUMENT, message);
}

function checkPositiveInt(name: string, value: unknown, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > max) {
    throw invalid(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkRole(role: unknown): MemberRole {
  if (role !== 'voter' && role !== 'standby' && role !== 'spare') {
    throw invalid(`role must be voter, standby or spare, got ${String(role)}`);
  }
  return role;
}

function checkAddress(name: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(`${name} must be a "host:port" string, got ${JSON.stringify(value)}`);
  const m = /^(.+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535 || /\s/.test(value)) {
    throw invalid(`${name} must be "host:port" with a port in 1..65535, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** True when host:port can't be bound because something else holds it. */
function addressInUse(address: string): Promise<boolean> {
  const { host, port } = splitAddress(address);
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolvePromise(err.code === 'EADDRINUSE'));
    server.listen(port, host, () => server.close(() => resolvePromise(false)));
  });
}

/**
 * mkdir -p. Node's recursive mkdir reports some failures as ENOENT (a read-only file system,
 * EROFS): then each missing level is made in turn, so the error is the real one.
 */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const missing: string[] = [];
    for (let p = dir; !existsSync(p) && dirname(p) !== p; p = dirname(p)) missing.unshift(p);
    for (const p of missing) mkdirSync(p);  // throws the real error (or, if it all works now, done)
  }
}

/** The nearest of `dir` and its parents that exists but is not a directory, or null. */
function fileInTheWay(dir: string): string | null {
  for (let p = dir; ; p = dirname(p)) {
    try {
      return statSync(p).isDirectory() ? null : p;
    } catch {
      // missing, or below a file: look further up
    }
    if (dirname(p) === p) return null;
  }
}

/**
 * A data dir that can't be created, locked or written (a Node error from the file system) as
 * a coded error naming the path, the call that failed and what to do; the Node error is `cause`.
 */
function dataDirError(dataDir: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException | null;
  if (isPrevailError(err) || typeof e?.code !== 'string' || typeof e.syscall !== 'string') return err;
  const path = e.path ?? dataDir;
  const fields = { path, syscall: e.syscall, cause: err };
  const failed = `${e.code} from ${e.syscall} ${path}`;
  switch (e.code) {
    case 'EEXIST':
    case 'ENOTDIR': {
      const file = fileInTheWay(dataDir) ?? path;
      return new PrevailError(ErrorCodes.IO, `dataDir ${dataDir} can't be used: ${file === dataDir ? 'it' : file} is a file, ` +
        `not a directory (${failed}). Give the path of a directory (created if missing), or move the file away.`, fields);
    }
    case 'EACCES':
    case 'EPERM':
      return new PrevailError(ErrorCodes.IO, `dataDir ${dataDir} can't be used: permission denied (${failed}). This process ` +
        `(uid ${process.getuid?.() ?? '?'}) must be able to create and write files in it: change its owner or mode, or give ` +
        'another dataDir.', fields);
    case 'EROFS':
      return new PrevailError(ErrorCodes.IO, `dataDir ${dataDir} can't be used: it is on a read-only file system (${failed}). ` +
        'Remount it read-write, or give a dataDir on a writable file system.', fields);
    case 'ENOSPC':
    case 'EDQUOT':
      return new PrevailError(ErrorCodes.NO_SPACE, `dataDir ${dataDir} can't be used: no space left (${failed}). ` +
        'Free some space on its file system, or give another dataDir.', fields);
    default:
      return new PrevailError(ErrorCodes.IO, `dataDir ${dataDir} can't be used: ${e.message} (${failed}).`, fields);
  }
}

/**
 * A start that failed on damaged data names the file: the engine's message names a segment;
 * a snapshot that fails to restore is the newest one on disk. A short read of a segment is
 * damage (a cut file), not an I/O failure.
 */
function damagedFile(dataDir: string, error: PrevailError): PrevailError {
  const segment = /load (?:closed|open) segment ([\w.-]+)/.exec(error.message)?.[1];
  if (segment && (error.code === ErrorCodes.IO || error.code === ErrorCodes.CORRUPT_ENTRY)) {
    const file = join(dataDir, segment);
    return new PrevailError(ErrorCodes.CORRUPT_ENTRY, `${file} is damaged: ${error.message}. The node can't start on it; ` +
      'see docs/operations.md (a damaged data dir) to rejoin it from its peers.', { file, cause: error });
  }
  if (error.code === ErrorCodes.SNAPSHOT_UNREADABLE) {
    let newest: { file: string; index: number; ts: number } | null = null;
    try {
      for (const name of readdirSync(dataDir)) {
        const m = /^snapshot-\d+-(\d+)-(\d+)$/.exec(name);
        if (m && (!newest || Number(m[1]) > newest.index || (Number(m[1]) === newest.index && Number(m[2]) > newest.ts))) {
          newest = { file: join(dataDir, name), index: Number(m[1]), ts: Number(m[2]) };
        }
      }
    } catch {
      // unreadable dir: keep the engine's message
    }
    if (newest) {
      return new PrevailError(ErrorCodes.SNAPSHOT_UNREADABLE, `${newest.file} can't be restored: ${error.message}. Nothing was changed; ` +
        'see docs/operations.md (a damaged data dir).', { file: newest.file, cause: error });
    }
  }
  return error;
}

/** Whether `pid` is a live process (a zombie, killed but not yet reaped, is not). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process that its parent has not reaped yet (a zombie) still answers signal 0.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;  // no /proc: trust the signal
  }
}

/**
 * One member of a Raft cluster, running the engine on Node's own event loop.
 * Create with `RaftNode.start()`.
 */
export class RaftNode<R = unknown> extends EventEmitter {
  readonly id: number;
  readonly address: string;
  readonly dataDir: string;
  readonly electionTimeoutMs: number;
  // The engine's snapshot threshold, set only here: the one asked for (setSnapshotThreshold),
  // held back while snapshot() forces one (threshold 1) so that a change meanwhile can't undo it.
  #snapshotThreshold: number;
  #forcedSnapshots = 0;

  #engine: NativeEngine;
  #fsm: Fsm<R>;
  #closing = false;
  #closed: Promise<void> | null = null;
  #inflight = new Set<Promise<unknown>>();
  // Why this node stopped on its own: an entry it could not apply (see #onFatal).
  #failure: PrevailError | null = null;
  #role: NodeRole = 'unavailable';
  #leader: MemberRef | null = null;
  #term = 0;
  #lockFile: string;
  // The highest index applied here, written to prevail-applied every second while this node is
  // the only voter: a log that ends below it at the next start has lost a segment (removed or
  // cut), and the node refuses it. Only then: a follower may apply an entry the leader reports
  // committed before its own copy is on disk (a clean close can leave its log one entry short).
  #appliedMark = 0;
  #markWritten = 0;
  #markTimer: NodeJS.Timeout | null = null;

  private constructor(options: Required<Omit<RaftNodeOptions<R>, 'cluster' | 'join'>>) {
    super();
    this.id = options.id;
    this.address = options.address;
    this.dataDir = options.dataDir;
    this.electionTimeoutMs = options.electionTimeoutMs;
    this.#snapshotThreshold = options.snapshotThreshold;
    this.#fsm = options.fsm;
    this.#lockFile = join(this.dataDir, 'prevail.lock');
    this.#engine = new addon.Engine({
      apply: (payload, index, term, mine) => this.#apply(payload, index, term, mine),
      snapshot: () => {
        const t0 = performance.now();
        const chunks = this.#fsm.snapshot();
        if (channels.snapshot.hasSubscribers) {
          channels.snapshot.publish({ id: this.id, kind: 'engine', index: this.#engine.status().appliedIndex, durationMs: performance.now() - t0 });
        }
        return chunks;
      },
      restore: (payload) => this.#fsm.restore(payload),
      state: (state, term, leaderId, leaderAddress) => this.#onState(state, term, leaderId, leaderAddress),
      fatal: (error) => this.#onFatal(error),
    });
  }

  /** Validates the options, opens (or bootstraps) the data directory and starts the engine. */
  static async start<R = unknown>(options: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    if (typeof options !== 'object' || options === null) throw invalid('RaftNode.start() needs an options object');
    const id = checkPositiveInt('id', options.id);
    const address = checkAddress('address', options.address);
    if (typeof options.dataDir !== 'string' || options.dataDir === '') throw invalid('dataDir must be a non-empty string');
    const fsm = options.fsm;
    if (typeof fsm !== 'object' || fsm === null || typeof fsm.apply !== 'function' ||
        typeof fsm.snapshot !== 'function' || typeof fsm.restore !== 'function') {
      throw invalid('fsm must be an object with apply(), snapshot() and restore() methods');
    }
    const electionTimeoutMs = checkPositiveInt('electionTimeoutMs', options.electionTimeoutMs ?? defaults.electionTimeoutMs);
    const heartbeatMs = checkPositiveInt('heartbeatMs', options.heartbeatMs ?? defaults.heartbeatMs);
    if (heartbeatMs >= electionTimeoutMs) throw invalid('heartbeatMs must be below electionTimeoutMs');
    const snapshotThreshold = checkPositiveInt('snapshotThreshold', options.snapshotThreshold ?? defaults.snapshotThreshold);
    const snapshotTrailing = checkPositiveInt('snapshotTrailing', options.snapshotTrailing ?? defaults.snapshotTrailing);
    const maxInflightEntries = checkPositiveInt('maxInflightEntries', options.maxInflightEntries ?? defaults.maxInflightEntries, 1 << 20);
    if (options.join !== undefined && typeof options.join !== 'boolean') throw invalid('join must be a boolean');
    const preVote = options.preVote ?? true;
    if (typeof preVote !== 'boolean') throw invalid('preVote must be a boolean');
    const cluster = options.cluster ?? [{ id, address }];
    if (!Array.isArray(cluster) || cluster.length === 0) throw invalid('cluster must be a non-empty array of { id, address }');
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

    const dataDir = resolve(options.dataDir);
    // A file where the directory should be, no permission, a read-only file system: coded errors
    // (PREVAIL_IO) that say what to do, before anything in the directory is changed.
    try {
      makeDir(dataDir);
    } catch (err) {
      throw dataDirError(dataDir, err);
    }
    const node = new RaftNode<R>({ id, address, dataDir, fsm, electionTimeoutMs, heartbeatMs, snapshotThreshold,
      snapshotTrailing, maxInflightEntries, preVote });
    try {
      node.#lock();
    } catch (err) {
      throw dataDirError(dataDir, err);
    }
    try {
      node.#checkIdentity();
    } catch (err) {
      node.#unlock();
      throw dataDirError(dataDir, err);
    }
    try {
      await node.#engine.start({ id, address, dataDir, electionTimeoutMs, heartbeatMs, snapshotThreshold,
        snapshotTrailing, maxInflightEntries, preVote,
        bootstrap: options.join ? undefined : cluster.map((m) => ({ id: m.id, address: m.address })) });
    } catch (err) {
      node.#unlock();
      const error = fromNative(err);
      // The engine reports a failed listen as a bare I/O error; name the cause.
      if (error.code === ErrorCodes.IO && (await addressInUse(address))) {
        throw new PrevailError(ErrorCodes.ADDRESS_IN_USE, `address ${address} is already in use`, { cause: error });
      }
      throw damagedFile(dataDir, error);
    }
    const mark = node.#readMark();
    const lastIndex = node.#engine.status().lastIndex ?? 0;
    if (lastIndex < mark) {
      await node.#engine.close().catch(() => undefined);
      node.#unlock();
      throw new PrevailError(ErrorCodes.CORRUPT_ENTRY, `${dataDir}: the log ends at index ${lastIndex}, but this node had ` +
        `applied up to ${mark}: a log segment is missing or cut. The node can't start on it; see docs/operations.md ` +
        '(a damaged data dir) to rejoin it from its peers.', { file: dataDir, index: mark });
    }
    node.#appliedMark = node.#markWritten = mark;
    node.#markTimer = setInterval(() => node.#writeMark(), 1000);
    node.#markTimer.unref();
    debug('node %d started at %s in %s', id, address, dataDir);
    return node;
  }

  /**
   * Appends a command to the log. Settles with `fsm.apply`'s return value on this node
   * once the entry is committed and applied here; rejects with the handler's error if
   * `apply` threw. On a follower it rejects with PREVAIL_NOT_LEADER (and `leader`).
   */
  propose(command: Uint8Array, options: ProposeOptions = {}): Promise<R> {
    return this.proposeWithIndex(command, options).then((r) => r.result);
  }

  /** Like `propose`, but also gives the entry's log index (for read-your-writes). */
  proposeWithIndex(command: Uint8Array, options: ProposeOptions = {}): Promise<{ index: number; result: R }> {
    if (this.#closing) return Promise.reject(this.#closedError());
    if (!(command instanceof Uint8Array)) {
      return Promise.reject(invalid('a command must be a Uint8Array'));
    }
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(new PrevailError(ErrorCodes.ABORTED, 'aborted before it was proposed', { cause: signal.reason }));
    }
    const applied = this.#engine.apply(command).then(
      ([index, value]) => {
        if (value instanceof ApplyFailure) throw value.error;
        return { index, result: value as R };
      },
      (err: unknown) => {
        throw this.#failure ? this.#stopped(true) : fromNative(err, { submitted: true });
      },
    );
    this.#track(applied);
    if (!signal) return applied;
    return new Promise((resolvePromise, reject) => {
      const onAbort = () =>
        reject(new PrevailError(ErrorCodes.ABORTED, 'aborted while in flight; the command may still apply', {
          mayHaveApplied: true, cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      applied.then(resolvePromise, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Resolves with an index once every entry committed before the call is applied on
   * this node. Leader only (the basis of linearizable reads).
   */
  barrier(): Promise<number> {
    if (this.#closing) return Promise.reject(this.#closedError());
    return this.#call(this.#engine.barrier());
  }

  /**
   * Takes an engine snapshot now (leader only: it appends a barrier so there is an
   * entry to snapshot at) and resolves with its index and term once it is on disk.
   */
  async snapshot(timeoutMs = 10_000): Promise<{ index: number; term: number }> {
    this.#forcedSnapshots++;
    this.#engine.setSnapshotThreshold(1);
    try {
      const index = await this.barrier();
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const snap = this.status().snapshot;
        if (snap.index >= index) return snap;
        if (this.#closing || Date.now() > deadline) {
          throw new PrevailError(this.#closing ? ErrorCodes.CLOSED : ErrorCodes.IO, `no snapshot at ${index} within ${timeoutMs} ms`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      this.#forcedSnapshots--;
      if (!this.#closing && this.#forcedSnapshots === 0) this.#engine.setSnapshotThreshold(this.#snapshotThreshold);
    }
  }

  /** Changes how many entries the engine lets accumulate before it takes a snapshot. */
  setSnapshotThreshold(entries: number): void {
    this.#snapshotThreshold = checkPositiveInt('entries', entries);
    if (!this.#closing && this.#forcedSnapshots === 0) this.#engine.setSnapshotThreshold(entries);
  }

  /** A snapshot of this node's view of the cluster. */
  status(): RaftNodeStatus {
    const s: NativeStatus = this.#engine.status();
    if (s.term === undefined) {
      return { id: this.id, role: 'closed', term: this.#term, leader: null, commitIndex: 0, appliedIndex: 0,
        lastIndex: 0, members: [], snapshot: { index: 0, term: 0 } };
    }
    return {
      id: this.id,
      role: s.state as NodeRole,
      term: s.term,
      leader: s.leaderId ? { id: s.leaderId, address: s.leaderAddress ?? '' } : null,
      commitIndex: s.commitIndex!,
      appliedIndex: s.appliedIndex!,
      lastIndex: s.lastIndex!,
      members: s.members!,
      snapshot: { index: s.snapshotIndex!, term: s.snapshotTerm! },
    };
  }

  /** This node's role as last reported by the engine. */
  get role(): NodeRole {
    return this.#role;
  }

  /** The term as last reported by the engine (cheap; `status().term` asks the engine). */
  get term(): number {
    return this.#term;
  }

  /** The leader as last reported by the engine, or null. */
  get leader(): MemberRef | null {
    return this.#leader;
  }

  get isLeader(): boolean {
    return this.#role === 'leader';
  }

  /**
   * Adds a member (leader only). It joins as a spare, then (for `voter` or `standby`)
   * is promoted once it has caught up with the log, so it never votes while behind.
   */
  async addMember(member: MemberRef, role: MemberRole = 'voter'): Promise<void> {
    checkPositiveInt('member.id', member?.id);
    checkAddress('member.address', member?.address);
    checkRole(role);
    await this.#call(this.#engine.add(member.id, member.address));
    if (role !== 'spare') await this.assignRole(member.id, role);
  }

  /** Changes a member's role (leader only); promoting to voter waits for catch-up. */
  async assignRole(id: number, role: MemberRole): Promise<void> {
    checkPositiveInt('id', id);
    await this.#call(this.#engine.assign(id, checkRole(role)));
  }

  /** Removes a member from the configuration (leader only). */
  async removeMember(id: number): Promise<void> {
    checkPositiveInt('id', id);
    await this.#call(this.#engine.remove(id));
  }

  /**
   * Hands leadership to `id` (or to the most up-to-date voter when omitted) and
   * resolves with the new leader; rejects with PREVAIL_TRANSFER_FAILED if no new
   * leader emerged within the election timeout.
   */
  async transferLeadership(id?: number): Promise<MemberRef> {
    if (id !== undefined) checkPositiveInt('id', id);
    // Lease readers must stop trusting this node's lease before the target's election starts.
    this.emit('transferring', { to: id ?? null });
    const leaderId = await this.#transfer(id ?? 0);
    const s = this.status();
    if (leaderId === 0 || leaderId === this.id || (id !== undefined && leaderId !== id)) {
      throw new PrevailError(ErrorCodes.TRANSFER_FAILED,
        `leadership transfer${id ? ` to ${id}` : ''} did not complete (leader now ${leaderId || 'unknown'})`);
    }
    return s.leader ?? { id: leaderId, address: '' };
  }

  /**
   * Stops taking proposals, waits (bounded) for in-flight ones to apply, optionally
   * hands leadership over, then closes the engine and all its handles so the process
   * can exit. Requests still pending at the cut-off reject with PREVAIL_CLOSED and
   * `mayHaveApplied: true`. Idempotent.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closing = true;
    this.#closed = this.#close(options);
    return this.#closed;
  }

  async #close(options: CloseOptions): Promise<void> {
    const drainTimeoutMs = options.drainTimeoutMs ?? 5000;
    if (this.#inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.#inflight]),
        new Promise((r) => { timer = setTimeout(r, drainTimeoutMs); }),
      ]);
      clearTimeout(timer);
    }
    if (options.transferLeadership && this.#role === 'leader' &&
        this.status().members.filter((m) => m.role === 'voter').length > 1) {
      try {
        this.emit('transferring', { to: null });
        const to = await this.#transfer(0);
        debug('node %d handed leadership to %d before closing', this.id, to);
      } catch (err) {
        debug('node %d: leadership hand-off failed: %s', this.id, (err as Error).message);
      }
    }
    if (this.#markTimer) clearInterval(this.#markTimer);
    this.#writeMark();  // while the engine still answers status()
    await this.#engine.close().catch((err: unknown) => {
      throw fromNative(err);
    });
    this.#unlock();
    this.#onState('closed', this.#term, 0, null);
    debug('node %d closed', this.id);
  }

  // The engine settles a transfer only once some node leads: if this one steps down and no
  // leader emerges (the others are gone), it would wait forever. Bounded here.
  async #transfer(id: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.electionTimeoutMs * 4;
    try {
      return await Promise.race([
        this.#call(this.#engine.transfer(id)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new PrevailError(ErrorCodes.TRANSFER_FAILED,
            `no new leader within ${timeoutMs} ms of the leadership transfer`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Tracks an engine request (close drains it) and turns its errors into coded ones.
  #call<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch((err: unknown) => {
      throw this.#failure ? this.#stopped(false) : fromNative(err);
    });
    this.#track(tracked);
    return tracked;
  }

  #track(p: Promise<unknown>): void {
    this.#inflight.add(p);
    const done = () => this.#inflight.delete(p);
    p.then(done, done);
  }

  #apply(payload: Buffer, index: number, term: number, mine: boolean): unknown {
    this.#appliedMark = index;
    try {
      return this.#fsm.apply(payload, { index, term });
    } catch (err) {
      // A fatal error (e.g. an entry this code can't decode) must stop this replica:
      // treating it as a failed command would let it silently diverge. The engine stops
      // applying; start() rejects with it, or (once started) #onFatal closes the node.
      if ((err as { fatal?: unknown } | null)?.fatal === true) {
        if (err instanceof PrevailError && err.index === undefined) err.index = index;
        throw err;
      }
      if (!mine) debug('node %d: apply threw at index %d: %s', this.id, index, (err as Error)?.message);
      return mine ? new ApplyFailure(err) : undefined;
    }
  }

  /**
   * Set when this node stopped because it could not apply an entry (see the `'error'` event):
   * the coded error, with the entry's `index`. Null while it runs normally.
   */
  get failure(): PrevailError | null {
    return this.#failure;
  }

  // The engine could not apply an entry (told from the check phase, once). The node is
  // useless from here on: it closes, its pending requests reject with the failure, and
  // `'error'` is emitted once it is closed (the EventEmitter convention: with no listener
  // the error is thrown, an uncaught exception that ends the process).
  #onFatal(err: unknown): void {
    if (this.#failure) return;
    const error = fromNative(err);
    this.#failure = error;
    debug('node %d stopped: it can\'t apply entry %s: %s', this.id, error.index ?? '?', error.message);
    this.close({ drainTimeoutMs: 0 })
      .catch((closeErr: unknown) => debug('node %d: close after a failed apply: %s', this.id, (closeErr as Error)?.message))
      .finally(() => process.nextTick(() => this.emit('error', error)));
  }

  #closedError(): PrevailError {
    const failure = this.#failure;
    return failure ? new PrevailError(ErrorCodes.CLOSED, `the node stopped: ${failure.message}`, { cause: failure })
      : new PrevailError(ErrorCodes.CLOSED, 'the node is closed');
  }

  // What a request pending when the node stopped rejects with: the failure's code and message.
  #stopped(submitted: boolean): PrevailError {
    const failure = this.#failure!;
    return new PrevailError(failure.code, `node ${this.id} stopped: ${failure.message}`, {
      ...(failure.index !== undefined ? { index: failure.index } : {}),
      ...(submitted ? { mayHaveApplied: true } : {}),
      cause: failure,
    });
  }

  #onState(state: string, term: number, leaderId: number, leaderAddress: string | null): void {
    const role = state as NodeRole;
    const leader = leaderId ? { id: leaderId, address: leaderAddress ?? '' } : null;
    const roleChanged = role !== this.#role;
    const leaderChanged = leader?.id !== this.#leader?.id;
    this.#role = role;
    this.#leader = leader;
    this.#term = term;
    if (roleChanged) {
      debug('node %d is now %s (term %d)', this.id, role, term);
      if (channels.role.hasSubscribers) channels.role.publish({ id: this.id, role, term, leader });
      this.emit('role', { role, term, leader });
    }
    if (leaderChanged) this.emit('leader', { leader, term });
  }

  // The data directory is this node's alone: one process at a time, one node id forever.
  #lock(): void {
    if (openDirs.has(this.dataDir)) {
      throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `${this.dataDir} is already open in this process`);
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.#lockFile, 'wx');
        writeFileSync(fd, `${process.pid}\n`);
        closeSync(fd);
        openDirs.add(this.dataDir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number(readFileSync(this.#lockFile, 'utf8').trim());
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
          throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `${this.dataDir} is in use by process ${pid}`);
        }
        unlinkSync(this.#lockFile);  // left by a process that died
      }
    }
    throw new PrevailError(ErrorCodes.DATADIR_LOCKED, `cannot lock ${this.dataDir}`);
  }

  #unlock(): void {
    openDirs.delete(this.dataDir);
    try {
      unlinkSync(this.#lockFile);
    } catch {
      // already gone
    }
  }

  #readMark(): number {
    try {
      const n = Number(readFileSync(join(this.dataDir, 'prevail-applied'), 'utf8').trim());
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    } catch {
      return 0;
    }
  }

  #writeMark(): void {
    if (this.#appliedMark <= this.#markWritten) return;
    try {
      const voters = this.#engine.status().members?.filter((m) => m.role === 'voter').length ?? 0;
      if (voters !== 1) return;
      const tmp = join(this.dataDir, 'prevail-applied.tmp');
      writeFileSync(tmp, `${this.#appliedMark}\n`);
      renameSync(tmp, join(this.dataDir, 'prevail-applied'));  // never a torn file; a stale one is only lower
      this.#markWritten = this.#appliedMark;
    } catch (err) {
      debug('node %d: cannot write prevail-applied: %s', this.id, (err as Error).message);
    }
  }

  #checkIdentity(): void {
    const file = join(this.dataDir, 'prevail-node.json');
    let existing: { id?: unknown } | null = null;
    try {
      existing = JSON.parse(readFileSync(file, 'utf8')) as { id?: unknown };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (typeof code === 'string' && code !== 'ENOENT') throw err;  // can't be read (EACCES, EIO): start() makes it PREVAIL_IO
      if (code !== 'ENOENT') {
        throw new PrevailError(ErrorCodes.DATADIR_MISMATCH, `${file} is unreadable: ${(err as Error).message}`);
      }
    }
    if (existing) {
      if (existing.id !== this.id) {
        throw new PrevailError(ErrorCodes.DATADIR_MISMATCH,
          `${this.dataDir} belongs to node ${String(existing.id)}, not node ${this.id}`);
      }
      // The engine keeps term and vote in metadata1/metadata2; a log without them has lost them
      // (starting anyway could vote twice in a term).
      const names = readdirSync(this.dataDir);
      const hasLog = names.some((n) => /^(\d+-\d+|open-\d+|snapshot-\d+-\d+-\d+)$/.test(n));
      if (hasLog && !existsSync(join(this.dataDir, 'metadata1')) && !existsSync(join(this.dataDir, 'metadata2'))) {
        const missing = join(this.dataDir, 'metadata1');
        throw new PrevailError(ErrorCodes.CORRUPT_ENTRY, `${missing} (and metadata2) are missing, but the log is there: the node ` +
          'can\'t start without its term and vote; see docs/operations.md (a damaged data dir).', { file: missing });
      }
      return;
    }
    const fd = openSync(file, 'w');
    writeFileSync(fd, JSON.stringify({ id: this.id, address: this.address, format: 1 }) + '\n');
    fsyncSync(fd);
    closeSync(fd);
  }
}

/** Versions of what is linked in, for diagnostics. */
export const versions = {
  raft: `${Math.floor(addon.raftVersion / 10000)}.${Math.floor(addon.raftVersion / 100) % 100}.${addon.raftVersion % 100}`,
  uv: addon.uvVersion,
};

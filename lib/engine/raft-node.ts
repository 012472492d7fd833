import { EventEmitter } from 'node:events';

import { debug } from '../core/diagnostics.js';
import {
  ErrorCodes,
  PrevailError,
  fromNative,
  invalid,
  isFatal,
  type MemberRef,
} from '../core/errors.js';
import { addressInUse } from '../core/ports.js';
import { channels } from '../metrics.js';
import { addon, type NativeEngine, type NativeStatus } from './native.js';
import {
  checkIdentity,
  lockDataDir,
  makeDir,
  readAppliedMark,
  unlockDataDir,
  writeAppliedMark,
} from './data-dir.js';
import { damagedFile, dataDirError } from './data-dir-errors.js';
import { MemberTransport, loadMemberTls, type TlsOptions } from './member-transport.js';
import {
  checkAddress,
  checkPositiveInt,
  checkRole,
  tlsRequired,
  validateOptions,
  type RaftNodeOptions,
  type ValidOptions,
} from './options.js';
import type { Fsm, MemberRole, NodeRole, RaftNodeStatus } from './types.js';

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

/** Wraps a handler's exception so it travels back to the proposer as a rejection. */
class ApplyFailure {
  constructor(readonly error: unknown) {}
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
  // Mutual TLS to the other members (null without `tls`); see member-transport.ts.
  #transport: MemberTransport | null = null;
  #tlsOptions: TlsOptions | null;
  #security: 'tls' | 'insecure' | 'none';
  #fsm: Fsm<R>;
  #closing = false;
  #closed: Promise<void> | null = null;
  #inflight = new Set<Promise<unknown>>();
  // Why this node stopped on its own: an entry it could not apply (see #onFatal).
  #failure: PrevailError | null = null;
  #restoreRefusal: PrevailError | null = null;
  #role: NodeRole = 'unavailable';
  #leader: MemberRef | null = null;
  #term = 0;
  // The highest index applied here, written to prevail-applied every second while this node is
  // the only voter: a log that ends below it at the next start has lost a segment (removed or
  // cut), and the node refuses it. Only then: a follower may apply an entry the leader reports
  // committed before its own copy is on disk (a clean close can leave its log one entry short).
  #appliedMark = 0;
  #markWritten = 0;
  #markTimer: NodeJS.Timeout | null = null;

  private constructor(options: ValidOptions<R>) {
    super();
    this.id = options.id;
    this.address = options.address;
    this.dataDir = options.dataDir;
    this.electionTimeoutMs = options.electionTimeoutMs;
    this.#snapshotThreshold = options.snapshotThreshold;
    this.#fsm = options.fsm;
    this.#engine = new addon.Engine({
      // Handlers get a Buffer, as before: a view of the same bytes, no copy.
      apply: (payload, index, term, mine) =>
        this.#apply(
          Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
          index,
          term,
          mine,
        ),
      snapshot: () => {
        const t0 = performance.now();
        const chunks = this.#fsm.snapshot();
        if (channels.snapshot.hasSubscribers) {
          channels.snapshot.publish({
            id: this.id,
            kind: 'engine',
            index: this.#engine.status().appliedIndex,
            durationMs: performance.now() - t0,
          });
        }
        return chunks;
      },
      restore: (payload) => {
        try {
          this.#fsm.restore(payload);
        } catch (err) {
          // The store's own refusal (code too old for the data): kept to fail the start with.
          if (isFatal(err)) this.#restoreRefusal = err as PrevailError;
          throw err;
        }
      },
      state: (state, term, leaderId, leaderAddress) =>
        this.#onState(state, term, leaderId, leaderAddress),
      fatal: (error) => this.#onFatal(error),
      // Without TLS (a single node) there is no one to connect to.
      connect: (token, id, address) =>
        this.#transport
          ? this.#transport.connect(token, id, address)
          : this.#engine.connectFailed(token),
    });
    this.#tlsOptions = options.tlsOptions;
    if (options.tls)
      this.#transport = new MemberTransport(
        this.id,
        this.address,
        options.tls,
        this.#engine,
        (id) => this.#inConfiguration(id),
        () => this.#engine.status().members ?? [],
      );
    this.#security = options.tls ? 'tls' : options.transport === 'tcp' ? 'insecure' : 'none';
  }

  // Whom the transport lets in: the members of the latest configuration (committed or not, as
  // the engine uses it). A node that has none yet (joining) can't tell, and takes any member.
  #inConfiguration(id: number): boolean {
    const members = this.#engine.status().members ?? [];
    return members.length === 0 || members.some((m) => m.id === id);
  }

  /** Validates the options, opens (or bootstraps) the data directory and starts the engine. */
  static async start<R = unknown>(options: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    const valid = validateOptions(options);
    // A file where the directory should be, no permission, a read-only file system: coded errors
    // (PREVAIL_IO) that say what to do, before anything in the directory is changed.
    try {
      makeDir(valid.dataDir);
    } catch (err) {
      throw dataDirError(valid.dataDir, err);
    }
    const node = new RaftNode<R>(valid);
    node.#openDataDir();
    await node.#startEngine(valid);
    await node.#checkAppliedMark();
    await node.#openToMembers(valid);
    node.#markTimer = setInterval(() => node.#writeMark(), 1000);
    node.#markTimer.unref();
    debug('node %d started at %s in %s', node.id, node.address, node.dataDir);
    return node;
  }

  // The data directory is this node's alone: one process at a time, one node id forever.
  #openDataDir(): void {
    try {
      lockDataDir(this.dataDir);
    } catch (err) {
      throw dataDirError(this.dataDir, err);
    }
    try {
      checkIdentity(this.dataDir, this.id, this.address);
    } catch (err) {
      unlockDataDir(this.dataDir);
      throw dataDirError(this.dataDir, err);
    }
  }

  async #startEngine(valid: ValidOptions<R>): Promise<void> {
    // The engine takes every validated option but the FSM (this node holds it).
    const {
      fsm: _fsm,
      tls: _tls,
      tlsOptions: _files,
      insecure: _insecure,
      join: _join,
      ...startOptions
    } = valid;
    try {
      await this.#engine.start(startOptions);
    } catch (err) {
      unlockDataDir(this.dataDir);
      const error = fromNative(err);
      // The engine reports a failed listen as a bare I/O error; name the cause.
      if (error.code === ErrorCodes.IO && (await addressInUse(this.address))) {
        throw new PrevailError(
          ErrorCodes.ADDRESS_IN_USE,
          `address ${this.address} is already in use`,
          { cause: error },
        );
      }
      throw this.#restoreRefusal ?? damagedFile(this.dataDir, error);
    }
  }

  // Listens for the other members once there are any: a configuration of more than one member
  // (a restart), or a node joining one. Without TLS (or `insecure`), such a node can't start.
  async #openToMembers(valid: ValidOptions<R>): Promise<void> {
    if (this.#security === 'insecure') {
      process.emitWarning(
        `node ${this.id} runs WITHOUT TLS (insecure: true): anyone who can reach ${this.address} ` +
          'can read, write and break the cluster',
        { code: 'PREVAIL_INSECURE' },
      );
      return;
    }
    const members = this.#engine.status().members?.length ?? 0;
    if (members <= 1 && !valid.join) return;
    try {
      if (!this.#transport) throw tlsRequired(`a cluster of ${members} members`);
      await this.#transport.listen();
    } catch (err) {
      await this.#engine.close().catch(() => undefined);
      unlockDataDir(this.dataDir);
      throw err;
    }
  }

  // A log that ends below the applied mark (see #appliedMark) has lost a segment.
  async #checkAppliedMark(): Promise<void> {
    const mark = readAppliedMark(this.dataDir);
    const lastIndex = this.#engine.status().lastIndex ?? 0;
    if (lastIndex < mark) {
      await this.#engine.close().catch(() => undefined);
      unlockDataDir(this.dataDir);
      throw new PrevailError(
        ErrorCodes.CORRUPT_ENTRY,
        `${this.dataDir}: the log ends at index ${lastIndex}, but this node had ` +
          `applied up to ${mark}: a log segment is missing or cut. The node can't start on it; see docs/operations.md ` +
          '(a damaged data dir) to rejoin it from its peers.',
        { file: this.dataDir, index: mark },
      );
    }
    this.#appliedMark = this.#markWritten = mark;
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
  proposeWithIndex(
    command: Uint8Array,
    options: ProposeOptions = {},
  ): Promise<{ index: number; result: R }> {
    if (this.#closing) return Promise.reject(this.#closedError());
    if (!(command instanceof Uint8Array)) {
      return Promise.reject(invalid('a command must be a Uint8Array'));
    }
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(
        new PrevailError(ErrorCodes.ABORTED, 'aborted before it was proposed', {
          cause: signal.reason,
        }),
      );
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
        reject(
          new PrevailError(
            ErrorCodes.ABORTED,
            'aborted while in flight; the command may still apply',
            {
              mayHaveApplied: true,
              cause: signal.reason,
            },
          ),
        );
      signal.addEventListener('abort', onAbort, { once: true });
      applied
        .then(resolvePromise, reject)
        .finally(() => signal.removeEventListener('abort', onAbort));
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
          throw new PrevailError(
            this.#closing ? ErrorCodes.CLOSED : ErrorCodes.IO,
            `no snapshot at ${index} within ${timeoutMs} ms`,
          );
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      this.#forcedSnapshots--;
      if (!this.#closing && this.#forcedSnapshots === 0)
        this.#engine.setSnapshotThreshold(this.#snapshotThreshold);
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
      return {
        id: this.id,
        role: 'closed',
        term: this.#term,
        leader: null,
        commitIndex: 0,
        appliedIndex: 0,
        lastIndex: 0,
        members: [],
        snapshot: { index: 0, term: 0 },
        security: this.#security,
      };
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
      security: this.#security,
    };
  }

  /**
   * Takes new TLS material without a restart (rotation): `tls` if given, else the files of the
   * `tls` option read again. New connections use it; established ones are closed 10 s later
   * (the engine reconnects), so the old certificates stop being used. Throws
   * PREVAIL_BAD_CERTIFICATE (and keeps the old material) when the new one doesn't fit.
   */
  reloadTls(tls?: TlsOptions): void {
    if (!this.#transport)
      throw new PrevailError(ErrorCodes.INVALID_STATE, 'this node runs without tls');
    const options = tls ?? this.#tlsOptions!;
    this.#transport.reload(loadMemberTls(options, this.id));
    this.#tlsOptions = options;
  }

  /** The members' TLS transport (null without `tls`): the peer channel rides on it. */
  get transport(): MemberTransport | null {
    return this.#transport;
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

  /** Whether the engine leads now: `status().role === 'leader'`, cheaply (the 'role' events may lag it). */
  get leadsNow(): boolean {
    return this.#engine.leads();
  }

  /**
   * Whether a proposal here would now be refused with PREVAIL_NOT_LEADER and fail no other
   * way (open, not stopped, and the engine neither leads nor is handing leadership over): the
   * engine's own test, on this thread, so it holds for a proposal made before the next await.
   */
  get refusesProposals(): boolean {
    return !this.#closing && this.#failure === null && this.#engine.refusesCommands();
  }

  /**
   * Adds a member (leader only). It joins as a spare, then (for `voter` or `standby`)
   * is promoted once it has caught up with the log, so it never votes while behind.
   */
  async addMember(member: MemberRef, role: MemberRole = 'voter'): Promise<void> {
    checkPositiveInt('member.id', member?.id);
    checkAddress('member.address', member?.address);
    checkRole(role);
    if (this.#security === 'none') throw tlsRequired('adding a member');
    await this.#transport?.listen();
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
      throw new PrevailError(
        ErrorCodes.TRANSFER_FAILED,
        `leadership transfer${id ? ` to ${id}` : ''} did not complete (leader now ${leaderId || 'unknown'})`,
      );
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
        new Promise((r) => {
          timer = setTimeout(r, drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    if (
      options.transferLeadership &&
      this.#role === 'leader' &&
      this.status().members.filter((m) => m.role === 'voter').length > 1
    ) {
      try {
        this.emit('transferring', { to: null });
        const to = await this.#transfer(0);
        debug('node %d handed leadership to %d before closing', this.id, to);
      } catch (err) {
        debug('node %d: leadership hand-off failed: %s', this.id, (err as Error).message);
      }
    }
    if (this.#markTimer) clearInterval(this.#markTimer);
    this.#writeMark(); // while the engine still answers status()
    await this.#engine.close().catch((err: unknown) => {
      throw fromNative(err);
    });
    await this.#transport?.close();
    unlockDataDir(this.dataDir);
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
          timer = setTimeout(
            () =>
              reject(
                new PrevailError(
                  ErrorCodes.TRANSFER_FAILED,
                  `no new leader within ${timeoutMs} ms of the leadership transfer`,
                ),
              ),
            timeoutMs,
          );
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
      if (isFatal(err)) {
        if (err instanceof PrevailError && err.index === undefined) err.index = index;
        throw err;
      }
      if (!mine)
        debug('node %d: apply threw at index %d: %s', this.id, index, (err as Error)?.message);
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
    debug(
      "node %d stopped: it can't apply entry %s: %s",
      this.id,
      error.index ?? '?',
      error.message,
    );
    this.close({ drainTimeoutMs: 0 })
      .catch((closeErr: unknown) =>
        debug('node %d: close after a failed apply: %s', this.id, (closeErr as Error)?.message),
      )
      .finally(() => process.nextTick(() => this.emit('error', error)));
  }

  #closedError(): PrevailError {
    const failure = this.#failure;
    return failure
      ? new PrevailError(ErrorCodes.CLOSED, `the node stopped: ${failure.message}`, {
          cause: failure,
        })
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

  #writeMark(): void {
    if (this.#appliedMark <= this.#markWritten) return;
    try {
      const voters = this.#engine.status().members?.filter((m) => m.role === 'voter').length ?? 0;
      if (voters !== 1) return;
      writeAppliedMark(this.dataDir, this.#appliedMark);
      this.#markWritten = this.#appliedMark;
    } catch (err) {
      debug('node %d: cannot write prevail-applied: %s', this.id, (err as Error).message);
    }
  }
}

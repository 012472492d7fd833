// What makes a store usable from any node of a cluster: write forwarding to the leader,
// linearizable / lease / stale reads, waiting for an index (read-your-writes), readiness.
// It talks to peers over the library's own channel (peer-channel.ts); the leader's
// channel address is replicated through the log, so any node can find it.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

import { debug } from '../core/diagnostics.js';
import { joinAddress, parseAddress } from '../core/address.js';
import { ErrorCodes, PrevailError, isPrevailError } from '../core/errors.js';
import {
  encodeProposal,
  legacySystemName,
  proposedBody,
  type EntryBody,
  type SystemKind,
} from '../format/entry.js';
import type { StoreMetrics } from '../metrics.js';
import { PeerClient, PeerServer, dialTcp, type Dial, type RequestHandler } from './peer-channel.js';
import { applyPatches, patchesOf, patchesOfResult, type Patch } from '../plain-data.js';
import type { RaftNode } from '../engine/raft-node.js';
import { checkConsistency, type Consistency } from './consistency.js';
import {
  activationTarget,
  checkActivation,
  sameRange,
  votersOf,
  type Support,
} from './activation.js';
import { isVersionRange } from '../store/versions.js';
import {
  carryOver,
  judge,
  selfVerdict,
  type Diverged,
  type PublishedVerdict,
  type Split,
} from './divergence.js';

export type { Consistency } from './consistency.js';

export interface ReadOptions {
  /**
   * `linearizable` (default): the leader confirms it still leads by committing a barrier issued
   * after the call, and this node waits until it has applied that index — never stale.
   * `lease`: the leader skips the barrier while its lease holds (see docs: assumes clocks advance
   * at rates within 10% of each other); followers still ask the leader for its index.
   * `stale`: this node's state as it is (fastest; may lag the leader).
   */
  consistency?: Consistency;
  /** Also wait until this node has applied at least this index (read-your-writes). */
  minIndex?: number;
  /** Give up after this many ms with PREVAIL_TIMEOUT. Default 5000. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** Bound for finding a leader, forwarding and applying here. Default 10000 ms. */
  timeoutMs?: number;
}

export interface Health {
  /** This node leads (what a leader-only load balancer check wants). */
  leader: boolean;
  /** This node knows a leader and has applied within `readyMaxLag` entries of its commit index. */
  ready: boolean;
  appliedIndex: number;
  /** The leader's commit index as last learned (on the leader: its own); null when unknown. */
  leaderCommitIndex: number | null;
  /** leaderCommitIndex − appliedIndex, or null when unknown. */
  lag: number | null;
  /**
   * This replica's effects differ from those a majority agrees on (from the first differing
   * checkpoint): not ready until it is resynced. Null when not known to have diverged.
   */
  diverged: { index: number; expected: string; actual: string; majority: number[] } | null;
  /** The schema version this replica applies commands under, and the versions this node's code supports. */
  schema: { active: number; code: { oldest: number; newest: number } };
}

export interface LinkOptions {
  /** host:port of the peer channel. Default: the raft address's host, any free port. */
  channelAddress?: string;
  /** Forward writes on followers to the leader. Default true; false: PREVAIL_NOT_LEADER with `leader`. */
  forward?: boolean;
  /** Readiness: the most entries a ready node may be behind the leader's commit index. Default 1000. */
  readyMaxLag?: number;
  /**
   * `auto` (default): the leader activates the newest schema version once every voter's code
   * supports it. `manual`: only `store.activate()` does (e.g. to keep a downgrade possible).
   */
  activation?: 'auto' | 'manual';
}

/** The replica's read-only queries the link answers from. */
export interface ReplicaQueries {
  appliedIndex(): number;
  /** The replicated channel addresses, by node id. */
  peers(): ReadonlyMap<number, string>;
  /** Recent (index, effects hash) checkpoints of this replica. */
  checkpoints(): readonly (readonly [number, string])[];
  /**
   * Throws for a request a peer may not forward: a command the schema does not define
   * (PREVAIL_UNKNOWN_COMMAND), a store request of another kind or shape than a follower sends.
   * Gives the request as it is to be proposed (a command's alias resolved).
   */
  checkForwarded(request: EntryBody): EntryBody;
  /** The active schema version (commands are proposed under it). */
  activeVersion(): number;
  /** The replicated schema state and this code's range. */
  schemaState(): {
    readonly active: number;
    readonly support: Support;
    readonly code: readonly [number, number];
  };
}

/** What the link works with: the node it proposes to, the replica it reads, the metrics it counts in. */
export interface LinkParts {
  readonly node: RaftNode<unknown>;
  readonly replica: ReplicaQueries;
  readonly metrics: StoreMetrics;
}

/** A replica's effects hash differs from a majority's at the same index, as judged by `leader`. */
export interface DivergenceInfo extends Diverged {
  leader: number;
}

/** Replicas disagree at an index and no majority of those reporting agrees, as seen by `leader`. */
export interface SplitInfo extends Split {
  leader: number;
}

interface Waiter {
  index: number;
  resolve: (applied: number) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

// What a peer's propose request asks for (see #sendToLeader): a command of the schema, or a
// store request, sent as 'proposeSystem' or by an older build as 'propose' under its old name.
// #proposeForwarded checks both the same way, whichever way they came.
function forwardedBody(type: 'propose' | 'proposeSystem', body: unknown): EntryBody {
  const b = body as { name: string; args: unknown; kind: SystemKind; data: unknown; x?: Patch[] };
  if (type === 'propose') return proposedBody(b.name, b.x ? applyPatches(b.args, b.x) : b.args);
  return { type: 'system', kind: b.kind, data: b.x ? applyPatches(b.data, b.x) : b.data };
}

// A peer that does not know a request type (built before it) answers this.
const isOlderPeer = (err: unknown, type: string) =>
  isPrevailError(err, ErrorCodes.INVALID_ARGUMENT) &&
  err.message === `unknown peer request ${type}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Requests waiting for a leader look again at least this often (see #leaderChange). */
const LEADER_POLL_MS = 25;
const LEASE_FRACTION = 0.9;

/**
 * Events: 'divergence' (DivergenceInfo: on the leader once per diverged replica, on a replica
 * when it learns it diverged), 'split' (SplitInfo, on the leader, once per way the replicas split).
 * The applied index reaches it through onApplied().
 */
export class ClusterLink extends EventEmitter {
  readonly #node: RaftNode<unknown>;
  readonly #replica: ReplicaQueries;
  readonly #metrics: StoreMetrics;
  readonly #forward: boolean;
  readonly #readyMaxLag: number;
  readonly #autoActivate: boolean;
  #activation: Promise<void> | null = null;
  #failedActivations = new Map<number, string>();
  #server!: PeerServer;
  // How this node reaches peers' channels: TLS through the member transport, or plain TCP.
  #dial: Dial = dialTcp;
  #clients = new Map<string, PeerClient>();
  #waiters: Waiter[] = []; // sorted by index
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  // Leader lease: reads may skip the barrier until this (performance.now() ms).
  #leaseUntil = 0;
  #leaseTerm = -1;
  // Coalesced barriers for linearizable reads: one in flight, at most one queued behind it.
  #barrier: Promise<number> | null = null;
  #nextBarrier: Promise<number> | null = null;
  // Follower readiness: the leader's commit index and when we learned it.
  #leaderCommit: { index: number; at: number; leader: number } | null = null;
  #announcing: Promise<unknown> | null = null; // an announcement in flight
  #lastCompare = 0;
  #lastWarm = 0;
  #leaderWait: Promise<void> | null = null; // see #leaderChange
  #comparing = false;
  // The leader's standing verdict (diverged replicas, until resynced) and its last round's.
  #standing = new Map<number, Diverged>();
  #published: PublishedVerdict | null = null;
  #lastSplit = ''; // which nodes disagreed how, as last reported (a lasting split is reported once)
  // Whether this replica diverged, as learned from the leader (or judged, on the leader).
  #self: Diverged | null = null;
  #lastVerdictFetch = 0;
  #fetched: PublishedVerdict | null = null; // a follower's copy of its leader's verdict
  // 'divergence' goes over its own connection: a leader built before it knew the request
  // closes the connection that asks (peer-channel.ts), which must not be the one forwarding writes.
  #verdictClients = new Map<string, PeerClient>();

  private constructor(parts: LinkParts, options: LinkOptions) {
    super();
    this.#node = parts.node;
    this.#replica = parts.replica;
    this.#metrics = parts.metrics;
    this.#forward = options.forward ?? true;
    this.#readyMaxLag = options.readyMaxLag ?? 1000;
    this.#autoActivate = (options.activation ?? 'auto') === 'auto';
  }

  static async start(parts: LinkParts, options: LinkOptions = {}): Promise<ClusterLink> {
    if (options.forward !== undefined && typeof options.forward !== 'boolean') {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'forward must be a boolean');
    }
    if (options.activation !== undefined && !['auto', 'manual'].includes(options.activation)) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, "activation must be 'auto' or 'manual'");
    }
    const link = new ClusterLink(parts, options);
    const node = parts.node;
    const transport = node.transport;
    if (transport) link.#dial = (address) => transport.dialPeer(address);
    link.#server = await channelServer(node, options, (type, body, from) =>
      link.#serve(type, body, from),
    );
    const onRole = () => {
      link.#leaseUntil = 0;
      link.#maintain();
    };
    node.on('role', onRole);
    node.on('leader', onRole);
    node.on('transferring', () => {
      link.#leaseUntil = 0;
      link.#leaseTerm = -1;
    });
    link.#timer = setInterval(() => link.#maintain(), 100);
    link.#timer.unref();
    link.#maintain();
    debug('node %d: peer channel on %s', node.id, link.#server.address);
    return link;
  }

  /** The address this node's peer channel listens on. */
  get channelAddress(): string {
    return this.#server.address;
  }

  // ---- writes --------------------------------------------------------------------------

  /** Proposes on the leader: here if this node leads, else forwarded to it (unless forwarding is off). */
  async propose(
    request: EntryBody,
    options: WriteOptions = {},
  ): Promise<{ index: number; result: unknown }> {
    const m = this.#metrics;
    const t0 = performance.now();
    m.proposals++;
    try {
      const r = await this.#propose(request, options);
      m.proposeMs.observe(performance.now() - t0);
      return r;
    } catch (err) {
      m.proposalsFailed++;
      throw err;
    }
  }

  async #propose(
    request: EntryBody,
    options: WriteOptions,
  ): Promise<{ index: number; result: unknown }> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = performance.now() + timeoutMs;
    const signal = options.signal;
    for (;;) {
      // Here first, unless the engine says it would refuse: its view is fresher than the role
      // events this process has seen. Checked first all the same, so a bad command fails here
      // as on the leader; a follower that forwards then skips building an entry (and two
      // errors) only for the engine to refuse it.
      const body = this.#checkedHere(request);
      if (!this.#forward || !this.#node.refusesProposals) {
        try {
          return await this.#leased(() => this.#proposeChecked(body, signal));
        } catch (err) {
          // Not the leader after all: nothing was appended, so forwarding it is safe.
          if (!this.#forward || !isPrevailError(err, ErrorCodes.NOT_LEADER)) throw err;
        }
      }
      const channel = await this.#leaderChannel(deadline, signal);
      if (channel === null) {
        // This node leads now: propose here, after a turn of the loop (never a tight loop
        // should the engine and the role disagree for a moment).
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      this.#metrics.forwarded++;
      let reply: { index: number; result: unknown };
      try {
        reply = await this.#sendToLeader(channel, request, deadline);
      } catch (err) {
        // Retry only what certainly did not apply: a node that is not (or no longer) the
        // leader, one that is closing, or a connection that failed before the request left.
        const retry =
          isPrevailError(err, ErrorCodes.NOT_LEADER) ||
          ((isPrevailError(err, ErrorCodes.UNAVAILABLE) ||
            isPrevailError(err, ErrorCodes.CLOSED)) &&
            !(err as PrevailError).mayHaveApplied);
        if (!retry || performance.now() >= deadline) throw err;
        await this.#leaderChange(channel, deadline);
        continue;
      }
      // Read-your-writes on this node: settle once the entry is applied here too.
      try {
        await this.waitApplied(reply.index, Math.max(1, deadline - performance.now()), signal);
      } catch (err) {
        // This node stopped on an entry it can't apply: the command did apply, on the leader.
        const failure = this.#node.failure;
        if (failure && isPrevailError(err, failure.code))
          (err as PrevailError).mayHaveApplied = true;
        throw err;
      }
      return reply;
    }
  }

  // On this node only (the leader): the timestamp is this node's clock, carried in the entry;
  // a command goes under the active schema version as of now (aliases resolved), an
  // activation only once every voter supports it.
  #proposeHere(
    request: EntryBody,
    signal?: AbortSignal,
  ): Promise<{ index: number; result: unknown }> {
    return this.#proposeChecked(this.#checkedHere(request), signal);
  }

  // `request` as this node would propose it, or what is wrong with it (as the leader would say).
  #checkedHere(request: EntryBody): EntryBody {
    if (request.type === 'command') {
      const name = (this.#replica.checkForwarded(request) as { name: string }).name;
      return { ...request, name, version: this.#replica.activeVersion() };
    }
    if (request.kind === 'activate')
      checkActivation(this.#voters(), this.#replica.schemaState().support, versionOf(request));
    return request;
  }

  #proposeChecked(
    body: EntryBody,
    signal?: AbortSignal,
  ): Promise<{ index: number; result: unknown }> {
    return this.#node.proposeWithIndex(encodeProposal(body, Date.now()), signal ? { signal } : {});
  }

  #voters(): number[] {
    return votersOf(this.#node.status().members);
  }

  /**
   * Activates schema version `version` (default: the newest every voter supports) through
   * the leader. VERSION_NOT_ACTIVE names the voters whose code lacks it.
   */
  async activate(version?: number, options: WriteOptions = {}): Promise<number> {
    const schema = this.#replica.schemaState();
    const target = version ?? activationTarget(this.#voters(), schema.support, schema.active);
    if (target === null || target <= schema.active) return schema.active;
    checkActivation(this.#voters(), schema.support, target);
    const r = await this.propose(
      { type: 'system', kind: 'activate', data: { version: target } },
      options,
    );
    return (r.result as { active: number }).active;
  }

  // The leader's part of schema versions: this node's code range recorded (with its channel,
  // see #maintain), and with `activation: 'auto'`, the newest version all voters support activated.
  // A version whose migration failed is not tried again by this process (it would fail the
  // same way on every replica): the warning says why, `store.activate()` retries it.
  #activateIfDue(): Promise<void> {
    if (!this.#autoActivate) return Promise.resolve();
    if (this.#activation) return this.#activation;
    const schema = this.#replica.schemaState();
    const target = activationTarget(this.#voters(), schema.support, schema.active);
    if (target === null || target > schema.code[1] || this.#failedActivations.has(target))
      return Promise.resolve();
    this.#activation = this.activate(target)
      .then(
        () => undefined,
        (err: unknown) => {
          debug(
            'node %d: activating schema version %d failed: %s',
            this.#node.id,
            target,
            (err as Error).message,
          );
          if (!isPrevailError(err, ErrorCodes.MIGRATION_FAILED)) return;
          this.#failedActivations.set(target, err.message);
          process.emitWarning(err.message, { code: err.code });
        },
      )
      .finally(() => {
        this.#activation = null;
      });
    return this.#activation;
  }

  /** Versions whose activation by this node failed (their migration threw), with why. */
  get failedActivations(): ReadonlyMap<number, string> {
    return this.#failedActivations;
  }

  /**
   * A lone voter (a single node) records its code's range and, with `activation: 'auto'`,
   * activates its newest version before open() resolves: "start simple" runs the new code.
   */
  async settleAlone(timeoutMs = 5000): Promise<void> {
    const id = this.#node.id;
    const voters = this.#voters();
    if (voters.length !== 1 || voters[0] !== id) return;
    const deadline = performance.now() + timeoutMs;
    while (this.#node.status().role !== 'leader') {
      if (performance.now() >= deadline || this.#closed) return;
      await sleep(5);
    }
    const code = this.#replica.schemaState().code;
    if (!sameRange(this.#replica.schemaState().support.get(id), code))
      await (this.#announcing ?? this.#announce(id, this.#server.address, code));
    await this.#activateIfDue();
  }

  // A user command travels as 'propose' (its message unchanged since the first release); the
  // store's own requests as 'proposeSystem' (a leader checks each kind's shape: forwardedBody).
  // The patches carry what msgpack alone would change (-0, lone surrogates, bytes): see plain-data.ts.
  async #sendToLeader(
    channel: string,
    request: EntryBody,
    deadline: number,
  ): Promise<{ index: number; result: unknown }> {
    const [type, body] =
      request.type === 'command'
        ? ['propose', { name: request.name, args: request.args }]
        : ['proposeSystem', { kind: request.kind, data: request.data }];
    const x = patchesOf(request.type === 'command' ? request.args : request.data);
    let reply: { index: number; result: unknown; x?: Patch[] };
    try {
      reply = await this.#request(channel, type, x.length ? { ...body, x } : body, deadline);
    } catch (err) {
      if (request.type === 'command' || !isOlderPeer(err, 'proposeSystem')) throw err;
      // A leader from before 'proposeSystem' (a rolling upgrade) takes them under their old names.
      const legacy = { name: legacySystemName(request.kind), args: request.data };
      reply = await this.#request(
        channel,
        'propose',
        x.length ? { ...legacy, x } : legacy,
        deadline,
      );
    }
    return reply.x ? { index: reply.index, result: applyPatches(reply.result, reply.x) } : reply;
  }

  #request(
    channel: string,
    type: string,
    body: unknown,
    deadline: number,
  ): Promise<{ index: number; result: unknown; x?: Patch[] }> {
    return this.#client(channel).request(
      type,
      body,
      Math.max(1, deadline - performance.now()),
    ) as Promise<{ index: number; result: unknown; x?: Patch[] }>;
  }

  // ---- reads ---------------------------------------------------------------------------

  async read(options: ReadOptions = {}): Promise<number> {
    const consistency = checkConsistency(options.consistency);
    const minIndex = options.minIndex ?? 0;
    if (typeof minIndex !== 'number' || !Number.isInteger(minIndex) || minIndex < 0) {
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `minIndex must be a non-negative integer, got ${String(minIndex)}`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 5000;
    const deadline = performance.now() + timeoutMs;
    const { signal } = options;
    this.#metrics.reads++;
    if (signal?.aborted)
      throw new PrevailError(ErrorCodes.ABORTED, 'aborted', { cause: signal.reason });
    let index = minIndex;
    if (consistency !== 'stale') {
      for (;;) {
        try {
          index = Math.max(index, await this.#readIndex(consistency, deadline, signal));
          break;
        } catch (err) {
          // Without forwarding, NOT_LEADER is the answer (with the hint), not something to wait out.
          const retry =
            (this.#forward && isPrevailError(err, ErrorCodes.NOT_LEADER)) ||
            isPrevailError(err, ErrorCodes.LEADERSHIP_LOST) ||
            isPrevailError(err, ErrorCodes.UNAVAILABLE) ||
            (isPrevailError(err, ErrorCodes.CLOSED) && !this.#closed);
          if (!retry || performance.now() >= deadline) throw err;
          await sleep(10);
        }
      }
    }
    return this.waitApplied(index, Math.max(0, deadline - performance.now()), signal);
  }

  // The index a read must see: on the leader from its own barrier or lease, elsewhere from the leader.
  async #readIndex(
    consistency: 'linearizable' | 'lease',
    deadline: number,
    signal?: AbortSignal,
  ): Promise<number> {
    if (this.#leads()) return this.#leaderReadIndex(consistency);
    if (!this.#forward) {
      throw new PrevailError(
        ErrorCodes.NOT_LEADER,
        `${consistency} reads need the leader (forwarding is off)`,
        { leader: this.#node.leader },
      );
    }
    const channel = await this.#leaderChannel(deadline, signal);
    if (channel === null) return this.#leaderReadIndex(consistency);
    return (await this.#client(channel).request(
      'readIndex',
      { consistency },
      Math.max(1, deadline - performance.now()),
    )) as number;
  }

  // The answer is the index of the last state-machine entry applied here once the leader's
  // position is confirmed (barrier entries don't reach the state machine, so followers wait
  // for that entry, not for the barrier's own index).
  async #leaderReadIndex(consistency: 'linearizable' | 'lease'): Promise<number> {
    if (consistency === 'lease' && performance.now() < this.#leaseUntil) {
      const s = this.#node.status();
      if (s.role === 'leader' && s.term === this.#leaseTerm && s.appliedIndex >= s.commitIndex)
        return this.#replica.appliedIndex();
    }
    await this.#coalescedBarrier();
    return this.#replica.appliedIndex();
  }

  // A read may only use a barrier issued after it started; reads that arrive while one is in
  // flight share the next one, so a burst of reads costs two log entries, not one each.
  #coalescedBarrier(): Promise<number> {
    if (!this.#barrier) {
      const p: Promise<number> = this.#leased(() => this.#node.barrier()).finally(() => {
        if (this.#barrier === p) this.#barrier = null;
      });
      this.#barrier = p;
      return p;
    }
    if (!this.#nextBarrier) {
      const next = this.#barrier
        .then(
          () => undefined,
          () => undefined,
        )
        .then(() => {
          this.#nextBarrier = null;
          return this.#coalescedBarrier();
        });
      this.#nextBarrier = next;
    }
    return this.#nextBarrier;
  }

  // Runs a proposal (or barrier) here; once it commits, the lease is renewed from its start.
  async #leased<T>(submit: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const term = this.#node.term;
    const result = await submit();
    this.#renewLease(t0, term);
    return result;
  }

  // A committed entry proposed at t0 in `term` means a majority heard from us after t0, and
  // none of them will vote for another leader until an election timeout after that. (`term`
  // is the one this process had seen at t0; if that lagged, the read side's term check fails
  // and the read takes a barrier instead.)
  #renewLease(t0: number, term: number): void {
    const until = t0 + this.#node.electionTimeoutMs * LEASE_FRACTION;
    if (term !== this.#leaseTerm || until > this.#leaseUntil) {
      this.#leaseUntil = until;
      this.#leaseTerm = term;
    }
  }

  /** Resolves with the applied index once this node has applied `index`. */
  waitApplied(index: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const applied = this.#replica.appliedIndex();
    if (applied >= index) return Promise.resolve(applied);
    if (this.#closed)
      return Promise.reject(new PrevailError(ErrorCodes.CLOSED, 'the store is closed'));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        waiter.cleanup();
        reject(
          new PrevailError(ErrorCodes.ABORTED, `aborted waiting for index ${index}`, {
            cause: signal!.reason,
          }),
        );
      };
      const timer = setTimeout(() => {
        waiter.cleanup();
        reject(
          new PrevailError(
            ErrorCodes.TIMEOUT,
            `index ${index} not applied on node ${this.#node.id} within ${timeoutMs} ms (applied ${this.#replica.appliedIndex()})`,
            { index },
          ),
        );
      }, timeoutMs);
      const waiter: Waiter = {
        index,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let at = this.#waiters.length;
      while (at > 0 && this.#waiters[at - 1]!.index > index) at--;
      this.#waiters.splice(at, 0, waiter);
    });
  }

  /** Called by the store after every apply and restore. */
  onApplied(applied: number): void {
    while (this.#waiters.length > 0 && this.#waiters[0]!.index <= applied) {
      const w = this.#waiters.shift()!;
      w.cleanup();
      w.resolve(applied);
    }
  }

  // The engine's own view (the 'role' events this process has handled may lag it).
  #leads(): boolean {
    return this.#node.leadsNow;
  }

  // ---- health --------------------------------------------------------------------------

  health(): Health {
    const s = this.#node.status();
    const appliedIndex = s.appliedIndex; // the engine's: counts barriers and configuration entries too
    let leaderCommitIndex: number | null = null;
    if (s.role === 'leader') leaderCommitIndex = s.commitIndex;
    else if (
      this.#leaderCommit &&
      s.leader?.id === this.#leaderCommit.leader &&
      performance.now() - this.#leaderCommit.at < 2000
    ) {
      leaderCommitIndex = this.#leaderCommit.index;
    }
    const lag = leaderCommitIndex === null ? null : Math.max(0, leaderCommitIndex - appliedIndex);
    const d = this.#self;
    const schema = this.#replica.schemaState();
    return {
      leader: s.role === 'leader',
      ready: s.leader !== null && lag !== null && lag <= this.#readyMaxLag && d === null,
      appliedIndex,
      leaderCommitIndex,
      lag,
      diverged: d && {
        index: d.index,
        expected: d.expected,
        actual: d.actual,
        majority: [...d.majority],
      },
      schema: {
        active: schema.active,
        code: { oldest: schema.code[0], newest: schema.code[1] },
      },
    };
  }

  // ---- the channel -----------------------------------------------------------------------

  async #serve(type: string, body: unknown, from?: number): Promise<unknown> {
    if (this.#closed) throw new PrevailError(ErrorCodes.CLOSED, `node ${this.#node.id} is closing`);
    if (type === 'commitIndex') return this.#node.status().commitIndex;
    // A node that doesn't lead refuses these in the engine (PREVAIL_NOT_LEADER with the hint).
    if (type === 'propose' || type === 'proposeSystem')
      return this.#proposeForwarded(forwardedBody(type, body));
    if (type === 'checkpoints') return this.#replica.checkpoints();
    if (type === 'divergence') return this.#leads() ? this.#published : null;
    if (type === 'announce') {
      const { id, channel, schema } = announcement(body, from, this.#node);
      const recorded = this.#replica.schemaState().support.get(id);
      if (this.#replica.peers().get(id) !== channel || (schema && !sameRange(recorded, schema)))
        await this.#announce(id, channel, schema);
      return null;
    }
    if (type === 'readIndex') {
      const index = await this.#leaderReadIndex(
        (body as { consistency: 'linearizable' | 'lease' }).consistency,
      );
      this.#pushCommit();
      return index;
    }
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `unknown peer request ${type}`);
  }

  async #proposeForwarded(
    request: EntryBody,
  ): Promise<{ index: number; result: unknown; x?: Patch[] }> {
    const body = this.#replica.checkForwarded(request);
    const r = await this.#leased(() => this.#proposeHere(body));
    this.#pushCommit();
    const rx = patchesOfResult(r.result);
    return rx?.length ? { ...r, x: rx } : r;
  }

  // Proposes the replicated "node id's channel is at address, its code supports these schema
  // versions" entry. (Builds from before schema versions ignore `schema`.)
  #announce(id: number, channel: string, schema?: readonly [number, number]): Promise<unknown> {
    const data = schema ? { id, channel, schema: [...schema] } : { id, channel };
    return this.#node.propose(encodeProposal({ type: 'system', kind: 'peer', data }, Date.now()));
  }

  // The asking follower will wait to apply an index that is committed here, but the engine
  // tells followers the commit index only with its next append (a new entry, or a heartbeat
  // up to heartbeatMs later). A barrier is such an entry: coalesced, at most one queued.
  #pushCommit(): void {
    if (this.#nextBarrier) return;
    this.#coalescedBarrier().catch(() => undefined);
  }

  // The leader's channel address, waiting (bounded) while there is no leader or it has not
  // announced itself yet; null once this node leads: a request that waited through an election
  // this node won is done here (before, it waited for a channel of its own until its deadline).
  async #leaderChannel(deadline: number, signal?: AbortSignal): Promise<string | null> {
    for (;;) {
      if (signal?.aborted)
        throw new PrevailError(ErrorCodes.ABORTED, 'aborted', { cause: signal.reason });
      if (this.#closed) throw new PrevailError(ErrorCodes.CLOSED, 'the store is closed');
      if (this.#leads()) return null;
      const leader = this.#node.leader;
      const channel = this.#leaderChannelNow();
      if (channel) return channel;
      if (performance.now() >= deadline) {
        throw new PrevailError(
          ErrorCodes.UNAVAILABLE,
          leader ? `leader ${leader.id} is not reachable yet` : 'no leader is known',
          { leader, mayHaveApplied: false },
        );
      }
      await this.#leaderChange(undefined, deadline);
    }
  }

  // The channel of the leader this node knows, when that is another node and it has one recorded.
  #leaderChannelNow(): string | undefined {
    const leader = this.#node.leader;
    return leader && leader.id !== this.#node.id ? this.#replica.peers().get(leader.id) : undefined;
  }

  /**
   * Resolves when the leader may have changed: at once if its channel is no longer `failed` (the
   * one a forward just failed on), else at the node's next 'leader' or 'role' event, or after
   * LEADER_POLL_MS (a leader's channel address arrives in an entry, not an event), or at the
   * deadline. Every request waiting shares one timer and one listener: during an election a
   * survivor holds every write sent to it, and each polling on its own every 10 ms (a propose
   * attempt, a dial to the dead leader) kept its event loop busy enough to delay the election's
   * own messages (split votes, docs/benchmarks.md).
   */
  #leaderChange(failed: string | undefined, deadline: number): Promise<void> {
    const channel = this.#leaderChannelNow();
    if (failed !== undefined && channel !== undefined && channel !== failed)
      return Promise.resolve();
    this.#leaderWait ??= new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#node.off('leader', done);
        this.#node.off('role', done);
        this.#leaderWait = null;
        resolve();
      };
      const timer = setTimeout(done, LEADER_POLL_MS);
      this.#node.on('leader', done);
      this.#node.on('role', done);
    });
    const left = deadline - performance.now();
    return left < LEADER_POLL_MS
      ? Promise.race([this.#leaderWait, sleep(Math.max(0, left))]).then(() => undefined)
      : this.#leaderWait;
  }

  #client(address: string): PeerClient {
    let c = this.#clients.get(address);
    if (!c) {
      c = new PeerClient(address, this.#dial);
      this.#clients.set(address, c);
    }
    return c;
  }

  // Periodic: the leader makes sure its channel address is in the replicated state; followers
  // learn the leader's commit index (readiness).
  #maintain(): void {
    if (this.#closed) return;
    const node = this.#node;
    const status = node.status();
    // Our channel address must be in the replicated state: the leader proposes it itself,
    // followers get it recorded through the leader, so that whichever of them leads next is
    // reachable at once, without an announcement of its own first.
    const code = this.#replica.schemaState().code;
    const supportRecorded = sameRange(this.#replica.schemaState().support.get(node.id), code);
    const announced =
      this.#announcing !== null ||
      (this.#replica.peers().get(node.id) === this.#server.address && supportRecorded);
    if (performance.now() - this.#lastWarm > 1000) {
      this.#lastWarm = performance.now();
      this.#warmChannels(status.members);
    }
    if (status.role === 'leader') {
      if (performance.now() - this.#lastCompare > 1000) {
        this.#lastCompare = performance.now();
        this.#compareReplicas();
      }
      // A lone node records its code's range too (it has no channel to announce).
      if (!announced && (status.members.length > 1 || !supportRecorded))
        this.#trackAnnouncement(this.#announce(node.id, this.#server.address, code));
      else if (announced) this.#activateIfDue();
      return;
    }
    const leader = node.leader;
    const channel = leader ? this.#replica.peers().get(leader.id) : undefined;
    if (!leader || !channel || leader.id === node.id) return;
    if (!announced)
      this.#trackAnnouncement(
        this.#client(channel).request(
          'announce',
          { id: node.id, channel: this.#server.address, schema: [...code] },
          2000,
        ),
      );
    this.#client(channel)
      .request('commitIndex', null, 1000)
      .then(
        (index) => {
          this.#leaderCommit = { index: index as number, at: performance.now(), leader: leader.id };
        },
        () => undefined,
      );
    if (performance.now() - this.#lastVerdictFetch > 1000) {
      this.#lastVerdictFetch = performance.now();
      this.#fetchVerdict(channel, leader.id);
    }
  }

  // A connection to each other voter's channel, open before a write needs one: when a leader
  // fails, the followers forward to the new one at once, without a TLS handshake first.
  #warmChannels(members: Parameters<typeof votersOf>[0]): void {
    const peers = this.#replica.peers();
    for (const id of votersOf(members)) {
      const channel = id !== this.#node.id ? peers.get(id) : undefined;
      if (channel) this.#client(channel).warm();
    }
  }

  // A follower learns the leader's verdict (from its current leader only) and whether it names it.
  #fetchVerdict(channel: string, leader: number): void {
    let c = this.#verdictClients.get(channel);
    if (!c) {
      c = new PeerClient(channel, this.#dial);
      this.#verdictClients.set(channel, c);
    }
    c.request('divergence', null, 1000).then(
      (v) => {
        const published = v as PublishedVerdict | null;
        if (published && published.leader === leader && this.#node.leader?.id === leader) {
          this.#fetched = published;
          this.#learn(published);
        }
      },
      // A leader that doesn't answer it (an older build, mid-upgrade): ask again in 10 s, not 1.
      () => {
        this.#lastVerdictFetch = performance.now() + 9000;
      },
    );
  }

  #learn(published: PublishedVerdict): void {
    const before = this.#self;
    this.#self = selfVerdict(this.#node.id, before, published);
    if (this.#self && !before) this.emit('divergence', { ...this.#self, leader: published.leader });
  }

  #trackAnnouncement(done: Promise<unknown>): void {
    this.#announcing = done
      .catch((err: unknown) =>
        debug('node %d: announcing its channel failed: %s', this.#node.id, (err as Error).message),
      )
      .finally(() => {
        this.#announcing = null;
      });
  }

  // The divergence detector, on the leader: every member's recent checkpoints (ours too),
  // judged by majority (divergence.ts), then published for the replicas to fetch.
  #compareReplicas(): void {
    if (this.#comparing) return;
    this.#comparing = true;
    this.#gatherCheckpoints()
      .then((reports) => this.#judged(reports))
      .catch((err: unknown) =>
        debug('node %d: comparing replicas failed: %s', this.#node.id, (err as Error).message),
      )
      .finally(() => {
        this.#comparing = false;
      });
  }

  async #gatherCheckpoints(): Promise<Map<number, readonly (readonly [number, string])[]>> {
    const self = this.#node.id;
    const members = new Set(this.#node.status().members.map((m) => m.id));
    const reports = new Map<number, readonly (readonly [number, string])[]>();
    reports.set(self, [...this.#replica.checkpoints()]);
    const asks = [...this.#replica.peers()]
      .filter(([id]) => id !== self && members.has(id))
      .map(async ([id, channel]) => {
        const theirs = await this.#client(channel).request('checkpoints', null, 1000);
        reports.set(id, theirs as [number, string][]);
      });
    await Promise.allSettled(asks);
    return reports;
  }

  #judged(reports: Map<number, readonly (readonly [number, string])[]>): void {
    if (this.#closed || !this.#leads()) return;
    const leader = this.#node.id;
    const members = new Set(this.#node.status().members.map((m) => m.id));
    const round = judge(reports);
    const { standing, added } = carryOver(this.#standing, round, members);
    this.#standing = standing;
    this.#published = {
      leader,
      diverged: [...standing.values()],
      agreed: [...round.agreed],
      split: round.split,
    };
    for (const d of added) this.emit('divergence', { ...d, leader } satisfies DivergenceInfo);
    // Its own entry, if the leader is the odd one, was reported just above.
    this.#self = selfVerdict(leader, this.#self, this.#published);
    const split = round.split && JSON.stringify(round.split.hashes.map((h) => h.nodes));
    if (round.split && split !== this.#lastSplit)
      this.emit('split', { ...round.split, leader } satisfies SplitInfo);
    this.#lastSplit = split ?? '';
  }

  /** The leader's standing verdict: its own on the leader, else as last fetched from the current leader; null when unknown. */
  verdict(): PublishedVerdict | null {
    if (this.#leads()) return this.#published;
    const v = this.#fetched;
    return v && v.leader === this.#node.leader?.id ? v : null;
  }

  /** Stops serving peers; waits for an index reject with CLOSED, or with `failure`'s code when the node stopped on one. */
  async close(failure?: PrevailError): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const w of [...this.#waiters]) {
      w.cleanup();
      w.reject(
        failure
          ? new PrevailError(
              failure.code,
              `node ${this.#node.id} stopped before index ${w.index} was applied here: ${failure.message}`,
              { ...(failure.index !== undefined ? { index: failure.index } : {}), cause: failure },
            )
          : new PrevailError(
              ErrorCodes.CLOSED,
              `the store closed before index ${w.index} was applied`,
            ),
      );
    }
    for (const c of this.#clients.values()) c.close();
    for (const c of this.#verdictClients.values()) c.close();
    await this.#server.close();
  }
}

// The channel server: on the member transport's port with TLS, its own plain TCP port with
// `insecure`, none for a single node that opens no port (it has no one to serve).
async function channelServer(
  node: RaftNode<unknown>,
  options: LinkOptions,
  handler: RequestHandler,
): Promise<PeerServer> {
  const security = node.status().security;
  const transport = node.transport;
  // Checked even where unused (TLS shares the member port; a lone node serves none).
  if (options.channelAddress !== undefined)
    parseAddress(options.channelAddress, 'the peer channel address');
  if (transport) {
    const server = PeerServer.attached(node.address, handler);
    transport.onPeerSocket((socket, id) => server.serve(socket, id));
    return server;
  }
  if (security === 'none') return PeerServer.attached('', handler);
  const address = options.channelAddress ?? joinAddress(parseAddress(node.address).host, 0);
  return PeerServer.listen(address, handler);
}

/**
 * An `announce` request, checked: with TLS (`from` known) a member announces only itself, at
 * its own member address (its channel shares that port), so no one can point the others'
 * forwarded writes elsewhere. Without TLS nothing proves who asks (docs/operations.md).
 */
function announcement(
  body: unknown,
  from: number | undefined,
  node: RaftNode<unknown>,
): { id: number; channel: string; schema?: [number, number] } {
  const b = (body ?? {}) as { id?: unknown; channel?: unknown; schema?: unknown };
  const { id, channel } = b;
  if (typeof id !== 'number' || typeof channel !== 'string')
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'announce needs { id, channel }');
  const schema = versionRange(b.schema);
  if (from === undefined) return { id, channel, ...(schema ? { schema } : {}) };
  const member = node.status().members.find((m) => m.id === from);
  if (id !== from || !member || channel !== member.address)
    throw new PrevailError(
      ErrorCodes.FORBIDDEN,
      `member ${from} may announce only itself at its own address (${member?.address ?? 'not a member'})`,
    );
  return { id, channel, ...(schema ? { schema } : {}) };
}

// An announced code range [oldest, newest] of schema versions; absent from older builds.
function versionRange(x: unknown): [number, number] | undefined {
  if (x === undefined) return undefined;
  if (!isVersionRange(x))
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'announce: schema must be [oldest, newest]',
    );
  return [x[0], x[1]];
}

const versionOf = (request: EntryBody): number =>
  ((request.type === 'system' ? request.data : null) as { version: number }).version;

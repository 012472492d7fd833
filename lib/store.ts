// The object store's facade: opens a node with the state machine (lib/store/state-machine.ts)
// as its Fsm and the cluster link (forwarding, reads, readiness) beside it, then delegates.
// A write reads top to bottom: Store.propose → ClusterLink.propose (here, or forwarded to
// the leader) → RaftNode → the engine → StateMachine.apply → ClusterLink.onApplied.
import { EventEmitter } from 'node:events';

import { debug } from './core/diagnostics.js';
import { freePort } from './core/ports.js';
import { ErrorCodes, PrevailError, isPrevailError } from './core/errors.js';
import { holdingBack, votersOf } from './cluster/activation.js';
import { checkPlain } from './plain-data.js';
import { RaftNode, type CloseOptions } from './engine/raft-node.js';
import { defaults, type RaftNodeOptions } from './engine/options.js';
import type { RaftNodeStatus } from './engine/types.js';
import {
  ClusterLink,
  type DivergenceInfo,
  type Health,
  type SplitInfo,
  type LinkOptions,
  type ReadOptions,
  type WriteOptions,
} from './cluster/cluster-link.js';
import type { TlsOptions } from './engine/member-transport.js';
import type { Diverged, Split } from './cluster/divergence.js';
import { StoreMetrics, channels, kMetrics, type MetricsSnapshot } from './metrics.js';
import {
  LeaderJobs,
  type LeaderJob,
  type LeaderJobHandle,
  type LeaderJobOptions,
  type Schedule,
} from './jobs.js';
import { StateMachine } from './store/state-machine.js';
import {
  takeBackup,
  type BackupDestination,
  type BackupOptions,
  type BackupResult,
  type BackupSource,
} from './backup/take.js';
import { autoBackup, type AutoBackupOptions } from './backup/auto.js';
import { scheduleData } from './store/schedules.js';
import {
  toSchema,
  type ArgsOf,
  type Collections,
  type Commands,
  type ResultOf,
  type Schema,
  type ViewOf,
} from './store/schema.js';

export { collection, defineSchema } from './store/schema.js';
export type {
  ArgsOf,
  CollectionDef,
  CollectionReader,
  CollectionReaderOf,
  CollectionSpec,
  CollectionWriter,
  CollectionWriterOf,
  Collections,
  CommandContext,
  Commands,
  Handler,
  HashIndexReader,
  IndexBuilder,
  IndexDef,
  IndexKind,
  PersistentIndexReader,
  RangeOptions,
  ResultOf,
  Schema,
  SortedIndexReader,
  StateOf,
  Stored,
  SyncHandlers,
  UniqueIndexReader,
  ViewOf,
} from './store/schema.js';

/**
 * The engine's options (RaftNodeOptions, documented there), the cluster link's (LinkOptions) and
 * the store's own. `id` is optional here (default 1), and so is `address` (default: this id's
 * entry in `cluster`, else 127.0.0.1 on a free port, fine for a single node).
 */
export interface StoreOptions<C extends Collections, H extends Commands<C>>
  extends
    LinkOptions,
    Partial<Pick<RaftNodeOptions, 'id' | 'address'>>,
    Pick<
      RaftNodeOptions,
      | 'dataDir'
      | 'cluster'
      | 'join'
      | 'electionTimeoutMs'
      | 'heartbeatMs'
      | 'snapshotThreshold'
      | 'snapshotTrailing'
      | 'maxInflightEntries'
      | 'tls'
      | 'insecure'
    > {
  schema: Schema<C, H>;
  /** Start a background state capture after this many entries. Default snapshotThreshold / 2. */
  captureEvery?: number;
  /** Objects serialised per slice of the background capture. Default 2000. */
  captureSliceSize?: number;
  /** An apply slower than this (ms) is published on `prevail:slow-apply` and logged (NODE_DEBUG=prevail). Default 50. */
  slowApplyMs?: number;
}

/** See Store.schemaStatus. */
export interface SchemaStatus {
  /** The schema version every replica applies commands under now. */
  active: number;
  /** Where each version became active (the log index of its activation). */
  activations: { index: number; version: number }[];
  /** The versions this node's code supports. */
  code: { oldest: number; newest: number };
  /** Each node's code range as it recorded it through the log (nodes of older builds are absent). */
  nodes: { id: number; voter: boolean; oldest: number; newest: number; canRunActive: boolean }[];
  /** Voters whose code keeps this code's newest version from activating. */
  holdingBack: number[];
  /** Versions whose automatic activation by this node failed (a migration threw); `store.activate()` retries. */
  failed: { version: number; message: string }[];
  /** The version a replay from this node's newest snapshot starts under. */
  replayNeeds: number;
}

type StoreStatus = RaftNodeStatus & {
  capture: { baseIndex: number; tail: number; running: boolean };
  effects: { index: number; hash: string };
  schema: SchemaStatus;
  divergence: DivergenceStatus;
};

/** The divergence detector's findings as this node knows them (docs/operations.md, "When a replica diverges"). */
export interface DivergenceStatus {
  /** This replica, when it diverged from the majority (not ready until resynced). */
  self: Health['diverged'];
  /** Whose verdict the rest is (the leader's), or null when none is known yet. */
  leader: number | null;
  /** The replicas that leader names as diverged. */
  diverged: Diverged[];
  /** Replicas that disagree with no majority among those reporting (the newest such index), or null. */
  split: Split | null;
}

export class Store<C extends Collections, H extends Commands<C>> extends EventEmitter {
  readonly node: RaftNode<unknown>;
  /** Read-only access to every collection and its indexes. */
  readonly view: ViewOf<C>;
  readonly [kMetrics]: StoreMetrics;
  readonly #machine: StateMachine<C, H>;
  readonly #link: ClusterLink;
  readonly #jobs: LeaderJobs<Store<C, H>>;
  #stopping = false;

  // Built once the node runs and the link listens: from here on the store is open.
  private constructor(machine: StateMachine<C, H>, node: RaftNode<unknown>, link: ClusterLink) {
    super();
    this.node = node;
    this.view = machine.view;
    this[kMetrics] = machine.metrics;
    this.#machine = machine;
    this.#link = link;
    machine.onApplied = (index) => link.onApplied(index);
    link.on('divergence', (info: DivergenceInfo) => this.#diverged(info));
    link.on('split', (info: SplitInfo) => this.#split(info));
    this.#jobs = new LeaderJobs<Store<C, H>>({
      node,
      store: this,
      events: this,
      schedules: () => machine.state.schedules.values(),
      fire: (id, due, signal) => this.#fire(id, due, signal),
    });
    this.#adaptSnapshotThreshold();
    node.on('role', (e) => this.emit('role', e));
    machine.on('schedules', () => this.emit('schedules'));
    machine.on('captureError', (err) => this.emit('captureError', err));
    machine.on('capture', (e: { index: number; durationMs: number; serialised: number }) => {
      this.#adaptSnapshotThreshold();
      this[kMetrics].snapshotMs.observe(e.durationMs);
      if (channels.snapshot.hasSubscribers)
        channels.snapshot.publish({
          id: node.id,
          kind: 'capture',
          index: e.index,
          durationMs: e.durationMs,
        });
      this.emit('capture', e);
    });
  }

  /**
   * Opens the store: a durable single node by default; with `cluster`, one member of a
   * replicated store. Replays the last snapshot and the log before resolving.
   */
  static async open<C extends Collections, H extends Commands<C>>(
    options: StoreOptions<C, H>,
  ): Promise<Store<C, H>> {
    toSchema(options.schema);
    const id = options.id ?? 1;
    const snapshotThreshold = options.snapshotThreshold ?? defaults.snapshotThreshold;
    const machine = new StateMachine<C, H>(options.schema, {
      id,
      snapshotThreshold,
      slowApplyMs: options.slowApplyMs,
      sliceSize: options.captureSliceSize,
      captureEvery: options.captureEvery ?? Math.max(1, Math.floor(snapshotThreshold / 2)),
    });
    const address =
      options.address ??
      options.cluster?.find((m) => m.id === id)?.address ??
      `127.0.0.1:${await freePort()}`;
    const { cluster, join, electionTimeoutMs, heartbeatMs, snapshotTrailing, maxInflightEntries } =
      options;
    const { tls, insecure } = options;
    const node = await RaftNode.start<unknown>({
      id,
      address,
      dataDir: options.dataDir,
      cluster,
      join,
      electionTimeoutMs,
      heartbeatMs,
      snapshotThreshold,
      snapshotTrailing,
      maxInflightEntries,
      tls,
      insecure,
      fsm: machine,
    });
    // An entry this replica can't apply stops the node (RaftNode emits 'error' once closed);
    // before open() resolves, open() rejects with it instead.
    let store: Store<C, H> | null = null;
    node.on('error', (err: PrevailError) => {
      if (store) store.#stop(err);
    });
    const link = await startLink(node, machine, options);
    store = new Store<C, H>(machine, node, link);
    await link.settleAlone();
    return store;
  }

  /**
   * The state machine alone, without a node: for reading a data dir offline (`prevail
   * inspect`). `restore` takes a snapshot's store payload; `apply` runs one command entry
   * (a handler's error is returned as `{ error }`, as the log would; fatal ones throw).
   */
  static offline<C extends Collections, H extends Commands<C>>(
    schema: Schema<C, H>,
  ): {
    restore(data: Uint8Array): void;
    apply(payload: Uint8Array, index: number, term: number): { result?: unknown; error?: unknown };
    readonly view: ViewOf<C>;
    stateHash(): string;
  } {
    const machine = new StateMachine<C, H>(schema); // no captures: nothing is written
    return {
      restore: (data) => machine.restore(data),
      apply: (payload, index, term) => machine.applyOutcome(payload, index, term),
      view: machine.view,
      stateHash: () => machine.stateHash(),
    };
  }

  /**
   * Proposes a command; resolves with the handler's result once committed and applied here.
   * On a follower it is forwarded to the leader (unless `forward: false`).
   */
  propose<K extends keyof H & string>(
    name: K,
    args: ArgsOf<H[K]>,
    options: WriteOptions = {},
  ): Promise<ResultOf<H[K]>> {
    this.#outsideHandler('propose');
    return this.#proposeCommand(name, args, options).then((r) => r.result as ResultOf<H[K]>);
  }

  /** Like propose, also giving the entry's log index (for read-your-writes: `read({ minIndex })`). */
  proposeWithIndex<K extends keyof H & string>(
    name: K,
    args: ArgsOf<H[K]>,
    options: WriteOptions = {},
  ): Promise<{ index: number; result: ResultOf<H[K]> }> {
    this.#outsideHandler('proposeWithIndex');
    return this.#proposeCommand(name, args, options) as Promise<{
      index: number;
      result: ResultOf<H[K]>;
    }>;
  }

  async #proposeCommand(
    name: string,
    args: unknown,
    options: WriteOptions,
  ): Promise<{ index: number; result: unknown }> {
    // The name now; the args where they are encoded (NOT_PLAIN_DATA), on this node before
    // anything is appended or sent.
    this.#resolveCommand(name);
    try {
      return await this.#link.propose({ type: 'command', name, args }, options);
    } catch (err) {
      if (!isPrevailError(err, ErrorCodes.SCHEMA_CHANGED)) throw this.#namedHoldingBack(err);
      // Committed just after an activation, under the version before: nothing was applied.
      // Once this node has applied the activation, the command goes again under the new one.
      await this.#link.waitApplied(err.index ?? 0, options.timeoutMs ?? 10_000, options.signal);
      this.#resolveCommand(name);
      return await this.#link.propose({ type: 'command', name, args }, options);
    }
  }

  #resolveCommand(name: string): void {
    try {
      this.#machine.resolveCommand(name);
    } catch (err) {
      throw this.#namedHoldingBack(err);
    }
  }

  // A command of a version not active yet: the error names the voters whose code lacks it.
  #namedHoldingBack(err: unknown): unknown {
    if (!isPrevailError(err, ErrorCodes.VERSION_NOT_ACTIVE) || err.version === undefined)
      return err;
    const voters = votersOf(this.node.status().members);
    const behind = holdingBack(voters, this.#machine.schemaState().support, err.version);
    err.holdingBack = behind;
    err.message += behind.length
      ? ` (held back by node${behind.length > 1 ? 's' : ''} ${behind.join(', ')})`
      : ' (every voter supports it: it activates shortly)';
    return err;
  }

  /**
   * Activates schema version `version` (default: the newest every voter's code supports) at
   * one log index on every replica; resolves with the active version. With the default
   * `activation: 'auto'` the leader does this by itself. VERSION_NOT_ACTIVE names the voters
   * whose code does not support it yet.
   */
  activate(version?: number, options: WriteOptions = {}): Promise<number> {
    this.#outsideHandler('activate');
    return this.#link.activate(version, options);
  }

  /**
   * Schema versions: the active one (and where each was activated), this code's range, what
   * each node recorded for its code, and the oldest version a replay from this node's
   * snapshot needs (a version older than every node's `replayNeeds` can leave the code).
   */
  schemaStatus(): SchemaStatus {
    const s = this.#machine.schemaState();
    const voters = new Set(votersOf(this.node.status().members));
    const newest = s.code[1];
    return {
      active: s.active,
      activations: s.activations.map(([index, version]) => ({ index, version })),
      code: { oldest: s.code[0], newest },
      nodes: [...s.support].map(([id, [oldest, newestOf]]) => ({
        id,
        voter: voters.has(id),
        oldest,
        newest: newestOf,
        canRunActive: oldest <= s.active && s.active <= newestOf,
      })),
      holdingBack: newest > s.active ? holdingBack([...voters], s.support, newest) : [],
      failed: [...this.#link.failedActivations].map(([version, message]) => ({ version, message })),
      replayNeeds: this.#machine.replayVersion(),
    };
  }

  // Called from inside a command handler, these start work that outlives the command, and a
  // promise the handler drops would reject unhandled on every replay (ending the process):
  // refused at once instead, so the handler throws and its changes are undone, the same on
  // every replica.
  #outsideHandler(method: string): void {
    if (this.#machine.inHandler) {
      throw new PrevailError(
        ErrorCodes.REENTRANT,
        `store.${method}() called inside a command handler: handlers are synchronous ` +
          'and change state only through their state argument (propose follow-up work from outside the handler)',
      );
    }
  }

  /**
   * Resolves with this node's applied index once reading `view` (synchronously, right after
   * the await) is consistent at the requested level; see ReadOptions.
   */
  read(options?: ReadOptions): Promise<number> {
    this.#outsideHandler('read');
    return this.#link.read(options);
  }

  /** Leader and readiness, for load-balancer health checks. */
  health(): Health {
    return this.#link.health();
  }

  /** Counters, latency histograms and the node's position, for dashboards (see also registerPrometheus). */
  metrics(): MetricsSnapshot {
    const m = this[kMetrics];
    const s = this.node.status();
    return {
      proposals: m.proposals,
      proposalsFailed: m.proposalsFailed,
      forwarded: m.forwarded,
      applied: m.applied,
      reads: m.reads,
      proposeMs: m.proposeMs.snapshot(),
      applyMs: m.applyMs.snapshot(),
      snapshotMs: m.snapshotMs.snapshot(),
      role: s.role,
      term: s.term,
      commitIndex: s.commitIndex,
      appliedIndex: s.appliedIndex,
      lag: this.#link.health().lag,
    };
  }

  // This replica can't apply an entry (the node has closed itself): stop the rest (leader
  // jobs, the peer channel, waits for an index) and report it. Node's convention for an
  // object that can no longer work: 'error', thrown (the process ends) if nobody listens.
  #stop(err: PrevailError): void {
    if (this.#stopping) return;
    this.#stopping = true;
    debug('node %d: the store stopped: %s', this.node.id, err.message);
    void (async () => {
      await this.#jobs.close().catch(() => undefined);
      await this.#link.close(err).catch(() => undefined);
    })().finally(() => process.nextTick(() => this.emit('error', err)));
  }

  // A replica's effects differ from a majority's at the same index: some command is not
  // deterministic (Date.now(), Math.random(), I/O, iteration order of something unordered…).
  // Reported on the leader for each diverged replica, and on the replica itself.
  #diverged(info: DivergenceInfo): void {
    const who =
      info.node === this.node.id ? `this replica (node ${info.node})` : `replica ${info.node}`;
    const err = new PrevailError(
      ErrorCodes.DIVERGED,
      `${who} diverged from the majority (nodes ${info.majority.join(', ')}) by index ${info.index}: ` +
        `effects hash ${info.actual}, majority ${info.expected} (judged by leader ${info.leader}). ` +
        'A command handler is not deterministic; the replica is not ready until resynced.',
      { index: info.index },
    );
    this.#reportDivergence(err, info);
  }

  // Replicas disagree and no majority agrees on one hash: nobody can tell which is right.
  #split(info: SplitInfo): void {
    const nodes = info.hashes.flatMap((h) => h.nodes);
    const err = new PrevailError(
      ErrorCodes.DIVERGED,
      `replicas ${nodes.join(', ')} disagree at index ${info.index} and no majority of them agrees: ` +
        info.hashes.map((h) => `${h.hash} on ${h.nodes.join(', ')}`).join('; '),
      { index: info.index },
    );
    this.#reportDivergence(err, { ...info, node: null, nodes, majority: [] });
  }

  #reportDivergence(err: PrevailError, info: object): void {
    process.emitWarning(err.message, { code: ErrorCodes.DIVERGED });
    if (channels.divergence.hasSubscribers)
      channels.divergence.publish({ id: this.node.id, ...info });
    // `leader` would read as PrevailError's leader hint: the judge is `judgedBy`.
    const { leader, ...fields } = info as { leader: number };
    this.emit('divergence', Object.assign(err, fields, { judgedBy: leader }));
  }

  // The engine's snapshot interval follows the state's size; the capture decides it (Capture.snapshotThreshold).
  #adaptSnapshotThreshold(): void {
    this.node.setSnapshotThreshold(this.#machine.capture.snapshotThreshold());
  }

  /**
   * Rotates this member's TLS material without a restart (RaftNode.reloadTls): the given
   * `tls`, or the files of the `tls` option read again. New connections use it; those made
   * before are closed 10 s later and made again with it.
   */
  reloadTls(tls?: TlsOptions): void {
    this.node.reloadTls(tls);
  }

  /** The address of this node's peer channel (forwarding, read indices). */
  get channelAddress(): string {
    return this.#link.channelAddress;
  }

  /**
   * Runs `job` on the leader only: it starts when this node becomes leader, and its `signal`
   * aborts the moment it stops leading (step-down, transfer, close). A job that throws is
   * reported (`'jobError'` event, NODE_DEBUG=prevail) and restarted with backoff; it never
   * brings the node down. A job that returns runs again at the next leadership.
   */
  onLeader(job: LeaderJob<Store<C, H>>, options?: LeaderJobOptions): LeaderJobHandle {
    return this.#jobs.add(job, options);
  }

  /**
   * Schedules a command: the leader proposes `name(args)` when `at` (ms since the epoch, or a
   * Date) comes, with its clock as the command's timestamp; `every` (ms) repeats it. Stored in
   * the replicated state, so it fires once across failovers and restarts — late rather than
   * twice. Resolves with the schedule's id (`id` to choose it; scheduling an existing id replaces it).
   */
  schedule<K extends keyof H & string>(
    name: K,
    args: ArgsOf<H[K]>,
    at: number | Date,
    options: { every?: number; id?: string } & WriteOptions = {},
  ): Promise<string> {
    this.#outsideHandler('schedule');
    return this.#schedule(name, args, at, options);
  }

  async #schedule(
    name: string,
    args: unknown,
    at: number | Date,
    options: { every?: number; id?: string } & WriteOptions,
  ): Promise<string> {
    // The command and its arguments checked here, so the error names `args…`, not the schedule entry that carries them.
    this.#resolveCommand(name);
    checkPlain(args, 'args');
    const data = scheduleData(name, args, at, options);
    const r = await this.#link.propose({ type: 'system', kind: 'schedule', data }, options);
    return r.result as string;
  }

  /** Removes a schedule; resolves with whether it existed. */
  unschedule(id: string, options: WriteOptions = {}): Promise<boolean> {
    this.#outsideHandler('unschedule');
    return this.#link
      .propose({ type: 'system', kind: 'unschedule', data: { id } }, options)
      .then((r) => r.result as boolean);
  }

  /** The schedules in the replicated state, soonest first. */
  schedules(): Schedule[] {
    return this.#machine.schedules();
  }

  // The leader's scheduler: "schedule `id` falls due at `due`" (the state machine fires it at most once).
  async #fire(
    id: string,
    due: number,
    signal: AbortSignal,
  ): Promise<{ fired: boolean; name?: string; error?: unknown }> {
    const r = await this.#link.propose(
      { type: 'system', kind: 'fire', data: { id, due } },
      { signal, timeoutMs: 5000 },
    );
    const fired = r.result as { fired: boolean; name?: string; error?: unknown };
    if (fired.error !== undefined)
      this.emit('scheduleError', { id, due, name: fired.name, error: fired.error });
    return fired;
  }

  /** Starts a background capture of the whole state now (snapshots otherwise follow log growth). */
  captureNow(): Promise<number> {
    this.#outsideHandler('captureNow');
    return this.#machine.capture.start();
  }

  /** Captures the state and has the engine write a snapshot of it now (leader only). */
  snapshot(): Promise<{ index: number; term: number }> {
    this.#outsideHandler('snapshot');
    return this.#machine.capture.start().then(() => this.node.snapshot());
  }

  /**
   * Writes a backup of this node's state (leader or follower) to `destination`, a directory or
   * a BackupTarget, without stopping writes: a background capture, then the file written and
   * read back to check its SHA-256. Resolves with its name, index, term, size and checksum.
   * `{ capture: false }` skips the capture; by default it first catches up with the leader's
   * commit index, so it holds every write acknowledged before the call (see BackupOptions).
   */
  async backup(destination: BackupDestination, options?: BackupOptions): Promise<BackupResult> {
    this.#outsideHandler('backup');
    const consistency = options?.consistency ?? 'linearizable';
    if (consistency !== 'linearizable' && consistency !== 'stale')
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        "consistency must be 'linearizable' or 'stale'",
      );
    if (consistency === 'linearizable') await this.#link.read({ consistency });
    return takeBackup(this.#backupSource(), destination, options);
  }

  /**
   * Takes a backup every `everyMs` on the leader only (a leader job) into `target`, skipped
   * when the applied index has not moved past the newest backup there, then deletes what
   * `retention` lets go. Each round is a `'backup'` event (and on the `prevail:backup`
   * channel); a failed round is reported and retried at the next interval. `stop()` ends it.
   */
  autoBackup(options: AutoBackupOptions): LeaderJobHandle {
    return autoBackup(this, options);
  }

  // The state's bytes and the header that describes them, taken together in one synchronous step.
  #backupSource(): BackupSource {
    const machine = this.#machine;
    return {
      capture: () => machine.capture.start(),
      now: () => {
        const s = this.node.status();
        const schema = machine.schemaState();
        const index = machine.appliedIndex();
        const term =
          machine.capture.lastTerm || (s.snapshot.index === index ? s.snapshot.term : s.term);
        return {
          frames: machine.capture.snapshotBytes(),
          header: {
            nodeId: this.node.id,
            index,
            term,
            createdAt: new Date().toISOString(),
            configuration: s.members.map(({ id, address, role }) => ({ id, address, role })),
            schema: { active: schema.active, oldest: schema.code[0], newest: schema.code[1] },
            effects: machine.effects(),
          },
        };
      },
    };
  }

  status(): StoreStatus {
    return {
      ...this.node.status(),
      capture: this.#machine.capture.status(),
      effects: this.#machine.effects(),
      schema: this.schemaStatus(),
      divergence: this.#divergence(),
    };
  }

  #divergence(): DivergenceStatus {
    const v = this.#link.verdict();
    return {
      self: this.#link.health().diverged,
      leader: v?.leader ?? null,
      diverged: v?.diverged ?? [],
      split: v?.split ?? null,
    };
  }

  close(options?: CloseOptions): Promise<void> {
    this.#outsideHandler('close');
    return this.#close(options);
  }

  async #close(options?: CloseOptions): Promise<void> {
    await this.#jobs.close();
    // The node drains first: forwarded proposals in flight on a leader get their answers.
    try {
      await this.node.close(options);
    } finally {
      await this.#link.close();
    }
  }

  /** A hash of the whole state (objects and ids), equal on replicas that applied the same entries. */
  stateHash(): string {
    return this.#machine.stateHash();
  }
}

// The cluster link beside a started node. If it can't start, or an entry failed to apply
// before it did (caught up from the leader meanwhile), the node is closed and open() fails
// as it would for an entry replayed from the local log.
async function startLink(
  node: RaftNode<unknown>,
  machine: StateMachine<any, any>,
  options: LinkOptions,
): Promise<ClusterLink> {
  let link: ClusterLink;
  try {
    link = await ClusterLink.start({ node, replica: machine, metrics: machine.metrics }, options);
  } catch (err) {
    await node.close();
    throw node.failure ?? err;
  }
  if (node.failure) {
    await link.close(node.failure);
    await node.close().catch(() => undefined);
    throw node.failure;
  }
  return link;
}

/** Opens a store; see Store.open. */
export function open<C extends Collections, H extends Commands<C>>(
  options: StoreOptions<C, H>,
): Promise<Store<C, H>> {
  return Store.open(options);
}

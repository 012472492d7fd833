// Background work in a replicated app: jobs that run on the leader only, and the leader's
// scheduler that proposes scheduled commands when they fall due. A job changes state only
// through commands, so the next leader picks up from replicated state, not from memory.
import { EventEmitter } from 'node:events';

import { debug } from './core/diagnostics.js';
import { ErrorCodes, PrevailError } from './core/errors.js';
import type { RaftNode } from './engine/raft-node.js';

export interface LeaderJobContext<S> {
  /** Aborts the moment this node stops leading (step-down, transfer, close) or the job is stopped. */
  signal: AbortSignal;
  store: S;
}

export type LeaderJob<S> = (ctx: LeaderJobContext<S>) => unknown;

export interface LeaderJobOptions {
  /** For events and logs. Default: the function's name, else 'job'. */
  name?: string;
  /** First delay before restarting a job that threw. Default 100 ms; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  /** Default 30000 ms. */
  maxBackoffMs?: number;
}

export interface LeaderJobHandle {
  readonly name: string;
  /** Stops the job for good (aborts it if running); resolves once it has returned. */
  stop(): Promise<void>;
}

/** A replicated schedule entry. */
export interface Schedule {
  id: string;
  /** The command to propose when due. */
  name: string;
  args: unknown;
  /** Next due time (ms since the epoch, leader's clock). */
  at: number;
  /** Recurring: the period in ms; absent for one-shot schedules. */
  every?: number;
}

interface Registered<S> {
  name: string;
  job: LeaderJob<S>;
  minBackoffMs: number;
  maxBackoffMs: number;
  stopped: boolean;
  controller: AbortController | null;
  running: Promise<void> | null;
}

/** What the runner needs from the store. */
export interface JobHost<S> {
  readonly node: RaftNode<unknown>;
  readonly store: S;
  readonly events: EventEmitter; // the store: emits 'schedules' when they change, 'jobError' is emitted on it
  schedules(): Iterable<Schedule>;
  /** Proposes "fire schedule `id` due at `due`" (the state machine dedupes). */
  fire(id: string, due: number, signal: AbortSignal): Promise<unknown>;
}

/** Waits `ms`, or less if `signal` aborts or `wakeOn` emits `event`. */
const abortable = (
  ms: number,
  signal: AbortSignal,
  wakeOn?: { emitter: EventEmitter; event: string },
) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      wakeOn?.emitter.off(wakeOn.event, done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
    wakeOn?.emitter.on(wakeOn.event, done);
  });

export class LeaderJobs<S> {
  readonly #host: JobHost<S>;
  readonly #jobs = new Set<Registered<S>>();
  #leading = false;
  #closed = false;

  constructor(host: JobHost<S>) {
    this.#host = host;
    const node = host.node;
    const update = () => this.#setLeading(node.role === 'leader' && !this.#closed);
    node.on('role', update);
    // A transfer starts before the role changes: stop at once, the next leader takes over.
    node.on('transferring', () => this.#setLeading(false));
    this.add(this.#scheduler.bind(this), { name: 'prevail:scheduler' });
    update();
  }

  add(job: LeaderJob<S>, options: LeaderJobOptions = {}): LeaderJobHandle {
    if (typeof job !== 'function')
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'onLeader(job): job must be a function');
    if (this.#closed) throw new PrevailError(ErrorCodes.CLOSED, 'the store is closed');
    const r: Registered<S> = {
      name: options.name ?? (job.name || 'job'),
      job,
      minBackoffMs: options.minBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      stopped: false,
      controller: null,
      running: null,
    };
    this.#jobs.add(r);
    if (this.#leading) this.#start(r);
    return {
      name: r.name,
      stop: async () => {
        r.stopped = true;
        this.#jobs.delete(r);
        r.controller?.abort(new PrevailError(ErrorCodes.ABORTED, `job ${r.name} stopped`));
        await r.running;
      },
    };
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    debug('node %d: leader jobs %s', this.#host.node.id, leading ? 'start' : 'stop');
    for (const r of this.#jobs) {
      if (leading) this.#start(r);
      else
        r.controller?.abort(new PrevailError(ErrorCodes.NOT_LEADER, 'this node stopped leading'));
    }
  }

  #start(r: Registered<S>): void {
    if (r.controller && !r.controller.signal.aborted) return;
    const controller = new AbortController();
    r.controller = controller;
    const previous = r.running ?? Promise.resolve();
    // A job aborted a moment ago may still be unwinding: the new run waits for it (never two at once).
    r.running = previous.then(() => this.#run(r, controller.signal));
  }

  async #run(r: Registered<S>, signal: AbortSignal): Promise<void> {
    let backoff = r.minBackoffMs;
    for (let attempt = 1; !signal.aborted && !r.stopped; attempt++) {
      try {
        await r.job({ signal, store: this.#host.store });
        return; // finished: runs again only on the next leadership
      } catch (error) {
        if (signal.aborted) return;
        debug(
          'node %d: job %s failed (attempt %d), retrying in %d ms: %s',
          this.#host.node.id,
          r.name,
          attempt,
          backoff,
          (error as Error)?.message ?? error,
        );
        this.#host.events.emit('jobError', { name: r.name, error, attempt, retryInMs: backoff });
        await abortable(backoff, signal);
        backoff = Math.min(backoff * 2, r.maxBackoffMs);
      }
    }
  }

  // The built-in leader job: proposes each schedule when it falls due. Late rather than
  // twice: the state machine applies a fire only if the schedule is still due at that time.
  async #scheduler({ signal }: LeaderJobContext<S>): Promise<void> {
    while (!signal.aborted) {
      let next = Infinity;
      const now = Date.now();
      for (const s of this.#host.schedules()) {
        if (s.at <= now) {
          await this.#host.fire(s.id, s.at, signal);
          next = 0; // look again: state changed
          break;
        }
        next = Math.min(next, s.at);
      }
      if (next === 0) continue;
      // Sleep until the next due time, or until the schedules change.
      await abortable(Math.min(Math.max(0, next - Date.now()), 60_000), signal, {
        emitter: this.#host.events,
        event: 'schedules',
      });
    }
  }

  /** Aborts every job and waits (bounded) for them to return. */
  async close(timeoutMs = 5000): Promise<void> {
    this.#closed = true;
    this.#setLeading(false);
    const running = [...this.#jobs].map((r) => r.running).filter(Boolean);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(running),
      new Promise((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

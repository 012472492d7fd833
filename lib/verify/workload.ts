// The register workload for the verification harness: concurrent logical clients, each with one
// operation in flight, reading (linearizable), writing and compare-and-setting a handful of keys
// over the HTTP API, every operation recorded as an Op (lib/verify/history.ts).
//
// Outcomes:
//   200 → ok (a read's 404 PREVAIL_NOT_FOUND is an ok read of "absent")
//   409 PREVAIL_CAS_CONFLICT → fail with that error (an observation: the value was not `expect`)
//   an error answer with mayHaveApplied: true, a 504 or 500 for a write/cas → info
//   no answer (timeout, connection cut after the request may have left) → info, completeMs null
//   connection refused / unroutable before anything was sent, or an error answer that did not
//   apply (503 without mayHaveApplied, 400, ...) → fail
// After an info op the client continues as a new process id (the old op may still be in flight,
// and a process has at most one op in flight). Clients stick to a node and move to the next one
// after a connection error, a timeout or a 503.

import { ErrorCodes } from '../core/errors.js';
import { CAS_CONFLICT, type Op, type OpType } from './history.js';
import {
  clientAgent,
  request,
  RequestError,
  sleep,
  type Answer,
  type VerifyCluster,
} from './cluster.js';
import type { Rng } from './rng.js';

export interface WorkloadOptions {
  cluster: VerifyCluster;
  clients: number;
  keys: number;
  /** Target rate over all clients (ops/s); each client waits ~clients/rate s between ops. */
  rate: number;
  /** Per-client request timeout range (ms). */
  timeoutMs: [number, number];
  rng: Rng;
  clock: () => number;
  /** The reads' consistency (default linearizable; lease and stale are for their own runs). */
  reads?: 'linearizable' | 'lease' | 'stale';
}

export const keyName = (k: number) => `k${k}`;

export class Workload {
  readonly ops: Op[] = [];
  #nextId = 1;
  #nextProcess: number;
  #stopAt = Infinity;
  /** The last value seen per key (by any client): what cas expects, most of the time. */
  #seen = new Map<string, string | null>();

  constructor(readonly options: WorkloadOptions) {
    this.#nextProcess = options.clients;
  }

  newProcess(): number {
    return this.#nextProcess++;
  }

  newId(): number {
    return this.#nextId++;
  }

  /** Runs every client until `endMs` (run clock); resolves when the last op in flight is done. */
  async run(endMs: number): Promise<void> {
    this.#stopAt = endMs;
    const { clients, rng } = this.options;
    await Promise.all(Array.from({ length: clients }, (_, c) => this.#client(c, rng.fork(c))));
  }

  stop(): void {
    this.#stopAt = -Infinity;
  }

  async #client(c: number, rng: Rng): Promise<void> {
    const { cluster, keys, clock } = this.options;
    const ids = cluster.ids;
    let nodeIndex = c % ids.length;
    let process = c;
    let seq = 0;
    const timeoutMs = rng.int(this.options.timeoutMs[0], this.options.timeoutMs[1]);
    const meanGapMs = (1000 * this.options.clients) / this.options.rate;
    const agent = clientAgent();
    try {
      while (clock() < this.#stopAt) {
        // Exponential gaps, capped, so clients don't march in step.
        await sleep(Math.min(meanGapMs * 4, -Math.log(1 - rng.next()) * meanGapMs));
        if (clock() >= this.#stopAt) break;
        const node = ids[nodeIndex]!;
        const r = rng.next();
        const type: OpType = r < 0.5 ? 'read' : r < 0.8 ? 'write' : 'cas';
        const key = keyName(rng.int(0, keys - 1));
        const op: Op = {
          id: this.newId(),
          process,
          type,
          key,
          invokeMs: 0,
          completeMs: null,
          outcome: 'info',
          node,
        };
        let method = 'GET';
        let path = `/kv/${key}?consistency=${this.options.reads ?? 'linearizable'}`;
        let body: string | undefined;
        if (type === 'write') {
          op.value = `${c}.${++seq}`;
          method = 'PUT';
          path = `/kv/${key}`;
          body = op.value;
        } else if (type === 'cas') {
          op.value = `${c}.${++seq}`;
          const seen = this.#seen.get(key);
          op.expect = seen === undefined || rng.next() < 0.1 ? null : seen;
          method = 'POST';
          path = `/kv/${key}/cas`;
          body = JSON.stringify({ expect: op.expect, value: op.value });
        }
        this.ops.push(op);
        op.invokeMs = clock();
        let move = false;
        try {
          const answer = await request(
            `${cluster.url(node)}${path}`,
            method,
            body,
            timeoutMs,
            agent,
          );
          op.completeMs = clock();
          move = this.#classify(op, answer);
        } catch (err) {
          const e = err as RequestError;
          move = true;
          op.error = e instanceof RequestError ? e.code : String(err);
          if (e instanceof RequestError && !e.sent) {
            op.completeMs = clock();
            op.outcome = 'fail';
          } else {
            op.completeMs = null;
            op.outcome = 'info';
          }
        }
        if (op.outcome === 'info') process = this.newProcess();
        if (move) nodeIndex = (nodeIndex + 1) % ids.length;
      }
    } finally {
      agent.destroy();
    }
  }

  /** Fills in op's outcome from an HTTP answer; returns whether the client should try another node. */
  #classify(op: Op, answer: Answer): boolean {
    const { status, body } = answer;
    const error = typeof body === 'object' && body !== null ? body.error : undefined;
    if (typeof body?.index === 'number') op.index = body.index;
    if (status === 200) {
      op.outcome = 'ok';
      if (op.type === 'read') op.value = typeof body.value === 'string' ? body.value : null;
      this.#seen.set(op.key, op.value ?? null);
      return false;
    }
    op.error = error?.code ?? `HTTP ${status}`;
    if (op.type === 'read' && status === 404 && error?.code === ErrorCodes.NOT_FOUND) {
      op.outcome = 'ok';
      op.value = null;
      delete op.error;
      this.#seen.set(op.key, null);
      return false;
    }
    if (op.type === 'cas' && status === 409 && error?.code === CAS_CONFLICT) {
      op.outcome = 'fail';
      if ('current' in body) this.#seen.set(op.key, body.current ?? null);
      return false;
    }
    if (op.type === 'read') {
      // A read changes nothing: whatever went wrong, it carries no observation.
      op.outcome = 'fail';
    } else if (error?.mayHaveApplied === true) {
      op.outcome = 'info';
    } else if (error?.mayHaveApplied === false) {
      op.outcome = 'fail';
    } else if (status === 503 || (status >= 400 && status < 500)) {
      op.outcome = 'fail';
    } else {
      // 504 (a bounded wait ran out), 500, anything unexpected: it may have applied.
      op.outcome = 'info';
    }
    return status === 503 || status === 504;
  }
}

/**
 * Unchecked filler writes as fast as `writers` loops can send them, through random running nodes
 * (a follower forwards them), to keys the checker never reads (`load-W-0` … `load-W-15`). The
 * restart nemesis runs it while it restarts a follower: the log grows by thousands of entries a
 * second, so with small snapshot intervals the follower comes back further behind than the
 * leader's trailing entries and catches up from a snapshot. start()/stop() nest.
 */
export class LoadGenerator {
  acked = 0;
  failed = 0;
  #active = 0;
  #done: Promise<void> = Promise.resolve();

  constructor(
    readonly cluster: VerifyCluster,
    readonly writers: number,
    readonly rng: Rng,
  ) {}

  start(): void {
    if (this.#active++ > 0) return;
    this.#done = Promise.all(
      Array.from({ length: this.writers }, (_, w) => this.#writer(w, this.rng.fork(100 + w))),
    ).then(() => {});
  }

  /** Resolves when the writers have stopped (their last requests answered or timed out). */
  async stop(): Promise<void> {
    if (this.#active === 0) return;
    if (--this.#active > 0) return;
    await this.#done;
  }

  async #writer(w: number, rng: Rng): Promise<void> {
    const { cluster } = this;
    const agent = clientAgent();
    let n = 0;
    try {
      while (this.#active > 0) {
        const ids = cluster.ids.filter(
          (id) => cluster.alive(id) && cluster.state.get(id) === 'running',
        );
        if (ids.length === 0) {
          await sleep(50);
          continue;
        }
        const id = rng.pick(ids);
        n++;
        try {
          const a = await request(
            `${cluster.url(id)}/kv/load-${w}-${n % 16}`,
            'PUT',
            String(n),
            2000,
            agent,
          );
          if (a.status === 200) this.acked++;
          else this.failed++;
          if (a.status !== 200) await sleep(20);
        } catch {
          this.failed++;
          await sleep(20);
        }
      }
    } finally {
      agent.destroy();
    }
  }
}

// Observability: in-process metrics (the diagnostics channels are core/diagnostics.ts's), and a bridge to prom-client
// (an optional peer dependency: the caller passes the module in, so it is never bundled).
import { channels } from './core/diagnostics.js';

export { channels };

/** Upper bounds (ms) of the latency histograms' buckets. */
export const BUCKETS_MS = [
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
] as const;

export interface HistogramSnapshot {
  /** Cumulative counts per bucket upper bound (ms), like Prometheus' `le`. */
  buckets: { le: number; count: number }[];
  count: number;
  sumMs: number;
}

export class Histogram {
  readonly #counts = new Float64Array(BUCKETS_MS.length + 1);
  #sum = 0;
  #count = 0;
  #observers: ((ms: number) => void)[] = [];

  observe(ms: number): void {
    let i = 0;
    while (i < BUCKETS_MS.length && ms > BUCKETS_MS[i]!) i++;
    this.#counts[i]!++;
    this.#sum += ms;
    this.#count++;
    for (const o of this.#observers) o(ms);
  }

  /** Calls `fn` on every later observation (the prom-client bridge). */
  onObserve(fn: (ms: number) => void): void {
    this.#observers.push(fn);
  }

  snapshot(): HistogramSnapshot {
    let running = 0;
    const buckets = BUCKETS_MS.map((le, i) => ({ le, count: (running += this.#counts[i]!) }));
    return { buckets, count: this.#count, sumMs: this.#sum };
  }

  /** The value below which `q` of the observations fall, to bucket resolution. */
  quantile(q: number): number {
    const target = q * this.#count;
    let running = 0;
    for (let i = 0; i < BUCKETS_MS.length; i++) {
      running += this.#counts[i]!;
      if (running >= target) return BUCKETS_MS[i]!;
    }
    return Infinity;
  }
}

/** The observations `later` holds beyond `earlier` (two snapshots of one histogram, in order). */
export function histogramDelta(
  later: HistogramSnapshot,
  earlier: HistogramSnapshot,
): HistogramSnapshot {
  return {
    buckets: later.buckets.map((b, i) => ({
      le: b.le,
      count: b.count - (earlier.buckets[i]?.count ?? 0),
    })),
    count: later.count - earlier.count,
    sumMs: later.sumMs - earlier.sumMs,
  };
}

/**
 * The bucket bound below which `q` of a snapshot's observations fall (Infinity beyond the last
 * bound); null when it holds none.
 */
export function snapshotQuantile(h: HistogramSnapshot, q: number): number | null {
  if (h.count <= 0) return null;
  const target = q * h.count;
  for (const b of h.buckets) if (b.count >= target) return b.le;
  return Infinity;
}

/** Where a store keeps its StoreMetrics (for registerPrometheus; not part of the public API). */
export const kMetrics: unique symbol = Symbol('prevail.metrics');

/** A store's counters and latency histograms (all since the store opened). */
export class StoreMetrics {
  proposals = 0;
  proposalsFailed = 0;
  forwarded = 0;
  applied = 0;
  reads = 0;
  readonly proposeMs = new Histogram();
  readonly applyMs = new Histogram();
  readonly snapshotMs = new Histogram();
}

export interface MetricsSnapshot {
  proposals: number;
  proposalsFailed: number;
  /** Proposals this node forwarded to the leader. */
  forwarded: number;
  /** Entries applied by this node's state machine. */
  applied: number;
  /** Reads that waited on `read()` (every consistency level). */
  reads: number;
  proposeMs: HistogramSnapshot;
  applyMs: HistogramSnapshot;
  snapshotMs: HistogramSnapshot;
  role: string;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  /** The leader's commit index minus this node's applied index, when known. */
  lag: number | null;
}

/** The parts of prom-client the bridge uses (so prom-client's types aren't needed to compile). */
export interface PromClientLike {
  Counter: new (config: {
    name: string;
    help: string;
    labelNames?: string[];
    registers?: unknown[];
    collect?: () => void;
  }) => { inc(labels: Record<string, string | number>, value?: number): void };
  Gauge: new (config: {
    name: string;
    help: string;
    labelNames?: string[];
    registers?: unknown[];
    collect?: () => void;
  }) => { set(labelsOrValue: Record<string, string | number> | number, value?: number): void };
  Histogram: new (config: {
    name: string;
    help: string;
    buckets: number[];
    labelNames?: string[];
    registers?: unknown[];
  }) => { observe(labelsOrValue: Record<string, string | number> | number, value?: number): void };
  register: unknown;
}

/** What registerPrometheus needs from a store. */
export interface MetricsSource {
  metrics(): MetricsSnapshot;
  readonly [kMetrics]: StoreMetrics;
  readonly node: { readonly id: number };
}

/**
 * Exposes a store's metrics through prom-client:
 * `registerPrometheus(store, await import('prom-client'), { registry })`.
 * Gauges are read at scrape time; histograms (seconds) are fed live.
 */
export function registerPrometheus(
  store: MetricsSource,
  client: PromClientLike,
  options: { registry?: unknown; prefix?: string } = {},
): void {
  const prefix = options.prefix ?? 'prevail_';
  const registers = [options.registry ?? client.register];
  const labels = { node: String(store.node.id) };
  const gauge = (name: string, help: string, read: (m: MetricsSnapshot) => number | null) => {
    const g: { set(l: Record<string, string>, v: number): void } = new client.Gauge({
      name: prefix + name,
      help,
      labelNames: ['node'],
      registers,
      collect() {
        const v = read(store.metrics());
        if (v !== null) g.set(labels, v);
      },
    }) as never;
  };
  const counter = (name: string, help: string, read: (m: MetricsSnapshot) => number) => {
    let last = 0;
    const c: { inc(l: Record<string, string>, v: number): void } = new client.Counter({
      name: prefix + name,
      help,
      labelNames: ['node'],
      registers,
      collect() {
        const v = read(store.metrics());
        if (v > last) c.inc(labels, v - last);
        last = v;
      },
    }) as never;
  };
  counter('proposals_total', 'Commands proposed through this node.', (m) => m.proposals);
  counter('proposals_failed_total', 'Proposals that were rejected.', (m) => m.proposalsFailed);
  counter('forwarded_total', 'Proposals this node forwarded to the leader.', (m) => m.forwarded);
  counter('applied_total', "Entries applied by this node's state machine.", (m) => m.applied);
  counter('reads_total', 'Reads through store.read().', (m) => m.reads);
  gauge('term', 'Current raft term.', (m) => m.term);
  gauge('is_leader', '1 on the leader, else 0.', (m) => (m.role === 'leader' ? 1 : 0));
  gauge('commit_index', 'Commit index known to this node.', (m) => m.commitIndex);
  gauge('applied_index', 'Last index applied on this node.', (m) => m.appliedIndex);
  gauge('lag_entries', "Leader commit index minus this node's applied index.", (m) => m.lag);
  const buckets = BUCKETS_MS.map((ms) => ms / 1000);
  const histogram = (name: string, help: string, h: Histogram) => {
    const ph = new client.Histogram({
      name: prefix + name,
      help,
      buckets,
      labelNames: ['node'],
      registers,
    });
    h.onObserve((ms) => ph.observe(labels, ms / 1000));
  };
  const internal = store[kMetrics];
  histogram(
    'propose_duration_seconds',
    'From propose() to the result on this node.',
    internal.proposeMs,
  );
  histogram('apply_duration_seconds', 'Time to apply one entry.', internal.applyMs);
  histogram(
    'snapshot_duration_seconds',
    'Time to capture the state for a snapshot.',
    internal.snapshotMs,
  );
}

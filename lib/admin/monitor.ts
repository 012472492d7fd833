// What the admin page watches over time, sampled once a second whether or not a page is open:
// which members stopped answering the leader (down, and since when), and a short history of
// commits per second and apply latency for the page's live chart.
import type { RaftNodeStatus } from '../engine/types.js';
import {
  BUCKETS_MS,
  histogramDelta,
  snapshotQuantile,
  type HistogramSnapshot,
} from '../metrics.js';

// JSON has no Infinity: above the last bucket is reported as its bound.
const TOP_MS = BUCKETS_MS[BUCKETS_MS.length - 1]!;
const quantile = (h: HistogramSnapshot, q: number): number | null => {
  const v = snapshotQuantile(h, q);
  return v === null ? null : Math.min(v, TOP_MS);
};

/** One point of the live chart: the interval that ended at `time`. */
export interface ChartPoint {
  /** End of the interval (ms since the epoch, this node's clock). */
  time: number;
  /** Entries this node learned committed, per second. */
  commitsPerSec: number;
  /**
   * Apply latency of the entries applied in the interval (ms: the latency histogram's bucket
   * bounds, 10000 standing for anything above); null when none was applied.
   */
  applyP50Ms: number | null;
  applyP99Ms: number | null;
}

export interface ChartData {
  /** The sampling interval (ms). */
  intervalMs: number;
  /** How far back the points go at most (ms). */
  windowMs: number;
  /** Oldest first; the whole window in status.json, the newest few on each pushed event. */
  points: ChartPoint[];
}

/** Facts the status document takes from the monitor. */
export interface MonitorView {
  /** Member id → when it stopped answering (ms since the epoch); only the members that are down. */
  down: ReadonlyMap<number, number>;
  /** How long a member must stay silent to count as down (ms). */
  downAfterMs: number;
  chart: ChartData;
}

interface Track {
  match: number;
  // Whether it had entries to take at the last look (one that has everything is never down).
  behind: boolean;
  // The last time the member was seen answering: its match index moved, or it had everything.
  answeredAt: number;
}

/**
 * The leader's view of who stopped answering. The engine reports each member's match index
 * (the highest entry it acknowledged) on the leader only, and not when it last heard from it: a
 * member that has entries to take and acknowledges none of them for `downAfterMs` is down,
 * since the last time it did. An idle cluster sends heartbeats only: a member that dies then is
 * seen down once the next entry is not acknowledged.
 */
export class DownTracker {
  readonly #tracks = new Map<number, Track>();
  #term = -1;

  constructor(readonly downAfterMs: number) {}

  /** Takes one look at the node's status (any order of calls with a non-decreasing `time`). */
  observe(s: RaftNodeStatus, time: number): void {
    // A follower knows nothing of the others; a new term is a new leadership whose match
    // indices start from nothing.
    if (s.role !== 'leader' || s.term !== this.#term) this.#tracks.clear();
    this.#term = s.role === 'leader' ? s.term : -1;
    if (s.role !== 'leader') return;
    const present = new Set<number>();
    for (const m of s.members) {
      // Spares get no entries: their silence says nothing.
      if (m.id === s.id || m.role === 'spare' || m.matchIndex === undefined) continue;
      present.add(m.id);
      const t = this.#tracks.get(m.id);
      const behind = m.matchIndex < s.lastIndex;
      if (!t || t.match !== m.matchIndex || !behind)
        this.#tracks.set(m.id, { match: m.matchIndex, behind, answeredAt: time });
      else t.behind = true;
    }
    for (const id of this.#tracks.keys()) if (!present.has(id)) this.#tracks.delete(id);
  }

  /** The members down at `time`, each with when it last answered. */
  down(time: number): Map<number, number> {
    const out = new Map<number, number>();
    for (const [id, t] of this.#tracks)
      if (t.behind && time - t.answeredAt >= this.downAfterMs) out.set(id, t.answeredAt);
    return out;
  }
}

/** The last `size` chart points, from samples of the commit index and the apply histogram. */
export class ChartHistory {
  readonly #points: ChartPoint[] = [];
  #last: { time: number; commitIndex: number; applyMs: HistogramSnapshot | null } | null = null;

  constructor(
    readonly intervalMs: number,
    private readonly size: number,
  ) {}

  sample(time: number, commitIndex: number, applyMs: HistogramSnapshot | null): void {
    const last = this.#last;
    this.#last = { time, commitIndex, applyMs };
    if (!last || time <= last.time) return;
    // A restore or a new log can move the commit index back: no negative rates.
    const commits = Math.max(0, commitIndex - last.commitIndex);
    const applied = applyMs && last.applyMs ? histogramDelta(applyMs, last.applyMs) : null;
    this.#points.push({
      time,
      commitsPerSec: Math.round((commits * 1000 * 10) / (time - last.time)) / 10,
      applyP50Ms: applied ? quantile(applied, 0.5) : null,
      applyP99Ms: applied ? quantile(applied, 0.99) : null,
    });
    if (this.#points.length > this.size) this.#points.splice(0, this.#points.length - this.size);
  }

  /** All points, or the newest `tail`. */
  data(tail?: number): ChartData {
    const points = tail === undefined ? this.#points.slice() : this.#points.slice(-tail);
    return { intervalMs: this.intervalMs, windowMs: this.intervalMs * this.size, points };
  }
}

/** What the monitor samples: the node's status and, for a Store, its apply latency histogram. */
export interface MonitorSource {
  status(): RaftNodeStatus;
  applyMs?: () => HistogramSnapshot;
}

/** Samples `source` every `intervalMs` (an unref'd timer) into a DownTracker and a ChartHistory. */
export class Monitor {
  readonly down: DownTracker;
  readonly chart: ChartHistory;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly source: MonitorSource,
    {
      downAfterMs,
      intervalMs,
      points,
    }: { downAfterMs: number; intervalMs: number; points: number },
  ) {
    this.down = new DownTracker(downAfterMs);
    this.chart = new ChartHistory(intervalMs, points);
  }

  start(): void {
    if (this.#timer) return;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.chart.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The facts for a status taken at `time` (`s` is one more look for the tracker). */
  view(s: RaftNodeStatus, time: number, tail?: number): MonitorView {
    this.down.observe(s, time);
    return {
      down: this.down.down(time),
      downAfterMs: this.down.downAfterMs,
      chart: this.chart.data(tail),
    };
  }

  #sample(): void {
    let s: RaftNodeStatus;
    let applyMs: HistogramSnapshot | null;
    try {
      s = this.source.status();
      applyMs = this.source.applyMs?.() ?? null;
    } catch {
      return; // a closed node: status.json reports it; nothing to sample
    }
    const time = Date.now();
    this.down.observe(s, time);
    this.chart.sample(time, s.commitIndex, applyMs);
  }
}

// The divergence detector's verdict, as pure functions (the link gathers the checkpoints and
// publishes the result). Every replica keeps (index, effects hash) checkpoints; at an index
// held by several, the hash held by a majority of the members reporting (this round, at any
// index: a lagging member that lacks the index still counts, so two of five never outvote
// three) is the reference, whoever leads. The effects hash is a running one: once a replica's history differs, every
// later checkpoint differs too, so agreeing again at a later index means its data was replaced
// (a resync from the leader's snapshot), never that it healed by itself.

/** node id → its recent (index, hash) checkpoints. */
export type CheckpointReports = ReadonlyMap<number, readonly (readonly [number, string])[]>;

/** A replica whose effects hash differs from the one a majority agrees on. */
export interface Diverged {
  node: number;
  /** The first checkpoint of its current disagreement. */
  index: number;
  /** The majority's hash there. */
  expected: string;
  /** This replica's. */
  actual: string;
  /** The nodes that agree on `expected` at `index`. */
  majority: number[];
}

/** Every member reporting holds `index`, their hashes differ, and no hash is held by a majority. */
export interface Split {
  index: number;
  hashes: { hash: string; nodes: number[] }[];
}

export interface Verdict {
  /** By node id. */
  diverged: Diverged[];
  /** node → the newest index at which it agreed with a majority (when its latest comparison agreed). */
  agreed: Map<number, number>;
  /** The newest index where the reporters disagree and no majority exists (null: none after any majority). */
  split: Split | null;
}

/** Groups the reporters holding `index` by hash. */
function groupsAt(reports: CheckpointReports, index: number): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const [node, checkpoints] of reports) {
    const hash = checkpoints.find(([i]) => i === index)?.[1];
    if (hash === undefined) continue;
    const g = groups.get(hash);
    if (g) g.push(node);
    else groups.set(hash, [node]);
  }
  return groups;
}

/** The indices held by at least two reporters, ascending. */
function sharedIndices(reports: CheckpointReports): number[] {
  const count = new Map<number, number>();
  for (const checkpoints of reports.values())
    for (const [i] of new Map(checkpoints)) count.set(i, (count.get(i) ?? 0) + 1);
  return [...count]
    .filter(([, n]) => n >= 2)
    .map(([i]) => i)
    .sort((a, b) => a - b);
}

/**
 * Judges one round of reports: each replica by its latest checkpoint that a majority verdict
 * covers (diverged from the first differing one since it last agreed), and the newest split.
 */
export function judge(reports: CheckpointReports): Verdict {
  const open = new Map<number, Diverged>(); // the current disagreement of each node
  const agreed = new Map<number, number>();
  let split: Split | null = null;
  for (const index of sharedIndices(reports)) {
    const groups = groupsAt(reports, index);
    const holding = [...groups.values()].reduce((n, g) => n + g.length, 0);
    const top = [...groups].find(([, nodes]) => nodes.length * 2 > reports.size);
    if (!top) {
      // Where some member lacks the index yet (lagging), it may still settle it: not a split.
      if (holding < reports.size) continue;
      split = {
        index,
        hashes: [...groups]
          .map(([hash, nodes]) => ({ hash, nodes: [...nodes].sort((a, b) => a - b) }))
          .sort((a, b) => a.nodes[0]! - b.nodes[0]!),
      };
      continue;
    }
    split = null;
    const [expected, majority] = top;
    for (const [hash, nodes] of groups) {
      for (const node of nodes) {
        if (hash === expected) {
          open.delete(node);
          agreed.set(node, index);
        } else if (!open.has(node)) {
          agreed.delete(node);
          const sorted = [...majority].sort((a, b) => a - b);
          open.set(node, { node, index, expected, actual: hash, majority: sorted });
        }
      }
    }
  }
  const diverged = [...open.values()].sort((a, b) => a.node - b.node);
  return { diverged, agreed, split };
}

/**
 * The leader's standing verdict after a round: a diverged replica stays diverged until it is no
 * longer a member (removed to be resynced) or agrees with a majority at a later index than the
 * one it diverged at (its data was replaced). Returns the entries new this round too.
 */
export function carryOver(
  standing: ReadonlyMap<number, Diverged>,
  round: Verdict,
  members: ReadonlySet<number>,
): { standing: Map<number, Diverged>; added: Diverged[] } {
  const next = new Map<number, Diverged>();
  for (const [node, d] of standing) {
    if (members.has(node) && !resynced(d, round.agreed.get(node))) next.set(node, d);
  }
  const added: Diverged[] = [];
  for (const d of round.diverged) {
    if (next.has(d.node) || !members.has(d.node)) continue;
    next.set(d.node, d);
    added.push(d);
  }
  return { standing: next, added };
}

/** True when agreeing at `agreedAt` shows that the replica diverged as `d` was resynced since. */
export function resynced(d: Diverged, agreedAt: number | undefined): boolean {
  return agreedAt !== undefined && agreedAt > d.index;
}

/** The verdict as the leader publishes it (peer request 'divergence'). */
export interface PublishedVerdict {
  leader: number;
  diverged: Diverged[];
  agreed: [number, number][];
  split: Split | null;
}

/**
 * What a node concludes about itself from a published verdict: named diverged → diverged (kept
 * as first learned); shown agreeing after the index it diverged at → resynced; otherwise as it was.
 */
export function selfVerdict(
  self: number,
  current: Diverged | null,
  published: PublishedVerdict,
): Diverged | null {
  const named = published.diverged.find((d) => d.node === self);
  if (named) return current ?? named;
  if (!current) return null;
  const agreedAt = published.agreed.find(([node]) => node === self)?.[1];
  return resynced(current, agreedAt) ? null : current;
}

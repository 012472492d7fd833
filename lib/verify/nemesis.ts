// Nemeses for the verification harness: faults injected on a seeded schedule while the clients
// run, each recorded as a FaultWindow. Every fault has its own undo, run when its hold time is
// over and again (idempotently) by healAll() at the end of a run.
//
//   kill        kill -9 a node (a random one, or the leader on purpose), restart it after 1–4 s
//   pause       SIGSTOP a node (random or the leader) for 3–12 election timeouts, then SIGCONT
//   partition   blackhole routes between namespaces (lib/verify/netns.ts): majority/minority,
//               an isolated leader, an isolated random node, or a bridge (one node sees both
//               halves, the halves can't see each other); healed after 2–7 s
//   membership  DELETE /admin/members/:id on the leader, kill the node, wipe its data dir,
//               restart it with --join, and after 2–5 s POST /admin/members to add it back
//   snapshot    POST /admin/snapshot on the leader, while other faults are active
//   restart     stop a follower (SIGTERM, so it closes, or kill -9) under a burst of filler
//               writes from --load writers, restart it after 0.3–2 s, and wait until it has
//               caught up. With the harness's small snapshot intervals (--snapshot-threshold,
//               --snapshot-trailing) it comes back behind the leader's trailing entries and
//               catches up from a snapshot, while it takes snapshots of its own (engine
//               patches p2/p3 were found this way; docs/engine-patches.md)
//
// Rounds: a quiet gap (0.5–3 s), then one fault, or with probability 0.4 two at once (different
// kinds, different nodes), held, then undone. Snapshots are forced inside rounds.
import { ErrorCodes } from '../core/errors.js';
import type { FaultWindow } from './history.js';
import { request, sleep, VerifyCluster } from './cluster.js';
import { partitionPairs } from './netns.js';
import type { Rng } from './rng.js';
import type { LoadGenerator } from './workload.js';

export const NEMESES = ['kill', 'pause', 'partition', 'membership', 'snapshot', 'restart'] as const;
export type NemesisName = (typeof NEMESES)[number];

export interface NemesisContext {
  cluster: VerifyCluster;
  rng: Rng;
  enabled: Set<NemesisName>;
  electionTimeoutMs: number;
  /** ms since the run started */
  clock: () => number;
  log: (line: string) => void;
  /** The filler writes the restart nemesis runs while it restarts a follower (none: the workload alone). */
  load?: LoadGenerator | null;
}

interface Active {
  window: FaultWindow;
  nodes: number[];
  undo: () => Promise<void>;
  /** Settles when the fault has been undone (after its own hold time, or by healAll). */
  done: Promise<void>;
}

export class Nemesis {
  readonly faults: FaultWindow[] = [];
  /** What did not go as planned (a restart that failed, a membership change refused...). */
  readonly notes: string[] = [];
  readonly counts = new Map<string, number>();
  #active: Active[] = [];
  #stopped = false;

  constructor(readonly ctx: NemesisContext) {}

  #count(kind: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  #lastNote = { line: '', count: 0, at: '' };

  /** A note for the report; the same line again right after is counted, not repeated. */
  #note(line: string): void {
    const at = `${(this.ctx.clock() / 1000).toFixed(1)} s`;
    const last = this.#lastNote;
    if (line === last.line && this.notes.length > 0) {
      last.count++;
      this.notes[this.notes.length - 1] = `${last.at}–${at}: ${line} (×${last.count})`;
      return;
    }
    this.#lastNote = { line, count: 1, at };
    this.notes.push(`${at}: ${line}`);
    this.ctx.log(`nemesis: ${line}`);
  }

  /** Nodes that are up and not touched by an active fault. */
  #free(): number[] {
    const busy = new Set(this.#active.flatMap((a) => a.nodes));
    return this.ctx.cluster.ids.filter(
      (id) =>
        !busy.has(id) && this.ctx.cluster.state.get(id) === 'running' && this.ctx.cluster.alive(id),
    );
  }

  /** Records a fault that has just been injected; it is undone after `holdMs` (or earlier by healAll). */
  #open(
    kind: string,
    detail: string,
    nodes: number[],
    holdMs: number,
    undo: () => Promise<void>,
  ): Active {
    const window: FaultWindow = { kind, startMs: this.ctx.clock(), endMs: Number.NaN, detail };
    const active: Active = { window, nodes, undo, done: Promise.resolve() };
    this.#active.push(active);
    this.faults.push(window);
    this.#count(kind);
    this.ctx.log(`nemesis: start ${kind}: ${detail}`);
    active.done = sleep(holdMs).then(() => this.#close(active));
    return active;
  }

  async #close(active: Active): Promise<void> {
    if (!this.#active.includes(active)) return;
    this.#active = this.#active.filter((a) => a !== active);
    try {
      await active.undo();
    } catch (err) {
      this.#note(
        `undoing ${active.window.kind} (${active.window.detail}) failed: ${(err as Error).message}`,
      );
    }
    active.window.endMs = this.ctx.clock();
    this.ctx.log(`nemesis: end ${active.window.kind}: ${active.window.detail}`);
  }

  /** Runs rounds until `endMs` (run clock). */
  async run(endMs: number): Promise<void> {
    const { rng, enabled } = this.ctx;
    const kinds = (['kill', 'pause', 'partition', 'membership', 'restart'] as NemesisName[]).filter(
      (k) => enabled.has(k),
    );
    while (!this.#stopped && this.ctx.clock() < endMs - 3000) {
      await sleep(rng.int(500, 3000));
      if (this.#stopped || this.ctx.clock() >= endMs - 3000) break;
      if (kinds.length === 0) {
        if (enabled.has('snapshot')) await this.snapshot('no other fault');
        continue;
      }
      const first = rng.pick(kinds);
      const second =
        kinds.length > 1 && rng.next() < 0.4 ? rng.pick(kinds.filter((k) => k !== first)) : null;
      // Partitions and membership changes last the round; kills and pauses have their own times.
      const hold = Math.round(
        Math.max(500, Math.min(rng.int(2000, 7000), endMs - this.ctx.clock() - 1500)),
      );
      const started: Active[] = [];
      for (const kind of second ? [first, second] : [first]) {
        const a = await this.#start(kind, hold);
        if (a) started.push(a);
      }
      if (enabled.has('snapshot') && rng.next() < 0.6) {
        await sleep(rng.int(0, hold / 2));
        await this.snapshot(started.map((a) => a.window.kind).join('+') || 'quiet');
      }
      await Promise.all(started.map((a) => a.done));
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  async #start(kind: NemesisName, holdMs: number): Promise<Active | null> {
    switch (kind) {
      case 'kill':
        return this.#kill();
      case 'pause':
        return this.#pause();
      case 'partition':
        return this.#partition(holdMs);
      case 'membership':
        return this.#membership(holdMs);
      case 'restart':
        return this.#restartFollower();
      default:
        return null;
    }
  }

  async #target(): Promise<{ id: number; leader: boolean } | null> {
    const free = this.#free();
    if (free.length === 0) return null;
    if (this.ctx.rng.next() < 0.5) {
      const leader = await this.ctx.cluster.leader();
      if (leader !== null && free.includes(leader)) return { id: leader, leader: true };
    }
    return { id: this.ctx.rng.pick(free), leader: false };
  }

  async #kill(): Promise<Active | null> {
    const t = await this.#target();
    if (!t) return null;
    const { cluster, rng } = this.ctx;
    await cluster.kill(t.id);
    const downMs = rng.int(1000, 4000);
    return this.#open(
      'kill',
      `kill -9 node ${t.id}${t.leader ? ' (the leader)' : ''}, restart after ${downMs} ms`,
      [t.id],
      downMs,
      () => this.#restart(t.id),
    );
  }

  async #restart(id: number): Promise<void> {
    const { cluster } = this.ctx;
    if (cluster.alive(id) || cluster.state.get(id) === 'removed') return;
    try {
      await cluster.start(id, false, 20_000);
    } catch (err) {
      this.#note(`restart of node ${id} failed: ${(err as Error).message}`);
    }
  }

  async #restartFollower(): Promise<Active | null> {
    const { cluster, rng, load } = this.ctx;
    const leader = await cluster.leader();
    if (leader === null) return null;
    const followers = this.#free().filter((id) => id !== leader);
    if (followers.length === 0) return null;
    const id = rng.pick(followers);
    const graceful = rng.next() < 0.5;
    const downMs = rng.int(300, 2000);
    const startedAt = this.ctx.clock();
    load?.start();
    try {
      await sleep(rng.int(300, 1500)); // the write burst builds up first
      if (graceful) {
        if (!(await cluster.terminate(id, 15_000)))
          this.#note(`restart: node ${id} did not exit within 15 s of SIGTERM; killed`);
      } else {
        await cluster.kill(id);
      }
    } catch (err) {
      await load?.stop();
      throw err;
    }
    const atKill = await this.#leaderCommit();
    const under = load ? `${load.writers} filler writers` : 'the workload alone';
    const active = this.#open(
      'restart',
      `${graceful ? 'SIGTERM' : 'kill -9'} follower ${id} (leader ${leader}) under ${under}, ` +
        `restart after ${downMs} ms`,
      [id],
      downMs,
      async () => {
        try {
          // How far the log moved while it was down (beyond --snapshot-trailing plus what the
          // leader kept since its last snapshot, it catches up from a snapshot).
          const atRestart = await this.#leaderCommit();
          if (atKill !== null && atRestart !== null)
            active.window.detail += `; ${atRestart - atKill} entries committed while it was down`;
          await this.#restart(id);
          await this.#caughtUp(id, 30_000);
        } finally {
          await load?.stop();
        }
      },
    );
    active.window.startMs = startedAt;
    return active;
  }

  /** The leader's commit index (asked until one answers, 3 s at most), or null. */
  async #leaderCommit(): Promise<number | null> {
    const { cluster } = this.ctx;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const leader = await cluster.waitLeader(Math.max(100, deadline - Date.now()));
      const st = leader === null ? null : await cluster.status(leader, 3000);
      if (typeof st?.commitIndex === 'number') return st.commitIndex;
    }
    return null;
  }

  /** Waits (bounded) until node id has applied what the leader had committed when it was called; notes it if not. */
  async #caughtUp(id: number, timeoutMs: number): Promise<void> {
    const { cluster } = this.ctx;
    const leader = await cluster.waitLeader(5000);
    const target = leader === null ? null : (await cluster.status(leader))?.commitIndex;
    if (typeof target !== 'number') return;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!cluster.alive(id)) {
        this.#note(`restart: node ${id} exited while catching up (see the crashes below)`);
        return;
      }
      const st = await cluster.status(id);
      if (st && st.appliedIndex >= target) return;
      await sleep(100);
    }
    this.#note(
      `restart: node ${id} had not applied ${target} (the leader's commit when it came back) within ${timeoutMs} ms`,
    );
  }

  async #pause(): Promise<Active | null> {
    const t = await this.#target();
    if (!t) return null;
    const { cluster, rng, electionTimeoutMs } = this.ctx;
    const ms = Math.max(1000, rng.int(3, 12) * electionTimeoutMs);
    if (!cluster.pause(t.id)) return null;
    return this.#open(
      'pause',
      `SIGSTOP node ${t.id}${t.leader ? ' (the leader)' : ''} for ${ms} ms`,
      [t.id],
      ms,
      async () => cluster.resume(t.id),
    );
  }

  async #partition(holdMs: number): Promise<Active | null> {
    const { cluster, rng } = this.ctx;
    const net = cluster.net;
    if (!net) return null;
    if (this.#active.some((a) => a.window.kind === 'partition')) return null;
    const ids = rng.shuffle(cluster.ids.filter((id) => cluster.state.get(id) !== 'removed'));
    const shape = rng.pick(['halves', 'isolate-leader', 'isolate', 'bridge'] as const);
    let plan: { pairs: [number, number][]; describe: string };
    if (shape === 'isolate-leader') {
      const leader = await cluster.leader();
      plan = partitionPairs('isolate', ids, leader ?? ids[0]);
      if (leader !== null) plan.describe += ' (the leader)';
    } else {
      plan = partitionPairs(shape, ids);
    }
    if (plan.pairs.length === 0) return null;
    await net.partition(plan.pairs);
    // Partitions don't stop nodes: other faults may still pick any node.
    return this.#open('partition', `${shape}: ${plan.describe}`, [], holdMs, () => net.heal());
  }

  async #membership(holdMs: number): Promise<Active | null> {
    const { cluster, rng } = this.ctx;
    if (this.#active.some((a) => a.window.kind === 'membership')) return null;
    const leader = await cluster.waitLeader(3000);
    if (leader === null) {
      this.#note('membership: no leader, skipped');
      return null;
    }
    const candidates = this.#free().filter((id) => id !== leader);
    if (candidates.length === 0) return null;
    const id = rng.pick(candidates);
    const startedAt = this.ctx.clock();
    const removed = await this.#removeMember(leader, id);
    if (!removed) return null;
    cluster.state.set(id, 'removed');
    await cluster.kill(id);
    cluster.wipe(id);
    try {
      cluster.spawn(id, true);
      cluster.state.set(id, 'removed');
      await cluster.waitServing(id, 20_000);
    } catch (err) {
      this.#note(`membership: node ${id} did not start with --join: ${(err as Error).message}`);
    }
    const active = this.#open(
      'membership',
      `remove node ${id} (leader ${leader}), wipe it, restart with --join, re-add after ${holdMs} ms`,
      [id],
      holdMs,
      async () => {
        await this.readd(id, 30_000);
      },
    );
    active.window.startMs = startedAt;
    return active;
  }

  async #removeMember(leader: number, id: number): Promise<boolean> {
    const { cluster } = this.ctx;
    try {
      const a = await request(
        `${cluster.url(leader)}/admin/members/${id}`,
        'DELETE',
        undefined,
        15_000,
      );
      if (a.status === 200) return true;
      this.#note(
        `membership: removing node ${id} on leader ${leader} answered ${a.status} ${a.body?.error?.code ?? ''}`,
      );
    } catch (err) {
      this.#note(`membership: removing node ${id} on leader ${leader}: ${(err as Error).message}`);
    }
    // Unknown outcome: the node counts as removed only when a leader's configuration leaves it
    // out and that configuration is committed (the same leader, in the same term, has committed
    // past the last index it had when it showed the configuration). Wiping a node whose removal
    // could still be rolled back would be wiping a voter: a fault of the harness, not the system.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const now = await cluster.waitLeader(Math.max(100, deadline - Date.now()));
      const st = now === null ? null : await cluster.status(now);
      if (!st) continue;
      if (st.members.some((m: { id: number }) => m.id === id)) return false;
      while (Date.now() < deadline) {
        const again = await cluster.status(now!);
        if (!again || again.term !== st.term || again.role !== 'leader') break;
        if (again.commitIndex >= st.lastIndex) {
          this.#note(
            `membership: node ${id} is out of leader ${now}'s committed configuration (term ${st.term}, commit ${again.commitIndex} ≥ ${st.lastIndex})`,
          );
          return true;
        }
        await sleep(100);
      }
    }
    this.#note(`membership: could not tell whether node ${id} was removed; leaving it alone`);
    return false;
  }

  /** Adds node id back (it must be running with --join, or is restarted so), retrying until `timeoutMs`. */
  async readd(id: number, timeoutMs: number): Promise<boolean> {
    const { cluster } = this.ctx;
    const spec = cluster.specs.get(id)!;
    const deadline = Date.now() + timeoutMs;
    let busySince: number | undefined;
    let busyExplained = false;
    while (Date.now() < deadline) {
      if (!cluster.alive(id)) {
        // A node removed and wiped is restarted empty, waiting to join.
        cluster.wipe(id);
        try {
          cluster.spawn(id, true);
          cluster.state.set(id, 'removed');
          await cluster.waitServing(id, Math.max(1000, deadline - Date.now()));
        } catch (err) {
          this.#note(`membership: restarting node ${id} with --join: ${(err as Error).message}`);
          await sleep(500);
          continue;
        }
      }
      const leader = await cluster.waitLeader(Math.min(5000, Math.max(100, deadline - Date.now())));
      if (leader === null) continue;
      const st = await cluster.status(leader);
      const member = st?.members.find((m: { id: number; role: string }) => m.id === id) as
        { role: string } | undefined;
      if (member?.role === 'voter') {
        cluster.state.set(id, 'running');
        return true;
      }
      if (member) {
        // Added, but its promotion to voter was cut short (a leader change): remove it and add it again.
        try {
          const a = await request(
            `${cluster.url(leader)}/admin/members/${id}`,
            'DELETE',
            undefined,
            10_000,
          );
          this.#note(
            `membership: node ${id} was left a ${member.role}; removing it to add it again: ${a.status} ${a.body?.error?.code ?? ''}`,
          );
        } catch (err) {
          this.#note(`membership: removing ${member.role} node ${id}: ${(err as Error).message}`);
        }
        await sleep(500);
        continue;
      }
      try {
        const a = await request(
          `${cluster.url(leader)}/admin/members`,
          'POST',
          JSON.stringify({ id, address: spec.raft }),
          Math.max(1000, Math.min(20_000, deadline - Date.now())),
        );
        if (a.status === 200) {
          cluster.state.set(id, 'running');
          return true;
        }
        this.#note(
          `membership: adding node ${id} on leader ${leader} answered ${a.status} ${a.body?.error?.code ?? ''}`,
        );
        if (a.body?.error?.code === ErrorCodes.MEMBERSHIP_BUSY) busySince ??= Date.now();
        if (busySince !== undefined && Date.now() - busySince > 10_000 && !busyExplained) {
          busyExplained = true;
          this.#note(
            `membership: leader ${leader} has refused every change for 10 s with no change in flight: the engine's stuck ` +
              'uncommitted-configuration index (see docs/verification.md, findings)',
          );
        }
      } catch (err) {
        this.#note(`membership: adding node ${id} on leader ${leader}: ${(err as Error).message}`);
      }
      await sleep(500);
    }
    return false;
  }

  /** POST /admin/snapshot on the leader (an instant fault window). */
  async snapshot(during: string): Promise<void> {
    const { cluster } = this.ctx;
    const leader = await cluster.leader();
    if (leader === null) return;
    const at = this.ctx.clock();
    let detail = `leader ${leader} during ${during}`;
    try {
      const a = await request(`${cluster.url(leader)}/admin/snapshot`, 'POST', undefined, 10_000);
      detail +=
        a.status === 200
          ? `: index ${a.body?.index ?? '?'}`
          : `: ${a.status} ${a.body?.error?.code ?? ''}`;
    } catch (err) {
      detail += `: ${(err as Error).message}`;
    }
    this.faults.push({ kind: 'snapshot', startMs: at, endMs: this.ctx.clock(), detail });
    this.#count('snapshot');
    this.ctx.log(`nemesis: snapshot ${detail}`);
  }

  /** Undoes every active fault, heals the network, resumes and restarts every node, re-adds removed ones. */
  async healAll(): Promise<void> {
    this.stop();
    for (const a of [...this.#active]) await this.#close(a);
    const { cluster } = this.ctx;
    await cluster.net?.heal();
    for (const id of cluster.ids) {
      if (cluster.alive(id)) cluster.resume(id);
    }
    for (const id of cluster.ids) {
      if (cluster.state.get(id) === 'removed') {
        if (!(await this.readd(id, 30_000))) this.#note(`heal: node ${id} could not be added back`);
      } else if (!cluster.alive(id)) {
        await this.#restart(id);
      }
    }
    // A removal the harness could not confirm may have gone through after all: a node that a
    // leader's committed configuration leaves out is wiped and added back.
    const leader = await cluster.waitLeader(10_000);
    const st = leader === null ? null : await cluster.status(leader);
    for (const id of cluster.ids) {
      if (
        !st ||
        st.members.some((m: { id: number }) => m.id === id) ||
        cluster.state.get(id) === 'removed'
      )
        continue;
      if (!(await this.#removeMember(leader!, id))) continue;
      this.#note(`heal: node ${id} was removed after all; wiping it and adding it back`);
      cluster.state.set(id, 'removed');
      await cluster.kill(id);
      if (!(await this.readd(id, 30_000))) this.#note(`heal: node ${id} could not be added back`);
    }
  }
}

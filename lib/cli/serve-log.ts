// What `prevail serve` says about the cluster on stderr, a line each: who leads (and this
// node's gaining or losing leadership), a long time without a leader, and this node's removal
// from the configuration. The library (startService) says none of this; an operator's
// process does.
import type { Service } from '../service/service.js';

/** How often the configuration is looked at for this node's removal. */
const MEMBERSHIP_CHECK_MS = 1000;
/** Without a leader this long (and at least 10 election timeouts), it says so, once per stretch. */
const LEADERLESS_WARNING_MS = 30_000;

type Leader = { id: number; address: string } | null;

/** Logs each change of leader as this node sees it. */
export function logLeadership(service: Service, id: number): void {
  let previous: Leader = service.store.node.status().leader;
  service.store.node.on('leader', ({ leader, term }: { leader: Leader; term: number }) => {
    if (leader?.id === id) console.error(`prevail: node ${id} leads (term ${term})`);
    else if (previous?.id === id)
      console.error(
        `prevail: node ${id} lost leadership (term ${term}; ${leader ? `node ${leader.id} leads` : 'no leader yet'})`,
      );
    else if (leader)
      console.error(`prevail: node ${leader.id} leads term ${term} (at ${leader.address})`);
    previous = leader;
  });
}

/**
 * Watches the configuration for this node's removal, and says when it has known no leader for
 * long. A removed follower is often not told (the leader stops replicating to it before it
 * gets the entry that removes it): it then only finds no leader, and the warning says that
 * removal is one reason. Seen removed twice in a row while not leading (the leader steps down
 * once its removal commits), `onRemoved` is called with the line to log.
 */
export function watchMembership(
  service: Service,
  id: number,
  electionTimeoutMs: number,
  onRemoved: (line: string) => void,
): void {
  const node = service.store.node;
  const warnAfter = Math.max(LEADERLESS_WARNING_MS, 10 * electionTimeoutMs);
  let leaderless = 0; // since when no leader is known (0: one is)
  let warned = false;
  let seenRemoved = 0;
  const timer = setInterval(() => {
    const s = node.status();
    if (s.role === 'closed') return clearInterval(timer);
    const removed = s.members.length > 0 && !s.members.some((m) => m.id === id);
    seenRemoved = removed && s.role !== 'leader' ? seenRemoved + 1 : 0;
    if (seenRemoved >= 2) {
      clearInterval(timer);
      const others = s.members.map((m) => m.id).join(', ');
      return onRemoved(
        `prevail: node ${id} was removed from the cluster: the configuration lists nodes ${others} only; closing and exiting (status 0). To bring it back: empty its data dir, start it with --join, then prevail members add ${id} ${node.address}`,
      );
    }
    if (s.leader) {
      leaderless = 0;
      warned = false;
      return;
    }
    leaderless ||= Date.now();
    if (!warned && Date.now() - leaderless >= warnAfter) {
      warned = true;
      console.error(
        `prevail: node ${id} has known no leader for ${Math.round((Date.now() - leaderless) / 1000)} s (${s.role}, term ${s.term}, members it knows: ${s.members.map((m) => m.id).join(', ')}): it can't reach a majority of them, or it was removed from the cluster (a removed node is often not told; prevail members on another node shows the configuration)`,
      );
    }
  }, MEMBERSHIP_CHECK_MS);
  timer.unref();
}

// The membership routes: the member list; the leader-only ones, adding and removing members,
// assigning a role, handing leadership over, a snapshot now; activating a schema version (the
// store forwards that one to the leader itself); a backup of this node's state.
import type { IncomingMessage } from 'node:http';

import { votersOf } from '../cluster/activation.js';
import { ErrorCodes, PrevailError, invalid } from '../core/errors.js';
import type { MemberRole } from '../engine/types.js';
import { readJson } from './body.js';
import { clusterView } from './node-routes.js';
import { backupFile } from './backup-route.js';
import { backupUnavailable, type OpsContext, type OpsStore } from './operations.js';

// The addon already refuses membership changes on a non-leader (raft 0.22.1 would abort), with
// PREVAIL_NOT_LEADER. This check answers first, the same for every leader-only route: UNAVAILABLE
// while no leader is known (clients retry), and before the arguments are checked or a follower's
// transfer tells its lease readers to stop trusting it.
function requireLeader(store: OpsStore, what: string): void {
  const st = store.node.status();
  if (st.role !== 'leader') {
    throw new PrevailError(
      st.leader ? ErrorCodes.NOT_LEADER : ErrorCodes.UNAVAILABLE,
      `${what} is done by the leader; this node is ${st.role}`,
      { leader: st.leader },
    );
  }
}

export async function addMember(
  { store, maxBody }: OpsContext,
  req: IncomingMessage,
): Promise<unknown> {
  const body = (await readJson(req, maxBody)) as {
    id?: unknown;
    address?: unknown;
    role?: unknown;
  } | null;
  if (typeof body !== 'object' || body === null)
    throw invalid('the body must be a JSON object { id, address, role? }');
  const role = (body.role ?? 'voter') as MemberRole;
  requireLeader(store, 'adding a member');
  // Added before but not reached then (it stayed a spare): adding it again at the same address
  // gives it its role now, so `prevail members add` can simply be run again once it is up.
  const known = store.node.status().members.find((m) => m.id === body.id);
  if (known && known.address === body.address) {
    if (known.role !== role) await store.node.assignRole(known.id, role);
  } else {
    await store.node.addMember({ id: body.id as number, address: body.address as string }, role);
  }
  return { members: store.node.status().members };
}

/** The members as this node sees them: role, leader, and on the leader how far each lags. */
export function listMembers({ store }: OpsContext): unknown {
  const s = store.status();
  return { id: s.id, leader: s.leader, term: s.term, ...clusterView(store, s) };
}

export async function removeMember({ store }: OpsContext, id: string): Promise<unknown> {
  const n = memberId(id);
  requireLeader(store, 'removing a member');
  await store.node.removeMember(n);
  return { members: store.node.status().members };
}

/** Makes a member a voter, a standby (receives the log, doesn't vote) or a spare (neither). */
export async function assignRole(
  { store, maxBody }: OpsContext,
  id: string,
  req: IncomingMessage,
): Promise<unknown> {
  const n = memberId(id);
  const body = (await readJson(req, maxBody)) as { role?: unknown } | null;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('the body must be a JSON object { role }');
  if (body.role !== 'voter' && body.role !== 'standby' && body.role !== 'spare')
    throw invalid(`role must be voter, standby or spare, got ${JSON.stringify(body.role)}`);
  requireLeader(store, 'assigning a role');
  await store.node.assignRole(n, body.role);
  return { members: store.node.status().members };
}

/** No body at all is `{}`; a body of `null` stays null (and is refused). */
const orEmpty = (body: unknown): unknown => (body === undefined ? {} : body);

function memberId(id: string): number {
  const n = /^\d{1,10}$/.test(id) ? Number(id) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw invalid(`a member id is a positive integer, got ${JSON.stringify(id)}`);
  return n;
}

export async function transfer(
  { store, maxBody }: OpsContext,
  req: IncomingMessage,
): Promise<unknown> {
  const body = orEmpty(await readJson(req, maxBody)) as { id?: unknown } | null;
  if (typeof body !== 'object' || body === null)
    throw invalid('the body must be a JSON object { id? }');
  const id = body.id ?? undefined;
  if (id !== undefined && typeof id !== 'number') throw invalid('id must be a number');
  requireLeader(store, 'a leadership transfer');
  const s = store.node.status();
  if (id === s.id) return { leader: s.leader, unchanged: true };
  // Checked here, not left to the engine: its answer for these ("server ID is not valid") names
  // neither the id nor the members there are.
  const target = s.members.find((m) => m.id === id);
  if (id !== undefined && target?.role !== 'voter') {
    const voters = votersOf(s.members);
    throw new PrevailError(
      ErrorCodes.BAD_MEMBER,
      target
        ? `member ${id} is a ${target.role}, and only a voter can lead (voters: ${voters.join(', ')})`
        : `no member ${id} (members: ${s.members.map((m) => m.id).join(', ')})`,
    );
  }
  const leader = await store.node.transferLeadership(id);
  return { leader };
}

export async function snapshot({ store }: OpsContext): Promise<unknown> {
  requireLeader(store, 'a snapshot on demand');
  return store.snapshot();
}

/**
 * Activates a schema version: `version`, or the newest every voter's code supports. On a
 * follower the store forwards it to the leader. VERSION_NOT_ACTIVE (409) names the voters
 * holding it back; MIGRATION_FAILED (409) says which migration threw.
 */
export async function activate(
  { store, maxBody }: OpsContext,
  req: IncomingMessage,
): Promise<unknown> {
  const body = orEmpty(await readJson(req, maxBody)) as { version?: unknown } | null;
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('the body must be a JSON object { version? }');
  const version = body.version ?? undefined;
  if (version !== undefined && !(Number.isSafeInteger(version) && (version as number) >= 1))
    throw invalid(`version must be a positive integer, got ${JSON.stringify(version)}`);
  const active = await store.activate(version as number | undefined);
  return { active };
}

/**
 * A backup of this node's state (any node: the leader is not needed). With a destination the
 * app configured, written there (the request can't name one, so an admin token can't write
 * where it likes), answered with store.backup()'s result. Without one, or when the client
 * asks for the file (`accept: application/octet-stream`, as `prevail backup` does), the file
 * itself is the answer. `?capture=false`: store.backup's `capture: false`.
 */
export async function backup(
  { store, backup }: OpsContext,
  req: IncomingMessage,
  url: URL,
): Promise<unknown> {
  const take = (store as { backup?: (destination: unknown, o?: object) => Promise<unknown> })
    .backup;
  if (typeof take !== 'function')
    throw backupUnavailable('this build of prevail has no online backup (store.backup)');
  const capture = url.searchParams.get('capture');
  if (capture !== null && capture !== 'true' && capture !== 'false')
    throw invalid(`capture must be true or false, got ${JSON.stringify(capture)}`);
  const options = { capture: capture !== 'false' };
  if (backup && !(req.headers.accept ?? '').includes('application/octet-stream'))
    return take.call(store, backup.destination, options);
  return backupFile(store, options);
}

// When a schema version may become active: once every voter has recorded, through the log,
// that its code supports it. Pure: the leader's driver (ClusterLink) and the errors that
// name who holds a version back both ask here.
import { ErrorCodes, PrevailError } from '../core/errors.js';

/** The ids of the voters among `members` (those whose support an activation needs). */
export const votersOf = (members: readonly { id: number; role: string }[]): number[] =>
  members.filter((m) => m.role === 'voter').map((m) => m.id);

/** A voter's id and the code range it recorded (undefined: it never said: an older build). */
export type Support = ReadonlyMap<number, readonly [number, number]>;

/** The voters whose code does not support `version` (or never said what it supports). */
export function holdingBack(
  voters: readonly number[],
  support: Support,
  version: number,
): number[] {
  return voters.filter((id) => {
    const range = support.get(id);
    return !range || range[1] < version || range[0] > version;
  });
}

/** The newest version every voter supports, if newer than `active`; else null. */
export function activationTarget(
  voters: readonly number[],
  support: Support,
  active: number,
): number | null {
  if (voters.length === 0) return null;
  let target = Number.MAX_SAFE_INTEGER;
  for (const id of voters) {
    const range = support.get(id);
    if (!range) return null;
    target = Math.min(target, range[1]);
  }
  return target > active ? target : null;
}

/** Refuses to activate `version` while some voter's code lacks it (VERSION_NOT_ACTIVE, naming them). */
export function checkActivation(
  voters: readonly number[],
  support: Support,
  version: number,
): void {
  const behind = holdingBack(voters, support, version);
  if (behind.length > 0)
    throw new PrevailError(
      ErrorCodes.VERSION_NOT_ACTIVE,
      `schema version ${version} can't be activated yet: voter${behind.length > 1 ? 's' : ''} ${behind.join(', ')} ${behind.length > 1 ? 'run' : 'runs'} code without it`,
      { version, holdingBack: behind },
    );
}

/** Whether a recorded range is the one this code supports. */
export const sameRange = (
  a: readonly [number, number] | undefined,
  b: readonly [number, number],
): boolean => a !== undefined && a[0] === b[0] && a[1] === b[1];

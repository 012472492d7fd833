// The admin page's schema facts (a Store's page): the active version and where it became
// active, this code's range, each member's recorded range, who holds the newest version back,
// who can't run the active one, and the activations that failed.
import { holdingBack, votersOf } from '../cluster/activation.js';
import type { Member } from '../engine/types.js';
import type { SchemaStatus } from '../store.js';

/** The part of Store.schemaStatus() the page uses. */
export type AdminSchemaSource = Pick<SchemaStatus, 'active' | 'activations' | 'code' | 'failed'> & {
  nodes: readonly Pick<SchemaStatus['nodes'][number], 'id' | 'oldest' | 'newest'>[];
};

export interface AdminSchema {
  /** The version every replica applies commands under now. */
  active: number;
  /** The log index where it became active; null when it has been active from the start. */
  activatedAt: number | null;
  /** The versions this node's code supports. */
  code: { oldest: number; newest: number };
  /** The newest version any member's code (or this node's) supports. */
  newest: number;
  /** When `newest` is not active: the voters whose code lacks it (they hold it back). */
  heldBack: { version: number; by: number[] } | null;
  /** Versions whose activation by this node failed (a migration threw), with why. */
  failed: { version: number; message: string }[];
}

/** A member's schema facts (a Store's page). */
export interface AdminMemberSchema {
  /** The code range it recorded through the log; null when it never did (an older build). */
  code: { oldest: number; newest: number } | null;
  /** The version it holds back (a voter whose code lacks `newest`), or null. */
  holdsBack: number | null;
  /** Its code ends before the active version (or it never recorded one, and the active version is past 1): it stops with PREVAIL_SCHEMA_TOO_OLD. */
  tooOld: boolean;
  /** Its code starts after the active version: it stops with PREVAIL_SCHEMA_TOO_NEW. */
  tooNew: boolean;
}

export function adminSchema(s: AdminSchemaSource, members: readonly Member[]): AdminSchema {
  const memberIds = new Set(members.map((m) => m.id));
  const recorded = s.nodes.filter((n) => memberIds.has(n.id));
  const newest = Math.max(s.code.newest, ...recorded.map((n) => n.newest));
  const activation = s.activations.filter((a) => a.version === s.active).at(-1);
  const voters = votersOf(members);
  const by = newest > s.active ? holdingBack(voters, supportOf(s), newest) : [];
  return {
    active: s.active,
    activatedAt: activation?.index ?? null,
    code: { oldest: s.code.oldest, newest: s.code.newest },
    newest,
    heldBack: by.length > 0 ? { version: newest, by } : null,
    failed: s.failed.map((f) => ({ version: f.version, message: f.message })),
  };
}

export function adminMemberSchema(
  schema: AdminSchema,
  source: AdminSchemaSource,
  id: number,
): AdminMemberSchema {
  const n = source.nodes.find((x) => x.id === id);
  return {
    code: n ? { oldest: n.oldest, newest: n.newest } : null,
    holdsBack: schema.heldBack?.by.includes(id) ? schema.heldBack.version : null,
    // Never recorded: a build from before schema versions, which runs version 1 only (or a
    // member that joined a moment ago and has not announced itself yet).
    tooOld: n ? n.newest < schema.active : schema.active > 1,
    tooNew: n !== undefined && n.oldest > schema.active,
  };
}

function supportOf(s: AdminSchemaSource): Map<number, [number, number]> {
  return new Map(s.nodes.map((n) => [n.id, [n.oldest, n.newest]]));
}

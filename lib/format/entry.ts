// The store's log entries: what one command (or one of the store's own actions) looks like
// inside a log entry, for the store that writes and applies them and for `prevail inspect`.
// (The engine-level framing around it, the PVE1 header, is native/'s: docs/internals.md.)
import { Packr } from 'msgpackr';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { applyPatches, checkPlain, type Patch } from '../plain-data.js';

// Self-contained encoding: no structures shared between messages, so an entry decodes the
// same on every replica, after a restart and after a snapshot install. useBigIntExtension:
// bigints beyond 64 bits (msgpack's ints) are written as an extension rather than refused.
/** The msgpackr options of entries and snapshot frames. */
export const packrOptions = {
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  useBigIntExtension: true,
};
export const packr = new Packr(packrOptions);

/**
 * Entry formats, the first element of the msgpack array every entry is:
 * - 1: a user command, `[1, name, args, timestamp]` (since the first release).
 * - 2: the store's own entries, `[2, kind, data, timestamp]` (peer announcements, schedules).
 * - 3 and 4: 1 and 2 with a fifth element, the patches that make args/data exact (-0,
 *   lone surrogates, byte arrays: plain-data.ts). Written only when there are patches, so
 *   older code refuses such an entry (PREVAIL_CORRUPT_ENTRY) instead of applying it wrong.
 * - 5: a user command proposed under schema version 2 or later, `[5, name, args, timestamp,
 *   patches, version]` (patches possibly empty). Version 1 commands keep formats 1 and 3, so
 *   builds from before schema versions read them; those builds refuse format 5.
 */
export const EntryFormat = {
  COMMAND: 1,
  SYSTEM: 2,
  COMMAND_EXACT: 3,
  SYSTEM_EXACT: 4,
  COMMAND_VERSIONED: 5,
} as const;

/** The store's own entries, by kind (format 2 and 4). */
export type SystemKind = 'peer' | 'schedule' | 'unschedule' | 'fire' | 'activate';

/** What an entry carries: a user command, or one of the store's own entries with its kind. */
export type EntryBody =
  | { type: 'command'; name: string; args: unknown; version?: number }
  | { type: 'system'; kind: SystemKind; data: unknown };

/**
 * A decoded entry. A system entry's kind is as written: code that meets a kind it does not
 * know stops rather than guess (PREVAIL_CORRUPT_ENTRY where it is applied).
 */
export type StoreEntry = (
  | { type: 'command'; name: string; args: unknown; version: number }
  | { type: 'system'; kind: string; data: unknown }
) & {
  /** One of EntryFormat. */
  format: number;
  /** The proposer's clock (ms) when it proposed the entry. */
  proposedAt: number;
};

/**
 * Command names the store keeps for itself: builds before the peer-channel op 'proposeSystem'
 * forwarded its requests to the leader as a 'propose' of the command `prevail:<kind>`.
 */
export const SYSTEM_NAME_PREFIX = 'prevail:';

/** The name an older build gives a store request of this kind (as it forwards it, in messages). */
export const legacySystemName = (kind: string): string => `${SYSTEM_NAME_PREFIX}${kind}`;

/**
 * What a peer's 'propose' of `name(args)` asks for: a command, or under a reserved name (an
 * older follower, in a rolling upgrade) a store request of that kind. Either is checked
 * afterwards as any forwarded request is; a reserved name is never a command.
 */
export function proposedBody(name: string, args: unknown): EntryBody {
  if (typeof name === 'string' && name.startsWith(SYSTEM_NAME_PREFIX)) {
    const kind = name.slice(SYSTEM_NAME_PREFIX.length) as SystemKind;
    return { type: 'system', kind, data: args };
  }
  return { type: 'command', name, args };
}

/** The command's name, or the system entry's kind (for logs and metrics). */
export const entryLabel = (entry: StoreEntry): string =>
  entry.type === 'command' ? entry.name : entry.kind;

/** Encodes an entry; throws PREVAIL_NOT_PLAIN_DATA (path `args…`) for arguments that aren't plain data. */
export function encodeEntry(body: EntryBody, proposedAt: number): Uint8Array {
  const system = body.type === 'system';
  const [name, args] = system ? [body.kind, body.data] : [body.name, body.args];
  const patches = checkPlain(args, 'args');
  const version = system ? 1 : (body.version ?? 1);
  if (version > 1)
    return packr.pack([EntryFormat.COMMAND_VERSIONED, name, args, proposedAt, patches, version]);
  if (patches.length === 0)
    return packr.pack([system ? EntryFormat.SYSTEM : EntryFormat.COMMAND, name, args, proposedAt]);
  return packr.pack([
    system ? EntryFormat.SYSTEM_EXACT : EntryFormat.COMMAND_EXACT,
    name,
    args,
    proposedAt,
    patches,
  ]);
}

/**
 * Like encodeEntry, for a proposal: arguments that are plain data but can't be encoded
 * anyway are the caller's mistake (PREVAIL_INVALID_ARGUMENT), not a fault of the store.
 */
export function encodeProposal(body: EntryBody, proposedAt: number): Uint8Array {
  try {
    return encodeEntry(body, proposedAt);
  } catch (err) {
    if ((err as PrevailError).code === ErrorCodes.NOT_PLAIN_DATA) throw err;
    const name = body.type === 'command' ? body.name : legacySystemName(body.kind);
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `arguments of ${name} can't be encoded: ${(err as Error).message}`,
    );
  }
}

/** Decodes an entry's payload; a string says why it is not a store entry (corruption, or not ours). */
export function decodeEntry(payload: Uint8Array): StoreEntry | string {
  let decoded: unknown;
  try {
    decoded = packr.unpack(payload);
  } catch (err) {
    return `it can't be decoded: ${(err as Error).message}`;
  }
  if (!Array.isArray(decoded) || typeof decoded[1] !== 'string') {
    return `it is not a store entry (${Array.isArray(decoded) ? `format ${JSON.stringify(decoded[0])}` : typeof decoded})`;
  }
  const [format, name, rawArgs, proposedAt, patches, rawVersion] = decoded as [
    unknown,
    string,
    unknown,
    unknown,
    Patch[] | undefined,
    unknown,
  ];
  const system = format === EntryFormat.SYSTEM || format === EntryFormat.SYSTEM_EXACT;
  const versioned = format === EntryFormat.COMMAND_VERSIONED;
  if (
    !system &&
    !versioned &&
    format !== EntryFormat.COMMAND &&
    format !== EntryFormat.COMMAND_EXACT
  )
    return `it is not a store entry (format ${JSON.stringify(format)})`;
  const version = versioned ? rawVersion : 1;
  if (versioned && !Array.isArray(patches)) return `its patches are not a list`;
  if (!Number.isSafeInteger(version) || (version as number) < 1)
    return `its schema version ${JSON.stringify(rawVersion)} is not a version`;
  let args = rawArgs;
  if (
    format === EntryFormat.COMMAND_EXACT ||
    format === EntryFormat.SYSTEM_EXACT ||
    (versioned && Array.isArray(patches) && patches.length > 0)
  ) {
    try {
      args = applyPatches(rawArgs, patches ?? []);
    } catch (err) {
      return `its patches don't fit its arguments: ${(err as Error).message}`;
    }
  }
  const at = {
    format: format as number,
    proposedAt: typeof proposedAt === 'number' ? proposedAt : 0,
  };
  return system
    ? { type: 'system', kind: name, data: args, ...at }
    : { type: 'command', name, args, version: version as number, ...at };
}

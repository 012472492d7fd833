// What `prevail upgrade-check` (upgradeCheck) reports. The field names are stable: CI scripts
// read them from `--json` (docs/operations.md, "Checking an upgrade before deploying").
import type { Schema } from '../store/schema.js';

export interface UpgradeCheckOptions {
  /** The new code's schema (a `defineSchema` result). */
  schema: Schema<any, any>;
  /** The code that wrote the dir, replayed side by side and compared at every entry. */
  old?: Schema<any, any>;
}

/** How an entry's command ended: a result, or its handler's error (code null when it has none). */
export interface Outcome {
  ok: boolean;
  code?: string | null;
  message?: string;
}

/** An effects hash a snapshot recorded (the old code's, at the snapshot's base index) and the replay's there. */
export interface RecordedHash {
  index: number;
  snapshot: string;
  recorded: string;
  /** null: the replay stopped before this index. */
  replayed: string | null;
  match: boolean | null;
  /** The last index known to match (the start, or an earlier recorded hash): a difference lies in after+1..index. */
  after: number;
}

export interface UpgradeCheckResult {
  dir: string;
  /** Nothing unknown, no fatal error, every compared hash and outcome matches. */
  ok: boolean;
  /** Where the replay started: the empty state (index 0, snapshot null) or a snapshot's base capture. */
  start: { index: number; snapshot: string | null };
  /** The last entry applied (or the one that stopped the replay). */
  lastIndex: number;
  /** Command and store entries applied. */
  replayed: number;
  /** Commands (by name, or named by a schedule entry) that the new code does not define. */
  unknownCommands: { name: string; count: number; firstIndex: number }[];
  /** The store's error that stopped the replay (a replica running the new code would stop there too). */
  fatal: { index: number; code: string; message: string } | null;
  /**
   * Errors the new code's handlers raised, by command and code (the first one's message). With
   * `old`, only those the old code did not raise with the same code.
   */
  handlerErrors: {
    command: string;
    code: string | null;
    count: number;
    firstIndex: number;
    message: string;
  }[];
  /** With `old`: entries whose outcome differs (error vs result, or another error code), grouped. */
  changedOutcomes:
    { command: string; count: number; firstIndex: number; old: Outcome; new: Outcome }[] | null;
  /** The recorded effects hashes after the start, compared where the replay reached them. */
  recorded: { compared: number; mismatched: number; checks: RecordedHash[] };
  /** With `old`: the side-by-side replay. */
  old: {
    /** The old code's own fatal error (its comparison ends there). */
    fatal: { index: number; code: string; message: string } | null;
    /** The first entry after which the effects hashes differ, and what each code did there. */
    firstDifference: {
      index: number;
      command: string;
      oldEffects: string;
      newEffects: string;
      oldOutcome: Outcome;
      newOutcome: Outcome;
    } | null;
    stateHash: { old: string; new: string; match: boolean } | null;
  } | null;
  /** The new replay's final stateHash. */
  stateHash: string;
  /** One line per problem found (empty when ok). */
  problems: string[];
  /** The reading warnings of inspect (an unfinished last write, missing segments, …). */
  warnings: string[];
}

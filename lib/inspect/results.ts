// What `prevail inspect` (inspectDataDir) reports about a data dir.
import type { Schema } from '../store/schema.js';

export interface InspectOptions {
  /** Rebuild the state as of this log index (needs `schema`). */
  at?: number;
  /** List entries from this index (default: the first on disk). */
  from?: number;
  /** List entries up to this index (default: the last on disk). */
  to?: number;
  /** A `defineSchema` result: needed for `at`. */
  schema?: Schema<any, any>;
}

export interface InspectedMember {
  id: number;
  address: string;
  role: 'voter' | 'standby' | 'spare' | `unknown(${number})`;
}

export interface InspectedSnapshot {
  file: string;
  metaFile: string;
  term: number;
  index: number;
  /** The engine's clock when it was written (from the file name). */
  timestamp: number;
  size: number;
  configurationIndex: number;
  configuration: InspectedMember[];
  /** prevail's PVS1 header: its format and payload length. */
  format: number;
  payloadLength: number;
  /** The store's frames, when the payload is an object store's snapshot. */
  store: {
    baseIndex: number;
    lastTimestamp: number;
    collections: Record<string, { version: number; nextId: number; objects: number }>;
    /** Entries after the base capture carried in the snapshot (re-applied on restore). */
    tailEntries: number;
    /** The divergence detector's effects hash as of `baseIndex` (hex); null in a snapshot from before it was kept. */
    effects: string | null;
  } | null;
}

export interface InspectedSegment {
  file: string;
  open: boolean;
  firstIndex: number;
  lastIndex: number;
  entries: number;
  batches: number;
  size: number;
  /** Bytes holding batches (an open segment is preallocated and zero-filled after them). */
  usedBytes: number;
}

export interface InspectedEntry {
  index: number;
  term: number;
  type: 'command' | 'barrier' | 'configuration';
  /** The entry's length in the log (with our framing and padding). */
  length: number;
  file: string;
  /** Byte offset of the entry's data in `file`. */
  offset: number;
  /** PVE1 framing of a command: the true payload length and the term it was appended in. */
  framing?: { length: number; term: number } | null;
  /** A store command. */
  command?: { name: string; args: unknown; timestamp: number };
  /** One of the store's own entries (not a user command), e.g. `peer` (a member's channel address). */
  store?: { format: number; kind: string; data: unknown; timestamp: number };
  /** A payload that is neither. */
  payload?: { length: number; hex: string; truncated: boolean };
  /** The members, for a configuration change. */
  configuration?: InspectedMember[];
  /** When replayed for `state`, the handler's error (the command changed nothing). */
  handlerError?: string;
  /** Something is off with this entry (it would stop a node that applies it). */
  problem?: string;
}

export interface InspectedState {
  index: number;
  /** The snapshot the state was rebuilt from (null: from an empty state and the log). */
  snapshot: string | null;
  /** Log entries applied after it. */
  appliedEntries: number;
  collections: Record<string, unknown[]>;
  stateHash: string;
  /** Commands whose handler threw when replayed (they changed nothing, as in the live node). */
  handlerErrors: { index: number; message: string }[];
}

export interface InspectResult {
  dir: string;
  /** prevail-node.json. */
  node: { id: number; address?: string; format?: number } | null;
  /** prevail.lock: the pid that holds it and whether that process is alive. */
  lock: { pid: number; live: boolean } | null;
  warnings: string[];
  /** The engine's metadata file in use: current term and vote. */
  metadata: { file: string; version: number; term: number; votedFor: number } | null;
  snapshots: InspectedSnapshot[];
  segments: InspectedSegment[];
  /** First and last index in the log on disk (0 when the log is empty). */
  firstIndex: number;
  lastIndex: number;
  /** The listed entries (`from`..`to`). */
  entries: InspectedEntry[];
  /** The latest configuration at `at` (or at the end of the log), and where it came from. */
  configuration: { index: number; source: string; members: InspectedMember[] } | null;
  state: InspectedState | null;
  /** Files the engine does not read (temporary snapshots, renamed corrupt segments, …). */
  otherFiles: string[];
}

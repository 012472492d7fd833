// Loads the addon (prebuilds/<platform>-<arch>/ or build/Release, via node-gyp-build) and
// declares its whole surface. Every method checks its arguments and rejects (or, for the
// synchronous ones, throws) PREVAIL_INVALID_ARGUMENT when they don't fit.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '../core/errors.js';

export interface NativeStatus {
  state: 'leader' | 'follower' | 'candidate' | 'unavailable' | 'closing' | 'closed' | 'unstarted';
  term?: number;
  leaderId?: number;
  leaderAddress?: string | null;
  commitIndex?: number;
  appliedIndex?: number;
  lastIndex?: number;
  snapshotIndex?: number;
  snapshotTerm?: number;
  members?: {
    id: number;
    address: string;
    role: 'voter' | 'standby' | 'spare';
    matchIndex?: number;
  }[];
}

export interface NativeCallbacks {
  /** `payload` is a view into a slab shared with other entries' payloads (native/payload_slab.h). */
  apply(payload: Uint8Array, index: number, term: number, mine: boolean): unknown;
  snapshot(): Uint8Array | Uint8Array[];
  restore(payload: Buffer): void;
  state(state: string, term: number, leaderId: number, leaderAddress: string | null): void;
  /** This replica can't apply an entry (apply or restore threw): it has stopped applying. Once, from the check phase. */
  fatal?(error: unknown): void;
  /** With `transport: 'streams'`: make a connection to member `id` and answer `connected(token)` or `connectFailed(token)`. From the check phase. */
  connect?(token: number, id: number, address: string): void;
}

export interface NativeStartOptions {
  id: number;
  address: string;
  dataDir: string;
  electionTimeoutMs: number;
  heartbeatMs: number;
  /** How often the engine checks its timers (1..heartbeatMs; tickPeriodMs in options.ts). */
  tickMs: number;
  snapshotThreshold: number;
  snapshotTrailing: number;
  maxInflightEntries: number;
  preVote: boolean;
  /** 'tcp': the engine's own TCP transport; 'streams': connections made in JS (lib/engine/member-transport.ts). */
  transport: 'tcp' | 'streams';
  bootstrap?: { id: number; address: string }[];
}

export interface NativeEngine {
  start(options: NativeStartOptions): Promise<void>;
  apply(command: Uint8Array): Promise<[index: number, result: unknown]>;
  barrier(): Promise<number>;
  add(id: number, address: string): Promise<void>;
  assign(id: number, role: string): Promise<void>;
  remove(id: number): Promise<void>;
  transfer(id: number): Promise<number>;
  status(): NativeStatus;
  /** Whether apply() would now be refused with NOT_LEADER and nothing else (running, not inside apply, not leading or handing over). */
  refusesCommands(): boolean;
  /** Whether the engine leads now (status().role === 'leader', without building a status). */
  leads(): boolean;
  setSnapshotThreshold(n: number): void;
  close(): Promise<void>;
  /** Streams transport: hands the engine a verified connection from member `id`; returns JS's end (an fd) or a negative libuv error. */
  accept(id: number, address: string): number;
  /** Streams transport: the connection asked for by `token` is made; returns JS's end (an fd) or a negative libuv error. */
  connected(token: number): number;
  connectFailed(token: number): void;
}

interface Addon {
  /** Throws PREVAIL_INVALID_ARGUMENT without an object of callbacks (`fatal` is optional). */
  Engine: new (callbacks: NativeCallbacks) => NativeEngine;
  /** The codes of the errors the addon raises, by key: called once, here, before any Engine. */
  setErrorCodes(codes: typeof ErrorCodes): void;
  uvVersion: string;
  raftVersion: number;
  /** native/framing.h's constants: the PVE1 entry and PVS1 snapshot headers. */
  framing: {
    entryMagic: number;
    snapshotMagic: number;
    snapshotHeaderFormat: number;
    headerBytes: number;
  };
}

const require = createRequire(import.meta.url);
// The package root: this file is dist/engine/native.js (or dist/cjs/engine/native.js, whose
// import.meta.url the CommonJS build points at the ESM twin).
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const load = require('node-gyp-build') as (dir: string) => unknown;

export const addon = load(root) as Addon;
addon.setErrorCodes(ErrorCodes);

/** Versions of what is linked in, for diagnostics. */
export const versions = {
  raft: `${Math.floor(addon.raftVersion / 10000)}.${Math.floor(addon.raftVersion / 100) % 100}.${addon.raftVersion % 100}`,
  uv: addon.uvVersion,
};

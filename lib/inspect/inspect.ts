// `prevail inspect DIR`: reads a data dir offline — the engine's metadata, log segments
// and snapshots, our entry and snapshot framing, the store's commands — and rebuilds the
// state at a chosen index. Read-only: it opens files for reading and nothing else.
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { ErrorCodes, PrevailError } from '../core/errors.js';
import { pidAlive } from '../core/processes.js';
import type { Schema } from '../store/schema.js';
import { StateMachine } from '../store/state-machine.js';

import {
  type InspectOptions,
  type InspectResult,
  type InspectedEntry,
  type InspectedSnapshot,
  type InspectedState,
} from './results.js';
import {
  CLOSED_RE,
  DISK_FORMAT,
  OPEN_RE,
  SNAPSHOT_META_RE,
  SNAPSHOT_RE,
  corrupt,
  decodeCommand,
  decodeConfiguration,
  hex,
  parseSegment,
  parseSnapshotData,
  parseSnapshotMeta,
  readOrNull,
  summariseStorePayload,
  u64,
  unreadableSnapshot,
  type RawEntry,
} from './readers.js';
import {
  applyReplayEntry,
  entryHeader,
  logCommands,
  restoreSnapshot,
  type Machine,
} from './replay.js';

/**
 * Reads a data dir (of a stopped node, or a copy) and describes it: snapshots, segments,
 * entries with their decoded commands, the configuration, and with `at` + `schema` the
 * store's state at that index. Corrupt or truncated files raise PREVAIL_CORRUPT_ENTRY /
 * PREVAIL_SNAPSHOT_UNREADABLE naming the file and byte offset.
 */
export async function inspectDataDir(
  dir: string,
  options: InspectOptions = {},
): Promise<InspectResult> {
  const { at, from, to, schema } = options;
  checkOptions(options);
  const { root, result, raw, payloads } = await readDataDir(dir);
  const lastKnown = Math.max(result.lastIndex, result.snapshots.at(-1)?.index ?? 0);
  const listed = listEntries(root, raw, from ?? 0, to ?? Number.MAX_SAFE_INTEGER, result.entries);
  result.configuration = configurationAt(root, raw, result.snapshots, at ?? lastKnown);
  if (at !== undefined && schema) {
    result.state = rebuildState({ root, at, schema, raw, lastKnown, payloads, listed, result });
  }
  return result;
}

/** What a data dir holds, read and checked: the result's files part, the log's entries, the snapshots' store payloads. */
export interface DataDir {
  root: string;
  result: InspectResult;
  /** The contiguous run of log entries on disk, in index order. */
  raw: RawEntry[];
  payloads: Map<InspectedSnapshot, Buffer>;
}

/** Reads a data dir's identity, lock, metadata, snapshots and segments (read-only). */
export async function readDataDir(dir: string): Promise<DataDir> {
  const root = resolve(dir);
  const names = await listDataDir(root);
  const result = emptyResult(root);
  const warnings = result.warnings;
  result.node = await readIdentity(root, warnings);
  result.lock = await readLock(root, warnings);
  const live = result.lock?.live ?? false;
  result.metadata = await readMetadata(root, warnings);
  const files = classifyFiles(names, result.otherFiles);
  const payloads = await readSnapshots(root, files, live, result);
  const raw = await readSegments(root, files, live, result);
  checkLogBounds(raw, result);
  return { root, result, raw, payloads };
}

function checkOptions({ at, from, to, schema }: InspectOptions): void {
  for (const [name, v] of Object.entries({ at, from, to })) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, `${name} must be a non-negative integer`);
    }
  }
  if (at !== undefined && !schema)
    throw new PrevailError(ErrorCodes.INVALID_ARGUMENT, 'the state at an index needs a schema');
  if (schema && (typeof schema.collections !== 'object' || typeof schema.commands !== 'object')) {
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      'schema must come from defineSchema({ collections, commands })',
    );
  }
}

async function listDataDir(root: string): Promise<string[]> {
  try {
    return (await readdir(root)).sort();
  } catch (err) {
    throw new PrevailError(
      ErrorCodes.IO,
      `cannot read data dir ${root}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function emptyResult(root: string): InspectResult {
  return {
    dir: root,
    node: null,
    lock: null,
    warnings: [],
    metadata: null,
    snapshots: [],
    segments: [],
    firstIndex: 0,
    lastIndex: 0,
    entries: [],
    configuration: null,
    state: null,
    otherFiles: [],
  };
}

/** Our own identity file, prevail-node.json. */
async function readIdentity(root: string, warnings: string[]): Promise<InspectResult['node']> {
  const identity = await readOrNull(join(root, 'prevail-node.json'));
  if (!identity) {
    warnings.push('no prevail-node.json: not a prevail data dir, or never started');
    return null;
  }
  try {
    return JSON.parse(identity.toString('utf8')) as InspectResult['node'];
  } catch (err) {
    warnings.push(`prevail-node.json is unreadable: ${(err as Error).message}`);
    return null;
  }
}

/** Our lock file: a live holder means the log's tail may change under us. */
async function readLock(root: string, warnings: string[]): Promise<InspectResult['lock']> {
  const lock = await readOrNull(join(root, 'prevail.lock'));
  if (!lock) return null;
  const pid = Number(lock.toString('utf8').trim());
  const live = Number.isInteger(pid) && pid > 0 && pidAlive(pid);
  if (live)
    warnings.push(
      `prevail.lock: process ${pid} holds this data dir and is alive; the log's tail may be in flux`,
    );
  return { pid, live };
}

type Metadata = NonNullable<InspectResult['metadata']>;

/** metadata1/metadata2: u64 format, version, term, voted_for; the higher version wins. */
async function readMetadata(root: string, warnings: string[]): Promise<Metadata | null> {
  const metas: Metadata[] = [];
  for (const file of ['metadata1', 'metadata2']) {
    const buf = await readOrNull(join(root, file));
    if (!buf) continue;
    const meta = parseMetadata(join(root, file), file, buf, warnings);
    if (meta) metas.push(meta);
  }
  if (metas.length === 2 && metas[0]!.version === metas[1]!.version) {
    throw corrupt(
      join(root, 'metadata2'),
      8,
      `metadata1 and metadata2 are both at version ${metas[0]!.version}`,
    );
  }
  return metas.sort((a, b) => b.version - a.version)[0] ?? null;
}

function parseMetadata(
  path: string,
  file: string,
  buf: Buffer,
  warnings: string[],
): Metadata | null {
  if (buf.length < 32) {
    warnings.push(
      `${file}: ${buf.length} bytes, short: the engine alone would take it for one never written; a node refuses to start on it (PREVAIL_CORRUPT_ENTRY)`,
    );
    return null;
  }
  if (buf.length > 32)
    throw corrupt(path, 32, `metadata file has ${buf.length} bytes instead of 32`);
  const format = u64(buf, 0);
  if (format !== DISK_FORMAT)
    throw corrupt(path, 0, `metadata format ${format} is not ${DISK_FORMAT}`);
  const version = u64(buf, 8);
  if (version === 0) throw corrupt(path, 8, 'metadata version is zero');
  return { file, version, term: u64(buf, 16), votedFor: u64(buf, 24) };
}

interface DataFiles {
  closed: { file: string; first: number; last: number }[];
  openSegs: { file: string; counter: number }[];
  snapshotFiles: Set<string>;
  snapMetas: { file: string; term: number; index: number; timestamp: number }[];
}

const OWN_FILES = new Set(['metadata1', 'metadata2', 'prevail-node.json', 'prevail.lock']);

/** Sorts the dir's names into segments and snapshots; the rest goes to `other`. */
function classifyFiles(names: string[], other: string[]): DataFiles {
  const files: DataFiles = { closed: [], openSegs: [], snapshotFiles: new Set(), snapMetas: [] };
  for (const name of names) {
    let m: RegExpExecArray | null;
    if (OWN_FILES.has(name)) continue;
    if ((m = CLOSED_RE.exec(name)))
      files.closed.push({ file: name, first: Number(m[1]), last: Number(m[2]) });
    else if ((m = OPEN_RE.exec(name))) files.openSegs.push({ file: name, counter: Number(m[1]) });
    else if ((m = SNAPSHOT_META_RE.exec(name)))
      files.snapMetas.push({
        file: name,
        term: Number(m[1]),
        index: Number(m[2]),
        timestamp: Number(m[3]),
      });
    else if (SNAPSHOT_RE.test(name)) files.snapshotFiles.add(name);
    else other.push(name);
  }
  return files;
}

/** Snapshots: a .meta with a non-empty data file next to it (uv_snapshot.c). */
async function readSnapshots(
  root: string,
  { snapMetas, snapshotFiles }: DataFiles,
  live: boolean,
  result: InspectResult,
): Promise<Map<InspectedSnapshot, Buffer>> {
  const warnings = result.warnings;
  snapMetas.sort((a, b) => a.term - b.term || a.index - b.index || a.timestamp - b.timestamp);
  const payloads = new Map<InspectedSnapshot, Buffer>();
  for (const s of snapMetas) {
    const dataFile = s.file.slice(0, -'.meta'.length);
    if (!snapshotFiles.has(dataFile)) {
      warnings.push(`${s.file} has no data file: an unfinished snapshot (the engine ignores it)`);
      continue;
    }
    snapshotFiles.delete(dataFile);
    const read = await readSnapshot(root, s, dataFile, live, warnings);
    if (!read) continue;
    payloads.set(read.snap, read.payload);
    result.snapshots.push(read.snap);
  }
  for (const orphan of snapshotFiles)
    warnings.push(`${orphan} has no .meta: not a complete snapshot (the engine ignores it)`);
  return payloads;
}

/** One snapshot's .meta and data file; null when it is to be skipped (with a warning). */
async function readSnapshot(
  root: string,
  s: DataFiles['snapMetas'][number],
  dataFile: string,
  live: boolean,
  warnings: string[],
): Promise<{ snap: InspectedSnapshot; payload: Buffer } | null> {
  const dataPath = join(root, dataFile);
  const metaBuf = await readOrNull(join(root, s.file));
  const dataBuf = await readOrNull(dataPath);
  if (!metaBuf || !dataBuf) {
    if (live) {
      warnings.push(`${s.file} went away while being read`);
      return null;
    }
    throw unreadableSnapshot(dataBuf ? join(root, s.file) : dataPath, 0, 'file disappeared');
  }
  if (dataBuf.length === 0) {
    warnings.push(`${dataFile} is empty: an unfinished snapshot (the engine ignores it)`);
    return null;
  }
  const meta = parseSnapshotMeta(join(root, s.file), metaBuf);
  const { format, payload } = parseSnapshotData(dataPath, dataBuf);
  const snap: InspectedSnapshot = {
    file: dataFile,
    metaFile: s.file,
    term: s.term,
    index: s.index,
    timestamp: s.timestamp,
    size: dataBuf.length,
    configurationIndex: meta.configurationIndex,
    configuration: meta.configuration,
    format,
    payloadLength: payload.length,
    store: summariseStorePayload(payload),
  };
  return { snap, payload };
}

/** Segments: closed ones in index order, then open ones by counter (uv_segment.c). */
async function readSegments(
  root: string,
  { closed, openSegs }: DataFiles,
  live: boolean,
  result: InspectResult,
): Promise<RawEntry[]> {
  const warnings = result.warnings;
  const newestSnapshot = result.snapshots.at(-1);
  closed.sort((a, b) => a.first - b.first);
  openSegs.sort((a, b) => a.counter - b.counter);
  const raw: RawEntry[] = [];
  let next = closed.length > 0 ? closed[0]!.first : newestSnapshot ? newestSnapshot.index + 1 : 1;
  for (const seg of closed) {
    const path = join(root, seg.file);
    if (seg.first > seg.last)
      throw corrupt(path, 0, `segment name ${seg.file} has first index after last`);
    if (seg.first !== next) {
      warnings.push(
        `${seg.file}: expected a segment starting at ${next}; entries ${next}..${seg.first - 1} are missing ` +
          '(the engine keeps only the contiguous segments after the snapshot)',
      );
      raw.length = 0; // only the contiguous run ending at the newest segment counts
    }
    const buf = await readOrNull(path);
    if (!buf) {
      if (live) {
        warnings.push(`${seg.file} went away while being read`);
        continue;
      }
      throw corrupt(path, 0, 'file disappeared');
    }
    const parsed = parseSegment(path, seg.file, buf, false, seg.first, live, warnings);
    result.segments.push(parsed.info);
    for (const e of parsed.entries) raw.push(e);
    next = seg.last + 1;
  }
  for (const seg of openSegs) {
    const path = join(root, seg.file);
    const buf = await readOrNull(path);
    if (!buf) continue;
    const parsed = parseSegment(path, seg.file, buf, true, next, live, warnings);
    result.segments.push(parsed.info);
    for (const e of parsed.entries) raw.push(e);
    next = parsed.info.lastIndex + 1;
  }
  return raw;
}

/** Sets the log's first and last index and warns when it doesn't meet the newest snapshot. */
function checkLogBounds(raw: RawEntry[], result: InspectResult): void {
  const newestSnapshot = result.snapshots.at(-1);
  result.firstIndex = raw.length > 0 ? raw[0]!.index : 0;
  result.lastIndex = raw.length > 0 ? raw.at(-1)!.index : 0;
  if (newestSnapshot && raw.length > 0 && result.lastIndex < newestSnapshot.index) {
    result.warnings.push(
      `the last entry on disk (${result.lastIndex}) is behind the newest snapshot (${newestSnapshot.index})`,
    );
  }
  if (newestSnapshot && raw.length > 0 && result.firstIndex > newestSnapshot.index + 1) {
    result.warnings.push(
      `the log starts at ${result.firstIndex}, after the newest snapshot (${newestSnapshot.index}) + 1: entries are missing`,
    );
  }
}

/** The entries in lo..hi, described into `entries`; returns them by index. */
function listEntries(
  root: string,
  raw: RawEntry[],
  lo: number,
  hi: number,
  entries: InspectedEntry[],
): Map<number, InspectedEntry> {
  const listed = new Map<number, InspectedEntry>();
  for (const e of raw) {
    if (e.index < lo || e.index > hi) continue;
    const entry = describeEntry(root, e);
    listed.set(e.index, entry);
    entries.push(entry);
  }
  return listed;
}

function describeEntry(root: string, e: RawEntry): InspectedEntry {
  const entry = entryHeader(e);
  if (e.type === 1) decodeCommand(entry, e.data);
  else if (e.type === 3) {
    try {
      entry.configuration = decodeConfiguration(e.data, (o, w) =>
        corrupt(join(root, e.file), e.offset + o, `entry ${e.index}: ${w}`),
      );
    } catch (err) {
      entry.problem = (err as Error).message;
      entry.payload = { length: e.data.length, ...hex(e.data) };
    }
  }
  return entry;
}

/** The configuration as of `upTo`: the last change entry, else a snapshot's. */
function configurationAt(
  root: string,
  raw: RawEntry[],
  snapshots: InspectedSnapshot[],
  upTo: number,
): InspectResult['configuration'] {
  for (let i = raw.length - 1; i >= 0; i--) {
    const e = raw[i]!;
    if (e.index > upTo || e.type !== 3) continue;
    try {
      const members = decodeConfiguration(e.data, (o, w) =>
        corrupt(join(root, e.file), e.offset + o, w),
      );
      return { index: e.index, source: `entry ${e.index} (${e.file})`, members };
    } catch {
      // reported on the entry when listed
    }
  }
  const snap = [...snapshots].reverse().find((s) => s.configurationIndex <= upTo);
  if (!snap) return null;
  return { index: snap.configurationIndex, source: snap.metaFile, members: snap.configuration };
}

interface Rebuild {
  root: string;
  at: number;
  schema: Schema<any, any>;
  raw: RawEntry[];
  lastKnown: number;
  payloads: Map<InspectedSnapshot, Buffer>;
  listed: Map<number, InspectedEntry>;
  result: InspectResult;
}

/** The state at `at`: the newest snapshot at or below it, then the log up to it. */
function rebuildState(r: Rebuild): InspectedState {
  const { root, at, schema, result } = r;
  if (at > r.lastKnown) {
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `index ${at} is past the end of the log (${r.lastKnown})`,
      { index: at },
    );
  }
  const base = [...result.snapshots]
    .filter((s) => s.index <= at)
    .sort((a, b) => a.index - b.index || a.term - b.term || a.timestamp - b.timestamp)
    .at(-1);
  const start = base ? base.index + 1 : 1;
  checkRebuildable(r, base, start);
  const machine = new StateMachine(schema); // no captures: nothing is written
  if (base) restoreSnapshot(machine, join(root, base.file), r.payloads.get(base)!);
  const { applied, handlerErrors } = applyLog(machine, r, start);
  const collections: Record<string, unknown[]> = {};
  const view = machine.view as Record<string, { values(): IterableIterator<unknown> }>;
  for (const name of Object.keys(schema.collections)) collections[name] = [...view[name]!.values()];
  return {
    index: at,
    snapshot: base ? base.file : null,
    appliedEntries: applied,
    collections,
    stateHash: machine.stateHash(),
    handlerErrors,
  };
}

/** Throws unless the log on disk holds every entry from `start` to `at`. */
function checkRebuildable(
  { at, raw, result }: Rebuild,
  base: InspectedSnapshot | undefined,
  start: number,
): void {
  // Entry 1 is always the bootstrap configuration (raft_bootstrap writes it; a joining
  // node receives the leader's), never a command: a log compacted down to 2 still
  // rebuilds from the empty state.
  const firstNeeded = start === 1 ? 2 : start;
  if (start > at || (raw.length > 0 && result.firstIndex <= firstNeeded && result.lastIndex >= at))
    return;
  const kept = result.snapshots.map((s) => s.index).join(', ') || 'none';
  throw new PrevailError(
    ErrorCodes.SNAPSHOT_UNREADABLE,
    `the state at ${at} can't be rebuilt: ${base ? `the newest snapshot at or below it is at ${base.index}` : 'no snapshot at or below it is kept'} ` +
      `(snapshots: ${kept}) and the log on disk holds ${raw.length ? `${result.firstIndex}..${result.lastIndex}` : 'no entries'}` +
      (base ? '' : ': the entries before it were compacted away'),
    { index: at },
  );
}

/** Applies the command entries in start..at; a handler's error is noted on its listed entry. */
function applyLog(
  machine: Machine,
  { root, at, raw, listed }: Rebuild,
  start: number,
): { applied: number; handlerErrors: InspectedState['handlerErrors'] } {
  const handlerErrors: InspectedState['handlerErrors'] = [];
  let applied = 0;
  for (const e of logCommands(root, raw, start, at)) {
    const outcome = applyReplayEntry(machine, e);
    applied++;
    if ('error' in outcome) {
      const message = (outcome.error as Error)?.message ?? String(outcome.error);
      handlerErrors.push({ index: e.index, message });
      const shown = listed.get(e.index);
      if (shown) shown.handlerError = message;
    }
  }
  return { applied, handlerErrors };
}

// `prevail inspect DIR`: reads a data dir offline — the engine's metadata, log segments
// and snapshots, our entry and snapshot framing, the store's commands — and rebuilds the
// state at a chosen index. Read-only: it opens files for reading and nothing else.
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { ErrorCodes, PrevailError, isPrevailError, type ErrorCode } from '../core/errors.js';
import { pidAlive } from '../core/processes.js';
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
  ENTRY_TYPES,
  HEADER_SIZE,
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
  const root = resolve(dir);
  let names: string[];
  try {
    names = (await readdir(root)).sort();
  } catch (err) {
    throw new PrevailError(
      ErrorCodes.IO,
      `cannot read data dir ${root}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const result: InspectResult = {
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
  const warnings = result.warnings;

  // Our own files: the identity and the lock.
  const identity = await readOrNull(join(root, 'prevail-node.json'));
  if (identity) {
    try {
      result.node = JSON.parse(identity.toString('utf8')) as InspectResult['node'];
    } catch (err) {
      warnings.push(`prevail-node.json is unreadable: ${(err as Error).message}`);
    }
  } else {
    warnings.push('no prevail-node.json: not a prevail data dir, or never started');
  }
  const lock = await readOrNull(join(root, 'prevail.lock'));
  if (lock) {
    const pid = Number(lock.toString('utf8').trim());
    const live = Number.isInteger(pid) && pid > 0 && pidAlive(pid);
    result.lock = { pid, live };
    if (live)
      warnings.push(
        `prevail.lock: process ${pid} holds this data dir and is alive; the log's tail may be in flux`,
      );
  }
  const live = result.lock?.live ?? false;

  // metadata1/metadata2: u64 format, version, term, voted_for; the higher version wins.
  const metas: NonNullable<InspectResult['metadata']>[] = [];
  for (const file of ['metadata1', 'metadata2']) {
    const path = join(root, file);
    const buf = await readOrNull(path);
    if (!buf) continue;
    if (buf.length < 32) {
      warnings.push(`${file}: ${buf.length} bytes, an interrupted write (the engine ignores it)`);
      continue;
    }
    if (buf.length > 32)
      throw corrupt(path, 32, `metadata file has ${buf.length} bytes instead of 32`);
    const format = u64(buf, 0);
    if (format !== DISK_FORMAT)
      throw corrupt(path, 0, `metadata format ${format} is not ${DISK_FORMAT}`);
    const version = u64(buf, 8);
    if (version === 0) throw corrupt(path, 8, 'metadata version is zero');
    metas.push({ file, version, term: u64(buf, 16), votedFor: u64(buf, 24) });
  }
  if (metas.length === 2 && metas[0]!.version === metas[1]!.version) {
    throw corrupt(
      join(root, 'metadata2'),
      8,
      `metadata1 and metadata2 are both at version ${metas[0]!.version}`,
    );
  }
  result.metadata = metas.sort((a, b) => b.version - a.version)[0] ?? null;

  // Classify the files.
  const closed: { file: string; first: number; last: number }[] = [];
  const openSegs: { file: string; counter: number }[] = [];
  const snapshotFiles = new Set<string>();
  const snapMetas: { file: string; term: number; index: number; timestamp: number }[] = [];
  for (const name of names) {
    let m: RegExpExecArray | null;
    if (
      name === 'metadata1' ||
      name === 'metadata2' ||
      name === 'prevail-node.json' ||
      name === 'prevail.lock'
    )
      continue;
    if ((m = CLOSED_RE.exec(name)))
      closed.push({ file: name, first: Number(m[1]), last: Number(m[2]) });
    else if ((m = OPEN_RE.exec(name))) openSegs.push({ file: name, counter: Number(m[1]) });
    else if ((m = SNAPSHOT_META_RE.exec(name)))
      snapMetas.push({
        file: name,
        term: Number(m[1]),
        index: Number(m[2]),
        timestamp: Number(m[3]),
      });
    else if (SNAPSHOT_RE.test(name)) snapshotFiles.add(name);
    else result.otherFiles.push(name);
  }

  // Snapshots: a .meta with a non-empty data file next to it (uv_snapshot.c).
  snapMetas.sort((a, b) => a.term - b.term || a.index - b.index || a.timestamp - b.timestamp);
  const payloads = new Map<InspectedSnapshot, Buffer>();
  for (const s of snapMetas) {
    const dataFile = s.file.slice(0, -'.meta'.length);
    if (!snapshotFiles.has(dataFile)) {
      warnings.push(`${s.file} has no data file: an unfinished snapshot (the engine ignores it)`);
      continue;
    }
    snapshotFiles.delete(dataFile);
    const dataPath = join(root, dataFile);
    const metaBuf = await readOrNull(join(root, s.file));
    const dataBuf = await readOrNull(dataPath);
    if (!metaBuf || !dataBuf) {
      if (live) {
        warnings.push(`${s.file} went away while being read`);
        continue;
      }
      throw unreadableSnapshot(dataBuf ? join(root, s.file) : dataPath, 0, 'file disappeared');
    }
    if (dataBuf.length === 0) {
      warnings.push(`${dataFile} is empty: an unfinished snapshot (the engine ignores it)`);
      continue;
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
    payloads.set(snap, payload);
    result.snapshots.push(snap);
  }
  for (const orphan of snapshotFiles)
    warnings.push(`${orphan} has no .meta: not a complete snapshot (the engine ignores it)`);
  const newestSnapshot = result.snapshots.at(-1);

  // Segments: closed ones in index order, then open ones by counter (uv_segment.c).
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
  result.firstIndex = raw.length > 0 ? raw[0]!.index : 0;
  result.lastIndex = raw.length > 0 ? raw.at(-1)!.index : 0;
  if (newestSnapshot && raw.length > 0 && result.lastIndex < newestSnapshot.index) {
    warnings.push(
      `the last entry on disk (${result.lastIndex}) is behind the newest snapshot (${newestSnapshot.index})`,
    );
  }
  if (newestSnapshot && raw.length > 0 && result.firstIndex > newestSnapshot.index + 1) {
    warnings.push(
      `the log starts at ${result.firstIndex}, after the newest snapshot (${newestSnapshot.index}) + 1: entries are missing`,
    );
  }
  const lastKnown = Math.max(result.lastIndex, newestSnapshot?.index ?? 0);

  // The listed entries.
  const lo = from ?? 0;
  const hi = to ?? Number.MAX_SAFE_INTEGER;
  const describe = (e: RawEntry): InspectedEntry => {
    const entry: InspectedEntry = {
      index: e.index,
      term: e.term,
      type: ENTRY_TYPES[e.type],
      length: e.data.length,
      file: e.file,
      offset: e.offset,
    };
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
  };
  const listed = new Map<number, InspectedEntry>();
  for (const e of raw) {
    if (e.index < lo || e.index > hi) continue;
    const entry = describe(e);
    listed.set(e.index, entry);
    result.entries.push(entry);
  }

  // The configuration as of `at` (or the end): the last change entry, else a snapshot's.
  const upTo = at ?? lastKnown;
  for (let i = raw.length - 1; i >= 0; i--) {
    const e = raw[i]!;
    if (e.index > upTo || e.type !== 3) continue;
    try {
      const members = decodeConfiguration(e.data, (o, w) =>
        corrupt(join(root, e.file), e.offset + o, w),
      );
      result.configuration = { index: e.index, source: `entry ${e.index} (${e.file})`, members };
      break;
    } catch {
      // reported on the entry when listed
    }
  }
  if (!result.configuration) {
    const snap = [...result.snapshots].reverse().find((s) => s.configurationIndex <= upTo);
    if (snap)
      result.configuration = {
        index: snap.configurationIndex,
        source: snap.metaFile,
        members: snap.configuration,
      };
  }

  // The state at `at`: the newest snapshot at or below it, then the log up to it.
  if (at !== undefined && schema) {
    if (at > lastKnown) {
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `index ${at} is past the end of the log (${lastKnown})`,
        { index: at },
      );
    }
    const base = [...result.snapshots]
      .filter((s) => s.index <= at)
      .sort((a, b) => a.index - b.index || a.term - b.term || a.timestamp - b.timestamp)
      .at(-1);
    const start = base ? base.index + 1 : 1;
    // Entry 1 is always the bootstrap configuration (raft_bootstrap writes it; a joining
    // node receives the leader's), never a command: a log compacted down to 2 still
    // rebuilds from the empty state.
    const firstNeeded = start === 1 ? 2 : start;
    if (
      start <= at &&
      (raw.length === 0 || result.firstIndex > firstNeeded || result.lastIndex < at)
    ) {
      const kept = result.snapshots.map((s) => s.index).join(', ') || 'none';
      throw new PrevailError(
        ErrorCodes.SNAPSHOT_UNREADABLE,
        `the state at ${at} can't be rebuilt: ${base ? `the newest snapshot at or below it is at ${base.index}` : 'no snapshot at or below it is kept'} ` +
          `(snapshots: ${kept}) and the log on disk holds ${raw.length ? `${result.firstIndex}..${result.lastIndex}` : 'no entries'}` +
          (base ? '' : ': the entries before it were compacted away'),
        { index: at },
      );
    }
    const machine = new StateMachine(schema); // no captures: nothing is written
    if (base) {
      try {
        machine.restore(payloads.get(base)!);
      } catch (err) {
        if (isPrevailError(err))
          throw new PrevailError(err.code, `${join(root, base.file)}: ${err.message}`, {
            cause: err,
          });
        throw unreadableSnapshot(
          join(root, base.file),
          HEADER_SIZE,
          `the store can't restore it: ${(err as Error).message}`,
        );
      }
    }
    const handlerErrors: InspectedState['handlerErrors'] = [];
    let applied = 0;
    for (const e of raw) {
      if (e.index < start || e.index > at || e.type !== 1) continue;
      const probe: InspectedEntry = {
        index: e.index,
        term: e.term,
        type: 'command',
        length: e.data.length,
        file: e.file,
        offset: e.offset,
      };
      const payload = decodeCommand(probe, e.data);
      if (!payload)
        throw corrupt(
          join(root, e.file),
          e.offset,
          `entry ${e.index} is not a prevail entry (no PVE1 framing)`,
        );
      let outcome: { error?: unknown };
      try {
        outcome = machine.applyOutcome(payload, e.index, probe.framing!.term);
      } catch (err) {
        const code: ErrorCode = isPrevailError(err) ? err.code : ErrorCodes.CORRUPT_ENTRY;
        throw new PrevailError(
          code,
          `${join(root, e.file)}: at byte ${e.offset}: ${(err as Error).message}`,
          { index: e.index, cause: err },
        );
      }
      applied++;
      if ('error' in outcome) {
        const message = (outcome.error as Error)?.message ?? String(outcome.error);
        handlerErrors.push({ index: e.index, message });
        const shown = listed.get(e.index);
        if (shown) shown.handlerError = message;
      }
    }
    const collections: Record<string, unknown[]> = {};
    const view = machine.view as Record<string, { values(): IterableIterator<unknown> }>;
    for (const name of Object.keys(schema.collections))
      collections[name] = [...view[name]!.values()];
    result.state = {
      index: at,
      snapshot: base ? base.file : null,
      appliedEntries: applied,
      collections,
      stateHash: machine.stateHash(),
      handlerErrors,
    };
  }
  return result;
}

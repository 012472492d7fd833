// The `prevail inspect` command line: flags, rendering, exit codes.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { UsageError } from '../cli/usage.js';
import { isPrevailError } from '../core/errors.js';
import type { Schema } from '../store/schema.js';

import type { InspectOptions, InspectResult, InspectedEntry, InspectedMember } from './results.js';
import { inspectDataDir } from './inspect.js';

export interface Sink {
  write(chunk: string): unknown;
}

export interface RunInspectOptions {
  /** The schema used when `--schema` is absent (the CLI passes the reference service's). */
  defaultSchema?: Schema<any, any>;
  /** Where errors and usage go. Default: process.stderr. */
  err?: Sink;
}

const USAGE =
  'usage: prevail inspect DIR [--at N] [--from N] [--to N] [--json] [--schema path/to/module.mjs[#exportName]]\n';

export function toJson(value: unknown, space?: number): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, k: string, v: unknown) {
      const raw = this[k]; // before toJSON (a Buffer's would give { type, data })
      if (raw instanceof Uint8Array)
        return { $bytes: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex') };
      if (typeof v === 'bigint') return `${v}n`;
      if (v instanceof Map) return Object.fromEntries(v);
      if (v instanceof Set) return [...v];
      return v;
    },
    space,
  );
}

export async function loadSchema(spec: string): Promise<Schema<any, any>> {
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const exportName = hash > 0 ? spec.slice(hash + 1) : undefined;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`--schema ${spec}: can't load ${path}: ${(err as Error).message}`);
  }
  const candidates = exportName ? [exportName] : ['schema', 'default'];
  for (const name of candidates) {
    const s = mod[name] as Schema<any, any> | undefined;
    if (
      s &&
      typeof s === 'object' &&
      typeof s.collections === 'object' &&
      typeof s.commands === 'object'
    )
      return s;
  }
  throw new UsageError(
    `--schema ${spec}: no defineSchema() result exported as ${candidates.join(' or ')}`,
  );
}

function parseIndex(flag: string, value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value))
    throw new UsageError(`${flag} needs a non-negative integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} ${value} is too large`);
  return n;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function table(rows: string[][], indent = '  '): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return (
    rows
      .map(
        (r) =>
          indent +
          r
            .map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]!)))
            .join('  ')
            .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function members(ms: InspectedMember[]): string {
  return ms.map((m) => `${m.id}@${m.address} (${m.role})`).join(', ');
}

function clip(s: string, n = 160): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function describeEntry(e: InspectedEntry): string {
  if (e.type === 'barrier') return `barrier (${e.length} bytes)`;
  if (e.type === 'configuration')
    return e.configuration
      ? `configuration: ${members(e.configuration)}`
      : `configuration, undecodable: ${e.problem}`;
  if (e.command) {
    const date = new Date(e.command.timestamp);
    const when =
      e.command.timestamp && Number.isFinite(date.getTime()) ? ` @ ${date.toISOString()}` : '';
    const failed = e.handlerError ? `  [handler threw: ${e.handlerError}]` : '';
    return `${e.command.name} ${clip(toJson(e.command.args) ?? 'undefined')}${when}${failed}`;
  }
  if (e.store)
    return `store entry ${e.store.kind} ${clip(toJson(e.store.data) ?? 'undefined')} (format ${e.store.format})`;
  const body = e.payload
    ? `${e.payload.length} bytes: ${e.payload.hex.slice(0, 64)}${e.payload.truncated || e.payload.hex.length > 64 ? '…' : ''}`
    : '';
  return e.problem ? `${e.problem}; ${body}` : `payload ${body}`;
}

function render(r: InspectResult): string {
  let s = `data dir ${r.dir}\n`;
  if (r.node) s += `node ${r.node.id}${r.node.address ? ` at ${r.node.address}` : ''}\n`;
  if (r.lock) s += `lock: process ${r.lock.pid} (${r.lock.live ? 'alive' : 'not running'})\n`;
  if (r.metadata)
    s += `metadata: term ${r.metadata.term}, voted for ${r.metadata.votedFor || 'nobody'} (${r.metadata.file}, version ${r.metadata.version})\n`;
  for (const w of r.warnings) s += `warning: ${w}\n`;
  s += `\nsnapshots (${r.snapshots.length}):\n`;
  s += table([
    ['INDEX', 'TERM', 'BYTES', 'CONFIG@', 'STORE', 'FILE'],
    ...r.snapshots.map((x) => [
      String(x.index),
      String(x.term),
      String(x.size),
      String(x.configurationIndex),
      x.store
        ? `base ${x.store.baseIndex} + ${x.store.tailEntries} entries; ${Object.entries(
            x.store.collections,
          )
            .map(([n, c]) => `${n}: ${c.objects}`)
            .join(', ')}`
        : '-',
      x.file,
    ]),
  ]);
  s += `\nsegments (${r.segments.length}), log ${r.lastIndex ? `${r.firstIndex}..${r.lastIndex}` : 'empty'}:\n`;
  s += table([
    ['FIRST', 'LAST', 'ENTRIES', 'BATCHES', 'BYTES', 'FILE'],
    ...r.segments.map((x) => [
      String(x.firstIndex),
      String(x.lastIndex),
      String(x.entries),
      String(x.batches),
      x.open ? `${x.usedBytes}/${x.size}` : String(x.size),
      x.open ? `${x.file} (open)` : x.file,
    ]),
  ]);
  s += `\nentries (${r.entries.length}):\n`;
  s += table([
    ['INDEX', 'TERM', 'TYPE', 'ENTRY'],
    ...r.entries.map((e) => [String(e.index), String(e.term), e.type, describeEntry(e)]),
  ]);
  if (r.configuration)
    s += `\nconfiguration at ${r.configuration.index} (${r.configuration.source}): ${members(r.configuration.members)}\n`;
  if (r.otherFiles.length) s += `\nother files: ${r.otherFiles.join(', ')}\n`;
  if (r.state) {
    const st = r.state;
    s += `\nstate at ${st.index}: ${st.snapshot ? `from ${st.snapshot}` : 'from the empty state'} + ${st.appliedEntries} entries\n`;
    s += `stateHash ${st.stateHash}\n`;
    for (const h of st.handlerErrors) s += `  entry ${h.index}: handler threw: ${h.message}\n`;
    for (const [name, objs] of Object.entries(st.collections)) {
      s += `${name} (${objs.length}):\n`;
      for (const o of objs) s += `  ${toJson(o)}\n`;
    }
  }
  return s;
}

/**
 * `prevail inspect DIR [--at N] [--from N] [--to N] [--json] [--schema module.mjs[#name]]`.
 * Returns the exit code: 0 ok, 1 a corrupt or unreadable dir (the coded error is
 * printed), 2 usage.
 */
export async function runInspect(
  argv: string[],
  out: Sink = process.stdout,
  options: RunInspectOptions = {},
): Promise<number> {
  const err = options.err ?? process.stderr;
  let args = [...argv];
  if (args[0] === 'inspect' && args.slice(1).some((a) => !a.startsWith('--'))) args = args.slice(1);
  let dir: string | undefined;
  let json = false;
  let schemaSpec: string | undefined;
  const opts: InspectOptions = {};
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const eq = a.indexOf('=');
      const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
      const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
      const value = () => inline ?? args[++i];
      if (flag === '--json') json = true;
      else if (flag === '--at') opts.at = parseIndex('--at', value());
      else if (flag === '--from') opts.from = parseIndex('--from', value());
      else if (flag === '--to') opts.to = parseIndex('--to', value());
      else if (flag === '--schema') {
        schemaSpec = value();
        if (!schemaSpec) throw new UsageError('--schema needs a module path');
      } else if (flag === '--help' || flag === '-h') {
        out.write(USAGE);
        return 0;
      } else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
      else if (dir === undefined) dir = a;
      else throw new UsageError(`unexpected argument ${a}`);
    }
    if (dir === undefined) throw new UsageError('DIR is required');
    if (opts.from !== undefined && opts.to !== undefined && opts.from > opts.to)
      throw new UsageError('--from is after --to');
    const schema = schemaSpec ? await loadSchema(schemaSpec) : options.defaultSchema;
    if (opts.at !== undefined) {
      if (!schema)
        throw new UsageError('--at needs --schema (the state machine to replay the log with)');
      opts.schema = schema;
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`prevail inspect: ${e.message}\n${USAGE}`);
    return 2;
  }
  try {
    const result = await inspectDataDir(dir, opts);
    out.write(json ? `${toJson(result, 2)}\n` : render(result));
    return 0;
  } catch (e) {
    if (isPrevailError(e)) {
      err.write(`prevail inspect: ${e.code}: ${e.message}\n`);
      if (json)
        out.write(
          `${toJson({ error: { code: e.code, message: e.message, index: e.index } }, 2)}\n`,
        );
      return 1;
    }
    throw e;
  }
}

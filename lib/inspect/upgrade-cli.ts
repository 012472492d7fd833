// The `prevail upgrade-check` command line: flags, rendering, exit codes (as `prevail inspect`).
import { UsageError } from '../cli/usage.js';
import { isPrevailError } from '../core/errors.js';

import { loadSchema, toJson, type Sink } from './cli.js';
import {
  upgradeCheck,
  type UpgradeCheckOptions,
  type UpgradeCheckResult,
} from './upgrade-check.js';

const USAGE =
  'usage: prevail upgrade-check DIR --schema new.mjs[#exportName] [--old old.mjs[#exportName]] [--json]\n';

function outcome(o: { ok: boolean; code?: string | null; message?: string }): string {
  return o.ok ? 'result' : `error ${o.code ?? ''}${o.code ? ': ' : ''}${o.message ?? ''}`;
}

function renderCommands(r: UpgradeCheckResult): string {
  let s = '';
  for (const u of r.unknownCommands)
    s += `unknown command ${JSON.stringify(u.name)}: ${u.count} entries, first at ${u.firstIndex}\n`;
  if (r.fatal) s += `replay stopped at ${r.fatal.index}: ${r.fatal.code}: ${r.fatal.message}\n`;
  const which = r.old ? ' the old code did not raise' : '';
  s += `handler errors${which}: ${r.handlerErrors.length ? '' : 'none'}\n`;
  for (const h of r.handlerErrors)
    s += `  ${h.command}: ${h.count} × ${h.code ?? 'no code'}, first at ${h.firstIndex}: ${h.message}\n`;
  for (const c of r.changedOutcomes ?? [])
    s += `changed outcome ${c.command}: ${c.count} entries, first at ${c.firstIndex}: old ${outcome(c.old)}, new ${outcome(c.new)}\n`;
  return s;
}

function renderHashes(r: UpgradeCheckResult): string {
  let s = `${r.recorded.compared} recorded hashes compared, ${r.recorded.mismatched} differ\n`;
  for (const c of r.recorded.checks) {
    const how =
      c.match === null
        ? 'not reached'
        : c.match
          ? 'match'
          : `DIFFERS (change in ${c.after + 1}..${c.index})`;
    s += `  at ${c.index} (${c.snapshot}): recorded ${c.recorded}, replayed ${c.replayed ?? '-'}: ${how}\n`;
  }
  const o = r.old;
  if (o) {
    if (o.fatal) s += `old code stopped at ${o.fatal.index}: ${o.fatal.code}: ${o.fatal.message}\n`;
    const d = o.firstDifference;
    s += d
      ? `effects first differ from the old code's at ${d.index} (${d.command}): old ${d.oldEffects} after ${outcome(d.oldOutcome)}, new ${d.newEffects} after ${outcome(d.newOutcome)}\n`
      : 'effects match the old code at every entry\n';
    if (o.stateHash)
      s += `stateHash ${o.stateHash.match ? 'matches the old code' : `differs: old ${o.stateHash.old}, new ${o.stateHash.new}`}\n`;
  } else if (r.recorded.compared === 0) {
    s += '0 hashes compared: pass --old (the code that wrote the dir) to compare at every entry\n';
  }
  return s;
}

function render(r: UpgradeCheckResult): string {
  let s = `data dir ${r.dir}\n`;
  for (const w of r.warnings) s += `warning: ${w}\n`;
  s += `replayed ${r.replayed} entries from ${r.start.snapshot ? `${r.start.snapshot} (base ${r.start.index})` : 'the empty state'} to ${r.lastIndex}\n`;
  s += renderCommands(r) + renderHashes(r);
  s += `stateHash ${r.stateHash}\n`;
  s += r.ok ? 'ok\n' : `FAILED:\n${r.problems.map((p) => `  ${p}\n`).join('')}`;
  return s;
}

/** The flags; throws UsageError. Null: --help was asked for. */
async function parse(
  args: string[],
): Promise<{ dir: string; json: boolean; opts: UpgradeCheckOptions } | null> {
  let dir: string | undefined;
  let json = false;
  const specs: { schema?: string; old?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = () => (a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : args[++i]);
    if (flag === '--json') json = true;
    else if (flag === '--schema' || flag === '--old') {
      const v = value();
      if (!v) throw new UsageError(`${flag} needs a module path`);
      specs[flag.slice(2) as 'schema' | 'old'] = v;
    } else if (flag === '--help' || flag === '-h') return null;
    else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
    else if (dir === undefined) dir = a;
    else throw new UsageError(`unexpected argument ${a}`);
  }
  if (dir === undefined) throw new UsageError('DIR is required');
  if (!specs.schema) throw new UsageError('--schema is required (the new code to check)');
  const opts: UpgradeCheckOptions = { schema: await loadSchema(specs.schema) };
  if (specs.old) opts.old = await loadSchema(specs.old);
  return { dir, json, opts };
}

/**
 * `prevail upgrade-check DIR --schema new.mjs [--old old.mjs] [--json]`. Returns the exit code:
 * 0 the new code replays the dir as the old did, 1 a problem found (or the dir unreadable: the
 * coded error is printed), 2 usage.
 */
export async function runUpgradeCheck(
  argv: string[],
  out: Sink = process.stdout,
  options: { err?: Sink } = {},
): Promise<number> {
  const err = options.err ?? process.stderr;
  const args = argv[0] === 'upgrade-check' ? argv.slice(1) : argv;
  let parsed: Awaited<ReturnType<typeof parse>>;
  try {
    parsed = await parse(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`prevail upgrade-check: ${e.message}\n${USAGE}`);
    return 2;
  }
  if (!parsed) {
    out.write(USAGE);
    return 0;
  }
  try {
    const result = await upgradeCheck(parsed.dir, parsed.opts);
    out.write(parsed.json ? `${toJson(result, 2)}\n` : render(result));
    return result.ok ? 0 : 1;
  } catch (e) {
    if (!isPrevailError(e)) throw e;
    err.write(`prevail upgrade-check: ${e.code}: ${e.message}\n`);
    if (parsed.json)
      out.write(`${toJson({ error: { code: e.code, message: e.message, index: e.index } }, 2)}\n`);
    return 1;
  }
}

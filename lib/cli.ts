#!/usr/bin/env node
// The `prevail` command: `serve` runs one node of the key-value service (lib/cli/serve.ts over
// lib/service/); `status`, `members`, `transfer`, `snapshot`, `activate` and `reload` talk to a running
// node over its HTTP API; `certs` creates certificates (lib/cli/certs.ts over lib/certs/).
import { readFileSync } from 'node:fs';

import { fail, positiveInt } from './cli/args.js';
import {
  RequestFailed,
  clientOptions,
  describeError,
  onLeader,
  print,
  request,
} from './cli/client.js';
import { addMember, listMembers, status } from './cli/cluster-view.js';
import { serve } from './cli/serve.js';
import { CERTS_USAGE, COMMAND_USAGE, SERVE_USAGE, UsageError } from './cli/usage.js';
import { isPrevailError } from './core/errors.js';
import { kvSchema } from './service/kv-schema.js';

const USAGE = `Usage: prevail <command> [options]
       prevail <command> --help      that command's usage and options
       prevail --version             this package's version

Commands:
  serve                          run one node of the replicated key-value service
  status                         a node's status (JSON); several nodes: a table
  members                        list the members (a table; --json)
  members add ID HOST:PORT       add a member (it catches up as a non-voter, then votes)
      [--role voter|standby|spare]
  members remove ID              remove a member
  transfer [ID]                  hand leadership to ID, or to the most up-to-date voter
  snapshot                       have the leader write a snapshot now
  activate [VERSION]             activate schema version VERSION (default: the newest
                                 every voter's code supports) on every replica
  reload                         have each --node read its certificates and --auth
                                 file again (as SIGHUP does)
  backup --out DIR [--capture false]
                                 have --node take a backup while it runs, and write
                                 it into DIR (checked against its SHA-256); --capture
                                 false: no fresh capture (the last one plus the log)
  restore BACKUP --data-dir DIR --id N --address HOST:PORT [--cluster "1=HOST:PORT,..."]
                                 seed a new data dir from a backup: a single node, or
                                 (with --cluster, the same on every member) a new cluster
  inspect DIR [options]          read a data dir offline (prevail inspect --help)
  upgrade-check DIR --schema NEW.mjs [--old OLD.mjs] [--json]
                                 replay a stopped node's data dir (or a copy) with new
                                 code: unknown commands, handler errors, effects hashes
                                 against the old code's (prevail upgrade-check --help)
  certs ca|node|client|show      create a CA, member and client certificates, or show
                                 one (prevail certs --help)

client options (status, members, transfer, snapshot, activate, reload, backup):
  --node URL[,URL...]            the node(s) to ask, repeated or a comma list (default
                                 $PREVAIL_NODE or http://127.0.0.1:8001); leader-only
                                 commands try each in turn until the leader answers
  --timeout MS                   give up after this long (default 60000)
  --token TOKEN                  bearer token (default $PREVAIL_TOKEN)
  --ca FILE                      CA to verify an https node with
  --cert FILE --key FILE         client certificate to authenticate with

Exit status: 0 done, 1 the request or the node failed, 2 bad usage, 3 members add: added
but the new member is not reachable yet.
serve's options: prevail serve --help.
`;

// ---- client commands -------------------------------------------------------------------

interface SchemaFacts {
  active: number;
  activations: { index: number; version: number }[];
  code: { oldest: number; newest: number };
  nodes: { id: number; oldest: number; newest: number; canRunActive: boolean }[];
  holdingBack: number[];
  failed: { version: number; message: string }[];
}

/** `prevail status`'s schema line: the active version, who holds the next back, who can't run it. */
function schemaLine(s: SchemaFacts | undefined): string | null {
  if (typeof s?.active !== 'number') return null; // a node of a build from before schema versions
  const since = s.activations.filter((a) => a.version === s.active).at(-1);
  const range = (r: { oldest: number; newest: number }) =>
    r.oldest === r.newest ? `${r.oldest}` : `${r.oldest}-${r.newest}`;
  const parts = [
    `schema: version ${s.active} active ${since ? `since index ${since.index}` : 'from the start'}`,
    `this node's code supports ${range(s.code)}`,
  ];
  if (s.holdingBack.length)
    parts.push(`version ${s.code.newest} held back by node ${s.holdingBack.join(', ')}`);
  for (const n of s.nodes.filter((x) => !x.canRunActive))
    parts.push(`node ${n.id} (code ${range(n)}) can't run version ${s.active}`);
  for (const f of s.failed) parts.push(`activating version ${f.version} failed: ${f.message}`);
  return parts.join('; ');
}

async function members(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === 'add') return addMember(rest);
  if (sub === 'remove') {
    const { client, positionals } = clientOptions(rest);
    if (positionals.length !== 1) fail('usage: prevail members remove ID');
    print(await onLeader(client, 'DELETE', `/admin/members/${positiveInt('ID', positionals[0])}`));
    return;
  }
  if (sub === undefined || sub.startsWith('-')) return listMembers(args);
  fail(`members takes add, remove or no argument, got ${JSON.stringify(sub)}`);
}

async function transfer(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length > 1) fail('usage: prevail transfer [ID]');
  const id = positiveInt('ID', positionals[0]);
  const answer = (await onLeader(
    client,
    'POST',
    '/admin/transfer',
    id === undefined ? {} : { id },
  )) as { leader: { id: number }; unchanged?: boolean };
  print(answer);
  if (answer.unchanged) console.error(`prevail transfer: node ${answer.leader.id} already leads`);
}

/** Activates a schema version through the leader (any node forwards it); prints { active }. */
async function activate(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length > 1) fail('usage: prevail activate [VERSION]');
  const version = positiveInt('VERSION', positionals[0]);
  print(
    await onLeader(
      client,
      'POST',
      '/admin/schema/activate',
      version === undefined ? {} : { version },
    ),
  );
}

async function snapshot(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length) fail('snapshot takes no arguments');
  print(await onLeader(client, 'POST', '/admin/snapshot'));
}

/** Reloads every node named by --node (each its own files), in turn; fails if one refuses. */
async function reload(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length) fail('reload takes no arguments');
  const results: Record<string, unknown> = {};
  const failures: string[] = [];
  for (const node of client.nodes) {
    const answer = await request(client, node, 'POST', '/admin/reload');
    if (answer.status === 200) results[node] = answer.body;
    else failures.push(describeError(node, answer, client));
  }
  print(results);
  if (failures.length) throw new RequestFailed(failures.join('\n'));
}

// ---- main ------------------------------------------------------------------------------

const commands: Record<string, (args: string[]) => Promise<void>> = {
  serve,
  status: (args) => status(args, schemaLine),
  members,
  transfer,
  snapshot,
  activate,
  reload,
  // Loaded on use: the backup and certificate code stays out of serve's start.
  backup: async (args) => (await import('./cli/backup.js')).backupCommand(args),
  restore: async (args) => (await import('./cli/backup.js')).restoreCommand(args),
  certs: async (args) => (await import('./cli/certs.js')).certs(args),
};

/** `prevail <command> --help` (and `prevail help <command>`): that command's usage, else the global one. */
function usageOf(command: string | undefined): string {
  if (command === 'serve') return SERVE_USAGE;
  if (command === 'certs') return CERTS_USAGE;
  return (command !== undefined && COMMAND_USAGE[command]) || USAGE;
}

function version(): string {
  // dist/cli.js → the package's own package.json.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return `prevail ${pkg.version}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'help') {
    process.stdout.write(usageOf(args[0]));
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(version());
    return 0;
  }
  if (command === 'inspect') {
    const { runInspect } = await import('./inspect/index.js');
    return runInspect(args, process.stdout, { defaultSchema: kvSchema });
  }
  if (command === 'upgrade-check') {
    const { runUpgradeCheck } = await import('./inspect/index.js');
    return runUpgradeCheck(args, process.stdout);
  }
  const run = commands[command];
  if (!run) {
    console.error(`prevail: unknown command ${JSON.stringify(command)}; see prevail --help`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h') || (command === 'certs' && !args.length)) {
    process.stdout.write(usageOf(command));
    return args.length === 0 ? 2 : 0;
  }
  return runCommand(command, run, args);
}

async function runCommand(
  command: string,
  run: (args: string[]) => Promise<void>,
  args: string[],
): Promise<number> {
  try {
    await run(args);
    return 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (
      err instanceof UsageError ||
      (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
    ) {
      // The error, then the command's usage: what it takes instead.
      console.error(`prevail ${command}: ${(err as Error).message}\n`);
      process.stderr.write(usageOf(command));
      return 2;
    }
    if (err instanceof RequestFailed) {
      console.error(`prevail ${command}: ${err.message}`);
      return err.exitCode;
    }
    if (isPrevailError(err)) {
      console.error(`prevail ${command}: ${err.code}: ${err.message}`);
      return 1;
    }
    console.error(`prevail ${command}:`, err);
    return 1;
  }
}

const exitCode = await main(process.argv.slice(2));
// A running serve keeps the loop open until a signal ends it; anything else ends here.
if (exitCode !== 0) process.exit(exitCode);

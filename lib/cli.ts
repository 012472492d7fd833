#!/usr/bin/env node
// The `prevail` command: `serve` runs one node of the key-value service (lib/cli/serve.ts over
// lib/service/); `status`, `members`, `transfer`, `snapshot` and `reload` talk to a running node over its
// HTTP API; `certs` creates certificates (lib/cli/certs.ts over lib/certs/).
import { parseArgs } from 'node:util';

import { fail, hostPort, positiveInt } from './cli/args.js';
import { call, clientTls, type Transport } from './cli/http-client.js';
import { serve } from './cli/serve.js';
import { CERTS_USAGE, UsageError } from './cli/usage.js';
import { ErrorCodes, isPrevailError } from './core/errors.js';
import { kvSchema } from './service/kv-schema.js';

const USAGE = `Usage: prevail <command> [options]

Commands:
  serve                          run one node of the replicated key-value service
  status                         print a node's status (JSON)
  members add ID HOST:PORT       add a member (it catches up as a non-voter, then votes)
      [--role voter|standby|spare]
  members remove ID              remove a member
  transfer [ID]                  hand leadership to ID, or to the most up-to-date voter
  snapshot                       have the leader write a snapshot now
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

serve options:
  --data DIR                     data directory (required; one node id per directory)
  --id N                         this node's id (default 1)
  --raft HOST:PORT               raft address (default: this id's entry in --cluster)
  --http HOST:PORT               HTTP address (default 127.0.0.1:8001)
  --channel HOST:PORT            peer channel for forwarded writes and reads (default:
                                 the --raft host, any free port)
  --cluster "1=HOST:PORT,2=..."  the initial members; read only when DIR is empty
  --join                         start empty and wait to be added (prevail members add)
  --election-timeout MS          default 200
  --heartbeat MS                 default 40
  --snapshot-threshold N         entries between snapshots (default 8192)
  --snapshot-trailing N          entries kept after a snapshot (default 2048)
  --no-forward                   answer writes on a follower with 503 and the leader
                                 instead of forwarding them
  --max-body BYTES               largest request body (default 1048576)
  --auth FILE                    users, tokens and permissions (JSON; docs/operations.md)
  --ca FILE --cert FILE --key FILE
                                 serve HTTPS with this CA, certificate and key (PEM);
                                 client certificates from the CA authenticate
  --insecure                     allow --http on a non-loopback address without --auth

client options (status, members, transfer, snapshot, reload, backup):
  --node URL[,URL...]            the node(s) to ask (default $PREVAIL_NODE or
                                 http://127.0.0.1:8001); leader-only commands try
                                 each in turn until the leader answers
  --timeout MS                   give up after this long (default 60000)
  --token TOKEN                  bearer token (default $PREVAIL_TOKEN)
  --ca FILE                      CA to verify an https node with
  --cert FILE --key FILE         client certificate to authenticate with

Exit status: 0 done, 1 the request or the node failed, 2 bad usage.
SIGTERM or SIGINT stops serve gracefully (the leader hands over first) with status 0.
SIGHUP makes serve read --ca/--cert/--key and --auth again; on a bad file it keeps the old.
`;

// ---- client commands -------------------------------------------------------------------

interface Client extends Transport {
  nodes: string[];
}

function clientOptions(args: string[], extra: Record<string, { type: 'string' }> = {}) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      node: { type: 'string' },
      timeout: { type: 'string' },
      token: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ...extra,
    },
  });
  const nodes = (values.node ?? process.env.PREVAIL_NODE ?? 'http://127.0.0.1:8001')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '')
    .map((u) => {
      const withScheme = /^https?:\/\//.test(u) ? u : `http://${u}`;
      try {
        return new URL(withScheme).origin;
      } catch {
        return fail(`--node must be a URL such as http://127.0.0.1:8001, got ${JSON.stringify(u)}`);
      }
    });
  if (nodes.length === 0) fail('--node is empty');
  const token = (values.token as string | undefined) ?? process.env.PREVAIL_TOKEN;
  const client: Client = {
    nodes,
    timeoutMs: positiveInt('--timeout', values.timeout as string | undefined, 60_000)!,
    ...(token ? { token } : {}),
    tls: clientTls(values as { ca?: string; cert?: string; key?: string }),
  };
  return { client, values: values as Record<string, string | undefined>, positionals };
}

class RequestFailed extends Error {
  constructor(
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

interface Answer {
  status: number;
  body: any;
}

async function request(
  client: Client,
  node: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  let answer: { status: number; text: string };
  try {
    answer = await call(client, `${node}${path}`, method, body);
  } catch (err) {
    throw new RequestFailed(`${node}: ${method} ${path} failed: ${(err as Error).message}`);
  }
  const text = answer.text;
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: answer.status, body: parsed };
}

function describeError(node: string, answer: Answer, client?: Client): string {
  const e = answer.body?.error;
  if (!e) return `${node}: HTTP ${answer.status}`;
  if (answer.status === 401)
    return `${node}: ${e.code}: ${e.message}${client?.token ? '' : ' (give --token TOKEN, set PREVAIL_TOKEN, or --cert/--key for https)'}`;
  const leader = e.leader
    ? ` (the leader is node ${e.leader.id} at raft address ${e.leader.address})`
    : '';
  return `${node}: ${e.code}: ${e.message}${leader}`;
}

/** Sends a leader-only request to each node in turn until one answers other than NOT_LEADER. */
async function onLeader(
  client: Client,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const failures: string[] = [];
  for (const node of client.nodes) {
    let answer: Answer;
    try {
      answer = await request(client, node, method, path, body);
    } catch (err) {
      failures.push((err as Error).message);
      continue;
    }
    if (answer.status === 200) return answer.body;
    failures.push(describeError(node, answer, client));
    const code = answer.body?.error?.code;
    if (code !== ErrorCodes.NOT_LEADER && code !== ErrorCodes.UNAVAILABLE) break;
  }
  throw new RequestFailed(failures.join('\n'));
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

async function status(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length) fail('status takes no arguments');
  const node = client.nodes[0]!;
  const answer = await request(client, node, 'GET', '/status');
  if (answer.status !== 200) throw new RequestFailed(describeError(node, answer, client));
  print(answer.body);
}

async function members(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === 'add') {
    const { client, values, positionals } = clientOptions(rest, { role: { type: 'string' } });
    if (positionals.length !== 2)
      fail('usage: prevail members add ID HOST:PORT [--role voter|standby|spare]');
    const role = values.role ?? 'voter';
    if (!['voter', 'standby', 'spare'].includes(role))
      fail(`--role must be voter, standby or spare, got ${JSON.stringify(role)}`);
    const id = positiveInt('ID', positionals[0])!;
    print(
      await onLeader(client, 'POST', '/admin/members', {
        id,
        address: hostPort('HOST:PORT', positionals[1]!),
        role,
      }),
    );
  } else if (sub === 'remove') {
    const { client, positionals } = clientOptions(rest);
    if (positionals.length !== 1) fail('usage: prevail members remove ID');
    print(await onLeader(client, 'DELETE', `/admin/members/${positiveInt('ID', positionals[0])}`));
  } else {
    fail(`members needs add or remove, got ${JSON.stringify(sub ?? '')}`);
  }
}

async function transfer(args: string[]): Promise<void> {
  const { client, positionals } = clientOptions(args);
  if (positionals.length > 1) fail('usage: prevail transfer [ID]');
  const id = positiveInt('ID', positionals[0]);
  print(await onLeader(client, 'POST', '/admin/transfer', id === undefined ? {} : { id }));
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
  status,
  members,
  transfer,
  snapshot,
  reload,
  // Loaded on use: the backup and certificate code stays out of serve's start.
  backup: async (args) => (await import('./cli/backup.js')).backupCommand(args, clientOptions),
  restore: async (args) => (await import('./cli/backup.js')).restoreCommand(args),
  certs: async (args) => (await import('./cli/certs.js')).certs(args),
};

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'inspect') {
    const { runInspect } = await import('./inspect/index.js');
    return runInspect(args, process.stdout, { defaultSchema: kvSchema });
  }
  if (command === 'upgrade-check') {
    const { runUpgradeCheck } = await import('./inspect/index.js');
    return runUpgradeCheck(args, process.stdout);
  }
  if (
    command === 'certs' &&
    (args.length === 0 || args.includes('--help') || args.includes('-h'))
  ) {
    process.stdout.write(CERTS_USAGE);
    return args.length === 0 ? 2 : 0;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const run = commands[command];
  if (!run) {
    console.error(`prevail: unknown command ${JSON.stringify(command)}; see prevail --help`);
    return 2;
  }
  try {
    await run(args);
    return 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (
      err instanceof UsageError ||
      (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
    ) {
      console.error(`prevail ${command}: ${(err as Error).message}; see prevail --help`);
      return 2;
    }
    if (err instanceof RequestFailed) {
      console.error(`prevail ${command}: ${err.message}`);
      return 1;
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

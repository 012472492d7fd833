// The client commands' shared part: their options (--node, --timeout, --token, TLS), one request
// to a node with its answer parsed, and a leader-only request tried on each node in turn.
import { parseArgs } from 'node:util';

import { ErrorCodes } from '../core/errors.js';
import { fail, positiveInt } from './args.js';
import { call, clientTls, type Transport } from './http-client.js';

export interface Client extends Transport {
  nodes: string[];
}

type Extra = Record<string, { type: 'string' } | { type: 'boolean' }>;

/** --node (repeated, or a comma list) as origins; a bad URL is a usage error. */
function nodeUrls(given: string[] | undefined): string[] {
  const raw = given?.length ? given : [process.env.PREVAIL_NODE ?? 'http://127.0.0.1:8001'];
  const nodes = raw
    .flatMap((v) => v.split(','))
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
  return [...new Set(nodes)];
}

export function clientOptions(args: string[], extra: Extra = {}) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      node: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      token: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      crl: { type: 'string' },
      ...extra,
    },
  });
  const token = (values.token as string | undefined) ?? process.env.PREVAIL_TOKEN;
  const client: Client = {
    nodes: nodeUrls(values.node as string[] | undefined),
    timeoutMs: positiveInt('--timeout', values.timeout as string | undefined, 60_000)!,
    ...(token ? { token } : {}),
    tls: clientTls(values as { ca?: string; cert?: string; key?: string; crl?: string }),
  };
  return {
    client,
    values: values as Record<string, string | boolean | undefined>,
    positionals,
  };
}

/** A request that failed (exit 1); the message says which node and why. */
export class RequestFailed extends Error {
  constructor(
    message: string,
    readonly body?: unknown,
    /** The process's exit status: 1, or 3 for `members add` whose member is not reachable yet. */
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface Answer {
  status: number;
  body: any;
}

export async function request(
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

export function describeError(node: string, answer: Answer, client?: Client): string {
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
export async function onLeader(
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

export function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Rows as a text table: a header, then each row, columns padded to their widest cell. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// `prevail status` and `prevail members` (list and add): what the nodes given with --node say
// about themselves and the configuration, as a table or JSON.
import type { RaftNodeStatus } from '../engine/types.js';
import { fail, hostPort, positiveInt } from './args.js';
import {
  RequestFailed,
  clientOptions,
  describeError,
  onLeader,
  print,
  request,
  table,
  type Client,
} from './client.js';

type MemberFacts = RaftNodeStatus['members'][number];

/** The part of GET /status these commands read (the node's RaftNodeStatus, and the store's health and schema). */
type NodeStatus = Pick<
  RaftNodeStatus,
  'id' | 'role' | 'term' | 'leader' | 'commitIndex' | 'appliedIndex' | 'lastIndex' | 'members'
> & {
  health?: { ready: boolean; lag: number | null; diverged: unknown };
  schema?: unknown;
};

type Asked = { node: string; status: NodeStatus } | { node: string; error: string };

/** GET /status of every --node at once; a node that fails is an { error }, not a throw. */
async function askAll(client: Client): Promise<Asked[]> {
  return Promise.all(
    client.nodes.map(async (node): Promise<Asked> => {
      try {
        const answer = await request(client, node, 'GET', '/status');
        if (answer.status === 200) return { node, status: answer.body as NodeStatus };
        return { node, error: describeError(node, answer, client) };
      } catch (err) {
        return { node, error: (err as Error).message };
      }
    }),
  );
}

function healthOf(s: NodeStatus): string {
  if (s.health?.diverged) return 'diverged';
  return s.health?.ready ? 'ready' : 'not ready';
}

/**
 * One node: its /status as JSON (and the schema line on stderr). Several: a table, a row per
 * node, `down` for one that does not answer (exit 1), or with --json the statuses as an array.
 */
export async function status(
  args: string[],
  schemaLine: (schema: any) => string | null,
): Promise<void> {
  const { client, values, positionals } = clientOptions(args, { json: { type: 'boolean' } });
  if (positionals.length) fail('status takes no arguments');
  if (client.nodes.length === 1 && !values.json) {
    const node = client.nodes[0]!;
    const answer = await request(client, node, 'GET', '/status');
    if (answer.status !== 200) throw new RequestFailed(describeError(node, answer, client));
    print(answer.body);
    // Said apart from the JSON (stdout stays one document): what the schema versions wait on.
    const line = schemaLine(answer.body?.schema);
    if (line) console.error(line);
    return;
  }
  const asked = await askAll(client);
  if (values.json) print(asked.map((a) => ('status' in a ? a.status : a)));
  else console.log(statusTable(asked));
  const down = asked.filter((a): a is { node: string; error: string } => 'error' in a);
  if (down.length) throw new RequestFailed(down.map((a) => a.error).join('\n'));
}

function statusTable(asked: Asked[]): string {
  const rows = asked.map((a) => {
    if ('error' in a) return ['?', 'down', '-', '-', '-', 'down', a.node];
    const s = a.status;
    return [s.id, s.role, s.term, s.appliedIndex, s.health?.lag ?? '?', healthOf(s), a.node];
  });
  return table(['ID', 'ROLE', 'TERM', 'APPLIED', 'LAG', 'HEALTH', 'NODE'], rows);
}

/** The leader's status if one of the nodes is the leader, else the first that answered. */
async function bestView(client: Client): Promise<{ view: NodeStatus; answered: NodeStatus[] }> {
  const asked = await askAll(client);
  const answered = asked.flatMap((a) => ('status' in a ? [a.status] : []));
  const view = answered.find((s) => s.role === 'leader') ?? answered[0];
  if (!view)
    throw new RequestFailed(asked.map((a) => ('error' in a ? a.error : a.node)).join('\n'));
  return { view, answered };
}

/**
 * `prevail members`: the configuration. Asked of the leader, each member's lag behind its
 * commit index (from the leader's match index) and whether it was ever reached; a member whose
 * node answered this command is `up`.
 */
export async function listMembers(args: string[]): Promise<void> {
  const { client, values, positionals } = clientOptions(args, { json: { type: 'boolean' } });
  if (positionals.length) fail(`members takes add, remove or no argument`);
  const { view, answered } = await bestView(client);
  if (values.json) {
    print({ leader: view.leader, from: view.id, members: view.members });
    return;
  }
  const fromLeader = view.role === 'leader';
  const up = new Set(answered.map((s) => s.id));
  const rows = view.members.map((m) => {
    const lag =
      fromLeader && m.matchIndex !== undefined ? Math.max(0, view.commitIndex - m.matchIndex) : '?';
    let state = up.has(m.id) ? 'up' : '?';
    if (m.id === view.leader?.id) state = 'leader';
    else if (fromLeader && m.matchIndex === 0) state = 'not reached';
    return [m.id, m.address, m.role, state, lag];
  });
  console.log(table(['ID', 'ADDRESS', 'ROLE', 'STATE', 'LAG'], rows));
  if (!fromLeader)
    console.error(
      `(asked node ${view.id}, a ${view.role}: give the leader's URL among --node for each member's state and lag)`,
    );
}

/**
 * `prevail members add`: adds the member through the leader, then makes sure it was reached.
 * One that was not (not started yet, a wrong address, a firewall) stays in the configuration
 * as a spare: say so, how to go on and how to undo it (exit 3).
 */
export async function addMember(args: string[]): Promise<void> {
  const extra = { role: { type: 'string' }, wait: { type: 'string' } } as const;
  const { client, values, positionals } = clientOptions(args, extra);
  if (positionals.length !== 2)
    fail('usage: prevail members add ID HOST:PORT [--role voter|standby|spare]');
  const role = (values.role as string | undefined) ?? 'voter';
  if (!['voter', 'standby', 'spare'].includes(role))
    fail(`--role must be voter, standby or spare, got ${JSON.stringify(role)}`);
  const id = positiveInt('ID', positionals[0])!;
  const address = hostPort('HOST:PORT', positionals[1]!);
  const waitMs = Math.min(
    positiveInt('--wait', values.wait as string | undefined, 10_000)!,
    client.timeoutMs,
  );
  let added: unknown;
  try {
    added = await onLeader(client, 'POST', '/admin/members', { id, address, role });
  } catch (err) {
    if (!(err instanceof RequestFailed)) throw err;
    const member = await memberIn(client, id).catch(() => undefined);
    if (!member) throw err; // not added: the error as it is
    throw notReachable(id, address, role, member.role, err.message);
  }
  // A voter or standby was caught up by the leader before it answered; a spare was not.
  if (role === 'spare' && !(await reached(client, id, waitMs)))
    throw notReachable(id, address, role, role, `no answer within ${waitMs} ms`);
  print(added);
}

async function memberIn(client: Client, id: number): Promise<MemberFacts | undefined> {
  const { view } = await bestView(client);
  return view.members.find((m) => m.id === id);
}

/** Polls the leader's view until member `id` has matched an entry, for up to `waitMs`. */
async function reached(client: Client, id: number, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const m = await memberIn(client, id).catch(() => undefined);
    if ((m?.matchIndex ?? 0) > 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function notReachable(
  id: number,
  address: string,
  role: string,
  now: string,
  cause: string,
): RequestFailed {
  const retry = role === now ? '' : ` and run this command again to make it a ${role}`;
  return new RequestFailed(
    `added node ${id} at ${address} as a ${now}, but it is not reachable yet (${cause.split('\n').at(-1)}): ` +
      `start it with \`prevail serve --id ${id} --raft ${address} --join …\`${retry}, ` +
      `or undo with \`prevail members remove ${id}\``,
    undefined,
    3,
  );
}

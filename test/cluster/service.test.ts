// The reference service (lib/service/) and the prevail CLI (lib/cli.ts), end to end: every
// node is a real `node dist/cli.js serve` child process with its own data dir, on loopback
// ports. Waits are bounded; nothing asserts on timing; every child is killed by pid in afterAll.
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import {
  ServeProcess,
  ServiceCluster,
  runCli,
  waitFor,
  type HttpAnswer,
} from '../helpers/cluster.js';

/** Well above the defaults: these tests share two cores with other suites (see cluster.test.ts). */
const timing = ['--election-timeout', '1000', '--heartbeat', '100'];
const MiB = 1024 * 1024;

type ErrorBody = {
  error: {
    code: string;
    message: string;
    leader?: { id: number; address: string } | null;
    mayHaveApplied?: boolean;
  };
};

function expectError(answer: HttpAnswer, status: number, code: string): ErrorBody['error'] {
  expect({ status: answer.status, code: (answer.body as ErrorBody)?.error?.code }).toEqual({
    status,
    code,
  });
  expect(typeof (answer.body as ErrorBody).error.message).toBe('string');
  return (answer.body as ErrorBody).error;
}

type Member = { id: number; role: string };

const kv = (key: string) => `/kv/${encodeURIComponent(key)}`;

/** Waits (bounded) until `node` answers /health/ready with 200. */
function healthReady(
  node: ServeProcess,
  what = `node ${node.spec.id} ready`,
  timeoutMs?: number,
): Promise<boolean> {
  return waitFor(
    what,
    async () => (await node.request('GET', '/health/ready')).status === 200,
    timeoutMs,
  );
}

describe('one node', () => {
  let cluster: ServiceCluster;
  let node: ServeProcess;
  beforeAll(async () => {
    cluster = await ServiceCluster.create(1);
    node = await cluster.leader();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('PUT, GET and DELETE a key; indexes grow; a missing key is 404', async () => {
    const put = await node.request('PUT', kv('greeting'), 'hello, wörld ✓');
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ index: expect.any(Number) });
    const got = await node.request('GET', kv('greeting'));
    expect(got.status).toBe(200);
    expect(got.body.value).toBe('hello, wörld ✓');
    expect(got.body.index).toBeGreaterThanOrEqual(put.body.index);

    const again = await node.request('PUT', kv('greeting'), 'bye');
    expect(again.body.index).toBeGreaterThan(put.body.index);
    expect((await node.request('GET', kv('greeting'))).body.value).toBe('bye');

    const del = await node.request('DELETE', kv('greeting'));
    expect(del.status).toBe(200);
    expect(del.body.index).toBeGreaterThan(again.body.index);
    expectError(await node.request('GET', kv('greeting')), 404, 'PREVAIL_NOT_FOUND');
    expect((await node.request('DELETE', kv('greeting'))).status).toBe(200); // deleting nothing is fine
  });

  test('every consistency level, and minIndex', async () => {
    const {
      body: { index },
    } = await node.request('PUT', kv('c'), 'v');
    for (const consistency of ['linearizable', 'lease', 'stale']) {
      const got = await node.request(
        'GET',
        `${kv('c')}?consistency=${consistency}&minIndex=${index}`,
      );
      expect(got.status).toBe(200);
      expect(got.body).toEqual({ value: 'v', index: expect.any(Number) });
      expect(got.body.index).toBeGreaterThanOrEqual(index);
    }
    expectError(
      await node.request('GET', `${kv('c')}?consistency=eventual`),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expectError(
      await node.request('GET', `${kv('c')}?minIndex=-1`),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expectError(
      await node.request('GET', `${kv('c')}?minIndex=abc`),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
  });

  test('keys: percent-encoded, at most 1024 bytes of UTF-8, never empty', async () => {
    const odd = 'a/b c?d#é';
    expect((await node.request('PUT', kv(odd), 'odd')).status).toBe(200);
    expect((await node.request('GET', kv(odd))).body.value).toBe('odd');

    const longest = 'é'.repeat(512); // 1024 bytes
    expect((await node.request('PUT', kv(longest), 'long')).status).toBe(200);
    expect((await node.request('GET', kv(longest))).body.value).toBe('long');
    expectError(await node.request('PUT', kv(`${longest}x`), 'v'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await node.request('GET', kv(`${longest}x`)), 400, 'PREVAIL_INVALID_ARGUMENT');

    expectError(await node.request('PUT', '/kv/', 'v'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await node.request('GET', '/kv/'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(
      await node.request('POST', '/kv//cas', { expect: null, value: 'v' }),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expectError(await node.request('PUT', '/kv/%E0%A4%A', 'v'), 400, 'PREVAIL_INVALID_ARGUMENT');
  });

  test('bodies: 1 MiB is the limit (413 past it); values must be UTF-8', async () => {
    const full = new Uint8Array(MiB).fill(0x61);
    expect((await node.request('PUT', kv('big'), full)).status).toBe(200);
    const got = await node.request('GET', kv('big'));
    expect(got.body.value.length).toBe(MiB);

    const tooBig = new Uint8Array(MiB + 1).fill(0x61);
    expectError(await node.request('PUT', kv('big'), tooBig), 413, 'PREVAIL_TOO_LARGE');
    expectError(await node.request('POST', `${kv('big')}/cas`, tooBig), 413, 'PREVAIL_TOO_LARGE');
    expect((await node.request('GET', kv('big'))).body.value.length).toBe(MiB); // unchanged

    expectError(
      await node.request('PUT', kv('bin'), new Uint8Array([0x61, 0xff, 0xfe])),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expect((await node.request('PUT', kv('empty'), '')).status).toBe(200);
    expect((await node.request('GET', kv('empty'))).body.value).toBe('');
  });

  test('compare-and-set: null means absent; a mismatch is 409 with the current value', async () => {
    const cas = (expected: string | null, value: string) =>
      node.request('POST', `${kv('lock')}/cas`, { expect: expected, value });
    const created = await cas(null, 'a');
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ index: expect.any(Number) });
    const refused = await cas(null, 'b');
    expectError(refused, 409, 'PREVAIL_CAS_CONFLICT');
    expect(refused.body.current).toBe('a');
    expectError(await cas('wrong', 'b'), 409, 'PREVAIL_CAS_CONFLICT');
    expect((await cas('a', 'b')).status).toBe(200);
    expect((await node.request('GET', kv('lock'))).body.value).toBe('b');
    await node.request('DELETE', kv('lock'));
    const afterDelete = await cas('b', 'c');
    expectError(afterDelete, 409, 'PREVAIL_CAS_CONFLICT');
    expect(afterDelete.body.current).toBeNull();

    const bad = (body: string) => node.request('POST', `${kv('lock')}/cas`, body);
    expectError(await bad('{"expect": null, "value": '), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await bad('[]'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await bad('{"value": "x"}'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await bad('{"expect": 1, "value": "x"}'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await bad('{"expect": null, "value": 2}'), 400, 'PREVAIL_INVALID_ARGUMENT');
    expectError(await node.request('GET', kv('lock')), 404, 'PREVAIL_NOT_FOUND');
  });

  test('status, health, the admin page, unknown routes and methods', async () => {
    const status = await node.request('GET', '/status');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({
      id: 1,
      role: 'leader',
      leader: { id: 1 },
      term: expect.any(Number),
    });
    expect(status.body.appliedIndex).toBeGreaterThan(0);
    expect(status.body.commitIndex).toBeGreaterThanOrEqual(status.body.appliedIndex - 1);
    expect(status.body.members).toEqual([
      expect.objectContaining({ id: 1, role: 'voter', matchIndex: expect.any(Number) }),
    ]);
    expect((await node.request('GET', '/health/leader')).status).toBe(200);
    expect((await node.request('GET', '/health/ready')).status).toBe(200);

    const admin = await node.request('GET', '/admin');
    expect(admin.status).toBe(200);
    expect(admin.headers.get('content-type')).toMatch(/^text\/html/);
    expect((await node.request('GET', '/admin/status.json')).body).toMatchObject({
      id: 1,
      role: 'leader',
    });

    expectError(await node.request('GET', '/nothing'), 404, 'PREVAIL_NOT_FOUND');
    const patch = await node.request('PATCH', kv('x'), 'v');
    expectError(patch, 405, 'PREVAIL_METHOD_NOT_ALLOWED');
    expect(patch.headers.get('allow')).toContain('PUT');
    expectError(
      await node.request('POST', '/admin/members', '{nope'),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expectError(
      await node.request('POST', '/admin/members', { id: 0, address: '127.0.0.1:1' }),
      400,
      'PREVAIL_INVALID_ARGUMENT',
    );
    expectError(await node.request('DELETE', '/admin/members/x'), 400, 'PREVAIL_INVALID_ARGUMENT');
  });

  test('CLI: usage, bad flags, status, snapshot, and errors from the node', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: prevail');
    for (const args of [
      ['serve', '--bogus'],
      ['serve', '--data', 'x', '--id', 'one'],
      ['serve', '--raft', '127.0.0.1:1'],
      ['serve', '--data', 'x', '--cluster', '1=nowhere'],
      ['serve', '--data', 'x', '--raft', '127.0.0.1:1', '--join', '--cluster', '1=127.0.0.1:1'],
      ['frobnicate'],
      ['members', 'rename'],
      ['members', 'add', '4'],
      ['transfer', 'abc'],
      ['activate', 'two'],
      ['activate', '1', '2'],
      ['serve', '--data', 'x', '--raft', '127.0.0.1:1', '--activation', 'sometimes'],
      ['status', '--node', 'http://[bad'],
    ]) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/prevail/);
    }
    expect((await runCli(['inspect'])).code).toBe(2);

    const { version } = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-v']) {
      expect(await runCli([flag])).toMatchObject({ code: 0, stdout: `prevail ${version}\n` });
    }
    // Each subcommand's own help, on --help (status 0) and after a bad flag (status 2).
    const helps: [string[], string][] = [
      [['serve', '--help'], 'Usage: prevail serve --data DIR'],
      [['status', '--help'], 'Usage: prevail status'],
      [['members', '--help'], 'Usage: prevail members'],
      [['members', 'add', '--help'], 'Usage: prevail members'],
      [['transfer', '-h'], 'Usage: prevail transfer'],
      [['help', 'snapshot'], 'Usage: prevail snapshot'],
    ];
    for (const [args, usage] of helps) {
      const r = await runCli(args);
      expect({ args, code: r.code, usage: r.stdout.startsWith(`${usage}`) }).toEqual({
        args,
        code: 0,
        usage: true,
      });
    }
    for (const [args, usage] of [
      [['status', '--bogus'], 'Usage: prevail status'],
      [['members', '--role', 'x'], 'Usage: prevail members'],
      [['serve', '--bogus'], 'Usage: prevail serve'],
    ] as const) {
      const r = await runCli([...args]);
      expect({ code: r.code, usage: r.stderr.includes(usage) }).toEqual({ code: 2, usage: true });
    }

    const status = await runCli(['status', '--node', node.url]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ id: 1, role: 'leader' });
    const snap = await runCli(['snapshot', '--node', node.url]);
    expect(snap.code).toBe(0);
    const { index } = JSON.parse(snap.stdout) as { index: number };
    expect(index).toBeGreaterThan(0);
    expect((await node.request('GET', '/status')).body.snapshot.index).toBeGreaterThanOrEqual(
      index,
    );

    // A single voter has no one to hand leadership to; an unknown member can't be removed.
    const transfer = await runCli(['transfer', '--node', node.url]);
    expect(transfer.code).toBe(1);
    expect(transfer.stderr).toContain('PREVAIL_BAD_MEMBER');
    const remove = await runCli(['members', 'remove', '7', '--node', node.url]);
    expect(remove.code).toBe(1);
    expect(remove.stderr).toContain('PREVAIL_BAD_MEMBER');
    const unreachable = await runCli(['status', '--node', 'http://127.0.0.1:1']);
    expect(unreachable.code).toBe(1);
    // members with no arguments lists them; --json keeps JSON.
    const list = await runCli(['members', '--node', node.url]);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^ID +ADDRESS +ROLE +STATE +LAG$/);
    expect(list.stdout).toMatch(new RegExp(`^1 +${node.spec.address} +voter +leader +0$`, 'm'));
    const json = await runCli(['members', '--json', '--node', node.url]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      leader: { id: 1 },
      members: [{ id: 1, role: 'voter' }],
    });
  });
});

describe('three nodes', () => {
  let cluster: ServiceCluster;
  beforeAll(async () => {
    cluster = await ServiceCluster.create(3, timing);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('health: /health/leader only on the leader, followers give its id; every node becomes ready', async () => {
    const leader = await cluster.leader();
    expect((await leader.request('GET', '/health/leader')).status).toBe(200);
    for (const f of cluster.others(leader)) {
      const answer = await f.request('GET', '/health/leader');
      expect(expectError(answer, 503, 'PREVAIL_NOT_LEADER').leader?.id).toBe(leader.spec.id);
      expect(answer.headers.get('retry-after')).toBe('1');
    }
    for (const n of cluster.running()) {
      await healthReady(n);
    }
    const status = (await leader.request('GET', '/status')).body;
    expect(status.members.map((m: { id: number }) => m.id).sort()).toEqual([1, 2, 3]);
    expect(
      status.members.every((m: { matchIndex?: number }) => typeof m.matchIndex === 'number'),
    ).toBe(true);
    const fstatus = (await cluster.others(leader)[0]!.request('GET', '/status')).body;
    expect(fstatus).toMatchObject({ role: 'follower', leader: { id: leader.spec.id } });
  });

  test('writes on followers are forwarded; every node reads them at every level', async () => {
    const leader = await cluster.leader();
    const [f1, f2] = cluster.others(leader);
    const put = await f1!.request('PUT', kv('fwd'), 'from a follower');
    expect(put.status).toBe(200);
    // Read-your-writes on the node that took the write, without waiting.
    expect((await f1!.request('GET', `${kv('fwd')}?consistency=stale`)).body.value).toBe(
      'from a follower',
    );
    for (const n of cluster.running()) {
      for (const consistency of ['linearizable', 'lease']) {
        const got = await n.request('GET', `${kv('fwd')}?consistency=${consistency}`);
        expect({ node: n.spec.id, consistency, status: got.status, value: got.body.value }).toEqual(
          { node: n.spec.id, consistency, status: 200, value: 'from a follower' },
        );
      }
      const stale = await n.request(
        'GET',
        `${kv('fwd')}?consistency=stale&minIndex=${put.body.index}`,
      );
      expect(stale.body.value).toBe('from a follower');
    }
    expect(
      (
        await f2!.request('POST', `${kv('fwd')}/cas`, {
          expect: 'from a follower',
          value: 'swapped',
        })
      ).status,
    ).toBe(200);
    expectError(
      await f1!.request('POST', `${kv('fwd')}/cas`, { expect: 'from a follower', value: 'x' }),
      409,
      'PREVAIL_CAS_CONFLICT',
    );
    expect((await f1!.request('DELETE', kv('fwd'))).status).toBe(200);
    expectError(await leader.request('GET', kv('fwd')), 404, 'PREVAIL_NOT_FOUND');
    expectError(await f2!.request('GET', kv('fwd')), 404, 'PREVAIL_NOT_FOUND');
  });

  test('CLI: the cluster as one table, members listed, transfer refusals, an unreachable new member', async () => {
    const leader = await cluster.leader();
    const id = leader.spec.id;
    const down = 'http://127.0.0.1:1';
    const table = await runCli(['status', '--node', cluster.urls, '--node', down]);
    expect(table.code).toBe(1); // one node did not answer
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID +ROLE +TERM +APPLIED +LAG +HEALTH +NODE$/);
    expect(lines).toHaveLength(5);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${id} +leader +\\d+ +\\d+ `)));
    expect(lines.at(-1)).toMatch(/^\? +down .* down +http:\/\/127\.0\.0\.1:1$/);
    expect(table.stderr).toContain(down);
    const array = await runCli(['status', '--json', '--node', cluster.urls]);
    expect(array.code).toBe(0);
    const statuses = JSON.parse(array.stdout) as { id: number }[];
    expect(statuses.map((x) => x.id).sort()).toEqual([1, 2, 3]);

    const list = await runCli(['members', '--node', cluster.urls]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${id} +\\S+ +voter +leader +0$`, 'm'));
    for (const other of cluster.others(leader))
      expect(list.stdout).toMatch(new RegExp(`^${other.spec.id} +\\S+ +voter +up +\\d+$`, 'm'));

    // To the node that leads already: nothing to do. To no member: refused, naming the members.
    const same = await runCli(['transfer', String(id), '--node', cluster.urls]);
    expect(same.code).toBe(0);
    expect(same.stderr).toContain(`node ${id} already leads`);
    const nobody = await runCli(['transfer', '9', '--node', cluster.urls]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain('PREVAIL_BAD_MEMBER: no member 9 (members: 1, 2, 3)');

    // A member added before its node runs: added as a spare, said so with what to do next;
    // done (the node started, the same command again), it is a voter; then removed again.
    const spec = await cluster.addSpec(5);
    const add = ['members', 'add', '5', spec.address, '--timeout', '20000', '--node'];
    const early = await runCli([...add, cluster.urls]);
    expect(early.code).toBe(3);
    expect(early.stderr).toContain(
      `added node 5 at ${spec.address} as a spare, but it is not reachable yet`,
    );
    expect(early.stderr).toContain(`prevail serve --id 5 --raft ${spec.address} --join`);
    expect(early.stderr).toContain('prevail members remove 5');
    const fifth = await cluster.start(5, ['--join', ...timing]);
    const again = await runCli([...add, cluster.urls]);
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(again.stdout).members).toContainEqual(
      expect.objectContaining({ id: 5, role: 'voter' }),
    );
    const undo = await runCli(['members', 'remove', '5', '--node', cluster.urls]);
    expect(undo.code).toBe(0);
    await fifth.kill();
    expect((await leader.request('GET', '/status')).body.members).toHaveLength(3);
  });

  test('CLI against the cluster: status, members add (join) and remove, transfer, snapshot', async () => {
    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0]!;
    const status = await runCli(['status', '--node', follower.url]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      id: follower.spec.id,
      role: 'follower',
      leader: { id: leader.spec.id },
    });

    const spec = await cluster.addSpec(4);
    const joiner = await cluster.start(4, ['--join', ...timing]);
    // Not a member yet: no leader known, so neither leader nor ready.
    expectError(await joiner.request('GET', '/health/ready'), 503, 'PREVAIL_NOT_READY');
    expect(
      expectError(await joiner.request('GET', '/health/leader'), 503, 'PREVAIL_NOT_LEADER').leader,
    ).toBeNull();
    // Leader-only commands sent only to a follower are refused with the leader's id (and the follower lives on).
    const refused = await runCli(['members', 'add', '4', spec.address, '--node', follower.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PREVAIL_NOT_LEADER');
    expect(refused.stderr).toContain(`node ${leader.spec.id}`);
    expect((await runCli(['members', 'remove', '4', '--node', follower.url])).code).toBe(1);
    expect(follower.alive).toBe(true);

    // Given every node, the CLI finds the leader.
    const added = await runCli(['members', 'add', '4', spec.address, '--node', cluster.urls]);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout).members).toContainEqual(
      expect.objectContaining({ id: 4, role: 'voter' }),
    );
    await healthReady(joiner);
    const put = await joiner.request('PUT', kv('joined'), 'yes');
    expect(put.status).toBe(200);
    expect((await leader.request('GET', kv('joined'))).body.value).toBe('yes');

    const transfer = await runCli(['transfer', '4', '--node', cluster.urls]);
    expect(transfer.code).toBe(0);
    expect(JSON.parse(transfer.stdout).leader.id).toBe(4);
    expect((await cluster.leader()).spec.id).toBe(4);

    const snap = await runCli(['snapshot', '--node', cluster.urls]);
    expect(snap.code).toBe(0);
    const { index } = JSON.parse(snap.stdout) as { index: number };
    expect((await joiner.request('GET', '/status')).body.snapshot.index).toBeGreaterThanOrEqual(
      index,
    );

    // serve logs leadership changes: node 4 took over, the old leader lost it.
    expect(joiner.output).toContain(`prevail: node 4 leads (term`);
    expect(leader.output).toContain(`prevail: node ${leader.spec.id} lost leadership`);

    // Back to the first leader, then it is removed: it learns it, says so and exits 0.
    expect((await runCli(['transfer', String(leader.spec.id), '--node', cluster.urls])).code).toBe(
      0,
    );
    const removed = await runCli([
      'members',
      'remove',
      String(leader.spec.id),
      '--node',
      cluster.urls,
    ]);
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout).members.map((m: { id: number }) => m.id)).not.toContain(
      leader.spec.id,
    );
    expect(await leader.waitExit(60_000)).toEqual({ code: 0, signal: null });
    expect(leader.output).toContain(`prevail: node ${leader.spec.id} was removed from the cluster`);
    const survivors = cluster.running();
    expect(survivors).toHaveLength(3);
    // The joiner may still hold a connection to the removed leader: a write it forwards there
    // as that process exits is answered 503 PREVAIL_UNAVAILABLE with mayHaveApplied (it was
    // sent). The PUT is idempotent, so the client retries that answer, and only that one.
    let afterRemove = await joiner.request('PUT', kv('after-remove'), 'ok');
    for (let retries = 0; afterRemove.status === 503 && retries < 3; retries++) {
      expect(afterRemove.body.error).toMatchObject({
        code: 'PREVAIL_UNAVAILABLE',
        mayHaveApplied: true,
      });
      afterRemove = await joiner.request('PUT', kv('after-remove'), 'ok');
    }
    expect(afterRemove.status).toBe(200);
    for (const n of survivors) {
      await waitFor(
        `node ${n.spec.id} sees the write`,
        async () =>
          (await n.request('GET', `${kv('after-remove')}?consistency=stale`)).body.value === 'ok',
      );
    }
  });

  test('schema versions: activate through a follower answers the active version; prevail activate and the status line', async () => {
    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0]!;
    // Every voter's code has version 1 only, and it is active: nothing to do, the active version.
    expect(await follower.request('POST', '/admin/schema/activate', {})).toMatchObject({
      status: 200,
      body: { active: 1 },
    });
    // Version 2 is in no voter's code: refused (forwarded or not) naming every voter (the
    // members as the test before left them).
    const voters = ((await follower.request('GET', '/status')).body.members as Member[])
      .filter((m) => m.role === 'voter')
      .map((m) => m.id)
      .sort();
    const refused = await follower.request('POST', '/admin/schema/activate', { version: 2 });
    expect(expectError(refused, 409, 'PREVAIL_VERSION_NOT_ACTIVE')).toMatchObject({
      version: 2,
      holdingBack: voters,
    });
    const ok = await runCli(['activate', '--node', follower.url]);
    expect({ code: ok.code, out: JSON.parse(ok.stdout) }).toEqual({ code: 0, out: { active: 1 } });
    const no = await runCli(['activate', '2', '--node', follower.url]);
    expect(no.code).toBe(1);
    expect(no.stderr).toMatch(/PREVAIL_VERSION_NOT_ACTIVE: schema version 2 can't be activated/);
    // Each voter recorded its code's range through the log (its peer announcement).
    await waitFor('every voter recorded its code range', async () => {
      const s = (await follower.request('GET', '/status')).body.schema as {
        nodes: { id: number }[];
      };
      return voters.every((id) => s.nodes.some((n) => n.id === id));
    });
    const status = await runCli(['status', '--node', follower.url]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).schema).toMatchObject({ active: 1, holdingBack: [] });
    expect(status.stderr).toBe(
      "schema: version 1 active from the start; this node's code supports 1\n",
    );
  });

  test('--no-forward: a follower answers writes and leader-level reads with 503 and the leader', async () => {
    const leader = await cluster.leader();
    const follower = cluster.others(leader)[0]!;
    expect(await follower.terminate()).toEqual({ code: 0, signal: null });
    const restarted = await cluster.start(follower.spec.id, ['--no-forward']);
    await waitFor(
      'the restarted node knows the leader',
      async () => (await restarted.request('GET', '/status')).body.leader?.id === leader.spec.id,
    );
    const put = await restarted.request('PUT', kv('nf'), 'v');
    expect(expectError(put, 503, 'PREVAIL_NOT_LEADER').leader?.id).toBe(leader.spec.id);
    expect(put.headers.get('retry-after')).toBe('1');
    expect(
      expectError(await restarted.request('GET', kv('nf')), 503, 'PREVAIL_NOT_LEADER').leader?.id,
    ).toBe(leader.spec.id);
    const {
      body: { index },
    } = await leader.request('PUT', kv('nf'), 'v');
    const stale = await restarted.request('GET', `${kv('nf')}?consistency=stale&minIndex=${index}`);
    expect(stale.body.value).toBe('v');
  });
});

/** Writers that PUT unique keys through whichever nodes are running; remembers what was acknowledged. */
class WriteLoad {
  acked = new Map<string, number>();
  failed = 0;
  #next = 0;
  #running = true;
  #workers: Promise<void>[];

  constructor(nodes: () => ServeProcess[], concurrency = 3) {
    this.#workers = Array.from({ length: concurrency }, async (_, w) => {
      while (this.#running) {
        const i = this.#next++;
        const targets = nodes();
        const node = targets[(i + w) % targets.length];
        if (!node) {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        try {
          const answer = await node.request('PUT', kv(`load-${i}`), `value-${i}`, 15_000);
          if (answer.status === 200) this.acked.set(`load-${i}`, answer.body.index);
          else this.failed++;
        } catch {
          this.failed++; // connection refused or cut while a node restarts: not acknowledged
        }
        if (this.failed > 0 && this.failed % 10 === 0) await new Promise((r) => setTimeout(r, 20));
      }
    });
  }

  /** Resolves once `n` more writes have been acknowledged (bounded). */
  async progress(n: number, timeoutMs = 20_000): Promise<void> {
    const target = this.acked.size + n;
    await waitFor(`${n} more acknowledged writes`, () => this.acked.size >= target, timeoutMs);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#workers);
  }
}

describe('rolling restart', () => {
  let cluster: ServiceCluster;
  let load: WriteLoad | undefined;
  afterAll(async () => {
    await load?.stop();
    await cluster?.stop();
  });

  test('SIGTERM each node in turn (the leader first) under writes: exit 0, a new leader, no acknowledged write lost', async () => {
    cluster = await ServiceCluster.create(3, timing);
    const first = await cluster.leader();
    load = new WriteLoad(() => cluster.running());
    await load.progress(20);

    const order = [first.spec.id, ...cluster.others(first).map((n) => n.spec.id)];
    for (const id of order) {
      const node = cluster.node(id);
      expect({ id, exit: await node.terminate() }).toEqual({ id, exit: { code: 0, signal: null } });
      if (id === first.spec.id) {
        const next = await cluster.leader(15_000);
        expect(next.spec.id).not.toBe(id);
      }
      await load.progress(10);
      const back = await cluster.start(id);
      await healthReady(back, `node ${id} ready after restart`, 20_000);
      await load.progress(10);
    }
    await load.stop();

    const maxIndex = Math.max(...load.acked.values());
    for (const n of cluster.running()) {
      const lost: string[] = [];
      for (const [key] of load.acked) {
        const got = await n.request('GET', `${kv(key)}?consistency=stale&minIndex=${maxIndex}`);
        if (got.status !== 200 || got.body.value !== `value-${key.slice('load-'.length)}`)
          lost.push(key);
      }
      expect({ node: n.spec.id, lost }).toEqual({ node: n.spec.id, lost: [] });
    }
  }, 180_000);
});

describe('backup and restore (docs/operations.md)', () => {
  let cluster: ServiceCluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  test("a stopped follower's data dir restores the whole cluster after every node lost its disk", async () => {
    cluster = await ServiceCluster.create(3, timing);
    const leader = await cluster.leader();
    for (let i = 0; i < 30; i++)
      expect((await leader.request('PUT', kv(`b${i}`), `v${i}`)).status).toBe(200);
    expect((await runCli(['snapshot', '--node', leader.url])).code).toBe(0);
    let last = 0;
    for (let i = 30; i < 40; i++)
      last = (await leader.request('PUT', kv(`b${i}`), `v${i}`)).body.index;

    // Backup: stop a follower, copy its data dir, start it again.
    const follower = cluster.others(leader)[0]!;
    await waitFor(
      'the follower to apply every write',
      async () =>
        (await follower.request('GET', `${kv('b39')}?consistency=stale&minIndex=${last}`))
          .status === 200,
    );
    expect(await follower.terminate()).toEqual({ code: 0, signal: null });
    const backup = join(cluster.root, 'backup');
    cpSync(follower.spec.dataDir, backup, { recursive: true });
    await cluster.start(follower.spec.id);
    expect((await leader.request('PUT', kv('after-backup'), 'x')).status).toBe(200);

    // Every node loses its disk.
    for (const n of cluster.running()) await n.kill();
    for (const spec of cluster.specs) rmSync(spec.dataDir, { recursive: true, force: true });

    // Restore: the backup on its own node, with one empty node beside it (which can't win an
    // election against the restored log); the rest once the restored node leads.
    cpSync(backup, follower.spec.dataDir, { recursive: true });
    const restored = await cluster.start(follower.spec.id);
    const others = cluster.specs.filter((s) => s.id !== follower.spec.id);
    await cluster.start(others[0]!.id);
    expect((await cluster.leader(20_000)).spec.id).toBe(follower.spec.id);
    await cluster.start(others[1]!.id);

    for (const n of cluster.running()) {
      await healthReady(n, undefined, 20_000);
      for (let i = 0; i < 40; i++) {
        const got = await n.request('GET', kv(`b${i}`));
        expect({ node: n.spec.id, key: `b${i}`, value: got.body.value }).toEqual({
          node: n.spec.id,
          key: `b${i}`,
          value: `v${i}`,
        });
      }
      expectError(await n.request('GET', kv('after-backup')), 404, 'PREVAIL_NOT_FOUND'); // written after the copy
    }
    expect((await cluster.node(others[1]!.id).request('PUT', kv('restored'), 'yes')).status).toBe(
      200,
    );
    expect((await restored.request('GET', kv('restored'))).body.value).toBe('yes');
  }, 120_000);
});

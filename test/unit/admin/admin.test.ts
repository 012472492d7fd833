// The admin page (lib/admin/): its JSON and SSE endpoints over plain HTTP against an
// in-process store, then the page itself in Debian's chromium (driven by playwright-core)
// on a 3-node cluster of the reference service (`node dist/cli.js serve`, which mounts it
// at /admin), with the leader killed (-9) while the page watches, then marked down on the new
// leader's page until it is started again.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, get, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import { chromium, type Browser } from 'playwright-core';

import { adminHandler, type AdminSource, type AdminStatus } from '../../../lib/admin/admin.js';
import { adminStatus } from '../../../lib/admin/status.js';
import { renderPage } from '../../../lib/admin/page.js';
import { collection, defineSchema, open, type Store } from '../../../lib/store.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

// The callbacks given to page.waitForFunction / $$eval run in the browser. The test program
// is typed with Node's lib, not the DOM's: these are the few DOM types they use.
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  querySelector(selector: string): PageElement | null;
}
type HTMLElement = PageElement;
declare const document: {
  querySelectorAll(selector: string): ArrayLike<PageElement> & Iterable<PageElement>;
  querySelector(selector: string): PageElement | null;
  getElementById(id: string): PageElement | null;
};

const cli = join(process.cwd(), 'dist', 'cli.js');
const artifacts = join(process.cwd(), 'test-artifacts');

const schema = defineSchema({
  collections: { notes: collection<{ text: string }>()() },
  commands: { add: (s, { text }: { text: string }) => s.notes.insert({ text }).id },
});

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

function http(url: string, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** An open SSE connection: its `data:` messages as they arrive, parsed. */
class EventStream {
  messages: AdminStatus[] = [];
  /** Messages with an `event:` name. */
  others: { event: string; data: unknown }[] = [];
  ended = false;
  headers: IncomingMessage['headers'] = {};
  retry: number | undefined;
  readonly opened: Promise<void>;
  #req!: ReturnType<typeof get>;
  #buffer = '';

  constructor(url: string) {
    this.opened = new Promise((resolve, reject) => {
      this.#req = get(url, (res) => {
        this.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => this.#feed(chunk));
        res.on('end', () => {
          this.ended = true;
        });
        res.on('close', () => {
          this.ended = true;
        });
        resolve();
      });
      this.#req.on('error', (err) => {
        this.ended = true;
        reject(err);
      });
    });
  }

  #feed(chunk: string): void {
    this.#buffer += chunk;
    let cut: number;
    while ((cut = this.#buffer.indexOf('\n\n')) >= 0) {
      const block = this.#buffer.slice(0, cut);
      this.#buffer = this.#buffer.slice(cut + 2);
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      const retry = /^retry: (\d+)$/m.exec(block);
      if (retry) this.retry = Number(retry[1]);
      const event = /^event: (.+)$/m.exec(block)?.[1];
      if (data && event) this.others.push({ event, data: JSON.parse(data) });
      else if (data) this.messages.push(JSON.parse(data) as AdminStatus);
    }
  }

  close(): void {
    this.#req.destroy();
  }
}

async function listen(
  handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => boolean,
): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    if (handler(req, res)) return;
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('app 404\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('admin handler over HTTP', () => {
  let store: Store<typeof schema.collections, typeof schema.commands>;
  let dir: string;
  const servers: Server[] = [];

  beforeAll(async () => {
    dir = tempDir('prevail-admin-');
    store = await open({ schema, dataDir: dir });
    // Log entries through the RaftNode (barriers), independent of the store's command path.
    for (let i = 0; i < 3; i++) await store.node.barrier();
  });

  afterAll(async () => {
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves the page, status.json and nothing else', async () => {
    const admin = adminHandler(store);
    const { server, base } = await listen(admin);
    servers.push(server);
    try {
      const json = await http(`${base}/admin/status.json?x=1`);
      expect(json.status).toBe(200);
      expect(json.headers['content-type']).toBe('application/json');
      const s = JSON.parse(json.body) as AdminStatus;
      expect(s).toMatchObject({ id: 1, role: 'leader', lagKnown: true, leader: { id: 1 } });
      expect(s.address).toBe(s.leader!.address);
      expect(s.commitIndex).toBeGreaterThanOrEqual(4);
      expect(s.members).toEqual([
        {
          id: 1,
          address: s.address,
          role: 'voter',
          leader: true,
          self: true,
          diverged: false,
          downSince: null,
          matchIndex: expect.any(Number),
          lag: expect.any(Number),
          schema: { code: { oldest: 1, newest: 1 }, holdsBack: null, tooOld: false, tooNew: false },
        },
      ]);
      expect(s.members[0]!.lag).toBe(Math.max(0, s.commitIndex - s.members[0]!.matchIndex!));
      expect(s.snapshot).toEqual({ index: expect.any(Number), term: expect.any(Number) });
      // The leader already known when the handler was made.
      expect(s.leaderChanges).toEqual([
        { time: expect.any(Number), term: s.term, leader: s.leader, initial: true },
      ]);
      // A single node without tls opens no port: nothing to warn about.
      expect(s).toMatchObject({
        security: 'none',
        certificateNotAfter: null,
        certificateExpiring: false,
      });

      for (const path of ['/admin', '/admin/']) {
        const page = await http(`${base}${path}`);
        expect(page.status).toBe(200);
        expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
        expect(page.headers['content-security-policy']).toMatch(
          /default-src 'none'; script-src 'sha256-/,
        );
        expect(page.body).toContain('<h1>prevail admin</h1>');
        expect(page.body).toContain('{"basePath":"/admin"}');
        // Self-contained: no external scripts, styles, images or fonts.
        expect(page.body).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//i);
        expect(page.body).not.toMatch(/<link\b|@import|url\(/i);
      }
      const head = await http(`${base}/admin`, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body).toBe('');

      expect((await http(`${base}/admin/status.json`, 'POST')).status).toBe(405);
      // Paths it does not serve are the app's.
      for (const path of ['/', '/admin/members', '/adminx', '/admin/status.json/x', '/other']) {
        const r = await http(`${base}${path}`);
        expect([path, r.status, r.body]).toEqual([path, 404, 'app 404\n']);
      }
    } finally {
      admin.close();
    }
  });

  test('status.json carries the live chart; events after the first carry its newest points only', async () => {
    const admin = adminHandler(store, { intervalMs: 100 });
    const { server, base } = await listen(admin);
    servers.push(server);
    const stream = new EventStream(`${base}/admin/events`);
    try {
      expect(admin.status()).toMatchObject({
        downAfterMs: 2000, // a lone node's default: 3 election timeouts of 200 ms, at least 2 s
        chart: { intervalMs: 1000, windowMs: 180_000 },
      });
      // Entries applied here while the monitor samples once a second (commits and latencies).
      const withApplies = await waitFor(
        'six chart points, some with applies',
        async () => {
          await store.propose('add', { text: 'x' });
          const s = JSON.parse((await http(`${base}/admin/status.json`)).body) as AdminStatus;
          const points = s.chart!.points;
          return points.length >= 6 && points.some((p) => p.applyP50Ms !== null) ? s : undefined;
        },
        30_000,
        200,
      );
      const points = withApplies.chart!.points;
      expect(points.some((p) => p.commitsPerSec > 0)).toBe(true);
      for (const p of points) {
        expect(p.commitsPerSec).toBeGreaterThanOrEqual(0);
        if (p.applyP50Ms !== null) expect(p.applyP99Ms).toBeGreaterThanOrEqual(p.applyP50Ms);
      }
      expect(points.map((p) => p.time)).toEqual([...points.map((p) => p.time)].sort());
      // The stream opened before there were points; one opened now starts with all of them.
      expect(stream.messages[0]!.chart!.points).toEqual([]);
      const late = new EventStream(`${base}/admin/events`);
      try {
        await waitFor('a few pushes', () => late.messages.length >= 3);
      } finally {
        late.close();
      }
      const [first, ...later] = late.messages;
      expect(first!.chart!.points.length).toBeGreaterThanOrEqual(6);
      for (const m of [...later, ...stream.messages.slice(1)])
        expect(m.chart!.points.length).toBeLessThanOrEqual(5);
      expect(stream.messages.some((m) => m.chart!.points.length > 0)).toBe(true);
      // A lone node has no one to mark down.
      expect(withApplies.members.map((m) => m.downSince)).toEqual([null]);
    } finally {
      stream.close();
      admin.close();
    }
    expect(() => adminHandler(store, { downAfterMs: 0 })).toThrow(TypeError);
  }, 60_000);

  test('status flags a certificate that expires within 30 days', () => {
    const s = store.status();
    const now = Date.now();
    const day = 24 * 3600_000;
    expect(adminStatus(s, now, [], now + 29 * day).certificateExpiring).toBe(true);
    expect(adminStatus(s, now, [], now + 31 * day)).toMatchObject({
      certificateNotAfter: now + 31 * day,
      certificateExpiring: false,
    });
    expect(adminStatus({ ...s, security: 'insecure' }, now, []).security).toBe('insecure');
  });

  test('status marks the members the leader\'s divergence verdict names (the page\'s "diverged" badge)', () => {
    const s = store.status();
    // A single node judges alone (leader: 1 once it has, null before): nothing to name.
    expect(s.divergence).toMatchObject({ self: null, diverged: [], split: null });
    expect(adminStatus(s, Date.now(), []).members.map((m) => m.diverged)).toEqual([false]);
    const named = { ...s.divergence, leader: 1, diverged: [{ node: 1 }] };
    expect(
      adminStatus({ ...s, divergence: named }, Date.now(), []).members.map((m) => m.diverged),
    ).toEqual([true]);
    expect(renderPage('/admin').html).toContain('"diverged", "badge diverged"');
  });

  test("status: the schema line, and each member's code range and markers (holds back, too old, too new)", () => {
    const s = store.status();
    // The store's own: version 1 only, active from the start, its range recorded through the log.
    expect(adminStatus(s, Date.now(), []).schema).toEqual({
      active: 1,
      activatedAt: null,
      code: { oldest: 1, newest: 1 },
      newest: 1,
      heldBack: null,
      failed: [],
    });
    expect(adminStatus(s, Date.now(), []).members[0]!.schema).toEqual({
      code: { oldest: 1, newest: 1 },
      holdsBack: null,
      tooOld: false,
      tooNew: false,
    });
    // Five members as a store on a mixed cluster sees them, version 2 active since index 7.
    const members = [
      { id: 1, address: 'a:1', role: 'voter' as const },
      { id: 2, address: 'a:2', role: 'voter' as const },
      { id: 3, address: 'a:3', role: 'voter' as const },
      { id: 4, address: 'a:4', role: 'standby' as const },
      { id: 5, address: 'a:5', role: 'voter' as const },
    ];
    const schemaOf = (active: number, nodes: [number, number, number][]) => ({
      ...s.schema,
      active,
      activations: active > 1 ? [{ index: 7, version: active }] : [],
      code: { oldest: 1, newest: 3 },
      nodes: nodes.map(([id, oldest, newest]) => ({
        id,
        voter: true,
        oldest,
        newest,
        canRunActive: oldest <= active && active <= newest,
      })),
      failed: [{ version: 3, message: 'migration accounts threw: boom' }],
    });
    // Node 3 never recorded a range; node 6 (newest 4) left the cluster: it does not count.
    const mixed = adminStatus(
      {
        ...s,
        members,
        schema: schemaOf(2, [
          [1, 1, 3],
          [2, 1, 2],
          [4, 1, 1],
          [5, 3, 3],
          [6, 1, 4],
        ]),
      },
      Date.now(),
      [],
    );
    expect(mixed.schema).toEqual({
      active: 2,
      activatedAt: 7,
      code: { oldest: 1, newest: 3 },
      newest: 3,
      heldBack: { version: 3, by: [2, 3] },
      failed: [{ version: 3, message: 'migration accounts threw: boom' }],
    });
    expect(mixed.members.map((m) => [m.id, m.schema])).toEqual([
      [1, { code: { oldest: 1, newest: 3 }, holdsBack: null, tooOld: false, tooNew: false }],
      [2, { code: { oldest: 1, newest: 2 }, holdsBack: 3, tooOld: false, tooNew: false }],
      // Never recorded: a build from before schema versions runs version 1 only.
      [3, { code: null, holdsBack: 3, tooOld: true, tooNew: false }],
      // A standby holds nothing back, but can't run version 2.
      [4, { code: { oldest: 1, newest: 1 }, holdsBack: null, tooOld: true, tooNew: false }],
      [5, { code: { oldest: 3, newest: 3 }, holdsBack: null, tooOld: false, tooNew: true }],
    ]);
    // Once the newest version is active nothing is held back; version 1 code is too old.
    const done = adminStatus(
      {
        ...s,
        members: members.slice(0, 2),
        schema: schemaOf(3, [
          [1, 1, 3],
          [2, 1, 2],
        ]),
      },
      Date.now(),
      [],
    );
    expect(done.schema).toMatchObject({ active: 3, activatedAt: 7, heldBack: null });
    expect(done.members.map((m) => [m.schema!.holdsBack, m.schema!.tooOld])).toEqual([
      [null, false],
      [null, true],
    ]);
    const html = renderPage('/admin').html;
    expect(html).toContain('"holds back v" + x.holdsBack, "badge holds-back"');
    expect(html).toContain('"too old", "badge too-old"');
    expect(html).toContain('"Activating schema version " + f.version + " failed: "');
    expect(html).toContain('id="schema"');
  });

  test('status: a store of two schema versions shows the second active since its activation', async () => {
    const v2 = schema.next({
      collections: { notes: collection<{ text: string; by: string }>()() },
      migrate: { notes: (n: { text: string }) => ({ ...n, by: 'nobody' }) },
      commands: {},
    });
    const dir2 = tempDir('prevail-admin-v2-');
    const s2 = await open({ schema: v2, dataDir: dir2 });
    try {
      const { schema: x, members } = adminStatus(s2.status(), Date.now(), []);
      const activatedAt = s2.schemaStatus().activations.find((a) => a.version === 2)?.index;
      expect(activatedAt).toEqual(expect.any(Number));
      expect(x).toEqual({
        active: 2,
        activatedAt,
        code: { oldest: 1, newest: 2 },
        newest: 2,
        heldBack: null,
        failed: [],
      });
      expect(members[0]!.schema).toEqual({
        code: { oldest: 1, newest: 2 },
        holdsBack: null,
        tooOld: false,
        tooNew: false,
      });
    } finally {
      await s2.close();
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  test('basePath: served where asked, validated', async () => {
    const admin = adminHandler(store, { basePath: '/ops/raft' });
    const { server, base } = await listen(admin);
    servers.push(server);
    try {
      expect((await http(`${base}/ops/raft`)).body).toContain('{"basePath":"/ops/raft"}');
      expect(JSON.parse((await http(`${base}/ops/raft/status.json`)).body)).toMatchObject({
        id: 1,
      });
      expect((await http(`${base}/admin`)).status).toBe(404);
    } finally {
      admin.close();
    }
    // Root mount: the page at '/', its endpoints beside it.
    const root = adminHandler(store, { basePath: '/' });
    try {
      const fake = (url: string) =>
        root(
          { url, method: 'GET', socket: {} } as IncomingMessage,
          {
            writeHead: () => undefined,
            end: () => undefined,
          } as unknown as import('node:http').ServerResponse,
        );
      expect([fake('/'), fake('/status.json'), fake('/x'), fake('/admin')]).toEqual([
        true,
        true,
        false,
        false,
      ]);
    } finally {
      root.close();
    }
    for (const bad of ['admin', '/admin/', '/a<b', '/a"b', '/a b', '//x', '/a?b']) {
      expect(() => adminHandler(store, { basePath: bad })).toThrow(TypeError);
    }
  });

  test('the event stream pushes the status, and stops when the client goes', async () => {
    // Count status() calls to see that a gone client leaves no timer behind.
    let calls = 0;
    const source: AdminSource = {
      status: () => {
        calls++;
        return store.status();
      },
      on: (e, l) => store.on(e, l),
      off: (e, l) => store.off(e, l),
      node: store.node,
    };
    const roleListeners = store.listenerCount('role');
    const leaderListeners = store.node.listenerCount('leader');
    const admin = adminHandler(source, { intervalMs: 100 });
    expect(store.listenerCount('role')).toBe(roleListeners + 1);
    expect(store.node.listenerCount('leader')).toBe(leaderListeners + 1);
    const { server, base } = await listen(admin);
    servers.push(server);

    const stream = new EventStream(`${base}/admin/events`);
    try {
      await stream.opened;
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers['cache-control']).toBe('no-store');
      const first = await waitFor('the first pushed status', () => stream.messages[0]);
      expect(stream.retry).toBe(1000);
      expect(first).toMatchObject({ id: 1, role: 'leader', lagKnown: true });
      expect(first.members).toHaveLength(1);
      // New entries show up in later pushes.
      const before = first.commitIndex;
      await store.node.barrier();
      await waitFor('a push with the new commit index', () =>
        stream.messages.find((m) => m.commitIndex > before),
      );
    } finally {
      stream.close();
    }
    await waitFor('the stream to close', () => stream.ended);
    // Once the server has seen the client go, no more status() calls: its timer is gone.
    await waitFor(
      'the server to drop the connection',
      () =>
        new Promise<boolean | undefined>((resolve) =>
          server.getConnections((err, n) => resolve(!err && n === 0 ? true : undefined)),
        ),
    );
    await new Promise((r) => setImmediate(r));
    const settled = calls;
    await new Promise((r) => setTimeout(r, 500)); // five intervals
    expect(calls).toBe(settled);

    // close() ends open streams and drops its store listeners.
    const second = new EventStream(`${base}/admin/events`);
    await second.opened;
    await waitFor('a push on the second stream', () => second.messages[0]);
    admin.close();
    await waitFor('close() to end the stream', () => second.ended);
    expect(store.listenerCount('role')).toBe(roleListeners);
    expect(store.node.listenerCount('leader')).toBe(leaderListeners);
    // After close() an events request gets an empty, ended stream.
    const late = await http(`${base}/admin/events`);
    expect([late.status, late.body]).toEqual([200, '']);
  });

  test('a status() that throws: 503 from status.json, a failure event on the stream', async () => {
    let broken = false;
    const source: AdminSource = {
      status: () => {
        if (broken) throw new Error('engine <gone>');
        return store.status();
      },
      on: (e, l) => store.on(e, l),
      off: (e, l) => store.off(e, l),
      node: store.node,
    };
    const admin = adminHandler(source, { intervalMs: 50 });
    const { server, base } = await listen(admin);
    servers.push(server);
    const stream = new EventStream(`${base}/admin/events`);
    try {
      await stream.opened;
      await waitFor('a first push', () => stream.messages[0]);
      broken = true;
      const reply = await http(`${base}/admin/status.json`);
      expect([reply.status, JSON.parse(reply.body)]).toEqual([503, { error: 'engine <gone>' }]);
      expect(await waitFor('a failure event', () => stream.others[0])).toEqual({
        event: 'failure',
        data: { message: 'engine <gone>' },
      });
      broken = false;
      const n = stream.messages.length;
      await waitFor('statuses again', () => stream.messages.length > n);
    } finally {
      stream.close();
      admin.close();
    }
  });
});

/** One node of the reference service (`node dist/cli.js serve`), which mounts the admin page at /admin. */
class ServeNode {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** Resolves with the node's HTTP base URL once it says it is serving. */
  readonly ready: Promise<string>;
  output = '';
  exitedWith: number | string | null = null;

  constructor(
    readonly id: number,
    args: string[],
  ) {
    this.child = spawn(process.execPath, [cli, 'serve', '--id', String(id), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitedWith = signal ?? code;
        resolve();
      }),
    );
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node ${id} not serving within 20 s:\n${this.output}`)),
        20_000,
      );
      this.child.stdout!.on('data', (chunk: Buffer) => {
        this.output += chunk.toString();
        const m = / serving (http:\/\/\S+?)\/? /.exec(this.output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      this.child.stderr!.on('data', (chunk: Buffer) => {
        this.output += chunk.toString();
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(
          new Error(
            `node ${id} exited (${this.exitedWith}) before it was serving:\n${this.output}`,
          ),
        );
      });
    });
    // Awaited later (or not at all when another node failed first): never an unhandled rejection.
    this.ready.catch(() => {});
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** kill -9, then wait (bounded) for the exit. */
  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise((r) => {
        timer = setTimeout(r, 5000);
      }),
    ]);
    clearTimeout(timer);
  }
}

describe('admin page in a browser', () => {
  test("a follower's page shows the members and the leader, then the new leader after kill -9; the new leader's marks the old one down until it is back, and draws the chart", async () => {
    const root = tempDir('prevail-admin-cluster-');
    const ports = await freePorts(6);
    const cluster = [1, 2, 3].map((id) => ({ id, address: `127.0.0.1:${ports[id - 1]}` }));
    const nodes = new Map<number, ServeNode>();
    let browser: Browser | undefined;
    try {
      const clusterArg = cluster.map((m) => `${m.id}=${m.address}`).join(',');
      const startNode = (id: number) =>
        nodes.set(
          id,
          new ServeNode(id, [
            '--data',
            join(root, `n${id}`),
            '--insecure',
            '--cluster',
            clusterArg,
            '--http',
            `127.0.0.1:${ports[id + 2]}`,
            // Chromium starting beside three nodes on two CPUs stalls them: at the 200 ms
            // default an election could land between two looks at the page.
            '--election-timeout',
            '1000',
            '--heartbeat',
            '100',
          ]),
        );
      for (const { id } of cluster) startNode(id);
      const urls = new Map<number, string>();
      await Promise.all(
        [...nodes].map(async ([id, node]) => urls.set(id, `${await node.ready}/admin`)),
      );

      const statusOf = async (id: number) =>
        JSON.parse((await http(`${urls.get(id)}/status.json`)).body) as AdminStatus;
      const agreedLeader = (ids: number[], not?: number) =>
        waitFor(
          'the nodes to agree on a leader',
          async () => {
            const statuses = await Promise.all(ids.map(statusOf));
            const leaderId = statuses[0]!.leader?.id;
            const agree =
              leaderId !== undefined &&
              leaderId !== not &&
              statuses.every((s) => s.leader?.id === leaderId) &&
              statuses.some((s) => s.id === leaderId && s.role === 'leader');
            return agree ? leaderId : undefined;
          },
          20_000,
          50,
        );

      const leaderId = await agreedLeader([1, 2, 3]);
      // A few writes through the service's API, so the log has moved.
      const api = urls.get(leaderId)!.replace(/\/admin$/, '');
      for (let i = 0; i < 5; i++)
        expect((await http(`${api}/kv/k${i}`, 'PUT', `v${i}`)).status).toBe(200);
      const followerId = [1, 2, 3].find((id) => id !== leaderId)!;

      browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
      });
      const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(err.message));
      page.on('console', (msg) => {
        if (msg.type() === 'error') pageErrors.push(msg.text());
      });

      await page.goto(urls.get(followerId)!, { timeout: 15_000 });
      await page.waitForFunction(
        (expected) =>
          document.querySelectorAll('#members tr').length === 3 &&
          document.getElementById('leader')!.dataset.leaderId === String(expected) &&
          document
            .querySelector(`#members tr[data-member-id="${expected}"]`)
            ?.textContent?.includes('leader') === true &&
          document.getElementById('conn')!.textContent === 'live',
        leaderId,
        { timeout: 15_000, polling: 100 },
      );
      expect(await page.textContent('#role')).toBe('follower');
      // These members run --insecure: the page says so before anything else.
      expect(await page.textContent('#banners')).toContain('INSECURE: members talk without TLS');
      expect(
        await page.$$eval('#members tr', (rows) =>
          rows.map((r) => (r as HTMLElement).dataset.memberId),
        ),
      ).toEqual(['1', '2', '3']);
      expect(await page.textContent(`#members tr[data-member-id="${leaderId}"]`)).toContain(
        'leader',
      );
      expect(await page.textContent(`#members tr[data-member-id="${followerId}"]`)).toContain(
        'this node',
      );
      // The service's schema has one version, active from the start, recorded by every member.
      expect(await page.textContent('#schema')).toBe('v1 (from the start); this code v1');
      expect(
        await page.$$eval('#members tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent)),
      ).toEqual(['v1', 'v1', 'v1']);
      // A follower knows no match indices: it says so and names the leader.
      expect(await page.textContent('#lag-note')).toContain(
        `node ${leaderId} (${cluster[leaderId - 1]!.address})`,
      );
      const changesBefore = await page.$$eval('#changes li', (items) => items.length);

      const killedAt = Date.now();
      await nodes.get(leaderId)!.kill();

      // Bounded: polls the DOM until the page shows another leader and a new change naming it.
      const handle = await page.waitForFunction(
        (old) => {
          const now = document.getElementById('leader')!.dataset.leaderId;
          if (!now || now === String(old)) return undefined;
          const change = document.querySelector(`#changes li[data-leader-id="${now}"]`);
          return change ? Number(now) : undefined;
        },
        leaderId,
        { timeout: 20_000, polling: 100 },
      );
      const newLeaderId = (await handle.jsonValue()) as number;
      expect(newLeaderId).not.toBe(leaderId);
      expect(await page.$$eval('#changes li', (items) => items.length)).toBeGreaterThan(
        changesBefore,
      );
      // Newest first: the top entry names the new leader.
      expect(await page.getAttribute('#changes li:first-child', 'data-leader-id')).toBe(
        String(newLeaderId),
      );
      expect(await page.$$eval('#members tr', (rows) => rows.length)).toBe(3);

      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, 'admin-page.png'), fullPage: true });

      // The new leader's own page has the lag figures.
      // (The survivors' leader now: on a loaded machine a second election may have followed.)
      const currentLeaderId = await agreedLeader(
        [1, 2, 3].filter((id) => id !== leaderId),
        leaderId,
      );
      const leaderPage = await browser.newPage();
      await leaderPage.goto(urls.get(currentLeaderId)!, { timeout: 15_000 });
      await leaderPage.waitForFunction(
        () =>
          document.getElementById('role')!.textContent === 'leader' &&
          [...document.querySelectorAll('#members tr td:last-child')].filter((td) =>
            /^\d+$/.test(td.textContent!),
          ).length === 3,
        undefined,
        { timeout: 15_000, polling: 100 },
      );
      expect(await leaderPage.textContent('#lag-note')).toMatch(/^Lag = /);

      // The killed member acknowledges nothing the new leader sends: its page marks it down
      // (after 3 election timeouts, 3 s here), since a time after the kill; the others are up.
      const downSince = (await (
        await leaderPage.waitForFunction(
          (dead) => {
            const row = document.querySelector(`#members tr[data-member-id="${dead}"]`);
            return row?.dataset.downSince ? Number(row.dataset.downSince) : undefined;
          },
          leaderId,
          { timeout: 30_000, polling: 100 },
        )
      ).jsonValue()) as number;
      expect(downSince).toBeGreaterThanOrEqual(killedAt - 1000);
      expect(downSince).toBeLessThanOrEqual(Date.now());
      expect(
        await leaderPage.$$eval('#members tr.down', (rows) =>
          rows.map((r) => (r as HTMLElement).dataset.memberId),
        ),
      ).toEqual([String(leaderId)]);
      expect(
        await leaderPage.textContent(`#members tr[data-member-id="${leaderId}"] .badge.down`),
      ).toMatch(/^down since \d\d:\d\d:\d\d \(\d+s\)$/);
      // The live chart: points since the node started, the writes among them.
      await leaderPage.waitForFunction(
        () =>
          Number(document.getElementById('chart-commits')!.dataset.points) >= 3 &&
          Number(document.getElementById('chart-apply')!.dataset.points) >= 1,
        undefined,
        { timeout: 15_000, polling: 100 },
      );
      expect(await leaderPage.getAttribute('#line-commits', 'd')).toMatch(/^M[\d.]+ [\d.]+ L/);
      // Something drawn: a line, or a dash for a lone point.
      expect(await leaderPage.getAttribute('#line-p50', 'd')).toMatch(/^M[\d.]+ [\d.]+ (L|h2)/);
      expect(await leaderPage.textContent('#now-commits')).toMatch(/^[\d.]+\/s now$/);
      await leaderPage.screenshot({
        path: join(artifacts, 'admin-page-leader.png'),
        fullPage: true,
      });

      // It comes back and takes the entries it missed: the marker goes.
      startNode(leaderId);
      await nodes.get(leaderId)!.ready;
      await leaderPage.waitForFunction(
        (back) => {
          const row = document.querySelector(`#members tr[data-member-id="${back}"]`);
          return (
            document.getElementById('role')!.textContent === 'leader' &&
            row !== null &&
            row.dataset.downSince === undefined &&
            Number(row.querySelector('td:nth-child(5)')?.textContent) > 0
          );
        },
        leaderId,
        { timeout: 30_000, polling: 100 },
      );
      expect(await leaderPage.$$eval('#members tr.down', (rows) => rows.length)).toBe(0);

      expect(pageErrors).toEqual([]);
    } finally {
      await browser?.close().catch(() => {});
      await Promise.all([...nodes.values()].map((n) => n.kill()));
      rmSync(root, { recursive: true, force: true });
    }
  }, 180_000);
});

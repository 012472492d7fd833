// End to end over HTTP against the example app (examples/app/server.mjs) in a child
// process: forms, pages, validation, sorted/paginated lists, closure links; then kill -9
// and a restart on the same data directory keep every acknowledged write.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';

import { consecutiveFreePorts, freePorts, runCli, tempDir, waitFor } from '../helpers/cluster.js';
import { writeClusterCerts } from '../helpers/test-certs.js';

const script = join(process.cwd(), 'examples', 'app', 'server.mjs');

interface Reply {
  status: number;
  location: string | undefined;
  body: string;
}

class AppProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<string>;
  output = '';

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`app did not start within 20 s:\n${this.output}`)),
        20_000,
      );
      const onData = (chunk: Buffer) => {
        this.output += chunk.toString();
        const m = /listening on (http:\/\/\S+?)\/? /.exec(this.output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      this.child.stdout!.on('data', onData);
      this.child.stderr!.on('data', (chunk: Buffer) => {
        this.output += chunk.toString();
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`app exited (${code ?? signal}) before it listened:\n${this.output}`));
      });
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits (bounded) for the exit; 'timeout' if the process is still running. */
  async waitExit(
    timeoutMs: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.exited,
      new Promise<'timeout'>((res) => {
        timer = setTimeout(() => res('timeout'), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return r;
  }

  /** kill -9 by pid, then a bounded wait for the exit (so the data directory's lock is free). */
  async kill(): Promise<void> {
    if (this.alive && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await this.waitExit(10_000);
  }
}

function http(
  base: string,
  method: string,
  path: string,
  form?: Record<string, string | number> | string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const body =
    form === undefined
      ? undefined
      : typeof form === 'string'
        ? form
        : new URLSearchParams(
            Object.entries(form).map(([k, v]): [string, string] => [k, String(v)]),
          ).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, base),
      {
        method,
        agent: false,
        headers:
          body === undefined
            ? headers
            : {
                'content-type': 'application/x-www-form-urlencoded',
                'content-length': String(Buffer.byteLength(body)),
                ...headers,
              },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            location: res.headers.location,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const unescapeHtml = (s: string) =>
  s
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'");
const escapeHtml = (s: string) =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
/** Issue ids of the table rows, in page order. */
const rowIds = (html: string) =>
  [...html.matchAll(/<tr data-issue="(\d+)">/g)].map((m) => Number(m[1]));
const userRows = (html: string) =>
  [...html.matchAll(/<tr data-user="([^"]+)">/g)].map((m) => m[1]!).sort();
const errorOf = (html: string) =>
  unescapeHtml(/<p class="error" role="alert">([^<]*)<\/p>/.exec(html)?.[1] ?? '');
const relLink = (html: string, rel: 'next' | 'prev') => {
  const m = new RegExp(`rel="${rel}" href="([^"]+)"`).exec(html);
  return m ? unescapeHtml(m[1]!) : null;
};
function closureLink(html: string, cls: 'edit' | 'delete'): string {
  const m = new RegExp(`class="${cls}" href="(/c/[0-9a-f-]{36})"`).exec(html);
  if (!m) throw new Error(`no ${cls} link in the page`);
  return m[1]!;
}
function toggleLink(html: string): string {
  const m = /action="(\/c\/[0-9a-f-]{36})"><button class="toggle"/.exec(html);
  if (!m) throw new Error('no close/reopen button in the page');
  return m[1]!;
}
const titleOf = (html: string) =>
  unescapeHtml(/<h1>#\d+ <span class="issue-title[^"]*">([^<]*)<\/span>/.exec(html)?.[1] ?? '');
const revisionOf = (html: string) => Number(/revision (\d+)/.exec(html)?.[1]);
const statusOf = (html: string) => /<p class="muted">(open|closed) · priority/.exec(html)?.[1];

interface IssueRecord {
  id: number;
  title: string;
  author: string;
  priority: number;
  status: 'open' | 'closed';
  rev: number;
  deleted?: boolean;
}

describe('example app', () => {
  const apps: AppProcess[] = [];
  const dirs: string[] = [];

  async function startApp(env: Record<string, string>): Promise<{ app: AppProcess; url: string }> {
    const app = new AppProcess(env);
    apps.push(app);
    return { app, url: await app.ready };
  }

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.kill()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test('forms, pages, validation, sorted pages, closure links; kill -9 and restart keep every acknowledged write', async () => {
    const dataDir = tempDir('prevail-app-');
    dirs.push(dataDir);
    const [port, raftPort] = await freePorts(2);
    const env = { PORT: String(port), DATA_DIR: dataDir, RAFT_ADDRESS: `127.0.0.1:${raftPort}` };
    let { app, url } = await startApp(env);
    const get = (path: string) => http(url, 'GET', path);
    const post = (path: string, form: Record<string, string | number> = {}) =>
      http(url, 'POST', path, form);

    // ---- people: create, unique handle and email -----------------------------------
    const users = new Map<string, string>();
    for (const [handle, name] of [
      ['ada', 'Ada Lovelace'],
      ['grace', 'Grace Hopper'],
      ['linus', 'Linus T'],
    ] as const) {
      const r = await post('/users', { handle, name, email: `${handle}@example.com` });
      expect(r).toMatchObject({ status: 303, location: `/u/${handle}` });
      users.set(handle, name);
    }
    let r = await post('/users', { handle: 'Ada', name: 'Imposter', email: 'imp@example.com' });
    expect(r.status).toBe(422);
    expect(errorOf(r.body)).toBe('Handle @ada is already taken.');
    expect(r.body).toContain('value="Imposter"'); // the form keeps what was typed
    r = await post('/users', { handle: 'ada2', name: 'Ada Again', email: 'ADA@example.com' });
    expect(r.status).toBe(422);
    expect(errorOf(r.body)).toBe('That email already has an account.');
    expect(userRows((await get('/users')).body)).toEqual([...users.keys()].sort());

    // ---- issues: create, validation changes nothing ---------------------------------
    const issues: IssueRecord[] = [];
    const specs = [
      ['Login fails', 'ada', 3, ''],
      ['Crash on save', 'grace', 4, 'ada'],
      ['Typo in footer', 'ada', 1, ''],
      ['Slow search', 'linus', 2, 'grace'],
      ['Dark mode', 'grace', 1, ''],
      ['Export CSV', 'ada', 2, 'linus'],
      ['Memory leak', 'linus', 4, 'ada'],
      ['<script>alert(1)</script> & "quotes"', 'grace', 3, ''],
    ] as const;
    for (const [title, author, priority, assignee] of specs) {
      r = await post('/issues', { title, body: `About: ${title}`, author, assignee, priority });
      expect(r.status).toBe(303);
      const id = Number(/^\/issues\/(\d+)$/.exec(r.location ?? '')?.[1]);
      expect(id).toBeGreaterThan(0);
      issues.push({ id, title, author, priority, status: 'open', rev: 1 });
    }
    const allIds = () =>
      issues
        .filter((i) => !i.deleted)
        .map((i) => i.id)
        .sort((a, b) => a - b);
    const listed = async () =>
      rowIds((await get('/?status=all&per=50')).body).sort((a, b) => a - b);
    expect(await listed()).toEqual(allIds());

    for (const [form, message] of [
      [{ title: 'ab', author: 'ada', priority: 2 }, 'Title needs at least 3 characters.'],
      [
        { title: 'Valid title', author: 'nobody', priority: 2 },
        'Reporter: there is no user @nobody.',
      ],
      [{ title: 'Valid title', author: 'ada', priority: 9 }, 'Pick a priority.'],
      [
        { title: 'Valid title', author: 'ada', priority: 2, assignee: 'ghost' },
        'Assignee: there is no user @ghost.',
      ],
    ] as const) {
      r = await post('/issues', form);
      expect(r.status).toBe(422);
      expect(errorOf(r.body)).toBe(message);
      expect(r.body).toContain(`value="${form.title}"`);
    }
    expect(await listed()).toEqual(allIds());

    for (const issue of issues) {
      r = await get(`/issues/${issue.id}`);
      expect(r.status).toBe(200);
      expect(titleOf(r.body)).toBe(issue.title);
    }
    // escaped, never markup
    const xss = issues.at(-1)!;
    r = await get(`/issues/${xss.id}`);
    expect(r.body).not.toContain('<script>');
    expect(r.body).toContain(escapeHtml(xss.title));

    // ---- sorted, paginated lists from the sorted indexes ----------------------------
    // ids follow the log, and created-at (ctx.timestamp) never decreases along the log,
    // so the expected orders follow from the ids alone.
    async function walk(query: string, per = 3): Promise<number[]> {
      const seen: number[] = [];
      let path: string | null = `/?${query}&per=${per}`;
      let pages = 0;
      while (path !== null) {
        const page = await get(path);
        expect(page.status).toBe(200);
        const ids = rowIds(page.body);
        expect(ids.length).toBeLessThanOrEqual(per);
        seen.push(...ids);
        path = relLink(page.body, 'next');
        if (++pages > 20) throw new Error('pagination does not end');
      }
      return seen;
    }
    const open = () => issues.filter((i) => !i.deleted && i.status === 'open');
    const byNew = (a: IssueRecord, b: IssueRecord) => b.id - a.id;
    const byPriority = (a: IssueRecord, b: IssueRecord) => b.priority - a.priority || b.id - a.id;
    expect(await walk('sort=new')).toEqual(
      open()
        .sort(byNew)
        .map((i) => i.id),
    );
    expect(await walk('sort=old')).toEqual(
      open()
        .sort(byNew)
        .reverse()
        .map((i) => i.id),
    );
    expect(await walk('sort=priority')).toEqual(
      open()
        .sort(byPriority)
        .map((i) => i.id),
    );
    // previous from page 2 is page 1
    const page1 = await get('/?sort=priority&per=3');
    const page2 = await get(relLink(page1.body, 'next')!);
    expect(relLink(page1.body, 'prev')).toBeNull();
    const back = await get(relLink(page2.body, 'prev')!);
    expect(rowIds(back.body)).toEqual(rowIds(page1.body));
    expect((await get('/?after=not-a-cursor')).status).toBe(400);

    // ---- per-user page (hash indexes) --------------------------------------------------
    const sections = (html: string) => {
      const [reported, assigned] = html.split('id="assigned"');
      return { reported: rowIds(reported!), assigned: rowIds(assigned!) };
    };
    r = await get('/u/ada');
    expect(r.status).toBe(200);
    expect(sections(r.body)).toEqual({
      reported: issues
        .filter((i) => i.author === 'ada')
        .sort(byNew)
        .map((i) => i.id),
      assigned: specs
        .flatMap(([, , , assignee], n) => (assignee === 'ada' ? [issues[n]!] : []))
        .sort(byNew)
        .map((i) => i.id),
    });
    expect((await get('/u/nobody')).status).toBe(404);

    // ---- comments --------------------------------------------------------------------
    const comments: { issueId: number; body: string }[] = [];
    const typo = issues[2]!;
    const crash = issues[1]!;
    for (const [issue, body] of [
      [crash, 'Seen it too, on save as well'],
      [typo, 'It says Copyrigth'],
    ] as const) {
      r = await post(`/issues/${issue.id}/comments`, { author: 'grace', body });
      expect(r.status).toBe(303);
      expect(r.location).toMatch(new RegExp(`^/issues/${issue.id}#comment-\\d+$`));
      comments.push({ issueId: issue.id, body });
    }
    r = await post(`/issues/${crash.id}/comments`, { author: 'grace', body: '   ' });
    expect(r.status).toBe(422);
    expect(errorOf(r.body)).toBe('Comment is required.');
    r = await get(`/issues/${crash.id}`);
    expect(r.body).toContain('Comments (1)');
    expect(r.body).toContain('Seen it too, on save as well');
    expect((await get('/u/grace')).body).toContain('2 comments');

    // ---- closure links: edit works once ----------------------------------------------
    const login = issues[0]!;
    const edit = closureLink((await get(`/issues/${login.id}`)).body, 'edit');
    r = await get(edit);
    expect(r.status).toBe(200);
    expect(r.body).toContain('value="Login fails"');
    expect(r.body).not.toContain('type="hidden"'); // no id round-trips through the form
    const editForm = {
      title: 'Login fails on Safari',
      body: 'Only Safari',
      assignee: 'grace',
      priority: 3,
      status: 'open',
    };
    r = await post(edit, editForm);
    expect(r).toMatchObject({ status: 303, location: `/issues/${login.id}` });
    login.title = editForm.title;
    login.rev = 2;
    r = await get(`/issues/${login.id}`);
    expect(titleOf(r.body)).toBe('Login fails on Safari');
    expect(revisionOf(r.body)).toBe(2);
    r = await post(edit, { ...editForm, title: 'Used twice' });
    expect(r.status).toBe(410);
    expect(titleOf((await get(`/issues/${login.id}`)).body)).toBe('Login fails on Safari');

    // a refused edit shows the message, changes nothing, and the link stays usable
    const edit2 = closureLink((await get(`/issues/${login.id}`)).body, 'edit');
    r = await post(edit2, { ...editForm, title: '' });
    expect(r.status).toBe(422);
    expect(errorOf(r.body)).toBe('Title is required.');
    r = await get(`/issues/${login.id}`);
    expect(titleOf(r.body)).toBe('Login fails on Safari');
    expect(revisionOf(r.body)).toBe(2);
    r = await post(edit2, { ...editForm, status: 'closed' });
    expect(r.status).toBe(303);
    login.status = 'closed';
    login.rev = 3;

    // two forms opened on the same revision: the second save is refused (409)
    const slow = issues[3]!;
    const slowPage = (await get(`/issues/${slow.id}`)).body;
    const editA = closureLink(slowPage, 'edit');
    const editB = closureLink((await get(`/issues/${slow.id}`)).body, 'edit');
    expect(editA).not.toBe(editB);
    const slowForm = {
      title: 'Slow search',
      body: `About: Slow search`,
      assignee: 'grace',
      status: 'open',
    };
    expect((await post(editA, { ...slowForm, priority: 4 })).status).toBe(303);
    slow.priority = 4;
    slow.rev = 2;
    r = await post(editB, { ...slowForm, priority: 1 });
    expect(r.status).toBe(409);
    expect(errorOf(r.body)).toContain('was changed by someone else');
    r = await get(`/issues/${slow.id}`);
    expect(r.body).toContain('<span class="p4">urgent</span>');
    expect(revisionOf(r.body)).toBe(2);
    // the close button captured revision 1 as well: refused, nothing changes
    r = await post(toggleLink(slowPage));
    expect(r.status).toBe(409);
    expect(statusOf((await get(`/issues/${slow.id}`)).body)).toBe('open');

    // close / reopen through a button whose action is a closure
    const memory = issues[6]!;
    r = await post(toggleLink((await get(`/issues/${memory.id}`)).body));
    expect(r).toMatchObject({ status: 303, location: `/issues/${memory.id}` });
    memory.status = 'closed';
    memory.rev = 2;
    expect(statusOf((await get(`/issues/${memory.id}`)).body)).toBe('closed');
    expect(await walk('sort=new')).toEqual(
      open()
        .sort(byNew)
        .map((i) => i.id),
    );
    expect(await walk('status=closed&sort=old')).toEqual(
      issues.filter((i) => i.status === 'closed').map((i) => i.id),
    );

    // ---- closure links: delete, then every link to the deleted issue behaves -----------
    const typoPage = (await get(`/issues/${typo.id}`)).body;
    const del = closureLink(typoPage, 'delete');
    const staleEdit = closureLink(typoPage, 'edit');
    r = await get(del);
    expect(r.status).toBe(200);
    expect(r.body).toContain(`Delete #${typo.id}?`);
    expect(r.body).toContain('its 1 comment will be deleted');
    expect((await get(`/issues/${typo.id}`)).status).toBe(200); // showing the confirmation changed nothing
    r = await post(del);
    expect(r).toMatchObject({ status: 303, location: '/' });
    typo.deleted = true;
    comments.splice(
      comments.findIndex((c) => c.issueId === typo.id),
      1,
    );
    expect((await get(`/issues/${typo.id}`)).status).toBe(404);
    expect((await get(del)).status).toBe(410); // used up
    expect((await post(del)).status).toBe(410);
    r = await get(staleEdit); // still registered, but its object is gone
    expect(r.status).toBe(404);
    expect(r.body).toContain(`Issue #${typo.id}`);
    expect(
      (await post(staleEdit, { title: 'Resurrected', priority: 2, status: 'open' })).status,
    ).toBe(404);
    expect(await listed()).toEqual(allIds());
    expect((await get('/u/grace')).body).toContain('1 comment'); // the issue's comments went with it

    // unknown links
    expect((await get(`/c/${randomUUID()}`)).status).toBe(410);
    expect((await get('/c/not-a-link')).status).toBe(410);
    r = await post(`/c/${randomUUID()}`, { title: 'x' });
    expect(r.status).toBe(410);
    expect(r.body).toContain('vanish when the server restarts');

    // ---- kill -9 in the middle of a burst of writes, restart --------------------------
    const liveLinks = [
      closureLink((await get(`/issues/${crash.id}`)).body, 'edit'),
      closureLink((await get('/')).body, 'delete'),
    ];
    expect((await get(liveLinks[0]!)).status).toBe(200);
    // Four writers post new issues one after another; kill -9 lands while each has one in
    // flight. A 303 is an acknowledgement; a cut-off request may or may not have applied.
    const burst: { title: string; id?: number }[] = [];
    let acked = 0;
    let killed: Promise<void> | undefined;
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let n = 0; n < 100; n++) {
          const b: { title: string; id?: number } = { title: `Burst ${w}.${n}` };
          burst.push(b);
          try {
            const reply = await post('/issues', {
              title: b.title,
              author: 'linus',
              priority: 1 + (n % 4),
            });
            expect(reply.status).toBe(303);
            b.id = Number(/\/issues\/(\d+)$/.exec(reply.location ?? '')?.[1]);
          } catch (err) {
            if (!app.alive || killed) return; // cut off by the kill
            throw err;
          }
          if (++acked === 12) killed = app.kill();
        }
      }),
    );
    await (killed ?? app.kill());
    expect(app.alive).toBe(false);
    for (const b of burst) {
      if (b.id !== undefined)
        issues.push({
          id: b.id,
          title: b.title,
          author: 'linus',
          priority: 0,
          status: 'open',
          rev: 1,
        });
    }
    expect(acked).toBeGreaterThanOrEqual(12);

    ({ app, url } = await startApp(env));

    expect(userRows((await get('/users')).body)).toEqual([...users.keys()].sort());
    for (const [handle, name] of users)
      expect((await get(`/u/${handle}`)).body).toContain(escapeHtml(name));
    for (const issue of issues) {
      r = await get(`/issues/${issue.id}`);
      if (issue.deleted) {
        expect(r.status).toBe(404);
        continue;
      }
      expect(r.status).toBe(200);
      expect(titleOf(r.body)).toBe(issue.title);
      expect(statusOf(r.body)).toBe(issue.status);
      expect(revisionOf(r.body)).toBe(issue.rev);
    }
    for (const c of comments) expect((await get(`/issues/${c.issueId}`)).body).toContain(c.body);
    // every acknowledged issue is listed; an unacknowledged one at most once
    const after = await walk('status=all&sort=old', 7);
    expect(new Set(after).size).toBe(after.length);
    for (const id of allIds()) expect(after).toContain(id);
    expect(after).toEqual([...after].sort((a, b) => a - b));
    expect(after.length).toBeLessThanOrEqual(
      allIds().length + burst.filter((b) => b.id === undefined).length,
    );
    // closure links die with the process that made them
    for (const link of [...liveLinks, edit2]) expect((await get(link)).status).toBe(410);
    // and the app goes on
    r = await post('/issues', { title: 'After the restart', author: 'ada', priority: 2 });
    expect(r.status).toBe(303);
    expect(Number(/\/issues\/(\d+)$/.exec(r.location ?? '')?.[1])).toBeGreaterThan(
      Math.max(...after),
    );
  });

  test('its own schema upgrade: a data dir of version 1 opens with version 2, which activates, migrates and takes votes; version 1 code is then refused', async () => {
    const dataDir = tempDir('prevail-app-');
    dirs.push(dataDir);
    const [port, raftPort] = await freePorts(2);
    const env = { PORT: String(port), DATA_DIR: dataDir, RAFT_ADDRESS: `127.0.0.1:${raftPort}` };
    // /status (the operations handler's, open on this loopback app) has store.schemaStatus().
    const schemaOf = async (base: string) =>
      JSON.parse((await http(base, 'GET', '/status')).body).schema as {
        active: number;
        code: { oldest: number; newest: number };
        activations: { index: number; version: number }[];
      };
    const votesOf = (html: string) => {
      const m = /<span class="votes">(\d+)<\/span>/.exec(html);
      return m ? Number(m[1]) : null;
    };
    const footerVersion = (html: string) =>
      Number(/<span class="schema-version">(\d+)<\/span>/.exec(html)?.[1]);

    // The app as first shipped: version 1, no votes.
    let { app, url } = await startApp({ ...env, SCHEMA_VERSION: '1' });
    const post = (path: string, form: Record<string, string | number> = {}) =>
      http(url, 'POST', path, form);
    for (const handle of ['ada', 'grace'])
      expect(
        (await post('/users', { handle, name: handle, email: `${handle}@example.com` })).status,
      ).toBe(303);
    let r = await post('/issues', { title: 'Old issue', author: 'ada', priority: 2 });
    expect(r.status).toBe(303);
    const oldIssue = r.location!;
    expect(await schemaOf(url)).toMatchObject({ active: 1, code: { oldest: 1, newest: 1 } });
    r = await http(url, 'GET', oldIssue);
    expect(votesOf(r.body)).toBeNull();
    expect(footerVersion(r.body)).toBe(1);
    app.child.kill('SIGTERM');
    expect(await app.waitExit(15_000)).toEqual({ code: 0, signal: null });

    // The new code: it replays version 1's entries, then activates version 2 at open (a single
    // voter), whose migration gives the existing issue its voters.
    ({ app, url } = await startApp(env));
    const status = await schemaOf(url);
    expect(status).toMatchObject({ active: 2, code: { oldest: 1, newest: 2 } });
    expect(status.activations).toEqual([{ index: expect.any(Number), version: 2 }]);
    r = await http(url, 'GET', oldIssue);
    expect(votesOf(r.body)).toBe(0);
    expect(footerVersion(r.body)).toBe(2);
    r = await http(url, 'POST', `${oldIssue}/votes`, { voter: 'ada' });
    expect(r).toMatchObject({ status: 303, location: `${oldIssue}#votes` });
    r = await http(url, 'POST', `${oldIssue}/votes`, { voter: 'ada' });
    expect(r.status).toBe(422);
    expect(errorOf(r.body)).toBe('@ada has already voted for this issue.');
    expect((await http(url, 'POST', `${oldIssue}/votes`, { voter: 'grace' })).status).toBe(303);
    // an issue created under version 2 starts with no votes
    r = await http(url, 'POST', '/issues', { title: 'New issue', author: 'grace', priority: 3 });
    expect(r.status).toBe(303);
    const newIssue = r.location!;
    expect(votesOf((await http(url, 'GET', newIssue)).body)).toBe(0);
    expect((await http(url, 'POST', `${newIssue}/votes`, { voter: 'ada' })).status).toBe(303);

    // kill -9 and a restart replay both versions' entries to the same votes.
    await app.kill();
    ({ app, url } = await startApp(env));
    expect((await schemaOf(url)).active).toBe(2);
    expect(votesOf((await http(url, 'GET', oldIssue)).body)).toBe(2);
    expect(votesOf((await http(url, 'GET', newIssue)).body)).toBe(1);
    app.child.kill('SIGTERM');
    expect(await app.waitExit(15_000)).toEqual({ code: 0, signal: null });

    // Back to version 1's code after the activation: refused, the data dir left as it is.
    const old = new AppProcess({ ...env, SCHEMA_VERSION: '1' });
    apps.push(old);
    await expect(old.ready).rejects.toThrow(/PREVAIL_SCHEMA_TOO_OLD/);
    ({ url } = await startApp(env));
    expect(votesOf((await http(url, 'GET', oldIssue)).body)).toBe(2);
  });

  test('background work on the leader: a recurring schedule closes stale issues, a job records a digest', async () => {
    const dataDir = tempDir('prevail-app-');
    dirs.push(dataDir);
    const [port, raftPort] = await freePorts(2);
    const { url } = await startApp({
      PORT: String(port),
      DATA_DIR: dataDir,
      RAFT_ADDRESS: `127.0.0.1:${raftPort}`,
      STALE_AFTER_MS: '400',
      STALE_CHECK_EVERY_MS: '100',
      DIGEST_EVERY_MS: '100',
    });
    expect(
      (await http(url, 'POST', '/users', { handle: 'ada', name: 'Ada', email: 'ada@example.com' }))
        .status,
    ).toBe(303);
    const r = await http(url, 'POST', '/issues', {
      title: 'Left alone',
      author: 'ada',
      priority: 2,
    });
    const path = r.location!;
    expect(statusOf((await http(url, 'GET', path)).body)).toBe('open');
    const deadline = Date.now() + 20_000;
    let page = '';
    while (Date.now() < deadline) {
      page = (await http(url, 'GET', path)).body;
      if (statusOf(page) === 'closed' && /0 open, 1 closed, 1 people/.test(page)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(statusOf(page)).toBe('closed'); // closed by the scheduled closeStale
    expect(page).toMatch(/0 open, 1 closed, 1 people/); // the digest job saw it
  });

  // The app mounts operationsHandler (with OPS_TOKEN): the CLI's commands work against it as
  // against `prevail serve`, and without the token they are refused.
  test('the prevail CLI against a 3-node app cluster: status, members, snapshot, transfer; refused without the token', async () => {
    const certs = tempDir('prevail-app-ops-certs-');
    dirs.push(certs);
    await writeClusterCerts(certs, [1, 2, 3]);
    const ports = await freePorts(6);
    const spec = [1, 2, 3].map((id) => `${id}=127.0.0.1:${ports[2 + id]}`).join(',');
    const TOKEN = 'app-ops-token-0123456789';
    const urls = await Promise.all(
      [1, 2, 3].map(async (id) => {
        const dataDir = tempDir('prevail-app-ops-');
        dirs.push(dataDir);
        const env = { NODE_ID: String(id), CLUSTER: spec, TLS_DIR: certs, OPS_TOKEN: TOKEN };
        return (await startApp({ ...env, PORT: String(ports[id - 1]), DATA_DIR: dataDir })).url;
      }),
    );
    const leaderUrl = async () => {
      for (const u of urls) if ((await http(u, 'GET', '/health/leader')).status === 200) return u;
      return undefined;
    };
    await waitFor('a leader', leaderUrl, 60_000);
    const all = urls.join(',');
    const cli = (...args: string[]) => runCli([...args, '--token', TOKEN], 90_000);

    const refused = await runCli(['status', '--node', urls[0]!]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PREVAIL_UNAUTHORIZED');

    const leader = (await leaderUrl())!;
    const status = await cli('status', '--node', leader);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s).toMatchObject({ role: 'leader', cluster: { lagKnown: true } });
    expect(s.cluster.members.map((m: { id: number }) => m.id)).toEqual([1, 2, 3]);

    const snap = await cli('snapshot', '--node', all);
    expect(snap.code).toBe(0);
    expect(JSON.parse(snap.stdout).index).toBeGreaterThan(0);

    const [sparePort] = await freePorts(1);
    const added = await cli(
      'members',
      'add',
      '4',
      `127.0.0.1:${sparePort}`,
      '--role',
      'spare',
      '--node',
      all,
    );
    expect({ code: added.code, stderr: added.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(added.stdout).members).toContainEqual(
      expect.objectContaining({ id: 4, role: 'spare' }),
    );
    const removed = await cli('members', 'remove', '4', '--node', all);
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout).members.map((m: { id: number }) => m.id)).toEqual([1, 2, 3]);

    const oldLeader = Number(s.id);
    const transfer = await cli('transfer', '--node', all);
    expect({ code: transfer.code, stderr: transfer.stderr }).toEqual({ code: 0, stderr: '' });
    const next = JSON.parse(transfer.stdout).leader.id;
    expect(next).not.toBe(oldLeader);
    expect([1, 2, 3]).toContain(next);
    await waitFor(
      'the new leader to answer /health/leader',
      async () => {
        const u = await leaderUrl();
        return u === urls[next - 1];
      },
      60_000,
    );
  }, 300_000);

  test('limits and errors: 413, 415, 404, 405, and SIGTERM exits by itself', async () => {
    const dataDir = tempDir('prevail-app-');
    dirs.push(dataDir);
    const [port, raftPort] = await freePorts(2);
    const { app, url } = await startApp({
      PORT: String(port),
      DATA_DIR: dataDir,
      RAFT_ADDRESS: `127.0.0.1:${raftPort}`,
    });
    const big = 'x'.repeat(70 * 1024);
    let r = await http(url, 'POST', '/users', {
      handle: 'big',
      name: big,
      email: 'big@example.com',
    });
    expect(r.status).toBe(413);
    r = await http(url, 'POST', '/users', JSON.stringify({ handle: 'json' }), {
      'content-type': 'application/json',
    });
    expect(r.status).toBe(415);
    expect((await http(url, 'DELETE', '/users')).status).toBe(405);
    expect((await http(url, 'GET', '/nowhere')).status).toBe(404);
    expect((await http(url, 'GET', '/issues/12345')).status).toBe(404);
    r = await http(url, 'GET', '/users');
    expect(r.status).toBe(200);
    expect(userRows(r.body)).toEqual([]); // nothing got in
    // still serving after the refusals
    expect(
      (await http(url, 'POST', '/users', { handle: 'ok', name: 'OK', email: 'ok@example.com' }))
        .status,
    ).toBe(303);

    app.child.kill('SIGTERM');
    const exit = await app.waitExit(15_000);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});

// Plain TCP to a raft port, saying what the insecure transport's first bytes would (a
// handshake: protocol 1, server id 1, an address): resolves with what came back before the
// node closed the connection.
function plainRaftHello(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const hello = Buffer.alloc(24 + 16);
    hello.writeBigUInt64LE(1n, 0);
    hello.writeBigUInt64LE(1n, 8);
    hello.writeBigUInt64LE(16n, 16);
    hello.write('127.0.0.1:1', 24);
    socket.on('connect', () => socket.write(hello));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // a reset counts as closed
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the raft port kept a plain TCP connection open for 10 s'));
    }, 10_000).unref();
  });
}

test('npm run cluster: 3 app nodes on mutual TLS; writes on any node; kill -9 of the leader, the others go on, the dead one is restarted and catches up', async () => {
  const root = tempDir('prevail-app-cluster-');
  // The launcher numbers each node's ports from a base: three consecutive free ports each.
  const httpBase = await consecutiveFreePorts(3);
  let raftBase = await consecutiveFreePorts(3);
  while (Math.abs(raftBase - httpBase) < 3) raftBase = await consecutiveFreePorts(3);
  const launcher = spawn(
    process.execPath,
    [join(process.cwd(), 'examples', 'app', 'cluster.mjs')],
    {
      env: {
        ...process.env,
        HTTP_PORT: String(httpBase),
        RAFT_PORT: String(raftBase),
        DATA_DIR: root,
        RESTART_MS: '500',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  launcher.stdout!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  launcher.stderr!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((res) => launcher.once('exit', (code) => res(code)));
  const pids = () => [...output.matchAll(/node \d+: pid (\d+)/g)].map((m) => Number(m[1]));
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const until = async (what: string, probe: () => boolean | Promise<boolean>, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const url = (id: number) => `http://127.0.0.1:${httpBase + id - 1}`;
  try {
    await until(
      '3 nodes listening and a leader',
      () => (output.match(/listening on/g) ?? []).length >= 3 && /leader: node \d/.test(output),
    );
    const leaderOf = () =>
      Number([...output.matchAll(/leader: node (\d+) \(pid (\d+)/g)].at(-1)![1]);
    const leader = leaderOf();
    const leaderPid = Number([...output.matchAll(/leader: node (\d+) \(pid (\d+)/g)].at(-1)![2]);
    // The members talk mutual TLS with the certificates the launcher made on its first run;
    // a plain TCP peer gets no engine: the node closes on it, answering at most a TLS alert.
    expect(existsSync(join(root, 'certs', 'ca.pem'))).toBe(true);
    for (const id of [1, 2, 3]) {
      const status = JSON.parse((await http(url(id), 'GET', '/admin/status.json')).body);
      expect(status.security).toBe('tls');
    }
    const answer = await plainRaftHello(raftBase + leader - 1);
    expect(answer.length === 0 || answer[0] === 0x15).toBe(true);
    const followers = [1, 2, 3].filter((id) => id !== leader);
    // Every node runs the newest code: schema version 2 activates once all three recorded it.
    await until('schema version 2 active on every node', async () =>
      (
        await Promise.all(
          [1, 2, 3].map(
            async (id) =>
              JSON.parse((await http(url(id), 'GET', '/admin/status.json')).body).schema.active ===
              2,
          ),
        )
      ).every(Boolean),
    );
    // A write on a follower (forwarded), visible on the other follower once it applied it.
    // Right after the election the follower may not know the leader's channel yet: it answers
    // 503 "Not available" (nothing saved), and a client tries again, as the page tells it to.
    let r = await http(url(followers[0]!), 'POST', '/users', {
      handle: 'ada',
      name: 'Ada',
      email: 'ada@example.com',
    });
    for (let tries = 0; r.status === 503 && /Not available/.test(r.body) && tries < 100; tries++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await http(url(followers[0]!), 'POST', '/users', {
        handle: 'ada',
        name: 'Ada',
        email: 'ada@example.com',
      });
    }
    expect(r).toMatchObject({ status: 303, location: '/u/ada' });
    await until('the write on every node', async () =>
      (
        await Promise.all(
          [1, 2, 3].map(async (id) =>
            userRows((await http(url(id), 'GET', '/users')).body).includes('ada'),
          ),
        )
      ).every(Boolean),
    );
    // kill -9 the leader: the survivors elect another and take writes.
    process.kill(leaderPid, 'SIGKILL');
    await until('a new leader', () => leaderOf() !== leader);
    for (const id of followers) {
      r = await http(url(id), 'POST', '/users', {
        handle: `after${id}`,
        name: 'After',
        email: `after${id}@example.com`,
      });
      expect(r.status).toBe(303);
    }
    // The launcher restarts the dead node, which catches up from the others.
    await until('the old leader back with every write', async () => {
      try {
        return (
          userRows((await http(url(leader), 'GET', '/users')).body).join() ===
          ['ada', ...followers.map((id) => `after${id}`)].sort().join()
        );
      } catch {
        return false;
      }
    });
    launcher.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    expect(
      await Promise.race([
        exited,
        new Promise((r) => {
          timer = setTimeout(() => r('timeout'), 15_000);
        }),
      ]),
    ).toBe(0);
    clearTimeout(timer);
    await until('every node process gone', () => pids().every((pid) => !alive(pid)), 15_000);
  } finally {
    for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
}, 90_000);

test('closure registry: links expire after the TTL, the least recently used go beyond the maximum, revoke kills one', async () => {
  type Registry = {
    link(fn: (call: Record<string, unknown>) => unknown, options?: { ttlMs?: number }): string;
    resolve(id: string): ((call?: Record<string, unknown>) => unknown) | undefined;
    revoke(id: string): boolean;
    sweep(): number;
    close(): void;
    readonly size: number;
  };
  const modulePath: string = join(process.cwd(), 'examples', 'app', 'closures.mjs');
  const { ClosureRegistry } = (await import(modulePath)) as {
    ClosureRegistry: (new (o: object) => Registry) & { idOf(path: string): string | null };
  };
  let now = 1_000;
  const reg = new ClosureRegistry({ ttlMs: 100, maxEntries: 3, sweepEveryMs: 0, now: () => now });
  const id = (path: string) => ClosureRegistry.idOf(path)!;
  const captured = { title: 'an object' };
  const a = id(reg.link((call) => ({ captured, call })));
  expect(a).toMatch(/^[0-9a-f-]{36}$/);
  expect(reg.resolve(a)!({ method: 'GET' })).toMatchObject({ captured, call: { method: 'GET' } });
  // one-shot: the function can revoke its own link
  const once = id(reg.link(({ revoke }) => (revoke as () => void)()));
  reg.resolve(once)!();
  expect(reg.resolve(once)).toBeUndefined();
  // LRU: with a max of 3, using `a` keeps it; the least recently used goes
  const b = id(reg.link(() => 'b'));
  const c = id(reg.link(() => 'c'));
  reg.resolve(a);
  const d = id(reg.link(() => 'd'));
  expect(reg.size).toBe(3);
  expect(reg.resolve(b)).toBeUndefined();
  expect([a, c, d].every((x) => reg.resolve(x) !== undefined)).toBe(true);
  // TTL from creation; use does not extend it
  now += 99;
  expect(reg.resolve(a)).toBeDefined();
  now += 1;
  expect(reg.resolve(a)).toBeUndefined();
  const e = id(reg.link(() => 'e', { ttlMs: 1000 }));
  now += 500;
  expect(reg.sweep()).toBe(2); // c and d
  expect(reg.size).toBe(1);
  expect(reg.resolve(e)).toBeDefined();
  expect(ClosureRegistry.idOf('/c/')).toBeNull();
  expect(ClosureRegistry.idOf('/c/x/y')).toBeNull();
  reg.close();
  expect(reg.size).toBe(0);
});

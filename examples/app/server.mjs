// The example app: a small issue tracker served as plain HTML forms over node:http, its
// state in a prevail store (a durable single Raft node by default).
//
//   node examples/app/server.mjs     PORT (3000), DATA_DIR (./data), RAFT_ADDRESS (127.0.0.1:7001)
//
// Every POST answers only after its command is committed to the log on disk, so what a
// browser saw acknowledged survives kill -9. Reads are plain function calls on the store's
// in-memory collections and indexes.
import { realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

import { ErrorCodes, adminHandler, open } from '../../dist/index.js';
import { ClosureRegistry } from './closures.mjs';
import { issueKeys, schema } from './schema.mjs';
import * as views from './views.mjs';

export const BODY_LIMIT = 64 * 1024;
const PAGE_SIZE = 10;
const MAX_PAGE_SIZE = 50;

class HttpError extends Error {
  constructor(status, heading, text, { headers = {}, links } = {}) {
    super(text);
    this.status = status;
    this.heading = heading;
    this.headers = headers;
    this.links = links;
  }
}

/**
 * Opens the store and starts serving. Resolves with `{ url, close() }` once it listens;
 * `close()` stops the HTTP server and closes the store (idempotent).
 */
export async function startApp({
  port = 3000,
  dataDir = './data',
  raftAddress = '127.0.0.1:7001',
  host = '127.0.0.1',
  closureTtlMs = 30 * 60_000,
  maxClosures = 10_000,
  // Cluster mode: this node's id and every member's { id, address } (the same list on each node).
  id = 1,
  cluster = undefined,
  // Background work, on the leader only: open issues untouched this long are closed by a
  // recurring scheduled command (checked every staleCheckEveryMs); a digest of the counts is
  // recorded every digestEveryMs by a leader job.
  staleAfterMs = 30 * 24 * 3600_000,
  staleCheckEveryMs = 60_000,
  digestEveryMs = 60_000,
} = {}) {
  const store = await open({ schema, dataDir, address: raftAddress, id, cluster });
  // The cluster's admin page, mounted as any app would (members, leader, lag, live).
  const admin = adminHandler(store);

  // The schedule lives in the replicated state; whichever node leads makes sure it exists
  // (once per leadership), and the store's scheduler proposes it when due, exactly once.
  store.onLeader(async function keepStaleSchedule() {
    const current = store.schedules().find((s) => s.id === 'close-stale');
    if (current?.every === staleCheckEveryMs && current.args?.olderThanMs === staleAfterMs) return;
    await store.schedule(
      'closeStale',
      { olderThanMs: staleAfterMs },
      Date.now() + staleCheckEveryMs,
      { every: staleCheckEveryMs, id: 'close-stale' },
    );
  });
  // A job: runs while this node leads, stops the moment it doesn't; state only through commands.
  store.onLeader(async function digest({ signal }) {
    while (!signal.aborted) {
      await store.propose('recordDigest', {}, { signal });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, digestEveryMs);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  });
  const closures = new ClosureRegistry({ ttlMs: closureTtlMs, maxEntries: maxClosures });
  const view = store.view;

  // ---- responses ---------------------------------------------------------------------

  const page = (title, body, status = 200) => ({ status, title, body });
  const redirect = (location) => ({ status: 303, location });
  const footer = () => {
    const s = store.status();
    return views.footer({
      nodeId: s.id,
      role: s.role,
      appliedIndex: s.appliedIndex,
      ttlMinutes: Math.round(closures.ttlMs / 60_000),
      digest: view.digests.values().next().value,
    });
  };

  function send(res, r, extraHeaders = {}) {
    const headers = {
      'content-security-policy':
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
      // Closure links are capabilities: don't leak them to other sites through Referer.
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      ...extraHeaders,
      ...r.headers,
    };
    if (r.location) {
      res.writeHead(r.status, { ...headers, location: r.location, 'content-length': 0 }).end();
      return;
    }
    const body = views.layout({ title: r.title, body: r.body, footer: footer() });
    res.writeHead(r.status, {
      ...headers,
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  /** Runs a command; an AppError (a handler's refusal) comes back as a value for the form. */
  async function run(name, args) {
    try {
      return { result: await store.propose(name, args) };
    } catch (err) {
      if (err?.name === 'AppError') return { error: err };
      if (err?.code === ErrorCodes.UNIQUE_VIOLATION)
        return { error: { message: 'That is already taken.', field: null, status: 422 } };
      if (err?.mayHaveApplied) {
        throw new HttpError(
          503,
          'Not confirmed',
          'The cluster changed leader while saving this; it may or may not have been saved. Check before trying again.',
          { headers: { 'retry-after': '1' } },
        );
      }
      if (
        err?.code === ErrorCodes.CLOSED ||
        err?.code === ErrorCodes.NOT_LEADER ||
        err?.code === ErrorCodes.LEADERSHIP_LOST ||
        err?.code === ErrorCodes.UNAVAILABLE ||
        err?.code === ErrorCodes.TIMEOUT
      ) {
        throw new HttpError(
          503,
          'Not available',
          'This server is shutting down or not the leader; nothing was saved for sure. Try again in a moment.',
          { headers: { 'retry-after': '1' } },
        );
      }
      throw err;
    }
  }

  // ---- data for the views ------------------------------------------------------------

  const userById = (id) => (id === null || id === undefined ? null : (view.users.get(id) ?? null));
  const allUsers = () => [...view.users.values()].sort((a, b) => (a.handle < b.handle ? -1 : 1));
  const newestFirst = (a, b) => b.createdAt - a.createdAt || b.id - a.id;

  /** A table row for an issue, with edit/delete links that capture this very object. */
  function row(issue) {
    return views.issueRow({
      issue,
      author: userById(issue.authorId),
      assignee: userById(issue.assigneeId),
      comments: view.comments.byIssue.count(issue.id),
      actions: { edit: editLink(issue), delete: deleteLink(issue) },
    });
  }

  const issueGone = (issue) =>
    page(
      'Deleted',
      views.messagePage({
        heading: 'Deleted',
        text: `Issue #${issue.id} (“${issue.title}”) no longer exists.`,
        links: [['/', 'All issues']],
      }),
      404,
    );

  const fromIssue = (issue) => ({
    title: issue.title,
    body: issue.body,
    priority: issue.priority,
    status: issue.status,
    assignee: userById(issue.assigneeId)?.handle ?? '',
  });

  // ---- closures: each captures the issue object it was made for ------------------------

  function editLink(issue) {
    return closures.link(async ({ method, form, revoke, self }) => {
      const current = view.issues.get(issue.id);
      if (!current) return issueGone(issue);
      const formPage = (values, error, status = 200) =>
        page(
          `Edit #${issue.id}`,
          views.issueForm({
            action: self,
            values,
            users: allUsers(),
            error,
            issue,
            stale: current.rev !== issue.rev && !error,
          }),
          status,
        );
      if (method === 'GET') return formPage(fromIssue(issue));
      const values = pick(form, ['title', 'body', 'assignee', 'priority', 'status']);
      const { error } = await run('updateIssue', { id: issue.id, rev: issue.rev, ...values });
      if (error?.status === 404) return issueGone(issue);
      if (error) return formPage(values, error, error.status ?? 422);
      revoke(); // one successful save per link: a second one would be a stale edit anyway
      return redirect(`/issues/${issue.id}`);
    });
  }

  function deleteLink(issue) {
    return closures.link(async ({ method, revoke, self }) => {
      if (!view.issues.has(issue.id)) return issueGone(issue);
      if (method === 'GET') {
        const n = view.comments.byIssue.count(issue.id);
        return page(
          `Delete #${issue.id}?`,
          views.confirmPage({
            heading: `Delete #${issue.id}?`,
            text: `“${issue.title}” and its ${n} comment${n === 1 ? '' : 's'} will be deleted.`,
            action: self,
            button: 'Delete',
            cancel: `/issues/${issue.id}`,
          }),
        );
      }
      const { error } = await run('deleteIssue', { id: issue.id });
      if (error?.status === 404) return issueGone(issue);
      if (error)
        throw new HttpError(error.status ?? 422, 'Not deleted', error.message, {
          links: [[`/issues/${issue.id}`, 'Back']],
        });
      revoke();
      return redirect('/');
    });
  }

  function toggleLink(issue) {
    const to = issue.status === 'open' ? 'closed' : 'open';
    const verb = to === 'closed' ? 'Close' : 'Reopen';
    return closures.link(async ({ method, revoke, self }) => {
      if (!view.issues.has(issue.id)) return issueGone(issue);
      const confirm = (error, status = 200) =>
        page(
          `${verb} #${issue.id}?`,
          views.confirmPage({
            heading: `${verb} #${issue.id}?`,
            text: `“${issue.title}” is ${issue.status}.`,
            action: self,
            button: verb,
            cancel: `/issues/${issue.id}`,
            error,
          }),
          status,
        );
      if (method === 'GET') return confirm();
      const { error } = await run('setStatus', { id: issue.id, rev: issue.rev, status: to });
      if (error?.status === 404) return issueGone(issue);
      if (error) return confirm(error, error.status ?? 422);
      revoke();
      return redirect(`/issues/${issue.id}`);
    });
  }

  // ---- pages -------------------------------------------------------------------------

  function listIssues(url) {
    const q = url.searchParams;
    const query = {
      sort: oneOf(q.get('sort'), ['new', 'old', 'priority'], 'new'),
      status: oneOf(q.get('status'), ['open', 'closed', 'all'], 'open'),
      per: pageSize(q.get('per')),
    };
    const indexName =
      query.status === 'all'
        ? query.sort === 'priority'
          ? 'byPriority'
          : 'byCreated'
        : query.sort === 'priority'
          ? 'byStatusPriority'
          : 'byStatusCreated';
    const index = view.issues[indexName];
    const keyOf = issueKeys[indexName];
    const keyLength = keyOf({ status: '', priority: 0, createdAt: 0, id: 0 }).length;
    const after = decodeCursor(q.get('after'), keyLength);
    const before = after ? null : decodeCursor(q.get('before'), keyLength);
    const descending = query.sort !== 'old';
    // Rows strictly beyond `from` in display order (forward) or against it, from the sorted index.
    const scan = (forward, from, limit) => {
      const reverse = forward ? descending : !descending;
      const options = { reverse, limit };
      if (query.status !== 'all') options.prefix = [query.status];
      if (from) options[reverse ? 'lt' : 'gt'] = from;
      return [...index.range(options)];
    };
    const items = before ? scan(false, before, query.per).reverse() : scan(true, after, query.per);
    const first = items[0];
    const last = items.at(-1);
    const link = (change) => {
      const p = new URLSearchParams();
      const merged = { ...query, ...change };
      if (merged.status !== 'open') p.set('status', merged.status);
      if (merged.sort !== 'new') p.set('sort', merged.sort);
      if (merged.per !== PAGE_SIZE) p.set('per', String(merged.per));
      if (merged.after) p.set('after', merged.after);
      if (merged.before) p.set('before', merged.before);
      const s = p.toString();
      return s ? `/?${s}` : '/';
    };
    const prev =
      first && scan(false, keyOf(first), 1).length
        ? link({ before: encodeCursor(keyOf(first)) })
        : null;
    const next =
      last && scan(true, keyOf(last), 1).length ? link({ after: encodeCursor(keyOf(last)) }) : null;
    const counts = {
      open: view.issues.byStatus.count('open'),
      closed: view.issues.byStatus.count('closed'),
      all: view.issues.size,
    };
    return page(
      'Issues',
      views.listPage({
        rows: items.map(row),
        counts,
        query,
        link,
        prev,
        next,
        cursorGiven: Boolean(after || before),
      }),
    );
  }

  function issueDetail(id, commentForm = { values: {} }, status = 200) {
    const issue = view.issues.get(id);
    if (!issue)
      throw new HttpError(404, 'Not found', `There is no issue #${id}; it may have been deleted.`, {
        links: [['/', 'All issues']],
      });
    const comments = view.comments.byIssue
      .get(issue.id)
      .sort((a, b) => a.createdAt - b.createdAt || a.id - b.id)
      .map((comment) => ({ comment, author: userById(comment.authorId) }));
    return page(
      `#${issue.id} ${issue.title}`,
      views.issuePage({
        issue,
        author: userById(issue.authorId),
        assignee: userById(issue.assigneeId),
        comments,
        users: allUsers(),
        commentForm,
        actions: { edit: editLink(issue), delete: deleteLink(issue), toggle: toggleLink(issue) },
      }),
      status,
    );
  }

  function userDetail(handle) {
    const user = view.users.byHandle.get(handle.toLowerCase());
    if (!user)
      throw new HttpError(404, 'Not found', `Nobody here goes by @${handle}.`, {
        links: [['/users', 'People']],
      });
    return page(
      `@${user.handle}`,
      views.userPage({
        user,
        reported: view.issues.byAuthor.get(user.id).sort(newestFirst).map(row),
        assigned: view.issues.byAssignee.get(user.id).sort(newestFirst).map(row),
        comments: view.comments.byAuthor.count(user.id),
      }),
    );
  }

  // ---- routes ------------------------------------------------------------------------

  const routes = [
    ['GET', /^\/$/, (ctx) => listIssues(ctx.url)],
    [
      'GET',
      /^\/issues\/new$/,
      () =>
        page('New issue', views.issueForm({ action: '/issues', values: {}, users: allUsers() })),
    ],
    [
      'POST',
      /^\/issues$/,
      async ({ req }) => {
        const values = pick(await readForm(req), [
          'title',
          'body',
          'author',
          'assignee',
          'priority',
        ]);
        const { result, error } = await run('createIssue', values);
        if (error)
          return page(
            'New issue',
            views.issueForm({ action: '/issues', values, users: allUsers(), error }),
            error.status ?? 422,
          );
        return redirect(`/issues/${result.id}`);
      },
    ],
    ['GET', /^\/issues\/(\d{1,15})$/, ({ params }) => issueDetail(Number(params[0]))],
    [
      'POST',
      /^\/issues\/(\d{1,15})\/comments$/,
      async ({ req, params }) => {
        const id = Number(params[0]);
        const values = pick(await readForm(req), ['author', 'body']);
        const { result, error } = await run('addComment', { issueId: id, ...values });
        if (error?.status === 404)
          throw new HttpError(404, 'Not found', error.message, { links: [['/', 'All issues']] });
        if (error) return issueDetail(id, { values, error }, error.status ?? 422);
        return redirect(`/issues/${id}#comment-${result.id}`);
      },
    ],
    [
      'GET',
      /^\/users$/,
      () =>
        page(
          'People',
          views.usersPage({
            rows: [...view.users.values()].map((user) => ({
              user,
              reported: view.issues.byAuthor.count(user.id),
            })),
          }),
        ),
    ],
    ['GET', /^\/users\/new$/, () => page('Join', views.userForm({ values: {} }))],
    [
      'POST',
      /^\/users$/,
      async ({ req }) => {
        const values = pick(await readForm(req), ['handle', 'name', 'email']);
        const { result, error } = await run('createUser', values);
        if (error) return page('Join', views.userForm({ values, error }), error.status ?? 422);
        return redirect(`/u/${encodeURIComponent(result.handle)}`);
      },
    ],
    ['GET', /^\/u\/([^/]{1,64})$/, ({ params }) => userDetail(safeDecode(params[0]))],
  ];

  async function closureRoute(req, id) {
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') {
      throw new HttpError(405, 'Method not allowed', `${req.method} is not supported here.`, {
        headers: { allow: 'GET, HEAD, POST' },
      });
    }
    const fn = closures.resolve(id);
    if (!fn) {
      throw new HttpError(
        410,
        'This link has expired',
        'Action links like this one live in the memory of the server that made them: they last ' +
          `${Math.round(closures.ttlMs / 60_000)} minutes, stop working once their action is done, and vanish when the server restarts. ` +
          'Nothing was changed. Open the page again to get a fresh link.',
        { links: [['/', 'All issues']], headers: { 'cache-control': 'no-store' } },
      );
    }
    const form = req.method === 'POST' ? await readForm(req) : null;
    return fn({ method: req.method === 'HEAD' ? 'GET' : req.method, form, self: `/c/${id}` });
  }

  async function handle(req) {
    let url;
    try {
      url = new URL(req.url ?? '/', 'http://app.invalid');
    } catch {
      throw new HttpError(400, 'Bad request', 'That URL cannot be parsed.');
    }
    const closureId = ClosureRegistry.idOf(url.pathname);
    if (closureId !== null)
      return {
        response: await closureRoute(req, closureId),
        headers: { 'cache-control': 'no-store' },
      };
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const allowed = [];
    for (const [m, pattern, fn] of routes) {
      const match = pattern.exec(url.pathname);
      if (!match) continue;
      if (m === method) return { response: await fn({ req, url, params: match.slice(1) }) };
      allowed.push(m);
    }
    if (allowed.length) {
      throw new HttpError(405, 'Method not allowed', `${req.method} is not supported here.`, {
        headers: { allow: allowed.join(', ') },
      });
    }
    throw new HttpError(404, 'Not found', 'There is no page here.', {
      links: [['/', 'All issues']],
    });
  }

  const server = createServer((req, res) => {
    if (admin(req, res)) return;
    handle(req, res).then(
      ({ response, headers }) => send(res, response, headers),
      (err) => {
        if (!(err instanceof HttpError)) {
          console.error(`${req.method} ${req.url}:`, err);
          err = new HttpError(
            500,
            'Something went wrong',
            'The server failed on this request; the error is in its log.',
          );
        }
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const close = err.status === 413 || err.status === 415 ? { connection: 'close' } : {};
        send(
          res,
          page(
            err.heading,
            views.messagePage({ heading: err.heading, text: err.message, links: err.links }),
            err.status,
          ),
          { ...err.headers, ...close },
        );
      },
    );
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;

  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    closures.close();
    admin.close();
    await store.close();
    throw err;
  }
  const { port: bound } = server.address();

  let closing = null;
  return {
    url: `http://${host}:${bound}`,
    store,
    closures,
    close() {
      closing ??= (async () => {
        admin.close(); // ends the admin page's event streams, which would hold server.close() open
        const stopped = new Promise((resolve) => server.close(resolve));
        server.closeIdleConnections();
        // Requests in progress get a moment to finish; then their connections are cut.
        const force = setTimeout(() => server.closeAllConnections(), 3000);
        force.unref();
        await stopped;
        clearTimeout(force);
        closures.close();
        await store.close({ transferLeadership: true });
      })();
      return closing;
    },
  };
}

// ---- request helpers -------------------------------------------------------------------

/** Reads an urlencoded form body of at most BODY_LIMIT bytes. */
function readForm(req) {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  const refuse = (err) => {
    req.resume(); // discard the rest; the connection is closed after the answer
    return Promise.reject(err);
  };
  if (type !== 'application/x-www-form-urlencoded') {
    return refuse(
      new HttpError(415, 'Unsupported form', 'Send forms as application/x-www-form-urlencoded.'),
    );
  }
  const tooLarge = new HttpError(
    413,
    'Too large',
    `Forms are limited to ${BODY_LIMIT / 1024} KiB. Nothing was saved.`,
  );
  if (Number(req.headers['content-length'] ?? 0) > BODY_LIMIT) return refuse(tooLarge);
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const onData = (chunk) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData).off('end', onEnd);
      req.resume();
      reject(tooLarge);
    };
    const onEnd = () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
    req.on('data', onData).on('end', onEnd).once('error', reject);
  });
}

function pick(form, fields) {
  const out = {};
  for (const f of fields) out[f] = form.get(f) ?? '';
  return out;
}

const oneOf = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);

function pageSize(value) {
  const n = Number(value ?? PAGE_SIZE);
  return Number.isInteger(n) && n >= 1 && n <= MAX_PAGE_SIZE ? n : PAGE_SIZE;
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'Bad request', 'That address is not valid.');
  }
}

// A page cursor is the sort key of the row it continues from: base64url JSON of a short array.
const encodeCursor = (key) => Buffer.from(JSON.stringify(key)).toString('base64url');

function decodeCursor(value, length) {
  if (value === null || value === '') return null;
  let key;
  try {
    key = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    key = null;
  }
  if (
    !Array.isArray(key) ||
    key.length !== length ||
    !key.every((k) => typeof k === 'string' || (typeof k === 'number' && Number.isFinite(k)))
  ) {
    throw new HttpError(400, 'Bad request', 'That page link is not valid.', {
      links: [['/', 'First page']],
    });
  }
  return key;
}

// ---- main ------------------------------------------------------------------------------

function isMain() {
  try {
    return (
      process.argv[1] !== undefined &&
      pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url
    );
  } catch {
    return false;
  }
}

if (isMain()) {
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
    process.exit(2);
  }
  const dataDir = process.env.DATA_DIR ?? './data';
  // Cluster mode (npm run cluster sets these): NODE_ID=2 CLUSTER="1=127.0.0.1:7011,2=127.0.0.1:7012,3=127.0.0.1:7013"
  const cluster = process.env.CLUSTER?.split(',').map((m) => {
    const [id, address] = m.split('=');
    return { id: Number(id), address };
  });
  const id = Number(process.env.NODE_ID ?? 1);
  const raftAddress =
    process.env.RAFT_ADDRESS || (cluster?.find((m) => m.id === id)?.address ?? '127.0.0.1:7001');
  const ms = (name) => (process.env[name] === undefined ? undefined : Number(process.env[name]));
  const app = await startApp({
    port,
    dataDir,
    raftAddress,
    id,
    cluster,
    staleAfterMs: ms('STALE_AFTER_MS'),
    staleCheckEveryMs: ms('STALE_CHECK_EVERY_MS'),
    digestEveryMs: ms('DIGEST_EVERY_MS'),
  });
  console.log(`prevail issues listening on ${app.url}/ (data in ${dataDir})`);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.log(`${signal}: closing`);
      app.close().catch((err) => {
        console.error(err);
        process.exitCode = 1;
      });
    });
  }
}

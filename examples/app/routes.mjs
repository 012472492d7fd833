// The app's routes: the table (method, path, handler), one handler per page or form, and the
// dispatch that also serves closure links (/c/<id>). A handler returns a page or a redirect
// (http.mjs) or throws an HttpError.
import { ClosureRegistry } from './closures.mjs';
import { allUsers, newestFirst, run, userById } from './data.mjs';
import { HttpError, page, pick, readForm, redirect, safeDecode } from './http.mjs';
import { issueActions, issueRow } from './links.mjs';
import { listIssues } from './list.mjs';
import * as views from './views.mjs';

export function routes(app) {
  return [
    ['GET', /^\/$/, ({ url }) => listIssues(app, url)],
    ['GET', /^\/issues\/new$/, () => newIssueForm(app)],
    ['POST', /^\/issues$/, ({ req }) => createIssue(app, req)],
    ['GET', /^\/issues\/(\d{1,15})$/, ({ params }) => issueDetail(app, Number(params[0]))],
    [
      'POST',
      /^\/issues\/(\d{1,15})\/comments$/,
      ({ req, params }) => addComment(app, req, Number(params[0])),
    ],
    [
      'POST',
      /^\/issues\/(\d{1,15})\/votes$/,
      ({ req, params }) => addVote(app, req, Number(params[0])),
    ],
    ['GET', /^\/users$/, () => usersList(app)],
    ['GET', /^\/users\/new$/, () => page('Join', views.userForm({ values: {} }))],
    ['POST', /^\/users$/, ({ req }) => createUser(app, req)],
    ['GET', /^\/u\/([^/]{1,64})$/, ({ params }) => userDetail(app, safeDecode(params[0]))],
  ];
}

/** Runs the route or closure link the request names: { response, headers? }. */
export async function handle(app, table, req) {
  let url;
  try {
    url = new URL(req.url ?? '/', 'http://app.invalid');
  } catch {
    throw new HttpError(400, 'Bad request', 'That URL cannot be parsed.');
  }
  const closureId = ClosureRegistry.idOf(url.pathname);
  if (closureId !== null)
    return {
      response: await closureRoute(app, req, closureId),
      headers: { 'cache-control': 'no-store' },
    };
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const allowed = [];
  for (const [m, pattern, fn] of table) {
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

async function closureRoute(app, req, id) {
  if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') {
    throw new HttpError(405, 'Method not allowed', `${req.method} is not supported here.`, {
      headers: { allow: 'GET, HEAD, POST' },
    });
  }
  const fn = app.closures.resolve(id);
  if (!fn) {
    throw new HttpError(
      410,
      'This link has expired',
      'Action links like this one live in the memory of the server that made them: they last ' +
        `${Math.round(app.closures.ttlMs / 60_000)} minutes, stop working once their action is done, and vanish when the server restarts. ` +
        'Nothing was changed. Open the page again to get a fresh link.',
      { links: [['/', 'All issues']], headers: { 'cache-control': 'no-store' } },
    );
  }
  const form = req.method === 'POST' ? await readForm(req) : null;
  return fn({ method: req.method === 'HEAD' ? 'GET' : req.method, form, self: `/c/${id}` });
}

// ---- issues ------------------------------------------------------------------------

function newIssueForm(app) {
  return page(
    'New issue',
    views.issueForm({ action: '/issues', values: {}, users: allUsers(app) }),
  );
}

async function createIssue(app, req) {
  const values = pick(await readForm(req), ['title', 'body', 'author', 'assignee', 'priority']);
  const { result, error } = await run(app, 'createIssue', values);
  if (error)
    return page(
      'New issue',
      views.issueForm({ action: '/issues', values, users: allUsers(app), error }),
      error.status ?? 422,
    );
  return redirect(`/issues/${result.id}`);
}

function issueDetail(app, id, forms = {}, status = 200) {
  const { commentForm = { values: {} }, voteForm = { values: {} } } = forms;
  const issue = app.view.issues.get(id);
  if (!issue)
    throw new HttpError(404, 'Not found', `There is no issue #${id}; it may have been deleted.`, {
      links: [['/', 'All issues']],
    });
  const comments = app.view.comments.byIssue
    .get(issue.id)
    .sort((a, b) => a.createdAt - b.createdAt || a.id - b.id)
    .map((comment) => ({ comment, author: userById(app, comment.authorId) }));
  return page(
    `#${issue.id} ${issue.title}`,
    views.issuePage({
      issue,
      author: userById(app, issue.authorId),
      assignee: userById(app, issue.assigneeId),
      comments,
      users: allUsers(app),
      commentForm,
      voteForm,
      voters: (issue.voterIds ?? []).map((uid) => userById(app, uid)),
      actions: issueActions(app, issue),
    }),
    status,
  );
}

async function addComment(app, req, id) {
  const values = pick(await readForm(req), ['author', 'body']);
  const { result, error } = await run(app, 'addComment', { issueId: id, ...values });
  if (error?.status === 404)
    throw new HttpError(404, 'Not found', error.message, { links: [['/', 'All issues']] });
  if (error) return issueDetail(app, id, { commentForm: { values, error } }, error.status ?? 422);
  return redirect(`/issues/${id}#comment-${result.id}`);
}

// `vote` is new in schema version 2: until the cluster has activated it, run() answers 503.
async function addVote(app, req, id) {
  const values = pick(await readForm(req), ['voter']);
  const { error } = await run(app, 'vote', { issueId: id, ...values });
  if (error?.status === 404)
    throw new HttpError(404, 'Not found', error.message, { links: [['/', 'All issues']] });
  if (error) return issueDetail(app, id, { voteForm: { values, error } }, error.status ?? 422);
  return redirect(`/issues/${id}#votes`);
}

// ---- people ------------------------------------------------------------------------

function usersList(app) {
  const rows = [...app.view.users.values()].map((user) => ({
    user,
    reported: app.view.issues.byAuthor.count(user.id),
  }));
  return page('People', views.usersPage({ rows }));
}

async function createUser(app, req) {
  const values = pick(await readForm(req), ['handle', 'name', 'email']);
  const { result, error } = await run(app, 'createUser', values);
  if (error) return page('Join', views.userForm({ values, error }), error.status ?? 422);
  return redirect(`/u/${encodeURIComponent(result.handle)}`);
}

function userDetail(app, handle) {
  const user = app.view.users.byHandle.get(handle.toLowerCase());
  if (!user)
    throw new HttpError(404, 'Not found', `Nobody here goes by @${handle}.`, {
      links: [['/users', 'People']],
    });
  const rows = (issues) => issues.sort(newestFirst).map((issue) => issueRow(app, issue));
  return page(
    `@${user.handle}`,
    views.userPage({
      user,
      reported: rows(app.view.issues.byAuthor.get(user.id)),
      assigned: rows(app.view.issues.byAssignee.get(user.id)),
      comments: app.view.comments.byAuthor.count(user.id),
    }),
  );
}

// The action links of an issue (edit, delete, close/reopen): each is a closure link
// (closures.mjs) that captures the issue object it was made for, so a stale edit is seen.
import { allUsers, run, userById } from './data.mjs';
import { HttpError, page, pick, redirect } from './http.mjs';
import * as views from './views.mjs';

/** A table row for an issue, with edit/delete links that capture this very object. */
export function issueRow(app, issue) {
  return views.issueRow({
    issue,
    author: userById(app, issue.authorId),
    assignee: userById(app, issue.assigneeId),
    comments: app.view.comments.byIssue.count(issue.id),
    actions: { edit: editLink(app, issue), delete: deleteLink(app, issue) },
  });
}

/** Every action link of an issue's page. */
export function issueActions(app, issue) {
  return {
    edit: editLink(app, issue),
    delete: deleteLink(app, issue),
    toggle: toggleLink(app, issue),
  };
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

const fromIssue = (app, issue) => ({
  title: issue.title,
  body: issue.body,
  priority: issue.priority,
  status: issue.status,
  assignee: userById(app, issue.assigneeId)?.handle ?? '',
});

function editLink(app, issue) {
  return app.closures.link(async ({ method, form, revoke, self }) => {
    const current = app.view.issues.get(issue.id);
    if (!current) return issueGone(issue);
    const formPage = (values, error, status = 200) =>
      page(
        `Edit #${issue.id}`,
        views.issueForm({
          action: self,
          values,
          users: allUsers(app),
          error,
          issue,
          stale: current.rev !== issue.rev && !error,
        }),
        status,
      );
    if (method === 'GET') return formPage(fromIssue(app, issue));
    const values = pick(form, ['title', 'body', 'assignee', 'priority', 'status']);
    const { error } = await run(app, 'updateIssue', { id: issue.id, rev: issue.rev, ...values });
    if (error?.status === 404) return issueGone(issue);
    if (error) return formPage(values, error, error.status ?? 422);
    revoke(); // one successful save per link: a second one would be a stale edit anyway
    return redirect(`/issues/${issue.id}`);
  });
}

function deleteLink(app, issue) {
  return app.closures.link(async ({ method, revoke, self }) => {
    if (!app.view.issues.has(issue.id)) return issueGone(issue);
    if (method === 'GET') {
      const n = app.view.comments.byIssue.count(issue.id);
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
    const { error } = await run(app, 'deleteIssue', { id: issue.id });
    if (error?.status === 404) return issueGone(issue);
    if (error)
      throw new HttpError(error.status ?? 422, 'Not deleted', error.message, {
        links: [[`/issues/${issue.id}`, 'Back']],
      });
    revoke();
    return redirect('/');
  });
}

function toggleLink(app, issue) {
  const to = issue.status === 'open' ? 'closed' : 'open';
  const verb = to === 'closed' ? 'Close' : 'Reopen';
  return app.closures.link(async ({ method, revoke, self }) => {
    if (!app.view.issues.has(issue.id)) return issueGone(issue);
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
    const { error } = await run(app, 'setStatus', { id: issue.id, rev: issue.rev, status: to });
    if (error?.status === 404) return issueGone(issue);
    if (error) return confirm(error, error.status ?? 422);
    revoke();
    return redirect(`/issues/${issue.id}`);
  });
}

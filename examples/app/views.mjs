// Server-rendered HTML: an escaping template tag and the app's pages. Pure functions of
// the data they are given; links to closures (/c/...) are made by the caller.
import { LIMITS, PRIORITIES } from './schema.mjs';

class Html {
  constructor(s) {
    this.s = s;
  }
  toString() {
    return this.s;
  }
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);

function render(v) {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.s;
  if (Array.isArray(v)) return v.map(render).join('');
  return escape(v);
}

/** Template tag: interpolations are escaped unless they are html`` results themselves. */
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

const STYLE = `
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:0 1rem;color:#222}
header{display:flex;gap:1rem;align-items:baseline;border-bottom:1px solid #ddd;padding:.6rem 0}
header strong{margin-right:auto}
a{color:#0654ba}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #eee;vertical-align:top}
.muted,footer{color:#666;font-size:.85em}
footer{border-top:1px solid #ddd;margin-top:2rem;padding:.6rem 0}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.5rem .7rem}
.note{background:#fff7dd;border:1px solid #e5d28a;padding:.5rem .7rem}
label{display:block;margin:.5rem 0}input,select,textarea{font:inherit;display:block;margin-top:.15rem}
input,textarea{width:100%;max-width:36rem;box-sizing:border-box}
[aria-invalid=true]{border:2px solid #c33}
.tabs a,.pager a{margin-right:.8rem}.tabs .on{font-weight:bold;text-decoration:none;color:#222}
.p4{color:#b00;font-weight:bold}.p3{color:#b60}.closed{color:#666;text-decoration:line-through}
.body{white-space:pre-wrap}form.inline{display:inline}`;

export function layout({ title, body, footer }) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escape(title)} · prevail issues</title><style>${STYLE}</style></head><body>
<header><strong><a href="/">prevail issues</a></strong><a href="/">Issues</a><a href="/issues/new">New issue</a><a href="/users">People</a><a href="/users/new">Join</a></header>
<main>
${render(body)}
</main>
<footer>${render(footer)}</footer>
</body></html>`;
}

export function footer({ nodeId, role, appliedIndex, schemaVersion, ttlMinutes, digest }) {
  const counts = digest
    ? html` · digest ${when(digest.at)}:
        <span class="digest"
          >${digest.open} open, ${digest.closed} closed, ${digest.users} people</span
        >`
    : '';
  return html`node ${nodeId} · ${role} · applied log index ${appliedIndex} · schema version
    <span class="schema-version">${schemaVersion}</span>${counts}. Every change is a command in the
    Raft log, saved before the page answers. Action links (<code>/c/…</code>) are closures held in
    this server process's memory: they work on this node only, for ${ttlMinutes} minutes, and vanish
    when the server restarts.`;
}

export const when = (ms) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
const priorityLabel = (p) => PRIORITIES.find((x) => x.value === p)?.label ?? String(p);
const userLink = (u) =>
  u
    ? html`<a href="/u/${encodeURIComponent(u.handle)}">@${u.handle}</a>`
    : html`<span class="muted">nobody</span>`;

function errorBox(error) {
  return error ? html`<p class="error" role="alert">${error.message}</p>` : '';
}
const invalid = (error, field) => (error?.field === field ? html` aria-invalid="true"` : '');

function userOptions(users, selected, { none = null } = {}) {
  return html`${none !== null ? html`<option value="" ${selected ? '' : html` selected`}>${none}</option>` : ''}${users.map(
    (u) =>
      html`<option value="${u.handle}" ${u.handle === selected ? html` selected` : ''}>
        @${u.handle} (${u.name})
      </option>`,
  )}`;
}

function priorityOptions(selected) {
  return PRIORITIES.map(
    (p) =>
      html`<option
        value="${p.value}"
        ${String(p.value) === String(selected) ? html` selected` : ''}
      >
        ${p.label}
      </option>`,
  );
}

// ---- issues --------------------------------------------------------------------------

/** One table row; `actions` holds closure links made for this very object. */
export function issueRow({ issue, author, assignee, comments, actions }) {
  return html`<tr data-issue="${issue.id}">
    <td>#${issue.id}</td>
    <td>
      <a class="issue-title${issue.status === 'closed' ? ' closed' : ''}" href="/issues/${issue.id}"
        >${issue.title}</a
      >
    </td>
    <td class="p${issue.priority}">${priorityLabel(issue.priority)}</td>
    <td>${issue.status}</td>
    <td>${userLink(author)}</td>
    <td>${userLink(assignee)}</td>
    <td class="muted">${when(issue.createdAt)}</td>
    <td>${comments}</td>
    <td>
      <a class="edit" href="${actions.edit}">edit</a>
      <a class="delete" href="${actions.delete}">delete</a>
    </td>
  </tr>`;
}

export function issueTable(rows, empty = 'No issues here.') {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<table>
    <thead>
      <tr>
        <th>#</th>
        <th>Title</th>
        <th>Priority</th>
        <th>Status</th>
        <th>Reporter</th>
        <th>Assignee</th>
        <th>Opened</th>
        <th>Comments</th>
        <th></th>
      </tr>
    </thead>
    <tbody>
      ${rows}
    </tbody>
  </table>`;
}

export function listPage({ rows, counts, query, link, prev, next, cursorGiven }) {
  const tab = (key, value, label) =>
    query[key] === value
      ? html`<a class="on" href="${link({ [key]: value })}">${label}</a>`
      : html`<a href="${link({ [key]: value })}">${label}</a>`;
  return html`<h1>Issues</h1>
    <p class="tabs">
      ${tab('status', 'open', `Open (${counts.open})`)}${tab('status', 'closed', `Closed (${counts.closed})`)}${tab('status', 'all', `All (${counts.all})`)}
    </p>
    <p class="tabs">
      Sort:
      ${tab('sort', 'new', 'newest')}${tab('sort', 'old', 'oldest')}${tab('sort', 'priority', 'priority')}
    </p>
    ${issueTable(rows, cursorGiven ? 'No more issues this way.' : 'No issues here yet.')}
    <p class="pager">
      ${prev ? html`<a rel="prev" href="${prev}">← previous</a>` : ''}${next ? html`<a rel="next" href="${next}">next →</a>` : ''}${cursorGiven ? html`<a href="${link({})}">first page</a>` : ''}
    </p>`;
}

export function issuePage({
  issue,
  author,
  assignee,
  comments,
  actions,
  users,
  commentForm,
  voteForm,
  voters,
}) {
  return html`<h1>#${issue.id} <span class="issue-title${issue.status === 'closed' ? ' closed' : ''}">${issue.title}</span></h1>
<p class="muted">${issue.status} · priority <span class="p${issue.priority}">${priorityLabel(issue.priority)}</span> ·
reported by ${userLink(author)} on ${when(issue.createdAt)} · assigned to ${userLink(assignee)}
${issue.updatedAt !== issue.createdAt ? html` · updated ${when(issue.updatedAt)}` : ''} · revision ${issue.rev}</p>
<p>
<a class="edit" href="${actions.edit}">Edit</a> ·
<form class="inline" method="post" action="${actions.toggle}"><button class="toggle">${issue.status === 'open' ? 'Close issue' : 'Reopen issue'}</button></form> ·
<a class="delete" href="${actions.delete}">Delete</a>
</p>
${issue.body ? html`<div class="body">${issue.body}</div>` : html`<p class="muted">No description.</p>`}
${issue.voterIds ? votes(issue, voters, users, voteForm) : ''}
<h2>Comments (${comments.length})</h2>
${
  comments.length === 0
    ? html`<p class="muted">None yet.</p>`
    : html`<ol class="comments">
        ${comments.map(
          ({ comment, author: a }) =>
            html`<li id="comment-${comment.id}">
              <p class="muted">${userLink(a)} · ${when(comment.createdAt)}</p>
              <div class="body">${comment.body}</div>
            </li>`,
        )}
      </ol>`
}
<h3>Add a comment</h3>
${errorBox(commentForm.error)}
<form method="post" action="/issues/${issue.id}/comments">
<label>As <select name="author"${invalid(commentForm.error, 'author')}>${userOptions(users, commentForm.values.author ?? '', { none: '— pick —' })}</select></label>
<label>Comment <textarea name="body" rows="4" maxlength="${LIMITS.comment}"${invalid(commentForm.error, 'body')}>
${commentForm.values.body ?? ''}</textarea></label>
<button>Comment</button>
</form>`;
}

// Votes (schema version 2): shown once the cluster has activated it (issues then have voterIds).
function votes(issue, voters, users, form) {
  return html`<h2 id="votes">Votes (<span class="votes">${voters.length}</span>)</h2>
    <p class="muted">
      ${voters.length ? voters.map((u, i) => html`${i ? ', ' : ''}${userLink(u)}`) : 'Nobody yet.'}
    </p>
    ${errorBox(form.error)}
    <form method="post" action="/issues/${issue.id}/votes">
      <label
        >As
        <select name="voter" ${invalid(form.error, 'voter')}>
          ${userOptions(users, form.values.voter ?? '', { none: '— pick —' })}
        </select></label
      >
      <button>+1</button>
    </form>`;
}

/** The new-issue form (no `issue`) or the edit form of an issue (its action is a closure link). */
export function issueForm({ action, values, users, error, issue = null, stale = false }) {
  return html`<h1>${issue ? html`Edit #${issue.id}` : 'New issue'}</h1>
    ${
      stale
        ? html`<p class="note">
            This link was made for revision ${issue.rev}; the issue has changed since, so saving
            will be refused. <a href="/issues/${issue.id}">Open the current version</a>.
          </p>`
        : ''
    }
    ${errorBox(error)}
    ${!issue && users.length === 0 ? html`<p class="note">Nobody has joined yet: <a href="/users/new">join</a> first, then report issues as yourself.</p>` : ''}
    <form method="post" action="${action}">
      <label
        >Title
        <input
          name="title"
          value="${values.title ?? ''}"
          maxlength="${LIMITS.title}"
          required${invalid(error, 'title')}
      /></label>
      <label
        >Description
        <textarea name="body" rows="8" maxlength="${LIMITS.body}" ${invalid(error, 'body')}>
${values.body ?? ''}</textarea>
      </label>
      ${
        issue
          ? ''
          : html`<label
              >Reporter
              <select name="author" ${invalid(error, 'author')}>
                ${userOptions(users, values.author ?? '', { none: '— pick —' })}
              </select></label
            >`
      }
      <label
        >Assignee
        <select name="assignee" ${invalid(error, 'assignee')}>
          ${userOptions(users, values.assignee ?? '', { none: 'nobody' })}
        </select></label
      >
      <label
        >Priority
        <select name="priority" ${invalid(error, 'priority')}>
          ${priorityOptions(values.priority ?? 2)}
        </select></label
      >
      ${
        issue
          ? html`<label
              >Status
              <select name="status" ${invalid(error, 'status')}>
                ${['open', 'closed'].map(
                  (s) => html`<option${s === values.status ? html` selected` : ''}>${s}</option>`,
                )}
              </select></label
            >`
          : ''
      }
      <button>${issue ? 'Save' : 'Report issue'}</button>
      ${issue ? html`<a href="/issues/${issue.id}">cancel</a>` : ''}
    </form>`;
}

export function confirmPage({ heading, text, action, button, cancel, error }) {
  return html`<h1>${heading}</h1>
    ${errorBox(error)}
    <p>${text}</p>
    <form method="post" action="${action}">
      <button>${button}</button> <a href="${cancel}">cancel</a>
    </form>`;
}

// ---- people --------------------------------------------------------------------------

export function usersPage({ rows }) {
  return html`<h1>People</h1>
    ${
      rows.length === 0
        ? html`<p class="muted">Nobody yet. <a href="/users/new">Join</a>.</p>`
        : html`<table>
            <thead>
              <tr>
                <th>Handle</th>
                <th>Name</th>
                <th>Joined</th>
                <th>Reported</th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                ({ user, reported }) =>
                  html`<tr data-user="${user.handle}">
                    <td>${userLink(user)}</td>
                    <td>${user.name}</td>
                    <td class="muted">${when(user.createdAt)}</td>
                    <td>${reported}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    <p><a href="/users/new">Join</a></p>`;
}

export function userForm({ values, error }) {
  return html`<h1>Join</h1>
    ${errorBox(error)}
    <form method="post" action="/users">
      <label
        >Handle
        <input
          name="handle"
          value="${values.handle ?? ''}"
          maxlength="${LIMITS.handle}"
          required${invalid(error, 'handle')}
      /></label>
      <label
        >Name
        <input
          name="name"
          value="${values.name ?? ''}"
          maxlength="${LIMITS.name}"
          required${invalid(error, 'name')}
      /></label>
      <label
        >Email
        <input
          name="email"
          type="email"
          value="${values.email ?? ''}"
          maxlength="${LIMITS.email}"
          required${invalid(error, 'email')}
      /></label>
      <button>Join</button>
    </form>`;
}

export function userPage({ user, reported, assigned, comments }) {
  return html`<h1>@${user.handle} <span class="muted">${user.name}</span></h1>
    <p class="muted">
      joined ${when(user.createdAt)} · ${comments} comment${comments === 1 ? '' : 's'}
    </p>
    <h2 id="reported">Reported (${reported.length})</h2>
    ${issueTable(reported, 'Nothing reported.')}
    <h2 id="assigned">Assigned (${assigned.length})</h2>
    ${issueTable(assigned, 'Nothing assigned.')}`;
}

export function messagePage({ heading, text, links = [] }) {
  return html`<h1>${heading}</h1>
    <p>${text}</p>
    ${links.length ? html`<p>${links.map(([href, label]) => html`<a href="${href}">${label}</a> `)}</p>` : ''}`;
}

// The state machine of the example app: a tiny issue tracker. Three collections (users,
// issues, comments) and the commands that change them. Handlers are deterministic: they
// validate their arguments, read and write only `state`, and take time from
// ctx.timestamp (never Date.now()). A handler that throws changes nothing, and its error
// reaches the proposer, which shows the message in the form.
//
// Two schema versions: `v1`, the app as first shipped, and `v2 = v1.next(…)`, which lets
// people vote for issues (docs/guide.md, "Deploying new code"). The app opens the store with
// the newest, `schema`; entries proposed under version 1 keep version 1's handlers on replay.
import { collection, defineSchema } from '../../dist/index.js';

/** A request the app refuses: the message is for the user; `status` is the HTTP status to answer with. */
export class AppError extends Error {
  constructor(message, { field = null, status = 422 } = {}) {
    super(message);
    this.name = 'AppError';
    this.field = field;
    this.status = status;
  }
}

export const PRIORITIES = [
  { value: 4, label: 'urgent' },
  { value: 3, label: 'high' },
  { value: 2, label: 'normal' },
  { value: 1, label: 'low' },
];
export const STATUSES = ['open', 'closed'];

export const LIMITS = {
  handle: 32,
  name: 80,
  email: 254,
  title: 120,
  body: 10_000,
  comment: 5_000,
};
const HANDLE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

// The sorted indexes' keys, shared with the list page, which turns the last row's key
// into the "next page" cursor. Every key ends with the id, so keys are unique and a
// cursor names exactly one position.
export const issueKeys = {
  byCreated: (i) => [i.createdAt, i.id],
  byStatusCreated: (i) => [i.status, i.createdAt, i.id],
  byPriority: (i) => [i.priority, i.createdAt, i.id],
  byStatusPriority: (i) => [i.status, i.priority, i.createdAt, i.id],
  byStatusUpdated: (i) => [i.status, i.updatedAt, i.id],
};

const users = collection()({
  indexes: (ix) => ({
    byHandle: ix.unique((u) => u.handle),
    byEmail: ix.unique((u) => u.email),
  }),
});

const issues = collection()({
  indexes: (ix) => ({
    byAuthor: ix.hash((i) => i.authorId),
    byAssignee: ix.hash((i) => i.assigneeId ?? undefined),
    byStatus: ix.hash((i) => i.status),
    byCreated: ix.sorted(issueKeys.byCreated),
    byStatusCreated: ix.sorted(issueKeys.byStatusCreated),
    byPriority: ix.sorted(issueKeys.byPriority),
    byStatusPriority: ix.sorted(issueKeys.byStatusPriority),
    byStatusUpdated: ix.sorted(issueKeys.byStatusUpdated), // stale open issues, oldest first
  }),
});

// One object: the latest digest (counts), written by a leader job.
const digests = collection()({});

const comments = collection()({
  indexes: (ix) => ({
    byIssue: ix.hash((c) => c.issueId),
    byAuthor: ix.hash((c) => c.authorId),
  }),
});

// ---- validation (runs inside handlers, so it is part of the deterministic state machine) ----

function text(value, field, label, { min = 0, max }) {
  const s = typeof value === 'string' ? value.trim() : '';
  if (s.length === 0 && min > 0) throw new AppError(`${label} is required.`, { field });
  if (s.length < min) throw new AppError(`${label} needs at least ${min} characters.`, { field });
  if (s.length > max) throw new AppError(`${label} can have at most ${max} characters.`, { field });
  return s;
}

function userByHandle(state, value, field, label, { optional = false } = {}) {
  const handle = typeof value === 'string' ? value.trim().toLowerCase() : '';
  if (handle === '' && optional) return null;
  if (handle === '') throw new AppError(`${label} is required.`, { field });
  const user = state.users.byHandle.get(handle);
  if (!user) throw new AppError(`${label}: there is no user @${handle}.`, { field });
  return user;
}

function priority(value) {
  const n = Number(value);
  if (!PRIORITIES.some((p) => p.value === n))
    throw new AppError('Pick a priority.', { field: 'priority' });
  return n;
}

function status(value) {
  if (!STATUSES.includes(value))
    throw new AppError('Status must be open or closed.', { field: 'status' });
  return value;
}

function existingIssue(state, id) {
  const issue = state.issues.get(id);
  if (!issue) throw new AppError(`Issue #${id} no longer exists.`, { status: 404 });
  return issue;
}

function unchangedSince(issue, rev) {
  if (issue.rev !== rev) {
    throw new AppError(
      `Issue #${issue.id} was changed by someone else after you opened this form; nothing was saved.`,
      { status: 409 },
    );
  }
}

// A new issue's fields as version 1 made them. Shared by both versions' createIssue: changing
// what it returns would change version 1's too (replayed entries would then differ), which
// is a new version's job; `prevail upgrade-check --old` catches such a change.
function issueFields(state, args, ctx) {
  const title = text(args.title, 'title', 'Title', { min: 3, max: LIMITS.title });
  const body = text(args.body, 'body', 'Description', { max: LIMITS.body });
  const author = userByHandle(state, args.author, 'author', 'Reporter');
  const assignee = userByHandle(state, args.assignee, 'assignee', 'Assignee', {
    optional: true,
  });
  return {
    title,
    body,
    authorId: author.id,
    assigneeId: assignee ? assignee.id : null,
    priority: priority(args.priority),
    status: 'open',
    createdAt: ctx.timestamp,
    updatedAt: ctx.timestamp,
    rev: 1,
  };
}

export const v1 = defineSchema({
  collections: { users, issues, comments, digests },
  commands: {
    createUser(state, args, ctx) {
      const handle = text(args.handle, 'handle', 'Handle', {
        min: 2,
        max: LIMITS.handle,
      }).toLowerCase();
      if (!HANDLE.test(handle)) {
        throw new AppError('Handle: lowercase letters, digits and inner dashes only.', {
          field: 'handle',
        });
      }
      const name = text(args.name, 'name', 'Name', { min: 1, max: LIMITS.name });
      const email = text(args.email, 'email', 'Email', { min: 1, max: LIMITS.email }).toLowerCase();
      if (!EMAIL.test(email))
        throw new AppError('Email does not look like an address.', { field: 'email' });
      // The unique indexes would refuse these too (PREVAIL_UNIQUE_VIOLATION); checking
      // first gives the user a sentence instead of an index name.
      if (state.users.byHandle.has(handle))
        throw new AppError(`Handle @${handle} is already taken.`, { field: 'handle' });
      if (state.users.byEmail.has(email))
        throw new AppError('That email already has an account.', { field: 'email' });
      return state.users.insert({ handle, name, email, createdAt: ctx.timestamp });
    },

    createIssue(state, args, ctx) {
      return state.issues.insert(issueFields(state, args, ctx));
    },

    /** Edits an issue as the form saw it: `rev` is the revision the form was made from. */
    updateIssue(state, args, ctx) {
      const issue = existingIssue(state, args.id);
      unchangedSince(issue, args.rev);
      const title = text(args.title, 'title', 'Title', { min: 3, max: LIMITS.title });
      const body = text(args.body, 'body', 'Description', { max: LIMITS.body });
      const assignee = userByHandle(state, args.assignee, 'assignee', 'Assignee', {
        optional: true,
      });
      return state.issues.update(issue.id, {
        title,
        body,
        assigneeId: assignee ? assignee.id : null,
        priority: priority(args.priority),
        status: status(args.status),
        updatedAt: ctx.timestamp,
        rev: issue.rev + 1,
      });
    },

    setStatus(state, args, ctx) {
      const issue = existingIssue(state, args.id);
      unchangedSince(issue, args.rev);
      return state.issues.update(issue.id, {
        status: status(args.status),
        updatedAt: ctx.timestamp,
        rev: issue.rev + 1,
      });
    },

    /** Deletes an issue and its comments, atomically. */
    deleteIssue(state, args) {
      const issue = existingIssue(state, args.id);
      for (const c of state.comments.byIssue.get(issue.id)) state.comments.delete(c.id);
      state.issues.delete(issue.id);
      return issue;
    },

    /**
     * Closes open issues not updated for `olderThanMs` (by the entry's timestamp), at most
     * `limit` per run: run by a recurring schedule that the leader keeps (server.mjs).
     */
    closeStale(state, args, ctx) {
      const cutoff = ctx.timestamp - Number(args.olderThanMs);
      const stale = [
        ...state.issues.byStatusUpdated.range({
          gte: ['open'],
          lt: ['open', cutoff],
          limit: args.limit ?? 100,
        }),
      ];
      for (const issue of stale) {
        state.issues.update(issue.id, {
          status: 'closed',
          closedAsStale: true,
          updatedAt: ctx.timestamp,
          rev: issue.rev + 1,
        });
      }
      return stale.length;
    },

    /** Records the current counts: proposed every few seconds by a leader job (server.mjs). */
    recordDigest(state, _args, ctx) {
      const digest = {
        at: ctx.timestamp,
        users: state.users.size,
        open: state.issues.byStatus.count('open'),
        closed: state.issues.byStatus.count('closed'),
      };
      const current = state.digests.values().next().value;
      return current ? state.digests.update(current.id, digest) : state.digests.insert(digest);
    },

    addComment(state, args, ctx) {
      const issue = existingIssue(state, args.issueId);
      const author = userByHandle(state, args.author, 'author', 'Author');
      const body = text(args.body, 'body', 'Comment', { min: 1, max: LIMITS.comment });
      return state.comments.insert({
        issueId: issue.id,
        authorId: author.id,
        body,
        createdAt: ctx.timestamp,
      });
    },
  },
});

// Version 2: people vote for issues (+1), once each. Issues gain `voterIds` (the user ids who
// voted): the migration gives every existing issue none, at activation, on every replica;
// createIssue changes (new issues start with none) and `vote` is new. Before the cluster
// activates version 2 (once every voter runs this code) it runs version 1: `vote` is refused
// with PREVAIL_VERSION_NOT_ACTIVE and issues have no `voterIds` yet (views.mjs shows no votes).
export const v2 = v1.next({
  commands: {
    createIssue(state, args, ctx) {
      return state.issues.insert({ ...issueFields(state, args, ctx), voterIds: [] });
    },

    /** A vote is not an edit: it leaves `rev` and `updatedAt` (stale-closing) alone. */
    vote(state, args) {
      const issue = existingIssue(state, args.issueId);
      const voter = userByHandle(state, args.voter, 'voter', 'Voter');
      if (issue.voterIds.includes(voter.id))
        throw new AppError(`@${voter.handle} has already voted for this issue.`, {
          field: 'voter',
        });
      return state.issues.update(issue.id, { voterIds: [...issue.voterIds, voter.id] });
    },
  },
  migrate: { issues: (issue) => ({ ...issue, voterIds: [] }) },
});

/** The newest version: what the app opens the store with. */
export const schema = v2;

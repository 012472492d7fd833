// The issue list (GET /): filtered by status, sorted, and paged by cursor over a sorted index.
// A page cursor is the sort key of the row it continues from.
import { HttpError, page } from './http.mjs';
import { issueRow } from './links.mjs';
import { issueKeys } from './schema.mjs';
import * as views from './views.mjs';

const PAGE_SIZE = 10;
const MAX_PAGE_SIZE = 50;

export function listIssues(app, url) {
  const q = url.searchParams;
  const query = {
    sort: oneOf(q.get('sort'), ['new', 'old', 'priority'], 'new'),
    status: oneOf(q.get('status'), ['open', 'closed', 'all'], 'open'),
    per: pageSize(q.get('per')),
  };
  const indexName = indexFor(query);
  const keyOf = issueKeys[indexName];
  const keyLength = keyOf({ status: '', priority: 0, createdAt: 0, id: 0 }).length;
  const after = decodeCursor(q.get('after'), keyLength);
  const before = after ? null : decodeCursor(q.get('before'), keyLength);
  const scan = scanner(app.view.issues[indexName], query);
  const items = before ? scan(false, before, query.per).reverse() : scan(true, after, query.per);
  const first = items[0];
  const last = items.at(-1);
  const link = (change) => listLink({ ...query, ...change });
  const prev =
    first && scan(false, keyOf(first), 1).length
      ? link({ before: encodeCursor(keyOf(first)) })
      : null;
  const next =
    last && scan(true, keyOf(last), 1).length ? link({ after: encodeCursor(keyOf(last)) }) : null;
  const counts = {
    open: app.view.issues.byStatus.count('open'),
    closed: app.view.issues.byStatus.count('closed'),
    all: app.view.issues.size,
  };
  return page(
    'Issues',
    views.listPage({
      rows: items.map((issue) => issueRow(app, issue)),
      counts,
      query,
      link,
      prev,
      next,
      cursorGiven: Boolean(after || before),
    }),
  );
}

/** The sorted index that serves this status filter and order. */
function indexFor(query) {
  if (query.status === 'all') return query.sort === 'priority' ? 'byPriority' : 'byCreated';
  return query.sort === 'priority' ? 'byStatusPriority' : 'byStatusCreated';
}

/** Rows strictly beyond `from` in display order (forward) or against it, from the sorted index. */
function scanner(index, query) {
  const descending = query.sort !== 'old';
  return (forward, from, limit) => {
    const reverse = forward ? descending : !descending;
    const options = { reverse, limit };
    if (query.status !== 'all') options.prefix = [query.status];
    if (from) options[reverse ? 'lt' : 'gt'] = from;
    return [...index.range(options)];
  };
}

/** The list's URL for these query values (defaults left out). */
function listLink(merged) {
  const p = new URLSearchParams();
  if (merged.status !== 'open') p.set('status', merged.status);
  if (merged.sort !== 'new') p.set('sort', merged.sort);
  if (merged.per !== PAGE_SIZE) p.set('per', String(merged.per));
  if (merged.after) p.set('after', merged.after);
  if (merged.before) p.set('before', merged.before);
  const s = p.toString();
  return s ? `/?${s}` : '/';
}

const oneOf = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);

function pageSize(value) {
  const n = Number(value ?? PAGE_SIZE);
  return Number.isInteger(n) && n >= 1 && n <= MAX_PAGE_SIZE ? n : PAGE_SIZE;
}

// A cursor is base64url JSON of the sort key, a short array.
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

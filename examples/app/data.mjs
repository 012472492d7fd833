// What the pages share: running a command for a form, looking users up, the page footer.
// `app` is { store, view, closures } (see startApp in server.mjs).
import { ErrorCodes } from '../../dist/index.js';
import { HttpError } from './http.mjs';
import * as views from './views.mjs';

/** Runs a command; an AppError (a handler's refusal) comes back as a value for the form. */
export async function run(app, name, args) {
  try {
    return { result: await app.store.propose(name, args) };
  } catch (err) {
    if (err?.name === 'AppError') return { error: err };
    if (err?.code === ErrorCodes.UNIQUE_VIOLATION)
      return { error: { message: 'That is already taken.', field: null, status: 422 } };
    if (err?.code === ErrorCodes.VERSION_NOT_ACTIVE) {
      // A command of a schema version the cluster has not activated: some node still runs
      // older code (a rolling upgrade in progress). Nothing was saved.
      throw new HttpError(
        503,
        'Not available yet',
        'This feature needs every server of the cluster to run the new version of the app; nothing was saved. Try again once the upgrade is done.',
        { headers: { 'retry-after': '5' } },
      );
    }
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

export const userById = (app, id) =>
  id === null || id === undefined ? null : (app.view.users.get(id) ?? null);
export const allUsers = (app) =>
  [...app.view.users.values()].sort((a, b) => (a.handle < b.handle ? -1 : 1));
export const newestFirst = (a, b) => b.createdAt - a.createdAt || b.id - a.id;

export function footer(app) {
  const s = app.store.status();
  return views.footer({
    nodeId: s.id,
    role: s.role,
    appliedIndex: s.appliedIndex,
    schemaVersion: s.schema.active,
    ttlMinutes: Math.round(app.closures.ttlMs / 60_000),
    digest: app.view.digests.values().next().value,
  });
}

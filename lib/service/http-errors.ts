// How prevail's errors answer over HTTP: the one table from error code to HTTP status, used by
// the reference service and by the Fastify and Express integrations alike, and the errors of
// the service's own that are not the library's.
import { ErrorCodes, isPrevailError, type MemberRef } from '../core/errors.js';

/**
 * The HTTP status for each error code; any other PREVAIL_ code is a 500. The 4xx are the
 * client's to fix; the 503s are passing (retry, perhaps at the leader named); the 500s are
 * this deployment's or this code's to fix (a bug, a broken disk, a misconfiguration).
 */
export const httpStatusOf: Readonly<Record<string, number>> = Object.freeze({
  // The request is wrong: bad arguments, values that are not plain data, a command this
  // schema does not define.
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.NOT_PLAIN_DATA]: 400,
  [ErrorCodes.UNKNOWN_COMMAND]: 400,
  [ErrorCodes.UNAUTHORIZED]: 401,
  [ErrorCodes.FORBIDDEN]: 403,
  [ErrorCodes.NOT_FOUND]: 404,
  // The request conflicts with the state as it is: another object holds the key, a membership
  // change under way, a command of a schema version not active yet (the voters holding back
  // are named), an activation whose migration threw.
  [ErrorCodes.UNIQUE_VIOLATION]: 409,
  [ErrorCodes.BAD_MEMBER]: 409,
  [ErrorCodes.MEMBERSHIP_BUSY]: 409,
  [ErrorCodes.VERSION_NOT_ACTIVE]: 409,
  [ErrorCodes.MIGRATION_FAILED]: 409,
  [ErrorCodes.TOO_LARGE]: 413,
  // A reload (POST /admin/reload) whose files don't fit: the node keeps its old ones.
  [ErrorCodes.BAD_CERTIFICATE]: 422,
  // Passing: no leader here or known, this replica behind or closing, or (SCHEMA_TOO_OLD)
  // running code older than the cluster's active schema: another node, or this one a
  // moment later, can answer. SCHEMA_CHANGED: committed across an activation, not applied.
  [ErrorCodes.NOT_LEADER]: 503,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.NOT_READY]: 503,
  [ErrorCodes.CLOSED]: 503,
  [ErrorCodes.LEADERSHIP_LOST]: 503,
  [ErrorCodes.TRANSFER_FAILED]: 503,
  [ErrorCodes.SCHEMA_TOO_OLD]: 503,
  [ErrorCodes.SCHEMA_CHANGED]: 503,
  // A bounded wait ran out (`mayHaveApplied` says whether a write may still land); ABORTED:
  // the request's own signal fired (its deadline, or the client went away).
  [ErrorCodes.TIMEOUT]: 504,
  [ErrorCodes.ABORTED]: 504,
  [ErrorCodes.NO_SPACE]: 507,
});

/** The seconds a 503's Retry-After asks the client to wait. */
export const RETRY_AFTER_SECONDS = 1;

/** The code of a refused compare-and-set (409). Not a library error, so not in ErrorCodes. */
export const CAS_CONFLICT = 'PREVAIL_CAS_CONFLICT';
/**
 * A client that closed its request before the body arrived (readBody). No answer can reach it;
 * the service logs it at debug level only: nothing was proposed, nothing is wrong here.
 */
export const CLIENT_CLOSED = 'PREVAIL_CLIENT_CLOSED';
/** A method the route doesn't take (405). */
export const BAD_METHOD = 'PREVAIL_METHOD_NOT_ALLOWED';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** An error as its HTTP answer: `{ error: { code, message, ...fields } }` with its status and headers. */
export interface HttpErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: { error: { code: string; message: string; [field: string]: unknown } };
}

// The fields a client may act on. `path` only on a 400 (where in the request's value); on
// other errors it is a file on the server's disk, not the client's business.
const CLIENT_FIELDS = ['leader', 'mayHaveApplied', 'version', 'holdingBack', 'permission'] as const;

/**
 * The HTTP answer for `err` when it is prevail's (a PrevailError, or the service's HttpError);
 * null for anything else (an app's own error: the framework's error handling decides). A 503
 * carries `Retry-After` and `leader`: the error's own hint, else `leaderHint()` (null when none
 * is known); a 401 asks for a bearer token (`WWW-Authenticate`).
 */
export function httpErrorOf(
  err: unknown,
  leaderHint: () => MemberRef | null = () => null,
): HttpErrorAnswer | null {
  if (err instanceof HttpError) {
    const retry: Record<string, string> =
      err.status === 503 ? { 'retry-after': String(RETRY_AFTER_SECONDS) } : {};
    const body = { error: { code: err.code, message: err.message, ...err.extra } };
    return { status: err.status, headers: { ...retry, ...err.headers }, body };
  }
  if (!isPrevailError(err)) return null;
  const status = httpStatusOf[err.code] ?? 500;
  const error: HttpErrorAnswer['body']['error'] = { code: err.code, message: err.message };
  const fields = err as unknown as Record<string, unknown>;
  for (const name of CLIENT_FIELDS) if (fields[name] !== undefined) error[name] = fields[name];
  if (status === 400 && err.path !== undefined) error.path = err.path;
  const headers: Record<string, string> = {};
  if (status === 503) {
    error.leader = err.leader ?? leaderHint();
    headers['retry-after'] = String(RETRY_AFTER_SECONDS);
  }
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="prevail"';
  return { status, headers, body: { error } };
}

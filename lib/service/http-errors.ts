// How the service answers with an error: the HTTP status of each error code, and the errors of
// its own that are not the library's.
import { ErrorCodes } from '../core/errors.js';

/** The HTTP status for each error code; anything else is a 500. */
export const httpStatusOf: Readonly<Record<string, number>> = Object.freeze({
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.NOT_PLAIN_DATA]: 400,
  [ErrorCodes.TOO_LARGE]: 413,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.BAD_MEMBER]: 409,
  [ErrorCodes.MEMBERSHIP_BUSY]: 409,
  [ErrorCodes.UNIQUE_VIOLATION]: 409,
  // Schema versions (POST /admin/schema/activate): a voter's code lacks the version
  // (`holdingBack` names them), or a migration threw; both leave the cluster as it was.
  [ErrorCodes.VERSION_NOT_ACTIVE]: 409,
  [ErrorCodes.MIGRATION_FAILED]: 409,
  // A reload (POST /admin/reload) whose files don't fit: the node keeps its old ones.
  [ErrorCodes.BAD_CERTIFICATE]: 422,
  [ErrorCodes.NOT_LEADER]: 503,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.NOT_READY]: 503,
  [ErrorCodes.CLOSED]: 503,
  [ErrorCodes.LEADERSHIP_LOST]: 503,
  [ErrorCodes.TRANSFER_FAILED]: 503,
  // This node's code can't apply the data's schema version: it has stopped (deploy other code).
  [ErrorCodes.SCHEMA_TOO_OLD]: 503,
  [ErrorCodes.SCHEMA_TOO_NEW]: 503,
  // Committed just after an activation, under the version before: nothing applied, retry.
  [ErrorCodes.SCHEMA_CHANGED]: 503,
  [ErrorCodes.TIMEOUT]: 504,
  [ErrorCodes.NO_SPACE]: 507,
});

/** The code of a refused compare-and-set (409). Not a library error, so not in ErrorCodes. */
export const CAS_CONFLICT = 'PREVAIL_CAS_CONFLICT';
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

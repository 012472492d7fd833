// prevail/express: `app.use(prevail({ store, mount?, auth? }))` gives handlers `req.prevail`
// (the store and its read helper) and serves the mount (the admin page, or any node:http
// handler) behind lib/core/auth.ts; `app.use(prevailErrors())`, after the routes, answers
// prevail's errors with their HTTP status (the one table, lib/service/http-errors.ts) and
// passes every other error on (`next(err)`) to the app's handlers. Express is not imported:
// its requests and responses are node:http's, which is all these functions use.
import type { IncomingMessage, ServerResponse } from 'node:http';

import { httpErrorOf } from '../service/http-errors.js';
import {
  mountOf,
  prevailContext,
  sendAnswer,
  type AnyStore,
  type PrevailContext,
  type PrevailOptions,
} from './common.js';

export type { MountHandler, MountOptions, PrevailContext, PrevailOptions } from './common.js';
export { httpErrorOf, httpStatusOf } from '../service/http-errors.js';
export type { HttpErrorAnswer } from '../service/http-errors.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by prevail/express's middleware. */
      prevail: PrevailContext;
    }
  }
}

type Next = (err?: unknown) => void;
type WithPrevail = IncomingMessage & { prevail?: PrevailContext };

/** The middleware, with `close()` for the mounted admin page (call it before `server.close()`). */
export interface PrevailMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  close(): void;
}

/** The middleware: sets `req.prevail`; serves the mount's path when asked to mount. */
export function prevail<S extends AnyStore>(options: PrevailOptions<S>): PrevailMiddleware {
  const context = prevailContext(options);
  const mount = mountOf(options);
  const middleware = (req: WithPrevail, res: ServerResponse, next: Next): void => {
    req.prevail = context;
    if (!mount?.covers(req)) return next();
    mount.serve(req, res).then(
      (answered) => {
        if (!answered) next();
      },
      (err: unknown) => next(err),
    );
  };
  return Object.assign(middleware, { close: () => mount?.close() });
}

export interface PrevailErrorsOptions {
  /** The store whose leader a 503 names; default: the one `req.prevail` holds. */
  store?: AnyStore;
}

/**
 * The error-handling middleware (Express knows one by its four parameters): answers prevail's
 * errors, passes the others on untouched. `app.use(prevailErrors())` after the routes.
 */
export function prevailErrors(options: PrevailErrorsOptions = {}) {
  const fallback = options.store ? prevailContext({ store: options.store }) : undefined;
  return (err: unknown, req: WithPrevail, res: ServerResponse, next: Next): void => {
    const context = req.prevail ?? fallback;
    const answer = context ? context.errorAnswer(err) : httpErrorOf(err);
    if (!answer || res.headersSent) return next(err);
    if (answer.status === 500) console.error(`${req.method} ${req.url}:`, err);
    sendAnswer(res, answer);
  };
}

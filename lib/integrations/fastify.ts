// prevail/fastify: a Fastify plugin. `app.register(prevailPlugin, { store })` gives handlers
// `request.prevail` (and the app `app.prevail`) with the store and its read helper, answers
// prevail's errors with their HTTP status (the one table, lib/service/http-errors.ts) and
// leaves every other error to the app's error handling; `mount` serves the admin page (or any
// node:http handler) behind lib/core/auth.ts. Fastify itself is only a type here.
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyPluginAsync,
} from 'fastify';

import {
  internalAnswer,
  mountOf,
  notFoundAnswer,
  prevailContext,
  sendAnswer,
  type AnyStore,
  type Mount,
  type PrevailContext,
  type PrevailOptions,
} from './common.js';

export type { MountHandler, MountOptions, PrevailContext, PrevailOptions } from './common.js';
export { httpErrorOf, httpStatusOf } from '../service/http-errors.js';
export type { HttpErrorAnswer } from '../service/http-errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    prevail: PrevailContext;
  }
  interface FastifyRequest {
    prevail: PrevailContext;
  }
}

export interface PrevailFastifyOptions<S extends AnyStore = AnyStore> extends PrevailOptions<S> {
  /**
   * Set the error handler that answers prevail's errors (default true). An app with an error
   * handler of its own (Fastify allows one per scope) passes false and calls
   * `replyPrevailError(error, request, reply)` first in its own.
   */
  errorHandler?: boolean;
}

/**
 * Answers `error` when it is prevail's (true), with its status, headers and JSON body; false
 * for any other error, left to the caller. For an app's own error handler.
 */
export function replyPrevailError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): boolean {
  const answer = request.prevail.errorAnswer(error);
  if (!answer) return false;
  if (answer.status === 500) request.log.error(error);
  void reply
    .code(answer.status)
    .headers({ 'cache-control': 'no-store', ...answer.headers })
    .send(answer.body);
  return true;
}

const plugin: FastifyPluginAsync<PrevailFastifyOptions> = async (app, options) => {
  const context = prevailContext(options);
  const mount = mountOf(options);
  app.decorate('prevail', context);
  app.decorateRequest('prevail', { getter: () => context });
  if (options.errorHandler !== false) {
    app.setErrorHandler((error: FastifyError, request, reply) => {
      // Not prevail's: to the enclosing scope's handler (Fastify's default at the root).
      if (!replyPrevailError(error, request, reply)) throw error;
    });
  }
  if (mount) await app.register(mounted(mount));
};

// The mount's routes, in their own scope: no body parsing there (the handler reads the raw
// request), and Fastify steps aside (hijack) while the handler answers on the raw response.
function mounted(mount: Mount): FastifyPluginAsync {
  return async (scope: FastifyInstance) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.addHook('onClose', async () => mount.close());
    const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      reply.hijack();
      try {
        if (!(await mount.serve(request.raw, reply.raw)))
          sendAnswer(reply.raw, notFoundAnswer(request.raw));
      } catch (err) {
        request.log.error(err);
        if (!reply.raw.headersSent)
          sendAnswer(reply.raw, request.prevail.errorAnswer(err) ?? internalAnswer());
        else reply.raw.destroy();
      }
    };
    scope.all(mount.path, handle);
    scope.all(`${mount.path}/*`, handle);
  };
}

// Registered with the app's own scope (not one of its own), as fastify-plugin would: the
// decorators and the error handler apply to the routes of the scope that registers it.
Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'prevail',
});

/** The plugin: `await app.register(prevailPlugin, { store, mount?, auth? })`. */
export const prevailPlugin = plugin;
export default plugin;

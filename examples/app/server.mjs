// The example app: a small issue tracker served as plain HTML forms over node:http, its
// state in a prevail store (a durable single Raft node by default).
//
//   node examples/app/server.mjs     PORT (3000), DATA_DIR (./data), RAFT_ADDRESS (127.0.0.1:7001)
//   cluster mode (npm run cluster):  NODE_ID, CLUSTER, and TLS_DIR (the members' mutual TLS:
//                                    ca.pem, node-<NODE_ID>.pem, node-<NODE_ID>-key.pem)
//   SCHEMA_VERSION=1                 runs the app as first shipped (schema.mjs's v1), to try
//                                    its upgrade: start it again without, and version 2 activates
//   OPS_TOKEN, OPS_AUTH_FILE         who may use the operations routes (/status, /health,
//                                    /admin…: what `prevail status|members|transfer|snapshot
//                                    --node http://127.0.0.1:3000` asks): one admin token, or an
//                                    auth file as `prevail serve --auth` takes. Without either
//                                    they answer anyone, which only a loopback HTTP address allows
//
// Every POST answers only after its command is committed to the log on disk, so what a
// browser saw acknowledged survives kill -9. Reads are plain function calls on the store's
// in-memory collections and indexes.
//
// This file starts and stops the app; the rest is by concern: routes.mjs (the routing table and
// a handler per page or form), list.mjs (the paged issue list), links.mjs (action links as
// closures), http.mjs (responses, errors, forms), data.mjs (commands and lookups the pages
// share), jobs.mjs (leader-only background work), views.mjs (HTML), schema.mjs (the state).
import { readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { open, operationsHandler } from '../../dist/index.js';
import { ClosureRegistry } from './closures.mjs';
import { footer } from './data.mjs';
import { send, sendError } from './http.mjs';
import { startLeaderWork } from './jobs.mjs';
import { handle, routes } from './routes.mjs';
import { schema as newest, v1 } from './schema.mjs';

export { BODY_LIMIT } from './http.mjs';

/**
 * Opens the store and starts serving. Resolves with `{ url, close() }` once it listens;
 * `close()` stops the HTTP server and closes the store (idempotent).
 */
export async function startApp({
  port = 3000,
  dataDir = './data',
  raftAddress = '127.0.0.1:7001',
  host = '127.0.0.1',
  closureTtlMs = 30 * 60_000,
  maxClosures = 10_000,
  // Cluster mode: this node's id and every member's { id, address } (the same list on each node).
  id = 1,
  cluster = undefined,
  // The members' mutual TLS: { caFile, certFile, keyFile } (or PEM { ca, cert, key }).
  tls = undefined,
  // Background work, on the leader only (jobs.mjs).
  staleAfterMs = 30 * 24 * 3600_000,
  staleCheckEveryMs = 60_000,
  digestEveryMs = 60_000,
  // The code's newest schema version: 2 (the default), or 1 for the app as first shipped.
  schemaVersion = newest.version,
  // Who may use the operations routes: { users: [{ name, token, permissions }] } (prevail
  // serve's --auth format). Without it they answer anyone: allowed on a loopback host only.
  auth = undefined,
} = {}) {
  const schema = schemaVersion === 1 ? v1 : newest;
  if (!auth && !isLoopback(host))
    throw new Error(
      `serving on ${host}: give OPS_TOKEN or OPS_AUTH_FILE for the operations routes`,
    );
  const store = await open({ schema, dataDir, address: raftAddress, id, cluster, tls });
  // The operations handler, mounted as any app would: status, health checks, members,
  // transfer, snapshot, schema activation and the admin page (members, leader, lag, live), so
  // the prevail CLI works against this app as against `prevail serve`.
  const admin = operationsHandler(store, auth ? { auth } : { insecure: true });
  startLeaderWork(store, { staleAfterMs, staleCheckEveryMs, digestEveryMs });
  const closures = new ClosureRegistry({ ttlMs: closureTtlMs, maxEntries: maxClosures });
  const app = { store, view: store.view, closures };
  const server = createAppServer(app, admin);
  try {
    await listen(server, port, host);
  } catch (err) {
    closures.close();
    admin.close();
    await store.close();
    throw err;
  }
  const { port: bound } = server.address();
  let closing = null;
  return {
    url: `http://${host}:${bound}`,
    store,
    closures,
    close() {
      closing ??= closeApp(app, server, admin);
      return closing;
    },
  };
}

function createAppServer(app, admin) {
  const table = routes(app);
  const pageFooter = () => footer(app);
  const server = createServer((req, res) =>
    // The operations routes are the handler's; every other path goes on to the app's own.
    admin(req, res, () =>
      handle(app, table, req).then(
        ({ response, headers }) => send(res, response, pageFooter, headers),
        (err) => sendError(res, req, err, pageFooter),
      ),
    ),
  );
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  return server;
}

function isLoopback(host) {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The operations routes' auth from the environment: OPS_AUTH_FILE, else OPS_TOKEN as one admin. */
function authFromEnv() {
  if (process.env.OPS_AUTH_FILE) return JSON.parse(readFileSync(process.env.OPS_AUTH_FILE, 'utf8'));
  if (process.env.OPS_TOKEN)
    return {
      users: [{ name: 'ops', token: process.env.OPS_TOKEN, permissions: ['read', 'admin'] }],
    };
  return undefined;
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function closeApp({ store, closures }, server, admin) {
  admin.close(); // ends the admin page's event streams, which would hold server.close() open
  const stopped = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  // Requests in progress get a moment to finish; then their connections are cut.
  const force = setTimeout(() => server.closeAllConnections(), 3000);
  force.unref();
  await stopped;
  clearTimeout(force);
  closures.close();
  await store.close({ transferLeadership: true });
}

// ---- main ------------------------------------------------------------------------------

function isMain() {
  try {
    return (
      process.argv[1] !== undefined &&
      pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url
    );
  } catch {
    return false;
  }
}

if (isMain()) {
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
    process.exit(2);
  }
  const dataDir = process.env.DATA_DIR ?? './data';
  // Cluster mode (npm run cluster sets these): NODE_ID=2 CLUSTER="1=127.0.0.1:7011,2=127.0.0.1:7012,3=127.0.0.1:7013"
  const cluster = process.env.CLUSTER?.split(',').map((m) => {
    const [id, address] = m.split('=');
    return { id: Number(id), address };
  });
  const id = Number(process.env.NODE_ID ?? 1);
  const raftAddress =
    process.env.RAFT_ADDRESS || (cluster?.find((m) => m.id === id)?.address ?? '127.0.0.1:7001');
  const ms = (name) => (process.env[name] === undefined ? undefined : Number(process.env[name]));
  const schemaVersion = ms('SCHEMA_VERSION');
  if (schemaVersion !== undefined && schemaVersion !== 1 && schemaVersion !== 2) {
    console.error(
      `SCHEMA_VERSION must be 1 or 2, got ${JSON.stringify(process.env.SCHEMA_VERSION)}`,
    );
    process.exit(2);
  }
  const tlsDir = process.env.TLS_DIR;
  const tls = tlsDir
    ? {
        caFile: join(tlsDir, 'ca.pem'),
        certFile: join(tlsDir, `node-${id}.pem`),
        keyFile: join(tlsDir, `node-${id}-key.pem`),
      }
    : undefined;
  const app = await startApp({
    port,
    dataDir,
    raftAddress,
    id,
    cluster,
    tls,
    staleAfterMs: ms('STALE_AFTER_MS'),
    staleCheckEveryMs: ms('STALE_CHECK_EVERY_MS'),
    digestEveryMs: ms('DIGEST_EVERY_MS'),
    schemaVersion,
    auth: authFromEnv(),
  });
  console.log(`prevail issues listening on ${app.url}/ (data in ${dataDir})`);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.log(`${signal}: closing`);
      app.close().catch((err) => {
        console.error(err);
        process.exitCode = 1;
      });
    });
  }
}

// The reference service: a replicated key-value store over HTTP, built only on the object
// store. `prevail serve` (lib/cli.ts) runs one node of it; `startService()` runs it in-process.
//
//   PUT    /kv/:key                   body = the value (raw bytes, UTF-8)   → 200 { index }
//   GET    /kv/:key?consistency=linearizable|lease|stale&minIndex=n      → 200 { value, index } | 404
//   POST   /kv/:key/cas               { expect: string | null, value }    → 200 { index } | 409
//   DELETE /kv/:key                                                       → 200 { index, deleted }
//   and the operations handler's routes (operations.ts): GET /status, /health, /health/leader,
//   /health/ready, /admin/members; POST/DELETE /admin/members…, POST /admin/transfer,
//   /admin/snapshot, /admin/backup, /admin/schema/activate, and POST /admin/reload (the TLS
//   material and auth settings read again: this node); the admin page at /admin
//
// With `auth`, each request needs a user with the permission its route needs (lib/core/auth.ts):
// /kv reads `read`, /kv writes `write`, /health/* nothing (or `read`), the rest `admin`.
// With `tls`, HTTPS, and a client certificate naming a user authenticates as that user.
//
// Every error is JSON: { "error": { "code": "PREVAIL_…", "message": "…", leader?, mayHaveApplied? } }.
//
// This file holds the options and the lifecycle (open, listen, close, stop with the store);
// routes.ts the key routes, operations.ts the rest, respond.ts the answers, http-server.ts the
// server.

import { parseAddress } from '../core/address.js';
import { HttpAuth, isLoopback, type AuthOptions } from '../core/auth.js';
import { debug } from '../core/diagnostics.js';
import { invalid, type MemberRef } from '../core/errors.js';
import { tlsTextOf, type TlsOptions } from '../engine/member-transport.js';
import { reloader, type Reloaded, type ReloadSettings } from './reload.js';
import type { RaftNodeOptions } from '../engine/options.js';
import { open } from '../store.js';
import { DEFAULT_MAX_BODY_BYTES } from './body.js';
import {
  closeIdleConnections,
  createServiceServer,
  http2Wanted,
  drain,
  listen,
  type Lifecycle,
  type ServiceServer,
} from './http-server.js';
import { kvSchema, type KvStore } from './kv-schema.js';
import { createOperations } from './operations.js';

export { DEFAULT_MAX_BODY_BYTES };

/** The service's options; the engine's timings are RaftNodeOptions' (documented there). */
export interface ServiceOptions extends Pick<
  RaftNodeOptions,
  | 'electionTimeoutMs'
  | 'heartbeatMs'
  | 'snapshotThreshold'
  | 'snapshotTrailing'
  | 'tls'
  | 'insecure'
> {
  /** Where the log and snapshots live. Required. */
  dataDir: string;
  /** This node's id. Default 1. */
  id?: number;
  /** The raft address (host:port). Default: this id's entry in `cluster`, else 127.0.0.1 on a free port. */
  raftAddress?: string;
  /** The initial members (bootstrap only). Default: this node alone. */
  cluster?: MemberRef[];
  /** Start empty and wait to be added by the leader (`prevail members add`). */
  join?: boolean;
  /** host:port of the store's peer channel (forwarding, read indexes). Default: the raft host, any free port. */
  channelAddress?: string;
  /** Where HTTP listens: host:port. Default 127.0.0.1:0 (a free port). */
  httpAddress?: string;
  /** Forward writes made on a follower to the leader. Default true; false answers 503 with the leader. */
  forward?: boolean;
  /** Schema versions: the leader activates the newest all voters support ('auto', default), or only POST /admin/schema/activate does ('manual'). */
  activation?: 'auto' | 'manual';
  /** Largest request body. Default 1 MiB; beyond it: 413. */
  maxBodyBytes?: number;
  /** How long a read may wait (for the leader, or for `minIndex`) before 504. Default 5000 ms. */
  readTimeoutMs?: number;
  /** On close, how long requests in progress get before their connections are cut. Default 10000 ms. */
  drainTimeoutMs?: number;
  /** Who may do what (users, their tokens and permissions). Without it, anyone who reaches `httpAddress` may do anything. */
  auth?: AuthOptions;
  /**
   * Serve HTTPS with this CA, certificate and key (PEM text, or `caFile`, `certFile`, `keyFile`
   * to read it from, and `crl`/`crlFile`); client certificates from the CA naming a user
   * authenticate as it. The members of a cluster use the same material.
   */
  tls?: TlsOptions;
  /**
   * With `tls`: the members still use it, but the HTTP API is plain HTTP, for a proxy on this
   * machine that terminates TLS (nginx, envoy). Only on a loopback `httpAddress`: elsewhere
   * tokens and data would cross the network in the clear (PREVAIL_INVALID_ARGUMENT).
   */
  plainHttp?: boolean;
  /**
   * With `tls`: serve HTTP/2 beside HTTP/1.1 (ALPN). Default: true on a Node release with the
   * HTTP/2 security fixes of March 2026 (20.20.2, 22.22.2, 24.14.1, 25.8.2 or later), else false
   * (HTTP/1.1 only, said once on stderr). false: HTTP/1.1 only.
   */
  http2?: boolean;
  /** Allow an `httpAddress` other than loopback without `auth` (warned on stderr, and `insecure: true` in /status). */
  insecure?: boolean;
  /**
   * Where `reload()` (and POST /admin/reload) gets the TLS material and auth settings anew:
   * `prevail serve` reads its --ca/--cert/--key and --auth files again. Without it, reload()
   * is PREVAIL_INVALID_STATE.
   */
  reread?: () => ReloadSettings;
}

/**
 * A running service. When its store stops on an entry it can't apply (the store's 'error'
 * event), the service closes its HTTP server and leaves the error to the application's
 * listener on `service.store`; with none, it is rethrown (an uncaught exception ends the process).
 */
export interface Service {
  store: KvStore;
  /** node:http's server; with HTTPS, node:http2's (HTTP/2 and HTTP/1.1, by ALPN) */
  server: ServiceServer;
  /** http://host:port, or https:// with `tls` (and without `plainHttp`) */
  url: string;
  /** Stops taking requests, lets those in progress finish (bounded), closes the store handing leadership over. Idempotent. */
  close(options?: { transferLeadership?: boolean }): Promise<void>;
  /**
   * Takes `options.reread()`'s settings: the members' TLS material (new member connections use
   * it), the HTTPS certificate (new HTTP connections) and the auth settings (the next request).
   * All or nothing: material that doesn't fit (PREVAIL_BAD_CERTIFICATE) or auth settings that
   * don't parse leave every old one in place.
   */
  reload(): Reloaded;
}

/** Opens the store and serves the key-value API. Resolves once HTTP listens. */
export async function startService(options: ServiceOptions): Promise<Service> {
  const { host, port } = parseAddress(options.httpAddress ?? '127.0.0.1:0', 'the HTTP address');
  const auth = options.auth === undefined ? undefined : new HttpAuth(options.auth);
  checkExposure(host, auth, options.insecure === true);
  if (options.plainHttp && !isLoopback(host))
    throw invalid(
      `plainHttp serves the HTTP API unencrypted, and ${host} is reachable from other machines: bind a loopback address behind a TLS-terminating proxy, or serve HTTPS`,
    );
  // Read (from files, when named) before anything starts: unreadable material changes nothing.
  const httpTls =
    options.plainHttp || options.tls === undefined ? undefined : tlsTextOf(options.tls);
  const store = await open({ schema: kvSchema, ...storeOptions(options) });
  // When the store stops (see Service), so does the service.
  let service: Service | undefined;
  let stoppedEarly: unknown;
  store.on('error', (err: unknown) => {
    debug('service: the store stopped (%s); closing HTTP', (err as Error)?.message);
    if (!service) {
      stoppedEarly = err; // startService rejects with it
      return;
    }
    service.close({ transferLeadership: false }).catch(() => undefined);
    if (store.listenerCount('error') === 1) throw err; // only this listener: nobody else will hear of it
  });
  const life: Lifecycle = { closing: null };
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const readTimeoutMs = options.readTimeoutMs ?? 5000;
  const guard = { auth, tls: httpTls };
  let server: ServiceServer | undefined;
  let url: string;
  let reload: (() => Reloaded) | undefined;
  const ops = createOperations(store, {
    guard,
    prefix: '',
    maxBody,
    insecure: options.insecure === true,
    reload: () => reload!(),
    closing: () => life.closing !== null,
    onClosed: () => server && closeIdleConnections(server),
  });
  try {
    server = createServiceServer({ store, maxBody, readTimeoutMs }, ops, life, guard, {
      http2: guard.tls !== undefined && http2Wanted(options.http2),
    });
    reload = reloader(store, server, guard, options.reread);
    url = await listen(server, host, port, guard.tls ? 'https' : 'http');
  } catch (err) {
    ops.close();
    await store.close();
    throw err;
  }
  debug('service: node %d serving %s', store.node.id, url);
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  service = {
    store,
    server: server!,
    url,
    close({ transferLeadership = true } = {}) {
      life.closing ??= (async () => {
        await drain(server!, ops, drainTimeoutMs);
        debug(
          'service: HTTP closed; closing the store (transferLeadership %s)',
          transferLeadership,
        );
        await store.close({ transferLeadership });
        debug('service: store closed');
      })();
      return life.closing;
    },
    reload,
  };
  if (stoppedEarly !== undefined) {
    await service.close({ transferLeadership: false });
    throw stoppedEarly;
  }
  return service;
}

/**
 * Refuses to serve the API beyond this machine to anyone who asks: a non-loopback address
 * needs `auth`, or `insecure` (which is then said loudly).
 */
function checkExposure(host: string, auth: HttpAuth | undefined, insecure: boolean): void {
  if (auth || isLoopback(host)) return;
  if (!insecure)
    throw invalid(
      `the HTTP address ${host} is reachable from other machines, and without auth anyone there could read, write and manage this cluster: give auth (prevail serve --auth FILE), bind a loopback address, or give insecure: true (--insecure)`,
    );
  console.error(
    `prevail: WARNING: INSECURE: the HTTP API on ${host} answers anyone without credentials (insecure: true)`,
  );
}

/** The store's part of the options. */
function storeOptions(options: ServiceOptions) {
  return {
    dataDir: options.dataDir,
    id: options.id,
    address: options.raftAddress,
    cluster: options.cluster,
    join: options.join,
    channelAddress: options.channelAddress,
    forward: options.forward,
    activation: options.activation,
    electionTimeoutMs: options.electionTimeoutMs,
    heartbeatMs: options.heartbeatMs,
    snapshotThreshold: options.snapshotThreshold,
    snapshotTrailing: options.snapshotTrailing,
    tls: options.tls,
    insecure: options.insecure,
  };
}

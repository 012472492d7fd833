// Reloading a running service's secrets (SIGHUP, POST /admin/reload): the members' TLS material,
// the HTTPS certificate and the auth settings, all read again and checked before any is taken.
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

import { HttpAuth, type AuthOptions } from '../core/auth.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { revokedSerials } from '../core/tls-files.js';
import { tlsTextOf, type TlsOptions } from '../engine/member-transport.js';
import type { KvStore } from './kv-schema.js';
import { apiContextOptions, closeRevoked, type Guard, type ServiceServer } from './http-server.js';

/** What a reload takes: the settings given (those left out stay as they are). */
export interface ReloadSettings {
  /** PEM text, or the files to read it from (as ServiceOptions.tls). */
  tls?: TlsOptions | undefined;
  auth?: AuthOptions | undefined;
}

/** A reload's answer: the new certificate's last moment of validity (ISO 8601), when there is one. */
export interface Reloaded {
  reloaded: true;
  notAfter: string | null;
}

/** The service's reload(): reads `reread()`, checks everything, then swaps it in. */
export function reloader(
  store: KvStore,
  server: ServiceServer,
  guard: Guard,
  reread: (() => ReloadSettings) | undefined,
): () => Reloaded {
  return () => {
    if (!reread)
      throw new PrevailError(
        ErrorCodes.INVALID_STATE,
        'nothing to reload: this service was not given where to read its settings again (ServiceOptions.reread; prevail serve reads its files)',
      );
    const fresh = reread();
    const auth = fresh.auth === undefined ? undefined : new HttpAuth(fresh.auth);
    let notAfter: number | null = null;
    const tls = fresh.tls === undefined ? undefined : tlsTextOf(fresh.tls);
    if (tls) {
      // HTTPS, members on mTLS, or both (plainHttp: members only).
      const https = guard.tls !== undefined;
      if (!https && !store.node.transport)
        throw new PrevailError(
          ErrorCodes.INVALID_STATE,
          'this service started without TLS: restart it to turn TLS on',
        );
      notAfter = leafNotAfter(tls.cert);
      const context = apiContextOptions(tls);
      if (https) checkContext(context);
      // Checked (one list per CA, each signed by it) before anything changes.
      const revoked = revokedSerials(tls);
      // The members' side checks the certificate names this node and the CA signed it, and
      // keeps the old material when it doesn't: it goes before any change, so a refusal
      // changes nothing.
      if (store.node.transport) store.reloadTls(tls);
      if (https) {
        (server as Extract<ServiceServer, { setSecureContext: unknown }>).setSecureContext(context);
        guard.tls = tls;
        closeRevoked(server, revoked);
      }
    }
    if (auth) guard.auth = auth;
    return {
      reloaded: true,
      notAfter: notAfter === null ? null : new Date(notAfter).toISOString(),
    };
  };
}

/** Throws PREVAIL_BAD_CERTIFICATE when Node's TLS can't use the material (a key not the certificate's). */
function checkContext(options: SecureContextOptions): void {
  try {
    createSecureContext(options);
  } catch (err) {
    throw new PrevailError(
      ErrorCodes.BAD_CERTIFICATE,
      `tls: the HTTP API can't use the new material: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function leafNotAfter(cert: string | Buffer): number {
  try {
    return Date.parse(new X509Certificate(cert).validTo);
  } catch (err) {
    throw new PrevailError(ErrorCodes.BAD_CERTIFICATE, 'tls: cert is not a PEM certificate', {
      cause: err,
    });
  }
}

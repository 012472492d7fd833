// Who a certificate names. Identity is bound to a URI in the subject alternative names, not to
// the common name: `urn:prevail:node:<id>` for a cluster member, `urn:prevail:client:<name>` for
// an HTTP API client. `prevail certs` writes them; the cluster transport and the HTTP API read
// them here, and nowhere else.

export type Identity = { kind: 'node'; id: number } | { kind: 'client'; name: string };

const NODE = 'urn:prevail:node:';
const CLIENT = 'urn:prevail:client:';

/** The SAN URI that names member `id`. */
export function nodeUri(id: number): string {
  return `${NODE}${id}`;
}

/** The SAN URI that names HTTP client `name`. */
export function clientUri(name: string): string {
  return `${CLIENT}${name}`;
}

/** A client name: letters, digits, `.`, `_`, `-`, 1–64 of them (it goes in a URI and in logs). */
export function isClientName(name: unknown): name is string {
  return typeof name === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(name);
}

/**
 * The one identity a certificate names, from its `subjectaltname` string (as Node's
 * `getPeerCertificate().subjectaltname` and `X509Certificate.subjectAltName` give it:
 * `URI:urn:prevail:node:2, DNS:localhost`). Undefined when it names none, or more than one:
 * a certificate naming two members must not be usable as either.
 */
export function identityOf(subjectAltName: string | undefined): Identity | undefined {
  if (!subjectAltName) return undefined;
  const found: Identity[] = [];
  for (const entry of subjectAltName.split(/,\s*/)) {
    if (!entry.startsWith('URI:')) continue;
    const uri = entry.slice(4);
    if (uri.startsWith(NODE)) {
      const text = uri.slice(NODE.length);
      const id = Number(text);
      if (/^[1-9][0-9]{0,9}$/.test(text) && id <= 2 ** 31 - 1) found.push({ kind: 'node', id });
      else return undefined; // a malformed member URI: refuse the certificate outright
    } else if (uri.startsWith(CLIENT)) {
      const name = uri.slice(CLIENT.length);
      if (!isClientName(name)) return undefined;
      found.push({ kind: 'client', name });
    }
  }
  return found.length === 1 ? found[0] : undefined;
}

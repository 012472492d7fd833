// The command lines' (prevail, prevail inspect) one error for bad usage: they print it with a
// pointer to --help and exit 2.

/** The command line was used wrongly (a missing or malformed argument), not a failure of the node. */
export class UsageError extends Error {}

/** `prevail certs --help`. */
export const CERTS_USAGE = `Usage: prevail certs <command> [options]

Creates a cluster's certificates without openssl: ECDSA P-256 keys, identity in the SAN URI
(urn:prevail:node:<id>, urn:prevail:client:<name>). Keys are written mode 0600, certificates 0644.

Commands:
  ca --dir DIR [--days D] [--name CN] [--force]
        a new CA: DIR/ca.pem, DIR/ca-key.pem (default 3650 days); refuses to replace an
        existing CA unless --force (every certificate it signed would stop being trusted)
  node --dir DIR --id N [--host H]... [--days D]
        a member's certificate, signed by DIR/ca.pem + DIR/ca-key.pem: DIR/node-N.pem,
        DIR/node-N-key.pem (default 365 days); each --host (a DNS name or IP the member is
        reached at) is added to its SANs (default: localhost, 127.0.0.1, ::1); replaces an
        existing one (rotation: then send the node SIGHUP)
  client --dir DIR --name NAME [--days D]
        an HTTP API client's certificate: DIR/client-NAME.pem, DIR/client-NAME-key.pem
        (default 365 days; NAME is 1-64 letters, digits, '.', '_', '-')
  show FILE
        print who a certificate names, its validity and its SHA-256 fingerprint

Exit status: 0 done, 1 a file could not be read or written, 2 bad usage.
`;

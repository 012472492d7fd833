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
  revoke --dir DIR [FILE...]
        add the certificates FILE... (signed by DIR/ca.pem) to the CA's revocation list
        DIR/crl.pem, signed with DIR/ca-key.pem (made when missing; earlier entries kept;
        valid until the CA expires); with no FILE, an empty list to start nodes with. Give the list to every node (serve --crl DIR/crl.pem)
        and send each SIGHUP: connections made with a revoked certificate are closed
  show FILE
        print who a certificate names, its validity and its SHA-256 fingerprint; with a
        CRL (crl.pem), the certificates it revokes

Exit status: 0 done, 1 a file could not be read or written, 2 bad usage.
`;

/** The client commands' common options (each subcommand's help ends with them). */
const CLIENT_OPTIONS = `Options:
  --node URL[,URL...]   the node(s) to ask; repeat --node or give a comma list (default
                        $PREVAIL_NODE or http://127.0.0.1:8001)
  --timeout MS          give up after this long (default 60000)
  --token TOKEN         bearer token (default $PREVAIL_TOKEN)
  --ca FILE             CA to verify an https node with
  --cert FILE --key FILE
                        client certificate to authenticate with
  --crl FILE            with --ca: refuse a node whose certificate this revocation list
                        names (prevail certs revoke)
`;

/** `prevail <command> --help`, for the commands whose help is not their own module's. */
export const COMMAND_USAGE: Record<string, string> = {
  status: `Usage: prevail status [--node URL]... [--json]

One node: its GET /status as JSON on stdout, and its schema line on stderr.
Several nodes (--node a --node b, or --node a,b): one table for the cluster, a row per node:
id, role, term, applied index, lag behind the leader's commit index, health (ready, not
ready, diverged, or down when it does not answer). --json: the nodes' statuses as an array
(a node that does not answer: { "node": URL, "error": "…" }).
Exit status: 0 every node answered, 1 one did not (the others are still shown), 2 bad usage.

${CLIENT_OPTIONS}`,
  members: `Usage: prevail members [--json]
       prevail members add ID HOST:PORT [--role voter|standby|spare] [--wait MS]
       prevail members remove ID

members               the configuration as a table: id, raft address, role, and (asked of
                      the leader) whether each member keeps up, and its lag in entries;
                      --json: { leader, members } as JSON
members add           add a member (it catches up as a non-voter, then takes its role).
                      If the new member does not catch up (not started, or unreachable at
                      HOST:PORT) within --wait MS (default 10000, at most --timeout), it
                      says so: the member stays in the configuration as a spare until you
                      start it with prevail serve --join and run members add again, or undo
                      it with prevail members remove ID (exit status 3)
members remove        remove a member (it is not told: its prevail serve says so if it
                      learns it, else it stops finding a leader)
Exit status: 0 done, 1 the request failed, 2 bad usage, 3 added but not reachable yet.

${CLIENT_OPTIONS}`,
  transfer: `Usage: prevail transfer [ID]

Hands leadership to member ID, or to the most up-to-date voter. Prints the new leader.
ID already leading: nothing to do (exit 0). ID not a voter of the cluster: exit 1,
naming the members.

${CLIENT_OPTIONS}`,
  snapshot: `Usage: prevail snapshot

Has the leader write a snapshot now; prints its { index, term }.

${CLIENT_OPTIONS}`,
  activate: `Usage: prevail activate [VERSION]

Activates schema version VERSION (default: the newest every voter's code supports) on every
replica, through the leader (any node forwards it). Prints { active }.

${CLIENT_OPTIONS}`,
  reload: `Usage: prevail reload

Has each --node read its certificates and --auth file again (as SIGHUP does); fails if
one refuses (it keeps its old ones).

${CLIENT_OPTIONS}`,
  backup: `Usage: prevail backup --out DIR [--capture false]

Has the first --node (any node, leader or follower) take a backup while it keeps taking
writes, and writes the file it streams into DIR (a temporary name, fsync, rename), checked
against the SHA-256 the node sent. Prints { file, node, nodeId, index, term, createdAt,
bytes, sha256 }. --capture false: no fresh capture (the node's last one plus the entries
since: lighter on a busy node, a longer log for the restored node to replay).
Give a large state a --timeout to match. Needs the admin permission.

${CLIENT_OPTIONS}`,
  restore: `Usage: prevail restore BACKUP --data-dir DIR --id N --address HOST:PORT
                       [--cluster "1=HOST:PORT,2=HOST:PORT,..."]

Seeds a new data dir (missing or empty) from a backup file, checked whole first, so that
prevail serve --data DIR --id N --raft HOST:PORT starts with the backup's state at its
index. --cluster: the new cluster's members (this node among them); seed every member
from the same backup. Prints { dataDir, snapshot, index, term, members, from }.
Exit status: 0 done, 1 a damaged backup (PREVAIL_BACKUP_CORRUPT) or a used data dir
(PREVAIL_DATADIR_NOT_EMPTY), nothing written; 2 bad usage.
`,
};

/** `prevail serve --help`. */
export const SERVE_USAGE = `Usage: prevail serve --data DIR [options]

Runs one node of the replicated key-value service (docs/operations.md).

Options:
  --data DIR                     data directory (required; one node id per directory)
  --id N                         this node's id (default 1)
  --raft HOST:PORT               raft address (default: this id's entry in --cluster)
  --http HOST:PORT               HTTP address (default 127.0.0.1:8001)
  --channel HOST:PORT            peer channel for forwarded writes and reads (default:
                                 the --raft host, any free port)
  --cluster "1=HOST:PORT,2=..."  the initial members; read only when DIR is empty
  --join                         start empty and wait to be added (prevail members add)
  --election-timeout MS          default 200
  --heartbeat MS                 default 40
  --snapshot-threshold N         entries between snapshots (default 8192)
  --snapshot-trailing N          entries kept after a snapshot (default 2048)
  --no-forward                   answer writes on a follower with 503 and the leader
                                 instead of forwarding them
  --activation auto|manual       schema versions: the leader activates the newest every
                                 voter supports (auto, default), or only prevail
                                 activate does (manual)
  --max-body BYTES               largest request body (default 1048576)
  --auth FILE                    users, tokens and permissions (JSON; docs/operations.md)
  --ca FILE --cert FILE --key FILE
                                 mutual TLS between members with this CA, node
                                 certificate and key (PEM), and HTTPS for the API
                                 (client certificates from the CA authenticate)
  --crl FILE                     with --ca: refuse the certificates this revocation list
                                 (prevail certs revoke) names, on both ports
  --plain-http                   with --cert: the API on plain HTTP, for a TLS-terminating
                                 proxy on this machine (a loopback --http only); members
                                 stay on mutual TLS
  --no-http2                     with --cert: HTTPS on HTTP/1.1 only (default: HTTP/2 and
                                 HTTP/1.1, by ALPN, on a Node with the HTTP/2 fixes)
  --insecure                     allow --http on a non-loopback address without --auth
  --backup-dir DIR               automatic backups on the leader into DIR, or
  --backup-s3 s3://BUCKET/PREFIX into S3 (needs @aws-sdk/client-s3; credentials and
                                 region from the AWS environment)
  --backup-s3-endpoint URL       an S3-compatible service's URL (path-style)
  --backup-every DURATION        how often: 30s, 15m, 1h (default), 1d; skipped when
                                 nothing changed since the newest backup
  --backup-keep last=N,daily=N,weekly=N
                                 retention (default: keep every backup)

It logs on stderr, a line each: leadership changes (node N leads term T, lost leadership,
which node leads), a long time without a leader, and its own removal from the cluster.
Removed (the configuration no longer lists it), it closes and exits with status 0: start
it again only after emptying its data dir, with --join, and prevail members add.

Exit status: 0 stopped by SIGTERM or SIGINT (the leader hands over first) or removed from
the cluster, 1 it could not start or its store stopped on an entry it can't apply, 2 bad
usage. SIGHUP makes it read --ca/--cert/--key/--crl and --auth again; on a bad file it keeps the old.
`;

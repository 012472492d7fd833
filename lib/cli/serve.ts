// `prevail serve`: runs one node of the key-value service until SIGTERM or SIGINT (a graceful
// close, the leader handing over first) or until its store stops on an entry it can't apply.
import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { hasPlainTokens, type AuthOptions } from '../core/auth.js';
import { invalid, type MemberRef } from '../core/errors.js';
import { readTlsFiles } from '../core/tls-files.js';
import { startService, type Service, type ServiceOptions } from '../service/service.js';
import { fail, hostPort, parseCluster, positiveInt } from './args.js';
import { BACKUP_FLAGS, backupFlags, startBackups } from './serve-backup.js';
import { logLeadership, watchMembership } from './serve-log.js';

const membersSecurity = {
  tls: 'on mutual TLS',
  insecure: 'on plain TCP: INSECURE',
  none: 'none yet: no port open',
} as const;

/** How long a SIGTERM'd serve may take to drain and close before it exits anyway. */
const CLOSE_DEADLINE_MS = 30_000;
/** A certificate closer than this to its end is warned about at start and on each reload. */
const EXPIRY_WARNING_MS = 30 * 24 * 3600_000;

export async function serve(args: string[]): Promise<void> {
  const values = parseServeArgs(args);
  const options = serveOptions(values);
  const backups = backupFlags(values);
  const id = options.id!;
  const service = await startService(options);
  console.log(
    `prevail: node ${id} serving ${service.url} (raft ${options.raftAddress}, data ${options.dataDir}, members ${membersSecurity[service.store.status().security]})`,
  );
  warnIfExpiring(id, service.store.node.transport?.material.notAfter);
  const leave = exitWhenStopped(service, id);
  logLeadership(service, id);
  // Removed from the configuration, a node serves nothing useful: it says so and exits 0.
  watchMembership(service, id, options.electionTimeoutMs ?? 200, (line) => {
    console.error(line);
    leave();
  });
  process.on('SIGHUP', () => reloadOnSignal(service, id));
  if (backups) startBackups(service, id, backups);
}

/**
 * SIGHUP: the --ca/--cert/--key/--crl and --auth files read again and taken (rotation without a
 * restart). A reload that fails keeps the old material and says why; the node serves on.
 */
function reloadOnSignal(service: Service, id: number): void {
  try {
    const { notAfter } = service.reload();
    console.error(
      `prevail: SIGHUP: node ${id} reloaded its certificates and auth settings${notAfter ? ` (certificate valid until ${notAfter})` : ''}`,
    );
    warnIfExpiring(id, notAfter === null ? undefined : Date.parse(notAfter));
  } catch (err) {
    const { code, message } = err as Error & { code?: string };
    console.error(
      `prevail: SIGHUP: node ${id} kept its old certificates and auth settings: ${code ?? 'error'}: ${message}`,
    );
  }
}

function warnIfExpiring(id: number, notAfter: number | undefined): void {
  if (notAfter === undefined || notAfter - Date.now() > EXPIRY_WARNING_MS) return;
  const days = Math.max(0, Math.floor((notAfter - Date.now()) / 86_400_000));
  console.error(
    `prevail: WARNING: node ${id}'s certificate expires on ${new Date(notAfter).toISOString()} (in ${days} days): rotate it (new files, then SIGHUP or prevail reload)`,
  );
}

function parseServeArgs(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      data: { type: 'string' },
      id: { type: 'string' },
      raft: { type: 'string' },
      http: { type: 'string' },
      channel: { type: 'string' },
      cluster: { type: 'string' },
      join: { type: 'boolean' },
      'election-timeout': { type: 'string' },
      heartbeat: { type: 'string' },
      'snapshot-threshold': { type: 'string' },
      'snapshot-trailing': { type: 'string' },
      'no-forward': { type: 'boolean' },
      activation: { type: 'string' },
      'max-body': { type: 'string' },
      auth: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      crl: { type: 'string' },
      insecure: { type: 'boolean' },
      'plain-http': { type: 'boolean' },
      'no-http2': { type: 'boolean' },
      ...BACKUP_FLAGS,
    },
  });
  if (positionals.length)
    fail(`serve takes no arguments, got ${JSON.stringify(positionals.join(' '))}`);
  return values;
}

/** The service's options from serve's flags, checked in the order the flags are documented. */
function serveOptions(values: ReturnType<typeof parseServeArgs>): ServiceOptions {
  if (!values.data) fail('serve needs --data DIR');
  const id = positiveInt('--id', values.id, 1)!;
  const cluster = values.cluster !== undefined ? parseCluster(values.cluster) : undefined;
  if (values.join && cluster)
    fail(
      '--join and --cluster exclude each other: a joining node gets the configuration from the leader',
    );
  const raft = raftAddress(id, values.raft, cluster);
  const http = hostPort('--http', values.http ?? '127.0.0.1:8001');
  const channel = values.channel !== undefined ? hostPort('--channel', values.channel) : undefined;
  const electionTimeoutMs = positiveInt('--election-timeout', values['election-timeout']);
  const heartbeatMs = positiveInt('--heartbeat', values.heartbeat);
  if ((heartbeatMs ?? 40) >= (electionTimeoutMs ?? 200))
    fail('--heartbeat must be below --election-timeout');
  const snapshotThreshold = positiveInt('--snapshot-threshold', values['snapshot-threshold']);
  const snapshotTrailing = positiveInt('--snapshot-trailing', values['snapshot-trailing']);
  const activation = values.activation ?? 'auto';
  if (activation !== 'auto' && activation !== 'manual')
    fail(`--activation must be auto or manual, got ${JSON.stringify(activation)}`);
  const paths = { ca: values.ca, cert: values.cert, key: values.key, crl: values.crl };
  const tls = readTlsFiles(paths);
  const authFile = values.auth;
  return {
    dataDir: values.data,
    id,
    raftAddress: raft,
    httpAddress: http,
    ...(cluster ? { cluster } : {}),
    ...(values.join ? { join: true } : {}),
    ...(channel ? { channelAddress: channel } : {}),
    ...(electionTimeoutMs !== undefined ? { electionTimeoutMs } : {}),
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    ...(snapshotThreshold !== undefined ? { snapshotThreshold } : {}),
    ...(snapshotTrailing !== undefined ? { snapshotTrailing } : {}),
    ...(values['no-forward'] ? { forward: false } : {}),
    activation,
    ...(values['max-body'] !== undefined
      ? { maxBodyBytes: positiveInt('--max-body', values['max-body'])! }
      : {}),
    ...(values.auth !== undefined ? { auth: readAuthFile(values.auth) } : {}),
    ...(tls ? { tls } : {}),
    ...(values.insecure ? { insecure: true } : {}),
    ...(values['plain-http'] ? { plainHttp: true } : {}),
    ...(values['no-http2'] ? { http2: false } : {}),
    reread: () => ({
      tls: readTlsFiles(paths),
      auth: authFile === undefined ? undefined : readAuthFile(authFile),
    }),
  };
}

/**
 * The --auth file: JSON of ServiceOptions.auth (checked by startService). One that holds tokens
 * in the clear must not be readable by every account on the machine (give them as
 * { "sha256": … } instead, or chmod 600 the file).
 */
export function readAuthFile(path: string): AuthOptions {
  let options: AuthOptions;
  try {
    options = JSON.parse(readFileSync(path, 'utf8')) as AuthOptions;
  } catch (err) {
    throw invalid(`--auth ${path}: ${(err as Error).message}`);
  }
  const worldReadable = process.platform !== 'win32' && (statSync(path).mode & 0o004) !== 0;
  if (worldReadable && hasPlainTokens(options))
    throw invalid(
      `--auth ${path} holds tokens in the clear and every account on this machine can read it: chmod o-r it, or give each token as { "sha256": "<hex>" }`,
    );
  return options;
}

/** --raft, or this id's entry in --cluster; both given, they must agree. */
function raftAddress(id: number, flag: string | undefined, cluster?: MemberRef[]): string {
  const listed = cluster?.find((m) => m.id === id)?.address;
  const raft = flag !== undefined ? hostPort('--raft', flag) : listed;
  if (raft === undefined)
    fail(
      cluster
        ? `--cluster does not list id ${id}; give --raft HOST:PORT`
        : 'serve needs --raft HOST:PORT (or --cluster listing this --id)',
    );
  if (listed !== undefined && listed !== raft)
    fail(`--cluster lists id ${id} at ${listed}, but --raft is ${raft}`);
  if (cluster && !listed) fail(`--cluster does not list id ${id}`);
  return raft;
}

/**
 * Closes the service and exits on SIGTERM or SIGINT (0), or when its store stops (1). Returns
 * the way out for a node removed from the cluster: closed (no leadership to hand over), exit 0.
 */
function exitWhenStopped(service: Service, id: number): () => void {
  let stopping = false;
  let failed = false; // the store stopped on an entry it can't apply: exit 1 whatever else happens
  const stop = (signal: string) => {
    if (stopping) {
      console.error(`prevail: ${signal} again: exiting without waiting`);
      process.exit(1);
    }
    stopping = true;
    console.error(`prevail: ${signal}: closing (node ${id}, ${service.store.status().role})`);
    // A close that cannot finish (an engine call that never settles) must not keep a
    // stopped service around forever; the log makes a hard stop as safe as a crash.
    setTimeout(() => {
      console.error(`prevail: node ${id} did not close within ${CLOSE_DEADLINE_MS} ms; exiting`);
      process.exit(1);
    }, CLOSE_DEADLINE_MS).unref();
    service.close({ transferLeadership: true }).then(
      () => {
        console.error(`prevail: node ${id} closed`);
        process.exit(failed ? 1 : 0);
      },
      (err: unknown) => {
        console.error(`prevail: close failed:`, err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The node stopped because it can't apply an entry (docs/operations.md): say why and exit
  // non-zero once the service has closed. A supervisor restarting it gets the same error
  // from open() until the code that defines the entry's command is deployed.
  service.store.on('error', (err: Error & { code?: string }) => {
    console.error(`prevail serve: node ${id} stopped: ${err.code ?? 'error'}: ${err.message}`);
    failed = true;
    if (stopping) return; // a signal's close is under way; it exits with status 1 now
    stopping = true;
    setTimeout(() => process.exit(1), CLOSE_DEADLINE_MS).unref();
    service.close({ transferLeadership: false }).finally(() => process.exit(1));
  });
  return () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), CLOSE_DEADLINE_MS).unref();
    service.close({ transferLeadership: false }).then(
      () => process.exit(failed ? 1 : 0),
      () => process.exit(1),
    );
  };
}

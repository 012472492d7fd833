// `prevail backup` (a running node streams a backup over POST /admin/backup; it is written
// into --out and checked against the checksum the node sent) and `prevail restore` (seeds a
// new data dir from a backup file: lib/backup/restore.ts).
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';

import { verifyBackup } from '../backup/format.js';
import { restoreBackup } from '../backup/restore.js';
import { BACKUP_NAME_RE, DirectoryTarget } from '../backup/target.js';
import { ErrorCodes, PrevailError, type ErrorCode } from '../core/errors.js';
import { BACKUP_HEADERS } from '../service/backup-route.js';
import { fail, hostPort, parseCluster, positiveInt } from './args.js';
import { clientOptions } from './client.js';
import type { Transport } from './http-client.js';

/** `prevail backup --node URL --out DIR [--capture false]`: prints what it wrote (JSON). */
export async function backupCommand(args: string[]): Promise<void> {
  const { client, values, positionals } = clientOptions(args, {
    out: { type: 'string' },
    capture: { type: 'string' },
  });
  if (positionals.length) fail('backup takes no arguments');
  if (!values.out) fail('--out DIR is required');
  const capture = (values.capture as string | undefined) ?? 'true';
  if (capture !== 'true' && capture !== 'false')
    fail(`--capture must be true or false, got ${JSON.stringify(capture)}`);
  const node = client.nodes[0]!;
  const res = await post(client, `${node}/admin/backup?capture=${capture}`);
  if (res.statusCode !== 200) throw await answerError(node, res);
  const name = String(res.headers[BACKUP_HEADERS.name] ?? '');
  if (!BACKUP_NAME_RE.test(name))
    throw new PrevailError(
      ErrorCodes.BACKUP_CORRUPT,
      `${node} sent a backup named ${JSON.stringify(name)}`,
    );
  const target = new DirectoryTarget(values.out as string);
  await target.write(name, res);
  const file = target.describe(name);
  const sent = String(res.headers[BACKUP_HEADERS.sha256]);
  const checked = await verifyBackup(target.read(name), file).catch(async (err: unknown) => {
    await target.remove(name);
    throw err;
  });
  if (checked.sha256 !== sent) {
    await target.remove(name);
    throw new PrevailError(
      ErrorCodes.BACKUP_CORRUPT,
      `the backup ${node} sent reads as SHA-256 ${checked.sha256}, the node said ${sent}: removed`,
    );
  }
  const { index, term, nodeId, createdAt } = checked.header;
  print({
    file,
    node,
    nodeId,
    index,
    term,
    createdAt,
    bytes: checked.bytes,
    sha256: checked.sha256,
  });
}

/** `prevail restore BACKUP --data-dir DIR --id N --address HOST:PORT [--cluster …]`. */
export async function restoreCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      'data-dir': { type: 'string' },
      id: { type: 'string' },
      address: { type: 'string' },
      cluster: { type: 'string' },
    },
  });
  if (positionals.length !== 1)
    fail('usage: prevail restore BACKUP --data-dir DIR --id N --address HOST:PORT [--cluster …]');
  const dataDir = values['data-dir'] ?? fail('--data-dir DIR is required');
  const id = positiveInt('--id', values.id) ?? fail('--id N is required');
  const address = hostPort('--address', values.address ?? fail('--address HOST:PORT is required'));
  const cluster = values.cluster === undefined ? undefined : parseCluster(values.cluster);
  const r = await restoreBackup({ backup: positionals[0]!, dataDir, id, address, cluster });
  print({
    dataDir: r.dataDir,
    snapshot: r.snapshot,
    index: r.index,
    term: r.term,
    members: r.members,
    from: { nodeId: r.from.nodeId, createdAt: r.from.createdAt, sha256: r.sha256 },
  });
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

// The request with the client's token and TLS; the answer's stream (the backup, or an error).
function post(client: Transport, url: string): Promise<IncomingMessage> {
  // The file itself, even where the app has a backup destination of its own (operations.ts).
  const headers: Record<string, string> = { accept: 'application/octet-stream' };
  if (client.token !== undefined) headers.authorization = `Bearer ${client.token}`;
  const https = url.startsWith('https:');
  const options = {
    method: 'POST',
    headers,
    signal: AbortSignal.timeout(client.timeoutMs),
    ...(https ? client.tls : {}),
  };
  return new Promise((resolve, reject) => {
    const req = https ? httpsRequest(url, options, resolve) : httpRequest(url, options, resolve);
    req.on('error', (err) =>
      reject(new PrevailError(ErrorCodes.UNAVAILABLE, `${url}: ${err.message}`, { cause: err })),
    );
    req.end();
  });
}

async function answerError(node: string, res: IncomingMessage): Promise<PrevailError> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  let error: { code?: string; message?: string } | undefined;
  try {
    error = (JSON.parse(Buffer.concat(chunks).toString()) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  const code = (
    error?.code?.startsWith('PREVAIL_') ? error.code : ErrorCodes.UNAVAILABLE
  ) as ErrorCode;
  return new PrevailError(
    code,
    `${node}: HTTP ${res.statusCode}: ${error?.message ?? 'no answer'}`,
  );
}

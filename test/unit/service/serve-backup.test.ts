// prevail serve's automatic-backup flags: into a directory with retention, into S3 (a real
// s3rver process) with credentials from the environment, and bad flags refused (exit 2).
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { parseBackupName } from '../../../lib/backup/retention.js';
import { S3Target } from '../../../lib/backup/s3.js';
import {
  ServeProcess,
  freePorts,
  runCli,
  tempDir,
  waitFor,
  type ServeSpec,
} from '../../helpers/cluster.js';
import { S3Server } from '../../helpers/s3rver.js';

let root: string;
const started: ServeProcess[] = [];
beforeEach(() => {
  root = tempDir('prevail-serve-backup-');
});
afterEach(async () => {
  for (const node of started.splice(0)) await node.kill();
  rmSync(root, { recursive: true, force: true });
});

async function serve(args: string[], env?: Record<string, string>): Promise<ServeProcess> {
  const [raft, http] = await freePorts(2);
  const spec: ServeSpec = {
    id: 1,
    address: `127.0.0.1:${raft}`,
    http: `127.0.0.1:${http}`,
    dataDir: join(root, 'data'),
  };
  const node = new ServeProcess(spec, args, undefined, env);
  started.push(node);
  await node.ready(30_000);
  return node;
}

const backupLines = (node: ServeProcess) =>
  node.output.split('\n').filter((l) => /backed up index/.test(l));

// Each PUT moves the applied index: the next round backs it up.
async function writeAndWaitForBackups(node: ServeProcess, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const before = backupLines(node).length;
    expect((await node.request('PUT', `/kv/k${i}`, `v${i}`)).status).toBe(200);
    await waitFor(
      `backup after write ${i}`,
      () => backupLines(node).length > before || undefined,
      30_000,
    );
  }
}

test('--backup-dir with --backup-every and --backup-keep', async () => {
  const dir = join(root, 'backups');
  const node = await serve([
    '--backup-dir',
    dir,
    '--backup-every',
    '100ms',
    '--backup-keep',
    'last=2',
  ]);
  await writeAndWaitForBackups(node, 3);
  expect(node.output).toMatch(/removed prevail-backup-/);
  expect(node.output).not.toMatch(/automatic backup failed/);
  const files = readdirSync(dir).filter((f) => parseBackupName(f));
  expect(files).toHaveLength(2);
  expect(backupLines(node).at(-1)).toContain(join(dir, files[1]!));
}, 60_000);

test('--backup-s3 with --backup-s3-endpoint, credentials from the environment', async () => {
  const s3 = await S3Server.start('serve-backups');
  const target = new S3Target({
    bucket: 'serve-backups',
    prefix: 'n1',
    endpoint: s3.endpoint,
    region: 'us-east-1',
    credentials: s3.credentials,
    forcePathStyle: true,
  });
  try {
    const node = await serve(
      [
        '--backup-s3',
        's3://serve-backups/n1',
        '--backup-s3-endpoint',
        s3.endpoint,
        '--backup-every',
        '100ms',
      ],
      { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' },
    );
    await writeAndWaitForBackups(node, 2);
    expect(backupLines(node).at(-1)).toContain('s3://serve-backups/n1/prevail-backup-');
    expect((await target.list()).length).toBeGreaterThanOrEqual(2);
  } finally {
    target.destroy();
    await s3.stop();
  }
}, 60_000);

test('bad backup flags are usage errors (exit 2)', async () => {
  const base = ['serve', '--data', join(root, 'x'), '--raft', '127.0.0.1:1'];
  for (const [flags, message] of [
    [['--backup-every', '1h'], /--backup-every needs --backup-dir or --backup-s3/],
    [['--backup-dir', root, '--backup-every', 'soon'], /--backup-every must be a duration/],
    [['--backup-dir', root, '--backup-keep', 'monthly=2'], /--backup-keep/],
    [['--backup-s3', 'bucket/x'], /--backup-s3 must be s3:\/\/BUCKET/],
    [['--backup-dir', root, '--backup-s3', 's3://b'], /not both/],
  ] as const) {
    const out = await runCli([...base, ...flags]);
    expect({ code: out.code, stderr: out.stderr }).toEqual({
      code: 2,
      stderr: expect.stringMatching(message),
    });
  }
}, 60_000);

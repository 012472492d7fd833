// `prevail serve --backup-dir DIR | --backup-s3 s3://BUCKET/PREFIX [--backup-s3-endpoint URL]
// [--backup-every 1h] [--backup-keep last=7,daily=7,weekly=4]`: automatic backups on whichever
// node leads (store.autoBackup), each round logged on stderr.
import type { AutoBackupEvent, AutoBackupOptions } from '../backup/auto.js';
import { parseRetention } from '../backup/retention.js';
import { S3Target } from '../backup/s3.js';
import { isPrevailError } from '../core/errors.js';
import type { Service } from '../service/service.js';
import { fail } from './args.js';

export const BACKUP_FLAGS = {
  'backup-dir': { type: 'string' },
  'backup-s3': { type: 'string' },
  'backup-s3-endpoint': { type: 'string' },
  'backup-every': { type: 'string' },
  'backup-keep': { type: 'string' },
} as const;

type Flags = Partial<Record<keyof typeof BACKUP_FLAGS, string>>;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500ms`, `30s`, `15m`, `1h`, `1d`, or a number of ms. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? 'ms']! : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0)
    fail(`${flag} must be a duration like 30s, 15m, 1h or 1d, got ${JSON.stringify(value)}`);
  return ms;
}

/** The autoBackup options the flags ask for; null without --backup-dir or --backup-s3. */
export function backupFlags(values: Flags): AutoBackupOptions | null {
  const { 'backup-dir': dir, 'backup-s3': s3, 'backup-s3-endpoint': endpoint } = values;
  if (dir === undefined && s3 === undefined) {
    for (const f of ['backup-every', 'backup-keep', 'backup-s3-endpoint'] as const)
      if (values[f] !== undefined) fail(`--${f} needs --backup-dir or --backup-s3`);
    return null;
  }
  if (dir !== undefined && s3 !== undefined) fail('give --backup-dir or --backup-s3, not both');
  if (dir === '') fail('--backup-dir is empty');
  if (endpoint !== undefined && s3 === undefined) fail('--backup-s3-endpoint needs --backup-s3');
  if (s3 !== undefined && !/^s3:\/\/[^/]+/.test(s3))
    fail(`--backup-s3 must be s3://BUCKET[/PREFIX], got ${JSON.stringify(s3)}`);
  let retention;
  try {
    retention = values['backup-keep'] ? parseRetention(values['backup-keep']) : undefined;
  } catch (err) {
    fail(`--backup-keep: ${(err as Error).message}`);
  }
  return {
    // S3-compatible services other than AWS mostly need path-style URLs.
    target: dir ?? S3Target.fromUrl(s3!, endpoint ? { endpoint, forcePathStyle: true } : {}),
    everyMs: parseDuration('--backup-every', values['backup-every'] ?? '1h'),
    ...(retention ? { retention } : {}),
  };
}

/** Starts the automatic backups and logs each round that took a backup or failed. */
export function startBackups(service: Service, id: number, options: AutoBackupOptions): void {
  service.store.on('backup', (e: AutoBackupEvent) => {
    if (e.kind === 'taken') {
      const removed = e.removed.length ? `; removed ${e.removed.join(', ')}` : '';
      console.error(
        `prevail: node ${id} backed up index ${e.backup.index} to ${e.backup.file} (${e.backup.bytes} bytes)${removed}`,
      );
    } else if (e.kind === 'error') {
      const err = e.error as Error & { code?: string };
      const code = isPrevailError(err) ? err.code : (err?.code ?? err?.name ?? 'error');
      console.error(
        `prevail: node ${id} automatic backup failed (retried next interval): ${code}: ${err?.message}`,
      );
    }
  });
  service.store.autoBackup(options);
}

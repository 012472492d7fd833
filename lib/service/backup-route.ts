// POST /admin/backup answered with the file: the node takes a backup (store.backup, into a
// temporary directory) and streams it, with what it is in headers; the file is removed after.
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

import type { BackupOptions, BackupResult } from '../backup/take.js';
import { debug } from '../core/diagnostics.js';

/** An answer that is a file, not JSON: the service streams it (see http-server.ts). */
export class FileAnswer {
  constructor(
    readonly path: string,
    readonly bytes: number,
    readonly headers: Record<string, string>,
    readonly done: () => Promise<void>,
  ) {}

  /** Streams the file as a 200; `done` runs however it ends. */
  send(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': this.bytes,
      'cache-control': 'no-store',
      ...this.headers,
    });
    pipeline(createReadStream(this.path), res)
      .catch((err: Error) => debug('sending %s failed: %s', this.path, err.message))
      .finally(() => void this.done().catch(() => undefined));
  }
}

/** Headers of a backup answer (what `prevail backup` reads and checks the file against). */
export const BACKUP_HEADERS = {
  name: 'x-prevail-backup-name',
  index: 'x-prevail-backup-index',
  term: 'x-prevail-backup-term',
  sha256: 'x-prevail-backup-sha256',
} as const;

/** A backup into a temporary directory, as the answer (the directory is removed once it is sent). */
export async function backupFile(
  store: { backup(destination: string, options?: BackupOptions): Promise<BackupResult> },
  options: BackupOptions,
): Promise<FileAnswer> {
  const dir = await mkdtemp(join(tmpdir(), 'prevail-backup-'));
  const done = () => rm(dir, { recursive: true, force: true });
  try {
    const r = await store.backup(dir, options);
    return new FileAnswer(
      r.file,
      r.bytes,
      {
        [BACKUP_HEADERS.name]: r.name,
        [BACKUP_HEADERS.index]: String(r.index),
        [BACKUP_HEADERS.term]: String(r.term),
        [BACKUP_HEADERS.sha256]: r.sha256,
        'content-disposition': `attachment; filename="${r.name}"`,
      },
      done,
    );
  } catch (err) {
    await done();
    throw err;
  }
}

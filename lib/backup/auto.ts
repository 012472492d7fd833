// Automatic backups: a leader job (lib/jobs.ts) that takes a backup every interval into a
// target, skips it when the applied index has not moved past the newest backup there, then
// deletes what the retention policy lets go. A failed round is reported and the next interval
// tries again: a backup problem never brings the node down.
import { channels, debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError } from '../core/errors.js';
import type { LeaderJobHandle, LeaderJobOptions, LeaderJob } from '../jobs.js';
import { backupsToDelete, parseBackupName, type RetentionPolicy } from './retention.js';
import { toTarget, type BackupDestination, type BackupResult } from './take.js';
import type { BackupTarget } from './target.js';

export interface AutoBackupOptions {
  /** Where backups go: a directory's path or a BackupTarget (an S3Target, …). */
  target: BackupDestination;
  /** How often (ms); the first round runs when this node becomes leader. */
  everyMs: number;
  /** What to keep; default: everything (nothing is deleted). */
  retention?: RetentionPolicy;
}

/** What each round did: the `'backup'` event's and the `prevail:backup` channel's message. */
export type AutoBackupEvent =
  | { id: number; kind: 'taken'; backup: BackupResult; removed: string[] }
  | { id: number; kind: 'skipped'; index: number; newest: string }
  | { id: number; kind: 'error'; error: unknown };

/** What autoBackup needs from the store. */
export interface AutoBackupHost<S> {
  readonly node: { readonly id: number };
  onLeader(job: LeaderJob<S>, options?: LeaderJobOptions): LeaderJobHandle;
  backup(destination: BackupTarget): Promise<BackupResult>;
  /** `effects.index`: the store's last applied entry (what a backup's index is; the engine's own entries, such as read barriers, don't count). */
  status(): { effects: { index: number } };
  emit(event: string, ...args: unknown[]): boolean;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Starts automatic backups on `store`'s leader (see AutoBackupOptions). Every round is
 * reported as a `'backup'` event on the store and on the `prevail:backup` diagnostics channel.
 */
export function autoBackup<S>(
  store: AutoBackupHost<S>,
  options: AutoBackupOptions,
): LeaderJobHandle {
  const target = toTarget(options.target);
  const everyMs = options.everyMs;
  if (!Number.isFinite(everyMs) || everyMs < 1)
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `autoBackup everyMs must be ≥ 1, got ${everyMs}`,
    );
  const retention = options.retention;
  if (retention) backupsToDelete([], retention); // checks the policy now, not at the first round
  const report = (event: AutoBackupEvent) => {
    if (event.kind === 'error')
      debug('node %d: automatic backup failed: %s', event.id, (event.error as Error)?.message);
    channels.backup.publish(event);
    store.emit('backup', event);
  };
  return store.onLeader(
    async ({ signal }) => {
      while (!signal.aborted) {
        try {
          const event = await round(store, target, retention);
          if (!signal.aborted) report(event);
        } catch (error) {
          if (!signal.aborted) report({ id: store.node.id, kind: 'error', error });
        }
        await sleep(everyMs, signal);
      }
    },
    { name: 'prevail:auto-backup' },
  );
}

// One round: back up unless nothing changed since the newest backup, then apply retention.
async function round<S>(
  store: AutoBackupHost<S>,
  target: BackupTarget,
  retention: RetentionPolicy | undefined,
): Promise<AutoBackupEvent> {
  const id = store.node.id;
  const existing = (await target.list()).map(parseBackupName).filter((b) => b !== null);
  const newest = existing.reduce<(typeof existing)[number] | null>(
    (a, b) => (!a || b.index > a.index ? b : a),
    null,
  );
  const index = store.status().effects.index;
  if (newest && index <= newest.index) return { id, kind: 'skipped', index, newest: newest.name };
  const backup = await store.backup(target);
  const removed: string[] = [];
  if (retention) {
    const all = [...existing, parseBackupName(backup.name)!];
    for (const b of backupsToDelete(all, retention)) {
      await target.remove(b.name);
      removed.push(b.name);
    }
  }
  return { id, kind: 'taken', backup, removed };
}

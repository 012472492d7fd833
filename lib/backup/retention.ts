// Which backups to delete under a retention policy: a pure function of the backups and the
// policy, with no clock — buckets are counted among the days and weeks that have backups, so a
// node that was down for a week does not lose its older backups to the calendar.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { BACKUP_NAME_RE } from './target.js';

/** A backup as retention sees it. */
export interface BackupInfo {
  name: string;
  /** The applied index it holds: the newest backup is the one with the highest index. */
  index: number;
  /** When it was taken (ms since the epoch); days and weeks are UTC. */
  time: number;
}

export interface RetentionPolicy {
  /** Keep the newest N backups. */
  keepLast?: number;
  /** Keep the newest backup of each of the D most recent days (UTC) that have backups. */
  keepDaily?: number;
  /** Keep the newest backup of each of the W most recent ISO weeks that have backups. */
  keepWeekly?: number;
}

/** A backup file name's index and time; null for a name that is not a backup's. */
export function parseBackupName(name: string): BackupInfo | null {
  const m = BACKUP_NAME_RE.exec(name);
  if (!m) return null;
  const t = m[2]!; // 20261203T062153123Z
  const iso = `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}.${t.slice(15, 18)}Z`;
  const time = Date.parse(iso);
  return Number.isFinite(time) ? { name, index: Number(m[1]), time } : null;
}

/** The UTC day of `time`, as `YYYY-MM-DD`. */
export function dayOf(time: number): string {
  return new Date(time).toISOString().slice(0, 10);
}

/** The ISO-8601 week of `time` (UTC), as `YYYY-Www`: weeks start on Monday; week 1 holds the year's first Thursday. */
export function isoWeekOf(time: number): string {
  const d = new Date(time);
  const day = (d.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  // The Thursday of this week decides the week's year.
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const year = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

function count(policy: RetentionPolicy, key: keyof RetentionPolicy): number {
  const n = policy[key] ?? 0;
  if (!Number.isInteger(n) || n < 0)
    throw new PrevailError(
      ErrorCodes.INVALID_ARGUMENT,
      `retention ${key} must be a whole number ≥ 0, got ${String(n)}`,
    );
  return n;
}

// The newest backup of each of the `n` most recent buckets (newest-first input).
function newestPerBucket(
  newestFirst: BackupInfo[],
  n: number,
  bucket: (time: number) => string,
): BackupInfo[] {
  const seen = new Set<string>();
  const kept: BackupInfo[] = [];
  for (const b of newestFirst) {
    if (seen.size >= n) break;
    const key = bucket(b.time);
    if (seen.has(key)) continue;
    seen.add(key);
    kept.push(b);
  }
  return kept;
}

/**
 * The backups to delete under `policy`: all but the newest `keepLast`, the newest of each of
 * the `keepDaily` most recent days and the newest of each of the `keepWeekly` most recent ISO
 * weeks (a backup kept by one rule counts for the others too). The newest backup is always
 * kept, whatever the policy. Returned oldest first. Applying it again to what is left deletes
 * nothing.
 */
export function backupsToDelete(backups: BackupInfo[], policy: RetentionPolicy): BackupInfo[] {
  const keepLast = count(policy, 'keepLast');
  const keepDaily = count(policy, 'keepDaily');
  const keepWeekly = count(policy, 'keepWeekly');
  const newestFirst = [...backups].sort(
    (a, b) => b.index - a.index || b.time - a.time || (a.name < b.name ? 1 : -1),
  );
  const keep = new Set<BackupInfo>(newestFirst.slice(0, Math.max(1, keepLast)));
  for (const b of newestPerBucket(newestFirst, keepDaily, dayOf)) keep.add(b);
  for (const b of newestPerBucket(newestFirst, keepWeekly, isoWeekOf)) keep.add(b);
  return newestFirst.filter((b) => !keep.has(b)).reverse();
}

/**
 * Parses `last=7,daily=7,weekly=4` (any of the three, in any order) into a policy.
 */
export function parseRetention(text: string): RetentionPolicy {
  const policy: RetentionPolicy = {};
  const keys = { last: 'keepLast', daily: 'keepDaily', weekly: 'keepWeekly' } as const;
  for (const part of text.split(',').map((p) => p.trim())) {
    const m = /^(last|daily|weekly)=(\d+)$/.exec(part);
    if (!m)
      throw new PrevailError(
        ErrorCodes.INVALID_ARGUMENT,
        `retention "${text}": expected last=N,daily=N,weekly=N (any of them), got "${part}"`,
      );
    policy[keys[m[1] as keyof typeof keys]] = Number(m[2]);
  }
  return policy;
}

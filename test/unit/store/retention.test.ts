// The retention policy (lib/backup/retention.ts): examples on a calendar, then properties over
// random backups and policies.
import fc from 'fast-check';

import {
  backupsToDelete,
  isoWeekOf,
  parseBackupName,
  parseRetention,
  type BackupInfo,
} from '../../../lib/backup/retention.js';
import { backupName } from '../../../lib/backup/target.js';
import { ErrorCodes } from '../../../lib/core/errors.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// One backup every `stepMs` from `start`, indexes rising.
function series(start: string, n: number, stepMs: number): BackupInfo[] {
  const t0 = Date.parse(start);
  return Array.from({ length: n }, (_, i) => {
    const time = t0 + i * stepMs;
    return { name: backupName(100 + i, new Date(time)), index: 100 + i, time };
  });
}

const names = (bs: BackupInfo[]) => bs.map((b) => b.name);
const kept = (bs: BackupInfo[], policy: Parameters<typeof backupsToDelete>[1]) => {
  const gone = new Set(names(backupsToDelete(bs, policy)));
  return bs.filter((b) => !gone.has(b.name));
};

test('backup names parse back to their index and time', () => {
  const at = new Date('2026-12-03T06:21:53.123Z');
  expect(parseBackupName(backupName(42, at))).toEqual({
    name: backupName(42, at),
    index: 42,
    time: at.getTime(),
  });
  expect(parseBackupName('notes.txt')).toBeNull();
  expect(parseBackupName('.prevail-backup-0000000000000042-20261203T062153123Z.pvb.tmp-1')).toBe(
    null,
  );
});

test('ISO weeks: Monday starts a week, and the first Thursday decides week 1', () => {
  expect(isoWeekOf(Date.parse('2026-12-03T12:00:00Z'))).toBe('2026-W49'); // a Thursday
  expect(isoWeekOf(Date.parse('2026-11-30T00:00:00Z'))).toBe('2026-W49'); // its Monday
  expect(isoWeekOf(Date.parse('2026-11-29T23:59:59Z'))).toBe('2026-W48'); // the Sunday before
  expect(isoWeekOf(Date.parse('2021-01-03T12:00:00Z'))).toBe('2020-W53');
  expect(isoWeekOf(Date.parse('2024-12-30T12:00:00Z'))).toBe('2025-W01');
});

test('hourly backups over three weeks: the last 3, one a day for 4 days, one a week for 3 weeks', () => {
  // 2026-11-09 is a Monday; 21 days of hourly backups, the last on Sunday 2026-11-29 23:00.
  const all = series('2026-11-09T00:00:00Z', 21 * 24, HOUR);
  const left = kept(all, { keepLast: 3, keepDaily: 4, keepWeekly: 3 });
  expect(left.map((b) => new Date(b.time).toISOString())).toEqual([
    '2026-11-15T23:00:00.000Z', // newest of week 46
    '2026-11-22T23:00:00.000Z', // newest of week 47
    '2026-11-26T23:00:00.000Z', // newest of the 4th most recent day
    '2026-11-27T23:00:00.000Z',
    '2026-11-28T23:00:00.000Z',
    '2026-11-29T21:00:00.000Z', // the last 3 (the newest also of its day and week)
    '2026-11-29T22:00:00.000Z',
    '2026-11-29T23:00:00.000Z',
  ]);
  // Deleted oldest first.
  const gone = backupsToDelete(all, { keepLast: 3, keepDaily: 4, keepWeekly: 3 });
  expect(gone[0]!.index).toBe(100);
  expect(gone.length).toBe(all.length - left.length);
});

test('days are counted among the days that have backups, not by the calendar', () => {
  // One backup a week for five weeks: keepDaily 3 keeps the three newest days, weeks apart.
  const all = series('2026-10-01T08:00:00Z', 5, 7 * DAY);
  expect(names(kept(all, { keepDaily: 3 }))).toEqual(names(all.slice(2)));
});

test('the newest backup is kept whatever the policy', () => {
  const all = series('2026-10-01T08:00:00Z', 4, HOUR);
  expect(names(kept(all, {}))).toEqual([all[3]!.name]);
  expect(backupsToDelete([], { keepLast: 2 })).toEqual([]);
});

test('a policy count that is not a whole number ≥ 0 is INVALID_ARGUMENT', () => {
  for (const keepLast of [-1, 1.5, NaN])
    expect(() => backupsToDelete([], { keepLast })).toThrow(
      expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
    );
});

test('parseRetention reads last=N,daily=N,weekly=N', () => {
  expect(parseRetention('last=7,daily=7,weekly=4')).toEqual({
    keepLast: 7,
    keepDaily: 7,
    keepWeekly: 4,
  });
  expect(parseRetention('weekly=2')).toEqual({ keepWeekly: 2 });
  for (const bad of ['', 'last=', 'monthly=3', 'last=7;daily=2', 'last=-1'])
    expect(() => parseRetention(bad)).toThrow(
      expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
    );
});

// Random backups: rising indexes, times in rising random steps (minutes to days).
const arbBackups = fc
  .array(fc.integer({ min: 1, max: 3 * DAY }), { maxLength: 60 })
  .map((steps) => {
    let time = Date.parse('2026-01-01T00:00:00Z');
    return steps.map((s, i) => {
      time += s;
      return { name: backupName(i + 1, new Date(time)), index: i + 1, time };
    });
  });
const arbPolicy = fc.record(
  {
    keepLast: fc.integer({ min: 0, max: 10 }),
    keepDaily: fc.integer({ min: 0, max: 10 }),
    keepWeekly: fc.integer({ min: 0, max: 6 }),
  },
  { requiredKeys: [] },
);

test('properties: deletes only given backups, keeps the newest N and at most N+D+W, idempotent', () => {
  fc.assert(
    fc.property(arbBackups, arbPolicy, (all, policy) => {
      const gone = backupsToDelete(all, policy);
      const left = all.filter((b) => !gone.includes(b));
      expect(gone.every((b) => all.includes(b))).toBe(true);
      expect(new Set(gone).size).toBe(gone.length);
      if (all.length) expect(left).toContain(all[all.length - 1]);
      const n = policy.keepLast ?? 0;
      for (const b of all.slice(-n || all.length)) if (n) expect(left).toContain(b);
      const bound = Math.max(1, n) + (policy.keepDaily ?? 0) + (policy.keepWeekly ?? 0);
      expect(left.length).toBeLessThanOrEqual(Math.min(all.length, bound));
      // Every day among the D most recent with backups still has its newest backup.
      const days = [...new Set(all.map((b) => new Date(b.time).toISOString().slice(0, 10)))];
      for (const day of days.slice(-(policy.keepDaily ?? 0) || days.length)) {
        if (!policy.keepDaily) break;
        const newest = all.filter((b) => new Date(b.time).toISOString().startsWith(day)).pop();
        expect(left).toContain(newest);
      }
      expect(backupsToDelete(left, policy)).toEqual([]);
    }),
    { numRuns: 300 },
  );
});

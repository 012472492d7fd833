// Scheduled commands in the replicated state: the requests that change them (checked where
// they are made, and again where a peer forwards them), and what applying them does.
import { ErrorCodes, PrevailError } from '../core/errors.js';
import { freezeDeep } from '../plain-data.js';
import type { Schedule } from '../jobs.js';

/** What a `schedule` entry carries. */
export interface ScheduleData {
  id?: string;
  name: string;
  args: unknown;
  at: number;
  every?: number;
}
/** What a `fire` entry carries: the schedule and the due time it fires for. */
export interface FireData {
  id: string;
  due: number;
}

const invalid = (message: string) => new PrevailError(ErrorCodes.INVALID_ARGUMENT, message);

/** The data of a `schedule` entry, checked (the command name is the caller's to check). */
export function scheduleData(
  name: string,
  args: unknown,
  at: number | Date,
  options: { every?: number; id?: string },
): ScheduleData {
  const due = at instanceof Date ? at.getTime() : at;
  if (typeof due !== 'number' || !Number.isFinite(due))
    throw invalid('at must be a time in ms or a Date');
  const { every, id } = options;
  if (every !== undefined && (typeof every !== 'number' || !Number.isFinite(every) || every < 1)) {
    throw invalid('every must be a period in ms (≥ 1)');
  }
  if (id !== undefined && (typeof id !== 'string' || id === ''))
    throw invalid('id must be a non-empty string');
  return { id, name, args, at: due, every };
}

/**
 * Checks the data of a system request a peer forwarded: only the kinds a follower forwards
 * (its schedule(), unschedule(), a scheduler that lost the lead), each in the shape this
 * code proposes. Anything else is refused before it reaches the log.
 */
export function checkForwardedSystem(kind: unknown, data: unknown): void {
  const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const isId = (v: unknown) => typeof v === 'string' && v !== '';
  if (kind === 'schedule') {
    if (typeof d.name !== 'string') throw invalid('a forwarded schedule needs a command name');
    scheduleData(
      d.name,
      d.args,
      d.at as number,
      { every: d.every ?? undefined, id: d.id ?? undefined } as { every?: number; id?: string },
    );
  } else if (kind === 'unschedule') {
    if (!isId(d.id)) throw invalid('a forwarded unschedule needs a schedule id');
  } else if (kind === 'fire') {
    if (!isId(d.id) || typeof d.due !== 'number')
      throw invalid('a forwarded fire needs a schedule id and a due time');
  } else if (kind === 'activate') {
    if (!Number.isSafeInteger(d.version) || (d.version as number) < 1)
      throw invalid('a forwarded activation needs a schema version');
  } else {
    throw invalid(`peers can't forward store entries of kind ${JSON.stringify(kind)}`);
  }
}

/** Adds (or replaces) a schedule; its id is the one given or one made from the entry's index. */
export function addSchedule(
  schedules: Map<string, Schedule>,
  data: ScheduleData,
  index: number,
): string {
  const id: string = data.id ?? `s${index.toString(36)}`;
  // Frozen: every firing hands the handler these same args, and schedules() shows them.
  const s: Schedule = { id, name: data.name, args: freezeDeep(data.args), at: data.at };
  if (data.every !== undefined && data.every !== null) s.every = data.every;
  schedules.set(id, s);
  return id;
}

/**
 * The schedule a fire entry fires, moved on to its next due time (or removed); undefined
 * when it is no longer due at that time. Exactly once per due time: a fire proposed twice
 * (two leaders, a retry) finds the schedule already moved on, and does nothing.
 */
export function takeDue(
  schedules: Map<string, Schedule>,
  data: FireData,
  now: number,
): Schedule | undefined {
  const s = schedules.get(data.id);
  if (!s || s.at !== data.due) return undefined;
  if (s.every) {
    // Recurring: the next due time after this entry's timestamp (missed periods are skipped).
    const behind = Math.max(0, now - s.at);
    s.at += s.every * (Math.floor(behind / s.every) + 1);
  } else {
    schedules.delete(s.id);
  }
  return s;
}

/** The schedules, soonest first, as copies. */
export function sortedSchedules(schedules: Map<string, Schedule>): Schedule[] {
  return [...schedules.values()]
    .map((s) => ({ ...s }))
    .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
}

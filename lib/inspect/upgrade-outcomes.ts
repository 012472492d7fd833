// upgrade-check's tally of handler outcomes: the new code's errors, and (with --old) the
// entries whose outcome differs from the old code's. A handler refusing a bad request is
// normal, so with the old code at hand only differences are reported.
import type { Outcome, UpgradeCheckResult } from './upgrade-results.js';

type HandlerErrors = UpgradeCheckResult['handlerErrors'][number];
type Changed = NonNullable<UpgradeCheckResult['changedOutcomes']>[number];

export interface Tally {
  errors: Map<string, HandlerErrors>;
  changed: Map<string, Changed>;
}

type Applied = { result?: unknown; error?: unknown };

export function outcomeOf(o: Applied): Outcome {
  if (!('error' in o)) return { ok: true };
  const err = o.error as { code?: unknown; message?: unknown } | null;
  return {
    ok: false,
    code: typeof err?.code === 'string' ? err.code : null,
    message: String(err?.message ?? err),
  };
}

/** Counts the new code's handler error, if the entry had one. */
export function groupHandlerErrors(tally: Tally, command: string, index: number, o: Applied): void {
  const outcome = outcomeOf(o);
  if (outcome.ok) return;
  const key = `${command}\0${outcome.code}`;
  const seen = tally.errors.get(key);
  if (seen) seen.count++;
  else
    tally.errors.set(key, {
      command,
      code: outcome.code ?? null,
      count: 1,
      firstIndex: index,
      message: outcome.message!,
    });
}

/** Counts a difference between the old and the new outcome: error vs result, or the error's code. */
export function compareOutcomes(
  tally: Tally,
  command: string,
  index: number,
  oldApplied: Applied,
  newApplied: Applied,
): void {
  const before = outcomeOf(oldApplied);
  const after = outcomeOf(newApplied);
  if (before.ok === after.ok && (before.ok || before.code === after.code)) return;
  if (!after.ok) groupHandlerErrors(tally, command, index, newApplied);
  const key = `${command}\0${before.ok ? 'ok' : before.code}\0${after.ok ? 'ok' : after.code}`;
  const seen = tally.changed.get(key);
  if (seen) seen.count++;
  else tally.changed.set(key, { command, count: 1, firstIndex: index, old: before, new: after });
}

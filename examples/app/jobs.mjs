// Background work, on the leader only: a recurring schedule that closes stale issues, and a
// job that records a digest of the counts.
/**
 * Open issues untouched for `staleAfterMs` are closed by a recurring scheduled command (checked
 * every `staleCheckEveryMs`); a digest of the counts is recorded every `digestEveryMs`.
 */
export function startLeaderWork(store, { staleAfterMs, staleCheckEveryMs, digestEveryMs }) {
  // The schedule lives in the replicated state; whichever node leads makes sure it exists
  // (once per leadership), and the store's scheduler proposes it when due, exactly once.
  store.onLeader(async function keepStaleSchedule() {
    const current = store.schedules().find((s) => s.id === 'close-stale');
    if (current?.every === staleCheckEveryMs && current.args?.olderThanMs === staleAfterMs) return;
    await store.schedule(
      'closeStale',
      { olderThanMs: staleAfterMs },
      Date.now() + staleCheckEveryMs,
      { every: staleCheckEveryMs, id: 'close-stale' },
    );
  });
  // A job: runs while this node leads, stops the moment it doesn't; state only through commands.
  store.onLeader(async function digest({ signal }) {
    while (!signal.aborted) {
      await store.propose('recordDigest', {}, { signal });
      await sleep(digestEveryMs, signal);
    }
  });
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

// `prevail inspect`: the offline reader of data dirs (inspect.ts), its results (results.ts),
// the file readers it is built on (readers.ts) and its command line (cli.ts).
export * from './results.js';
export { inspectDataDir } from './inspect.js';
export { runInspect, type RunInspectOptions, type Sink } from './cli.js';
export { upgradeCheck, type UpgradeCheckOptions } from './upgrade-check.js';
export type { UpgradeCheckResult, RecordedHash, Outcome } from './upgrade-results.js';
export { runUpgradeCheck } from './upgrade-cli.js';

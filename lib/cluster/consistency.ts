// The read consistency levels (ReadOptions.consistency) and the one check of a level given.
import { invalid } from '../core/errors.js';

export type Consistency = 'linearizable' | 'lease' | 'stale';

/** The level asked for (absent: linearizable), or PREVAIL_INVALID_ARGUMENT. */
export function checkConsistency(value: unknown): Consistency {
  const level = value ?? 'linearizable';
  if (level !== 'linearizable' && level !== 'lease' && level !== 'stale') {
    throw invalid(`consistency must be linearizable, lease or stale, got ${JSON.stringify(level)}`);
  }
  return level;
}

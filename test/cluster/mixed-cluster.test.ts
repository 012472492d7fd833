// scripts/mixed-cluster.mjs with this checkout as both builds: it must PASS, so that the tool
// that checks old and new builds against each other (docs/internals.md, comparing two builds)
// is known to work before it is trusted to find an incompatibility. It also catches a change
// to the CLI or the HTTP API that the script relies on. The script bounds itself and kills
// its nodes by pid; runScript kills the script by pid if it overruns.
import { join } from 'node:path';

import { runScript } from '../helpers/run-script.js';

const BOUND_MS = 240_000;

test(
  'a mixed cluster of this build with itself passes',
  async () => {
    const here = process.cwd();
    const { code, output } = await runScript(
      [join(here, 'scripts', 'mixed-cluster.mjs'), '--old', here, '--new', here],
      BOUND_MS,
      15_000,
    );
    if (code !== 0) console.log(`mixed-cluster exited ${code}\n${output}`);
    expect(code).toBe(0);
    expect(output).toMatch(/PASS: \d+ writes/);
    // Both directions of catch-up by snapshot happened in each of the two mixed setups.
    expect(output.match(/caught up to \d+ by the snapshot/g)).toHaveLength(4);
  },
  BOUND_MS + 30_000,
);

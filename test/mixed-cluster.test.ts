// scripts/mixed-cluster.mjs with this checkout as both builds: it must PASS, so that the tool
// that checks old and new builds against each other (docs/internals.md, comparing two builds)
// is known to work before it is trusted to find an incompatibility. It also catches a change
// to the CLI or the HTTP API that the script relies on. The script bounds itself and kills
// its nodes by pid; this test kills the script by pid if it overruns.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const BOUND_MS = 240_000;

test('a mixed cluster of this build with itself passes', async () => {
  const here = process.cwd();
  const child = spawn(process.execPath, [join(here, 'scripts', 'mixed-cluster.mjs'), '--old', here, '--new', here],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
  const code = await new Promise<number | string | null>((resolve) => {
    // SIGTERM first: the script kills its nodes and exits; SIGKILL if it doesn't.
    const term = setTimeout(() => { if (child.pid) process.kill(child.pid, 'SIGTERM'); }, BOUND_MS);
    const kill = setTimeout(() => { if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL'); }, BOUND_MS + 15_000);
    child.once('exit', (c, signal) => { clearTimeout(term); clearTimeout(kill); resolve(c ?? signal); });
  });
  if (code !== 0) console.log(`mixed-cluster exited ${code}\n${output}`);
  expect(code).toBe(0);
  expect(output).toMatch(/PASS: \d+ writes/);
  // Both directions of catch-up by snapshot happened in each of the two mixed setups.
  expect(output.match(/caught up to \d+ by the snapshot/g)).toHaveLength(4);
}, BOUND_MS + 30_000);

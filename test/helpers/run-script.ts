// Runs a node script that bounds itself (a harness, a tool) as a child process, collecting its
// output, and kills it by pid if it overruns anyway: SIGTERM at `boundMs` (it cleans up its own
// children and exits), SIGKILL `graceMs` later.
import { spawn } from 'node:child_process';

export interface ScriptRun {
  /** The exit code, or the signal that ended it. */
  code: number | string | null;
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
}

export async function runScript(
  args: string[],
  boundMs: number,
  graceMs: number,
): Promise<ScriptRun> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const code = await new Promise<number | string | null>((resolve) => {
    const term = setTimeout(() => {
      if (child.pid) process.kill(child.pid, 'SIGTERM');
    }, boundMs);
    const kill = setTimeout(() => {
      if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }, boundMs + graceMs);
    child.once('exit', (c, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve(c ?? signal);
    });
  });
  return { code, output };
}

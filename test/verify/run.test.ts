// The harness's short schedule (issue 5), as CI runs it: `node dist/verify/run.js --ci` — 3 nodes,
// 90 s of clients and nemeses (kill, pause, partition when namespaces are available, membership,
// snapshot), then healing, final reads and the checks; about two minutes in all. It must PASS with
// no lost acknowledged writes. The harness bounds itself (every wait, the whole run) and kills
// its children by pid; this test kills the harness by pid if it overruns.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { runScript } from '../helpers/run-script.js';

const BOUND_MS = 150_000;

test(
  'npm run verify -- --ci passes',
  async () => {
    const out = mkdtempSync(join(tmpdir(), 'prevail-verify-ci-'));
    try {
      // SIGTERM first: the harness cleans up (nodes, namespaces) and exits; SIGKILL if it doesn't.
      const { code, output } = await runScript(
        [join(process.cwd(), 'dist', 'verify', 'run.js'), '--ci', '--out', out],
        BOUND_MS,
        25_000,
      );
      let report = '';
      try {
        report = readFileSync(join(out, 'report.txt'), 'utf8');
      } catch {
        /* none written */
      }
      if (code !== 0) console.log(`verify --ci exited ${code}\n${output}\n${report}`);
      expect(code).toBe(0);
      expect(report).toMatch(/^VERDICT: PASS/);
      expect(report).toContain('lost acknowledged writes: 0');
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
        pass: boolean;
      };
      expect(summary.pass).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
  BOUND_MS + 40_000,
);

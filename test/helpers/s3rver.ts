// A real S3-compatible server for tests: s3rver (a devDependency) as its own child process on
// 127.0.0.1, storing into a temp dir, with one bucket made at start. Its fixed credentials are
// S3RVER / S3RVER.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { freePorts, tempDir, waitFor } from './cluster.js';

const require = createRequire(import.meta.url);

export class S3Server {
  private constructor(
    readonly child: ChildProcess,
    readonly endpoint: string,
    readonly dir: string,
    readonly bucket: string,
  ) {}

  readonly credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

  static async start(bucket = 'prevail-backups'): Promise<S3Server> {
    const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
    const dir = tempDir('prevail-s3rver-');
    const [port] = await freePorts(1);
    const args = [bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '-s'];
    const child = spawn(process.execPath, [...args, '--configure-bucket', bucket], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const endpoint = `http://127.0.0.1:${port}`;
    const server = new S3Server(child, endpoint, dir, bucket);
    try {
      // Up once it answers HTTP at all (the answer to an unsigned request is an error page).
      await waitFor(
        `s3rver on ${endpoint}`,
        async () => {
          if (child.exitCode !== null) throw new Error(`s3rver exited: ${stderr}`);
          return (await fetch(`${endpoint}/${bucket}`).catch(() => null)) ? true : undefined;
        },
        30_000,
        100,
      );
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Kills the server (bounded wait) and removes its data. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGKILL');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Lists the engine's C sources for binding.gyp: every src/*.c of the unpacked engine
// except its in-memory test fixture. (The tarball's amalgamation.json is stale: it
// misses trail.c, random.c and recv_timeout_now.c.) If the engine is not unpacked yet,
// fetch it first, so any node-gyp build (npm install's source fallback included) works.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'third_party', 'raft', 'src');
if (!existsSync(join(root, 'third_party', 'raft', '.prevail-engine-0.22.1-p8'))) {
  // gyp reads our stdout as the source list: send the fetch's output to stderr.
  execFileSync('bash', [join(root, 'scripts', 'fetch-engine.sh')], { stdio: ['ignore', 2, 2] });
}
console.log(
  readdirSync(src)
    .filter((f) => f.endsWith('.c') && f !== 'fixture.c')
    .sort()
    .map((f) => `third_party/raft/src/${f}`)
    .join(' '),
);

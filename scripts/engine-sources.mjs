// Lists the engine's C sources for binding.gyp: every src/*.c of the unpacked engine
// except its in-memory test fixture. (The tarball's amalgamation.json is stale: it
// misses trail.c, random.c and recv_timeout_now.c.)
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let files;
try {
  files = readdirSync(join(root, 'third_party', 'raft', 'src'));
} catch (err) {
  console.error(`engine sources not found (${err.message}); run scripts/fetch-engine.sh first`);
  process.exit(1);
}
console.log(files.filter((f) => f.endsWith('.c') && f !== 'fixture.c').sort()
  .map((f) => `third_party/raft/src/${f}`).join(' '));

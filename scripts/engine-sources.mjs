// Lists the engine's C sources for binding.gyp, from the manifest shipped in the
// engine's own tarball (amalgamation.json), minus its in-memory test fixture.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const manifest = join(root, 'third_party', 'raft', 'amalgamation.json');
let sources;
try {
  sources = JSON.parse(readFileSync(manifest, 'utf8')).sources;
} catch (err) {
  console.error(`engine sources not found (${err.message}); run scripts/fetch-engine.sh first`);
  process.exit(1);
}
console.log(sources.filter((s) => s.endsWith('.c') && !s.endsWith('/fixture.c'))
  .map((s) => `third_party/raft/${s}`).join(' '));

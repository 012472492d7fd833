// scripts/release.sh --check's last step: in a project that installed the release tarball
// (argv[2]), `import` and `require` prevail, each opening a store, writing, closing, reopening
// and reading the write back, and check that the addon came from the package's prebuilds/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const project = process.argv[2];
const body = (load) => `
${load}
const schema = defineSchema({
  collections: { notes: collection()() },
  commands: { write: (s, { text }) => s.notes.insert({ text }) },
});
async function main(dataDir) {
  let store = await open({ schema, dataDir });
  const note = await store.propose('write', { text: 'released' });
  await store.close();
  store = await open({ schema, dataDir });
  const back = store.view.notes.get(note.id);
  await store.close();
  if (back?.text !== 'released') throw new Error('the reopened store lost the write');
  const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
  const addon = maps.split('\\n').map((l) => l.split(/\\s+/)[5]).find((p) => p && p.endsWith('.node') && p.includes('/prevail/'));
  console.log(JSON.stringify({ addon, raft: versions.raft }));
}
main(process.argv[2]).catch((err) => { console.error(err); process.exit(1); });
`;
const scripts = {
  'esm.mjs': body(
    `import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\nconst { open, defineSchema, collection, versions } = await import('prevail');`,
  ),
  'cjs.cjs': body(`const { open, defineSchema, collection, versions } = require('prevail');`),
};
const data = mkdtempSync(join(project, 'data-'));
try {
  for (const [file, text] of Object.entries(scripts)) {
    writeFileSync(join(project, file), text);
    const out = execFileSync(process.execPath, [file, join(data, file)], { cwd: project });
    const { addon, raft } = JSON.parse(out.toString());
    const expected = join(
      project,
      'node_modules/prevail/prebuilds',
      `${process.platform}-${process.arch}`,
    );
    if (!addon?.startsWith(expected))
      throw new Error(`${file} loaded the addon from ${addon}, not from ${expected}`);
    console.log(`release: ${file}: opened, wrote, reopened a store (raft ${raft}, addon ${addon})`);
  }
} finally {
  rmSync(data, { recursive: true, force: true });
}

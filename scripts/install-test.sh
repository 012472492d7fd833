#!/usr/bin/env bash
# The install test: what a user on Linux gets from `npm install prevail`.
#
#  1. the prebuilt addon for this platform (built by scripts/prebuild.sh if missing);
#  2. `npm pack`; publint and arethetypeswrong (attw) on the tarball, and its file list
#     checked against what may ship (dist, prebuilds, the source-build fallback, licences);
#  3. a new empty project in a temp dir installs the tarball with a PATH holding only
#     node, npm and a shell: no cc, c++, make or python, and no raft headers anywhere,
#     so a source build cannot happen and a missing prebuild fails the install;
#  4. `import` and `require` each open a single-node store, commit, close, reopen and read
#     the write back, from the prebuild; the time to first import/require is printed;
#     the README's example runs as printed, and so does `npx prevail --help`.
#
# `npm run test:install` packs the checkout; `bash scripts/install-test.sh TARBALL` tests a given
# tarball instead (scripts/release.sh --check; .ci/run, after the test suite). KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)

plat=$(node -p 'process.platform + "-" + process.arch')
if ! ls "prebuilds/$plat"/*.node >/dev/null 2>&1; then
  bash scripts/prebuild.sh
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/prevail-install-test.XXXXXX")
cleanup() { if [[ -n ${KEEP:-} ]]; then echo "install-test: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# ---- pack (or take the tarball given: scripts/release.sh's) -------------------------------
if [[ $# -gt 0 ]]; then
  tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
  # prepack builds dist/ (ESM, CommonJS, declarations) first.
  tarball=$work/$(npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n1)
fi
[[ -f $tarball ]] || { echo "install-test: no tarball ($tarball)" >&2; exit 1; }
npx --no-install publint run --strict "$tarball"
# Are the types right for every resolution mode (node10, node16 from CJS and from ESM, bundler)?
npx --no-install attw --format ascii --no-emoji "$tarball" | grep -v '^$'

files=$(tar -tzf "$tarball" | sed 's|^package/||' | sort)
allowed='^(package\.json|README\.md|LICENSE|NOTICE|licenses/raft/(LICENSE|GPL-3\.0)|dist/(cjs/)?([a-z0-9-]+/)*[a-z0-9-]+\.(js|d\.ts)|dist/cjs/package\.json|prebuilds/[a-z0-9]+-[a-z0-9]+/prevail(\.[a-z]+)?\.node|binding\.gyp|native/[a-z_]+\.(cc|c|h|map)|scripts/(fetch-engine\.sh|engine-sources\.mjs))$'
unexpected=$(grep -v -E "$allowed" <<<"$files" || true)
if [[ -n $unexpected ]]; then
  echo "install-test: the tarball holds files it should not:" >&2
  echo "$unexpected" >&2
  exit 1
fi
for must in package.json README.md LICENSE NOTICE licenses/raft/LICENSE licenses/raft/GPL-3.0 \
            dist/index.js dist/index.d.ts dist/cjs/index.js dist/cjs/index.d.ts dist/cjs/package.json \
            dist/cli.js "prebuilds/$plat/prevail.node"; do
  grep -q -x -F "$must" <<<"$files" || { echo "install-test: the tarball lacks $must" >&2; exit 1; }
done
echo "install-test: $(basename "$tarball"): $(stat -c %s "$tarball") bytes packed, $(wc -l <<<"$files") files"
tar -tzvf "$tarball" | awk '{ printf "  %9d  %s\n", $3, $6 }' | sed 's|package/||'

# ---- a machine with no toolchain -------------------------------------------------------
# PATH: only node, npm/npx and a shell. node-gyp-build would fall back to node-gyp here,
# which needs python, make and a C++ compiler: none can be found.
bin=$work/bin
mkdir -p "$bin"
node_bin=$(command -v node)
npm_cli=$(node -p 'require("path").join(require("path").dirname(process.execPath), "../lib/node_modules/npm/bin")' )
[[ -f $npm_cli/npm-cli.js ]] || npm_cli=$(dirname "$(readlink -f "$(command -v npm)")")
ln -s "$node_bin" "$bin/node"
printf '#!/bin/sh\nexec "%s" "%s/npm-cli.js" "$@"\n' "$node_bin" "$npm_cli" >"$bin/npm"
printf '#!/bin/sh\nexec "%s" "%s/npx-cli.js" "$@"\n' "$node_bin" "$npm_cli" >"$bin/npx"
chmod +x "$bin/npm" "$bin/npx"
ln -s "$(command -v sh)" "$bin/sh"
for tool in cc c++ gcc g++ clang make gmake python python3 node-gyp; do
  if PATH=$bin command -v "$tool" >/dev/null 2>&1; then
    echo "install-test: $tool is on the restricted PATH" >&2; exit 1
  fi
done
for dir in /usr/include /usr/local/include; do
  [[ ! -e $dir/raft.h ]] || { echo "install-test: $dir/raft.h is visible: remove the engine headers for this test" >&2; exit 1; }
done
clean_env=(env -i "PATH=$bin" "HOME=${HOME:-$work}" "TMPDIR=$work" "npm_config_cache=$(npm config get cache)"
           "npm_config_update_notifier=false" "npm_config_fund=false" "npm_config_audit=false")

app=$work/app
mkdir -p "$app"
cat >"$app/package.json" <<'JSON'
{ "name": "first-five-minutes", "private": true, "version": "1.0.0" }
JSON

# ---- install ------------------------------------------------------------------------------
t0=$(date +%s%N)
(cd "$app" && "${clean_env[@]}" npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball")
install_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
installed=$app/node_modules/prevail
[[ ! -e $installed/build ]] || { echo "install-test: the install built the addon from source ($installed/build exists)" >&2; exit 1; }
[[ ! -e $installed/third_party ]] || { echo "install-test: the install fetched the engine's source" >&2; exit 1; }
echo "install-test: npm install of the tarball: ${install_ms} ms (no compiler, no engine source)"

# ---- first five minutes: import and require -------------------------------------------
cat >"$app/esm.mjs" <<'JS'
const t0 = performance.now();
const { open, defineSchema, collection, versions } = await import('prevail');
const loaded = performance.now();
const schema = defineSchema({
  collections: { notes: collection()() },
  commands: { write: (s, { text }) => s.notes.insert({ text }) },
});
const dataDir = process.argv[2];
let store = await open({ schema, dataDir });
const note = await store.propose('write', { text: 'hello from import' });
await store.close();
store = await open({ schema, dataDir });
const back = store.view.notes.get(note.id);
await store.close();
if (back?.text !== 'hello from import') throw new Error(`reopened store lost the write: ${JSON.stringify(back)}`);
const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
const addon = maps.split('\n').map((l) => l.split(/\s+/)[5]).find((p) => p && /\/prevail(\.[a-z]+)?\.node$/.test(p));
console.log(JSON.stringify({ style: 'import', firstImportMs: +(loaded - t0).toFixed(1),
  processStartToLoadedMs: +loaded.toFixed(1), totalMs: +performance.now().toFixed(1), raft: versions.raft, addon }));
JS
cat >"$app/cjs.cjs" <<'JS'
const t0 = performance.now();
const { open, defineSchema, collection, versions } = require('prevail');
const loaded = performance.now();
const schema = defineSchema({
  collections: { notes: collection()() },
  commands: { write: (s, { text }) => s.notes.insert({ text }) },
});
async function main(dataDir) {
  let store = await open({ schema, dataDir });
  const note = await store.propose('write', { text: 'hello from require' });
  await store.close();
  store = await open({ schema, dataDir });
  const back = store.view.notes.get(note.id);
  await store.close();
  if (back?.text !== 'hello from require') throw new Error(`reopened store lost the write: ${JSON.stringify(back)}`);
  const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
  const addon = maps.split('\n').map((l) => l.split(/\s+/)[5]).find((p) => p && /\/prevail(\.[a-z]+)?\.node$/.test(p));
  console.log(JSON.stringify({ style: 'require', firstRequireMs: +(loaded - t0).toFixed(1),
    processStartToLoadedMs: +loaded.toFixed(1), totalMs: +performance.now().toFixed(1), raft: versions.raft, addon }));
}
main(process.argv[2]).catch((err) => { console.error(err); process.exit(1); });
JS

for script in esm.mjs cjs.cjs; do
  out=$(cd "$app" && "${clean_env[@]}" node "$script" "$work/data-$script")
  echo "install-test: $out"
  grep -q "\"addon\":\"$installed/prebuilds/$plat/prevail" <<<"$out" ||
    { echo "install-test: $script did not load the addon from $installed/prebuilds/$plat" >&2; exit 1; }
done
# The README's example, as printed there.
awk '/install-test.sh runs this block/ { on = 1; next } on && /^```js/ { inside = 1; next } inside && /^```/ { exit } inside' \
  "$root/README.md" >"$app/readme-example.mjs"
[[ -s $app/readme-example.mjs ]] || { echo "install-test: found no example block in README.md" >&2; exit 1; }
out=$(cd "$app" && "${clean_env[@]}" node readme-example.mjs)
grep -q "title: 'ship it'" <<<"$out" && grep -q 'done: true' <<<"$out" ||
  { echo "install-test: the README example printed something else:" >&2; echo "$out" >&2; exit 1; }
echo "install-test: the README example runs ($(wc -l <"$app/readme-example.mjs") lines)"
# The command-line tool is there too.
(cd "$app" && "${clean_env[@]}" npx --no-install prevail --help >/dev/null 2>&1) ||
  { echo "install-test: npx prevail --help failed" >&2; exit 1; }

echo "install-test: ok in $(( $(date +%s) - started )) s"

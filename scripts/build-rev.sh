#!/usr/bin/env bash
# Builds prevail as it was at a git revision into a directory of its own, for comparing
# builds side by side (scripts/mixed-cluster.mjs, bench/compare.sh).
#
#   scripts/build-rev.sh <rev> <dir>
#
# The tree comes from `git archive` (no worktree is registered in the repository). To save
# work, it reuses this checkout's pieces when they fit the revision:
# - the engine: third_party/raft is copied when it carries the stamp the revision's
#   scripts/fetch-engine.sh expects (same engine version and patch level); otherwise the
#   revision's own script unpacks it, from the tarball already downloaded here if any;
# - node_modules: copied when package-lock.json is identical, else `npm ci --ignore-scripts`.
# Then the addon (node-gyp) and the TypeScript output (npm run build:ts).
# Idempotent: <dir>/.prevail-build-rev holds the full commit id, written last; a directory
# that already holds this revision's build is left as it is.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: scripts/build-rev.sh <rev> <dir>" >&2
  exit 2
fi
rev=$1
dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "build-rev: no such revision: $rev" >&2; exit 2; }
marker=$dir/.prevail-build-rev
if [[ -f $marker && $(cat "$marker") == "$commit" ]]; then
  echo "build-rev: $dir already holds the build of ${commit:0:7}"
  exit 0
fi
# Anything else in the directory is a different or unfinished build: start again.
if [[ -e $dir ]]; then
  [[ -d $dir && ( -f $dir/package.json || -z $(ls -A "$dir") ) ]] \
    || { echo "build-rev: $dir exists and is not a prevail build; refusing to overwrite it" >&2; exit 1; }
  rm -rf "$dir"
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
echo "build-rev: ${commit:0:7} into $dir"
git archive --format=tar "$commit" | tar -x -C "$dir"

# ---- the engine ------------------------------------------------------------------------
# The stamp file name the revision's fetch-engine.sh checks, e.g. .prevail-engine-0.22.1-p3.
fetch=$dir/scripts/fetch-engine.sh
version=$(sed -n 's/^RAFT_VERSION=\(.*\)$/\1/p' "$fetch")
stamp=$(sed -n 's/^stamp=\$dest\/\(.*\)$/\1/p' "$fetch")
stamp=${stamp//\$RAFT_VERSION/$version}
if [[ -n $stamp && -f $root/third_party/raft/$stamp ]]; then
  echo "build-rev: engine $stamp: copied from this checkout"
  mkdir -p "$dir/third_party"
  cp -a "$root/third_party/raft" "$dir/third_party/raft"
else
  tarball=$root/third_party/cache/raft_${version}.orig.tar.gz
  echo "build-rev: engine ${stamp:-?} differs from this checkout's: unpacking it with the revision's own script"
  if [[ -f $tarball ]]; then
    RAFT_TARBALL=$tarball bash "$fetch"
  else
    bash "$fetch"
  fi
fi

# ---- dependencies, addon, TypeScript ---------------------------------------------------
if cmp -s "$root/package-lock.json" "$dir/package-lock.json" && [[ -d $root/node_modules ]]; then
  echo "build-rev: node_modules copied (same package-lock.json)"
  cp -a "$root/node_modules" "$dir/node_modules"
else
  echo "build-rev: npm ci (package-lock.json differs)"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund)
fi
# node-gyp must use the installed Node headers (no download), as scripts/setup.sh says.
if [[ -z ${npm_config_nodedir:-} && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr
fi
(cd "$dir" && npx node-gyp rebuild -j 2 >"$dir/.build-addon.log" 2>&1) \
  || { tail -n 30 "$dir/.build-addon.log" >&2; echo "build-rev: addon build failed (log: $dir/.build-addon.log)" >&2; exit 1; }
(cd "$dir" && npm run --silent build:ts)

echo "$commit" > "$marker"
echo "build-rev: ${commit:0:7} built in $dir"

#!/usr/bin/env bash
# Makes a release tarball: prevail-<version>.tgz (npm pack) holding the prebuilt addon for
# this machine's platform and architecture, so that
#
#   npm install ./prevail-<version>.tgz
#
# works on a machine of the same platform without a compiler (node-gyp-build finds
# prebuilds/<platform>-<arch>/prevail.node; there is no build/ in an installed package).
#
#   bash scripts/release.sh [--out DIR] [--check]
#
#   --out DIR   where the tarball goes (default: release/, git-ignored as *.tgz)
#   --check     then run scripts/install-test.sh on it: installed into an empty project with no
#               compiler on PATH, `import` and `require` open, write, close and reopen a store.
#
# The prebuild is made (scripts/prebuild.sh, which needs the source build's tools) when
# prebuilds/<platform>-<arch>/ has none, or when native/ or binding.gyp changed after it was
# made. To ship more platforms, copy their prebuilds/<platform>-<arch>/ (made on such a
# machine, docs/install.md) into prebuilds/ before running this. Prints the tarball's path
# last, on stdout. (Making the prebuild moves build/Release/prevail.node out of the checkout,
# as scripts/prebuild.sh says: npm run build:addon makes a source build again.)
set -euo pipefail
cd "$(dirname "$0")/.."

out=release
check=
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --check) check=1; shift ;;
    *) echo "release: unknown argument $1 (usage: bash scripts/release.sh [--out DIR] [--check])" >&2; exit 2 ;;
  esac
done

plat=$(node -p 'process.platform + "-" + process.arch')
prebuild=prebuilds/$plat/prevail.node
stale=
if [[ -f $prebuild ]]; then
  stale=$(find native binding.gyp -newer "$prebuild" -type f | head -n1)
fi
if [[ ! -f $prebuild || -n $stale ]]; then
  echo "release: making $prebuild${stale:+ ($stale changed after the last one)}" >&2
  bash scripts/prebuild.sh >&2
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
# prepack builds dist/ (ESM, CommonJS, declarations) first.
name=$(npm pack --silent --pack-destination "$out" 2>/dev/null | tail -n1)
tarball=$out/$name
[[ -f $tarball ]] || { echo "release: npm pack made no tarball" >&2; exit 1; }
files=$(tar -tzf "$tarball")   # listed once: grep -q on a pipe would cut tar off (pipefail)
for must in package/dist/cli.js package/dist/index.js package/dist/cjs/index.js "package/$prebuild"; do
  grep -q -x -F "$must" <<<"$files" || { echo "release: $name lacks ${must#package/}" >&2; exit 1; }
done
platforms=$(sed -n 's|^package/prebuilds/\([^/]*\)/.*\.node$|\1|p' <<<"$files" | sort -u | paste -sd' ')
echo "release: $name ($(stat -c %s "$tarball") bytes), prebuilds for: $platforms" >&2

# The same install test CI runs, on this tarball: no compiler, import and require, a store.
if [[ -n $check ]]; then bash scripts/install-test.sh "$tarball" >&2; fi
echo "$tarball"

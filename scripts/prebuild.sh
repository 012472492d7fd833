#!/usr/bin/env bash
# Builds the prebuilt addon for this machine's platform and architecture:
#   prebuilds/<platform>-<arch>/prevail.node   (node-gyp-build's layout; N-API, so one
#                                                binary serves every Node >= the floor)
# with the engine linked in statically, stripped, exporting only the N-API entry points,
# and checks all of that. `npm run build:prebuilds` runs it; CI does before `npm pack`.
# (Not `npm run prebuild`: npm would run a script of that name before every `npm run build`.)
#
# On an arm64 machine this gives prebuilds/linux-arm64/, on Alpine (musl)
# prebuilds/linux-x64/prevail.musl.node (tagged, so glibc and musl binaries sit side by
# side and node-gyp-build picks the right one): see docs/install.md.
#
# prebuildify moves the result out of build/Release; the source build (npm run
# build:addon) puts one back when wanted. node-gyp-build prefers build/Release when present.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/fetch-engine.sh
# The engine's licence ships in the package (licenses/raft/LICENSE, committed): it must
# be the very text of the source the binary was built from.
cmp -s third_party/raft/LICENSE licenses/raft/LICENSE ||
  { echo "prebuild: licenses/raft/LICENSE differs from the engine's own third_party/raft/LICENSE" >&2; exit 1; }

if [[ -z ${npm_config_nodedir:-} && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr   # build against the installed headers, no download
fi

tags=()
if [[ $(uname -s) == Linux ]] && { ldd --version 2>&1 | grep -qi musl; }; then
  tags+=(--tag-libc)
fi

started=$(date +%s)
npx --no-install prebuildify --napi --strip "${tags[@]}"
dir=prebuilds/$(node -p 'process.platform + "-" + process.arch')
node_file=$(ls "$dir"/*.node | head -n1)
echo "prebuild: $node_file ($(stat -c %s "$node_file") bytes) in $(( $(date +%s) - started )) s"

# Exports: only the N-API entry points (native/exports.map).
exports=$(nm -D --defined-only "$node_file" | awk '{ print $NF }' | sort)
unexpected=$(grep -v -x -e napi_register_module_v1 -e node_api_module_get_api_version_v1 <<<"$exports" || true)
if [[ -n $unexpected ]]; then
  echo "prebuild: $node_file exports more than its N-API entry points:" >&2
  echo "$unexpected" >&2
  exit 1
fi
grep -q -x napi_register_module_v1 <<<"$exports" || { echo "prebuild: napi_register_module_v1 is not exported" >&2; exit 1; }
# Stripped: no symbol table, no debug sections.
if readelf -S "$node_file" | grep -q -e '\.symtab' -e '\.debug_'; then
  echo "prebuild: $node_file is not stripped" >&2; exit 1
fi
# Self-contained: the engine is inside (no libraft, no libuv of its own).
if ldd "$node_file" 2>/dev/null | grep -q -e libraft -e libuv; then
  echo "prebuild: $node_file links a shared libraft or libuv" >&2; exit 1
fi
# And it loads, through node-gyp-build, from the prebuilds directory.
node -e '
  const load = require("node-gyp-build");
  const path = load.resolve(process.cwd());
  if (!path.includes("/prebuilds/")) throw new Error("node-gyp-build resolved " + path + ", not the prebuild");
  const addon = require(path);
  if (typeof addon.Engine !== "function") throw new Error("the prebuild has no Engine");
  console.log("prebuild: loads from " + require("node:path").relative(process.cwd(), path) + " (raft version " + addon.raftVersion + ")");
'

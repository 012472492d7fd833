#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build and test prevail: the few apt packages the
# build needs (only those missing), npm dependencies, the engine source, the addon and
# the TypeScript output. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# chromium: Debian's browser, driven headless by playwright-core in test/unit/admin/admin.test.ts.
# clang-format: scripts/lint-native.sh checks the style of native/.
for pkg in g++ make python3 ca-certificates chromium clang-format; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  # dpkg prints a line per unpacked package (chromium pulls in ~130): keep it in a log, shown on failure.
  log=$(mktemp)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >"$log" 2>&1 \
    || { cat "$log"; rm -f "$log"; exit 1; }
  rm -f "$log"
fi

# node-gyp must build against the installed Node headers (no download): machines of
# this kind have nodedir=/usr in npm's config; say it explicitly for the others.
if [[ -z ${npm_config_nodedir:-} && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr
fi

# npm ci's install step (node-gyp-build) fetches the engine and builds the addon.
npm ci --no-audit --no-fund
npm run build:ts

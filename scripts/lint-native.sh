#!/usr/bin/env bash
# Checks that our native sources (native/, not the engine in third_party/) are formatted
# as native/.clang-format says. Fix with: clang-format -i native/*.{cc,h,c}
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "lint-native: clang-format is missing (scripts/setup.sh installs it)" >&2; exit 2; }
clang-format --dry-run --Werror native/*.cc native/*.h native/*.c

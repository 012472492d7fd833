#!/usr/bin/env bash
# Leak and memory-error check of the native addon on a real run: runs
# scripts/leak-scenario.mjs (start, ~2000 proposals with snapshots and throwing
# applies, barrier, status, close; restart with snapshot restore + replay, close with
# 500 proposals in flight; a start on a bound address) under valgrind memcheck.
#
# Node and V8 produce plenty of valgrind noise of their own, so the report is filtered
# to what prevail.node is responsible for: an error counts when one of its stacks (the
# access, the alloc'd/free'd block, or a leak's allocation) reaches a frame of
# prevail.node (native/*.cc, node-addon-api, or the raft engine built into it) from
# the top before entering JavaScript or the garbage collector. So libuv or N-API calls
# made by our code count; V8 work triggered by a JS callback we invoked does not.
#
# Exit status: 0 clean; 1 definite/indirect leaks or invalid reads/writes/frees
# attributable to prevail.node (uninitialised-value uses are reported as warnings,
# fatal with LEAK_CHECK_STRICT=1); 2 the scenario itself failed or valgrind is missing.
#
# Usage: scripts/leak-check.sh [--build]    (--build: node-gyp build + tsc first)
# Env:   LEAK_CHECK_LOG=path (keep valgrind's full log there; default: a temp file)
#        LEAK_CHECK_STRICT=1, LEAK_CHECK_SUPPRESSIONS=file, VALGRIND=path, NODE=path
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

VALGRIND=${VALGRIND:-$(command -v valgrind || echo /usr/bin/valgrind)}
NODE=${NODE:-$(command -v node)}
[[ -x $VALGRIND ]] || { echo "leak-check: valgrind not found" >&2; exit 2; }
[[ -x $NODE ]] || { echo "leak-check: node not found" >&2; exit 2; }

if [[ ${1:-} == --build ]]; then
  npx node-gyp build -j 2 >/dev/null || { echo "leak-check: addon build failed" >&2; exit 2; }
  npx tsc -p . || { echo "leak-check: tsc failed" >&2; exit 2; }
fi
for f in build/Release/prevail.node dist/index.js; do
  [[ -f $f ]] || { echo "leak-check: $f is missing; run with --build (or npm run build)" >&2; exit 2; }
done

log=${LEAK_CHECK_LOG:-$(mktemp -t prevail-valgrind.XXXXXX.log)}
supp=()
[[ -n ${LEAK_CHECK_SUPPRESSIONS:-} ]] && supp=(--suppressions="$LEAK_CHECK_SUPPRESSIONS")

# --jitless: V8 interprets only, so no JIT code for valgrind to retranslate (faster
# and quieter here); --expose-gc lets the scenario collect closed engines so their
# destructors run under the checker. --fullpath-after= keeps source paths, which is
# how engine frames (compiled with -g) are told apart from libuv's own.
echo "leak-check: running the scenario under valgrind (log: $log)"
start=$(date +%s)
env -u NODE_OPTIONS "$VALGRIND" --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite --track-origins=yes --num-callers=50 --error-limit=no \
  --fullpath-after= --child-silent-after-fork=yes "${supp[@]}" --log-file="$log" \
  "$NODE" --jitless --expose-gc scripts/leak-scenario.mjs
scenario_rc=$?
echo "leak-check: valgrind run took $(($(date +%s) - start)) s, scenario exit status $scenario_rc"

"$NODE" - "$log" "$scenario_rc" "${LEAK_CHECK_STRICT:-0}" <<'EOF'
const { readFileSync } = require('node:fs');
const [logFile, scenarioRc, strict] = process.argv.slice(2);
const text = readFileSync(logFile, 'utf8');

// valgrind prefixes its lines with ==pid==; blocks are separated by empty ones.
const lines = text.split('\n').filter((l) => /^==\d+==/.test(l)).map((l) => l.replace(/^==\d+== ?/, ''));
const blocks = [];
let cur = [];
for (const l of lines) {
  if (l.trim() === '') {
    if (cur.length) blocks.push(cur);
    cur = [];
  } else if (!/^Thread \d+:$/.test(l)) {
    cur.push(l);
  }
}
if (cur.length) blocks.push(cur);

// A frame of ours: in prevail.node, or a source file of native/ or of the engine.
const OURS = /prevail\.node\)|\/native\/[\w.-]+:\d+|\/third_party\/raft\/|node_modules\/node-addon-api\//;
// Control passed into JavaScript or the GC: what lies above such a frame is V8's doing.
const BARRIER = /Builtins_|v8::internal::Execution|v8::Function::Call|v8::internal::\(anonymous namespace\)::Invoke|InternalCallbackScope|CallbackScope|napi_call_function|napi_make_callback|node::MakeCallback|MicrotaskQueue|v8::internal::Heap::|cppgc::|MarkCompact|Scaveng|GCExtension|heap::base::/;

function stacks(block) {
  const out = [];
  let s = null;
  for (const l of block) {
    const m = /^\s+(?:at|by) 0x[0-9A-Fa-f]+: (.*)$/.exec(l);
    if (m) {
      if (!s) out.push((s = []));
      s.push(m[1]);
    } else {
      s = null;  // a title, "Address ... alloc'd/free'd", "Block was alloc'd at", origin line
    }
  }
  return out;
}
function attributable(block) {
  for (const s of stacks(block)) {
    for (const frame of s) {
      if (OURS.test(frame)) return true;
      if (BARRIER.test(frame)) break;
    }
  }
  return false;
}
const num = (s) => Number(String(s).replace(/,/g, ''));

const found = { definite: { bytes: 0, blocks: 0, records: 0 }, indirect: { bytes: 0, blocks: 0, records: 0 },
  invalidRead: 0, invalidWrite: 0, invalidOther: 0, uninit: 0, other: 0 };
const reported = [];
for (const b of blocks) {
  const title = b[0];
  let kind = null;
  let m;
  if ((m = /^([\d,]+)(?: \(([\d,]+) direct, ([\d,]+) indirect\))? bytes in ([\d,]+) blocks are (definitely|indirectly) lost/.exec(title))) {
    kind = m[5] === 'definitely' ? 'definite' : 'indirect';
    if (!attributable(b)) continue;
    const bytes = m[2] !== undefined ? num(m[2]) : num(m[1]);  // direct bytes; indirect ones have their own records
    found[kind].bytes += bytes;
    found[kind].blocks += num(m[4]);
    found[kind].records++;
  } else if (/^Invalid read of size/.test(title)) {
    kind = 'invalidRead';
  } else if (/^Invalid write of size/.test(title)) {
    kind = 'invalidWrite';
  } else if (/^(Invalid free|Mismatched free|Source and destination overlap|Argument '.*' of function .* has a fishy)/.test(title)) {
    kind = 'invalidOther';
  } else if (/uninitialised/i.test(title)) {
    kind = 'uninit';
  } else if (/^(Jump to the invalid address|Process terminating|Syscall param .* points to unaddressable)/.test(title)) {
    kind = 'invalidOther';
  } else {
    continue;  // headers, summaries, possibly-lost/reachable records
  }
  if (kind !== 'definite' && kind !== 'indirect') {
    if (!attributable(b)) continue;
    found[kind]++;
  }
  reported.push(b);
}

// The whole-process numbers, for context.
const total = (label) => {
  const r = new RegExp(`^\\s*${label}: ([\\d,]+) bytes in ([\\d,]+) blocks`);
  for (const l of lines) { const m = r.exec(l); if (m) return `${m[1]} bytes in ${m[2]} blocks`; }
  return 'n/a';
};
const errSummary = (lines.find((l) => l.startsWith('ERROR SUMMARY')) ?? 'ERROR SUMMARY: n/a').replace(/ \(suppressed.*$/, '');

for (const b of reported) {
  console.log('----');
  // Trim each stack to the frames that matter (up to the first JS/GC frame, at most 25).
  let depth = 0;
  for (const l of b) {
    const frame = /^\s+(?:at|by) 0x/.test(l);
    if (!frame) { depth = 0; console.log(l); continue; }
    if (++depth <= 25) console.log(l);
    else if (depth === 26) console.log('      ...');
  }
}
if (reported.length) console.log('----');

console.log(`leak-check: whole process: definitely lost ${total('definitely lost')}, indirectly lost ${total('indirectly lost')}, ${errSummary}`);
console.log(`leak-check: attributable to prevail.node: definitely lost ${found.definite.bytes} bytes in ${found.definite.blocks} blocks` +
  ` (${found.definite.records} records), indirectly lost ${found.indirect.bytes} bytes in ${found.indirect.blocks} blocks,` +
  ` invalid reads ${found.invalidRead}, invalid writes ${found.invalidWrite}, other invalid accesses/frees ${found.invalidOther}` +
  ` (error contexts), uninitialised-value uses ${found.uninit}`);

let rc = 0;
if (scenarioRc !== '0') {
  console.log(`leak-check: FAILED: the scenario exited with status ${scenarioRc}`);
  rc = 2;
}
const fatal = found.definite.records + found.indirect.records + found.invalidRead + found.invalidWrite + found.invalidOther;
if (fatal > 0) {
  console.log('leak-check: FAILED: leaks or invalid memory accesses in prevail.node (details above)');
  rc = rc || 1;
}
if (found.uninit > 0) {
  console.log(`leak-check: ${strict === '1' ? 'FAILED' : 'warning'}: ${found.uninit} use(s) of uninitialised memory in prevail.node (details above)`);
  if (strict === '1') rc = rc || 1;
}
if (rc === 0) console.log('leak-check: OK');
process.exit(rc);
EOF

#!/usr/bin/env node
// Two builds of prevail (scripts/build-rev.sh) side by side: each build's own bench/store.js
// and bench/raft.js, interleaved A B A B in one run so that both see the same machine, then
// one table of medians per build and after/before ratios.
//
//   node bench/compare.mjs BEFORE_DIR AFTER_DIR [--rounds=2]
//        [--store-args="..."] [--raft-args="..."] [--only=store|raft] [--rows=REGEX]
//
// --rows keeps the table's lines whose "bench row column" matches (e.g. --rows='commits/s|proposals/s').
//
// The default arguments make a short run (6 min here with the 2 cores at a load of 15, store.js two
// thirds of it; aim: ~3 min on a quiet machine): store.js --quick on 30k objects
// with short windows and without the heap sections, raft.js --quick. A ratio within the
// spread that a build shows against itself (compare a build with itself for the noise floor)
// is noise. Numbers are read from the benches' markdown tables: rows are matched by position
// (the same bench prints the same rows), cells by their column header; "-" cells are skipped.
// This is a measurement, not a test: it never fails on a number.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const DEFAULT_ARGS = {
  store:
    '--quick --objects=30000 --duration=500 --warmup=200 --concurrency=1,64 --settle=0 --skip=heap,heap-restored',
  raft: '--quick',
};

function options() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string' },
      'store-args': { type: 'string' },
      'raft-args': { type: 'string' },
      only: { type: 'string' },
      rows: { type: 'string' },
    },
  });
  if (positionals.length !== 2) {
    console.error(
      'usage: node bench/compare.mjs BEFORE_DIR AFTER_DIR [--rounds=2] [--store-args="..."] [--raft-args="..."] [--only=store|raft] [--rows=REGEX]',
    );
    process.exit(2);
  }
  const dirs = positionals.map((d) => resolve(d));
  for (const dir of dirs) {
    if (!existsSync(join(dir, 'dist', 'index.js'))) {
      console.error(`compare: ${dir} has no dist/index.js (build it with scripts/build-rev.sh)`);
      process.exit(2);
    }
  }
  const benches = (values.only ? [values.only] : ['store', 'raft']).map((name) => ({
    name,
    args: (values[`${name}-args`] ?? DEFAULT_ARGS[name]).split(/\s+/).filter(Boolean),
  }));
  const rows = values.rows ? new RegExp(values.rows, 'i') : null;
  return { before: dirs[0], after: dirs[1], rounds: Number(values.rounds ?? 2), benches, rows };
}

/** The bench running now, killed by pid if this script is interrupted. */
let running = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    const child = running;
    if (!child?.pid) process.exit(130);
    // The bench exits on the signal once its loop is free; a busy one gets SIGKILL after 5 s.
    child.once('exit', () => process.exit(130));
    try {
      process.kill(child.pid, signal);
    } catch {
      /* gone */
    }
    setTimeout(() => {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000).unref();
  });
}

/** One bench run in a build's directory: its stdout, or an exit with the reason. */
async function runBench(dir, bench) {
  const t0 = Date.now();
  const child = spawn(process.execPath, [join('bench', `${bench.name}.js`), ...bench.args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running = child;
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const status = await new Promise((r) => child.once('exit', (code, signal) => r(code ?? signal)));
  running = null;
  if (status !== 0) {
    console.error(stderr.slice(-3000));
    console.error(`compare: bench/${bench.name}.js failed in ${dir} (${status})`);
    process.exit(1);
  }
  console.error(`compare: ${bench.name} in ${dir}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return stdout;
}

/**
 * The markdown tables of a bench's output, as [{ title, header, rows: string[][] }]; the
 * title is the last "#" heading before the table.
 */
function parseTables(text) {
  const tables = [];
  let title = '';
  let current = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) title = line.replace(/^#+\s*/, '');
    if (!line.startsWith('|')) {
      current = null;
      continue;
    }
    const cells = line
      .slice(1, line.trimEnd().endsWith('|') ? line.trimEnd().length - 1 : undefined)
      .split('|')
      .map((c) => c.trim());
    if (!current) {
      current = { title, header: cells, rows: [] };
      tables.push(current);
    } else if (!cells.every((c) => /^:?-+:?$/.test(c))) {
      current.rows.push(cells);
    }
  }
  return tables;
}

/** A cell's leading number ("**1.08×**", "2,720", "53.5 (100,815)"), or null. */
function cellNumber(cell) {
  const m = /^[*\s]*(-?[\d,]*\.?\d+)/.exec(cell);
  return m ? Number(m[1].replace(/,/g, '')) : null;
}

/** Columns that name the row rather than measure it. */
const isKeyColumn = (header, i) => i === 0 || /^(in flight|requesters|concurrency)$/i.test(header);

/** Adds one run's numbers to `into`: a Map of "bench/table/row/column" → { label, values: [] }. */
function collect(into, benchName, text, side) {
  parseTables(text).forEach((table, t) => {
    table.rows.forEach((row, r) => {
      const label = row.filter((_, i) => isKeyColumn(table.header[i] ?? '', i)).join(' @ ');
      row.forEach((cell, c) => {
        const header = table.header[c] ?? `column ${c + 1}`;
        const value = cellNumber(cell);
        if (isKeyColumn(header, c) || value === null) return;
        const key = `${benchName}/${t}/${r}/${c}`;
        if (!into.has(key))
          into.set(key, {
            bench: benchName,
            table: table.title,
            label,
            header,
            before: [],
            after: [],
          });
        into.get(key)[side].push(value);
      });
    });
  });
}

function median(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmt = (n) =>
  Number.isNaN(n)
    ? '-'
    : Math.abs(n) >= 100
      ? Math.round(n).toLocaleString('en-US')
      : n.toPrecision(3);
/** (max - min) / median of one side's runs, in percent: how much that build disagrees with itself. */
const spread = (values) =>
  values.length < 2 || median(values) === 0
    ? '-'
    : `${Math.round(((Math.max(...values) - Math.min(...values)) / median(values)) * 100)}%`;

function printTable(results, opts) {
  console.log(
    `## ${opts.before} (before) vs ${opts.after} (after), ${opts.rounds} interleaved rounds, medians\n`,
  );
  console.log(
    '| bench | row | column | before | after | after / before | spread before | spread after |',
  );
  console.log('|---|---|---|---:|---:|---:|---:|---:|');
  for (const r of results.values()) {
    const where = r.table ? `${r.table}: ${r.label}` : r.label;
    if (opts.rows && !opts.rows.test(`${r.bench} ${where} ${r.header}`)) continue;
    const [b, a] = [median(r.before), median(r.after)];
    const ratio = b === 0 || Number.isNaN(a) || Number.isNaN(b) ? '-' : (a / b).toFixed(2);
    console.log(
      `| ${r.bench} | ${where.replace(/\|/g, '/')} | ${r.header} | ${fmt(b)} | ${fmt(a)} | ${ratio} | ${spread(r.before)} | ${spread(r.after)} |`,
    );
  }
  console.log(
    "\nSpread: (max - min) / median of that build's runs. A ratio inside both spreads is noise.",
  );
}

async function main() {
  const opts = options();
  const results = new Map();
  const t0 = Date.now();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const bench of opts.benches) {
      collect(results, bench.name, await runBench(opts.before, bench), 'before');
      collect(results, bench.name, await runBench(opts.after, bench), 'after');
    }
  }
  printTable(results, opts);
  console.log(
    `\n${opts.benches.map((b) => `${b.name}.js ${b.args.join(' ')}`).join('; ')}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
}

await main();

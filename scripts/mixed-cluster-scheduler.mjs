#!/usr/bin/env node
// scripts/mixed-cluster.mjs's stand-in for one node's `prevail serve`, for a moment: the same
// service from the same build (its own dist/), over the node's data dir and addresses, which
// also calls the store's schedule() and unschedule() — `prevail serve` has no HTTP route for
// them. Run on a follower, they are forwarded to the leader, whatever build it runs.
//
//   node scripts/mixed-cluster-scheduler.mjs --build DIR --options JSON --tag TAG
//
// --options: startService's options, as `prevail serve` would pass them. The node schedules
// `put(TAG-fired)` 300 ms ahead (the leader fires it), then schedules a put an hour ahead and
// unschedules it. It prints one JSON line { roles (before, after), leader, fired: { id, key, value }, removed }
// and closes (no leadership transfer: it is a follower). Exits 0, or 1 with the error on
// stderr; it gives up after 60 s. Self-contained (only Node's own modules), like mixed-cluster.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const GIVE_UP_MS = 60_000;
const WRITE_TIMEOUT_MS = 20_000;

/** The build's service module: dist/service/service.js since the restructure, dist/service.js before. */
function serviceModule(dir) {
  const found = ['service/service.js', 'service.js']
    .map((p) => join(dir, 'dist', p))
    .find((p) => existsSync(p));
  if (!found) throw new Error(`${dir} has no dist/service/service.js or dist/service.js`);
  return pathToFileURL(found).href;
}

async function main() {
  const { values } = parseArgs({
    options: {
      build: { type: 'string' },
      options: { type: 'string' },
      tag: { type: 'string' },
    },
  });
  if (!values.build || !values.options || !values.tag)
    throw new Error('usage: mixed-cluster-scheduler.mjs --build DIR --options JSON --tag TAG');
  const { startService } = await import(serviceModule(resolve(values.build)));
  const service = await startService(JSON.parse(values.options));
  try {
    const { store } = service;
    const write = { timeoutMs: WRITE_TIMEOUT_MS };
    const key = `${values.tag}-fired`;
    const value = `fired-${values.tag}`;
    const roles = [store.status().role];
    const id = await store.schedule('put', { key, value }, Date.now() + 300, write);
    const later = await store.schedule(
      'put',
      { key: `${values.tag}-never`, value: 'never' },
      Date.now() + 3_600_000,
      write,
    );
    const removed = await store.unschedule(later, write);
    roles.push(store.status().role);
    const leader = store.status().leader?.id ?? null;
    console.log(JSON.stringify({ roles, leader, fired: { id, key, value }, removed }));
  } finally {
    await service.close({ transferLeadership: false });
  }
}

setTimeout(() => {
  console.error(`mixed-cluster-scheduler: gave up after ${GIVE_UP_MS / 1000} s`);
  process.exit(1);
}, GIVE_UP_MS).unref();
main().then(
  () => process.exit(0),
  (err) => {
    console.error('mixed-cluster-scheduler:', err?.code ?? '', err?.stack ?? err);
    process.exit(1);
  },
);

// `npm run cluster`: the example app as a 3-node cluster on this machine, each node its own
// process with its own data directory, restarted if it dies (so `kill -9` shows a failover
// and a catch-up). Ctrl-C (or SIGTERM) stops all three.
//
// The members talk mutual TLS: on the first run this makes a CA and a certificate per node in
// DATA_DIR/certs (as `prevail certs` would: ca.pem, node-<id>.pem, node-<id>-key.pem) and
// later runs reuse them. The app's own HTTP stays plain HTTP on 127.0.0.1.
//
// Environment: HTTP_PORT (first node's HTTP port; default 3001, then 3002, 3003),
// RAFT_PORT (default 7011, 7012, 7013), DATA_DIR (default ./data/cluster), RESTART_MS
// (delay before restarting a dead node; default 2000, 0 disables restarts).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createCa, createNodeCert, writeCertFiles } from '../../dist/index.js';

const server = fileURLToPath(new URL('./server.mjs', import.meta.url));
const httpBase = Number(process.env.HTTP_PORT ?? 3001);
const raftBase = Number(process.env.RAFT_PORT ?? 7011);
const root = process.env.DATA_DIR ?? './data/cluster';
const restartMs = Number(process.env.RESTART_MS ?? 2000);
const SIZE = 3;

const members = Array.from({ length: SIZE }, (_, i) => ({
  id: i + 1,
  address: `127.0.0.1:${raftBase + i}`,
}));
const clusterSpec = members.map((m) => `${m.id}=${m.address}`).join(',');
const certDir = join(root, 'certs');
const nodes = new Map(); // id → { child, url }
let stopping = false;

function log(line) {
  console.log(`[cluster] ${line}`);
}

function start(id) {
  const dataDir = join(root, `n${id}`);
  mkdirSync(dataDir, { recursive: true });
  const port = httpBase + id - 1;
  const env = {
    ...process.env,
    NODE_ID: String(id),
    CLUSTER: clusterSpec,
    PORT: String(port),
    DATA_DIR: dataDir,
    TLS_DIR: certDir,
  };
  delete env.RAFT_ADDRESS; // each node's comes from CLUSTER
  const child = spawn(process.execPath, [server], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const node = { child, url: `http://127.0.0.1:${port}` };
  nodes.set(id, node);
  child.stdout.on('data', (chunk) => {
    for (const line of chunk.toString().split('\n')) if (line) console.log(`[node ${id}] ${line}`);
  });
  log(
    `node ${id}: pid ${child.pid}, ${node.url}/ (admin page ${node.url}/admin), raft ${members[id - 1].address}, data ${dataDir}`,
  );
  child.once('exit', (code, signal) => {
    if (nodes.get(id)?.child === child) nodes.delete(id);
    if (stopping) return;
    log(
      `node ${id} (pid ${child.pid}) exited (${signal ?? code})${restartMs > 0 ? `; restarting it in ${restartMs} ms` : ''}`,
    );
    if (restartMs > 0)
      setTimeout(() => {
        if (!stopping) start(id);
      }, restartMs).unref();
  });
}

function statusOf(url) {
  return new Promise((resolve) => {
    const req = get(`${url}/admin/status.json`, { timeout: 500 }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch {
          resolve(null);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

// Reports leader changes as the nodes see them.
let lastLeader = null;
const watcher = setInterval(async () => {
  const statuses = (await Promise.all([...nodes.values()].map((n) => statusOf(n.url)))).filter(
    Boolean,
  );
  const leaderIds = new Set(statuses.map((s) => s.leader?.id ?? null).filter((x) => x !== null));
  const leader = leaderIds.size === 1 ? [...leaderIds][0] : null;
  if (leader !== lastLeader && leader !== null) {
    const pid = nodes.get(leader)?.child.pid;
    log(`leader: node ${leader}${pid ? ` (pid ${pid}; try: kill -9 ${pid})` : ''}`);
    lastLeader = leader;
  }
}, 250);

function stop(signal) {
  if (stopping) return;
  stopping = true;
  clearInterval(watcher);
  log(`${signal}: stopping all nodes`);
  for (const { child } of nodes.values()) child.kill('SIGTERM');
  // Bounded: anything still alive after 10 s is killed.
  setTimeout(() => {
    for (const { child } of nodes.values()) child.kill('SIGKILL');
  }, 10_000).unref();
}
process.once('SIGINT', () => stop('SIGINT'));
process.once('SIGTERM', () => stop('SIGTERM'));

// The CA and the members' certificates, made once: the CA's key stays in certDir, so a
// certificate can be renewed there with `prevail certs node`.
async function ensureCerts() {
  if (existsSync(join(certDir, 'ca.pem'))) return;
  const ca = await createCa({ name: 'prevail example app CA' });
  for (const m of members)
    writeCertFiles(certDir, `node-${m.id}`, await createNodeCert(ca, { id: m.id }));
  writeCertFiles(certDir, 'ca', ca); // last: its presence says the set is complete
  log(`made a CA and node certificates in ${certDir}`);
}

await ensureCerts();
for (const m of members) start(m.id);

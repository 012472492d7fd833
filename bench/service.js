// The reference service (`prevail serve`, 3 nodes) against etcd 3.4 (3 members), both on
// loopback, both driven by the same HTTP load generator in this process, printed next to
// the disk's fdatasync floor measured in the same run (see /work/shared/notes/anchors.md:
// claims are ratios against an anchor run side by side, never absolute times).
//
//   node bench/service.js                          full run (~5 min on 2 cores)
//   node bench/service.js --quick                  shorter windows, 5 failover runs (~1.5 min)
//   node bench/service.js --concurrency=1,64       choose the in-flight levels
//   node bench/service.js --duration=5000 --warmup=1000   window lengths in ms
//   node bench/service.js --runs=20                failover repetitions per system
//   node bench/service.js --failover-concurrency=4 the steady load's loops during failover
//   node bench/service.js --skip=throughput,leader,failover,rolling,fsync,etcd,prevail   leave parts out
//                                                  (leader: the leader-only diagnostic rows)
//   node bench/service.js --repeat=3               each throughput level N times, interleaved; medians
//   node bench/service.js --tls --concurrency=16,64 --repeat=3 --runs=10 --skip=leader
//   node bench/service.js --tls=http2 …     the same, the load generator on HTTP/2 over TLS
//   node bench/service.js --tls=members …   the same with the API on plain HTTP (serve --plain-http)
//        what TLS costs: `prevail serve` with member mTLS (--ca/--cert/--key, which also make
//        its HTTP API HTTPS; the load generator then speaks HTTP/1.1 over TLS with the CA, or
//        HTTP/2 with --tls=http2, one connection per node) against the same with --insecure
//        (HTTP/1.1), side by side; no etcd, no rolling restart
//
// Needs dist/ (npx tsc -p .) and, for the etcd rows, etcd on the PATH
// (Debian 12: apt-get install -y etcd-server, 3.4.23). Without etcd only prevail runs.
// This is a measurement, not a test: it never fails on a number. Not part of CI.
//
// Writes: PUT /kv/<key> with the 100-byte value as the raw body (prevail), and
// POST /v3/kv/put {"key": b64, "value": b64} through etcd's JSON gateway. Every key is new.
// Requests go round-robin over the 3 nodes, so 2 in 3 arrive at a follower: prevail
// forwards them to its leader over its peer channel, etcd over its own raft transport.
// Both systems keep their defaults, and both sync their log to disk before acknowledging
// a write (prevail: O_DIRECT + RWF_DSYNC writes; etcd: fdatasync of its WAL), batching
// concurrent writes into one sync.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { Agent } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { NoDelayHttpsAgent } from '../dist/core/tls-tcp.js';

import {
  arg,
  closedLoop,
  concurrencyArg,
  fmtInt,
  fmtMs,
  fmtRatio,
  freePorts,
  fsyncAppend,
  httpRequest,
  Http2Agent,
  killChild,
  killChildren,
  medianOf,
  medianRows,
  percentile,
  processCpuMs,
  progress,
  quick,
  run,
  skip,
  sleep,
  trackChild,
  waitFor,
  writeBenchCerts,
} from './common.js';

// ---------------------------------------------------------------- options
if (arg('help')) {
  console.log(
    'usage: node bench/service.js [--quick] [--concurrency=1,16,64,256] [--duration=ms] [--warmup=ms]\n' +
      '       [--runs=20] [--failover-concurrency=4] [--skip=throughput,leader,failover,fsync,etcd,prevail]\n' +
      '       [--repeat=1] [--tls[=http2|members]]',
  );
  process.exit(0);
}
const concurrencies = concurrencyArg('1,16,64,256');
if (concurrencies.length === 0) throw new Error('no valid concurrency given');
const durationMs = Number(arg('duration') ?? (quick ? 1500 : 5000));
const warmupMs = Number(arg('warmup') ?? (quick ? 500 : 1000));
const runs = Number(arg('runs') ?? (quick ? 5 : 20));
const failoverConcurrency = Number(arg('failover-concurrency') ?? 4);
const repeat = Number(arg('repeat') ?? 1);
// --tls: members on mTLS and the API on HTTPS, the load generator on HTTP/1.1 (a keep-alive
// connection per request in flight, as against the plain cluster); --tls=http2: the same with
// the generator on HTTP/2 (one connection per node); --tls=members: members on mTLS, the API on
// plain HTTP (serve --plain-http), which tells the members' share of the cost from the API's.
const TLS_MODES = { true: 'all', http2: 'http2', members: 'members' };
const tlsMode = arg('tls') ? TLS_MODES[arg('tls')] : null;
if (tlsMode === undefined)
  throw new Error(`--tls=${arg('tls')}: expected --tls, --tls=http2 or --tls=members`);
const fsyncMs = quick ? 700 : 2000;
const VALUE_BYTES = 100;
// During failover: a fresh write goes to a survivor every PROBE_EVERY_MS (alternating).
const PROBE_EVERY_MS = 10;
const PROBE_TIMEOUT_MS = 3000;
const LOAD_TIMEOUT_MS = 2000; // the steady load's per-request client timeout
const FAILOVER_GIVE_UP_MS = 15_000;
// The throughput rows: writes round-robin over the 3 nodes (the comparison), then, as a
// diagnostic, to the leader alone (no forwarding).
const targetsToRun = skip.has('leader') ? ['all'] : ['all', 'leader'];

const here = dirname(fileURLToPath(import.meta.url));
const cliPath = join(here, '..', 'dist', 'cli.js');

// ---------------------------------------------------------------- temp dir and cleanup
const root = mkdtempSync(join(tmpdir(), 'prevail-bench-service-'));
function cleanup() {
  killChildren();
  try {
    rmSync(root, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- the value and keys
const value = Buffer.from(Array.from({ length: VALUE_BYTES }, (_, i) => 97 + ((i * 7) % 26)));
const valueB64 = value.toString('base64');
let keySeq = 0;
const nextKey = (prefix) => `${prefix}-${(keySeq++).toString(36)}`;

// ---------------------------------------------------------------- processes
// Starts a command with its output in a log file under `dir`; the child is tracked, so
// killChildren() (on exit, SIGINT and in the final cleanup) kills it.
function startProcess(cmd, args, logPath) {
  const fd = openSync(logPath, 'a');
  try {
    const child = trackChild(spawn(cmd, args, { stdio: ['ignore', fd, fd] }));
    child.on('error', () => {
      /* reported through exitCode / the log */
    });
    child.logPath = logPath;
    return child;
  } finally {
    closeSync(fd);
  }
}

function logTail(child, lines = 15) {
  try {
    return readFileSync(child.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function checkRunning(members, what) {
  for (const m of members) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) {
      throw new Error(
        `${what}: ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}); its log ends:\n${logTail(m.proc)}`,
      );
    }
  }
}

const jsonOf = (text) => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

// ---------------------------------------------------------------- systems
// A system starts a 3-member cluster and knows how to write to it and find its leader.
// cluster = { members: [{ name, host, port, proc }], agentFor, stop() }.

// `prevail serve` nodes with --insecure, or with member mTLS from certificates made once per
// run: tls 'all' and 'http2' also make their HTTP API HTTPS (HTTP/2 and HTTP/1.1 on one port;
// the generator speaks HTTP/1.1 for 'all', HTTP/2 for 'http2'), tls 'members' keeps it plain
// (--plain-http).
const PREVAIL_NAMES = { all: 'prevail-tls', http2: 'prevail-tls-h2', members: 'prevail-mtls' };
const makePrevail = (tls) => ({
  name: tls ? PREVAIL_NAMES[tls] : 'prevail',
  defaults: 'election timeout 200 ms, heartbeat 40 ms (`prevail serve` defaults)',
  certs: null,

  agent() {
    if (tls === 'http2') return new Http2Agent({ ca: this.certs.ca });
    return tls === 'all'
      ? new NoDelayHttpsAgent({ keepAlive: true, ca: this.certs.ca })
      : new Agent({ keepAlive: true });
  },

  available() {
    if (!existsSync(cliPath)) return `dist/cli.js is missing: build it with \`npx tsc -p .\``;
    if (!readFileSync(cliPath, 'utf8').includes('serve'))
      return 'dist/cli.js has no `serve` command: rebuild dist (npx tsc -p .)';
    return null;
  },

  async start(label) {
    const dir = mkdtempSync(join(root, `${label}-`));
    if (tls) this.certs ??= await writeBenchCerts(join(root, 'certs'), [1, 2, 3]);
    const ports = await freePorts(6);
    const members = [1, 2, 3].map((id) => ({
      id,
      name: `prevail node ${id}`,
      host: '127.0.0.1',
      port: ports[2 + id],
      raft: `127.0.0.1:${ports[id - 1]}`,
      dataDir: join(dir, `n${id}`),
    }));
    const clusterArg = members.map((m) => `${m.id}=${m.raft}`).join(',');
    for (const m of members) {
      mkdirSync(m.dataDir);
      m.args = [
        cliPath,
        'serve',
        '--id',
        String(m.id),
        '--raft',
        m.raft,
        '--http',
        `${m.host}:${m.port}`,
        '--data',
        m.dataDir,
        '--cluster',
        clusterArg,
        ...(tls
          ? [
              ...memberTlsArgs(this.certs.files(m.id)),
              ...(tls === 'members' ? ['--plain-http'] : []),
            ]
          : ['--insecure']),
      ];
      m.proc = startProcess(process.execPath, m.args, join(dir, `n${m.id}.log`));
    }
    return { dir, members };
  },

  // Starts a stopped member again on its data dir.
  restart(cluster, m) {
    m.proc = startProcess(process.execPath, m.args, join(cluster.dir, `n${m.id}.log`));
  },

  write(agent, m, key, timeoutMs) {
    return httpRequest(agent, {
      host: m.host,
      port: m.port,
      method: 'PUT',
      path: `/kv/${key}`,
      headers: { 'content-type': 'application/octet-stream' },
      body: value,
      timeoutMs,
    });
  },

  // The index of the member that says it leads (GET /health/leader → 200), once every
  // member's GET /status names that same leader; else -1.
  async leader(agent, members) {
    const answers = await Promise.all(
      members
        .map(async (m) => {
          const [health, status] = await Promise.all([
            httpRequest(agent, {
              host: m.host,
              port: m.port,
              path: '/health/leader',
              timeoutMs: 1000,
            }),
            httpRequest(agent, { host: m.host, port: m.port, path: '/status', timeoutMs: 1000 }),
          ]);
          return { lead: health.status === 200, leaderId: jsonOf(status.body)?.leader?.id };
        })
        .map((p) => p.catch(() => ({ lead: false, leaderId: undefined }))),
    );
    const i = answers.findIndex((a) => a.lead);
    if (i < 0 || !answers.every((a) => a.leaderId === members[i].id)) return -1;
    return i;
  },
});
const prevail = makePrevail(null);
const prevailTls = makePrevail(tlsMode ?? 'all');
const memberTlsArgs = (f) => ['--ca', f.caFile, '--cert', f.certFile, '--key', f.keyFile];

const etcd = {
  name: 'etcd',
  defaults: 'election timeout 1000 ms, heartbeat 100 ms (etcd defaults)',
  version: null,

  agent: () => new Agent({ keepAlive: true }),

  available() {
    const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      return 'etcd is not installed: `apt-get install -y etcd-server` (Debian 12: 3.4.23) to get the etcd rows';
    }
    this.version = /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? r.stdout.split('\n')[0];
    return null;
  },

  async start(label) {
    const dir = mkdtempSync(join(root, `${label}-`));
    const ports = await freePorts(6);
    const members = [1, 2, 3].map((i) => ({
      name: `etcd member e${i}`,
      etcdName: `e${i}`,
      host: '127.0.0.1',
      port: ports[2 + i],
      peerUrl: `http://127.0.0.1:${ports[i - 1]}`,
      dataDir: join(dir, `e${i}`),
    }));
    const initialCluster = members.map((m) => `${m.etcdName}=${m.peerUrl}`).join(',');
    const token = `bench-${process.pid}-${label}`;
    for (const m of members) {
      const clientUrl = `http://${m.host}:${m.port}`;
      m.proc = startProcess(
        'etcd',
        [
          '--name',
          m.etcdName,
          '--data-dir',
          m.dataDir,
          '--listen-peer-urls',
          m.peerUrl,
          '--initial-advertise-peer-urls',
          m.peerUrl,
          '--listen-client-urls',
          clientUrl,
          '--advertise-client-urls',
          clientUrl,
          '--initial-cluster',
          initialCluster,
          '--initial-cluster-state',
          'new',
          '--initial-cluster-token',
          token,
          '--logger',
          'zap',
          '--log-level',
          'error',
        ],
        join(dir, `${m.etcdName}.log`),
      );
    }
    return { dir, members };
  },

  write(agent, m, key, timeoutMs) {
    return httpRequest(agent, {
      host: m.host,
      port: m.port,
      method: 'POST',
      path: '/v3/kv/put',
      headers: { 'content-type': 'application/json' },
      body: `{"key":"${Buffer.from(key).toString('base64')}","value":"${valueB64}"}`,
      timeoutMs,
    });
  },

  // POST /v3/maintenance/status on every member: the leader is the member whose own id is
  // the leader id all of them report; else -1.
  async leader(agent, members) {
    const answers = await Promise.all(
      members.map((m) =>
        httpRequest(agent, {
          host: m.host,
          port: m.port,
          method: 'POST',
          path: '/v3/maintenance/status',
          body: '{}',
          timeoutMs: 1000,
        }).then(
          (r) => (r.status === 200 ? jsonOf(r.body) : undefined),
          () => undefined,
        ),
      ),
    );
    const leaderId = answers[0]?.leader;
    if (!leaderId || leaderId === '0' || !answers.every((a) => a?.leader === leaderId)) return -1;
    return answers.findIndex((a) => a.header?.member_id === leaderId);
  },
};

// One write that counts only when acknowledged (200).
async function writeOk(system, agent, m, key, timeoutMs) {
  const r = await system.write(agent, m, key, timeoutMs);
  if (r.status !== 200) throw new Error(`${m.name}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
}

// Starts a cluster and waits until it has a leader every member agrees on and a write
// through each member has been acknowledged (so forwarding works from every member).
async function startCluster(system, label) {
  const cluster = await system.start(label);
  const agent = system.agent();
  try {
    await waitFor(
      `a ${system.name} leader`,
      async () => {
        checkRunning(cluster.members, `${system.name} start`);
        return (await system.leader(agent, cluster.members)) >= 0;
      },
      { timeoutMs: 30_000, pollMs: 50 },
    );
    for (const m of cluster.members) {
      await waitFor(
        `a write through ${m.name}`,
        async () => {
          checkRunning(cluster.members, `${system.name} start`);
          await writeOk(system, agent, m, nextKey('ready'), 2000);
          return true;
        },
        { timeoutMs: 30_000, pollMs: 50 },
      );
    }
  } catch (err) {
    agent.destroy();
    await stopCluster(cluster);
    throw err;
  }
  agent.destroy();
  return cluster;
}

// No clean close is needed for a benchmark: kill -9 by pid (bounded waits), remove the dirs.
async function stopCluster(cluster) {
  await Promise.all(cluster.members.map((m) => killChild(m.proc)));
  rmSync(cluster.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- throughput
// A closed loop of `concurrency` writers, requests round-robin over `targets` (all the
// members, or the leader alone), for ms. Also measures the CPU this process (the load
// generator) and all the members used.
async function writeLoad(system, cluster, targets, concurrency, ms, errors) {
  const agent = system.agent();
  const members = cluster.members;
  let next = 0;
  const prefix = `${system.name[0]}${concurrency}`;
  const cpu0 = process.cpuUsage();
  const nodes0 = members.map((m) => processCpuMs(m.proc.pid));
  const t0 = performance.now();
  try {
    const r = await closedLoop(
      concurrency,
      ms,
      () => targets[next++ % targets.length],
      async (m) => {
        try {
          await writeOk(system, agent, m, nextKey(prefix), 10_000);
        } catch (err) {
          if (errors.length < 5) errors.push(err.message);
          throw err;
        }
      },
    );
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const nodesMs = members.reduce((sum, m, i) => sum + processCpuMs(m.proc.pid) - nodes0[i], 0);
    return { ...r, clientCpu: (cpu.user + cpu.system) / 1000 / wall, nodesCpu: nodesMs / wall };
  } finally {
    agent.destroy();
  }
}

async function benchThroughput(systems) {
  const clusters = new Map();
  const rows = [];
  try {
    for (const s of systems) {
      progress(`starting 3 ${s.name} nodes`);
      clusters.set(s, await startCluster(s, `${s.name}-tput`));
    }
    // Both clusters stay up for the whole section (the idle one only heartbeats); the
    // systems alternate at each level, in turn order swapped from one level to the next;
    // with --repeat the whole sweep runs again (rows merged into medians below).
    const sweep = Array.from({ length: repeat }, () => concurrencies).flat();
    for (const [level, c] of sweep.entries()) {
      const order = level % 2 === 0 ? systems : [...systems].reverse();
      for (const s of order) {
        const cluster = clusters.get(s);
        for (const target of targetsToRun) {
          let targets = cluster.members;
          if (target === 'leader') {
            const agent = s.agent();
            const i = await waitFor(
              `the ${s.name} leader`,
              async () => (await s.leader(agent, cluster.members)) + 1,
            ).finally(() => agent.destroy());
            targets = [cluster.members[i - 1]];
          }
          const errors = [];
          await writeLoad(s, cluster, targets, c, warmupMs, errors);
          errors.length = 0;
          const r = await writeLoad(s, cluster, targets, c, durationMs, errors);
          checkRunning(cluster.members, `${s.name} @${c}`);
          rows.push({ system: s.name, target, concurrency: c, level, ...r });
          progress(
            `${s.name} @${c} (${target === 'leader' ? 'leader only' : 'round-robin'}): ${Math.round(r.opsPerSec)} writes/s, ` +
              `p50 ${fmtMs(r.p50)} ms, p99 ${fmtMs(r.p99)} ms${r.failed ? `, ${r.failed} failed (${errors[0]})` : ''}`,
          );
        }
      }
    }
  } finally {
    for (const cluster of clusters.values()) await stopCluster(cluster);
  }
  const medians = medianRows(rows, (r) => `${r.system} ${r.target} ${r.concurrency}`);
  return { medians, rows };
}

/**
 * The subject / base writes/s ratio of each repeat at concurrency `c`: the two systems ran back
 * to back within one level, so drift of the machine over minutes cancels within a pair, which a
 * ratio of the two medians (each over the whole section) does not do.
 */
function pairedRatios(rows, subject, base, c, target) {
  const levels = new Map();
  for (const r of rows) {
    if (r.concurrency !== c || r.target !== target) continue;
    if (!levels.has(r.level)) levels.set(r.level, {});
    levels.get(r.level)[r.system] = r.opsPerSec;
  }
  return [...levels.values()]
    .filter((pair) => pair[subject] !== undefined && pair[base] !== undefined)
    .map((pair) => pair[subject] / pair[base]);
}

// ---------------------------------------------------------------- failover
// One repetition on a fresh cluster: a steady load of `failoverConcurrency` writers
// (round-robin over the members, LOAD_TIMEOUT_MS client timeout, 10 ms pause after a
// failure) runs for a second; then the leader is killed with SIGKILL and, from that moment,
// a fresh write goes to one of the two survivors every PROBE_EVERY_MS (alternating). The
// failover time is from the kill to the first acknowledged write sent after it, probe or
// steady load, whichever comes first. Writes in flight at the kill don't count (one the
// old leader committed could be acknowledged after the kill).
async function failoverOnce(system, rep) {
  const cluster = await startCluster(system, `${system.name}-failover${rep}`);
  const agent = system.agent();
  const members = cluster.members;
  let killedAt = Infinity;
  let firstAck = Infinity; // performance.now() of the first ack of a write sent after the kill
  let firstLoadAck = Infinity; // the same, steady-load writes only
  let stop = false;
  const outstanding = new Set();
  const track = (p) => {
    outstanding.add(p);
    p.finally(() => outstanding.delete(p));
    return p;
  };
  try {
    let next = 0;
    let loadAcks = 0;
    const loops = Array.from({ length: failoverConcurrency }, async () => {
      while (!stop) {
        const m = members[next++ % members.length];
        const sentAt = performance.now();
        try {
          await writeOk(system, agent, m, nextKey('load'), LOAD_TIMEOUT_MS);
          loadAcks++;
          if (sentAt >= killedAt) {
            const now = performance.now();
            firstLoadAck = Math.min(firstLoadAck, now);
            firstAck = Math.min(firstAck, now);
          }
        } catch {
          await sleep(10);
        }
      }
    });
    await sleep(1000);
    if (loadAcks === 0)
      throw new Error(`${system.name}: no write acknowledged in the second before the kill`);
    const leaderIndex =
      (await waitFor(
        `the ${system.name} leader`,
        async () => {
          const i = await system.leader(agent, members);
          return i >= 0 ? i + 1 : 0;
        },
        { timeoutMs: 10_000 },
      )) - 1;
    const leader = members[leaderIndex];
    const survivors = members.filter((m) => m !== leader);

    killedAt = performance.now();
    try {
      process.kill(leader.proc.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    let probes = 0;
    while (firstAck === Infinity && performance.now() - killedAt < FAILOVER_GIVE_UP_MS) {
      const m = survivors[probes++ % survivors.length];
      track(
        writeOk(system, agent, m, nextKey('probe'), PROBE_TIMEOUT_MS).then(
          () => {
            firstAck = Math.min(firstAck, performance.now());
          },
          () => {},
        ),
      );
      await sleep(PROBE_EVERY_MS);
    }
    // Give the steady load a bounded chance to see its own first ack, for the second column.
    const loadDeadline = performance.now() + LOAD_TIMEOUT_MS + 500;
    while (firstLoadAck === Infinity && performance.now() < loadDeadline) await sleep(10);
    stop = true;
    await Promise.race([Promise.all([...loops, ...outstanding]), sleep(PROBE_TIMEOUT_MS + 1000)]);
    return {
      ms: firstAck - killedAt,
      loadMs: firstLoadAck - killedAt,
      killed: leader.name,
    };
  } finally {
    stop = true;
    agent.destroy();
    await stopCluster(cluster);
  }
}

async function benchFailover(systems) {
  const results = new Map(systems.map((s) => [s, []]));
  for (let rep = 1; rep <= runs; rep++) {
    for (const s of rep % 2 === 1 ? systems : [...systems].reverse()) {
      const r = await failoverOnce(s, rep);
      results.get(s).push(r);
      progress(
        `failover ${s.name} run ${rep}/${runs}: ${Number.isFinite(r.ms) ? `${r.ms.toFixed(0)} ms` : 'no write acknowledged'}` +
          ` (steady load: ${Number.isFinite(r.loadMs) ? `${r.loadMs.toFixed(0)} ms` : '-'}; killed ${r.killed})`,
      );
    }
  }
  return systems.map((s) => {
    const list = results.get(s);
    const sorted = list.map((r) => r.ms).sort((a, b) => a - b);
    const loadSorted = list.map((r) => r.loadMs).sort((a, b) => a - b);
    return {
      system: s.name,
      defaults: s.defaults,
      runs: list.length,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: sorted.at(-1),
      min: sorted[0],
      loadP50: percentile(loadSorted, 0.5),
      loadP99: percentile(loadSorted, 0.99),
      noAck: sorted.filter((x) => !Number.isFinite(x)).length,
    };
  });
}

// ---------------------------------------------------------------- rolling restart
// prevail only: a steady write load (round-robin over the nodes whose GET /health/ready
// said 200 at the last poll, every 100 ms, as a load balancer would; a failed request moves
// on to the next node at once) while each node in turn gets SIGTERM (the leader last: it hands over,
// drains and closes), exits, is started again and becomes ready. Reports the longest gap
// between two acknowledged writes (the stall) and checks every acknowledged key is
// readable afterwards (linearizable reads).
async function benchRolling() {
  const cluster = await startCluster(prevail, 'rolling');
  const agent = prevail.agent();
  const members = cluster.members;
  const acked = [];
  const ackTimes = [];
  let failed = 0;
  let stop = false;
  const steps = [];
  let ready = [...members];
  const poller = (async () => {
    while (!stop) {
      const ok = await Promise.all(
        members.map((m) =>
          httpRequest(agent, {
            host: m.host,
            port: m.port,
            path: '/health/ready',
            timeoutMs: 200,
          }).then(
            (r) => r.status === 200,
            () => false,
          ),
        ),
      );
      ready = members.filter((_, i) => ok[i]);
      await sleep(100);
    }
  })();
  try {
    let next = 0;
    const loops = Array.from({ length: failoverConcurrency }, async () => {
      while (!stop) {
        const pool = ready.length ? ready : members;
        const m = pool[next++ % pool.length];
        const key = nextKey('roll');
        try {
          await writeOk(prevail, agent, m, key, LOAD_TIMEOUT_MS);
          acked.push(key);
          ackTimes.push(performance.now());
        } catch {
          failed++;
        }
      }
    });
    await sleep(1000);
    const leaderIndex =
      (await waitFor(
        'the leader',
        async () => {
          const i = await prevail.leader(agent, members);
          return i >= 0 ? i + 1 : 0;
        },
        { timeoutMs: 10_000 },
      )) - 1;
    const order = [...members.filter((_, i) => i !== leaderIndex), members[leaderIndex]];
    for (const m of order) {
      const t0 = performance.now();
      m.proc.kill('SIGTERM');
      const code = await Promise.race([
        new Promise((r) =>
          m.proc.exitCode !== null ? r(m.proc.exitCode) : m.proc.once('exit', (c) => r(c)),
        ),
        sleep(30_000).then(() => 'timeout'),
      ]);
      const exited = performance.now();
      prevail.restart(cluster, m);
      await waitFor(
        `${m.name} ready`,
        async () => {
          const r = await httpRequest(agent, {
            host: m.host,
            port: m.port,
            path: '/health/ready',
            timeoutMs: 500,
          }).catch(() => null);
          return r?.status === 200;
        },
        { timeoutMs: 30_000, pollMs: 20 },
      );
      steps.push({
        name: m.name,
        wasLeader: m === members[leaderIndex],
        exit: code,
        stopMs: exited - t0,
        readyMs: performance.now() - exited,
        at: t0,
      });
      await sleep(1000);
    }
    stop = true;
    await Promise.race([Promise.all([...loops, poller]), sleep(LOAD_TIMEOUT_MS + 1000)]);
    let maxGap = 0;
    let gapEnd = 0;
    for (let i = 1; i < ackTimes.length; i++) {
      if (ackTimes[i] - ackTimes[i - 1] > maxGap) {
        maxGap = ackTimes[i] - ackTimes[i - 1];
        gapEnd = ackTimes[i];
      }
    }
    // Which step the stall belongs to: the last SIGTERM sent before the gap ended.
    const during = [...steps].reverse().find((st) => st.at <= gapEnd);
    if (during) during.stall = true;
    // Every acknowledged write must be there.
    let lost = 0;
    const reader = members[0];
    for (const key of acked) {
      const r = await httpRequest(agent, {
        host: reader.host,
        port: reader.port,
        path: `/kv/${key}`,
        timeoutMs: 5000,
      });
      if (r.status !== 200) lost++;
    }
    return { steps, maxGap, acked: acked.length, failed, lost };
  } finally {
    stop = true;
    agent.destroy();
    await stopCluster(cluster);
  }
}

// ---------------------------------------------------------------- report
function percentileRankName(n) {
  const rank = Math.min(n, Math.max(1, Math.ceil(0.99 * n)));
  return rank === n ? 'maximum' : `${n - rank + 1}th largest`;
}

async function main() {
  const started = performance.now();
  const notes = [];
  const systems = [];
  for (const s of tlsMode ? [prevailTls, prevail] : [prevail, etcd]) {
    if (skip.has(s.name)) continue;
    const missing = s.available();
    if (missing) {
      notes.push(`- ${s.name} not run: ${missing}`);
      progress(`${s.name} not run: ${missing}`);
      continue;
    }
    systems.push(s);
  }
  if (!systems.length) throw new Error(`nothing to run:\n${notes.join('\n')}`);
  const versions = (await import('../dist/index.js')).versions ?? {};
  const load0 = loadavg()[0];
  process.stderr.write(
    `prevail bench: service (${systems.map((s) => s.name).join(' vs ')}), node ${process.version}, ${cpus().length} CPUs, temp dir ${root}\n` +
      `  systems ${systems.map((s) => s.name).join(', ')}; concurrencies ${concurrencies.join(',')}, window ${durationMs} ms, ` +
      `warm-up ${warmupMs} ms; failover runs ${runs}${quick ? ' (quick)' : ''}\n`,
  );

  const anchor = {
    parent: root,
    ms: fsyncMs,
    warmupMs: Math.min(300, fsyncMs / 4),
    label: 'fdatasync append',
  };
  const appendStart = skip.has('fsync') ? undefined : fsyncAppend(anchor);
  const { medians: tput, rows: tputRows } = skip.has('throughput')
    ? { medians: [], rows: [] }
    : await benchThroughput(systems);
  const failover = skip.has('failover') ? [] : await benchFailover(systems);
  const rolling =
    tlsMode || skip.has('rolling') || !systems.includes(prevail) ? null : await benchRolling();
  const appendEnd = skip.has('fsync') ? undefined : fsyncAppend(anchor);

  const out = [];
  if (appendStart) {
    out.push(
      `Disk anchor (fdatasync append 4 KiB, growing file, same filesystem): ${fmtInt(appendStart.opsPerSec)}/s ` +
        `(p50 ${fmtMs(appendStart.p50)} ms, p99 ${fmtMs(appendStart.p99)} ms) at the start, ${fmtInt(appendEnd.opsPerSec)}/s ` +
        `(p50 ${fmtMs(appendEnd.p50)} ms, p99 ${fmtMs(appendEnd.p99)} ms) at the end.`,
    );
    out.push('');
  }
  // The ratio column and lines: the first system against the second, side by side.
  const [subject, base] = tlsMode ? [prevailTls.name, 'prevail'] : ['prevail', 'etcd'];
  const at = (name, c, target = 'all') =>
    tput.find((r) => r.system === name && r.concurrency === c && r.target === target);
  const table = (target, title) => {
    const rows = tput.filter((r) => r.target === target);
    if (!rows.length) return;
    out.push(title);
    out.push('');
    out.push(
      `| system | concurrency | writes/s | p50 ms | p99 ms | failed | load generator CPU | 3 nodes CPU | ${subject} / ${base} writes/s |`,
    );
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      const other = at(base, r.concurrency, target);
      const ratio =
        r.system === subject && other ? `**${fmtRatio(r.opsPerSec / other.opsPerSec)}×**` : '';
      out.push(
        `| ${r.system} | ${r.concurrency} | ${fmtInt(r.opsPerSec)} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${r.failed} | ` +
          `${Math.round(r.clientCpu * 100)} % | ${Math.round(r.nodesCpu * 100)} % | ${ratio} |`,
      );
    }
    out.push('');
  };
  table(
    'all',
    `Writes, ${VALUE_BYTES}-byte values, new keys, 3 nodes on loopback, requests round-robin over the 3 nodes ` +
      `(${fmtMs(warmupMs / 1000)} s warm-up, ${fmtMs(durationMs / 1000)} s window per row` +
      `${repeat > 1 ? `; medians of ${repeat} interleaved repeats` : ''}):`,
  );
  table('leader', 'Diagnostic: the same load sent to the leader alone (no forwarding):');
  if (tput.length) {
    out.push(
      `(CPU: % of one core over the window, this process / the 3 nodes together; the machine has ${cpus().length} cores.)`,
    );
    out.push('');
  }
  if (failover.length) {
    out.push(
      `Failover: fresh 3-node cluster per run, ${failoverConcurrency} writers of steady load, the leader killed with ` +
        `SIGKILL; time from the kill to the first acknowledged write sent after it (a write goes to a survivor every ` +
        `${PROBE_EVERY_MS} ms, alternating). "steady load" is the same for the ${failoverConcurrency} writers' own writes ` +
        `(round-robin over all 3 nodes, ${LOAD_TIMEOUT_MS} ms client timeout):`,
    );
    out.push('');
    out.push(
      '| system | election / heartbeat | runs | p50 ms | p99 ms | max ms | steady load p50 / p99 ms |',
    );
    out.push('|---|---|---:|---:|---:|---:|---:|');
    for (const f of failover) {
      const none = f.noAck ? ` (${f.noAck} without an ack in ${FAILOVER_GIVE_UP_MS / 1000} s)` : '';
      out.push(
        `| ${f.system} | ${f.defaults} | ${f.runs}${none} | ${fmtInt(f.p50)} | ${fmtInt(f.p99)} | ${fmtInt(f.max)} | ` +
          `${fmtInt(f.loadP50)} / ${fmtInt(f.loadP99)} |`,
      );
    }
    out.push('');
    out.push(
      `(Nearest-rank percentiles: with ${runs} runs, p99 is the ${percentileRankName(runs)}.)`,
    );
    out.push('');
  }
  if (rolling) {
    out.push(
      `Rolling restart of prevail serve (${failoverConcurrency} writers, round-robin over the nodes that answered ` +
        'GET /health/ready with 200 at the last 100 ms poll, a failed request moves to the next node; ' +
        'each node gets SIGTERM in turn, the leader last, and is started again once it exited; 1 s between nodes):',
    );
    out.push('');
    out.push(
      '| node | was leader | exit code | SIGTERM → exit ms | start → ready ms | longest stall in this step |',
    );
    out.push('|---|---|---:|---:|---:|---|');
    for (const st of rolling.steps) {
      out.push(
        `| ${st.name} | ${st.wasLeader ? 'yes' : 'no'} | ${st.exit} | ${fmtInt(st.stopMs)} | ${fmtInt(st.readyMs)} | ${st.stall ? 'yes' : ''} |`,
      );
    }
    out.push('');
    out.push(
      `Longest gap between two acknowledged writes: **${fmtInt(rolling.maxGap)} ms** (goal < 1 s); ` +
        `${fmtInt(rolling.acked)} writes acknowledged, ${fmtInt(rolling.failed)} requests refused or failed (and retried elsewhere), ` +
        `**${rolling.lost} acknowledged writes missing** afterwards.`,
    );
    out.push('');
  }
  const ratios = [];
  if (appendStart && appendEnd) {
    ratios.push(
      `- anchor drift: fdatasync-append p50 end / start = ${fmtRatio(appendEnd.p50 / appendStart.p50)}`,
    );
  }
  for (const c of concurrencies) {
    const p = at(subject, c);
    const e = at(base, c);
    if (p && e) {
      ratios.push(
        `- concurrency ${c}: ${subject} / ${base} writes/s = ${fmtRatio(p.opsPerSec / e.opsPerSec)}, ` +
          `p50 ${base} / ${subject} = ${fmtRatio(e.p50 / p.p50)}, p99 ${base} / ${subject} = ${fmtRatio(e.p99 / p.p99)}`,
      );
      const paired = pairedRatios(tputRows, subject, base, c, 'all').sort((a, b) => a - b);
      if (paired.length > 1)
        ratios.push(
          `  - each repeat's pair (run back to back), sorted: ${paired.map(fmtRatio).join(', ')}; ` +
            `median ${fmtRatio(medianOf(paired))}`,
        );
    }
  }
  for (const c of concurrencies) {
    const p = at(subject, c, 'leader');
    const e = at(base, c, 'leader');
    if (p && e)
      ratios.push(
        `- leader only, concurrency ${c}: ${subject} / ${base} writes/s = ${fmtRatio(p.opsPerSec / e.opsPerSec)}`,
      );
  }
  const pOne = at('prevail', 1);
  const eOne = at('etcd', 1);
  if (appendStart && pOne)
    ratios.push(
      `- prevail p50 at concurrency 1 / fdatasync-append p50 = ${fmtRatio(pOne.p50 / appendStart.p50)}`,
    );
  if (appendStart && eOne)
    ratios.push(
      `- etcd p50 at concurrency 1 / fdatasync-append p50 = ${fmtRatio(eOne.p50 / appendStart.p50)}`,
    );
  const fp = failover.find((f) => f.system === subject);
  const fe = failover.find((f) => f.system === base);
  if (fp && fe) {
    ratios.push(
      `- failover p50 ${base} / ${subject} = ${fmtRatio(fe.p50 / fp.p50)}, p99 ${base} / ${subject} = ${fmtRatio(fe.p99 / fp.p99)}`,
    );
  }
  if (ratios.length) {
    out.push('Ratios (same run):');
    out.push(...ratios);
    out.push('');
  }
  out.push(...notes);
  out.push(
    `prevail (raft ${versions.raft ?? '?'}) vs etcd ${etcd.version ?? '(not run)'}; both sync every commit (defaults); ` +
      `node ${process.version}, ${cpus().length} CPUs, load average ${load0.toFixed(2)} at the start, ` +
      `${loadavg()[0].toFixed(2)} at the end; total ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  console.log(out.join('\n'));
}

await run(main, cleanup);

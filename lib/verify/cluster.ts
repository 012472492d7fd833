// The nodes under test for the verification harness: `prevail serve` child processes, each
// with its own data dir, either in its own network namespace (lib/verify/netns.ts) or on
// 127.0.0.1. Children are tracked by pid from spawn to exit; killAll() kills every process
// ever started (restarts included). Every wait is bounded. By default the nodes run on mutual
// TLS (certificates made by lib/certs into the run dir, which also makes their HTTP API HTTPS,
// authenticated by the harness's client certificate); `insecure` runs them with --insecure.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type Agent } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createCa, createClientCert, createNodeCert, writeCertFiles } from '../certs/index.js';
import { freePort } from '../core/ports.js';
import { NoDelayHttpsAgent } from '../core/tls-tcp.js';
import type { NetnsNetwork } from './netns.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/cli.js (this file is dist/verify/cluster.js). */
export const CLI = join(here, '..', 'cli.js');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface NodeSpec {
  id: number;
  raft: string;
  http: string;
  channel: string;
  dataDir: string;
  log: string;
}

export type NodeState = 'running' | 'paused' | 'dead' | 'removed';

export interface Answer {
  status: number;
  body: any;
}

/** An HTTP request failure: `sent` when the request may have reached the server. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly sent: boolean,
    readonly timeout: boolean,
  ) {
    super(message);
  }
}

const NOT_SENT = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EINVAL',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
]);

/** The harness's HTTPS client credentials (CA, client certificate), set by a TLS cluster's init(). */
let clientTls: { ca: string; cert: string; key: string } | undefined;

/** A keep-alive agent of one socket for the nodes' scheme (https once a TLS cluster is up). */
export function clientAgent(): Agent {
  const options = { keepAlive: true, maxSockets: 1 };
  return clientTls ? new NoDelayHttpsAgent(options) : new HttpAgent(options);
}

/**
 * One HTTP request with a hard timeout (the socket is destroyed when it runs out).
 * Rejects with RequestError; `sent` is false only when the connection was never made.
 */
export function request(
  url: string,
  method: string,
  body: string | undefined,
  timeoutMs: number,
  agent?: Agent,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let connected = false;
    let done = false;
    const u = new URL(url);
    const https = u.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)(
      {
        ...(https ? clientTls : {}),
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        agent: agent ?? false,
        headers:
          body === undefined
            ? {}
            : {
                'content-type': 'application/octet-stream',
                'content-length': Buffer.byteLength(body),
              },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', (err) => fail(err));
      },
    );
    const fail = (err: NodeJS.ErrnoException, timeout = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const code = timeout ? 'TIMEOUT' : (err.code ?? err.name);
      // A reused keep-alive socket is connected from the start: whatever happens then, the request may have left.
      const sent = timeout || connected || !NOT_SENT.has(code);
      reject(
        new RequestError(
          `${method} ${url}: ${timeout ? `no answer within ${timeoutMs} ms` : err.message}`,
          code,
          sent,
          timeout,
        ),
      );
      req.destroy();
    };
    const timer = setTimeout(() => fail(new Error('timeout'), true), timeoutMs);
    req.on('socket', (socket) => {
      if (!socket.connecting) connected = true;
      else
        socket.once('connect', () => {
          connected = true;
        });
    });
    req.on('error', (err) => fail(err));
    req.end(body);
  });
}

export interface ClusterOptions {
  size: number;
  root: string;
  logDir: string;
  net: NetnsNetwork | null;
  electionTimeoutMs: number;
  heartbeatMs: number;
  /** Passed to every node (--snapshot-threshold, --snapshot-trailing) when set. */
  snapshotThreshold?: number;
  snapshotTrailing?: number;
  /** Milliseconds since the run started (for the node logs). */
  clock: () => number;
  /** Run the nodes with --insecure (no TLS between members, plain HTTP) instead of mutual TLS. */
  insecure?: boolean;
}

/** The user the harness authenticates as (by its client certificate) on a TLS cluster. */
const HARNESS_USER = 'verify';

export class VerifyCluster {
  readonly specs = new Map<number, NodeSpec>();
  readonly procs = new Map<number, ChildProcess>();
  readonly state = new Map<number, NodeState>();
  /** Every child ever spawned: killAll() kills them by pid. */
  readonly #spawned: ChildProcess[] = [];
  /** Children the harness stopped on purpose, and how. */
  readonly #stopping = new Map<ChildProcess, 'kill' | 'term'>();
  /**
   * Nodes that exited without the harness stopping them (an abort, a segfault, an exit on an
   * error), or that failed a SIGTERM (a non-zero exit, a signal other than the one sent).
   * Any makes the run FAIL.
   */
  readonly crashes: string[] = [];
  clusterFlag = '';
  /** A TLS cluster's serve flags per node id (--ca, --cert, --key, --auth). */
  readonly #tlsArgs = new Map<number, string[]>();

  constructor(readonly options: ClusterOptions) {}

  get ids(): number[] {
    return [...this.specs.keys()];
  }
  get net(): NetnsNetwork | null {
    return this.options.net;
  }

  url(id: number): string {
    return `${this.options.insecure ? 'http' : 'https'}://${this.specs.get(id)!.http}`;
  }

  async init(): Promise<void> {
    const { size, root, logDir, net } = this.options;
    mkdirSync(logDir, { recursive: true });
    for (let id = 1; id <= size; id++) {
      let host = '127.0.0.1';
      let ports: number[];
      if (net) {
        // Namespaces outlive a schedule: the next one reuses them (fresh data dirs, same addresses).
        host = (net.nodes.get(id) ?? (await net.addNode(id))).address;
        ports = [7001, 8001, 9001];
      } else {
        ports = [await freePort(host), await freePort(host), await freePort(host)];
      }
      this.specs.set(id, {
        id,
        raft: `${host}:${ports[0]}`,
        http: `${host}:${ports[1]}`,
        channel: `${host}:${ports[2]}`,
        dataDir: join(root, `n${id}`),
        log: join(logDir, `node-${id}.log`),
      });
      this.state.set(id, 'dead');
    }
    this.clusterFlag = [...this.specs.values()].map((s) => `${s.id}=${s.raft}`).join(',');
    if (!this.options.insecure) await this.#makeCerts();
  }

  // A CA, a certificate per node naming its member id and valid for its address (a namespace's
  // own IP in netns mode), the harness's client certificate, and an auth file letting that
  // client do everything: on a namespace address serve's HTTP API needs --auth (--insecure
  // would also drop the members' TLS).
  async #makeCerts(): Promise<void> {
    const dir = join(this.options.root, 'certs');
    const ca = await createCa({ name: 'prevail verify CA', days: 2 });
    const caFile = writeCertFiles(dir, 'ca', ca).cert;
    const authFile = join(dir, 'auth.json');
    const permissions = ['read', 'write', 'admin'];
    writeFileSync(authFile, JSON.stringify({ users: [{ name: HARNESS_USER, permissions }] }));
    for (const spec of this.specs.values()) {
      const host = spec.raft.slice(0, spec.raft.lastIndexOf(':'));
      const hosts = [...new Set([host, '127.0.0.1', 'localhost'])];
      const pair = await createNodeCert(ca, { id: spec.id, hosts, days: 2 });
      const { cert, key } = writeCertFiles(dir, `node-${spec.id}`, pair);
      this.#tlsArgs.set(spec.id, [
        '--ca',
        caFile,
        '--cert',
        cert,
        '--key',
        key,
        '--auth',
        authFile,
      ]);
    }
    const client = await createClientCert(ca, { name: HARNESS_USER, days: 2 });
    clientTls = { ca: ca.cert, ...client };
  }

  #log(id: number, line: string): void {
    const fd = openSync(this.specs.get(id)!.log, 'a');
    try {
      writeSync(fd, `--- [harness ${(this.options.clock() / 1000).toFixed(3)} s] ${line}\n`);
    } finally {
      closeSync(fd);
    }
  }

  /** Spawns node id (with --join when `join`), without waiting. */
  spawn(id: number, join = false): ChildProcess {
    const spec = this.specs.get(id)!;
    const old = this.procs.get(id);
    if (old && old.exitCode === null && old.signalCode === null)
      throw new Error(`node ${id} is still running (pid ${old.pid})`);
    const args = [
      CLI,
      'serve',
      '--id',
      String(id),
      '--data',
      spec.dataDir,
      '--raft',
      spec.raft,
      '--http',
      spec.http,
      '--channel',
      spec.channel,
      '--election-timeout',
      String(this.options.electionTimeoutMs),
      '--heartbeat',
      String(this.options.heartbeatMs),
      ...(this.options.snapshotThreshold
        ? ['--snapshot-threshold', String(this.options.snapshotThreshold)]
        : []),
      ...(this.options.snapshotTrailing
        ? ['--snapshot-trailing', String(this.options.snapshotTrailing)]
        : []),
      ...(join ? ['--join'] : ['--cluster', this.clusterFlag]),
      ...(this.options.insecure ? ['--insecure'] : this.#tlsArgs.get(id)!),
    ];
    const [cmd, argv] = this.net
      ? this.net.wrap(id, process.execPath, args)
      : [process.execPath, args];
    const fd = openSync(spec.log, 'a');
    let child: ChildProcess;
    try {
      writeSync(
        fd,
        `--- [harness ${(this.options.clock() / 1000).toFixed(3)} s] start: ${cmd} ${argv.join(' ')}\n`,
      );
      child = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    child.on('error', () => {
      /* shows as an exit */
    });
    this.#spawned.push(child);
    this.procs.set(id, child);
    this.state.set(id, 'running');
    child.once('exit', (code, signal) => {
      if (this.procs.get(id) === child && this.state.get(id) !== 'removed')
        this.state.set(id, 'dead');
      this.#log(id, `pid ${child.pid} exited (${code ?? signal})`);
      const how = this.#stopping.get(child);
      const expected = how === 'kill' || (how === 'term' && (code === 0 || signal === 'SIGKILL'));
      if (!expected) {
        const what = how === 'term' ? 'after SIGTERM exited' : 'exited by itself';
        const clue = lastProblem(spec.log);
        this.crashes.push(
          `node ${id} (pid ${child.pid}) ${what} with ${code ?? signal} at ${(this.options.clock() / 1000).toFixed(1)} s` +
            `${clue ? `: ${clue}` : ''} (log ${spec.log})`,
        );
      }
    });
    return child;
  }

  alive(id: number): boolean {
    const c = this.procs.get(id);
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  /** The process's executable name as the kernel sees it (to check that `ip netns exec` exec'd node, keeping the pid). */
  comm(id: number): string | null {
    const pid = this.procs.get(id)?.pid;
    if (!pid) return null;
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      return null;
    }
  }

  async start(id: number, join = false, timeoutMs = 20_000): Promise<void> {
    this.spawn(id, join);
    await this.waitServing(id, timeoutMs);
  }

  async waitServing(id: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.alive(id))
        throw new Error(`node ${id} exited while starting; see ${this.specs.get(id)!.log}`);
      try {
        if ((await request(`${this.url(id)}/status`, 'GET', undefined, 1000)).status === 200)
          return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline)
        throw new Error(`node ${id} did not serve HTTP within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Waits (bounded) for a child to exit. */
  static async waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
    if (child.exitCode !== null || child.signalCode !== null) return true;
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      new Promise<boolean>((r) => child.once('exit', () => r(true))),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return exited;
  }

  /** kill -9 by pid (a paused process dies too), and wait for the exit. */
  async kill(id: number): Promise<void> {
    const child = this.procs.get(id);
    if (!child || !this.alive(id)) return;
    this.#log(id, `kill -9 ${child.pid}`);
    this.#stopping.set(child, 'kill');
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
    if (!(await VerifyCluster.waitExit(child, 10_000)))
      throw new Error(`node ${id} (pid ${child.pid}) did not exit after SIGKILL`);
  }

  /**
   * SIGTERM by pid (serve closes and exits 0), and wait for the exit; kill -9 after `timeoutMs`.
   * Returns false when it had to be killed.
   */
  async terminate(id: number, timeoutMs: number): Promise<boolean> {
    const child = this.procs.get(id);
    if (!child || !this.alive(id)) return true;
    this.#log(id, `SIGTERM ${child.pid}`);
    this.#stopping.set(child, 'term');
    try {
      process.kill(child.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
    if (await VerifyCluster.waitExit(child, timeoutMs)) return true;
    this.#log(id, `no exit within ${timeoutMs} ms of SIGTERM: kill -9 ${child.pid}`);
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
    if (!(await VerifyCluster.waitExit(child, 10_000)))
      throw new Error(`node ${id} (pid ${child.pid}) did not exit after SIGKILL`);
    return false;
  }

  pause(id: number): boolean {
    const child = this.procs.get(id);
    if (!child || !this.alive(id) || this.state.get(id) !== 'running') return false;
    this.#log(id, `SIGSTOP ${child.pid}`);
    process.kill(child.pid!, 'SIGSTOP');
    this.state.set(id, 'paused');
    return true;
  }

  resume(id: number): void {
    const child = this.procs.get(id);
    if (!child || !this.alive(id)) return;
    this.#log(id, `SIGCONT ${child.pid}`);
    process.kill(child.pid!, 'SIGCONT');
    if (this.state.get(id) === 'paused') this.state.set(id, 'running');
  }

  wipe(id: number): void {
    rmSync(this.specs.get(id)!.dataDir, { recursive: true, force: true });
  }

  /** GET /status of node id, or null. */
  async status(id: number, timeoutMs = 1500): Promise<any | null> {
    if (!this.alive(id) || this.state.get(id) === 'paused') return null;
    try {
      const a = await request(`${this.url(id)}/status`, 'GET', undefined, timeoutMs);
      return a.status === 200 ? a.body : null;
    } catch {
      return null;
    }
  }

  /** The node that is leader with the highest term among those that answer, or null. */
  async leader(): Promise<number | null> {
    const ids = this.ids.filter((id) => this.alive(id) && this.state.get(id) === 'running');
    const statuses = await Promise.all(ids.map((id) => this.status(id)));
    let best: { id: number; term: number } | null = null;
    for (const s of statuses) {
      if (s && s.role === 'leader' && (!best || s.term > best.term))
        best = { id: s.id, term: s.term };
    }
    return best?.id ?? null;
  }

  async waitLeader(timeoutMs: number): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.leader();
      if (l !== null) return l;
      if (Date.now() > deadline) return null;
      await sleep(100);
    }
  }

  /** SIGCONT and SIGKILL every process ever spawned, by pid; waits (bounded) for them to exit. */
  async killAll(): Promise<void> {
    for (const child of this.#spawned) {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        this.#stopping.set(child, 'kill');
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await Promise.all(this.#spawned.map((c) => VerifyCluster.waitExit(c, 10_000)));
  }

  /** Synchronous variant for process 'exit' handlers. */
  killAllSync(): void {
    for (const child of this.#spawned) {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        this.#stopping.set(child, 'kill');
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }
}

/** The last line of a node log that says why a process died (an assertion, a fatal signal, a coded error), if any. */
function lastProblem(path: string): string | null {
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 8192);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    const lines = buf
      .toString('utf8')
      .split('\n')
      .filter((l) => /Assertion|Segmentation|Aborted|FATAL|PREVAIL_[A-Z_]+|Error:/.test(l));
    return lines.length ? lines[lines.length - 1]!.trim().slice(0, 300) : null;
  } catch {
    return null;
  }
}

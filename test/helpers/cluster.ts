// Spawns RaftNodes (test/fixtures/node-process.mjs, or the store fixture) in child processes
// and drives them over IPC, and `prevail serve` nodes (ServiceCluster) over HTTP. Every wait
// is bounded; every child is killed by pid in stop().
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { tlsFiles, writeClusterCerts, type TestCa } from './test-certs.js';

/** The child-process programs: a bare RaftNode (default), a Store (the object store), or the rolling-upgrade test's bank (schema v1 or v2). */
export const fixtures = {
  raftNode: join(process.cwd(), 'test', 'fixtures', 'node-process.mjs'),
  store: join(process.cwd(), 'test', 'fixtures', 'store-process.mjs'),
  upgrade: join(process.cwd(), 'test', 'fixtures', 'upgrade-process.mjs'),
};

// Ports for nodes come from below the kernel's ephemeral range, so that a node restarted on
// its old port can't find it taken by some process's outgoing connection or port-0 listener
// (our own peer channels listen on port 0) in the meantime.
const [ephemeralLow] = (() => {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
  } catch {
    return [32768];
  }
})();
const PORT_LOW = 20000;
const PORT_HIGH = Math.max(PORT_LOW + 1000, Math.min(ephemeralLow ?? 32768, 32768));
const handedOut = new Set<number>();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Free TCP ports on 127.0.0.1, outside the ephemeral range, not handed out before by this process. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < n; attempt++) {
    if (attempt > 10_000) throw new Error(`no ${n} free ports in ${PORT_LOW}..${PORT_HIGH}`);
    // Jest runs test files in parallel workers: start from a random point so they rarely collide.
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW));
    if (handedOut.has(port) || !(await canBind(port))) continue;
    handedOut.add(port);
    ports.push(port);
  }
  return ports;
}

/** The first of `n` consecutive TCP ports on 127.0.0.1 that are free right now. */
export async function consecutiveFreePorts(n: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const [first] = await freePorts(1);
    if (first! + n > 65536) continue;
    let ok = true;
    for (let d = 1; d < n && ok; d++) ok = await canBind(first! + d);
    if (ok) return first!;
  }
  throw new Error(`no ${n} consecutive free ports found`);
}

export function tempDir(prefix = 'prevail-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** `exited`, or 'timeout' after `timeoutMs`: how both process kinds wait (bounded) for an exit. */
async function exitOrTimeout<T>(exited: Promise<T>, timeoutMs: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    exited,
    new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

export interface NodeSpec {
  id: number;
  address: string;
  dataDir: string;
}

export class NodeProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  events: { event: string; [k: string]: unknown }[] = [];
  /** stdout and stderr, when started with `captureOutput` (otherwise they go to this process's). */
  output = '';
  #next = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  ready: Promise<unknown>;

  constructor(
    readonly spec: NodeSpec,
    options: Record<string, unknown>,
    fixture = fixtures.raftNode,
    captureOutput = false,
  ) {
    this.child = fork(fixture, [JSON.stringify({ ...spec, ...options })], {
      stdio: [
        'ignore',
        captureOutput ? 'pipe' : 'inherit',
        captureOutput ? 'pipe' : 'inherit',
        'ipc',
      ],
    });
    if (captureOutput) {
      const keep = (chunk: Buffer) => {
        this.output += chunk.toString();
      };
      this.child.stdout!.on('data', keep);
      this.child.stderr!.on('data', keep);
    }
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    let readyResolve!: (v: unknown) => void;
    let readyReject!: (e: unknown) => void;
    this.ready = new Promise((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.child.on(
      'message',
      (msg: { id?: number; event?: string; result?: unknown; error?: unknown }) => {
        if (msg.event) {
          this.events.push(msg as { event: string });
          if (msg.event === 'ready') readyResolve(msg);
          return;
        }
        const waiter = msg.id !== undefined ? this.#pending.get(msg.id) : undefined;
        if (!waiter) return;
        this.#pending.delete(msg.id!);
        if (msg.error)
          waiter.reject(
            Object.assign(new Error((msg.error as { message: string }).message), msg.error),
          );
        else waiter.resolve(msg.result);
      },
    );
    void this.exited.then((code) => {
      readyReject(new Error(`node ${spec.id} exited with ${code} before it was ready`));
      for (const w of this.#pending.values()) w.reject(new Error(`node ${spec.id} exited`));
      this.#pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  call<T = unknown>(cmd: string, args?: unknown, timeoutMs = 20_000): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`node ${this.spec.id}: ${cmd} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (!this.alive || !this.child.connected) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new Error(`node ${this.spec.id} is not running`));
        return;
      }
      // With a callback, a node that died since the check above fails this call (EPIPE)
      // instead of raising an 'error' event on the child.
      this.child.send({ id, cmd, args }, (err) => {
        if (!err || !this.#pending.has(id)) return;
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err);
      });
    });
  }

  /** Waits (bounded) for the process to exit by itself; resolves with its exit code, or 'timeout'. */
  waitExit(timeoutMs = 10_000): Promise<number | null | 'timeout'> {
    return exitOrTimeout(this.exited, timeoutMs);
  }

  /** kill -9, then wait (bounded) for the exit. */
  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.waitExit(5000);
  }
}

export interface Status {
  id: number;
  role: string;
  term: number;
  leader: { id: number; address: string } | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  members: { id: number; address: string; role: string; matchIndex?: number }[];
  snapshot: { index: number; term: number };
}

export interface RawRecord {
  index: number;
  length: number;
  digest: string;
}

export interface FsmState {
  hash: string;
  applied: number;
  size: number;
  restores: number;
  keys: string[];
  /** Raw (non-JSON) commands applied, in log order. */
  raw: RawRecord[];
}

/** What Cluster and ServiceCluster share: node specs under one temp root, the current process per id. */
abstract class Nodes<S extends NodeSpec, P extends { spec: S; alive: boolean }> {
  nodes = new Map<number, P>();
  specs: S[] = [];

  constructor(readonly root: string) {}

  protected spec(id: number): S {
    return this.specs.find((s) => s.id === id)!;
  }

  /** Records the spec of a new node id (not started, not a member yet). */
  protected pushSpec(spec: S): S {
    this.specs.push(spec);
    return spec;
  }

  node(id: number): P {
    return this.nodes.get(id)!;
  }

  running(): P[] {
    return [...this.nodes.values()].filter((n) => n.alive);
  }

  /** The running nodes other than `node`. */
  others(node: P): P[] {
    return this.running().filter((n) => n !== node);
  }
}

export class Cluster extends Nodes<NodeSpec, NodeProcess> {
  constructor(
    readonly options: Record<string, unknown> = {},
    readonly fixture = fixtures.raftNode,
  ) {
    super(tempDir('prevail-cluster-'));
  }

  static async create(
    size: number,
    options: Record<string, unknown> = {},
    fixture = fixtures.raftNode,
  ): Promise<Cluster> {
    const cluster = new Cluster(options, fixture);
    const ports = await freePorts(size);
    cluster.specs = ports.map((port, i) => ({
      id: i + 1,
      address: `127.0.0.1:${port}`,
      dataDir: join(cluster.root, `n${i + 1}`),
    }));
    await cluster.startAll();
    return cluster;
  }

  #ca: Promise<TestCa> | undefined;
  #certified = new Set<number>();

  // Members speak mutual TLS unless the test asks for `insecure`: member `id`'s files, made on
  // first use by lib/certs (one CA per cluster).
  async #tls(id: number): Promise<ReturnType<typeof tlsFiles> | undefined> {
    if (this.options.insecure) return undefined;
    const ca = await this.authority();
    if (!this.#certified.has(id)) {
      this.#certified.add(id);
      await writeClusterCerts(this.certDir, [id], ca);
    }
    return tlsFiles(this.certDir, id);
  }

  /** The cluster's CA, to sign certificates of its own (an outsider's, a client's). */
  async authority(): Promise<TestCa> {
    if (this.options.insecure) throw new Error('an insecure cluster has no CA');
    this.#ca ??= writeClusterCerts(this.certDir, []);
    return this.#ca;
  }

  /** Where the members' certificates are (ca.pem, node-<id>.pem, node-<id>-key.pem). */
  get certDir(): string {
    return join(this.root, 'certs');
  }

  get initialMembers(): { id: number; address: string }[] {
    return this.specs.map(({ id, address }) => ({ id, address }));
  }

  async start(
    id: number,
    extra: Record<string, unknown> = {},
    captureOutput = false,
  ): Promise<NodeProcess> {
    const tls = await this.#tls(id);
    const node = new NodeProcess(
      this.spec(id),
      {
        cluster: this.initialMembers,
        ...(tls ? { tls } : {}),
        ...this.options,
        ...extra,
      },
      this.fixture,
      captureOutput,
    );
    this.nodes.set(id, node);
    await node.ready;
    return node;
  }

  /** Starts every node of `specs` (first start, or a restart of them all) and waits until each is ready. */
  async startAll(): Promise<void> {
    await Promise.all(this.specs.map((s) => this.start(s.id)));
  }

  /** Adds a spec for a new node id (not started, not a member yet). */
  async addSpec(id: number): Promise<NodeSpec> {
    const [port] = await freePorts(1);
    return this.pushSpec({ id, address: `127.0.0.1:${port}`, dataDir: join(this.root, `n${id}`) });
  }

  /** Waits until the running nodes agree on one leader, and returns it. */
  async leader(timeoutMs = 10_000, exclude: number[] = []): Promise<NodeProcess> {
    return waitFor(
      'a leader',
      async () => {
        const statuses = await Promise.all(
          this.running().map((n) => n.call<Status>('status', undefined, 2000)),
        );
        const leaders = statuses.filter((s) => s.role === 'leader' && !exclude.includes(s.id));
        if (leaders.length !== 1) return undefined;
        return this.node(leaders[0]!.id);
      },
      timeoutMs,
    );
  }

  async states(nodes: NodeProcess[] = this.running()): Promise<Map<number, FsmState>> {
    const out = new Map<number, FsmState>();
    for (const n of nodes) out.set(n.spec.id, await n.call<FsmState>('state'));
    return out;
  }

  /** Waits until every given node (default: every running node) has applied at least `index`. */
  async converge(
    index: number,
    timeoutMs = 15_000,
    nodes?: NodeProcess[],
  ): Promise<Map<number, FsmState>> {
    return waitFor(
      `nodes ${(nodes ?? this.running()).map((n) => n.spec.id).join(',')} to apply ${index}`,
      async () => {
        const states = await this.states(nodes ?? this.running());
        return [...states.values()].every((s) => s.applied >= index) ? states : undefined;
      },
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

// ---- the reference service: `node dist/cli.js serve` children, spoken to over HTTP ----------

const cli = join(process.cwd(), 'dist', 'cli.js');

export interface ServeSpec extends NodeSpec {
  /** host:port of the node's HTTP API. */
  http: string;
}

export interface HttpAnswer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** What an https client needs: the CA(s) to verify nodes with, a client certificate if any. */
export interface ClientTls {
  ca: string;
  cert?: string;
  key?: string;
}

/**
 * One HTTP request to a node; the body is parsed as JSON when it is JSON. Bounded by `timeoutMs`.
 * An https URL is verified with `tls.ca` (and shows `tls.cert`, if given).
 */
export async function httpRequest<T = any>(
  url: string,
  method = 'GET',
  body?: string | Uint8Array | object,
  timeoutMs = 20_000,
  tls?: ClientTls,
): Promise<HttpAnswer<T>> {
  const raw =
    body === undefined || typeof body === 'string' || body instanceof Uint8Array
      ? body
      : JSON.stringify(body);
  const res = url.startsWith('https:')
    ? await httpsFetch(url, method, raw, timeoutMs, tls)
    : await fetch(url, { method, body: raw ?? null, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

// fetch() can't be given a CA without undici's Agent (not a dependency): node:https can.
function httpsFetch(
  url: string,
  method: string,
  body: string | Uint8Array | undefined,
  timeoutMs: number,
  tls: ClientTls | undefined,
): Promise<{ status: number; headers: Headers; text(): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method, ...tls, agent: false, signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers))
            if (typeof v === 'string') headers.set(k, v);
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, headers, text: async () => text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A `prevail serve` child process. Its output is kept (and shown when it fails to start). */
export class ServeProcess {
  child: ChildProcess;
  output = '';
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly spec: ServeSpec,
    args: string[],
    /** With it, the node is asked over https (it serves HTTPS when given --ca/--cert/--key). */
    readonly tls?: () => ClientTls,
    /** Added to the environment the child inherits. */
    env?: Record<string, string>,
  ) {
    this.child = spawn(
      process.execPath,
      [
        cli,
        'serve',
        '--id',
        String(spec.id),
        '--raft',
        spec.address,
        '--http',
        spec.http,
        '--data',
        spec.dataDir,
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : undefined },
    );
    const keep = (chunk: Buffer) => {
      this.output += chunk.toString();
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://${this.spec.http}`;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  request<T = any>(
    method: string,
    path: string,
    body?: string | Uint8Array | object,
    timeoutMs?: number,
  ): Promise<HttpAnswer<T>> {
    return httpRequest<T>(`${this.url}${path}`, method, body, timeoutMs, this.tls?.());
  }

  /** Waits (bounded) until the node answers GET /status. */
  async ready(timeoutMs = 15_000): Promise<void> {
    await waitFor(
      `node ${this.spec.id} to serve HTTP`,
      async () => {
        if (!this.alive) throw new Error(`node ${this.spec.id} exited:\n${this.output}`);
        return (await this.request('GET', '/status', undefined, 2000)).status === 200;
      },
      timeoutMs,
      50,
    );
  }

  /** Waits (bounded) for the process to exit by itself. */
  waitExit(
    timeoutMs = 15_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
    return exitOrTimeout(this.exited, timeoutMs);
  }

  /** SIGTERM and wait (bounded) for the exit. */
  async terminate(
    timeoutMs = 20_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
    if (this.alive) process.kill(this.pid, 'SIGTERM');
    return this.waitExit(timeoutMs);
  }

  /** kill -9 by pid, then wait (bounded) for the exit. */
  async kill(): Promise<void> {
    if (this.alive) process.kill(this.pid, 'SIGKILL');
    await this.waitExit(5000);
  }
}

/** Nodes of the reference service, each a `prevail serve` child with its own data dir and ports. */
export class ServiceCluster extends Nodes<ServeSpec, ServeProcess> {
  /** Every process ever started, restarted ones included: stop() kills them all. */
  #spawned: ServeProcess[] = [];

  /**
   * `args` go to every node, or are made per node id. With --ca among them the nodes serve
   * HTTPS, and `clientTls` is what requests verify them with (read on each request: a test
   * rotating CAs changes it).
   */
  constructor(
    readonly args: string[] | ((id: number) => string[]) = [],
    public clientTls?: ClientTls,
  ) {
    super(tempDir('prevail-service-'));
  }

  static async create(
    size: number,
    args: string[] | ((id: number) => string[]) = [],
    clientTls?: ClientTls,
  ): Promise<ServiceCluster> {
    const cluster = new ServiceCluster(args, clientTls);
    const ports = await freePorts(size * 2);
    cluster.specs = Array.from({ length: size }, (_, i) => ({
      id: i + 1,
      address: `127.0.0.1:${ports[2 * i]}`,
      http: `127.0.0.1:${ports[2 * i + 1]}`,
      dataDir: join(cluster.root, `n${i + 1}`),
    }));
    cluster.clusterFlag = cluster.specs.map((s) => `${s.id}=${s.address}`).join(',');
    try {
      await Promise.all(cluster.specs.map((s) => cluster.start(s.id)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** The --cluster flag: the members the cluster was created with. */
  clusterFlag = '';

  /** Starts (or restarts) node `id` and waits until it serves HTTP; with `--join` in `extra`, without --cluster. */
  async start(id: number, extra: string[] = []): Promise<ServeProcess> {
    const membership = extra.includes('--join') ? [] : ['--cluster', this.clusterFlag];
    // Without --ca the members' traffic is plain TCP: most of these tests are about the HTTP API
    // (with it, HTTPS and mutual TLS: test/cluster/rotation.test.ts).
    const args = typeof this.args === 'function' ? this.args(id) : this.args;
    const https = args.includes('--ca');
    const security = https ? [] : ['--insecure'];
    const node = new ServeProcess(
      this.spec(id),
      [...membership, ...security, ...args, ...extra],
      https ? () => this.clientTls! : undefined,
    );
    this.#spawned.push(node);
    this.nodes.set(id, node);
    await node.ready();
    return node;
  }

  /** A spec (ports, data dir) for a new node id: not started, not a member. */
  async addSpec(id: number): Promise<ServeSpec> {
    const [raft, http] = await freePorts(2);
    return this.pushSpec({
      id,
      address: `127.0.0.1:${raft}`,
      http: `127.0.0.1:${http}`,
      dataDir: join(this.root, `n${id}`),
    });
  }

  /** Every running node's URL, comma-separated (the CLI's --node). */
  get urls(): string {
    return this.running()
      .map((n) => n.url)
      .join(',');
  }

  /** Waits until exactly one running node (not in `exclude`) answers /health/leader with 200, and returns it. */
  async leader(timeoutMs = 15_000, exclude: number[] = []): Promise<ServeProcess> {
    return waitFor(
      'one leader',
      async () => {
        const nodes = this.running().filter((n) => !exclude.includes(n.spec.id));
        const answers = await Promise.all(
          nodes.map((n) => n.request('GET', '/health/leader', undefined, 2000).catch(() => null)),
        );
        const leaders = nodes.filter((_, i) => answers[i]?.status === 200);
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      timeoutMs,
      50,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.#spawned.map((n) => n.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Runs `node dist/cli.js ...args` to completion (killed by pid after `timeoutMs`). */
export function runCli(
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

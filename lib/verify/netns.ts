// Network namespaces for the verification harness (lib/verify/run.ts): each node gets its own
// namespace with one veth link to a bridge in the root namespace, addresses in a private /24
// (10.77.<run>.<id>, the bridge 10.77.<run>.254). A partition is a set of blackhole routes
// inside the namespaces (both directions of every cut pair), so the bytes really stop: a
// connect() from a cut node fails at once (EINVAL from the blackhole route) and one towards
// it times out (its SYN-ACK is dropped). The harness and its clients, in the root namespace,
// reach every node through the bridge at all times.
//
// Needs root and `ip` (iproute2). Every `ip` call is bounded. destroy() deletes whatever was
// created, and a run that was killed before it could clean up is swept by the next one
// (sweepStale: the marker file names the owner's pid).
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pidAlive } from '../core/processes.js';

const IP_TIMEOUT_MS = 10_000;
/** Where each live network's marker file (owner pid, what it created) is kept. */
export const MARKERS = join(tmpdir(), 'prevail-verify-netns');

export interface IpResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ip ...args` (bounded); never throws. */
export function ip(args: string[], timeoutMs = IP_TIMEOUT_MS): Promise<IpResult> {
  return new Promise((resolve) => {
    execFile('ip', args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : 1
        : 0;
      resolve({
        code,
        stdout: String(stdout),
        stderr: String(stderr) || (err && !stderr ? String(err.message) : ''),
      });
    });
  });
}

async function ipOk(args: string[]): Promise<string> {
  const r = await ip(args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Whether namespaces can be used here: root, `ip` present, and a probe namespace can be made and removed. */
export async function netnsAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `not Linux (${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    return { ok: false, reason: 'not running as root' };
  const version = await ip(['-V']);
  if (version.code !== 0)
    return { ok: false, reason: `no usable \`ip\` command: ${version.stderr.trim()}` };
  const probe = `pv-probe-${process.pid}`;
  const add = await ip(['netns', 'add', probe]);
  if (add.code !== 0) return { ok: false, reason: `ip netns add failed: ${add.stderr.trim()}` };
  await ip(['netns', 'del', probe]);
  return { ok: true };
}

interface Marker {
  pid: number;
  run: number;
  namespaces: string[];
  links: string[];
}

/** Deletes namespaces and links left by earlier harness processes that are gone. */
export async function sweepStale(): Promise<string[]> {
  const swept: string[] = [];
  let files: string[];
  try {
    files = readdirSync(MARKERS);
  } catch {
    return swept;
  }
  for (const f of files) {
    const path = join(MARKERS, f);
    let m: Marker;
    try {
      m = JSON.parse(readFileSync(path, 'utf8')) as Marker;
    } catch {
      continue;
    }
    if (pidAlive(m.pid)) continue;
    for (const ns of m.namespaces) {
      // A harness killed with SIGKILL leaves its nodes running inside: they die with it here.
      for (const pid of (await ip(['netns', 'pids', ns])).stdout
        .split(/\s+/)
        .filter((p) => /^\d+$/.test(p))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
          swept.push(`pid ${pid} in ${ns}`);
        } catch {
          /* gone */
        }
      }
      if ((await ip(['netns', 'del', ns])).code === 0) swept.push(ns);
    }
    for (const link of m.links) if ((await ip(['link', 'del', link])).code === 0) swept.push(link);
    rmSync(path, { force: true });
  }
  return swept;
}

export interface NetnsNode {
  id: number;
  ns: string;
  address: string;
  hostLink: string;
}

/**
 * One bridge and one namespace per node. `create()` claims a free run number (the bridge
 * name is the lock: `ip link add` fails when it exists), `addNode()` makes a node's
 * namespace, `cut()`/`heal()` change the blackhole routes, `destroy()` removes it all.
 */
export class NetnsNetwork {
  readonly nodes = new Map<number, NetnsNode>();
  /** Cut pairs "a-b" (a < b) currently blackholed. */
  readonly cuts = new Set<string>();
  /** What create() swept from earlier runs that died without cleaning up. */
  swept: string[] = [];
  #marker: string;

  private constructor(readonly run: number) {
    this.#marker = join(MARKERS, `${run}.json`);
  }

  get markerPath(): string {
    return this.#marker;
  }
  get bridge(): string {
    return `pvbr${this.run}`;
  }
  get subnet(): string {
    return `10.77.${this.run}.0/24`;
  }
  get bridgeAddress(): string {
    return `10.77.${this.run}.254`;
  }
  addressOf(id: number): string {
    return `10.77.${this.run}.${id}`;
  }
  nsOf(id: number): string {
    return `pv-${this.run}-${id}`;
  }

  static async create(preferredRun?: number): Promise<NetnsNetwork> {
    const swept = await sweepStale();
    const used = await ip(['-4', '-o', 'addr', 'show']);
    const start = preferredRun ?? 1 + (process.pid % 200);
    for (let k = 0; k < 250; k++) {
      const run = 1 + ((start - 1 + k) % 250);
      if (used.stdout.includes(` 10.77.${run}.`)) continue;
      const net = new NetnsNetwork(run);
      net.swept = swept;
      if ((await ip(['link', 'add', net.bridge, 'type', 'bridge'])).code !== 0) continue;
      try {
        net.#writeMarker();
        await ipOk(['addr', 'add', `${net.bridgeAddress}/24`, 'dev', net.bridge]);
        await ipOk(['link', 'set', net.bridge, 'up']);
      } catch (err) {
        await net.destroy();
        throw err;
      }
      return net;
    }
    throw new Error('no free 10.77.x.0/24 subnet / bridge name for the harness');
  }

  #writeMarker(): void {
    mkdirSync(MARKERS, { recursive: true });
    const marker: Marker = {
      pid: process.pid,
      run: this.run,
      namespaces: [...this.nodes.values()].map((n) => n.ns),
      links: [this.bridge, ...[...this.nodes.values()].map((n) => n.hostLink)],
    };
    writeFileSync(this.#marker, JSON.stringify(marker));
  }

  /** Makes node `id`'s namespace: lo up, eth0 (a veth to the bridge) with 10.77.<run>.<id>/24. */
  async addNode(id: number): Promise<NetnsNode> {
    if (id < 1 || id > 250) throw new Error(`node id ${id} out of range for a /24`);
    const node: NetnsNode = {
      id,
      ns: this.nsOf(id),
      address: this.addressOf(id),
      hostLink: `pv${this.run}n${id}`,
    };
    const peer = `pv${this.run}p${id}`;
    this.nodes.set(id, node);
    this.#writeMarker();
    await ipOk(['netns', 'add', node.ns]);
    await ipOk(['link', 'add', node.hostLink, 'type', 'veth', 'peer', 'name', peer]);
    await ipOk(['link', 'set', peer, 'netns', node.ns]);
    await ipOk(['-n', node.ns, 'link', 'set', peer, 'name', 'eth0']);
    await ipOk(['-n', node.ns, 'addr', 'add', `${node.address}/24`, 'dev', 'eth0']);
    await ipOk(['-n', node.ns, 'link', 'set', 'eth0', 'up']);
    await ipOk(['-n', node.ns, 'link', 'set', 'lo', 'up']);
    await ipOk(['link', 'set', node.hostLink, 'master', this.bridge]);
    await ipOk(['link', 'set', node.hostLink, 'up']);
    return node;
  }

  /** The command line that runs `cmd args` inside node `id`'s namespace (ip netns exec execs: the pid is cmd's). */
  wrap(id: number, cmd: string, args: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.nsOf(id), cmd, ...args]];
  }

  static #pair(a: number, b: number): string {
    return a < b ? `${a}-${b}` : `${b}-${a}`;
  }

  /** Blackholes traffic between a and b, both directions. */
  async cut(a: number, b: number): Promise<void> {
    const key = NetnsNetwork.#pair(a, b);
    if (this.cuts.has(key)) return;
    this.cuts.add(key);
    await ipOk(['-n', this.nsOf(a), 'route', 'add', 'blackhole', `${this.addressOf(b)}/32`]);
    await ipOk(['-n', this.nsOf(b), 'route', 'add', 'blackhole', `${this.addressOf(a)}/32`]);
  }

  /** Cuts every listed pair (see partitionPairs); other links stay up. */
  async partition(pairs: [number, number][]): Promise<void> {
    for (const [a, b] of pairs) await this.cut(a, b);
  }

  /** Removes every blackhole route this network added. */
  async heal(): Promise<void> {
    for (const key of [...this.cuts]) {
      const [a, b] = key.split('-').map(Number) as [number, number];
      await ip(['-n', this.nsOf(a), 'route', 'del', 'blackhole', `${this.addressOf(b)}/32`]);
      await ip(['-n', this.nsOf(b), 'route', 'del', 'blackhole', `${this.addressOf(a)}/32`]);
      this.cuts.delete(key);
    }
  }

  /** The blackhole routes inside node id's namespace (for checks and the report). */
  async routes(id: number): Promise<string> {
    return (await ip(['-n', this.nsOf(id), 'route', 'show', 'type', 'blackhole'])).stdout;
  }

  /** Deletes every namespace, veth and the bridge. Best effort, never throws; idempotent. */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    for (const node of this.nodes.values()) {
      const r = await ip(['netns', 'del', node.ns]);
      if (r.code !== 0 && !/No such file/i.test(r.stderr))
        problems.push(`netns del ${node.ns}: ${r.stderr.trim()}`);
      // The host end of the veth goes with its peer; delete it in case the namespace lingers.
      await ip(['link', 'del', node.hostLink]);
    }
    const r = await ip(['link', 'del', this.bridge]);
    if (r.code !== 0 && !/Cannot find device/i.test(r.stderr))
      problems.push(`link del ${this.bridge}: ${r.stderr.trim()}`);
    this.nodes.clear();
    this.cuts.clear();
    rmSync(this.#marker, { force: true });
    return problems;
  }
}

/** Cut pairs for a named partition of `ids` (the order of `ids` is the random order to draw from). */
export function partitionPairs(
  kind: 'halves' | 'isolate' | 'bridge',
  ids: number[],
  isolated?: number,
): {
  pairs: [number, number][];
  describe: string;
} {
  const pairsBetween = (a: number[], b: number[]) =>
    a.flatMap((x) => b.map((y) => [x, y] as [number, number]));
  if (kind === 'isolate') {
    const one = isolated ?? ids[0]!;
    const rest = ids.filter((i) => i !== one);
    return { pairs: pairsBetween([one], rest), describe: `isolate ${one} | ${rest.join(',')}` };
  }
  const minority = Math.floor((ids.length - 1) / 2);
  if (kind === 'halves') {
    const a = ids.slice(0, minority);
    const b = ids.slice(minority);
    return { pairs: pairsBetween(a, b), describe: `${a.join(',')} | ${b.join(',')}` };
  }
  // bridge: two halves that can't see each other, and one node that sees both.
  const hub = ids[0]!;
  const rest = ids.slice(1);
  const a = rest.slice(0, Math.floor(rest.length / 2));
  const b = rest.slice(Math.floor(rest.length / 2));
  return {
    pairs: pairsBetween(a, b),
    describe: `bridge ${hub}: ${a.join(',')} | ${b.join(',')} (${hub} sees both)`,
  };
}

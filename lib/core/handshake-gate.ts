// Bounds what a stranger can make a TLS server spend before it knows who they are. A TCP
// connection costs a file descriptor and memory until its handshake ends (or times out), and a
// handshake costs the server a key exchange and a signature: without a bound, one host that
// opens connections and stays silent exhausts the descriptors the engine needs for its log, and
// one that handshakes in a loop burns a core. Connections whose handshake is done are not
// counted: a member or client that authenticated is not a stranger.
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { channels, debug } from './diagnostics.js';

/** Limits on connections still in their TLS handshake. */
export interface HandshakeLimits {
  /** Handshakes in progress from one host (an IPv4 address, or an IPv6 /64). */
  perHost: number;
  /** Handshakes in progress from all hosts together. */
  total: number;
  /** New connections one host may open per second, sustained (a token bucket)… */
  perHostPerSecond: number;
  /** …and at once, after a quiet spell. */
  burst: number;
}

/**
 * The members' port. Members open a handful of connections per peer (the engine's, a spare, the
 * peer channel) and replace them rarely; a restart or a healed partition opens them again at
 * once. 32 per second keeps a handshake loop from one host under a few percent of a core.
 */
export const MEMBER_PORT_LIMITS: Readonly<HandshakeLimits> = {
  perHost: 32,
  total: 512,
  perHostPerSecond: 32,
  burst: 64,
};

/**
 * The HTTP API. Clients open a pool of connections at once, and some open one per request
 * (curl in a loop), so no rate: only the number in their handshake is bounded.
 */
export const API_PORT_LIMITS: Readonly<HandshakeLimits> = {
  perHost: 256,
  total: 1024,
  perHostPerSecond: Infinity,
  burst: Infinity,
};

/** Hosts tracked at most; past it (after dropping the idle ones) new hosts are refused. */
const MAX_HOSTS = 4096;

export type Refusal = 'host-busy' | 'busy' | 'rate';

interface HostState {
  pending: number;
  tokens: number;
  refilledAt: number;
}

/** The bookkeeping, without sockets or clocks (times are passed in, in ms). */
export class HandshakeGate {
  readonly #limits: HandshakeLimits;
  readonly #hosts = new Map<string, HostState>();
  #pending = 0;

  constructor(limits: HandshakeLimits) {
    this.#limits = limits;
  }

  /** Handshakes in progress. */
  get pending(): number {
    return this.#pending;
  }

  /** Null when a new connection from `host` may handshake (it then counts until done()), else why not. */
  admit(host: string, nowMs: number): Refusal | null {
    if (this.#pending >= this.#limits.total) return 'busy';
    let state = this.#hosts.get(host);
    if (state === undefined) {
      if (this.#hosts.size >= MAX_HOSTS) this.#dropIdle(nowMs);
      if (this.#hosts.size >= MAX_HOSTS) return 'busy';
      state = { pending: 0, tokens: this.#limits.burst, refilledAt: nowMs };
      this.#hosts.set(host, state);
    }
    this.#refill(state, nowMs);
    if (state.pending >= this.#limits.perHost) return 'host-busy';
    if (state.tokens < 1) return 'rate';
    state.tokens -= 1;
    state.pending += 1;
    this.#pending += 1;
    return null;
  }

  /** A connection admitted from `host` finished its handshake, or closed before. */
  done(host: string): void {
    const state = this.#hosts.get(host);
    if (state === undefined || state.pending === 0) return;
    state.pending -= 1;
    this.#pending -= 1;
    if (state.pending === 0 && state.tokens >= this.#limits.burst) this.#hosts.delete(host);
  }

  #refill(state: HostState, nowMs: number): void {
    const earned = ((nowMs - state.refilledAt) / 1000) * this.#limits.perHostPerSecond;
    state.tokens = Math.min(this.#limits.burst, state.tokens + (Number.isNaN(earned) ? 0 : earned));
    state.refilledAt = nowMs;
  }

  #dropIdle(nowMs: number): void {
    for (const [host, state] of this.#hosts) {
      this.#refill(state, nowMs);
      if (state.pending === 0 && state.tokens >= this.#limits.burst) this.#hosts.delete(host);
    }
  }
}

/** Who a remote address counts as: itself for IPv4, its /64 for IPv6 (one host holds a /64). */
export function hostKey(address: string): string {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (!v4.includes(':')) return v4;
  const groups = expandIpv6(address);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : address;
}

function expandIpv6(address: string): string[] | null {
  const [head, tail, more] = address.split('::');
  if (more !== undefined) return null;
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return null;
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((g) =>
    g.toLowerCase().replace(/^0+(?=.)/, ''),
  );
}

/**
 * Puts `server`'s connections through a gate with `limits`: a connection over a limit is closed
 * before its handshake starts (published on `prevail:connection-refused` as `{ port, host,
 * reason }`). `port` names the server in those reports.
 */
export function gateHandshakes(
  server: TlsServer,
  limits: HandshakeLimits,
  port: 'members' | 'http',
): HandshakeGate {
  const gate = new HandshakeGate(limits);
  // The TLS socket reports its TCP socket's addresses: a handshake that ends is found by them.
  const inHandshake = new Map<string, Socket>();
  const finish = (key: string, tcp: Socket, host: string): void => {
    if (inHandshake.get(key) !== tcp) return;
    inHandshake.delete(key);
    gate.done(host);
  };
  server.on('connection', (tcp: Socket) => {
    const address = tcp.remoteAddress;
    if (address === undefined) return void tcp.destroy(); // closed already
    const host = hostKey(address);
    const reason = gate.admit(host, performance.now());
    if (reason !== null) {
      debug('%s port: refused a connection from %s (%s)', port, address, reason);
      if (channels.refusedConnection.hasSubscribers)
        channels.refusedConnection.publish({ port, host, reason });
      return void tcp.destroy();
    }
    const key = `${address}|${tcp.remotePort}`;
    inHandshake.set(key, tcp);
    tcp.once('close', () => finish(key, tcp, host));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const key = `${socket.remoteAddress}|${socket.remotePort}`;
    const tcp = inHandshake.get(key);
    if (tcp && socket.remoteAddress !== undefined) finish(key, tcp, hostKey(socket.remoteAddress));
  });
  return gate;
}

// Mutual TLS between members, on one port per node: the engine's traffic and the peer channel
// (lib/cluster/peer-channel.ts) share the raft address, told apart by ALPN. Each side's member id
// is the one its certificate names (lib/core/identity.ts), checked against the id the engine
// dials or, on accept, handed to the engine as the sender: a member can't speak as another, and
// nothing without a certificate from the cluster's CA gets a byte to the engine.
//
// TLS ends here, in Node's own `tls` (maintained, rotates certificates with setSecureContext,
// on every Node build); the engine gets plain streams through native/stream_transport.h: one end
// of a socketpair, the other piped to the TLS socket.
import { X509Certificate } from 'node:crypto';
import { Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  createServer as createTlsServer,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';

import { describeCrls, readCrlText, type CrlDescription } from '../certs/crl.js';
import { contextOptions } from '../core/tls-files.js';
import { checkKeyFits, readPem } from '../certs/files.js';
import { parseAddress } from '../core/address.js';
import { debug } from '../core/diagnostics.js';
import { ErrorCodes, PrevailError, invalid } from '../core/errors.js';
import { identityOf, nodeUri } from '../core/identity.js';
import { acceptWithoutNagle, tcpForTls } from '../core/tls-tcp.js';
import { gateHandshakes, MEMBER_PORT_LIMITS, type HandshakeGate } from '../core/handshake-gate.js';

/**
 * A member's TLS material: the cluster's CA certificate, this member's certificate (naming it
 * with the SAN URI `urn:prevail:node:<id>`; `prevail certs node` makes one) and its key. Each is
 * PEM text, or a file to read it from (`caFile`, …): files are read again by `reloadTls()`.
 */
export interface TlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /**
   * A revocation list signed by the CA (`prevail certs revoke` makes one), or its file: peers
   * whose certificates it names are refused, in both directions. Checked when read: one from
   * another CA, or past its nextUpdate, would refuse every peer, so it is PREVAIL_BAD_CERTIFICATE.
   */
  crl?: string | Buffer;
  crlFile?: string;
}

/** The material once read and checked: PEM text. */
export interface MemberTls {
  ca: string;
  cert: string;
  key: string;
  /** The leaf's last day of validity (ms since the epoch), to warn before it comes. */
  notAfter: number;
  /** The revocation lists (one per CA), when given. */
  crl?: string;
  /** What they hold, for status pages: certificates listed, and when the first list lapses. */
  revocation?: { revoked: number; nextUpdate: number | null };
}

/** ALPN names of the two protocols on a member's port. */
export const ALPN_RAFT = 'prevail-raft/1';
export const ALPN_PEER = 'prevail-peer/1';

/** What the transport needs of the engine (native/stream_transport.h, via NativeEngine). */
export interface EngineStreams {
  accept(id: number, address: string): number;
  connected(token: number): number;
  connectFailed(token: number): void;
}

/** Handles a verified peer-channel connection from member `id`. */
export type PeerSocketHandler = (socket: TLSSocket, id: number) => void;

/** Whether `id` is in this node's configuration now (the CA may sign ids that are not). */
export type IsMember = (id: number) => boolean;

/** The members of this node's configuration now, to keep a spare connection to each. */
export type Members = () => readonly { id: number; address: string }[];

// A connection that has not finished its TLS handshake (and, for raft, its address preamble)
// by then is dropped: a stranger can't hold sockets open.
const HANDSHAKE_TIMEOUT_MS = 5000;
/**
 * After a reload, the connections made with the old material are closed this long after it (the
 * engine and the peer channel reconnect with the new): a replaced or revoked certificate, or a CA
 * dropped from the bundle, stops being used within it. The wait lets a rolling rotation (and
 * messages in flight) settle first.
 */
export const CYCLE_AFTER_RELOAD_MS = 10_000;
// The raft preamble is a 1-byte length and the sender's raft address (host:port, ≤ 255 bytes).
const MAX_PREAMBLE = 256;
/**
 * Spares (see MemberTransport.#warm): checked this often; one that could not be made is tried
 * again this long after; one unused this long is made anew, so that a spare the network
 * silently lost is not the one an election gets.
 */
const SPARE_CHECK_MS = 1000;
const SPARE_RETRY_MS = 1000;
const SPARE_MAX_AGE_MS = 60_000;

/** A raft connection made before the engine asks for it: handshake done, preamble sent. */
interface Spare {
  address: string;
  socket: TLSSocket;
  ready: boolean;
  madeAt: number;
}

function pemOf(value: string | Buffer | undefined, file: string | undefined, what: string): string {
  if (value !== undefined && file !== undefined)
    throw invalid(`tls: give ${what} or ${what}File, not both`);
  if (file !== undefined) return readPem(file, what === 'key' ? 'private key' : 'certificate');
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  throw invalid(`tls needs ${what} (PEM) or ${what}File`);
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new PrevailError(ErrorCodes.BAD_CERTIFICATE, `tls: ${what} is not a PEM certificate`, {
      cause: err,
    });
  }
}

/**
 * The CA certificates of `pem`: a bundle may hold several (during a move to a new CA, both the
 * old and the new are trusted); X509Certificate reads only the first.
 */
function parseBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  return (blocks ?? [pem]).map((block) => parseCert(block, 'ca'));
}

/**
 * Reads `tls` and checks it can work for member `id`: the certificate names this member, is
 * signed by the CA, is valid now, and the key is its key. PREVAIL_BAD_CERTIFICATE otherwise.
 */
export function loadMemberTls(tls: TlsOptions, id: number): MemberTls {
  const { ca, cert, key, crl } = tlsTextOf(tls);
  const cas = parseBundle(ca);
  const leaf = parseCert(cert, 'cert');
  const bad = (message: string) =>
    new PrevailError(ErrorCodes.BAD_CERTIFICATE, `tls: ${message}`, {
      path: tls.certFile,
    });
  const identity = identityOf(leaf.subjectAltName);
  if (identity?.kind !== 'node' || identity.id !== id)
    throw bad(
      `the certificate must name this member (${nodeUri(id)}), it names ${leaf.subjectAltName ?? 'nothing'}`,
    );
  if (!cas.some((caCert) => leaf.checkIssued(caCert) && leaf.verify(caCert.publicKey)))
    throw bad(
      `the certificate is not signed by the given CA (${cas.map((c) => c.subject.replace(/\n/g, ', ')).join('; ')})`,
    );
  const now = Date.now();
  const notAfter = Date.parse(leaf.validTo);
  if (Date.parse(leaf.validFrom) > now || notAfter < now)
    throw bad(`the certificate is not valid now (${leaf.validFrom} – ${leaf.validTo})`);
  checkKeyFits(cert, key, tls.keyFile, tls.certFile);
  if (crl === undefined) return { ca, cert, key, notAfter };
  const lists = describeCrls(crl, ca, tls.crlFile);
  return { ca, cert, key, notAfter, crl, revocation: revocationOf(lists) };
}

/**
 * The PEM text of `tls`: each of ca, cert, key (and crl, when given) as text, read from its file
 * when given as one. Giving neither, or both, is PREVAIL_INVALID_ARGUMENT; an unreadable file is
 * PREVAIL_BAD_CERTIFICATE. Nothing is checked beyond that (loadMemberTls does, for a member).
 */
export function tlsTextOf(tls: TlsOptions): {
  ca: string;
  cert: string;
  key: string;
  crl?: string;
} {
  if (typeof tls !== 'object' || tls === null) throw invalid('tls must be an object');
  const ca = pemOf(tls.ca, tls.caFile, 'ca');
  const cert = pemOf(tls.cert, tls.certFile, 'cert');
  const key = pemOf(tls.key, tls.keyFile, 'key');
  const crl = crlOf(tls);
  return crl === undefined ? { ca, cert, key } : { ca, cert, key, crl };
}

function revocationOf(lists: CrlDescription[]): MemberTls['revocation'] {
  const updates = lists.flatMap((l) => (l.nextUpdate ? [l.nextUpdate.getTime()] : []));
  return {
    revoked: lists.reduce((n, l) => n + l.revoked.length, 0),
    nextUpdate: updates.length ? Math.min(...updates) : null,
  };
}

/** The revocation lists' text of `tls` (checked by the caller, once); undefined without. */
function crlOf(tls: TlsOptions): string | undefined {
  if (tls.crl !== undefined && tls.crlFile !== undefined)
    throw invalid('tls: give crl or crlFile, not both');
  if (tls.crlFile !== undefined) return readCrlText(tls.crlFile);
  if (tls.crl === undefined) return undefined;
  const text = Buffer.isBuffer(tls.crl) ? tls.crl.toString('utf8') : tls.crl;
  if (typeof text !== 'string') throw invalid('tls: crl must be PEM text');
  return text;
}

/** Both sides' TLS settings from the material: TLS 1.3, and the revocation lists when given. */
function memberContextOptions(material: MemberTls): SecureContextOptions {
  return contextOptions(material, 'TLSv1.3');
}

/** The member id a verified peer certificate names, or undefined (a client's, or none). */
function memberIdOf(cert: PeerCertificate | undefined): number | undefined {
  const identity = identityOf(cert?.subjectaltname);
  return identity?.kind === 'node' ? identity.id : undefined;
}

/** Copies bytes both ways between a TLS socket and the engine's socketpair end `fd`. */
function bridge(secure: TLSSocket, fd: number, head?: Buffer): void {
  const local = new Socket({ fd, readable: true, writable: true });
  const end = () => {
    secure.destroy();
    local.destroy();
  };
  secure.on('error', end).on('close', end);
  local.on('error', end).on('close', end);
  if (head?.length) local.write(head);
  secure.pipe(local);
  local.pipe(secure);
}

// Reads the raft preamble (the sender's address) from `socket`; calls back once with it and
// whatever followed it, or destroys the socket on a malformed one.
function readPreamble(socket: TLSSocket, done: (address: string, rest: Buffer) => void): void {
  let buffered = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length > MAX_PREAMBLE + 1 + 64 * 1024) return void socket.destroy();
    if (buffered.length < 1 || buffered.length < 1 + buffered[0]!) return;
    socket.off('data', onData);
    socket.pause();
    const address = buffered.subarray(1, 1 + buffered[0]!).toString('utf8');
    try {
      parseAddress(address, 'a member address');
    } catch {
      return void socket.destroy();
    }
    done(address, buffered.subarray(1 + buffered[0]!));
  };
  socket.on('data', onData);
}

function preamble(address: string): Buffer {
  const bytes = Buffer.from(address, 'utf8');
  if (bytes.length >= MAX_PREAMBLE) throw invalid(`address ${address} is too long`);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

export class MemberTransport {
  readonly id: number;
  readonly address: string;
  #engine: EngineStreams;
  #material: MemberTls;
  #context: SecureContext;
  #server: TlsServer | null = null;
  #listening: Promise<void> | null = null;
  // Each open connection, with the material generation (reloads so far) it was made with.
  #sockets = new Map<TLSSocket, number>();
  #generation = 0;
  #cycleTimer: NodeJS.Timeout | null = null;
  #onPeer: PeerSocketHandler | null = null;
  #isMember: IsMember;
  #members: Members;
  #spares = new Map<number, Spare>();
  #spareRetryAt = new Map<number, number>();
  #warmTimer: NodeJS.Timeout | null = null;
  #gate: HandshakeGate | null = null;
  #closed = false;

  constructor(
    id: number,
    address: string,
    material: MemberTls,
    engine: EngineStreams,
    isMember: IsMember = () => true,
    members: Members = () => [],
  ) {
    this.id = id;
    this.address = address;
    this.#engine = engine;
    this.#isMember = isMember;
    this.#members = members;
    this.#material = material;
    this.#context = this.#secureContext();
  }

  get material(): MemberTls {
    return this.#material;
  }

  get listening(): boolean {
    return this.#server?.listening ?? false;
  }

  #secureContext(): SecureContext {
    return createSecureContext(memberContextOptions(this.#material));
  }

  /** Where verified peer-channel connections go (the cluster link sets it). */
  onPeerSocket(handler: PeerSocketHandler | null): void {
    this.#onPeer = handler;
  }

  /** Starts listening on this member's address (once; later calls wait for the first). */
  listen(): Promise<void> {
    this.#listening ??= this.#listen();
    return this.#listening;
  }

  #listen(): Promise<void> {
    const { host, port } = parseAddress(this.address, 'the raft address');
    // Not `secureContext`: a server given one presents no certificate (Node 20).
    const server = createTlsServer({
      ...memberContextOptions(this.#material),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [ALPN_RAFT, ALPN_PEER],
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    acceptWithoutNagle(server); // small raft messages must not wait (p50 commit 14 ms vs 4 ms)
    this.#gate = gateHandshakes(server, MEMBER_PORT_LIMITS, 'members');
    server.on('secureConnection', (socket) => this.#accepted(socket));
    // Node (20) only reports a failed or timed-out handshake here: it leaves the socket open (a
    // client that ignores the alert, or never sends a byte, would hold it forever), so close it.
    server.on('tlsClientError', (err, socket) => {
      debug(
        'node %d: refused a connection from %s: %s',
        this.id,
        socket.remoteAddress,
        err.message,
      );
      socket.destroy();
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        this.#listening = null;
        reject(
          new PrevailError(
            err.code === 'EADDRINUSE' ? ErrorCodes.ADDRESS_IN_USE : ErrorCodes.IO,
            `address ${this.address} ${err.code === 'EADDRINUSE' ? 'is already in use' : `can't be listened on: ${err.message}`}`,
            { cause: err },
          ),
        );
      });
      server.listen(port, host, () => {
        debug('node %d: listening (mutual TLS) on %s', this.id, this.address);
        this.#warmTimer = setInterval(() => this.#warm(), SPARE_CHECK_MS);
        this.#warmTimer.unref();
        setImmediate(() => this.#warm());
        resolve();
      });
    });
  }

  // A connection whose certificate chain the CA signed: it must name a member of this node's
  // configuration (a certificate for any other id, or for a removed member, would otherwise let
  // its holder vote, lead or install a snapshot); then its ALPN says whether the engine or the
  // peer channel gets it.
  #accepted(socket: TLSSocket): void {
    this.#track(socket);
    const id = memberIdOf(socket.getPeerCertificate());
    if (id === undefined || this.#closed) return void socket.destroy();
    if (!this.#isMember(id)) {
      debug('node %d: refused %d: not a member of its configuration', this.id, id);
      return void socket.destroy();
    }
    if (socket.alpnProtocol === ALPN_PEER) {
      if (!this.#onPeer) return void socket.destroy();
      return this.#onPeer(socket, id);
    }
    if (socket.alpnProtocol !== ALPN_RAFT) return void socket.destroy();
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    readPreamble(socket, (address, rest) => {
      clearTimeout(timer);
      const fd = this.#engine.accept(id, address);
      if (fd < 0) return void socket.destroy();
      bridge(socket, fd, rest);
      socket.resume();
    });
  }

  /** The engine asks for a connection to member `id` at `address` (its `token` answers). */
  connect(token: number, id: number, address: string): void {
    const spare = this.#takeSpare(id, address);
    debug('node %d: connecting to %d at %s%s', this.id, id, address, spare ? ' (a spare)' : '');
    if (spare) {
      const fd = this.#engine.connected(token);
      if (fd < 0) return void spare.destroy();
      bridge(spare, fd);
      setImmediate(() => this.#warm());
      return;
    }
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      debug('node %d: connecting to %d at %s failed: %s', this.id, id, address, why);
      this.#engine.connectFailed(token);
    };
    let socket: TLSSocket;
    try {
      socket = this.#dialRaft(id, address);
    } catch (err) {
      return fail((err as Error).message);
    }
    socket.once('error', (err) => fail(err.message));
    socket.once('close', () => fail('closed'));
    socket.once('secureConnect', () => {
      if (settled) return;
      settled = true;
      const fd = this.#engine.connected(token);
      if (fd < 0) return void socket.destroy();
      bridge(socket, fd);
    });
  }

  // A Raft connection to member `id`: dropped if its handshake takes over HANDSHAKE_TIMEOUT_MS,
  // its preamble sent once the handshake is done (before any other 'secureConnect' listener runs).
  #dialRaft(id: number, address: string): TLSSocket {
    const socket = this.#dial(address, ALPN_RAFT, id);
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error('handshake timed out')));
    socket.once('secureConnect', () => {
      socket.setTimeout(0);
      socket.write(preamble(this.address));
    });
    return socket;
  }

  /** Connections to the members' port still in their TLS handshake (core/handshake-gate.ts bounds them). */
  get handshakesInProgress(): number {
    return this.#gate?.pending ?? 0;
  }

  /** How many spare raft connections are ready now (one per other member at most). */
  get spareConnections(): number {
    let n = 0;
    for (const spare of this.#spares.values()) if (spare.ready) n++;
    return n;
  }

  // Spares: a raft connection to each other member, made before the engine asks for one. The
  // engine connects on its first message to a member, and followers send each other none until
  // an election: a candidate's RequestVote, and the vote coming back, would each wait for a TLS
  // handshake on a loaded machine (and meanwhile the other follower times out too: a split
  // vote). With a spare, connect() is a socketpair. An older build's acceptor takes a spare as
  // any connection whose messages come later.
  #warm(): void {
    if (this.#closed) return;
    const now = Date.now();
    const members = this.#members().filter((m) => m.id !== this.id);
    for (const id of this.#spares.keys())
      if (!members.some((m) => m.id === id)) this.#dropSpare(id);
    for (const { id, address } of members) {
      const spare = this.#spares.get(id);
      if (spare && spare.address === address && now - spare.madeAt < SPARE_MAX_AGE_MS) continue;
      if (spare) this.#dropSpare(id);
      if ((this.#spareRetryAt.get(id) ?? 0) > now) continue;
      this.#makeSpare(id, address);
    }
  }

  #makeSpare(id: number, address: string): void {
    let socket: TLSSocket;
    try {
      socket = this.#dialRaft(id, address);
    } catch {
      return; // closed, or an address that doesn't parse (the engine's own connect says why)
    }
    const spare: Spare = { address, socket, ready: false, madeAt: Date.now() };
    this.#spares.set(id, spare);
    socket.once('secureConnect', () => {
      spare.ready = true;
    });
    socket.on('error', () => undefined); // a member that is down: 'close' follows
    socket.once('close', () => {
      if (this.#spares.get(id) !== spare) return; // taken, or dropped
      this.#spares.delete(id);
      this.#spareRetryAt.set(id, Date.now() + SPARE_RETRY_MS);
    });
  }

  // The spare to member `id`, if one is ready at `address` (it is the caller's from now on).
  #takeSpare(id: number, address: string): TLSSocket | null {
    const spare = this.#spares.get(id);
    if (!spare?.ready || spare.address !== address || spare.socket.destroyed) return null;
    this.#spares.delete(id);
    return spare.socket;
  }

  #dropSpare(id: number): void {
    const spare = this.#spares.get(id);
    this.#spares.delete(id);
    spare?.socket.destroy();
  }

  /** A peer-channel connection to the member at `address` (any member: the channel checks who asks). */
  dialPeer(address: string): TLSSocket {
    return this.#dial(address, ALPN_PEER);
  }

  // A TLS connection presenting this member's certificate, accepting only a server whose
  // certificate names member `id` (or, without one, any member).
  #dial(address: string, protocol: string, id?: number): TLSSocket {
    if (this.#closed) throw new PrevailError(ErrorCodes.CLOSED, 'the transport is closed');
    const { host, port } = parseAddress(address, 'a member address');
    const socket = tlsConnect({
      socket: tcpForTls(host, port),
      secureContext: this.#context,
      ALPNProtocols: [protocol],
      minVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) => {
        const named = memberIdOf(cert);
        if (named === undefined || (id !== undefined && named !== id))
          return new Error(
            `the certificate at ${address} names ${named ?? 'no member'}, not ${id ?? 'a member'}`,
          );
        return undefined;
      },
    });
    this.#track(socket);
    return socket;
  }

  #track(socket: TLSSocket): void {
    this.#sockets.set(socket, this.#generation);
    socket.once('close', () => this.#sockets.delete(socket));
  }

  /**
   * Takes new material (read again from the files when given as files): new connections use it
   * at once; those made before are closed `cycleAfterMs` later (CYCLE_AFTER_RELOAD_MS), so that
   * nothing keeps trusting the old certificates, and the engine reconnects with the new.
   */
  reload(material: MemberTls, cycleAfterMs = CYCLE_AFTER_RELOAD_MS): void {
    this.#material = material;
    this.#generation++;
    if (this.#cycleTimer) clearTimeout(this.#cycleTimer);
    const generation = this.#generation;
    this.#cycleTimer = setTimeout(() => this.#closeOlderThan(generation), cycleAfterMs);
    this.#cycleTimer.unref();
    this.#context = this.#secureContext();
    // Spares are idle: made again at once with the new material.
    for (const id of [...this.#spares.keys()]) this.#dropSpare(id);
    this.#spareRetryAt.clear();
    if (this.#warmTimer) setImmediate(() => this.#warm());
    this.#server?.setSecureContext(memberContextOptions(material));
  }

  /** How many open connections were made with material older than the current (a reload's). */
  get staleConnections(): number {
    let n = 0;
    for (const g of this.#sockets.values()) if (g < this.#generation) n++;
    return n;
  }

  #closeOlderThan(generation: number): void {
    this.#cycleTimer = null;
    let closed = 0;
    for (const [socket, g] of this.#sockets)
      if (g < generation) {
        socket.destroy();
        closed++;
      }
    debug('node %d: closed %d connections made before the TLS reload', this.id, closed);
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#cycleTimer) clearTimeout(this.#cycleTimer);
    if (this.#warmTimer) clearInterval(this.#warmTimer);
    for (const socket of this.#sockets.keys()) socket.destroy();
    const server = this.#server;
    if (!server?.listening) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }
}

// The library's own node-to-node channel (write forwarding, read indices, readiness),
// separate from the user's HTTP stack. With TLS it shares the member's port with the engine
// (ALPN, lib/engine/member-transport.ts) and every request carries the member id its
// certificate names; with `insecure: true` it has its own plain TCP port and no identity.
// Frames: a 4-byte big-endian length, then a msgpack value.
//   request  [id, type, body]
//   response [id, ok, body]   (ok false: body is a serialised error)
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Packr } from 'msgpackr';

import { joinAddress, parseAddress } from '../core/address.js';
import { ErrorCodes, PrevailError, type ErrorCode } from '../core/errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, useBigIntExtension: true });

/** Frames above this are refused and the connection dropped (a peer gone wrong, or not a peer). */
export const MAX_FRAME = 64 * 1024 * 1024;

/** The requests the channel carries; any other closes the connection before it is handled. */
export const PEER_REQUESTS: ReadonlySet<string> = new Set([
  'commitIndex',
  'propose',
  'proposeSystem',
  'checkpoints',
  'divergence',
  'announce',
  'readIndex',
]);

/** Handles one request; `from` is the asking member's id when its certificate named it (TLS). */
export type RequestHandler = (type: string, body: unknown, from?: number) => Promise<unknown>;

/** Opens a connection to a peer's channel (plain TCP, or TLS through the member transport). */
export type Dial = (address: string) => Socket;

/** Plain TCP: the `insecure` cluster's channel. */
export const dialTcp: Dial = (address) => {
  const { host, port } = parseAddress(address, 'a peer channel address');
  return connect({ host, port });
};

interface WireError {
  code?: string;
  message: string;
  name?: string;
  fields?: Record<string, unknown>;
}

/** Serialises an error (a handler's own error, or a PrevailError) for the wire. */
function toWire(err: unknown): WireError {
  if (typeof err !== 'object' || err === null) return { message: String(err) };
  const e = err as Error & Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(e)) {
    if (k !== 'code' && k !== 'message' && k !== 'name' && k !== 'cause' && k !== 'stack')
      fields[k] = e[k];
  }
  return {
    code: typeof e.code === 'string' ? e.code : undefined,
    message: String(e.message),
    name: e.name,
    fields,
  };
}

/** Rebuilds an error sent by a peer: PrevailErrors stay PrevailErrors, a handler's error keeps its code and fields. */
export function fromWire(w: WireError): Error {
  const fields = w.fields ?? {};
  if (w.code?.startsWith('PREVAIL_')) {
    return new PrevailError(w.code as ErrorCode, w.message, fields as never);
  }
  const err = Object.assign(new Error(w.message), fields);
  if (w.name) err.name = w.name;
  if (w.code !== undefined) (err as Error & { code?: string }).code = w.code;
  return err;
}

/** Splits a byte stream into frames; returns false (and stops) on a frame that is too large. */
function frameReader(socket: Socket, onFrame: (value: unknown) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4) {
      const length = buffered.readUInt32BE(0);
      if (length > MAX_FRAME) {
        socket.destroy(new PrevailError(ErrorCodes.TOO_LARGE, `peer frame of ${length} bytes`));
        return;
      }
      if (buffered.length < 4 + length) break;
      const body = buffered.subarray(4, 4 + length);
      buffered = buffered.subarray(4 + length);
      let value: unknown;
      try {
        value = packr.unpack(body);
      } catch {
        socket.destroy();
        return;
      }
      onFrame(value);
    }
  });
}

/**
 * Queues one frame. The frames of one event-loop turn leave together, in one write after its
 * I/O callbacks (setImmediate): over TLS each write is a record of its own (an encryption, a
 * syscall, a read callback on the other side), and under load a follower forwards, and a leader
 * answers, many requests per turn (docs/benchmarks.md, "TLS between members").
 */
function writeFrame(socket: Socket, value: unknown): void {
  const frame = packr.pack(value);
  const bytes = Buffer.allocUnsafe(4 + frame.length);
  bytes.writeUInt32BE(frame.length, 0);
  frame.copy(bytes, 4);
  if (socket.writableCorked === 0) {
    socket.cork();
    setImmediate(uncork, socket);
  }
  socket.write(bytes);
}

function uncork(socket: Socket): void {
  socket.uncork();
}

function answer(socket: Socket, id: number, type: string, result: unknown): void {
  if (socket.destroyed) return;
  try {
    writeFrame(socket, [id, true, result]);
  } catch (err) {
    // The request was carried out; only its result can't travel.
    writeFrame(socket, [
      id,
      false,
      toWire(
        new PrevailError(
          ErrorCodes.INVALID_STATE,
          `the result of ${type} can't be encoded to send back: ${(err as Error).message}`,
          { mayHaveApplied: true },
        ),
      ),
    ]);
  }
}

function answerError(socket: Socket, id: number, err: unknown): void {
  if (socket.destroyed) return;
  try {
    writeFrame(socket, [id, false, toWire(err)]);
  } catch {
    writeFrame(socket, [id, false, { message: String((err as Error)?.message ?? err) }]);
  }
}

/** Accepts peers' requests and answers each with the handler's result or error. */
export class PeerServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  address = '';

  readonly #handler: RequestHandler;

  private constructor(handler: RequestHandler) {
    this.#handler = handler;
    this.#server = createServer((socket) => this.serve(socket));
  }

  /** A channel server with no port of its own: the member transport hands it its connections. */
  static attached(address: string, handler: RequestHandler): PeerServer {
    const server = new PeerServer(handler);
    server.address = address;
    return server;
  }

  /** Serves the requests arriving on `socket`, from member `from` when known (TLS). */
  serve(socket: Socket, from?: number): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    frameReader(socket, (frame) => {
      if (
        !Array.isArray(frame) ||
        typeof frame[0] !== 'number' ||
        typeof frame[1] !== 'string' ||
        !PEER_REQUESTS.has(frame[1])
      ) {
        socket.destroy(); // not one of ours
        return;
      }
      const [id, type, body] = frame as [number, string, unknown];
      this.#handler(type, body, from).then(
        (result) => answer(socket, id, type, result),
        (err: unknown) => answerError(socket, id, err),
      );
    });
  }

  /** Listens on `host:port` (port 0: any free port); `address` then holds the bound one. */
  static listen(address: string, handler: RequestHandler): Promise<PeerServer> {
    const { host, port } = parseAddress(address, 'the peer channel address');
    const server = new PeerServer(handler);
    return new Promise((resolve, reject) => {
      server.#server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new PrevailError(
            err.code === 'EADDRINUSE' ? ErrorCodes.ADDRESS_IN_USE : ErrorCodes.IO,
            `peer channel can't listen on ${address}: ${err.message}`,
          ),
        ),
      );
      server.#server.listen(port, host, () => {
        const bound = server.#server.address();
        if (bound && typeof bound === 'object') server.address = joinAddress(host, bound.port);
        resolve(server);
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    if (!this.#server.listening) return Promise.resolve();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  sent: boolean;
  timer: NodeJS.Timeout;
}

/** One connection to a peer, opened on demand and reopened after it drops. */
export class PeerClient {
  readonly address: string;
  #socket: Socket | null = null;
  #connected = false;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #unsent: (() => void)[] = []; // requests made while connecting; sent on connect
  #closed = false;

  readonly #dial: Dial;

  constructor(address: string, dial: Dial = dialTcp) {
    this.address = address;
    this.#dial = dial;
  }

  /**
   * Sends a request and resolves with the peer's answer. Rejects with the peer's error, or with
   * PREVAIL_UNAVAILABLE when the connection failed: `sent` tells whether the request left this
   * process (if it did, the peer may have acted on it).
   */
  request(type: string, body: unknown, timeoutMs: number): Promise<unknown> {
    if (this.#closed)
      return Promise.reject(new PrevailError(ErrorCodes.CLOSED, 'the peer channel is closed'));
    let socket: Socket;
    try {
      socket = this.#ensure();
    } catch (err) {
      return Promise.reject(err); // an address that doesn't parse: callers (timers too) expect a rejection
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new PrevailError(
            ErrorCodes.TIMEOUT,
            `no answer from ${this.address} within ${timeoutMs} ms`,
            { mayHaveApplied: true },
          ),
        );
      }, timeoutMs);
      const pending: Pending = { resolve, reject, sent: false, timer };
      this.#pending.set(id, pending);
      const send = () => {
        // The peer has closed the connection (its FIN is read; a killed leader's is): a write
        // now fails (EPIPE) and nothing leaves. Left unsent, the request fails with the
        // 'close' that follows as not sent, so the forwarder may send it to the next leader.
        if (socket.writableEnded || socket.destroyed) return;
        pending.sent = true;
        writeFrame(socket, [id, type, body]);
      };
      if (this.#connected) send();
      else this.#unsent.push(send);
    });
  }

  /** Opens the connection now if it is not open (a failed one is tried again on the next call). */
  warm(): void {
    if (this.#closed) return;
    try {
      this.#ensure();
    } catch {
      // an address that doesn't parse: a request to it says so
    }
  }

  #ensure(): Socket {
    if (this.#socket) return this.#socket;
    const socket = this.#dial(this.address);
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.#connected = true;
      const unsent = this.#unsent;
      this.#unsent = [];
      for (const send of unsent) send();
    });
    frameReader(socket, (frame) => {
      if (!Array.isArray(frame)) return;
      const [id, ok, body] = frame as [number, boolean, unknown];
      const p = this.#pending.get(id);
      if (!p) return;
      this.#pending.delete(id);
      clearTimeout(p.timer);
      if (ok) p.resolve(body);
      else p.reject(fromWire(body as WireError));
    });
    const drop = (err?: Error) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#connected = false;
      this.#unsent = []; // their requests are failed below
      for (const [id, p] of this.#pending) {
        this.#pending.delete(id);
        clearTimeout(p.timer);
        p.reject(
          new PrevailError(
            ErrorCodes.UNAVAILABLE,
            `connection to ${this.address} ${p.sent ? 'dropped before the answer' : 'failed'}${err ? `: ${err.message}` : ''}`,
            { mayHaveApplied: p.sent },
          ),
        );
      }
    };
    socket.on('error', (err) => {
      drop(err);
      socket.destroy();
    });
    socket.on('close', () => drop());
    return socket;
  }

  close(): void {
    this.#closed = true;
    this.#socket?.destroy();
  }
}

// TLS over TCP with Nagle's algorithm off. `setNoDelay` on a TLSSocket does not reach its TCP
// socket, and tls.connect/https.Agent take no `noDelay`: small records (a raft message, an HTTP
// answer) then wait for the peer's delayed ACK, ~40 ms. Every TLS socket prevail makes or
// accepts goes through here (docs/benchmarks.md, "TLS between members").
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { connect, type Socket, type Server } from 'node:net';

/** A TCP connection with Nagle off, for tls.connect's `socket` option. */
export function tcpForTls(host: string, port: number): Socket {
  return connect({ host, port, noDelay: true });
}

/** Turns Nagle off on every TCP connection a TLS server accepts, before TLS wraps it. */
export function acceptWithoutNagle(server: Server): void {
  server.on('connection', (tcp: Socket) => tcp.setNoDelay(true));
}

/** An HTTPS agent whose connections have Nagle off (as node:http's have by default). */
export class NoDelayHttpsAgent extends HttpsAgent {
  constructor(options?: AgentOptions) {
    super(options);
  }

  override createConnection(
    options: Parameters<HttpsAgent['createConnection']>[0],
    callback?: Parameters<HttpsAgent['createConnection']>[1],
  ): ReturnType<HttpsAgent['createConnection']> {
    const { host, port } = options as { host?: string; port?: number };
    const tcp = tcpForTls(host ?? 'localhost', Number(port ?? 443));
    return super.createConnection({ ...options, socket: tcp } as typeof options, callback);
  }
}

// The peer channel's client on its own (lib/cluster/peer-channel.ts), over real TCP on
// 127.0.0.1: the frames of one event-loop turn leave in one write (over TLS a write is a
// record, an encryption and a syscall), every answer still reaches its own request, and
// warm() opens the connection before a request needs it.
import { createServer, type Server, type Socket } from 'node:net';

import { PeerClient, PeerServer, dialTcp } from '../../../lib/cluster/peer-channel.js';
import { freePorts, waitFor } from '../../helpers/cluster.js';

// A dial whose sockets count the writes that reach the kernel (a corked batch is one _writev).
function countingDial(counts: { writes: number }) {
  return (address: string): Socket => {
    const socket = dialTcp(address);
    const write = socket._write.bind(socket);
    const writev = socket._writev!.bind(socket);
    socket._write = (...args: Parameters<Socket['_write']>) => {
      counts.writes++;
      write(...args);
    };
    socket._writev = (...args: Parameters<NonNullable<Socket['_writev']>>) => {
      counts.writes++;
      writev(...args);
    };
    return socket;
  };
}

describe('PeerClient', () => {
  let server: PeerServer;
  beforeAll(async () => {
    server = await PeerServer.listen('127.0.0.1:0', (type, body) =>
      Promise.resolve({ type, body }),
    );
  });
  afterAll(() => server.close());

  test('40 requests made in one turn leave in one write, and each gets its own answer', async () => {
    const counts = { writes: 0 };
    const client = new PeerClient(server.address, countingDial(counts));
    try {
      await client.request('commitIndex', 'hello', 5000); // connected
      counts.writes = 0;
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) => client.request('readIndex', { i }, 5000)),
      );
      expect(answers).toEqual(
        Array.from({ length: 40 }, (_, i) => ({ type: 'readIndex', body: { i } })),
      );
      expect(counts.writes).toBe(1);
    } finally {
      client.close();
    }
  });

  // A leader killed with SIGKILL: its kernel closes the connection (FIN), and a request made
  // before this side's socket is closed used to be written after the FIN (EPIPE, nothing sent)
  // yet fail as "dropped before the answer" (mayHaveApplied), which the forwarder won't retry.
  test('a request made after the peer closed the connection fails as not sent, and nothing leaves', async () => {
    const [port] = await freePorts(1);
    let received = 0;
    const closing: Server = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('data', (chunk: Buffer) => (received += chunk.length));
      socket.end(); // FIN at once; this side keeps reading
    });
    await new Promise<void>((resolve) => closing.listen(port, '127.0.0.1', resolve));
    // Asked once this side has ended too (Node ends it soon after the peer's FIN is read), before
    // the socket closes: the moment a write fails with EPIPE.
    let ask: () => void = () => undefined;
    const asked = new Promise<{ answer: Promise<unknown> }>((resolve) => {
      ask = () => resolve({ answer: client.request('propose', { k: 1 }, 5000) });
    });
    let endedHere = false;
    const client = new PeerClient(`127.0.0.1:${port}`, (address) => {
      const socket = dialTcp(address);
      socket.once('end', () =>
        setImmediate(() => {
          endedHere = socket.writableEnded;
          ask();
        }),
      );
      return socket;
    });
    try {
      client.warm();
      expect(endedHere).toBe(false);
      await expect((await asked).answer).rejects.toMatchObject({
        code: 'PREVAIL_UNAVAILABLE',
        mayHaveApplied: false,
      });
      expect({ endedHere, received }).toEqual({ endedHere: true, received: 0 });
    } finally {
      client.close();
      closing.close();
    }
  });

  test('warm() connects before any request; against nothing listening it throws nothing', async () => {
    const [port, deadPort] = await freePorts(2);
    const accepted: Socket[] = [];
    const plain: Server = createServer((socket) => accepted.push(socket));
    await new Promise<void>((resolve) => plain.listen(port, '127.0.0.1', resolve));
    const client = new PeerClient(`127.0.0.1:${port}`);
    const nowhere = new PeerClient(`127.0.0.1:${deadPort}`);
    try {
      client.warm();
      await waitFor('the connection', () => accepted.length === 1 || undefined);
      client.warm(); // already open: no second connection
      nowhere.warm();
      nowhere.warm();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(accepted).toHaveLength(1);
      await expect(nowhere.request('commitIndex', null, 1000)).rejects.toMatchObject({
        code: 'PREVAIL_UNAVAILABLE',
      });
    } finally {
      client.close();
      nowhere.close();
      for (const s of accepted) s.destroy();
      plain.close();
    }
  });
});

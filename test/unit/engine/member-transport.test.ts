// The member transport's checks on its own (lib/engine/member-transport.ts), and the secure
// defaults RaftNode.start holds a node to (issue 13): TLS material that can't work is refused
// up front; a server that is not the member dialed is refused; an id the CA signed but the
// configuration doesn't hold is refused; no cluster without TLS (or an explicit `insecure`).
import { jest } from '@jest/globals';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type Server } from 'node:tls';

import { revoke } from '../../../lib/certs/index.js';
import { RaftNode, type Fsm } from '../../../lib/index.js';
import {
  ALPN_RAFT,
  MemberTransport,
  loadMemberTls,
  type EngineStreams,
} from '../../../lib/engine/member-transport.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';
import { testCa, type TestCa, type TestCert } from '../../helpers/test-certs.js';

let ca: TestCa;
let member1: TestCert;
let dir: string;

beforeAll(async () => {
  ca = await testCa();
  member1 = await ca.node(1);
  dir = tempDir('prevail-member-transport-');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadMemberTls refuses material that cannot work: PREVAIL_BAD_CERTIFICATE', () => {
  const bad = { code: 'PREVAIL_BAD_CERTIFICATE' };

  test('the certificate names another member', () => {
    expect(() => loadMemberTls({ ca: ca.cert, ...member1 }, 2)).toThrow(
      expect.objectContaining(bad),
    );
  });

  test('the certificate is signed by another CA', async () => {
    const other = await (await testCa('another CA')).node(1);
    expect(() => loadMemberTls({ ca: ca.cert, ...other }, 1)).toThrow(expect.objectContaining(bad));
  });

  test('a client certificate, not a member one', async () => {
    const client = await ca.client('x');
    expect(() => loadMemberTls({ ca: ca.cert, ...client }, 1)).toThrow(
      expect.objectContaining(bad),
    );
  });

  test('the key is not the certificate’s', async () => {
    const { key } = await ca.node(1);
    expect(() => loadMemberTls({ ca: ca.cert, cert: member1.cert, key }, 1)).toThrow(
      expect.objectContaining(bad),
    );
  });

  test('a file that cannot be read, or is not PEM', () => {
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    const files = (certFile: string) => ({
      caFile: join(dir, 'ca.pem'),
      certFile,
      keyFile: join(dir, 'key.pem'),
    });
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    writeFileSync(join(dir, 'key.pem'), member1.key);
    expect(() => loadMemberTls(files(join(dir, 'missing.pem')), 1)).toThrow(
      expect.objectContaining(bad),
    );
    expect(() => loadMemberTls(files(notPem), 1)).toThrow(expect.objectContaining(bad));
  });

  test('material that fits is read', () => {
    expect(loadMemberTls({ ca: ca.cert, ...member1 }, 1)).toMatchObject({
      notAfter: expect.any(Number) as number,
    });
  });
});

/** What the transport asks of the engine, recorded (no engine: the transport's checks alone). */
function recordingEngine(calls: string[]): EngineStreams {
  return {
    accept: (id, address) => (calls.push(`accept ${id} ${address}`), -1),
    connected: (token) => (calls.push(`connected ${token}`), -1),
    connectFailed: (token) => void calls.push(`failed ${token}`),
  };
}

/** A TLS server on a free port presenting `cert`, asking for nothing. */
async function serverWith(cert: TestCert): Promise<{ server: Server; address: string }> {
  const server = createTlsServer({ ...cert, ALPNProtocols: [ALPN_RAFT] }, (s) => s.destroy());
  const [port] = await freePorts(1);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${port}` };
}

/** A raft connection to 127.0.0.1:`port` presenting `cert`, preamble sent; resolves once it closes. */
async function dialRaftAs(port: number, cert: TestCert, trust = ca.cert): Promise<void> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ca: trust,
    ...cert,
    ALPNProtocols: [ALPN_RAFT],
    checkServerIdentity: () => undefined,
  });
  socket.on('error', () => undefined);
  socket.once('secureConnect', () => socket.write(Buffer.from('\x0b127.0.0.1:1')));
  await new Promise((resolve) => socket.once('close', resolve));
}

describe('MemberTransport', () => {
  test('dialing member 2 and reaching a server with member 3’s certificate: refused', async () => {
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine(calls));
    const impostor = await serverWith(await ca.node(3));
    const genuine = await serverWith(await ca.node(2));
    try {
      transport.connect(7, 2, impostor.address);
      await waitFor('the dial to end', () => calls.length > 0 || undefined);
      transport.connect(8, 2, genuine.address);
      await waitFor('the second dial to end', () => calls.length > 1 || undefined);
      expect(calls).toEqual(['failed 7', 'connected 8']);
    } finally {
      await transport.close();
      impostor.server.close();
      genuine.server.close();
    }
  });

  // Node leaves a socket open after its handshake timed out (it only reports it): the transport
  // closes it, or a stranger could hold any number of them.
  test('a connection that never starts its handshake is closed (handshake timeout, 5 s)', async () => {
    const [port] = await freePorts(1);
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine([]));
    await transport.listen();
    try {
      const socket = tcpConnect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('close', resolve));
    } finally {
      await transport.close();
    }
  }, 20_000);

  // Each silent connection holds a descriptor until the handshake timeout: past 32 from one host
  // they are closed at once (core/handshake-gate.ts), so one host can't exhaust the node's.
  test('40 silent connections from one host: 32 wait for their handshake, 8 are closed at once', async () => {
    const [port] = await freePorts(1);
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine([]));
    await transport.listen();
    const sockets = Array.from({ length: 40 }, () => tcpConnect(port, '127.0.0.1'));
    let closed = 0;
    for (const s of sockets) {
      s.on('error', () => undefined);
      s.once('close', () => closed++);
    }
    try {
      await waitFor('8 closed', () => closed >= 8 || undefined);
      expect({ closed, inHandshake: transport.handshakesInProgress }).toEqual({
        closed: 8,
        inHandshake: 32,
      });
      for (const s of sockets) s.destroy();
      await waitFor('none in handshake', () => transport.handshakesInProgress === 0 || undefined);
    } finally {
      for (const s of sockets) s.destroy();
      await transport.close();
    }
  }, 20_000);

  // New connections from one host are also bounded per second (32, burst 64): one host can't
  // make the node start handshakes as fast as it can connect. One connection at a time, each
  // closed once accepted, until the first refused for the rate.
  test('connections from one host past 64 at once plus 32 a second are closed (rate)', async () => {
    const [port] = await freePorts(1);
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine([]));
    await transport.listen();
    const reasons: string[] = [];
    const onRefused = (message: unknown) => reasons.push((message as { reason: string }).reason);
    subscribe('prevail:connection-refused', onRefused);
    const started = performance.now();
    let opened = 0;
    try {
      while (!reasons.includes('rate') && opened < 2000) {
        const socket = tcpConnect(port!, '127.0.0.1');
        socket.on('error', () => undefined);
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.destroy();
        await new Promise((resolve) => socket.once('close', resolve));
        opened++;
      }
      const seconds = (performance.now() - started) / 1000;
      await waitFor('the last refusal to be reported', () => reasons.length > 0 || undefined);
      const admitted = opened - reasons.length;
      expect(reasons).toContain('rate');
      expect(admitted).toBeGreaterThanOrEqual(64); // the burst
      expect(admitted).toBeLessThanOrEqual(64 + Math.ceil(32 * seconds) + 1);
    } finally {
      unsubscribe('prevail:connection-refused', onRefused);
      await transport.close();
    }
  }, 60_000);

  test('a revoked member (crl) gets no byte to the engine, and is not dialed either', async () => {
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const node2 = await ca.node(2);
    const { crl } = await revoke(ca, [node2.cert]);
    const material = loadMemberTls({ ca: ca.cert, ...member1, crl }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine(calls));
    await transport.listen();
    const revoked = await serverWith(node2);
    const dialAs = (cert: TestCert) => dialRaftAs(port!, cert);
    try {
      await dialAs(node2); // refused in the handshake
      await dialAs(await ca.node(3)); // handed to the engine (which says no: -1)
      transport.connect(5, 2, revoked.address);
      await waitFor('the dial to the revoked member to end', () => calls.length > 1 || undefined);
      expect(calls).toEqual(['accept 3 127.0.0.1:1', 'failed 5']);
    } finally {
      await transport.close();
      revoked.server.close();
    }
  });

  // During a move to a new CA both are trusted (a bundle): OpenSSL, given lists, refuses any
  // certificate whose issuer has none, so the file must hold a list per CA.
  test('a CA bundle: a list for each CA is required; with both, each CA’s revoked member is refused', async () => {
    const other = await testCa('the next CA');
    const bundle = `${ca.cert.trim()}\n${other.cert.trim()}\n`;
    const node2 = await ca.node(2);
    const node3 = await other.node(3);
    const node4 = await other.node(4);
    const ours = (await revoke(ca, [node2.cert])).crl;
    expect(() => loadMemberTls({ ca: bundle, ...member1, crl: ours }, 1)).toThrow(
      expect.objectContaining({
        code: 'PREVAIL_BAD_CERTIFICATE',
        message: expect.stringMatching(/no list from CN=the next CA/),
      }),
    );
    const both = `${ours.trim()}\n${(await revoke(other, [node4.cert])).crl}`;
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const material = loadMemberTls({ ca: bundle, ...member1, crl: both }, 1);
    const transport = new MemberTransport(1, `127.0.0.1:${port}`, material, recordingEngine(calls));
    await transport.listen();
    try {
      for (const cert of [node2, node3, node4]) await dialRaftAs(port!, cert, bundle);
      expect(calls).toEqual(['accept 3 127.0.0.1:1']);
    } finally {
      await transport.close();
    }
  });

  test('an id the CA signed but the configuration does not hold gets no byte to the engine', async () => {
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const members = new Set([1, 2, 3]);
    const transport = new MemberTransport(1, address, material, recordingEngine(calls), (id) =>
      members.has(id),
    );
    await transport.listen();
    const dialAs = async (id: number) => dialRaftAs(port!, await ca.node(id));
    try {
      await dialAs(9); // closed by the transport
      await dialAs(2); // handed to the engine (which says no: -1)
      expect(calls).toEqual(['accept 2 127.0.0.1:1']);
    } finally {
      await transport.close();
    }
  });
});

describe('MemberTransport spares: a raft connection to each member before the engine asks', () => {
  // A member's port that keeps what it is sent: every connection and the bytes on it.
  async function listeningMember(cert: TestCert) {
    const connections: Buffer[][] = []; // verified (TLS) connections
    let dials = 0; // TCP connections
    const server = createTlsServer(
      { ...cert, ca: ca.cert, requestCert: true, ALPNProtocols: [ALPN_RAFT] },
      (socket) => {
        const bytes: Buffer[] = [];
        connections.push(bytes);
        socket.on('data', (chunk: Buffer) => bytes.push(chunk));
        socket.on('error', () => undefined);
      },
    );
    server.on('connection', () => dials++);
    server.on('tlsClientError', () => undefined);
    const [port] = await freePorts(1);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return { server, address: `127.0.0.1:${port}`, connections, dials: () => dials };
  }

  test('made once listening, preamble sent; connect() takes it at once and a new one follows', async () => {
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const member2 = await listeningMember(await ca.node(2));
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const members = [
      { id: 1, address },
      { id: 2, address: member2.address },
    ];
    const transport = new MemberTransport(
      1,
      address,
      material,
      recordingEngine(calls),
      () => true,
      () => members,
    );
    try {
      expect(transport.spareConnections).toBe(0); // nothing before it listens
      await transport.listen();
      await waitFor('a spare to member 2', () => transport.spareConnections === 1 || undefined);
      await waitFor('its preamble', () => member2.connections[0]?.length || undefined);
      expect(Buffer.concat(member2.connections[0]!).toString('latin1')).toBe(
        String.fromCharCode(address.length) + address,
      );
      // No dial: the engine has its connection before connect() returns.
      transport.connect(5, 2, member2.address);
      expect(calls).toEqual(['connected 5']);
      expect(transport.spareConnections).toBe(0);
      await waitFor('the next spare', () => member2.connections.length === 2 || undefined);
      await waitFor('it ready', () => transport.spareConnections === 1 || undefined);
      // A member leaving the configuration loses its spare.
      members.pop();
      await waitFor('the spare dropped', () => transport.spareConnections === 0 || undefined);
    } finally {
      await transport.close();
      member2.server.close();
    }
  });

  test('a member whose certificate names another id gets no spare; connect() dials and fails', async () => {
    const calls: string[] = [];
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const impostor = await listeningMember(await ca.node(3));
    const material = loadMemberTls({ ca: ca.cert, ...member1 }, 1);
    const transport = new MemberTransport(
      1,
      address,
      material,
      recordingEngine(calls),
      () => true,
      () => [{ id: 2, address: impostor.address }],
    );
    try {
      await transport.listen();
      await waitFor('two spare attempts (one retried)', () => impostor.dials() >= 2 || undefined);
      expect(transport.spareConnections).toBe(0);
      expect(impostor.connections.every((bytes) => bytes.length === 0)).toBe(true); // no preamble
      transport.connect(6, 2, impostor.address);
      await waitFor('the dial to end', () => calls.length > 0 || undefined);
      expect(calls).toEqual(['failed 6']);
    } finally {
      await transport.close();
      impostor.server.close();
    }
  });
});

// ---- secure defaults ----

const fsm: Fsm<null> = {
  apply: () => null,
  snapshot: () => [],
  restore: () => undefined,
};

describe('RaftNode.start: a cluster needs TLS, or insecure said out loud', () => {
  const nodes: RaftNode<null>[] = [];
  afterAll(async () => {
    for (const node of nodes) await node.close();
  });

  async function spec(n: number) {
    const [port, other] = await freePorts(2);
    const dataDir = join(dir, `node-${n}`);
    return {
      id: 1,
      address: `127.0.0.1:${port}`,
      dataDir,
      fsm,
      other: `127.0.0.1:${other}`,
    };
  }

  test('a configuration of more than one member, without tls or insecure → PREVAIL_TLS_REQUIRED', async () => {
    const { other, ...options } = await spec(1);
    await expect(
      RaftNode.start({
        ...options,
        cluster: [
          { id: 1, address: options.address },
          { id: 2, address: other },
        ],
      }),
    ).rejects.toMatchObject({ code: 'PREVAIL_TLS_REQUIRED' });
  });

  test('join without tls → PREVAIL_TLS_REQUIRED', async () => {
    const { other: _other, ...options } = await spec(2);
    await expect(RaftNode.start({ ...options, join: true })).rejects.toMatchObject({
      code: 'PREVAIL_TLS_REQUIRED',
    });
  });

  test('a default single node opens no port, and addMember on it → PREVAIL_TLS_REQUIRED', async () => {
    const { other, ...options } = await spec(3);
    const node = await RaftNode.start(options);
    nodes.push(node);
    expect(node.status().security).toBe('none');
    const refused = await new Promise<string>((resolve) => {
      const [host, port] = options.address.split(':');
      const socket = tcpConnect(Number(port), host);
      socket.once('connect', () => (socket.destroy(), resolve('connected')));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    await waitFor('the node to lead', () => node.isLeader || undefined);
    await expect(node.addMember({ id: 2, address: other })).rejects.toMatchObject({
      code: 'PREVAIL_TLS_REQUIRED',
    });
  });

  test('insecure: a PREVAIL_INSECURE process warning, and status().security "insecure"', async () => {
    const { other: _other, ...options } = await spec(4);
    // Called through: the warning is still emitted, the spy only sees it.
    const warn = jest.spyOn(process, 'emitWarning');
    try {
      const node = await RaftNode.start({ ...options, insecure: true });
      nodes.push(node);
      expect(node.status().security).toBe('insecure');
      expect(warn).toHaveBeenCalledWith(
        expect.stringContaining('WITHOUT TLS'),
        expect.objectContaining({ code: 'PREVAIL_INSECURE' }),
      );
    } finally {
      warn.mockRestore();
    }
  });
});

// The bounds on connections still in their TLS handshake (lib/core/handshake-gate.ts): the
// bookkeeping with times passed in, then a real TLS server on 127.0.0.1 behind the gate.
import diagnostics_channel from 'node:diagnostics_channel';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';

import {
  HandshakeGate,
  gateHandshakes,
  hostKey,
  type HandshakeLimits,
} from '../../../lib/core/handshake-gate.js';
import { waitFor } from '../../helpers/cluster.js';
import { testCa } from '../../helpers/test-certs.js';

const limits: HandshakeLimits = { perHost: 3, total: 5, perHostPerSecond: 2, burst: 4 };

describe('HandshakeGate', () => {
  test('a host gets perHost handshakes at once; done() frees a place', () => {
    const gate = new HandshakeGate(limits);
    expect([1, 2, 3].map(() => gate.admit('a', 0))).toEqual([null, null, null]);
    expect(gate.admit('a', 0)).toBe('host-busy');
    gate.done('a');
    expect(gate.admit('a', 0)).toBe(null);
    expect(gate.pending).toBe(3);
  });

  test('all hosts together get `total`', () => {
    const gate = new HandshakeGate(limits);
    for (const host of ['a', 'a', 'a', 'b', 'b']) expect(gate.admit(host, 0)).toBe(null);
    expect(gate.admit('c', 0)).toBe('busy');
    gate.done('b');
    expect(gate.admit('c', 0)).toBe(null);
  });

  test('the rate: `burst` at once, then perHostPerSecond', () => {
    const gate = new HandshakeGate({ ...limits, perHost: 100, total: 100 });
    const admitted = (n: number, at: number) =>
      Array.from({ length: n }, () => gate.admit('a', at)).filter((r) => r === null).length;
    expect(admitted(10, 0)).toBe(4);
    expect(gate.admit('a', 0)).toBe('rate');
    expect(admitted(10, 1000)).toBe(2); // one second earns two
    expect(admitted(10, 1250)).toBe(0); // a quarter of a second earns half of one
    expect(admitted(10, 1500)).toBe(1);
    expect(gate.admit('b', 1500)).toBe(null); // another host has its own bucket
  });

  test('done() for a host with nothing in progress changes nothing', () => {
    const gate = new HandshakeGate(limits);
    gate.done('nobody');
    expect(gate.admit('a', 0)).toBe(null);
    gate.done('a');
    gate.done('a');
    expect(gate.pending).toBe(0);
  });

  test('hosts are forgotten when idle, so a sweep of many hosts stays bounded', () => {
    const gate = new HandshakeGate({ perHost: 1, total: 10_000, perHostPerSecond: 1, burst: 1 });
    // 4096 hosts each used their one token: tracked until it is earned back.
    for (let i = 0; i < 4096; i++) {
      expect(gate.admit(`h${i}`, 0)).toBe(null);
      gate.done(`h${i}`);
    }
    expect(gate.admit('new', 0)).toBe('busy');
    expect(gate.admit('new', 1000)).toBe(null); // a second later they are idle and dropped
  });
});

describe('hostKey', () => {
  test.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::1', '0:0:0:0::/64'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
  ])('%s → %s', (address, key) => expect(hostKey(address)).toBe(key));
});

describe('gateHandshakes on a real TLS server', () => {
  test('silent connections past perHost are closed at once; finished handshakes do not count', async () => {
    const ca = await testCa();
    const server = createTlsServer({ ...(await ca.node(1)) }, (s) => s.on('error', () => {}));
    server.on('tlsClientError', (_e, s) => s.destroy());
    const gate = gateHandshakes(
      server,
      { ...limits, burst: 100, perHostPerSecond: 100 },
      'members',
    );
    const refused: unknown[] = [];
    const onRefused = (m: unknown) => refused.push(m);
    diagnostics_channel.subscribe('prevail:connection-refused', onRefused);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const open: Socket[] = [];
    const closed = new Set<Socket>();
    const silent = () => {
      const s = tcpConnect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => closed.add(s));
      open.push(s);
      return s;
    };
    try {
      // A finished handshake leaves the count: three of them do not fill the host's places.
      const done = [];
      for (let i = 0; i < 3; i++) {
        const c = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
        c.on('error', () => undefined);
        await new Promise((resolve) => c.once('secureConnect', resolve));
        done.push(c);
      }
      await waitFor(
        'finished handshakes to leave the count',
        () => gate.pending === 0 || undefined,
      );
      const held = [silent(), silent(), silent()];
      await waitFor('three silent connections counted', () => gate.pending === 3 || undefined);
      const extra = [silent(), silent()];
      await waitFor(
        'the two past the limit closed',
        () => extra.every((s) => closed.has(s)) || undefined,
      );
      expect(held.some((s) => closed.has(s))).toBe(false);
      expect(refused).toEqual([
        { port: 'members', host: '127.0.0.1', reason: 'host-busy' },
        { port: 'members', host: '127.0.0.1', reason: 'host-busy' },
      ]);
      // Closing them frees the places: a new client handshakes.
      for (const s of held) s.destroy();
      await waitFor('the places freed', () => gate.pending === 0 || undefined);
      const c = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      c.on('error', () => undefined);
      await new Promise((resolve) => c.once('secureConnect', resolve));
      c.destroy();
      for (const d of done) d.destroy();
    } finally {
      diagnostics_channel.unsubscribe('prevail:connection-refused', onRefused);
      for (const s of open) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 30_000);
});

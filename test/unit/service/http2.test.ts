// HTTP/2 on the HTTPS API: the same port speaks HTTP/2 and HTTP/1.1 (ALPN); over HTTP/2 every
// request is authenticated as over HTTP/1.1 (the connection's client certificate, or the
// request's token); many requests share one connection; bad frames close that connection and
// nothing else; closing the service
// lets a request in progress finish and sends GOAWAY instead of waiting out the drain timeout.
// A real service in this process, real TLS on 127.0.0.1, node:http2's client.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import {
  connect as http2Connect,
  constants as http2Constants,
  type ClientHttp2Session,
} from 'node:http2';
import { request } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

import { jest } from '@jest/globals';

import { startService, type Service, type ServiceOptions } from '../../../lib/index.js';
import { hasHttp2Fixes, http2Wanted } from '../../../lib/service/http-server.js';
import { freePorts, ServeProcess, tempDir, waitFor } from '../../helpers/cluster.js';
import {
  testCa,
  tlsFiles,
  writeClusterCerts,
  type TestCa,
  type TestCert,
} from '../../helpers/test-certs.js';

const ADMIN = 'admin-token-0123456789ab';
const MAX_BODY = 64 * 1024;

let ca: TestCa;
let serverCert: TestCert;
let alice: TestCert;
let service: Service;
const dirs: string[] = [];

async function serve(extra: Partial<ServiceOptions> = {}): Promise<Service> {
  const dataDir = tempDir('prevail-http2-');
  dirs.push(dataDir);
  const started = await startService({
    dataDir,
    tls: { ca: ca.cert, cert: serverCert.cert, key: serverCert.key },
    maxBodyBytes: MAX_BODY,
    auth: {
      users: [
        { name: 'alice', permissions: ['read', 'write'] },
        { name: 'ops', token: ADMIN, permissions: ['read', 'write', 'admin'] },
      ],
    },
    ...extra,
  });
  await waitFor('a leader', async () => started.store.node.status().role === 'leader');
  return started;
}

beforeAll(async () => {
  ca = await testCa('cluster CA');
  serverCert = await ca.node(1);
  alice = await ca.client('alice');
  service = await serve({
    reread: () => ({ tls: { ca: ca.cert, cert: serverCert.cert, key: serverCert.key } }),
  });
});
afterAll(async () => {
  await service?.close({ transferLeadership: false });
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const sessions: ClientHttp2Session[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.destroy();
});

/** An HTTP/2 connection to `to`, with `cert` when given. */
async function session(to: Service, cert?: TestCert): Promise<ClientHttp2Session> {
  const s = http2Connect(to.url, { ca: ca.cert, ...(cert ?? {}) });
  sessions.push(s);
  s.on('error', () => undefined); // each request reports its own failure
  await new Promise<void>((resolve, reject) => {
    s.once('remoteSettings', () => resolve()); // connected, and the server's settings are in
    s.once('error', reject);
  });
  return s;
}

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: any;
}

/** One request on `s`; the body is sent in `parts` (with `between` run after the first). */
function call(
  s: ClientHttp2Session,
  method: string,
  path: string,
  opts: { token?: string; body?: Buffer | string; between?: () => Promise<void> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
    const stream = s.request({
      ':method': method,
      ':path': path,
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(body ? { 'content-length': body.length } : {}),
    });
    let headers: Record<string, unknown> = {};
    let text = '';
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => (text += c.toString()));
    stream.on('end', () =>
      resolve({
        status: Number(headers[':status']),
        headers,
        body: text ? JSON.parse(text) : null,
      }),
    );
    stream.on('error', reject);
    stream.on('close', () => {
      if (!stream.readableEnded) reject(new Error(`stream closed (code ${stream.rstCode})`));
    });
    if (!body) stream.end();
    else if (!opts.between) stream.end(body);
    else {
      const half = body.length >> 1;
      stream.write(body.subarray(0, half));
      opts.between().then(() => stream.end(body.subarray(half)), reject);
    }
  });
}

/** An HTTP/1.1 request over TLS (to `base`, the shared service's by default); resolves its status and HTTP version. */
function http1(path: string, base = service.url): Promise<{ status: number; version: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { ca: ca.cert, ...alice }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, version: res.httpVersion }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * What an HTTP/2-only client gets from `url`: the protocol agreed (ALPN), once the server's
 * settings are in, or the code of the error that ended the attempt.
 */
function negotiated(url: string, cert?: TestCert): Promise<string> {
  return new Promise((resolve) => {
    const s = http2Connect(url, { ca: ca.cert, ...(cert ?? {}) });
    sessions.push(s);
    s.once('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)));
    s.once('close', () => resolve('closed'));
    s.once('remoteSettings', () => resolve(String(s.alpnProtocol)));
  });
}

/** A TLS connection to `to` that agreed on `protocol` (with `cert` when given), for a test to write raw bytes on. */
async function rawHttp2(to: Service, protocol = 'h2', cert?: TestCert): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port: Number(new URL(to.url).port),
    ca: ca.cert,
    ...cert,
    ALPNProtocols: [protocol],
    checkServerIdentity: () => undefined,
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
  return socket;
}

test('one port speaks HTTP/2 and HTTP/1.1 (ALPN), before and after a reload', async () => {
  for (let round = 0; round < 2; round++) {
    const s = await session(service, alice);
    expect((s.socket as unknown as { alpnProtocol: string }).alpnProtocol).toBe('h2');
    expect(s.remoteSettings.maxConcurrentStreams).toBe(128);
    expect((await call(s, 'PUT', '/kv/alpn', { body: 'v' })).status).toBe(200);
    expect(await http1('/kv/alpn')).toEqual({ status: 200, version: '1.1' });
    service.reload();
  }
});

test('every HTTP/2 request is authenticated: the certificate, a token, or 401', async () => {
  const withCert = await session(service, alice);
  const anonymous = await session(service);
  expect((await call(withCert, 'PUT', '/kv/a', { body: 'va' })).status).toBe(200);
  const got = await call(withCert, 'GET', '/kv/a');
  expect({ status: got.status, value: got.body.value }).toEqual({ status: 200, value: 'va' });
  expect((await call(withCert, 'GET', '/status')).status).toBe(403); // alice has no admin
  const refused = await call(anonymous, 'PUT', '/kv/a', { body: 'x' });
  expect({ status: refused.status, code: refused.body.error.code }).toEqual({
    status: 401,
    code: 'PREVAIL_UNAUTHORIZED',
  });
  // Requests on one connection are each judged: the token decides for the one that has it.
  expect((await call(anonymous, 'GET', '/status', { token: ADMIN })).status).toBe(200);
  expect((await call(anonymous, 'GET', '/kv/a')).status).toBe(401);
  expect((await call(withCert, 'GET', '/kv/a', { token: 'wrong-token-0123456789' })).status).toBe(
    401,
  );
  expect((await call(anonymous, 'GET', '/kv/a')).body).toEqual(refused.body);
});

test('64 writes in flight on one connection are all applied, each answered with its index', async () => {
  const s = await session(service, alice);
  const keys = Array.from({ length: 64 }, (_, i) => `many-${i}`);
  const answers = await Promise.all(keys.map((k) => call(s, 'PUT', `/kv/${k}`, { body: k })));
  expect(answers.map((a) => a.status)).toEqual(keys.map(() => 200));
  expect(new Set(answers.map((a) => a.body.index)).size).toBe(64);
  const reads = await Promise.all(keys.map((k) => call(s, 'GET', `/kv/${k}`)));
  expect(reads.map((r) => r.body.value)).toEqual(keys);
});

test('a body over the limit: 413 on that stream, no connection header, the connection goes on', async () => {
  const s = await session(service, alice);
  const big = await call(s, 'PUT', '/kv/big', { body: Buffer.alloc(MAX_BODY + 1, 1) });
  expect({ status: big.status, code: big.body.error.code }).toEqual({
    status: 413,
    code: 'PREVAIL_TOO_LARGE',
  });
  expect(big.headers.connection).toBeUndefined();
  expect((await call(s, 'PUT', '/kv/small', { body: 'ok' })).status).toBe(200);
  expect((await call(s, 'GET', '/kv/big')).status).toBe(404);
});

test('a client gone mid-body, over HTTP/2 and HTTP/1.1: nothing written, nothing logged, the rest goes on', async () => {
  const logged = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    const s = await session(service, alice);
    // HTTP/2: 10 of 1000 bytes, then the stream is reset; the connection stays.
    const stream = s.request({ ':method': 'PUT', ':path': '/kv/reset', 'content-length': 1000 });
    stream.on('error', () => undefined);
    stream.write(Buffer.alloc(10, 1));
    await new Promise((resolve) => setTimeout(resolve, 100));
    stream.close(http2Constants.NGHTTP2_CANCEL);
    // HTTP/1.1 on the same port: the same, then the connection is reset.
    const socket = await rawHttp2(service, 'http/1.1', alice);
    socket.write('PUT /kv/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    expect((await call(s, 'PUT', '/kv/after-reset', { body: 'v' })).status).toBe(200);
    for (const key of ['reset', 'gone'])
      expect((await call(s, 'GET', `/kv/${key}`)).status).toBe(404);
    expect(logged).not.toHaveBeenCalled();
  } finally {
    logged.mockRestore();
  }
});

test('tls as files (caFile, certFile, keyFile) serves HTTPS with them; without a certificate, refused before anything starts', async () => {
  const dir = tempDir('prevail-http2-files-');
  dirs.push(dir);
  await writeClusterCerts(dir, [1], ca);
  // Before, only the members read the files: the HTTPS port had no certificate, every handshake failed.
  const fromFiles = await serve({ tls: tlsFiles(dir, 1) });
  try {
    expect(await http1('/health/leader', fromFiles.url)).toEqual({ status: 200, version: '1.1' });
    const s = await session(fromFiles, alice);
    expect((await call(s, 'GET', '/health/leader')).status).toBe(200);
  } finally {
    await fromFiles.close({ transferLeadership: false });
  }
  const { certFile: _cert, ...noCert } = tlsFiles(dir, 1);
  await expect(serve({ tls: noCert })).rejects.toMatchObject({ code: 'PREVAIL_INVALID_ARGUMENT' });
});

test('bytes that are not HTTP/2 close that connection; the service and its data are unharmed', async () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  for (let i = 0; i < 24; i++) {
    // Random bytes alone, and random frames after a valid preface.
    const garbage = randomBytes(1 + ((i * 97) % 3000));
    const bytes = i % 2 === 0 ? garbage : Buffer.concat([preface, garbage]);
    const socket = await rawHttp2(service);
    expect(socket.alpnProtocol).toBe('h2');
    socket.resume();
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.end(bytes);
    await closed;
  }
  const s = await session(service, alice);
  expect((await call(s, 'GET', '/kv/a')).body.value).toBe('va');
  expect((await call(s, 'PUT', '/kv/after-garbage', { body: 'v' })).status).toBe(200);
});

// Without GOAWAY the open connections would hold close() for the whole drain timeout, far past
// this test's.
test('close(): a request in progress on HTTP/2 is answered, then GOAWAY; no wait for the drain timeout', async () => {
  const closing = await serve({ drainTimeoutMs: 600_000 });
  const s = await session(closing, alice);
  const idle = await session(closing, alice);
  expect((await call(idle, 'GET', '/kv/none')).status).toBe(404);
  const goaway = new Promise<void>((resolve) => idle.once('goaway', () => resolve()));
  let closed: Promise<void> | undefined;
  const answer = await call(s, 'PUT', '/kv/in-flight', {
    body: 'in flight',
    between: async () => {
      // The server has read every frame sent before the ping's answer: the request is in
      // progress (a stream it had not seen would be refused by the GOAWAY, safely retried).
      await new Promise<void>((resolve) => s.ping(() => resolve()));
      closed = closing.close({ transferLeadership: false });
      await goaway; // the drain has begun; the rest of the body arrives after it
    },
  });
  expect(answer.status).toBe(200);
  await closed;
}, 30_000);

// A client that never finishes its request must not hold close() past the drain timeout: its
// connection is cut, over either protocol.
test('close(): requests never finished, over HTTP/2 and HTTP/1.1, are cut at the drain timeout', async () => {
  const stuck = await serve({ drainTimeoutMs: 300 });
  const h1seen = new Promise<void>((resolve) =>
    stuck.server.on('request', (req: { httpVersionMajor: number }) => {
      if (req.httpVersionMajor === 1) resolve();
    }),
  );
  const s = await session(stuck, alice);
  const stream = s.request({ ':method': 'PUT', ':path': '/kv/stuck', 'content-length': 10 });
  stream.on('error', () => undefined);
  stream.write('half');
  const h2cut = new Promise((resolve) => stream.once('close', resolve));
  const h1 = request(`${stuck.url}/kv/stuck`, {
    method: 'PUT',
    ca: ca.cert,
    ...alice,
    headers: { 'content-length': 10 },
  });
  const h1cut = new Promise((resolve) => h1.once('error', resolve));
  h1.write('half');
  await new Promise<void>((resolve) => s.ping(() => resolve())); // the server has the stream
  await h1seen;
  await stuck.close({ transferLeadership: false });
  await h2cut;
  await h1cut;
}, 30_000);

// A client that ignores the advertised limit: 200 requests at once on one connection, as raw
// frames (node:http2's client would queue them). Past 128 in progress they are refused, and
// the service serves the next client.
test('a client that opens more streams than allowed gets the extra refused; the service goes on', async () => {
  const socket = await rawHttp2(service);
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    return Buffer.concat([head, payload]);
  };
  // HEADERS, END_STREAM | END_HEADERS: GET / over https from HPACK's static table, and
  // :authority localhost (a literal with the table's name), which a request must have.
  const get = Buffer.concat([
    Buffer.from([0x82, 0x84, 0x87, 0x01, 0x09]),
    Buffer.from('localhost'),
  ]);
  const streams = Array.from({ length: 200 }, (_, i) => 2 * i + 1);
  socket.write(
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      frame(4, 0, 0, Buffer.alloc(0)), // SETTINGS
      ...streams.map((id) => frame(1, 0x5, id, get)),
    ]),
  );
  const answered = new Set<number>();
  const refused = new Set<number>();
  let pending = Buffer.alloc(0);
  const REFUSED_STREAM = 7;
  await new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
        const length = pending.readUIntBE(0, 3);
        const [type, id] = [pending[3]!, pending.readUInt32BE(5) & 0x7fffffff];
        if (type === 1) answered.add(id);
        if (type === 3 && pending.readUInt32BE(9) === REFUSED_STREAM) refused.add(id);
        pending = pending.subarray(9 + length);
      }
      if (answered.size + refused.size === streams.length) resolve();
    });
  });
  socket.destroy();
  expect(refused.size).toBeGreaterThan(0);
  expect(answered.size).toBeLessThanOrEqual(128);
  const s = await session(service, alice);
  expect((await call(s, 'PUT', '/kv/after-flood', { body: 'v' })).status).toBe(200);
  expect((await call(s, 'GET', '/kv/after-flood')).body.value).toBe('v');
});

test("the admin page's event stream over HTTP/2: its first status, then more, on one stream", async () => {
  const s = await session(service);
  const stream = s.request({ ':path': '/admin/events', authorization: `Bearer ${ADMIN}` });
  const headers = await new Promise<Record<string, unknown>>((resolve) =>
    stream.once('response', resolve),
  );
  expect({ status: headers[':status'], type: headers['content-type'] }).toEqual({
    status: 200,
    type: 'text/event-stream; charset=utf-8',
  });
  let text = '';
  await new Promise<void>((resolve) =>
    stream.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.split('data: ').length > 2) resolve(); // two messages
    }),
  );
  expect(typeof JSON.parse(text.split('data: ')[1]!.split('\n')[0]!).time).toBe('number');
  stream.close();
});

test('http2: false serves HTTP/1.1 only: an HTTP/2-only client gets no connection', async () => {
  const h1only = await serve({ http2: false });
  try {
    expect(await negotiated(h1only.url, alice)).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    expect(await http1('/kv/x', h1only.url)).toEqual({ status: 404, version: '1.1' });
  } finally {
    await h1only.close({ transferLeadership: false });
  }
});

test.each([
  ['20.20.1', false],
  ['20.20.2', true],
  ['20.21.0', true],
  ['21.7.3', false],
  ['22.22.1', false],
  ['22.22.2', true],
  ['22.23.0', true],
  ['23.11.1', false],
  ['24.14.0', false],
  ['24.14.1', true],
  ['25.8.2', true],
  ['26.0.0', true],
  ['18.20.8', false],
])('Node %s has the HTTP/2 fixes: %s; by default HTTP/2 is served only there', (version, fixed) => {
  expect(hasHttp2Fixes(version)).toBe(fixed);
  const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  try {
    expect(http2Wanted(undefined, version)).toBe(fixed);
    expect(http2Wanted(false, version)).toBe(false);
    expect(http2Wanted(true, version)).toBe(true);
  } finally {
    warn.mockRestore();
  }
});

test('prevail serve --no-http2: HTTPS on HTTP/1.1 only; without it, HTTP/2 too', async () => {
  const certDir = tempDir('prevail-http2-certs-');
  dirs.push(certDir);
  await writeClusterCerts(certDir, [1], ca);
  const files = tlsFiles(certDir, 1);
  const tlsArgs = ['--ca', files.caFile, '--cert', files.certFile, '--key', files.keyFile];
  for (const [flags, alpn] of [
    [['--no-http2'], 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL'],
    [[], 'h2'],
  ] as const) {
    const [raftPort, httpPort] = await freePorts(2);
    const dataDir = tempDir('prevail-http2-serve-');
    dirs.push(dataDir);
    const node = new ServeProcess(
      { id: 1, address: `127.0.0.1:${raftPort}`, http: `127.0.0.1:${httpPort}`, dataDir },
      [...tlsArgs, ...flags],
      () => ({ ca: ca.cert }),
    );
    try {
      await node.ready();
      expect(await negotiated(node.url)).toBe(alpn);
      expect((await node.request('GET', '/status')).status).toBe(200); // HTTP/1.1 either way
      expect(node.output).not.toMatch(/Warning/);
    } finally {
      await node.kill();
    }
  }
}, 60_000);

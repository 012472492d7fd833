// A request body over `prevail serve`'s limit (--max-body, 1 MiB by default) is answered with
// the documented 413 JSON error and `Connection: close`, never with a reset connection: with
// fetch (undici), curl, and a raw socket that sends its whole body before reading; a declared
// Content-Length over the limit is answered before any body byte is sent, a chunked body as soon
// as it passes the limit. Afterwards the node still answers health checks and takes writes. A
// client that goes away before its body is whole writes nothing and is no error of the server's.
// Real `node dist/cli.js serve` child process (npm run build:ts first); every wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

import { parseAddress } from '../../../lib/core/address.js';
import { ServeProcess, ServiceCluster, tempDir, type HttpAnswer } from '../../helpers/cluster.js';

const MiB = 1024 * 1024;
const LIMIT = MiB;
const BIG = 64 * MiB;

type ErrorBody = { error: { code: string; message: string; limit?: number } };

function expectTooLarge(answer: {
  status: number;
  body: unknown;
  connection?: string | null;
}): void {
  const body = answer.body as ErrorBody;
  expect({ status: answer.status, code: body?.error?.code, connection: answer.connection }).toEqual(
    { status: 413, code: 'PREVAIL_TOO_LARGE', connection: 'close' },
  );
  expect(body.error.message).toMatch(/larger than the limit of 1048576 bytes/);
  expect(body.error.limit).toBe(LIMIT);
}

async function fetchAnswer(
  url: string,
  init: RequestInit,
): Promise<HttpAnswer & { connection: string | null }> {
  // A reset connection rejects here ("fetch failed", cause ECONNRESET or EPIPE): that is the bug.
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return {
    status: res.status,
    body,
    headers: res.headers,
    connection: res.headers.get('connection'),
  };
}

interface RawAnswer {
  status: number;
  connection: string | null;
  body: unknown;
  /** A socket error (ECONNRESET, EPIPE) seen before the answer was complete. */
  error: string | null;
  /** Body bytes written before the answer arrived (for `stopOnAnswer`). */
  sent: number;
}

/**
 * One HTTP/1.1 request over a plain TCP socket. `body` is written in 1 MiB pieces (waiting for
 * drain) after the head; with `stopOnAnswer` it first waits (up to 10 s) for an answer, and sends
 * no (more) body once the answer starts arriving.
 * Resolves when the server closes the connection (or after 30 s, destroying the socket).
 */
function rawRequest(
  hostPort: string,
  head: string,
  body: Buffer[],
  stopOnAnswer = false,
): Promise<RawAnswer> {
  const { host, port } = parseAddress(hostPort);
  return new Promise((resolve) => {
    const socket = connect(port, host);
    const received: Buffer[] = [];
    let error: string | null = null;
    let sent = 0;
    let answered = false;
    const timer = setTimeout(() => {
      error ??= 'timeout';
      socket.destroy();
    }, 30_000);
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      answered = true;
      // The whole (small) answer is in: done (a real client would close now too).
      if (stopOnAnswer && parse().complete) socket.destroy();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const p = parse();
      resolve({
        status: p.status,
        connection: p.connection,
        body: p.body,
        error: p.complete ? null : (error ?? 'incomplete answer'),
        sent,
      });
    });
    const parse = () => {
      const text = Buffer.concat(received).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return { status: 0, connection: null, body: null, complete: false };
      const lines = text.slice(0, end).split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const header = (name: string) =>
        lines
          .find((l) => l.toLowerCase().startsWith(`${name}:`))
          ?.slice(name.length + 1)
          .trim() ?? null;
      const length = Number(header('content-length'));
      const rest = Buffer.concat(received).subarray(
        Buffer.byteLength(text.slice(0, end + 4), 'latin1'),
      );
      if (!(rest.length >= length))
        return { status, connection: header('connection'), body: null, complete: false };
      let parsed: unknown;
      try {
        parsed = JSON.parse(rest.subarray(0, length).toString('utf8'));
      } catch {
        parsed = rest.toString('utf8');
      }
      return { status, connection: header('connection'), body: parsed, complete: true };
    };
    socket.once('connect', async () => {
      const write = (data: Buffer | string) =>
        new Promise<void>((done) => {
          if (socket.destroyed) {
            done();
            return;
          }
          if (socket.write(data)) {
            done();
            return;
          }
          const settle = () => {
            socket.off('drain', settle);
            socket.off('close', settle);
            done();
          };
          socket.on('drain', settle);
          socket.on('close', settle);
        });
      await write(head);
      if (stopOnAnswer) {
        // Like a client waiting for `100 Continue`: give the server (a bounded) while to answer first.
        await new Promise<void>((done) => {
          const t = setTimeout(done, 10_000);
          const settle = () => {
            clearTimeout(t);
            done();
          };
          socket.once('data', settle);
          socket.once('close', settle);
        });
      }
      for (const piece of body) {
        if (socket.destroyed || (stopOnAnswer && answered)) break;
        await write(piece);
        sent += piece.length;
      }
    });
  });
}

function runCurl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--max-time', '30', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.once('error', (err) => {
      stderr += String(err);
    });
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const curlInstalled = spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;

describe('a body over the limit on prevail serve', () => {
  let cluster: ServiceCluster;
  let node: ServeProcess;
  let files: string;

  /**
   * A request on a connection closed after it: none is left idle in fetch's pool, where the next
   * (64 MiB) request could pick it up just as the server's keep-alive timeout closes it (a reset
   * that has nothing to do with the body limit, seen here when the machine was busy).
   */
  function closing(
    method: string,
    path: string,
    body?: string,
  ): Promise<HttpAnswer & { connection: string | null }> {
    return fetchAnswer(`${node.url}${path}`, {
      method,
      body: body ?? null,
      headers: { connection: 'close' },
    });
  }

  beforeAll(async () => {
    cluster = await ServiceCluster.create(1);
    node = await cluster.leader();
    // Close every connection ready() and leader() left idle in fetch's pool (there can be more
    // than one): each of these takes one, or opens a new one, and closes it after.
    await Promise.all(Array.from({ length: 4 }, () => closing('GET', '/health/leader')));
    files = tempDir('prevail-body-');
  });
  afterAll(async () => {
    await cluster?.stop();
    if (files) rmSync(files, { recursive: true, force: true });
  });

  /** The node is healthy: it answers /health/leader and takes (and keeps) a write. */
  async function expectHealthy(key: string): Promise<void> {
    expect(node.alive).toBe(true);
    expect((await closing('GET', '/health/leader')).status).toBe(200);
    expect((await closing('PUT', `/kv/${key}`, 'still here')).status).toBe(200);
    expect((await closing('GET', `/kv/${key}`)).body).toEqual({
      value: 'still here',
      index: expect.any(Number),
    });
  }

  test('fetch: a 64 MiB PUT (and CAS) gets the 413 JSON answer, not a reset', async () => {
    const big = new Uint8Array(BIG).fill(0x61);
    for (let i = 0; i < 3; i++) {
      expectTooLarge(await fetchAnswer(`${node.url}/kv/big`, { method: 'PUT', body: big }));
    }
    expectTooLarge(await fetchAnswer(`${node.url}/kv/big/cas`, { method: 'POST', body: big }));
    // Just over the limit, and a few MiB over it, too.
    expectTooLarge(
      await fetchAnswer(`${node.url}/kv/big`, { method: 'PUT', body: new Uint8Array(LIMIT + 1) }),
    );
    expectTooLarge(
      await fetchAnswer(`${node.url}/kv/big`, { method: 'PUT', body: new Uint8Array(5 * MiB) }),
    );
    expect((await closing('GET', '/kv/big')).status).toBe(404); // nothing was written
    await expectHealthy('after-fetch');
  });

  test('fetch: a chunked (streamed) body that grows past the limit gets the 413', async () => {
    const piece = new Uint8Array(256 * 1024).fill(0x62);
    let pieces = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pieces++ < (16 * MiB) / piece.length) controller.enqueue(piece);
        else controller.close();
      },
    });
    const answer = await fetchAnswer(`${node.url}/kv/streamed`, {
      method: 'PUT',
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expectTooLarge(answer);
    await expectHealthy('after-chunked-fetch');
  });

  test('a raw client that sends all 64 MiB before reading finds the 413 waiting', async () => {
    const body = Array.from({ length: BIG / MiB }, () => Buffer.alloc(MiB, 0x63));
    const answer = await rawRequest(
      node.spec.http,
      `PUT /kv/raw HTTP/1.1\r\nHost: x\r\nContent-Length: ${BIG}\r\n\r\n`,
      body,
    );
    expect(answer.error).toBeNull();
    expectTooLarge(answer);
    await expectHealthy('after-raw');
  });

  test('a declared Content-Length over the limit is refused before any of the body is sent', async () => {
    // Only the head: the answer must come without a single body byte.
    const answer = await rawRequest(
      node.spec.http,
      `PUT /kv/declared HTTP/1.1\r\nHost: x\r\nContent-Length: ${1024 * MiB}\r\n\r\n`,
      [Buffer.alloc(MiB)],
      true,
    );
    expect(answer.error).toBeNull();
    expectTooLarge(answer);
    expect(answer.sent).toBe(0);
    // Just one byte over, declared, with `Expect: 100-continue`: no go-ahead, the 413 straight away.
    const asked = await rawRequest(
      node.spec.http,
      `PUT /kv/declared HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${LIMIT + 1}\r\n\r\n`,
      [Buffer.alloc(LIMIT + 1)],
      true,
    );
    expect(asked.error).toBeNull();
    expectTooLarge(asked);
    expect(asked.sent).toBe(0);
    await expectHealthy('after-declared');
  });

  test('a raw chunked body past the limit is answered 413 (sent whole, then read)', async () => {
    const chunk = Buffer.concat([
      Buffer.from(`${MiB.toString(16)}\r\n`),
      Buffer.alloc(MiB, 0x64),
      Buffer.from('\r\n'),
    ]);
    const body = [...Array.from({ length: 8 }, () => chunk), Buffer.from('0\r\n\r\n')];
    const answer = await rawRequest(
      node.spec.http,
      'PUT /kv/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      body,
    );
    expect(answer.error).toBeNull();
    expectTooLarge(answer);
    await expectHealthy('after-raw-chunked');
  });

  test('a client that goes away mid-body: nothing written, no internal error logged, the node goes on', async () => {
    const before = node.output.length;
    const { host, port } = parseAddress(node.spec.http);
    for (const [method, path] of [
      ['PUT', '/kv/gone'],
      ['POST', '/kv/gone/cas'],
    ]) {
      const socket = connect(port, host);
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      // 10 of the 1000 bytes promised, then a reset: the body never arrives.
      socket.write(
        `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789`,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.resetAndDestroy();
    }
    await expectHealthy('after-gone');
    expect((await closing('GET', '/kv/gone')).status).toBe(404);
    // Before: "PUT /kv/gone: Error: aborted" with a stack, as if the server had failed.
    expect(node.output.slice(before)).toBe('');
  });

  (curlInstalled ? test : test.skip)(
    'curl: 64 MiB with and without Expect: 100-continue, and chunked',
    async () => {
      const file = join(files, 'big');
      writeFileSync(file, Buffer.alloc(BIG, 0x65));
      for (const extra of [[], ['-H', 'Expect:'], ['-H', 'Transfer-Encoding: chunked']]) {
        const out = await runCurl([
          '-X',
          'PUT',
          '--data-binary',
          `@${file}`,
          ...extra,
          '-D',
          '-',
          `${node.url}/kv/curl`,
        ]);
        expect({ extra, code: out.code, stderr: out.stderr }).toEqual({
          extra,
          code: 0,
          stderr: '',
        });
        const [head, body] = out.stdout.split('\r\n\r\n').slice(-2) as [string, string];
        expectTooLarge({
          status: Number(head.split('\r\n')[0]!.split(' ')[1]),
          connection: /\r\nconnection: *(\S+)/i.exec(head)?.[1] ?? null,
          body: JSON.parse(body),
        });
      }
      await expectHealthy('after-curl');
    },
  );
});

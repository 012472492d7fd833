// The addon's JS methods, called raw with arguments that do not fit their signatures
// (lib/native.ts): each must answer with a coded error, never crash the process.
import { rmSync } from 'node:fs';

import { ErrorCodes } from '../../../lib/core/errors.js';
import {
  addon,
  type NativeCallbacks,
  type NativeEngine,
  type NativeStartOptions,
} from '../../../lib/engine/native.js';
import { freePorts, tempDir } from '../../helpers/cluster.js';

type Raw = Record<string, (...args: unknown[]) => unknown>;

const callbacks: NativeCallbacks = {
  apply: () => undefined,
  snapshot: () => new Uint8Array(0),
  restore: () => undefined,
  state: () => undefined,
};

// [method, arguments] pairs that do not fit, for each method.
const badCalls: [string, unknown[]][] = [
  ['start', []],
  ['start', ['options']],
  ['apply', []],
  ['apply', ['text']],
  ['apply', [new Uint16Array(4)]],
  ['apply', [new Uint8Array(1), 'extra']],
  ['barrier', [1]],
  ['add', []],
  ['add', ['2', '127.0.0.1:1']],
  ['add', [2, 9]],
  ['add', [-1, '127.0.0.1:1']],
  ['assign', [2]],
  ['assign', [2.5, 'voter']],
  ['assign', [2, {}]],
  ['remove', [null]],
  ['remove', [Number.NaN]],
  ['transfer', ['1']],
  ['transfer', [Infinity]],
  ['close', [true]],
];
const badSyncCalls: [string, unknown[]][] = [
  ['status', [1]],
  ['setSnapshotThreshold', []],
  ['setSnapshotThreshold', ['8']],
  ['setSnapshotThreshold', [-8]],
  ['accept', []],
  ['accept', ['1', '127.0.0.1:1']],
  ['accept', [1, 7]],
  ['connected', ['token']],
  ['connected', [-1]],
  ['connectFailed', [{}]],
];

/** Start options that fit, for a node at `address` in `dataDir`; `extra` overrides. */
function startOptions(
  address: string,
  dataDir: string,
  extra: Partial<NativeStartOptions> = {},
): NativeStartOptions {
  return {
    id: 1,
    address,
    dataDir,
    electionTimeoutMs: 1000,
    heartbeatMs: 100,
    tickMs: 50,
    snapshotThreshold: 64,
    snapshotTrailing: 16,
    maxInflightEntries: 64,
    preVote: false,
    transport: 'tcp',
    ...extra,
  };
}

async function expectInvalid(engine: NativeEngine, method: string, args: unknown[]): Promise<void> {
  const raw = engine as unknown as Raw;
  await expect(Promise.resolve().then(() => raw[method]!(...args))).rejects.toMatchObject({
    code: ErrorCodes.INVALID_ARGUMENT,
  });
}

function expectInvalidThrow(engine: NativeEngine, method: string, args: unknown[]): void {
  const raw = engine as unknown as Raw;
  expect(() => raw[method]!(...args)).toThrow(
    expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
  );
}

describe('native Engine arguments', () => {
  test('the constructor refuses what is not an object of callbacks', () => {
    const Engine = addon.Engine as unknown as new (...args: unknown[]) => NativeEngine;
    for (const args of [[], [1], [{ ...callbacks, apply: 1 }], [callbacks, 'extra']]) {
      expect(() => new Engine(...args)).toThrow(
        expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
      );
    }
  });

  test('an unstarted engine answers every bad call with PREVAIL_INVALID_ARGUMENT', async () => {
    const engine = new addon.Engine(callbacks);
    for (const [method, args] of badCalls) await expectInvalid(engine, method, args);
    for (const [method, args] of badSyncCalls) expectInvalidThrow(engine, method, args);
    expect(engine.status().state).toBe('unstarted');
  });

  test('bad start options are refused with PREVAIL_INVALID_ARGUMENT', async () => {
    const options = startOptions('127.0.0.1:1', '/nonexistent', { preVote: true });
    for (const bad of [
      { id: 'one' },
      { dataDir: 7 },
      { bootstrap: [1] },
      { bootstrap: [{ id: -1, address: 'x' }] },
      { bootstrap: [{ id: 1 }] },
      { transport: 'udp' },
      { transport: undefined },
      { tickMs: 0 },
      { tickMs: 101 }, // above the heartbeat
      { tickMs: undefined },
    ]) {
      await expectInvalid(new addon.Engine(callbacks), 'start', [{ ...options, ...bad }]);
    }
  });

  test('a running engine answers every bad call with PREVAIL_INVALID_ARGUMENT and keeps running', async () => {
    const dir = tempDir();
    const address = `127.0.0.1:${(await freePorts(1))[0]}`;
    const engine = new addon.Engine(callbacks);
    try {
      await engine.start(startOptions(address, dir, { bootstrap: [{ id: 1, address }] }));
      for (const [method, args] of badCalls) await expectInvalid(engine, method, args);
      for (const [method, args] of badSyncCalls) expectInvalidThrow(engine, method, args);
      expect(engine.status().state).not.toBe('closed');
    } finally {
      await engine.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the stream transport: nothing to accept or connect before start, a stale token is refused', () => {
    const engine = new addon.Engine({ ...callbacks, connect: () => undefined });
    const ECANCELED = -125;
    expect(engine.accept(2, '127.0.0.1:1')).toBe(ECANCELED);
    expect(engine.connected(12345)).toBe(ECANCELED);
    expect(() => engine.connectFailed(12345)).not.toThrow();
  });

  test('the stream transport needs a connect callback', async () => {
    const dir = tempDir();
    try {
      const engine = new addon.Engine(callbacks);
      await expect(
        engine.start(startOptions('127.0.0.1:1', dir, { transport: 'streams' })),
      ).rejects.toMatchObject({ code: ErrorCodes.ENGINE });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

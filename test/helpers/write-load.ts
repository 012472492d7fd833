// A steady write load on a `prevail serve` cluster, for tests that change it underneath (rotate
// or revoke certificates, restart nodes): writers put sequential keys through the nodes `pick`
// returns, retrying what fails transiently (a node restarting, a connection cut, no leader yet);
// a 4xx, or 30 s of failures, is recorded as failed. Only acknowledged writes are recorded.
import { expect } from '@jest/globals';

import { waitFor, type ServeProcess } from './cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WriteLoad {
  readonly acked: Map<string, string>;
  readonly failed: string[];
  /** Transient failures retried. */
  readonly retries: () => number;
  /** Waits (bounded) until `count` more writes have been acknowledged. */
  progress(count?: number, timeoutMs?: number): Promise<void>;
  /** Stops the writers and waits for them. */
  stop(): Promise<void>;
  /** Every acknowledged write, read back linearizably from `leader` with its value. */
  expectAllPresent(leader: ServeProcess): Promise<void>;
}

export function startWriteLoad(pick: (writer: number) => ServeProcess, writers: number): WriteLoad {
  let stopped = false;
  let retries = 0;
  const acked = new Map<string, string>();
  const failed: string[] = [];
  const put = async (writer: number, key: string, value: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await pick(writer)
        .request('PUT', `/kv/${key}`, value, 5000)
        .catch((err: Error) => ({ status: 0, body: err.message }));
      if (r.status === 200) return void acked.set(key, value);
      // 4xx is a refusal, not a transient failure: the test fails on it.
      if ((r.status >= 400 && r.status < 500) || Date.now() > deadline)
        return void failed.push(`${key}: ${r.status} ${JSON.stringify(r.body)}`);
      retries++;
      await sleep(50);
    }
  };
  const running = Array.from({ length: writers }, async (_, w) => {
    for (let n = 0; !stopped; n++) await put(w, `w${w}-${n}`, `v${n}`);
  });
  return {
    acked,
    failed,
    retries: () => retries,
    async progress(count = 30, timeoutMs = 30_000) {
      const target = acked.size + count;
      await waitFor(`${count} more acknowledged writes`, () => acked.size >= target, timeoutMs);
    },
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
    async expectAllPresent(leader) {
      for (const [key, value] of acked) {
        const r = await leader.request('GET', `/kv/${key}?consistency=linearizable`);
        expect([key, r.status, r.body.value]).toEqual([key, 200, value]);
      }
    },
  };
}

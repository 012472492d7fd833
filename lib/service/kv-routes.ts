// The key routes: PUT, GET (at a consistency level, after an index), DELETE and compare-and-set.
import type { IncomingMessage } from 'node:http';

import type { ReadOptions } from '../cluster/cluster-link.js';
import { checkConsistency } from '../cluster/consistency.js';
import { ErrorCodes, invalid } from '../core/errors.js';
import { decodeUtf8, parseJson, readBody } from './body.js';
import { CAS_CONFLICT } from './http-errors.js';
import type { RouteContext } from './routes.js';

export async function putKey(
  { store, maxBody }: RouteContext,
  req: IncomingMessage,
  key: string,
): Promise<unknown> {
  const value = decodeUtf8(await readBody(req, maxBody));
  const { index } = await store.proposeWithIndex('put', { key, value });
  return { index };
}

export async function getKey(
  { store, readTimeoutMs }: RouteContext,
  url: URL,
  key: string,
  signal: AbortSignal,
): Promise<[number, unknown]> {
  const consistency = checkConsistency(url.searchParams.get('consistency'));
  const readOptions: ReadOptions = { consistency, timeoutMs: readTimeoutMs, signal };
  const minIndex = url.searchParams.get('minIndex');
  if (minIndex !== null) readOptions.minIndex = parseMinIndex(minIndex);
  const index = await store.read(readOptions);
  // Safe to read the view synchronously now, at the level asked for.
  const entry = store.view.kv.byKey.get(key);
  if (!entry)
    return [
      404,
      { error: { code: ErrorCodes.NOT_FOUND, message: `no key ${JSON.stringify(key)}` }, index },
    ];
  return [200, { value: entry.value, index }];
}

function parseMinIndex(minIndex: string): number {
  const n = /^\d{1,15}$/.test(minIndex) ? Number(minIndex) : NaN;
  if (!Number.isSafeInteger(n))
    throw invalid(`minIndex must be a non-negative integer, got ${JSON.stringify(minIndex)}`);
  return n;
}

export async function casKey(
  { store, maxBody }: RouteContext,
  req: IncomingMessage,
  key: string,
): Promise<[number, unknown]> {
  const { expect, value } = parseCasBody(await readBody(req, maxBody));
  const { index, result } = await store.proposeWithIndex('cas', { key, expect, value });
  if (result.ok) return [200, { index }];
  return [
    409,
    {
      error: {
        code: CAS_CONFLICT,
        message: `the value of ${JSON.stringify(key)} is not the expected one`,
      },
      current: result.current,
      index,
    },
  ];
}

function parseCasBody(raw: Buffer): { expect: string | null; value: string } {
  const body = parseJson(raw);
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('the body must be a JSON object { expect, value }');
  const { expect, value } = body as { expect?: unknown; value?: unknown };
  if (expect === undefined)
    throw invalid('expect is required: the current value, or null for an absent key');
  if (expect !== null && typeof expect !== 'string')
    throw invalid('expect must be a string or null');
  if (typeof value !== 'string') throw invalid('value must be a string');
  return { expect, value };
}

export async function deleteKey({ store }: RouteContext, key: string): Promise<unknown> {
  const { index, result } = await store.proposeWithIndex('del', { key });
  return { index, deleted: result.deleted };
}

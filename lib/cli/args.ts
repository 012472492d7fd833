// The command line's argument checks, shared by serve and the client commands: each bad value is a
// UsageError (exit 2).
import { parseAddress } from '../core/address.js';
import type { MemberRef } from '../core/errors.js';
import { UsageError } from './usage.js';

export function fail(message: string): never {
  throw new UsageError(message);
}

export function positiveInt(
  flag: string,
  value: string | undefined,
  fallback?: number,
): number | undefined {
  if (value === undefined) return fallback;
  const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    fail(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** HOST:PORT by the one address grammar (lib/core/address.ts), and without the separators of --cluster. */
export function hostPort(flag: string, value: string): string {
  const bad = () => fail(`${flag} must be HOST:PORT, got ${JSON.stringify(value)}`);
  if (/[,=]/.test(value)) bad();
  try {
    parseAddress(value, flag);
  } catch {
    bad();
  }
  return value;
}

/** "1=127.0.0.1:7001,2=127.0.0.1:7002" → [{ id: 1, address: '127.0.0.1:7001' }, …] */
export function parseCluster(value: string): MemberRef[] {
  const members = value
    .split(',')
    .map((part) => part.trim())
    .filter((p) => p !== '')
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq < 0) fail(`--cluster entries are ID=HOST:PORT, got ${JSON.stringify(part)}`);
      return {
        id: positiveInt('a --cluster id', part.slice(0, eq))!,
        address: hostPort('a --cluster address', part.slice(eq + 1)),
      };
    });
  if (members.length === 0) fail('--cluster is empty');
  if (new Set(members.map((m) => m.id)).size !== members.length)
    fail('--cluster lists an id twice');
  return members;
}

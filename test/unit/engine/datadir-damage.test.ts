// A damaged data dir is refused with a coded error naming the file, before anything in it is
// changed: damaged term-and-vote files (metadata1/metadata2) and a corrupt log segment, which the
// engine would otherwise take for never written (a blank node) or move aside (a shorter log).
// Each case damages a copy of a real node's dir, starts a RaftNode on it, and compares every
// file's bytes before and after.
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { RaftNode, type Fsm, type MemberRef } from '../../../lib/index.js';
import { freePorts, tempDir, waitFor } from '../../helpers/cluster.js';

const fsm: Fsm<unknown> = {
  apply: () => undefined,
  snapshot: () => new Uint8Array(0),
  restore: () => undefined,
};

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Every file in `dir` and the sha256 of its bytes. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    out[name] = createHash('sha256')
      .update(readFileSync(join(dir, name)))
      .digest('hex');
  }
  return out;
}

const closedSegments = (dir: string) =>
  readdirSync(dir)
    .filter((f) => /^\d{16}-\d{16}$/.test(f))
    .sort();

function flipByte(file: string, at: number): void {
  const bytes = readFileSync(file);
  bytes[at]! ^= 0xff;
  writeFileSync(file, bytes);
}

/** Rewrites the u64 at `at` in `file`. */
function setU64(file: string, at: number, value: bigint): void {
  const bytes = readFileSync(file);
  bytes.writeBigUInt64LE(value, at);
  writeFileSync(file, bytes);
}

async function startOn(
  dir: string,
  id: number,
  cluster?: MemberRef[],
): Promise<{ started: true; lastIndex: number } | { started: false; error: unknown }> {
  const [port] = await freePorts(1);
  const address = cluster?.find((m) => m.id === id)?.address ?? `127.0.0.1:${port}`;
  try {
    const node = await RaftNode.start({ id, address, dataDir: dir, fsm, cluster, insecure: true });
    const lastIndex = node.status().lastIndex ?? 0;
    await node.close();
    return { started: true, lastIndex };
  } catch (error) {
    return { started: false, error };
  }
}

/**
 * Copies `base`, damages the copy (`damage` returns the file the error must name), starts node
 * `id` on it: it must fail with `code` naming that file, and leave every file as it was.
 */
async function refuses(
  base: string,
  damage: (dir: string) => string,
  code = 'PREVAIL_CORRUPT_ENTRY',
  id = 1,
  cluster?: MemberRef[],
): Promise<void> {
  const dir = tempDir('prevail-damaged-');
  dirs.push(dir);
  cpSync(base, dir, { recursive: true });
  const file = damage(dir);
  const before = hashes(dir);
  const result = await startOn(dir, id, cluster);
  expect(result).toMatchObject({ started: false, error: { code, file } });
  expect((result as { error: Error }).error.message).toContain(file);
  expect(hashes(dir)).toEqual(before);
}

describe('a single node (metadata1 only, the prevail-applied mark)', () => {
  let base: string;
  let lastIndex = 0;
  beforeAll(async () => {
    base = tempDir('prevail-damage-base-');
    dirs.push(base);
    // Three runs: three closed segments after the bootstrap's 1-1.
    for (let run = 0; run < 3; run++) {
      const [port] = await freePorts(1);
      const node = await RaftNode.start({
        id: 1,
        address: `127.0.0.1:${port}`,
        dataDir: base,
        fsm,
      });
      for (let i = 0; i < 20; i++) await node.propose(new Uint8Array([run, i]));
      lastIndex = node.status().lastIndex ?? 0;
      await node.close();
    }
    expect(readdirSync(base).filter((f) => f.startsWith('metadata'))).toEqual(['metadata1']);
    expect(closedSegments(base)).toHaveLength(4);
  });

  test('the undamaged copy starts with its whole log', async () => {
    const dir = tempDir('prevail-damaged-');
    dirs.push(dir);
    cpSync(base, dir, { recursive: true });
    expect(await startOn(dir, 1)).toEqual({ started: true, lastIndex });
  });

  test('metadata1 cut to 16 bytes (the engine would remove it and bootstrap a blank node)', () =>
    refuses(base, (dir) => {
      const file = join(dir, 'metadata1');
      truncateSync(file, 16);
      return file;
    }));

  test('metadata1 emptied', () =>
    refuses(base, (dir) => {
      const file = join(dir, 'metadata1');
      truncateSync(file, 0);
      return file;
    }));

  test('metadata1 with 8 bytes more', () =>
    refuses(base, (dir) => {
      const file = join(dir, 'metadata1');
      writeFileSync(file, Buffer.alloc(8), { flag: 'a' });
      return file;
    }));

  test('metadata1 with another disk format', () =>
    refuses(base, (dir) => {
      const file = join(dir, 'metadata1');
      setU64(file, 0, 2n);
      return file;
    }));

  test('metadata1 at version 3 with no metadata2 (metadata2 removed)', () =>
    refuses(base, (dir) => {
      setU64(join(dir, 'metadata1'), 8, 3n);
      return join(dir, 'metadata2');
    }));

  test('a byte flipped in the last closed segment (the engine would move it aside)', () =>
    refuses(base, (dir) => {
      const file = join(dir, closedSegments(dir).at(-1)!);
      flipByte(file, 100);
      return file;
    }));

  test('an extra open segment of random bytes', () =>
    refuses(base, (dir) => {
      const file = join(dir, 'open-9');
      let seed = 7;
      const bytes = Buffer.alloc(64 * 1024, 0);
      for (let i = 0; i < bytes.length; i++)
        bytes[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      writeFileSync(file, bytes);
      return file;
    }));

  test('an extra open segment of zeros (a spare never written) is not damage: it starts', async () => {
    const dir = tempDir('prevail-damaged-');
    dirs.push(dir);
    cpSync(base, dir, { recursive: true });
    writeFileSync(join(dir, 'open-9'), Buffer.alloc(64 * 1024));
    expect(await startOn(dir, 1)).toEqual({ started: true, lastIndex });
  });
});

describe('a cluster member (metadata1 and metadata2, no prevail-applied mark)', () => {
  let base: string;
  let cluster: MemberRef[];
  let lastIndex = 0;
  beforeAll(async () => {
    base = tempDir('prevail-damage-member-');
    const other = tempDir('prevail-damage-member-');
    dirs.push(base, other);
    const ports = await freePorts(2);
    cluster = ports.map((p, i) => ({ id: i + 1, address: `127.0.0.1:${p}` }));
    const nodes = await Promise.all(
      [base, other].map((dataDir, i) =>
        RaftNode.start({
          id: i + 1,
          address: cluster[i]!.address,
          dataDir,
          fsm,
          cluster,
          insecure: true,
        }),
      ),
    );
    try {
      const leader = await waitFor('a leader', () => nodes.find((n) => n.isLeader), 20_000);
      for (let i = 0; i < 20; i++) await leader.propose(new Uint8Array([i]));
      await waitFor('node 1 has every entry', () =>
        nodes[0]!.status().lastIndex === leader.status().lastIndex ? true : undefined,
      );
      lastIndex = leader.status().lastIndex ?? 0;
    } finally {
      for (const n of nodes) await n.close();
    }
    const names = readdirSync(base);
    expect(names).toEqual(expect.arrayContaining(['metadata1', 'metadata2']));
    expect(names).not.toContain('prevail-applied');
    expect(closedSegments(base).length).toBeGreaterThanOrEqual(2);
  });

  test('the undamaged copy starts with its whole log', async () => {
    const dir = tempDir('prevail-damaged-');
    dirs.push(dir);
    cpSync(base, dir, { recursive: true });
    expect(await startOn(dir, 1, cluster)).toEqual({ started: true, lastIndex });
  });

  test('a byte flipped in the last closed segment (the engine would start on a shorter log)', () =>
    refuses(
      base,
      (dir) => {
        const file = join(dir, closedSegments(dir).at(-1)!);
        flipByte(file, 100);
        return file;
      },
      'PREVAIL_CORRUPT_ENTRY',
      1,
      cluster,
    ));

  /** The metadata file holding the higher version: the term and vote the engine trusts. */
  const newest = (dir: string) =>
    ['metadata1', 'metadata2']
      .map((f) => ({ f, v: readFileSync(join(dir, f)).readBigUInt64LE(8) }))
      .sort((a, b) => (a.v < b.v ? 1 : -1))[0]!.f;

  test('the newest metadata file removed (the engine would take the older term and vote)', () =>
    refuses(
      base,
      (dir) => {
        const file = join(dir, newest(dir));
        rmSync(file);
        return file;
      },
      'PREVAIL_CORRUPT_ENTRY',
      1,
      cluster,
    ));

  test('the newest metadata file cut to 16 bytes', () =>
    refuses(
      base,
      (dir) => {
        const file = join(dir, newest(dir));
        truncateSync(file, 16);
        return file;
      },
      'PREVAIL_CORRUPT_ENTRY',
      1,
      cluster,
    ));

  test('the versions no longer one apart (a flipped byte in a version counter)', () =>
    refuses(
      base,
      (dir) => {
        const older = newest(dir) === 'metadata1' ? 'metadata2' : 'metadata1';
        const file = join(dir, older);
        const v = readFileSync(file).readBigUInt64LE(8);
        setU64(file, 8, v + (1n << 40n));
        return join(dir, 'metadata1');
      },
      'PREVAIL_CORRUPT_ENTRY',
      1,
      cluster,
    ));
});

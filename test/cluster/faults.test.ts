// Crash and disk faults on a single node, on real disk:
// - kill -9 at random moments under concurrent writes (snapshots being taken all the time),
//   then a restart must show every acknowledged write (CRASH_CYCLES, default 15; the long
//   run in docs/verification.md used 200);
// - damaged data (a flipped byte, a cut file, a removed file) makes the node refuse to start
//   with a coded error naming the file, and leaves the files as they were.
import {
  cpSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import { collection, defineSchema, open } from '../../lib/store.js';
import { NodeProcess, fixtures, freePorts, tempDir, waitFor } from '../helpers/cluster.js';

const CYCLES = Number(process.env.CRASH_CYCLES ?? 15);

test(
  `kill -9 at random moments under concurrent writes and constant snapshots, ${CYCLES} times: no acknowledged write is lost`,
  async () => {
    const dir = tempDir('prevail-crash-');
    const [port] = await freePorts(1);
    const spec = { id: 1, address: `127.0.0.1:${port}`, dataDir: dir };
    // Tiny thresholds: a capture every 32 entries and an engine snapshot every 64, so kills
    // land during snapshot writes too.
    const options = { snapshotThreshold: 64, snapshotTrailing: 16, captureEvery: 32 };
    const acked: string[] = [];
    let node: NodeProcess | null = null;
    let seed = 12345;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    try {
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        node = new NodeProcess(spec, options, fixtures.store);
        await node.ready;
        // Everything acknowledged before this crash is there after the restart.
        const keys = new Set((await node.call<[string, string][]>('keys')).map(([k]) => k));
        const lost = acked.filter((k) => !keys.has(k));
        expect({ cycle, lost }).toEqual({ cycle, lost: [] });
        const before = node.events.length;
        await node.call('writeForever', { prefix: `c${cycle}-`, concurrency: 8 });
        await new Promise((r) => setTimeout(r, 30 + random() * 300));
        node.child.kill('SIGKILL');
        await node.waitExit(10_000);
        for (const e of node.events.slice(before))
          if (e.event === 'ack') acked.push(e.key as string);
      }
      node = new NodeProcess(spec, options, fixtures.store);
      await node.ready;
      const keys = new Set((await node.call<[string, string][]>('keys')).map(([k]) => k));
      expect(acked.filter((k) => !keys.has(k))).toEqual([]);
      expect(acked.length).toBeGreaterThan(CYCLES * 10); // the writers did get work done between kills
    } finally {
      await node?.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  30_000 + CYCLES * 4000,
);

describe('a damaged data dir: the node refuses to start, names the file, and changes nothing', () => {
  const schema = defineSchema({
    collections: { kv: collection<{ v: string }>()({}) },
    commands: { put: (s, a: { v: string }) => s.kv.insert(a).id },
  });
  const base = tempDir('prevail-damage-');
  const copies: string[] = [];
  let files: string[] = [];

  beforeAll(async () => {
    const store = await open({ schema, dataDir: base, snapshotThreshold: 200, captureEvery: 100 });
    for (let i = 0; i < 600; i++) await store.propose('put', { v: `${'x'.repeat(64)}${i}` });
    await store.snapshot();
    for (let i = 0; i < 50; i++) await store.propose('put', { v: `after ${i}` });
    await store.close();
    files = readdirSync(base);
  });
  afterAll(() => {
    for (const d of [base, ...copies]) rmSync(d, { recursive: true, force: true });
  });

  const closedSegments = () => files.filter((f) => /^\d+-\d+$/.test(f)).sort();
  const newestSnapshot = () =>
    files
      .filter((f) => /^snapshot-\d+-\d+-\d+$/.test(f))
      .sort((a, b) => Number(a.split('-')[2]) - Number(b.split('-')[2]))
      .at(-1)!;

  async function refuses(damage: (dir: string) => string, code: string): Promise<void> {
    const dir = tempDir('prevail-damaged-');
    copies.push(dir);
    cpSync(base, dir, { recursive: true });
    const file = damage(dir);
    const before = readdirSync(dir)
      .sort()
      .map((f) => [f, statSync(join(dir, f)).size]);
    const witness = statSync(file, { throwIfNoEntry: false })?.isFile()
      ? file
      : join(dir, 'prevail-node.json');
    const damaged = readFileSync(witness);
    const err = await open({ schema, dataDir: dir }).then(
      (s) => s.close().then(() => null),
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code, file });
    expect((err as Error).message).toContain(file);
    // Nothing was rewritten: same files, same sizes, the damaged one byte for byte (the lock is gone again).
    expect(
      readdirSync(dir)
        .sort()
        .map((f) => [f, statSync(join(dir, f)).size]),
    ).toEqual(before);
    expect(readFileSync(witness).equals(damaged)).toBe(true);
  }

  test('a flipped byte in a closed segment', () =>
    refuses((dir) => {
      const file = join(dir, closedSegments()[1]!);
      const bytes = readFileSync(file);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      writeFileSync(file, bytes);
      return file;
    }, 'PREVAIL_CORRUPT_ENTRY'));

  test('a closed segment cut in half', () =>
    refuses((dir) => {
      const file = join(dir, closedSegments()[1]!);
      truncateSync(file, Math.floor(statSync(file).size / 2));
      return file;
    }, 'PREVAIL_CORRUPT_ENTRY'));

  test('the last closed segment removed (entries past the snapshot that were applied)', () =>
    refuses((dir) => {
      rmSync(join(dir, closedSegments().at(-1)!));
      return dir;
    }, 'PREVAIL_CORRUPT_ENTRY'));

  test('one bit flipped deep inside the newest snapshot (a value, not the framing)', () =>
    refuses((dir) => {
      const file = join(dir, newestSnapshot());
      const bytes = readFileSync(file);
      bytes[bytes.length - 3000]! ^= 0x01;
      writeFileSync(file, bytes);
      return file;
    }, 'PREVAIL_SNAPSHOT_UNREADABLE'));

  test('the newest snapshot cut short', () =>
    refuses((dir) => {
      const file = join(dir, newestSnapshot());
      truncateSync(file, Math.floor(statSync(file).size * 0.6));
      return file;
    }, 'PREVAIL_SNAPSHOT_UNREADABLE'));

  test('the metadata files (term and vote) removed', () =>
    refuses((dir) => {
      for (const f of ['metadata1', 'metadata2']) rmSync(join(dir, f), { force: true });
      return join(dir, 'metadata1');
    }, 'PREVAIL_CORRUPT_ENTRY'));

  test('the undamaged copy still opens with every object', async () => {
    const dir = tempDir('prevail-damaged-');
    copies.push(dir);
    cpSync(base, dir, { recursive: true });
    const store = await open({ schema, dataDir: dir });
    expect(store.view.kv.size).toBe(650);
    await store.close();
    await waitFor('closed', () => true);
  });
});

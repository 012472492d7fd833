// A dataDir that can't be used — a file (EEXIST), below a file (ENOTDIR), not writable (EACCES),
// on a read-only file system (EROFS) — fails with a coded PrevailError (PREVAIL_IO) that names the
// path, the failed call and what to do, never a raw Node error; and the directory (or file) is
// left exactly as it was. For RaftNode.start(), open() and `prevail serve --data`.
//
// Root bypasses permission bits, so EACCES runs the child as `nobody` (uid/gid 65534) when this
// runs as root (as a non-root user: in a directory of mode 0555); EROFS uses a read-only bind
// mount (root only). Either is skipped, with a message, only if the machine can't arrange it.
// The children run dist/ (npm run build:ts first).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import { RaftNode, kvSchema, open, type Fsm } from '../../../lib/index.js';
import { freePorts, tempDir } from '../../helpers/cluster.js';

const distIndex = join(process.cwd(), 'dist', 'index.js');
const cli = join(process.cwd(), 'dist', 'cli.js');
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Can this process start a child as nobody? (root with CAP_SETUID) */
const canBeNobody =
  isRoot && spawnSync(process.execPath, ['-e', '0'], { uid: NOBODY, gid: NOBODY }).status === 0;
/** The case "not writable" can be arranged: as nobody (root), or with mode bits (not root). */
const canDenyWrite = !isRoot || canBeNobody;
/** Can this process make a read-only bind mount? (root with CAP_SYS_ADMIN) */
const canMountReadOnly = (() => {
  if (!isRoot) return false;
  const probe = tempDir('prevail-mount-probe-');
  try {
    if (spawnSync('mount', ['--bind', probe, probe]).status !== 0) return false;
    const ro = spawnSync('mount', ['-o', 'remount,bind,ro', probe]).status === 0;
    spawnSync('umount', [probe]);
    return ro;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
if (!canDenyWrite)
  console.warn(
    "datadir-errors: skipping the EACCES cases: running as root, but a child can't be started as nobody (no CAP_SETUID)",
  );
if (!canMountReadOnly)
  console.warn(
    "datadir-errors: skipping the EROFS case: this process can't make a read-only bind mount (needs root with CAP_SYS_ADMIN)",
  );

const fsm: Fsm<unknown> = {
  apply: () => undefined,
  snapshot: () => new Uint8Array(0),
  restore: () => undefined,
};

type Failure = {
  code?: string;
  path?: string;
  syscall?: string;
  cause?: string;
  message?: string;
  started?: boolean;
};

function describeError(err: unknown): Failure {
  const e = err as {
    code?: string;
    path?: string;
    syscall?: string;
    cause?: { code?: string };
    message?: string;
  };
  return {
    code: e?.code,
    path: e?.path,
    syscall: e?.syscall,
    cause: e?.cause?.code,
    message: e?.message,
  };
}

/** Every file and directory under `root` (itself included): mode, size, mtime and content hash. */
function listing(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string) => {
    const st = lstatSync(p);
    const content = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : '';
    out[rel] = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${content}`;
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(join(p, name), join(rel, name));
  };
  walk(root, '.');
  return out;
}

async function startRaftNode(dataDir: string): Promise<Failure> {
  const [port] = await freePorts(1);
  try {
    const node = await RaftNode.start({ id: 1, address: `127.0.0.1:${port}`, dataDir, fsm });
    await node.close();
    return { started: true };
  } catch (err) {
    return describeError(err);
  }
}

async function openStore(dataDir: string): Promise<Failure> {
  try {
    const store = await open({ schema: kvSchema, dataDir });
    await store.close();
    return { started: true };
  } catch (err) {
    return describeError(err);
  }
}

/** Runs `node` with `args` (as `uid` when given), killed by pid after 30 s. */
function run(
  args: string[],
  options: { uid?: number; env?: Record<string, string> } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** RaftNode.start() or open() in a child process (as `uid`), reporting the error it got. */
const childProgram = `
const { RaftNode, open, kvSchema } = await import(process.env.DIST_INDEX);
const { kind, dataDir, port } = JSON.parse(process.env.CASE);
const fsm = { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => undefined };
let result;
try {
  const started = kind === 'raft' ? await RaftNode.start({ id: 1, address: '127.0.0.1:' + port, dataDir, fsm })
    : await open({ schema: kvSchema, dataDir });
  await started.close();
  result = { started: true };
} catch (e) {
  result = { code: e?.code, path: e?.path, syscall: e?.syscall, cause: e?.cause?.code, message: e?.message };
}
process.stdout.write(JSON.stringify(result));
`;

async function inChild(kind: 'raft' | 'store', dataDir: string, uid?: number): Promise<Failure> {
  const [port] = await freePorts(1);
  const out = await run(['--input-type=module', '-e', childProgram], {
    uid,
    env: { DIST_INDEX: distIndex, CASE: JSON.stringify({ kind, dataDir, port }) },
  });
  try {
    return JSON.parse(out.stdout) as Failure;
  } catch {
    throw new Error(`the child failed (status ${out.status}):\n${out.stdout}\n${out.stderr}`);
  }
}

async function serve(dataDir: string, uid?: number) {
  const [raft, http] = await freePorts(2);
  return run(
    [cli, 'serve', '--data', dataDir, '--raft', `127.0.0.1:${raft}`, '--http', `127.0.0.1:${http}`],
    { uid },
  );
}

describe('a dataDir that is not a usable directory', () => {
  let root: string;
  let file: string;
  beforeAll(() => {
    root = tempDir('prevail-datadir-');
    file = join(root, 'a-file');
    writeFileSync(file, 'not a directory\n');
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  function expectFileError(failure: Failure, dataDir: string, cause: 'EEXIST' | 'ENOTDIR'): void {
    expect(failure).toEqual({
      code: 'PREVAIL_IO',
      path: dataDir,
      syscall: 'mkdir',
      cause,
      message: expect.stringContaining(
        `dataDir ${dataDir} can't be used: ${dataDir === file ? 'it' : file} is a file, not a directory`,
      ),
    });
    expect(failure.message).toMatch(/Give the path of a directory .*or move the file away/);
  }

  test('RaftNode.start(): a file (EEXIST) and a path below a file (ENOTDIR)', async () => {
    const before = listing(root);
    expectFileError(await startRaftNode(file), file, 'EEXIST');
    const below = join(file, 'sub', 'node1');
    expectFileError(await startRaftNode(below), below, 'ENOTDIR');
    expect(listing(root)).toEqual(before);
  });

  test('open(): the same two', async () => {
    const before = listing(root);
    expectFileError(await openStore(file), file, 'EEXIST');
    const below = join(file, 'node1');
    expectFileError(await openStore(below), below, 'ENOTDIR');
    expect(listing(root)).toEqual(before);
  });

  test('prevail serve --data: exits with status 1 and the coded error, no stack trace', async () => {
    const before = listing(root);
    for (const [dataDir, what] of [
      [file, 'it is a file'],
      [join(file, 'sub'), `${file} is a file`],
    ] as const) {
      const out = await serve(dataDir);
      expect({ status: out.status, stderr: out.stderr }).toEqual({
        status: 1,
        stderr: expect.stringContaining(
          `prevail serve: PREVAIL_IO: dataDir ${dataDir} can't be used: ${what}`,
        ),
      });
      expect(out.stderr).not.toMatch(/\n\s+at /);
    }
    expect(listing(root)).toEqual(before);
  });
});

describe('a dataDir this process may not write', () => {
  let root: string;
  let populated: string;
  beforeAll(async () => {
    root = tempDir('prevail-datadir-');
    chmodSync(root, 0o755); // nobody may look in, not write
    // A real data dir with a log in it: it must come out of every failed start unchanged.
    populated = join(root, 'node1');
    const [port] = await freePorts(1);
    const node = await RaftNode.start({
      id: 1,
      address: `127.0.0.1:${port}`,
      dataDir: populated,
      fsm,
    });
    for (let i = 0; i < 5; i++) await node.propose(new Uint8Array([i]));
    await node.close();
    chmodSync(populated, 0o755);
    if (!isRoot) {
      chmodSync(populated, 0o555);
      chmodSync(root, 0o555);
    }
  });
  afterAll(() => {
    if (!root) return;
    chmodSync(root, 0o755);
    chmodSync(populated, 0o755);
    rmSync(root, { recursive: true, force: true });
  });

  const uid = isRoot ? NOBODY : undefined;

  function expectDenied(failure: Failure, dataDir: string, syscall: string, path: string): void {
    expect(failure).toEqual({
      code: 'PREVAIL_IO',
      path,
      syscall,
      cause: 'EACCES',
      message: expect.stringContaining(
        `dataDir ${dataDir} can't be used: permission denied (EACCES from ${syscall} ${path})`,
      ),
    });
    expect(failure.message).toMatch(
      /must be able to create and write files in it: change its owner or mode, or give another dataDir/,
    );
  }

  (canDenyWrite ? test : test.skip)(
    'RaftNode.start() and open(): an existing dir (EACCES on the lock) and a new one (EACCES on mkdir)',
    async () => {
      const before = listing(root);
      for (const kind of ['raft', 'store'] as const) {
        expectDenied(
          await inChild(kind, populated, uid),
          populated,
          'open',
          join(populated, 'prevail.lock'),
        );
        const fresh = join(root, 'node2');
        expectDenied(await inChild(kind, fresh, uid), fresh, 'mkdir', fresh);
      }
      expect(listing(root)).toEqual(before);
    },
  );

  (canBeNobody ? test : test.skip)(
    'a dir it may write, but its prevail-node.json it may not read: PREVAIL_IO, not a node-id mismatch',
    async () => {
      const own = join(root, 'node3');
      mkdirSync(own);
      writeFileSync(join(own, 'prevail-node.json'), '{"id":1}\n', { mode: 0o600 }); // root's, unreadable to nobody
      chownSync(own, NOBODY, NOBODY);
      const names = () =>
        readdirSync(own)
          .sort()
          .map((n) => `${n} ${readFileSync(join(own, n), 'utf8')}`);
      const before = names();
      const node = join(own, 'prevail-node.json');
      for (const kind of ['raft', 'store'] as const) {
        expectDenied(await inChild(kind, own, NOBODY), own, 'open', node);
      }
      expect(names()).toEqual(before); // the lock it took is gone again
    },
  );

  (canDenyWrite ? test : test.skip)(
    'prevail serve --data: exits with status 1 and the coded error',
    async () => {
      const before = listing(root);
      const out = await serve(populated, uid);
      expect({ status: out.status, stderr: out.stderr }).toEqual({
        status: 1,
        stderr: expect.stringContaining(
          `prevail serve: PREVAIL_IO: dataDir ${populated} can't be used: permission denied (EACCES from open ${join(populated, 'prevail.lock')})`,
        ),
      });
      expect(out.stderr).not.toMatch(/\n\s+at /);
      expect(listing(root)).toEqual(before);
    },
  );
});

(canMountReadOnly ? describe : describe.skip)('a dataDir on a read-only file system', () => {
  let root: string;
  let source: string;
  let mounted: string;
  let isMounted = false;
  beforeAll(async () => {
    root = tempDir('prevail-datadir-');
    source = join(root, 'source');
    mounted = join(root, 'ro');
    mkdirSync(mounted);
    const [port] = await freePorts(1);
    const node = await RaftNode.start({
      id: 1,
      address: `127.0.0.1:${port}`,
      dataDir: source,
      fsm,
    });
    for (let i = 0; i < 5; i++) await node.propose(new Uint8Array([i]));
    await node.close();
    expect(spawnSync('mount', ['--bind', source, mounted]).status).toBe(0);
    isMounted = true;
    expect(spawnSync('mount', ['-o', 'remount,bind,ro', mounted]).status).toBe(0);
  });
  afterAll(() => {
    if (isMounted) spawnSync('umount', [mounted]);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('RaftNode.start(), open() and prevail serve: PREVAIL_IO (EROFS), the data untouched', async () => {
    const before = listing(source);
    const lock = join(mounted, 'prevail.lock');
    const expected = {
      code: 'PREVAIL_IO',
      path: lock,
      syscall: 'open',
      cause: 'EROFS',
      message: expect.stringContaining(
        `dataDir ${mounted} can't be used: it is on a read-only file system (EROFS from open ${lock}). ` +
          'Remount it read-write, or give a dataDir on a writable file system.',
      ),
    };
    expect(await startRaftNode(mounted)).toEqual(expected);
    expect(await openStore(mounted)).toEqual(expected);
    const below = join(mounted, 'sub');
    expect(await startRaftNode(below)).toEqual({
      ...expected,
      path: below,
      syscall: 'mkdir',
      message: expect.stringContaining(
        `dataDir ${below} can't be used: it is on a read-only file system (EROFS from mkdir ${below})`,
      ),
    });
    const out = await serve(mounted);
    expect({ status: out.status, stderr: out.stderr }).toEqual({
      status: 1,
      stderr: expect.stringContaining(
        `prevail serve: PREVAIL_IO: dataDir ${mounted} can't be used: it is on a read-only file system`,
      ),
    });
    expect(listing(source)).toEqual(before);
  });
});

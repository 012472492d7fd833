// One "host:port" grammar (lib/core/address.ts) behind every address prevail reads: the raft
// address and cluster list (RaftNode.start, addMember), the peer channel (open), the HTTP
// address (startService) and the CLI's flags. An unbracketed IPv6 host (`::1:7000`) is refused
// the same way by each, with PREVAIL_INVALID_ARGUMENT (the CLI: usage, exit 2).
// The CLI cases run dist/ (npm run build:ts first).
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { parseAddress } from '../../../lib/core/address.js';
import { RaftNode, kvSchema, open, startService, type Fsm } from '../../../lib/index.js';
import { freePorts, runCli, tempDir } from '../../helpers/cluster.js';

const UNBRACKETED = '::1:7000';
const noFsm: Fsm = {
  apply: () => undefined,
  snapshot: () => new Uint8Array(0),
  restore: () => undefined,
};

const dirs: string[] = [];
const dir = (): string => {
  const d = tempDir('prevail-address-');
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const invalidArgument = expect.objectContaining({ code: 'PREVAIL_INVALID_ARGUMENT' });

describe('the grammar', () => {
  test.each([
    ['127.0.0.1:7000', { host: '127.0.0.1', port: 7000 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:7000', { host: '::1', port: 7000 }],
    ['[fe80::1%eth0]:65535', { host: 'fe80::1%eth0', port: 65535 }],
  ])('%s', (address, parts) => {
    expect(parseAddress(address)).toEqual(parts);
  });

  test.each([
    UNBRACKETED,
    'a:b:1',
    '127.0.0.1',
    ':7000',
    '127.0.0.1:',
    '127.0.0.1:65536',
    '127.0.0.1:123456',
    ' a:1',
    'a :1',
    '[::1]7000',
    7000,
    null,
  ])('refuses %p', (address) => {
    expect(() => parseAddress(address, 'the address')).toThrow(invalidArgument);
  });
});

describe(`${UNBRACKETED} is refused by every reader of an address`, () => {
  test('RaftNode.start: address, a cluster entry; addMember', async () => {
    await expect(
      RaftNode.start({ id: 1, address: UNBRACKETED, dataDir: dir(), fsm: noFsm }),
    ).rejects.toEqual(invalidArgument);
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    await expect(
      RaftNode.start({
        id: 1,
        address,
        dataDir: dir(),
        fsm: noFsm,
        cluster: [
          { id: 1, address },
          { id: 2, address: UNBRACKETED },
        ],
      }),
    ).rejects.toEqual(invalidArgument);
    const node = await RaftNode.start({ id: 1, address, dataDir: dir(), fsm: noFsm });
    try {
      await expect(node.addMember({ id: 2, address: UNBRACKETED })).rejects.toEqual(
        invalidArgument,
      );
    } finally {
      await node.close();
    }
  });

  test('open: the peer channel address', async () => {
    const [port] = await freePorts(1);
    await expect(
      open({
        schema: kvSchema,
        dataDir: dir(),
        address: `127.0.0.1:${port}`,
        channelAddress: UNBRACKETED,
      }),
    ).rejects.toEqual(
      expect.objectContaining({
        code: 'PREVAIL_INVALID_ARGUMENT',
        message: expect.stringContaining('peer channel'),
      }),
    );
  });

  test('startService: the HTTP address', async () => {
    await expect(startService({ dataDir: dir(), httpAddress: UNBRACKETED })).rejects.toEqual(
      invalidArgument,
    );
  });

  test.each([
    ['serve --raft', (d: string) => ['serve', '--data', d, '--raft', UNBRACKETED]],
    [
      'serve --http',
      (d: string) => ['serve', '--data', d, '--raft', '127.0.0.1:7000', '--http', UNBRACKETED],
    ],
    [
      'serve --channel',
      (d: string) => ['serve', '--data', d, '--raft', '127.0.0.1:7000', '--channel', UNBRACKETED],
    ],
    ['serve --cluster', (d: string) => ['serve', '--data', d, '--cluster', `1=${UNBRACKETED}`]],
    ['members add', () => ['members', 'add', '2', UNBRACKETED, '--node', 'http://127.0.0.1:1']],
  ])('the CLI: %s', async (_name, args) => {
    const d = join(dir(), 'data');
    const { code, stderr } = await runCli(args(d));
    expect({ code, usage: /must be HOST:PORT/.test(stderr) }).toEqual({ code: 2, usage: true });
  });
});

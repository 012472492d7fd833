// The engine's wire format (raft 0.22.1, little endian: src/uv_tcp_connect.c, src/uv_encoding.c),
// for tests that speak it to a node: the insecure transport's attacks (engine-wire) and an
// outsider's over mutual TLS (outsider).
export const HANDSHAKE_PROTOCOL = 1;
export const APPEND_ENTRIES = 1;
export const APPEND_ENTRIES_RESULT = 2;
export const REQUEST_VOTE = 3;
export const REQUEST_VOTE_RESULT = 4;
export const INSTALL_SNAPSHOT = 5;
export const TIMEOUT_NOW = 6;
export const COMMAND = 1;
export const CHANGE = 3;
export const VOTER = 1;

export const u64 = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
export const pad8 = (b: Buffer): Buffer =>
  Buffer.concat([b, Buffer.alloc((8 - (b.length % 8)) % 8)]);

/** The handshake a peer opens its connection with: protocol, its id, its address (NUL, padded). */
export function handshake(id: number | bigint, address = '127.0.0.1:1'): Buffer {
  const addr = pad8(Buffer.from(`${address}\0`));
  return Buffer.concat([u64(HANDSHAKE_PROTOCOL), u64(id), u64(addr.length), addr]);
}

/** A handshake with the address length and bytes given as they are. */
export function rawHandshake(id: number, addressLength: bigint | number, address: Buffer): Buffer {
  return Buffer.concat([u64(HANDSHAKE_PROTOCOL), u64(id), u64(addressLength), address]);
}

/** A message: preamble (type, version in byte 2, header length), header, payload. */
export function frame(
  type: number,
  header: Buffer,
  payload: Buffer = Buffer.alloc(0),
  version = 0,
): Buffer {
  const preamble = Buffer.alloc(8);
  preamble[0] = type;
  preamble[2] = version;
  return Buffer.concat([preamble, u64(header.length), header, payload]);
}

export interface Entry {
  term: number | bigint;
  type?: number;
  data: Buffer;
  /** The length the descriptor claims (default: the data's). */
  length?: number;
}

export interface AppendEntriesArgs {
  term: number | bigint;
  prevIndex?: number | bigint;
  prevTerm?: number | bigint;
  commit?: number | bigint;
  entries?: Entry[];
  /** The entry count the header claims (default: the number of entries). */
  count?: number | bigint;
  /** The payload as sent (default: each entry's data, padded to 8 bytes). */
  payload?: Buffer;
}

export function appendEntries({
  term,
  prevIndex = 0,
  prevTerm = 0,
  commit = 0,
  entries = [],
  count,
  payload,
}: AppendEntriesArgs): Buffer {
  const descriptors = entries.map((e) => {
    const d = Buffer.alloc(16);
    d.writeBigUInt64LE(BigInt(e.term));
    d[8] = e.type ?? COMMAND;
    d.writeUInt32LE(e.length ?? e.data.length, 12);
    return d;
  });
  const header = Buffer.concat([
    u64(term),
    u64(prevIndex),
    u64(prevTerm),
    u64(commit),
    u64(count ?? entries.length),
    ...descriptors,
    u64(0),
  ]);
  return frame(APPEND_ENTRIES, header, payload ?? Buffer.concat(entries.map((e) => pad8(e.data))));
}

/** An encoded configuration (src/configuration.c): format 1, server count, id/address/role each. */
export function configuration(
  servers: { id: number | bigint; address: string; role?: number }[],
  count = servers.length,
): Buffer {
  return Buffer.concat([
    Buffer.from([1]),
    u64(count),
    ...servers.map((s) =>
      Buffer.concat([u64(s.id), Buffer.from(`${s.address}\0`), Buffer.from([s.role ?? VOTER])]),
    ),
  ]);
}

export interface InstallSnapshotArgs {
  term: number | bigint;
  lastIndex: number | bigint;
  lastTerm: number | bigint;
  confIndex?: number | bigint;
  conf: Buffer;
  /** The configuration length the header claims (default: the configuration's). */
  confLength?: number | bigint;
  data?: Buffer;
}

export function installSnapshot({
  term,
  lastIndex,
  lastTerm,
  confIndex = 1,
  conf,
  confLength,
  data = Buffer.alloc(8),
}: InstallSnapshotArgs): Buffer {
  const header = Buffer.concat([
    u64(term),
    u64(lastIndex),
    u64(lastTerm),
    u64(confIndex),
    u64(confLength ?? conf.length),
    conf,
    u64(data.length),
    u64(0),
  ]);
  return frame(INSTALL_SNAPSHOT, header, data);
}

export function requestVote(
  term: number | bigint,
  candidate: number,
  lastIndex: number | bigint,
  lastTerm: number | bigint,
  flags = 0,
): Buffer {
  return frame(
    REQUEST_VOTE,
    Buffer.concat([u64(term), u64(candidate), u64(lastIndex), u64(lastTerm), u64(flags)]),
  );
}

export function requestVoteResult(
  term: number | bigint,
  granted: number,
  preVote: boolean,
): Buffer {
  const flags = Buffer.alloc(8);
  flags[0] = preVote ? 1 : 0;
  return frame(REQUEST_VOTE_RESULT, Buffer.concat([u64(term), u64(granted), flags]), undefined, 2);
}

export function appendEntriesResult(
  term: number | bigint,
  rejected: number | bigint,
  lastIndex: number | bigint,
): Buffer {
  return frame(
    APPEND_ENTRIES_RESULT,
    Buffer.concat([u64(term), u64(rejected), u64(lastIndex), Buffer.alloc(8)]),
  );
}

export function timeoutNow(
  term: number | bigint,
  lastIndex: number | bigint,
  lastTerm: number | bigint,
): Buffer {
  return frame(TIMEOUT_NOW, Buffer.concat([u64(term), u64(lastIndex), u64(lastTerm)]));
}

/** A small deterministic generator (xorshift32): the same frames on every run. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

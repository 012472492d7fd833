// Certificates for tests, made in-process by the library's own `prevail certs` code
// (lib/certs): a CA, and certificates it signs naming a member (`urn:prevail:node:<id>`,
// valid for 127.0.0.1 and localhost so it can also serve) or an HTTP client.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { createCa, createClientCert, createNodeCert } from '../../lib/certs/index.js';

export interface TestCert {
  cert: string;
  key: string;
}

export interface TestCa extends TestCert {
  /** A certificate this CA signs for member `id`. */
  node(id: number, options?: { days?: number }): Promise<TestCert>;
  /** A certificate this CA signs for HTTP client `name`. */
  client(name: string): Promise<TestCert>;
}

/** A new CA named `name`. */
export async function testCa(name = 'prevail test CA'): Promise<TestCa> {
  const ca = await createCa({ name, days: 2 });
  return {
    ...ca,
    node: (id, options) => createNodeCert(ca, { id, days: options?.days ?? 2 }),
    client: (name) => createClientCert(ca, { name, days: 2 }),
  };
}

/** The member TLS files of `ids` under `dir` (ca.pem, node-<id>.pem, node-<id>-key.pem). */
export async function writeClusterCerts(dir: string, ids: number[], ca?: TestCa): Promise<TestCa> {
  const authority = ca ?? (await testCa());
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca.pem'), authority.cert);
  for (const id of ids) {
    const { cert, key } = await authority.node(id);
    writeFileSync(join(dir, `node-${id}.pem`), cert);
    writeFileSync(join(dir, `node-${id}-key.pem`), key, { mode: 0o600 });
  }
  return authority;
}

/** The `tls` option of member `id` for files written by writeClusterCerts. */
export function tlsFiles(dir: string, id: number) {
  return {
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, `node-${id}.pem`),
    keyFile: join(dir, `node-${id}-key.pem`),
  };
}

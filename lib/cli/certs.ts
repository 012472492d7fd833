// `prevail certs`: creates a CA, member and client certificates in a directory, and shows what a
// certificate names. The work is lib/certs; here are the flags, the file names and the output.
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

import {
  certFilesExist,
  certPaths,
  clientLeaf,
  createCa,
  createClientCert,
  createNodeCert,
  crlPath,
  describeCert,
  describeCrl,
  describeCrls,
  nodeLeaf,
  readPem,
  revoke,
  writeCertFiles,
  writeCrlFile,
  type CertAndKey,
} from '../certs/index.js';
import { ErrorCodes, isPrevailError } from '../core/errors.js';
import { fail, positiveInt } from './args.js';
import { UsageError } from './usage.js';

const OPTIONS = {
  dir: { type: 'string' },
  days: { type: 'string' },
  force: { type: 'boolean' },
  name: { type: 'string' },
  id: { type: 'string' },
  host: { type: 'string', multiple: true },
} as const;

type Values = ReturnType<typeof parseCertsArgs>['values'];

function parseCertsArgs(args: string[]) {
  return parseArgs({ args, allowPositionals: true, strict: true, options: OPTIONS });
}

/** Takes only the flags `allowed` (the others are some other subcommand's). */
function only(sub: string, values: Values, allowed: (keyof typeof OPTIONS)[]): void {
  for (const flag of Object.keys(values))
    if (!allowed.includes(flag as keyof typeof OPTIONS))
      fail(`certs ${sub} does not take --${flag}`);
}

function needDir(sub: string, values: Values): string {
  if (!values.dir) fail(`certs ${sub} needs --dir DIR`);
  return values.dir;
}

export async function certs(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseCertsArgs(rest);
  if (sub !== 'show' && sub !== 'revoke' && positionals.length)
    fail(`certs ${sub} takes no arguments, got ${JSON.stringify(positionals.join(' '))}`);
  try {
    if (sub === 'ca') await ca(values);
    else if (sub === 'node') await node(values);
    else if (sub === 'client') await client(values);
    else if (sub === 'revoke') await revokeCerts(values, positionals);
    else if (sub === 'show') show(values, positionals);
    else fail(`certs needs ca, node, client, revoke or show, got ${JSON.stringify(sub ?? '')}`);
  } catch (err) {
    // The library's argument checks (an id out of range, a malformed host) are bad usage here.
    if (isPrevailError(err, ErrorCodes.INVALID_ARGUMENT)) throw new UsageError(err.message);
    throw err;
  }
}

async function ca(values: Values): Promise<void> {
  only('ca', values, ['dir', 'days', 'name', 'force']);
  const dir = needDir('ca', values);
  if (!values.force && certFilesExist(dir, 'ca'))
    fail(
      `${certPaths(dir, 'ca').cert} or its key exists: a new CA would leave every certificate ` +
        `it signed untrusted; pass --force to replace it anyway`,
    );
  const days = positiveInt('--days', values.days);
  const pair = await createCa({
    ...(days !== undefined ? { days } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
  });
  report(writeCertFiles(dir, 'ca', pair), pair);
}

async function node(values: Values): Promise<void> {
  only('node', values, ['dir', 'id', 'host', 'days']);
  const dir = needDir('node', values);
  if (values.id === undefined) fail('certs node needs --id N');
  const id = positiveInt('--id', values.id)!;
  const days = positiveInt('--days', values.days);
  const options = {
    id,
    ...(values.host ? { hosts: values.host } : {}),
    ...(days !== undefined ? { days } : {}),
  };
  nodeLeaf(options); // bad usage is reported before a missing CA
  const pair = await createNodeCert(readCa(dir), options);
  report(writeCertFiles(dir, `node-${id}`, pair), pair);
}

async function client(values: Values): Promise<void> {
  only('client', values, ['dir', 'name', 'days']);
  const dir = needDir('client', values);
  if (values.name === undefined) fail('certs client needs --name NAME');
  const days = positiveInt('--days', values.days);
  const options = { name: values.name, ...(days !== undefined ? { days } : {}) };
  clientLeaf(options); // bad usage is reported before a missing CA
  const pair = await createClientCert(readCa(dir), options);
  report(writeCertFiles(dir, `client-${values.name}`, pair), pair);
}

async function revokeCerts(values: Values, positionals: string[]): Promise<void> {
  only('revoke', values, ['dir']);
  const dir = needDir('revoke', values);
  const certs = positionals.map((file) => readPem(file, 'certificate'));
  const ca = readCa(dir);
  const path = crlPath(dir);
  const previous = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  const { crl, added } = await revoke(ca, certs, previous);
  writeCrlFile(dir, crl);
  positionals.forEach((file, i) => {
    const d = describeCert(certs[i]!);
    console.log(`revoked ${file} (${d.subject.replace(/\n/g, ', ')})`);
  });
  // With no FILE: the list as it is, or an empty one, for nodes to start with (--crl).
  const total = describeCrl(crl, ca.cert).revoked.length;
  console.log(
    `wrote ${path} (${total} revoked, ${added.length} new): give it to every node (--crl) and send each SIGHUP`,
  );
}

function readCa(dir: string): CertAndKey {
  const paths = certPaths(dir, 'ca');
  return { cert: readPem(paths.cert, 'certificate'), key: readPem(paths.key, 'private key') };
}

function report(paths: { cert: string; key: string }, pair: CertAndKey): void {
  const d = describeCert(pair.cert);
  console.log(`wrote ${paths.cert} (${d.subject}, until ${d.notAfter.toISOString()})`);
  console.log(`wrote ${paths.key} (mode 0600)`);
}

function show(values: Values, positionals: string[]): void {
  only('show', values, ['dir']);
  if (positionals.length !== 1) fail('usage: prevail certs show FILE');
  const file = positionals[0]!;
  const text = readFileText(file);
  if (/-----BEGIN X509 CRL-----/.test(text)) return showCrl(file, text, values.dir);
  const d = describeCert(readPem(file, 'certificate'));
  const identity = !d.identity
    ? d.ca
      ? 'none (a CA certificate)'
      : 'none (names no single prevail node or client)'
    : d.identity.kind === 'node'
      ? `node ${d.identity.id}`
      : `client ${d.identity.name}`;
  const now = Date.now();
  const state =
    now < d.notBefore.getTime()
      ? 'not yet valid'
      : now > d.notAfter.getTime()
        ? 'EXPIRED'
        : `valid, ${Math.floor((d.notAfter.getTime() - now) / 86_400_000)} days left`;
  const lines: [string, string][] = [
    ['file', file],
    ['identity', identity],
    ['subject', d.subject.replace(/\n/g, ', ')],
    ['issuer', d.issuer.replace(/\n/g, ', ')],
    ['names', d.subjectAltName ?? '(none)'],
    ['not before', d.notBefore.toISOString()],
    ['not after', `${d.notAfter.toISOString()} (${state})`],
    ['sha256', d.fingerprint256],
  ];
  for (const [label, value] of lines) console.log(`${label.padEnd(11)}${value}`);
}

function readFileText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // readPem names the file and the reason
  }
}

/**
 * A CRL file's lists (one per CA), each checked against the CA beside it (or in --dir, or given
 * as a bundle there): the file as a node given it with --crl and that --ca would take it.
 */
function showCrl(file: string, text: string, dir: string | undefined): void {
  const ca = readPem(certPaths(dir ?? dirname(file), 'ca').cert, 'certificate');
  const lists = describeCrls(text, ca, file);
  console.log(`${'file'.padEnd(11)}${file}`);
  for (const d of lists) {
    console.log(`${'issuer'.padEnd(11)}${d.issuer}`);
    console.log(`${'updated'.padEnd(11)}${d.thisUpdate.toISOString()}`);
    console.log(`${'valid to'.padEnd(11)}${d.nextUpdate?.toISOString() ?? '(no next update)'}`);
    console.log(`${'revoked'.padEnd(11)}${d.revoked.length}`);
    for (const r of d.revoked)
      console.log(`  serial ${r.serial} since ${r.revokedAt.toISOString()}`);
  }
}

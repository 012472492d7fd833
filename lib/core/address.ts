// "host:port" strings: raft addresses, peer-channel addresses and HTTP listen addresses are all
// written this way and all read here. An IPv6 host goes in brackets (`[::1]:7000`); one without
// (`::1:7000`) is refused everywhere, since where its host ends would be a guess.
import { invalid } from './errors.js';

const HOST_PORT = /^(\[[^\]\s]+\]|[^:\s[\]]+):(\d{1,5})$/;

/** Splits "host:port" (port 0..65535; an IPv6 host without its brackets), or throws PREVAIL_INVALID_ARGUMENT naming `what`. */
export function parseAddress(value: unknown, what = 'the address'): { host: string; port: number } {
  const m = typeof value === 'string' ? HOST_PORT.exec(value) : null;
  const port = m ? Number(m[2]) : -1;
  if (!m || port > 65535) {
    throw invalid(
      `${what} must be "host:port" (an IPv6 host in brackets) with a port in 0..65535, got ${JSON.stringify(value)}`,
    );
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function joinAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

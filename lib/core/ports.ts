import { createServer, type AddressInfo } from 'node:net';

/** A TCP port free on `host` just now (the OS picks it; another process may take it before you bind it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

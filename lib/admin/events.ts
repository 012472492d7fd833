// The admin page's Server-Sent Events streams: the status pushed to every open stream on each
// tick, and on role and leader changes. A stream's first message is the full status; the later
// ones carry only the chart's newest points (the page keeps the window itself).
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { AdminStatus } from './admin.js';

export class EventStreams {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private pushQueued = false;

  constructor(
    private readonly status: (full: boolean) => AdminStatus,
    private readonly intervalMs: number,
  ) {}

  /** Starts a stream on a response whose headers are written. */
  add(req: IncomingMessage, res: ServerResponse): void {
    if (req.httpVersionMajor < 2) {
      // HTTP/2 streams share their connection: its settings are the server's, and its idle
      // timeout does not fire while events flow.
      req.socket.setNoDelay(true);
      req.socket.setTimeout(0);
    }
    res.write('retry: 1000\n\n');
    this.clients.add(res);
    res.once('close', () => this.remove(res));
    if (!this.timer) {
      this.timer = setInterval(this.push, this.intervalMs);
      this.timer.unref();
    }
    // The first status right away (the browser should not wait for the first tick).
    let data: string | null = null;
    try {
      data = `data: ${JSON.stringify(this.status(true))}\n\n`;
    } catch {
      /* the next tick reports the failure */
    }
    if (data) res.write(data);
  }

  // Events arrive from inside the engine's callbacks: push from a fresh tick, once per burst.
  queuePush(): void {
    if (this.pushQueued || this.clients.size === 0) return;
    this.pushQueued = true;
    setImmediate(() => {
      this.pushQueued = false;
      this.push();
    });
  }

  /** Ends every stream. */
  endAll(): void {
    for (const res of [...this.clients]) {
      this.remove(res);
      res.end();
    }
  }

  private readonly push = (): void => {
    if (this.clients.size === 0) return;
    let data: string;
    try {
      data = `data: ${JSON.stringify(this.status(false))}\n\n`;
    } catch (err) {
      data = `event: failure\ndata: ${JSON.stringify({ message: (err as Error)?.message ?? String(err) })}\n\n`;
    }
    for (const res of this.clients) {
      // A client that can't keep up skips pushes until its socket drains.
      if (!res.writableNeedDrain) res.write(data);
    }
  };

  private remove(res: ServerResponse): void {
    if (!this.clients.delete(res)) return;
    if (this.clients.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

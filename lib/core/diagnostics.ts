// Every way prevail reports what it does, in one place: the diagnostics channels it
// publishes on, and its debug log (NODE_DEBUG=prevail).
import diagnostics_channel from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

/** The debug log: `NODE_DEBUG=prevail node app.js` prints it to stderr. */
export const debug = debuglog('prevail');

/**
 * `node:diagnostics_channel` channels prevail publishes on (subscribe with
 * `diagnostics_channel.subscribe(name, fn)`); publishing costs nothing without subscribers.
 */
export const channels = {
  /** `{ id, role, term, leader }` when a node's role changes. */
  role: diagnostics_channel.channel('prevail:role'),
  /** `{ id, kind: 'capture' | 'engine', index, durationMs }` when a snapshot (capture) finishes. */
  snapshot: diagnostics_channel.channel('prevail:snapshot'),
  /** `{ id, index, durationMs, command }` when one apply took longer than `slowApplyMs`. */
  slowApply: diagnostics_channel.channel('prevail:slow-apply'),
  /** `{ id, node, index, expected, actual }` on the leader when a replica's effects hash differs from its own. */
  divergence: diagnostics_channel.channel('prevail:divergence'),
  /** Each automatic backup round on the leader: `{ id, kind: 'taken' | 'skipped' | 'error', … }` (AutoBackupEvent). */
  backup: diagnostics_channel.channel('prevail:backup'),
  /**
   * `{ port: 'members' | 'http', host, reason: 'host-busy' | 'busy' | 'rate' }` when a TLS port
   * closes a connection before its handshake: too many handshakes in progress from its host or
   * from everyone, or its host opens connections too fast (core/handshake-gate.ts).
   */
  refusedConnection: diagnostics_channel.channel('prevail:connection-refused'),
};

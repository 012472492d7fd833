// The engine-level framing around every entry and snapshot (the PVE1 and PVS1 headers).
// Its one home is native/framing.h, with the layouts and their version history; the addon
// hands the constants over, so a reader here (`prevail inspect`) can't disagree with the
// writer. The store's own entry and snapshot formats inside are entry.ts and snapshot.ts.
import { addon } from '../engine/native.js';

const { framing } = addon;

/** "PVE1": the u32 that starts every framed entry. */
export const ENTRY_MAGIC = framing.entryMagic;
/** "PVS1": the u32 that starts every snapshot. */
export const SNAPSHOT_MAGIC = framing.snapshotMagic;
/** The snapshot header's format (not the store's snapshot format: see snapshot.ts). */
export const SNAPSHOT_HEADER_FORMAT = framing.snapshotHeaderFormat;
/** Both headers' size in bytes. */
export const HEADER_SIZE = framing.headerBytes;

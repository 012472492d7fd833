/* Reads the engine's in-memory log for facts its public API does not expose (the
 * last snapshot's index and term). Compiled as C against the pinned engine source. */
#include "engine_shim.h"

#include "../third_party/raft/src/log.h"

raft_index prevail_snapshot_index(struct raft* r) {
  return r->legacy.log != NULL ? logSnapshotIndex(r->legacy.log) : 0;
}

raft_term prevail_snapshot_term(struct raft* r) {
  return r->legacy.log != NULL ? logSnapshotTerm(r->legacy.log) : 0;
}

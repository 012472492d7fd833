#pragma once

#ifdef __cplusplus
extern "C" {
#endif

#include <raft.h>

raft_index prevail_snapshot_index(struct raft* r);
raft_term prevail_snapshot_term(struct raft* r);

#ifdef __cplusplus
}
#endif

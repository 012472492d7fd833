// The engine's numeric constants as the names JS sees.
#pragma once

namespace prevail {

const char* StateName(int state);
const char* RoleName(int role);
// The role constant for a role name, or -1.
int RoleCode(const char* name);
// The engine's error code without its RAFT_ prefix (the `raftName` of an error).
const char* RaftCodeName(int rv);

}  // namespace prevail

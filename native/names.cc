#include "names.h"

#include <cstring>
#include <initializer_list>

#include "raft_c.h"

namespace prevail {

const char* StateName(int state) {
  switch (state) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "unavailable";
  }
}

const char* RoleName(int role) {
  switch (role) {
    case RAFT_VOTER: return "voter";
    case RAFT_STANDBY: return "standby";
    case RAFT_SPARE: return "spare";
    default: return "unknown";
  }
}

int RoleCode(const char* name) {
  for (int role : {RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE}) {
    if (strcmp(name, RoleName(role)) == 0) return role;
  }
  return -1;
}

const char* RaftCodeName(int rv) {
  switch (rv) {
    case RAFT_NOMEM: return "NOMEM";
    case RAFT_BADID: return "BADID";
    case RAFT_DUPLICATEID: return "DUPLICATEID";
    case RAFT_DUPLICATEADDRESS: return "DUPLICATEADDRESS";
    case RAFT_BADROLE: return "BADROLE";
    case RAFT_MALFORMED: return "MALFORMED";
    case RAFT_NOTLEADER: return "NOTLEADER";
    case RAFT_LEADERSHIPLOST: return "LEADERSHIPLOST";
    case RAFT_SHUTDOWN: return "SHUTDOWN";
    case RAFT_CANTBOOTSTRAP: return "CANTBOOTSTRAP";
    case RAFT_CANTCHANGE: return "CANTCHANGE";
    case RAFT_CORRUPT: return "CORRUPT";
    case RAFT_CANCELED: return "CANCELED";
    case RAFT_NAMETOOLONG: return "NAMETOOLONG";
    case RAFT_TOOBIG: return "TOOBIG";
    case RAFT_NOCONNECTION: return "NOCONNECTION";
    case RAFT_BUSY: return "BUSY";
    case RAFT_IOERR: return "IOERR";
    case RAFT_NOTFOUND: return "NOTFOUND";
    case RAFT_INVALID: return "INVALID";
    case RAFT_UNAUTHORIZED: return "UNAUTHORIZED";
    case RAFT_NOSPACE: return "NOSPACE";
    case RAFT_TOOMANY: return "TOOMANY";
    default: return "UNKNOWN";
  }
}

}  // namespace prevail

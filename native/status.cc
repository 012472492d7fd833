#include "status.h"

#include "engine_shim.h"
#include "names.h"

namespace prevail {

namespace {

Napi::Number Num(Napi::Env env, uint64_t v) {
  return Napi::Number::New(env, static_cast<double>(v));
}

Napi::Object DescribeMember(Napi::Env env, struct raft* raft, const struct raft_server& server,
                            bool leading) {
  auto member = Napi::Object::New(env);
  member.Set("id", Num(env, server.id));
  member.Set("address", Napi::String::New(env, server.address));
  member.Set("role", Napi::String::New(env, RoleName(server.role)));
  raft_index match = 0;
  if (leading && raft_match_index(raft, server.id, &match) == 0) {
    member.Set("matchIndex", Num(env, server.id == raft->id ? raft_last_index(raft) : match));
  }
  return member;
}

}  // namespace

Napi::Object DescribeRunning(Napi::Env env, struct raft* raft) {
  auto out = Napi::Object::New(env);
  const int state = raft_state(raft);
  raft_id leader = 0;
  const char* leader_address = nullptr;
  raft_leader(raft, &leader, &leader_address);
  out.Set("state", Napi::String::New(env, StateName(state)));
  out.Set("term", Num(env, raft_current_term(raft)));
  out.Set("leaderId", Num(env, leader));
  out.Set("leaderAddress", leader != 0 && leader_address != nullptr
                               ? Napi::Value(Napi::String::New(env, leader_address))
                               : env.Null());
  out.Set("commitIndex", Num(env, raft_commit_index(raft)));
  out.Set("appliedIndex", Num(env, raft_last_applied(raft)));
  out.Set("lastIndex", Num(env, raft_last_index(raft)));
  out.Set("snapshotIndex", Num(env, prevail_snapshot_index(raft)));
  out.Set("snapshotTerm", Num(env, prevail_snapshot_term(raft)));
  auto members = Napi::Array::New(env, raft->configuration.n);
  for (unsigned i = 0; i < raft->configuration.n; i++) {
    members.Set(i, DescribeMember(env, raft, raft->configuration.servers[i], state == RAFT_LEADER));
  }
  out.Set("members", members);
  return out;
}

}  // namespace prevail

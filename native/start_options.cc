#include "start_options.h"

#include "args.h"
#include "errors.h"

namespace prevail {

namespace {

Napi::Error BadOption(Napi::Env env, const char* name, const char* requirement) {
  return CodedError(env, Code::kInvalidArgument,
                    std::string("option ") + name + " must be " + requirement);
}

double Number(Napi::Object options, const char* name) {
  Napi::Value v = options.Get(name);
  if (!v.IsNumber()) throw BadOption(options.Env(), name, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::string String(Napi::Object options, const char* name) {
  Napi::Value v = options.Get(name);
  if (!v.IsString()) throw BadOption(options.Env(), name, "a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<Member> Members(Napi::Env env, Napi::Array array) {
  std::vector<Member> members;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value member = array.Get(i);
    if (!member.IsObject()) throw BadOption(env, "bootstrap", "an array of { id, address }");
    Napi::Value id = member.As<Napi::Object>().Get("id");
    Napi::Value address = member.As<Napi::Object>().Get("address");
    if (!IsUint(id) || !address.IsString())
      throw BadOption(env, "bootstrap", "an array of { id, address }");
    members.push_back(
        {static_cast<raft_id>(id.As<Napi::Number>().DoubleValue()), address.As<Napi::String>()});
  }
  return members;
}

}  // namespace

StartOptions ReadStartOptions(Napi::Env env, Napi::Object options) {
  StartOptions out;
  out.id = static_cast<raft_id>(Number(options, "id"));
  out.address = String(options, "address");
  out.data_dir = String(options, "dataDir");
  out.election_timeout_ms = static_cast<unsigned>(Number(options, "electionTimeoutMs"));
  out.heartbeat_ms = static_cast<unsigned>(Number(options, "heartbeatMs"));
  out.tick_ms = static_cast<unsigned>(Number(options, "tickMs"));
  if (out.tick_ms == 0 || out.tick_ms > out.heartbeat_ms)
    throw BadOption(env, "tickMs", "a number of ms from 1 to heartbeatMs");
  out.snapshot_threshold = static_cast<unsigned>(Number(options, "snapshotThreshold"));
  out.snapshot_trailing = static_cast<unsigned>(Number(options, "snapshotTrailing"));
  out.max_inflight_entries = static_cast<unsigned>(Number(options, "maxInflightEntries"));
  out.pre_vote = options.Get("preVote").ToBoolean();
  const std::string transport = String(options, "transport");
  if (transport != "tcp" && transport != "streams")
    throw BadOption(env, "transport", "'tcp' or 'streams'");
  out.stream_transport = transport == "streams";
  Napi::Value bootstrap = options.Get("bootstrap");
  if (bootstrap.IsArray()) out.bootstrap = Members(env, bootstrap.As<Napi::Array>());
  return out;
}

}  // namespace prevail

// The options of start(), read and checked once (lib/engine/native.ts: NativeStartOptions).
#pragma once
#include <napi.h>

#include <optional>
#include <string>
#include <vector>

#include "raft_c.h"

namespace prevail {

struct Member {
  raft_id id;
  std::string address;
};

struct StartOptions {
  raft_id id;
  std::string address;
  std::string data_dir;
  unsigned election_timeout_ms;
  unsigned heartbeat_ms;
  unsigned tick_ms;  // how often the engine checks its timers (see Engine::StartWithTick)
  unsigned snapshot_threshold;
  unsigned snapshot_trailing;
  unsigned max_inflight_entries;
  bool pre_vote;
  bool stream_transport;  // transport: 'streams' (stream_transport.h) rather than 'tcp'
  std::optional<std::vector<Member>> bootstrap;  // the initial configuration, when given
};

// Throws an INVALID_ARGUMENT error naming the first option that does not fit.
StartOptions ReadStartOptions(Napi::Env env, Napi::Object options);

}  // namespace prevail

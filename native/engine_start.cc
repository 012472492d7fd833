// start(): read the options, attach to the loop, init the storage and transport, init
// and configure the engine, bootstrap (a new cluster), then start it, which recovers the
// log and snapshot. A failed step undoes what the earlier ones did.
#include <cstring>

#include "engine.h"
#include "names.h"
#include "requests.h"
#include "start_options.h"

namespace prevail {

namespace {

// RAII for a configuration being built.
struct Configuration {
  Configuration() { raft_configuration_init(&conf); }
  ~Configuration() { raft_configuration_close(&conf); }
  Configuration(const Configuration&) = delete;
  Configuration& operator=(const Configuration&) = delete;
  struct raft_configuration conf;
};

}  // namespace

Napi::Value Engine::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (raft_ready_ || started_ || closing_ || closed_) {
    return Rejected(env, CodedError(env, Code::kInvalidState, "start() may be called once"));
  }
  const StartOptions options = ReadStartOptions(env, info[0].As<Napi::Object>());
  address_ = options.address;
  if (!AttachToLoop(env))
    return Rejected(env, CodedError(env, Code::kEngine, "cannot get the libuv loop"));

  std::optional<StartFailure> failure = InitIo(options);
  if (!failure) failure = InitRaft(options);
  if (!failure && options.bootstrap) failure = Bootstrap(*options.bootstrap);
  if (!failure) failure = Recover();
  // raft_start applies the entries it can commit alone (a single voter's whole log) and
  // ignores the FSM's failures: an entry that could not be applied fails the start.
  if (failed_) return AbandonStart(env, fatal_error_.Get());
  if (failure) return AbandonStart(env, StartError(env, *failure).Value());
  started_ = true;
  Ref();  // stay alive (and reachable from the loop) until close completes
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Resolve(env.Undefined());
  return deferred.Promise();
}

bool Engine::AttachToLoop(Napi::Env env) {
  if (napi_get_uv_event_loop(env, &loop_) != napi_ok || loop_ == nullptr) return false;
  napi_async_init(env, Value(), Napi::String::New(env, "prevail.Engine"), &async_context_);
  queue_.Open(loop_, this, [](void* self) { static_cast<Engine*>(self)->OnCheck(); });
  return true;
}

std::optional<Engine::StartFailure> Engine::InitIo(const StartOptions& options) {
  transport_.version = 1;  // 0.22.1 refuses a transport without one
  transport_.data = nullptr;
  int rv = 0;
  if (options.stream_transport) {
    if (connect_fn_.IsEmpty())
      return StartFailure{RAFT_INVALID, "transport init", "no connect callback"};
    tcp_transport_ = false;
    streams_.Install(
        &transport_, loop_, [](void* self) { static_cast<Engine*>(self)->queue_.Wake(); }, this);
  } else {
    rv = raft_uv_tcp_init(&transport_, loop_);
    if (rv != 0) return StartFailure{rv, "transport init", ""};
    transport_ready_ = true;  // raft_uv_tcp_close is needed
  }
  rv = raft_uv_init(&io_, loop_, options.data_dir.c_str(), &transport_);
  if (rv != 0) return StartFailure{rv, "storage init", io_.errmsg};
  io_ready_ = true;
  // On by default: it renames a corrupt segment corrupt-… and starts on the log without it,
  // silently shorter than what was acknowledged. A damaged segment must fail the start.
  raft_uv_set_auto_recovery(&io_, false);
  uv_start_ = io_.start;
  tick_ms_ = options.tick_ms;
  io_.start = StartWithTick;
  return std::nullopt;
}

// The engine starts its backend with one timer whose period is the heartbeat, and checks every
// timeout only when it fires: randomized election timeouts then expire in heartbeat steps (40 ms
// of a 200–400 ms range: 5 slots), and two followers of a failed leader often start elections
// in the same slot, a split vote that costs another 200–400 ms. A shorter period (tickMs,
// lib/engine/options.ts) spreads them out; a tick costs a timer callback that finds nothing due.
int Engine::StartWithTick(struct raft_io* io, unsigned, raft_io_tick_cb tick,
                          raft_io_recv_cb recv) {
  auto* raft = static_cast<struct raft*>(io->data);
  auto* engine = static_cast<Engine*>(raft->data);
  return engine->uv_start_(io, engine->tick_ms_, tick, recv);
}

std::optional<Engine::StartFailure> Engine::InitRaft(const StartOptions& options) {
  int rv = raft_init(&raft_, &io_, &fsm_, options.id, address_.c_str());
  if (rv != 0) return StartFailure{rv, "engine init", raft_errmsg(&raft_)};
  raft_ready_ = true;
  raft_.data = this;
  raft_set_election_timeout(&raft_, options.election_timeout_ms);
  raft_set_heartbeat_timeout(&raft_, options.heartbeat_ms);
  raft_set_pre_vote(&raft_, options.pre_vote);
  raft_set_snapshot_threshold(&raft_, options.snapshot_threshold);
  raft_set_snapshot_trailing(&raft_, options.snapshot_trailing);
  // The engine's default (32 un-acknowledged entries per follower) caps a 3-node cluster
  // at ~10k commits/s however many are in flight; see docs/benchmarks.md.
  raft_set_max_inflight_entries(&raft_, options.max_inflight_entries);
  return std::nullopt;
}

// A data dir that already holds a log keeps it (CANTBOOTSTRAP is not a failure).
std::optional<Engine::StartFailure> Engine::Bootstrap(const std::vector<Member>& members) {
  Configuration configuration;
  for (const Member& member : members) {
    int rv =
        raft_configuration_add(&configuration.conf, member.id, member.address.c_str(), RAFT_VOTER);
    if (rv != 0) return StartFailure{rv, "cluster configuration", ""};
  }
  int rv = raft_bootstrap(&raft_, &configuration.conf);
  if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
    return StartFailure{rv, "bootstrap", raft_errmsg(&raft_)};
  return std::nullopt;
}

// Replays the log and restores the snapshot (synchronously), then listens.
std::optional<Engine::StartFailure> Engine::Recover() {
  int rv = StartHoldingListenFrees(&raft_, &transport_, &held_frees_);
  if (rv != 0) return StartFailure{rv, "start", raft_errmsg(&raft_)};
  return std::nullopt;
}

Napi::Error Engine::StartError(Napi::Env env, const StartFailure& failure) {
  std::string message = std::string(failure.what) + ": " + raft_strerror(failure.rv);
  if (!failure.detail.empty()) message += " (" + failure.detail + ")";
  // raft_errmsg often quotes the io's message already ("io: load closed segment …").
  if (io_ready_ && io_.errmsg[0] != '\0' && failure.detail.find(io_.errmsg) == std::string::npos)
    message += " (" + std::string(io_.errmsg) + ")";
  if (!last_fsm_error_.empty()) message += " (" + last_fsm_error_ + ")";
  // A failed listen is a bare IOERR here; lib/engine/raft-node.ts probes the address and names it.
  const Code code = last_fsm_error_.empty() ? Code::kEngine : Code::kSnapshotUnreadable;
  Napi::Error err = RaftError(env, code, failure.rv, message);
  if (!last_fsm_exception_.IsEmpty()) err.Set("cause", last_fsm_exception_.Get());
  return err;
}

// Undoes a start that failed with `error`, then rejects with it.
Napi::Value Engine::AbandonStart(Napi::Env env, Napi::Value error) {
  if (raft_ready_) {
    // The engine must close (asynchronously) before its files and port are free.
    closing_ = true;
    Ref();
    auto request = std::make_unique<CloseRequest>(env, this);
    request->error.Set(error);
    Napi::Value promise = request->deferred.Promise();
    close_completion_ = std::move(request);
    raft_close(&raft_, &Engine::OnRaftClosed);
    return promise;
  }
  if (io_ready_) raft_uv_close(&io_);
  if (transport_ready_) raft_uv_tcp_close(&transport_);
  io_ready_ = transport_ready_ = false;
  closed_ = true;
  TearDown();
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error);
  return deferred.Promise();
}

}  // namespace prevail

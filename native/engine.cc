// The JS-visible Engine: its constructor and JS methods, each checked against its
// signature (lib/engine/native.ts declares the same surface), then handed to the engine.
#include "engine.h"

#include "framing.h"
#include "names.h"
#include "raft_memory.h"
#include "requests.h"
#include "status.h"

namespace prevail {

namespace {

constexpr bool kAsync = true;
constexpr bool kSync = false;

// The parameters of the JS methods, each with the message for an argument that does not fit.
constexpr Param kOptions{ArgType::kObject, "start() needs an options object"};
constexpr Param kCommand{ArgType::kBytes, "a command must be a Uint8Array"};
constexpr Param kId{ArgType::kUint, "a member id must be a non-negative integer"};
constexpr Param kAddress{ArgType::kString, "a member address must be a string"};
constexpr Param kRole{ArgType::kString, "a role must be a string"};
constexpr Param kEntries{ArgType::kUint, "a snapshot threshold must be a non-negative integer"};
constexpr Param kToken{ArgType::kUint, "a connect token must be a non-negative integer"};

// The signatures of the JS methods, as lib/engine/native.ts declares them (NativeEngine).
constexpr Signature kStart{"start", kAsync, 1, {kOptions}};
constexpr Signature kApply{"apply", kAsync, 1, {kCommand}};
constexpr Signature kBarrier{"barrier", kAsync, 0, {}};
constexpr Signature kAdd{"add", kAsync, 2, {kId, kAddress}};
constexpr Signature kAssign{"assign", kAsync, 2, {kId, kRole}};
constexpr Signature kRemove{"remove", kAsync, 1, {kId}};
constexpr Signature kTransfer{"transfer", kAsync, 1, {kId}};  // 0: any voter
constexpr Signature kStatus{"status", kSync, 0, {}};
constexpr Signature kRefusesCommands{"refusesCommands", kSync, 0, {}};
constexpr Signature kLeads{"leads", kSync, 0, {}};
constexpr Signature kSetSnapshotThreshold{"setSnapshotThreshold", kSync, 1, {kEntries}};
constexpr Signature kClose{"close", kAsync, 0, {}};
constexpr Signature kAccept{"accept", kSync, 2, {kId, kAddress}};
constexpr Signature kConnected{"connected", kSync, 1, {kToken}};
constexpr Signature kConnectFailed{"connectFailed", kSync, 1, {kToken}};

raft_id UintArg(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<raft_id>(info[i].As<Napi::Number>().DoubleValue());
}

}  // namespace

Napi::Function Engine::Define(Napi::Env env) {
  InstallEngineHeap();
  return DefineClass(env, "Engine",
                     {
                         Method<&Engine::Start, kStart>(),
                         Method<&Engine::Apply, kApply>(),
                         Method<&Engine::Barrier, kBarrier>(),
                         Method<&Engine::Add, kAdd>(),
                         Method<&Engine::Assign, kAssign>(),
                         Method<&Engine::Remove, kRemove>(),
                         Method<&Engine::Transfer, kTransfer>(),
                         Method<&Engine::Status, kStatus>(),
                         Method<&Engine::RefusesCommands, kRefusesCommands>(),
                         Method<&Engine::Leads, kLeads>(),
                         Method<&Engine::SetSnapshotThreshold, kSetSnapshotThreshold>(),
                         Method<&Engine::Close, kClose>(),
                         Method<&Engine::Accept, kAccept>(),
                         Method<&Engine::Connected, kConnected>(),
                         Method<&Engine::ConnectFailed, kConnectFailed>(),
                     });
}

// new Engine({ apply(payload, index, term, mine), snapshot(), restore(payload),
//              state(state, term, leaderId, leaderAddress), fatal?(error),
//              connect?(token, id, address) })
Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (!HaveErrorCodes(env))
    throw Napi::Error::New(env, "load the addon through lib/engine/native.ts (setErrorCodes)");
  if (info.Length() != 1 || !info[0].IsObject()) {
    throw CodedError(env, Code::kInvalidArgument, "Engine needs an object of callbacks");
  }
  auto callbacks = info[0].As<Napi::Object>();
  auto take = [&](const char* name, Napi::FunctionReference& slot) {
    Napi::Value fn = callbacks.Get(name);
    if (!fn.IsFunction())
      throw CodedError(env, Code::kInvalidArgument,
                       std::string("Engine callback missing: ") + name);
    slot = Napi::Persistent(fn.As<Napi::Function>());
  };
  take("apply", apply_fn_);
  take("snapshot", snapshot_fn_);
  take("restore", restore_fn_);
  take("state", state_fn_);
  if (callbacks.Get("fatal").IsFunction()) take("fatal", fatal_fn_);
  if (callbacks.Get("connect").IsFunction()) take("connect", connect_fn_);

  fsm_.version = 2;  // 2 = we own snapshot buffers and release them in finalize
  fsm_.data = this;
  fsm_.apply = &Engine::FsmApply;
  fsm_.snapshot = &Engine::FsmSnapshot;
  fsm_.restore = &Engine::FsmRestore;
  fsm_.snapshot_finalize = &Engine::FsmSnapshotFinalize;
  fsm_.snapshot_async = nullptr;
}

// Reached only when the engine never started or has fully closed (a started engine holds
// a reference to itself until close completes).
Engine::~Engine() {
  if (async_context_ != nullptr) napi_async_destroy(env_, async_context_);
}

Napi::Error Engine::EngineError(Napi::Env env, int rv, const std::string& what) {
  const bool cut_off =
      closing_ && (rv == RAFT_LEADERSHIPLOST || rv == RAFT_CANCELED || rv == RAFT_SHUTDOWN);
  Napi::Error err = cut_off ? RaftError(env, Code::kClosed, rv,
                                        what + ": the node closed before the request completed")
                            : RaftError(env, Code::kEngine, rv, what + ": " + raft_strerror(rv));
  if (rv == RAFT_NOTLEADER && raft_ready_) {
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&raft_, &id, &address);
    if (id != 0) {
      err.Set("leaderId", Napi::Number::New(env, static_cast<double>(id)));
      err.Set("leaderAddress", Napi::String::New(env, address != nullptr ? address : ""));
    }
  }
  return err;
}

raft_id Engine::LeaderId() {
  raft_id id = 0;
  const char* address = nullptr;
  raft_leader(&raft_, &id, &address);
  return id;
}

bool Engine::Usable(Napi::Env env, Napi::Promise::Deferred& deferred) {
  if (!started_ || closing_) {
    deferred.Reject(CodedError(env, Code::kClosed, "the node is closed").Value());
    return false;
  }
  if (in_fsm_) {
    deferred.Reject(
        CodedError(
            env, Code::kReentrant,
            "a request was made from inside apply(); apply must be synchronous and self-contained")
            .Value());
    return false;
  }
  return true;
}

bool Engine::UsableAsLeader(Napi::Env env, Napi::Promise::Deferred& deferred) {
  if (!Usable(env, deferred)) return false;
  // raft_add/raft_assign/raft_remove assert (abort the process) on a non-leader in 0.22.1.
  if (raft_state(&raft_) != RAFT_LEADER) {
    deferred.Reject(EngineError(env, RAFT_NOTLEADER, "membership change").Value());
    return false;
  }
  return true;
}

template <typename R>
Napi::Value Engine::Submitted(std::unique_ptr<R> request, int rv, const char* what) {
  Napi::Value promise = request->deferred.Promise();
  if (rv != 0) {
    request->deferred.Reject(EngineError(request->deferred.Env(), rv, what).Value());
  } else {
    request.release();  // the engine holds it until its callback
  }
  return promise;
}

Napi::Value Engine::Apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto request = NewRequest<ApplyRequest>(env, this);
  if (!Usable(env, request->deferred)) return request->deferred.Promise();
  const uint8_t* data;
  size_t len;
  GetBytes(info[0], &data, &len);
  if (len > UINT32_MAX - 64) {
    return prevail::Rejected(
        env, CodedError(env, Code::kTooLarge, "a command must be smaller than 4 GiB"));
  }
  RaftPtr<uint8_t> entry = RaftAlloc<uint8_t>(EntrySize(len));
  if (!entry) return Submitted(std::move(request), RAFT_NOMEM, "apply");
  EncodeEntry(entry.get(), data, len,
              raft_current_term(&raft_));  // raft_apply appends in the current term
  struct raft_buffer buffer = {entry.get(), EntrySize(len)};
  int rv = raft_apply(&raft_, &request->req, &buffer, 1, &ApplyRequest::Cb);
  if (rv == 0) {
    entry.release();  // the engine's now
    request->index = request->req.index;
    if (!request->fired) pending_[request->index] = request.get();
  }
  return Submitted(std::move(request), rv, "apply");
}

Napi::Value Engine::Barrier(const Napi::CallbackInfo& info) {
  auto request = NewRequest<BarrierRequest>(info.Env(), this);
  if (!Usable(info.Env(), request->deferred)) return request->deferred.Promise();
  int rv = raft_barrier(&raft_, &request->req, &BarrierRequest::Cb);
  return Submitted(std::move(request), rv, "barrier");
}

// A membership change: `call(req)` hands it to the engine.
template <typename R, typename Call>
Napi::Value Engine::Change(Napi::Env env, const char* what, Call call) {
  auto request = NewRequest<R>(env, this);
  request->what = what;
  if (!UsableAsLeader(env, request->deferred)) return request->deferred.Promise();
  int rv = call(&request->req);
  return Submitted(std::move(request), rv, what);
}

Napi::Value Engine::Add(const Napi::CallbackInfo& info) {
  const raft_id id = UintArg(info, 0);
  const std::string address = info[1].As<Napi::String>().Utf8Value();
  return Change<ChangeRequest>(info.Env(), "add member", [&](struct raft_change* req) {
    return raft_add(&raft_, req, id, address.c_str(), &ChangeRequest::Cb);
  });
}

Napi::Value Engine::Assign(const Napi::CallbackInfo& info) {
  const raft_id id = UintArg(info, 0);
  const int role = RoleCode(info[1].As<Napi::String>().Utf8Value().c_str());
  return Change<ChangeRequest>(info.Env(), "assign role", [&](struct raft_change* req) {
    return role < 0 ? RAFT_BADROLE : raft_assign(&raft_, req, id, role, &ChangeRequest::Cb);
  });
}

Napi::Value Engine::Remove(const Napi::CallbackInfo& info) {
  const raft_id id = UintArg(info, 0);
  return Change<ChangeRequest>(info.Env(), "remove member", [&](struct raft_change* req) {
    return raft_remove(&raft_, req, id, &ChangeRequest::Cb);
  });
}

Napi::Value Engine::Transfer(const Napi::CallbackInfo& info) {
  auto request = NewRequest<TransferRequest>(info.Env(), this);
  if (!Usable(info.Env(), request->deferred)) return request->deferred.Promise();
  int rv = raft_transfer(&raft_, &request->req, UintArg(info, 0), &TransferRequest::Cb);
  return Submitted(std::move(request), rv, "transfer leadership");
}

Napi::Value Engine::SetSnapshotThreshold(const Napi::CallbackInfo& info) {
  if (started_ && !closing_)
    raft_set_snapshot_threshold(&raft_, static_cast<unsigned>(UintArg(info, 0)));
  return info.Env().Undefined();
}

Napi::Value Engine::Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_ && !closing_) return DescribeRunning(env, &raft_);
  auto out = Napi::Object::New(env);
  out.Set("state", Napi::String::New(env, closed_ ? "closed" : closing_ ? "closing" : "unstarted"));
  return out;
}

// Whether apply() would be refused with NOT_LEADER now, and fail no other way: the engine runs,
// is not inside apply(), and does not lead or is handing leadership over (raft_apply's own test,
// ClientSubmit's). A follower that forwards asks this first, and builds no entry to be refused.
Napi::Value Engine::RefusesCommands(const Napi::CallbackInfo& info) {
  if (!started_ || closing_ || in_fsm_) return Napi::Boolean::New(info.Env(), false);
  const bool leads = raft_state(&raft_) == RAFT_LEADER && raft_transferee(&raft_) == 0;
  return Napi::Boolean::New(info.Env(), !leads);
}

// Whether the engine is the leader now: status().role === 'leader', without building a status.
Napi::Value Engine::Leads(const Napi::CallbackInfo& info) {
  const bool running = started_ && !closing_;
  return Napi::Boolean::New(info.Env(), running && raft_state(&raft_) == RAFT_LEADER);
}

Napi::Value Engine::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!started_ || closing_)
    return prevail::Rejected(env, CodedError(env, Code::kClosed, "the node is already closed"));
  closing_ = true;
  close_completion_ = std::make_unique<CloseRequest>(env, this);
  Napi::Value promise = close_completion_->deferred.Promise();
  // Fails every pending request synchronously (settled from the check phase).
  raft_close(&raft_, &Engine::OnRaftClosed);
  return promise;
}

}  // namespace prevail

#include "engine.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>

#include "engine_shim.h"

namespace prevail {

namespace {

// Every entry payload is framed: the engine's disk backend needs lengths that are a
// multiple of 8 (see shared notes), and the header carries the true length and the
// term the leader appended it in (the FSM callback is not given the term).
constexpr uint32_t kEntryMagic = 0x31455650;     // "PVE1"
constexpr uint32_t kSnapshotMagic = 0x31535650;  // "PVS1"
constexpr uint32_t kSnapshotFormat = 1;
constexpr size_t kHeaderSize = 16;

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

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

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Value Rejected(Napi::Env env, const Napi::Error& err) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(err.Value());
  return deferred.Promise();
}

// Bytes of a Buffer/Uint8Array argument, or nullptr if the value is not one.
bool GetBytes(Napi::Value value, const uint8_t** data, size_t* len) {
  if (!value.IsTypedArray()) return false;
  auto array = value.As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_uint8_array) return false;
  auto bytes = value.As<Napi::Uint8Array>();
  *data = bytes.Data();
  *len = bytes.ByteLength();
  return true;
}

// ---- the engine's heap: a workaround for its failed-listen path -----------------
//
// When bind/listen fails (e.g. the port is taken), raft 0.22.1's TCP transport
// (uvTcpListenOnMultipleIP) uv_close()s its listener handles and raft_free()s their
// memory right away, before libuv has finished closing them: libuv then reads and
// writes the freed handles in its closing phase (use-after-free, found by valgrind
// in scripts/leak-check.sh). The engine allocates through raft_heap, so the addon
// installs a heap that is plain malloc/free except that, while the transport's listen
// runs on this thread, frees are held back (Engine::TransportListen) and released
// only after the engine has closed (TearDown), when libuv is long done with them.
struct HeldFrees {
  void* ptrs[16];
  size_t n = 0;
};
thread_local HeldFrees* t_held_frees = nullptr;
thread_local Engine* t_starting = nullptr;  // the engine inside raft_start on this thread
int (*tcp_listen)(struct raft_uv_transport* t, raft_uv_accept_cb cb) = nullptr;  // the engine's own

void* HeapMalloc(void*, size_t size) { return malloc(size); }
void HeapFree(void*, void* ptr) {
  HeldFrees* held = t_held_frees;
  if (held != nullptr && ptr != nullptr && held->n < sizeof(held->ptrs) / sizeof(held->ptrs[0])) {
    held->ptrs[held->n++] = ptr;
  } else {
    free(ptr);
  }
}
void* HeapCalloc(void*, size_t n, size_t size) { return calloc(n, size); }
void* HeapRealloc(void*, void* ptr, size_t size) { return realloc(ptr, size); }
void* HeapAlignedAlloc(void*, size_t alignment, size_t size) { return aligned_alloc(alignment, size); }
void HeapAlignedFree(void*, size_t, void* ptr) { free(ptr); }

struct raft_heap engine_heap = {nullptr, HeapMalloc, HeapFree, HeapCalloc, HeapRealloc, HeapAlignedAlloc,
                                HeapAlignedFree};

}  // namespace

int Engine::TransportListen(struct raft_uv_transport* t, raft_uv_accept_cb cb) {
  Engine* self = t_starting;
  if (self == nullptr) return tcp_listen(t, cb);  // not expected: the engine listens only in raft_start
  HeldFrees held;
  t_held_frees = &held;
  int rv = tcp_listen(t, cb);
  t_held_frees = nullptr;
  if (rv == 0) {
    for (size_t i = 0; i < held.n; i++) free(held.ptrs[i]);  // nothing was closed: safe now
    return rv;
  }
  try {
    self->held_frees_.insert(self->held_frees_.end(), held.ptrs, held.ptrs + held.n);
  } catch (const std::bad_alloc&) {
    // Out of memory: leaking these few bytes beats a use-after-free.
  }
  return rv;
}

void Engine::ReleaseHeldFrees() {
  for (void* ptr : held_frees_) free(ptr);
  held_frees_.clear();
}

// ---- requests -------------------------------------------------------------------

struct ApplyRequest : Completion {
  using Completion::Completion;
  struct raft_apply req {};
  raft_index index = 0;
  bool fired = false;
  Held result;

  static void Cb(struct raft_apply* req, int status, void* /*result*/) {
    auto* self = static_cast<ApplyRequest*>(req->data);
    self->status = status;
    self->fired = true;
    if (self->index != 0) self->engine->pending_.erase(self->index);
    self->engine->Enqueue(self);
  }
  void Settle(Napi::Env env) override {
    if (status == 0 && engine->FailedAt(index)) {
      deferred.Reject(engine->FatalError(env));  // its entry (or an earlier one) could not be applied here
    } else if (status == 0) {
      auto pair = Napi::Array::New(env, 2);
      pair.Set(uint32_t(0), Napi::Number::New(env, static_cast<double>(index)));
      pair.Set(uint32_t(1), result.IsEmpty() ? env.Undefined() : result.Get());
      deferred.Resolve(pair);
    } else {
      auto err = engine->EngineError(env, status, "apply");
      err.Set("index", Napi::Number::New(env, static_cast<double>(index)));
      deferred.Reject(err.Value());
    }
  }
};

struct BarrierRequest : Completion {
  using Completion::Completion;
  struct raft_barrier req {};
  static void Cb(struct raft_barrier* req, int status) {
    auto* self = static_cast<BarrierRequest*>(req->data);
    self->status = status;
    self->engine->Enqueue(self);
  }
  void Settle(Napi::Env env) override {
    if (status == 0 && engine->FailedAt(req.index))
      deferred.Reject(engine->FatalError(env));  // this node's state stopped short of the barrier
    else if (status == 0)
      deferred.Resolve(Napi::Number::New(env, static_cast<double>(req.index)));
    else
      deferred.Reject(engine->EngineError(env, status, "barrier").Value());
  }
};

struct ChangeRequest : Completion {
  using Completion::Completion;
  struct raft_change req {};
  const char* what = "change";
  static void Cb(struct raft_change* req, int status) {
    auto* self = static_cast<ChangeRequest*>(req->data);
    self->status = status;
    self->engine->Enqueue(self);
  }
  void Settle(Napi::Env env) override {
    if (status == 0)
      deferred.Resolve(env.Undefined());
    else
      deferred.Reject(engine->EngineError(env, status, what).Value());
  }
};

struct TransferRequest : Completion {
  using Completion::Completion;
  struct raft_transfer req {};
  raft_id leader = 0;
  static void Cb(struct raft_transfer* req) {
    auto* self = static_cast<TransferRequest*>(req->data);
    const char* address = nullptr;
    raft_leader(&self->engine->raft_, &self->leader, &address);
    self->engine->Enqueue(self);
  }
  void Settle(Napi::Env env) override {
    deferred.Resolve(Napi::Number::New(env, static_cast<double>(leader)));
  }
};

// Settles close(), or a start() that failed after the engine was initialised (the
// engine must be closed before its port and files are free again).
struct CloseRequest : Completion {
  using Completion::Completion;
  Held error;
  bool IsClose() const override { return true; }
  void Settle(Napi::Env env) override {
    if (error.IsEmpty())
      deferred.Resolve(env.Undefined());
    else
      deferred.Reject(error.Get());
  }
};

// ---- class setup ----------------------------------------------------------------

Napi::Function Engine::Define(Napi::Env env) {
  raft_heap_set(&engine_heap);  // before any engine allocation; same value on every call
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod<&Engine::Start>("start"),
                         InstanceMethod<&Engine::Apply>("apply"),
                         InstanceMethod<&Engine::Barrier>("barrier"),
                         InstanceMethod<&Engine::Add>("add"),
                         InstanceMethod<&Engine::Assign>("assign"),
                         InstanceMethod<&Engine::Remove>("remove"),
                         InstanceMethod<&Engine::Transfer>("transfer"),
                         InstanceMethod<&Engine::Status>("status"),
                         InstanceMethod<&Engine::SetSnapshotThreshold>("setSnapshotThreshold"),
                         InstanceMethod<&Engine::Close>("close"),
                     });
}

// new Engine({ apply(payload, index, term, mine), snapshot(), restore(payload), state(...), fatal?(error) })
Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw CodedError(env, "PREVAIL_INVALID_ARGUMENT", "Engine needs an object of callbacks");
  }
  auto callbacks = info[0].As<Napi::Object>();
  auto take = [&](const char* name, Napi::FunctionReference& slot) {
    Napi::Value fn = callbacks.Get(name);
    if (!fn.IsFunction()) {
      throw CodedError(env, "PREVAIL_INVALID_ARGUMENT", std::string("Engine callback missing: ") + name);
    }
    slot = Napi::Persistent(fn.As<Napi::Function>());
  };
  take("apply", apply_fn_);
  take("snapshot", snapshot_fn_);
  take("restore", restore_fn_);
  take("state", state_fn_);
  if (callbacks.Get("fatal").IsFunction()) fatal_fn_ = Napi::Persistent(callbacks.Get("fatal").As<Napi::Function>());

  fsm_.version = 2;  // 2 = we own snapshot buffers and release them in finalize
  fsm_.data = this;
  fsm_.apply = &Engine::FsmApply;
  fsm_.snapshot = &Engine::FsmSnapshot;
  fsm_.restore = &Engine::FsmRestore;
  fsm_.snapshot_finalize = &Engine::FsmSnapshotFinalize;
  fsm_.snapshot_async = nullptr;
}

Engine::~Engine() {
  // Reached only when the engine never started or has fully closed (a started
  // engine holds a reference to itself until close completes).
  if (async_context_ != nullptr) napi_async_destroy(env_, async_context_);
  ReleaseHeldFrees();
}

Napi::Error Engine::EngineError(Napi::Env env, int rv, const std::string& what) {
  std::string message = what + ": " + raft_strerror(rv);
  const char* code = "PREVAIL_ENGINE";
  if (closing_ && (rv == RAFT_LEADERSHIPLOST || rv == RAFT_CANCELED || rv == RAFT_SHUTDOWN)) {
    code = "PREVAIL_CLOSED";
    message = what + ": the node closed before the request completed";
  }
  Napi::Error err = CodedError(env, code, message);
  err.Set("raftCode", Napi::Number::New(env, rv));
  err.Set("raftName", Napi::String::New(env, RaftCodeName(rv)));
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

void Engine::Enqueue(Completion* completion) {
  completions_.emplace_back(completion);
  // An active idle handle makes the loop poll without blocking, so the check
  // handle settles this completion in the current loop iteration.
  if (idle_) uv_idle_start(idle_.get(), [](uv_idle_t*) {});
}

bool Engine::UsableAsLeader(Napi::Env env, Napi::Promise::Deferred& deferred, const char* what) {
  if (!Usable(env, deferred)) return false;
  // raft_add/raft_assign/raft_remove assert (abort the process) on a non-leader in 0.22.1.
  if (raft_state(&raft_) != RAFT_LEADER) {
    deferred.Reject(EngineError(env, RAFT_NOTLEADER, what).Value());
    return false;
  }
  return true;
}

bool Engine::Usable(Napi::Env env, Napi::Promise::Deferred& deferred) {
  if (!started_ || closing_) {
    deferred.Reject(CodedError(env, "PREVAIL_CLOSED", "the node is closed").Value());
    return false;
  }
  if (in_fsm_) {
    deferred.Reject(CodedError(env, "PREVAIL_REENTRANT",
                               "a request was made from inside apply(); apply must be synchronous and self-contained")
                        .Value());
    return false;
  }
  return true;
}

// ---- start ------------------------------------------------------------------------

Napi::Value Engine::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (raft_ready_ || started_ || closing_ || closed_) {
    return Rejected(env, CodedError(env, "PREVAIL_INVALID_STATE", "start() may be called once"));
  }
  if (info.Length() < 1 || !info[0].IsObject()) {
    return Rejected(env, CodedError(env, "PREVAIL_INVALID_ARGUMENT", "start() needs an options object"));
  }
  auto opts = info[0].As<Napi::Object>();
  auto num = [&](const char* name) -> double {
    Napi::Value v = opts.Get(name);
    if (!v.IsNumber()) throw CodedError(env, "PREVAIL_INVALID_ARGUMENT", std::string("option ") + name + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto str = [&](const char* name) -> std::string {
    Napi::Value v = opts.Get(name);
    if (!v.IsString()) throw CodedError(env, "PREVAIL_INVALID_ARGUMENT", std::string("option ") + name + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  };

  raft_id id = static_cast<raft_id>(num("id"));
  address_ = str("address");
  std::string data_dir = str("dataDir");
  unsigned election = static_cast<unsigned>(num("electionTimeoutMs"));
  unsigned heartbeat = static_cast<unsigned>(num("heartbeatMs"));
  unsigned threshold = static_cast<unsigned>(num("snapshotThreshold"));
  unsigned trailing = static_cast<unsigned>(num("snapshotTrailing"));
  unsigned max_inflight = static_cast<unsigned>(num("maxInflightEntries"));
  bool pre_vote = opts.Get("preVote").ToBoolean();

  if (napi_get_uv_event_loop(env, &loop_) != napi_ok || loop_ == nullptr) {
    return Rejected(env, CodedError(env, "PREVAIL_ENGINE", "cannot get the libuv loop"));
  }
  napi_async_init(env, Value(), Napi::String::New(env, "prevail.Engine"), &async_context_);
  check_.reset(new uv_check_t);
  uv_check_init(loop_, check_.get());
  check_->data = this;
  uv_check_start(check_.get(), [](uv_check_t* h) { static_cast<Engine*>(h->data)->OnCheck(); });
  uv_unref(reinterpret_cast<uv_handle_t*>(check_.get()));
  idle_.reset(new uv_idle_t);
  uv_idle_init(loop_, idle_.get());

  // Undoes a start that failed with `error`, then rejects with it.
  auto reject = [&](Napi::Value error) -> Napi::Value {
    if (raft_ready_) {
      // The engine must close (asynchronously) before its files and port are free.
      closing_ = true;
      Ref();
      auto* request = new CloseRequest(env);
      request->engine = this;
      request->error.Set(error);
      close_completion_.reset(request);
      Napi::Value promise = request->deferred.Promise();
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
  };
  auto fail = [&](int rv, const std::string& what, const char* detail) -> Napi::Value {
    std::string message = what + ": " + raft_strerror(rv);
    if (detail != nullptr && detail[0] != '\0') message += " (" + std::string(detail) + ")";
    if (io_ready_ && io_.errmsg[0] != '\0' && (detail == nullptr || strcmp(detail, io_.errmsg) != 0)) {
      message += " (" + std::string(io_.errmsg) + ")";
    }
    if (!last_fsm_error_.empty()) message += " (" + last_fsm_error_ + ")";
    // A failed listen is a bare IOERR here; lib/raft-node.ts probes the address and names it.
    const char* code = last_fsm_error_.empty() ? "PREVAIL_ENGINE" : "PREVAIL_SNAPSHOT_UNREADABLE";
    Napi::Error err = CodedError(env, code, message);
    err.Set("raftCode", Napi::Number::New(env, rv));
    err.Set("raftName", Napi::String::New(env, RaftCodeName(rv)));
    if (!last_fsm_exception_.IsEmpty()) err.Set("cause", last_fsm_exception_.Get());
    return reject(err.Value());
  };

  transport_.version = 1;
  transport_.data = nullptr;
  int rv = raft_uv_tcp_init(&transport_, loop_);
  if (rv != 0) return fail(rv, "transport init", nullptr);
  transport_ready_ = true;
  rv = raft_uv_init(&io_, loop_, data_dir.c_str(), &transport_);
  if (rv != 0) return fail(rv, "storage init", io_.errmsg);
  io_ready_ = true;
  rv = raft_init(&raft_, &io_, &fsm_, id, address_.c_str());
  if (rv != 0) return fail(rv, "engine init", raft_errmsg(&raft_));
  raft_ready_ = true;
  raft_.data = this;
  raft_set_election_timeout(&raft_, election);
  raft_set_heartbeat_timeout(&raft_, heartbeat);
  raft_set_pre_vote(&raft_, pre_vote);
  raft_set_snapshot_threshold(&raft_, threshold);
  raft_set_snapshot_trailing(&raft_, trailing);
  // The engine's default (32 un-acknowledged entries per follower) caps a 3-node cluster
  // at ~10k commits/s however many are in flight; see docs/benchmarks.md.
  raft_set_max_inflight_entries(&raft_, max_inflight);

  Napi::Value members = opts.Get("bootstrap");
  if (members.IsArray()) {
    auto array = members.As<Napi::Array>();
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (uint32_t i = 0; i < array.Length(); i++) {
      auto member = array.Get(i).As<Napi::Object>();
      raft_id member_id = static_cast<raft_id>(member.Get("id").As<Napi::Number>().DoubleValue());
      std::string member_address = member.Get("address").As<Napi::String>().Utf8Value();
      rv = raft_configuration_add(&conf, member_id, member_address.c_str(), RAFT_VOTER);
      if (rv != 0) {
        raft_configuration_close(&conf);
        return fail(rv, "cluster configuration", nullptr);
      }
    }
    rv = raft_bootstrap(&raft_, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) return fail(rv, "bootstrap", raft_errmsg(&raft_));
  }

  tcp_listen = transport_.listen;  // the same function for every engine
  transport_.listen = &Engine::TransportListen;
  t_starting = this;
  rv = raft_start(&raft_);
  t_starting = nullptr;
  // raft_start applies the entries it can commit alone (a single voter's whole log) and
  // ignores the FSM's failures: an entry that could not be applied fails the start.
  if (failed_) return reject(fatal_error_.Get());
  if (rv != 0) return fail(rv, "start", raft_errmsg(&raft_));
  started_ = true;
  Ref();  // stay alive (and reachable from the loop) until close completes
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Resolve(env.Undefined());
  return deferred.Promise();
}

// ---- the FSM ----------------------------------------------------------------------

// An entry this replica can't apply stops it: skipping the entry would let it diverge
// silently. raft 0.22.1 asserts (aborts the process) when the FSM fails inside a timer or
// a received message, so once started the failure is recorded (Fail), the entry and every
// later one are acknowledged without reaching JS, and the node is closed from JS (told
// from the check phase). During raft_start the engine stops at the failure, and Start
// rejects with the error.
int Engine::FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  auto* self = static_cast<Engine*>(fsm->data);
  *result = nullptr;
  const int stop = self->started_ ? 0 : RAFT_INVALID;
  if (self->failed_) return stop;
  const raft_index index = raft_last_applied(&self->raft_) + 1;
  const auto* bytes = static_cast<const uint8_t*>(buf->base);
  if (buf->len < kHeaderSize || GetU32(bytes) != kEntryMagic || GetU32(bytes + 4) > buf->len - kHeaderSize) {
    Napi::HandleScope scope(self->env_);
    Napi::Error err = CodedError(self->env_, "PREVAIL_CORRUPT_ENTRY", "entry " + std::to_string(index) + " is not a prevail entry");
    err.Set("index", Napi::Number::New(self->env_, static_cast<double>(index)));
    self->Fail(err.Value(), index);
    return stop;
  }
  const uint32_t length = GetU32(bytes + 4);
  const uint64_t term = GetU64(bytes + 8);

  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  auto it = self->pending_.find(index);
  ApplyRequest* mine = it != self->pending_.end() ? it->second : nullptr;
  // A copy: the engine frees the entry's memory later, and JS may keep the bytes.
  auto payload = self->payloads_.Copy(env, bytes + kHeaderSize, length);
  try {
    Napi::Value value = self->CallFsm(self->apply_fn_, {payload, Napi::Number::New(env, static_cast<double>(index)),
                                                        Napi::Number::New(env, static_cast<double>(term)),
                                                        Napi::Boolean::New(env, mine != nullptr)});
    if (mine != nullptr) mine->result.Set(value);
  } catch (const Napi::Error& err) {
    // The JS adapter turns handler errors into results; an error here is fatal (an entry
    // this code can't apply, or the adapter itself failed).
    self->Fail(err.Value(), index);
    return stop;
  }
  return 0;
}

void Engine::Fail(Napi::Value error, raft_index index) {
  if (failed_) return;
  failed_ = true;
  failed_index_ = index;
  fatal_error_.Set(error);
  // Report it (and settle what it fails) from the check phase of this loop iteration.
  if (idle_) uv_idle_start(idle_.get(), [](uv_idle_t*) {});
}

bool Engine::FailedAt(raft_index index) const {
  return failed_ && index >= failed_index_;
}

Napi::Value Engine::FatalError(Napi::Env env) const {
  return fatal_error_.IsEmpty() ? CodedError(env, "PREVAIL_CLOSED", "the node stopped").Value() : fatal_error_.Get();
}

int Engine::FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<Engine*>(fsm->data);
  // After a failed apply the engine counts entries as applied that the state never saw:
  // a snapshot now would write that lie to disk.
  if (self->failed_) return RAFT_BUSY;
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  std::vector<Napi::Value> parts;
  try {
    Napi::Value value = self->CallFsm(self->snapshot_fn_, {});
    if (value.IsArray()) {
      auto array = value.As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); i++) parts.push_back(array.Get(i));
    } else {
      parts.push_back(value);
    }
  } catch (const Napi::Error& err) {
    self->last_fsm_error_ = "snapshot failed: " + err.Message();
    napi_fatal_exception(env, err.Value());
    return RAFT_INVALID;
  }
  uint64_t total = 0;
  for (auto& part : parts) {
    const uint8_t* data;
    size_t len;
    if (!GetBytes(part, &data, &len)) {
      napi_fatal_exception(env, CodedError(env, "PREVAIL_INVALID_ARGUMENT",
                                           "fsm.snapshot() must return a Uint8Array or an array of them")
                                    .Value());
      return RAFT_INVALID;
    }
    total += len;
  }
  auto* out = static_cast<struct raft_buffer*>(raft_malloc(sizeof(struct raft_buffer) * (parts.size() + 1)));
  auto* header = static_cast<uint8_t*>(raft_malloc(kHeaderSize));
  if (out == nullptr || header == nullptr) {
    raft_free(out);
    raft_free(header);
    return RAFT_NOMEM;
  }
  PutU32(header, kSnapshotMagic);
  PutU32(header + 4, kSnapshotFormat);
  PutU64(header + 8, total);
  out[0].base = header;
  out[0].len = kHeaderSize;
  // No copy: the engine writes these bytes on the threadpool; the references keep
  // them alive until finalize. The adapter contract: never mutate them afterwards.
  for (size_t i = 0; i < parts.size(); i++) {
    const uint8_t* data;
    size_t len;
    GetBytes(parts[i], &data, &len);
    out[i + 1].base = const_cast<uint8_t*>(data);
    out[i + 1].len = len;
    self->snapshot_refs_.emplace_back();
    self->snapshot_refs_.back().Set(parts[i]);
  }
  *bufs = out;
  *n_bufs = static_cast<unsigned>(parts.size() + 1);
  return 0;
}

int Engine::FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<Engine*>(fsm->data);
  if (*bufs != nullptr) {
    raft_free((*bufs)[0].base);
    raft_free(*bufs);
  }
  *bufs = nullptr;
  *n_bufs = 0;
  self->snapshot_refs_.clear();
  return 0;
}

int Engine::FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  auto* self = static_cast<Engine*>(fsm->data);
  if (self->failed_) {
    raft_free(buf->base);  // stopping anyway; see FsmApply
    return 0;
  }
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  const auto* bytes = static_cast<const uint8_t*>(buf->base);
  std::string problem;
  if (buf->len < kHeaderSize || GetU32(bytes) != kSnapshotMagic) {
    problem = "the snapshot was not written by prevail";
  } else if (GetU32(bytes + 4) != kSnapshotFormat) {
    problem = "snapshot format " + std::to_string(GetU32(bytes + 4)) + " is not readable by this build (it reads format " +
              std::to_string(kSnapshotFormat) + ")";
  } else if (GetU64(bytes + 8) != buf->len - kHeaderSize) {
    problem = "the snapshot is truncated";
  }
  Napi::Value error;
  if (problem.empty()) {
    // A copy, so the engine's buffer can be freed and JS may keep what it restores.
    auto payload = Napi::Buffer<uint8_t>::Copy(env, bytes + kHeaderSize, buf->len - kHeaderSize);
    try {
      self->CallFsm(self->restore_fn_, {payload});
    } catch (const Napi::Error& err) {
      problem = "fsm.restore() threw: " + err.Message();
      error = err.Value();
    }
  }
  if (!problem.empty()) {
    self->last_fsm_error_ = problem;
    if (error.IsEmpty()) error = CodedError(env, "PREVAIL_SNAPSHOT_UNREADABLE", problem).Value();
    self->last_fsm_exception_.Set(error);
    if (self->started_) {
      // Installed from the leader while running: this replica stops (see FsmApply).
      self->Fail(error, raft_last_applied(&self->raft_) + 1);
      raft_free(buf->base);
      return 0;
    }
    return RAFT_MALFORMED;
  }
  raft_free(buf->base);  // on success the FSM owns the buffer
  return 0;
}

// While an FSM callback runs, Usable() refuses requests: the engine is mid-callback and
// must not be re-entered. The flag is reset however the call ends.
Napi::Value Engine::CallFsm(const Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args) {
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{in_fsm_};
  in_fsm_ = true;
  return fn.Call(args);
}

// ---- requests from JS ---------------------------------------------------------------

Napi::Value Engine::Apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* request = new ApplyRequest(env);
  std::unique_ptr<ApplyRequest> owner(request);
  request->engine = this;
  request->req.data = request;
  Napi::Value promise = request->deferred.Promise();
  if (!Usable(env, request->deferred)) return promise;
  const uint8_t* data;
  size_t len;
  if (info.Length() < 1 || !GetBytes(info[0], &data, &len)) {
    request->deferred.Reject(CodedError(env, "PREVAIL_INVALID_ARGUMENT", "a command must be a Uint8Array").Value());
    return promise;
  }
  if (len > UINT32_MAX - 64) {
    request->deferred.Reject(CodedError(env, "PREVAIL_TOO_LARGE", "a command must be smaller than 4 GiB").Value());
    return promise;
  }
  const size_t total = kHeaderSize + ((len + 7) & ~size_t(7));
  auto* mem = static_cast<uint8_t*>(raft_malloc(total));
  if (mem == nullptr) {
    request->deferred.Reject(EngineError(env, RAFT_NOMEM, "apply").Value());
    return promise;
  }
  PutU32(mem, kEntryMagic);
  PutU32(mem + 4, static_cast<uint32_t>(len));
  PutU64(mem + 8, raft_current_term(&raft_));  // raft_apply appends in the current term
  if (len > 0) memcpy(mem + kHeaderSize, data, len);
  memset(mem + kHeaderSize + len, 0, total - kHeaderSize - len);
  struct raft_buffer buffer = {mem, total};
  int rv = raft_apply(&raft_, &request->req, &buffer, 1, &ApplyRequest::Cb);
  if (rv != 0) {
    raft_free(mem);
    request->deferred.Reject(EngineError(env, rv, "apply").Value());
    return promise;
  }
  request->index = request->req.index;
  owner.release();  // the engine holds it until its callback
  if (!request->fired) pending_[request->index] = request;
  return promise;
}

Napi::Value Engine::Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* request = new BarrierRequest(env);
  std::unique_ptr<BarrierRequest> owner(request);
  request->engine = this;
  request->req.data = request;
  Napi::Value promise = request->deferred.Promise();
  if (!Usable(env, request->deferred)) return promise;
  int rv = raft_barrier(&raft_, &request->req, &BarrierRequest::Cb);
  if (rv != 0) {
    request->deferred.Reject(EngineError(env, rv, "barrier").Value());
    return promise;
  }
  owner.release();
  return promise;
}

namespace {
template <typename Start>
Napi::Value StartChange(Engine* engine, Napi::Env env, const char* what, Start start,
                        std::function<bool(Napi::Env, Napi::Promise::Deferred&)> usable) {
  auto* request = new ChangeRequest(env);
  std::unique_ptr<ChangeRequest> owner(request);
  request->engine = engine;
  request->req.data = request;
  request->what = what;
  Napi::Value promise = request->deferred.Promise();
  if (!usable(env, request->deferred)) return promise;
  int rv = start(&request->req);
  if (rv != 0) {
    request->deferred.Reject(engine->EngineError(env, rv, what).Value());
    return promise;
  }
  owner.release();
  return promise;
}
}  // namespace

Napi::Value Engine::Add(const Napi::CallbackInfo& info) {
  raft_id id = static_cast<raft_id>(info[0].As<Napi::Number>().DoubleValue());
  std::string address = info[1].As<Napi::String>().Utf8Value();
  return StartChange(this, info.Env(), "add member",
                     [&](struct raft_change* req) { return raft_add(&raft_, req, id, address.c_str(), &ChangeRequest::Cb); },
                     [this](Napi::Env env, Napi::Promise::Deferred& d) { return UsableAsLeader(env, d, "membership change"); });
}

Napi::Value Engine::Assign(const Napi::CallbackInfo& info) {
  raft_id id = static_cast<raft_id>(info[0].As<Napi::Number>().DoubleValue());
  std::string role = info[1].As<Napi::String>().Utf8Value();
  int code = role == "voter" ? RAFT_VOTER : role == "standby" ? RAFT_STANDBY : role == "spare" ? RAFT_SPARE : -1;
  return StartChange(this, info.Env(), "assign role",
                     [&](struct raft_change* req) {
                       return code < 0 ? RAFT_BADROLE : raft_assign(&raft_, req, id, code, &ChangeRequest::Cb);
                     },
                     [this](Napi::Env env, Napi::Promise::Deferred& d) { return UsableAsLeader(env, d, "membership change"); });
}

Napi::Value Engine::Remove(const Napi::CallbackInfo& info) {
  raft_id id = static_cast<raft_id>(info[0].As<Napi::Number>().DoubleValue());
  return StartChange(this, info.Env(), "remove member",
                     [&](struct raft_change* req) { return raft_remove(&raft_, req, id, &ChangeRequest::Cb); },
                     [this](Napi::Env env, Napi::Promise::Deferred& d) { return UsableAsLeader(env, d, "membership change"); });
}

Napi::Value Engine::Transfer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  raft_id id = static_cast<raft_id>(info[0].As<Napi::Number>().DoubleValue());
  auto* request = new TransferRequest(env);
  std::unique_ptr<TransferRequest> owner(request);
  request->engine = this;
  request->req.data = request;
  Napi::Value promise = request->deferred.Promise();
  if (!Usable(env, request->deferred)) return promise;
  int rv = raft_transfer(&raft_, &request->req, id, &TransferRequest::Cb);
  if (rv != 0) {
    request->deferred.Reject(EngineError(env, rv, "transfer leadership").Value());
    return promise;
  }
  owner.release();
  return promise;
}

Napi::Value Engine::SetSnapshotThreshold(const Napi::CallbackInfo& info) {
  if (started_ && !closing_) {
    raft_set_snapshot_threshold(&raft_, static_cast<unsigned>(info[0].As<Napi::Number>().DoubleValue()));
  }
  return info.Env().Undefined();
}

Napi::Value Engine::Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  if (!started_ || closing_) {
    out.Set("state", Napi::String::New(env, closed_ ? "closed" : closing_ ? "closing" : "unstarted"));
    return out;
  }
  auto n = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  const int state = raft_state(&raft_);
  raft_id leader = 0;
  const char* leader_address = nullptr;
  raft_leader(&raft_, &leader, &leader_address);
  out.Set("state", Napi::String::New(env, StateName(state)));
  out.Set("term", n(raft_current_term(&raft_)));
  out.Set("leaderId", n(leader));
  out.Set("leaderAddress", leader != 0 && leader_address != nullptr ? Napi::Value(Napi::String::New(env, leader_address))
                                                                     : env.Null());
  out.Set("commitIndex", n(raft_commit_index(&raft_)));
  out.Set("appliedIndex", n(raft_last_applied(&raft_)));
  out.Set("lastIndex", n(raft_last_index(&raft_)));
  out.Set("snapshotIndex", n(prevail_snapshot_index(&raft_)));
  out.Set("snapshotTerm", n(prevail_snapshot_term(&raft_)));
  auto members = Napi::Array::New(env, raft_.configuration.n);
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    const struct raft_server& server = raft_.configuration.servers[i];
    auto member = Napi::Object::New(env);
    member.Set("id", n(server.id));
    member.Set("address", Napi::String::New(env, server.address));
    member.Set("role", Napi::String::New(env, RoleName(server.role)));
    raft_index match = 0;
    if (state == RAFT_LEADER && raft_match_index(&raft_, server.id, &match) == 0) {
      member.Set("matchIndex", n(server.id == raft_.id ? raft_last_index(&raft_) : match));
    }
    members.Set(i, member);
  }
  out.Set("members", members);
  return out;
}

// ---- loop integration and shutdown ---------------------------------------------------

void Engine::OnCheck() {
  bool state_changed = false;
  int state = 0;
  raft_id leader = 0;
  raft_term term = 0;
  const char* leader_address = nullptr;
  if (started_ && !closing_) {
    state = raft_state(&raft_);
    raft_leader(&raft_, &leader, &leader_address);
    term = raft_current_term(&raft_);
    state_changed = state != reported_state_ || leader != reported_leader_ || term != reported_term_;
  }
  const bool report_fatal = failed_ && !fatal_reported_ && started_;
  if (completions_.empty() && !state_changed && !report_fatal) return;

  Napi::HandleScope scope(env_);
  napi_callback_scope callback_scope = nullptr;
  napi_open_callback_scope(env_, Value(), async_context_, &callback_scope);
  std::vector<std::unique_ptr<Completion>> batch;
  batch.swap(completions_);
  bool teardown = false;
  if (report_fatal) {
    // First, so JS knows the node has stopped before the requests it fails settle.
    fatal_reported_ = true;
    if (fatal_fn_.IsEmpty()) {
      napi_fatal_exception(env_, fatal_error_.Get());
    } else {
      try {
        fatal_fn_.Call({fatal_error_.Get()});
      } catch (const Napi::Error& err) {
        napi_fatal_exception(env_, err.Value());
      }
    }
  }
  for (auto& completion : batch) {
    try {
      completion->Settle(env_);
    } catch (const Napi::Error& err) {
      napi_fatal_exception(env_, err.Value());
    }
    if (completion->IsClose()) teardown = true;
  }
  if (state_changed) {
    reported_state_ = state;
    reported_leader_ = leader;
    reported_term_ = term;
    try {
      state_fn_.Call({Napi::String::New(env_, StateName(state)), Napi::Number::New(env_, static_cast<double>(term)),
                      Napi::Number::New(env_, static_cast<double>(leader)),
                      leader != 0 && leader_address != nullptr ? Napi::Value(Napi::String::New(env_, leader_address))
                                                               : env_.Null()});
    } catch (const Napi::Error& err) {
      napi_fatal_exception(env_, err.Value());
    }
  }
  batch.clear();
  napi_close_callback_scope(env_, callback_scope);  // runs promise continuations
  if (completions_.empty() && idle_) uv_idle_stop(idle_.get());
  if (teardown) {
    TearDown();
    Unref();  // balances the Ref() taken when the engine started
  }
}

void Engine::OnRaftClosed(struct raft* r) {
  auto* self = static_cast<Engine*>(r->data);
  raft_uv_close(&self->io_);
  raft_uv_tcp_close(&self->transport_);
  self->raft_ready_ = self->io_ready_ = self->transport_ready_ = false;
  self->closed_ = true;
  self->pending_.clear();
  if (self->close_completion_) self->Enqueue(self->close_completion_.release());
}

void Engine::TearDown() {
  ReleaseHeldFrees();  // the engine has closed: libuv is done with those handles
  check_.reset();
  idle_.reset();
  apply_fn_.Reset();
  payloads_.Reset();
  snapshot_fn_.Reset();
  restore_fn_.Reset();
  state_fn_.Reset();
  fatal_fn_.Reset();
  last_fsm_exception_.Reset();
}

Napi::Value Engine::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!started_ || closing_) {
    return Rejected(env, CodedError(env, "PREVAIL_CLOSED", "the node is already closed"));
  }
  closing_ = true;
  auto* request = new CloseRequest(env);
  request->engine = this;
  close_completion_.reset(request);
  Napi::Value promise = request->deferred.Promise();
  // Fails every pending request synchronously (settled from the check handle).
  raft_close(&raft_, &Engine::OnRaftClosed);
  return promise;
}

}  // namespace prevail

// The Raft engine on Node's own libuv loop, exposed to JS as the internal `Engine`
// class. lib/raft-node.ts wraps it in the public, typed RaftNode.
#pragma once
#include <napi.h>
#include "raft_c.h"
#include <uv.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "payload_slab.h"
#include "uv_handle.h"

namespace prevail {

class Engine;

// Keeps any JS value alive across loop turns. N-API (before version 10) can only
// reference objects, so a value is held inside a one-property box object.
class Held {
 public:
  void Set(Napi::Value value) {
    Napi::Object box = Napi::Object::New(value.Env());
    box.Set("v", value);
    box_ = Napi::Persistent(box);
  }
  Napi::Value Get() const { return box_.Value().Get("v"); }
  bool IsEmpty() const { return box_.IsEmpty(); }
  void Reset() { box_.Reset(); }

 private:
  Napi::ObjectReference box_;
};

// A request whose completion arrives from the engine inside a libuv callback. It is
// queued there and settled later from the check phase, inside a callback scope, so
// that promise continuations never run in the middle of the engine's own callbacks.
struct Completion {
  explicit Completion(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  virtual ~Completion() = default;
  virtual void Settle(Napi::Env env) = 0;
  virtual bool IsClose() const { return false; }
  Napi::Promise::Deferred deferred;
  int status = 0;
  Engine* engine = nullptr;
};

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

  // Used by completions and engine callbacks.
  void Enqueue(Completion* completion);
  Napi::Error EngineError(Napi::Env env, int rv, const std::string& what);
  // Whether a request at `index` falls at or after an entry this replica failed to apply.
  bool FailedAt(raft_index index) const;
  Napi::Value FatalError(Napi::Env env) const;

 private:
  // JS-facing methods.
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Apply(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Assign(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Transfer(const Napi::CallbackInfo& info);
  Napi::Value Status(const Napi::CallbackInfo& info);
  Napi::Value SetSnapshotThreshold(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // Engine (FSM) callbacks; they run on the JS thread.
  static int FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result);
  static int FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs);
  static int FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs);
  static int FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf);
  static void OnRaftClosed(struct raft* r);
  // Wraps the TCP transport's listen; see "the engine's heap" in engine.cc.
  static int TransportListen(struct raft_uv_transport* t, raft_uv_accept_cb cb);
  void ReleaseHeldFrees();

  Napi::Value CallFsm(const Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args);
  void OnCheck();
  bool Usable(Napi::Env env, Napi::Promise::Deferred& deferred);
  // Usable, and this node leads: the engine asserts leadership in membership changes.
  bool UsableAsLeader(Napi::Env env, Napi::Promise::Deferred& deferred, const char* what);
  void TearDown();  // closes our own handles once the engine is closed
  // This replica can't apply an entry (the FSM threw): it stops applying (see FsmApply).
  void Fail(Napi::Value error, raft_index index);

  Napi::Env env_;
  Napi::FunctionReference apply_fn_;
  Napi::FunctionReference snapshot_fn_;
  Napi::FunctionReference restore_fn_;
  Napi::FunctionReference state_fn_;
  Napi::FunctionReference fatal_fn_;  // optional: told once when this replica can't apply an entry
  napi_async_context async_context_ = nullptr;

  uv_loop_t* loop_ = nullptr;
  struct raft raft_ {};
  struct raft_io io_ {};
  struct raft_uv_transport transport_ {};
  struct raft_fsm fsm_ {};
  bool transport_ready_ = false;
  bool io_ready_ = false;
  bool raft_ready_ = false;  // raft_init succeeded: raft_close is needed
  bool started_ = false;     // raft_start succeeded
  bool closing_ = false;
  bool closed_ = false;
  bool in_fsm_ = false;  // an FSM callback is running (see CallFsm)
  // Engine memory freed during a failed listen, released once the engine has closed.
  std::vector<void*> held_frees_;
  std::string address_;
  std::string last_fsm_error_;
  Held last_fsm_exception_;
  // Set once an entry failed to apply: from then on no entry reaches JS, no snapshot is
  // taken, and requests at or after failed_index_ reject with fatal_error_.
  bool failed_ = false;
  bool fatal_reported_ = false;
  raft_index failed_index_ = 0;
  Held fatal_error_;

  UvHandlePtr<uv_check_t> check_;
  UvHandlePtr<uv_idle_t> idle_;
  std::vector<std::unique_ptr<Completion>> completions_;
  std::unique_ptr<Completion> close_completion_;

  // Proposals of this process by log index; only these get a result kept.
  std::unordered_map<raft_index, struct ApplyRequest*> pending_;
  // Where applied payloads are copied for JS (see payload_slab.h).
  PayloadSlab payloads_;
  // Keeps the JS buffers of the snapshot being written alive until finalize.
  std::vector<Held> snapshot_refs_;

  // Last role/leader/term reported to JS, to emit changes.
  int reported_state_ = -1;
  raft_id reported_leader_ = 0;
  raft_term reported_term_ = 0;

  friend struct ApplyRequest;
  friend struct TransferRequest;
};

}  // namespace prevail

// The Raft engine on Node's own libuv loop, exposed to JS as the internal `Engine`
// class (declared in lib/engine/native.ts); lib/engine/raft-node.ts wraps it in the public
// RaftNode. Its parts: engine.cc (the JS methods), engine_start.cc (start), fsm.cc (the engine's
// FSM callbacks), engine_loop.cc (the check phase and shutdown).
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "completion_queue.h"
#include "errors.h"
#include "held.h"
#include "listen_heap.h"
#include "payload_slab.h"
#include "raft_c.h"
#include "stream_transport.h"

namespace prevail {

struct ApplyRequest;
struct StartOptions;
struct Member;

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

  // Used by requests.
  void Enqueue(Completion* completion) { queue_.Push(completion); }
  Napi::Error EngineError(Napi::Env env, int rv, const std::string& what);
  // Whether a request at `index` falls at or after an entry this replica failed to apply.
  bool FailedAt(raft_index index) const { return failed_ && index >= failed_index_; }
  Napi::Value FatalError(Napi::Env env) const;
  void ForgetPending(raft_index index) { pending_.erase(index); }
  raft_id LeaderId();

 private:
  // A step of start() that failed: the engine's return value, the step, its details.
  struct StartFailure {
    int rv;
    const char* what;
    std::string detail;
  };

  using JsMethod = Napi::Value (Engine::*)(const Napi::CallbackInfo&);
  // The JS method `Sig.method`: `M`, once the arguments fit `Sig`.
  template <JsMethod M, const Signature& Sig>
  static PropertyDescriptor Method() {
    return InstanceMethod<&Engine::Checked<M, Sig>>(Sig.method);
  }
  // Checks the arguments against `Sig` before `M` sees them.
  template <JsMethod M, const Signature& Sig>
  Napi::Value Checked(const Napi::CallbackInfo& info) {
    if (std::optional<Napi::Error> error = ArgumentError(info, Sig)) {
      if (Sig.async) return Rejected(info.Env(), *error);
      throw *error;
    }
    return (this->*M)(info);
  }

  // JS methods (engine.cc, and Start in engine_start.cc).
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Apply(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Assign(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Transfer(const Napi::CallbackInfo& info);
  Napi::Value Status(const Napi::CallbackInfo& info);
  Napi::Value RefusesCommands(const Napi::CallbackInfo& info);
  Napi::Value Leads(const Napi::CallbackInfo& info);
  Napi::Value SetSnapshotThreshold(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  // The stream transport's JS side (stream_transport.h), in engine_streams.cc.
  Napi::Value Accept(const Napi::CallbackInfo& info);
  Napi::Value Connected(const Napi::CallbackInfo& info);
  Napi::Value ConnectFailed(const Napi::CallbackInfo& info);
  void ReportConnects();

  bool Usable(Napi::Env env, Napi::Promise::Deferred& deferred);
  // Usable, and this node leads: the engine asserts leadership in membership changes.
  bool UsableAsLeader(Napi::Env env, Napi::Promise::Deferred& deferred);
  // The promise of `request`, which the engine accepted if `rv` is 0 (and now owns).
  template <typename R>
  Napi::Value Submitted(std::unique_ptr<R> request, int rv, const char* what);
  template <typename R, typename Call>
  Napi::Value Change(Napi::Env env, const char* what, Call call);

  // start() in steps (engine_start.cc).
  bool AttachToLoop(Napi::Env env);
  std::optional<StartFailure> InitIo(const StartOptions& options);
  std::optional<StartFailure> InitRaft(const StartOptions& options);
  std::optional<StartFailure> Bootstrap(const std::vector<Member>& members);
  std::optional<StartFailure> Recover();
  Napi::Error StartError(Napi::Env env, const StartFailure& failure);
  Napi::Value AbandonStart(Napi::Env env, Napi::Value error);

  // The engine's FSM callbacks (fsm.cc); they run on the JS thread.
  static int FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result);
  static int FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs);
  static int FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[],
                                 unsigned* n_bufs);
  static int FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf);
  Napi::Value CallFsm(const Napi::FunctionReference& fn,
                      const std::initializer_list<napi_value>& args);
  // This replica can't apply an entry (the FSM threw): it stops applying (see FsmApply).
  void Fail(Napi::Value error, raft_index index);

  // The check phase and shutdown (engine_loop.cc).
  struct StateReport {
    bool changed = false;
    int state = 0;
    raft_id leader = 0;
    raft_term term = 0;
    const char* leader_address = nullptr;
  };
  void OnCheck();
  StateReport ReadState() const;
  void ReportFatal();
  void ReportState(const StateReport& report);
  static bool SettleAll(Napi::Env env, Batch& batch);  // true if the batch closed the engine
  static void OnRaftClosed(struct raft* r);
  void TearDown();  // closes our own handles once the engine is closed

  Napi::Env env_;
  Napi::FunctionReference apply_fn_;
  Napi::FunctionReference snapshot_fn_;
  Napi::FunctionReference restore_fn_;
  Napi::FunctionReference state_fn_;
  Napi::FunctionReference fatal_fn_;  // optional: told once when this replica can't apply an entry
  Napi::FunctionReference
      connect_fn_;  // with the stream transport: asked to connect(token, id, address)
  napi_async_context async_context_ = nullptr;

  uv_loop_t* loop_ = nullptr;
  struct raft raft_ {};
  struct raft_io io_ {};
  // The disk backend's own start(), called by StartWithTick with the period we choose.
  int (*uv_start_)(struct raft_io*, unsigned, raft_io_tick_cb, raft_io_recv_cb) = nullptr;
  unsigned tick_ms_ = 0;
  static int StartWithTick(struct raft_io* io, unsigned, raft_io_tick_cb tick,
                           raft_io_recv_cb recv);
  struct raft_uv_transport transport_ {};
  // Used instead of the engine's TCP transport when start() is given transport: 'streams'.
  StreamTransport streams_;
  bool tcp_transport_ = true;
  struct raft_fsm fsm_ {};
  bool transport_ready_ = false;
  bool io_ready_ = false;
  bool raft_ready_ = false;  // raft_init succeeded: raft_close is needed
  bool started_ = false;     // raft_start succeeded
  bool closing_ = false;
  bool closed_ = false;
  bool in_fsm_ = false;   // an FSM callback is running (see CallFsm)
  HeldFrees held_frees_;  // see listen_heap.h
  std::string address_;
  std::string last_fsm_error_;
  Held last_fsm_exception_;
  // Set once an entry failed to apply: from then on no entry reaches JS, no snapshot is
  // taken, and requests at or after failed_index_ reject with fatal_error_.
  bool failed_ = false;
  bool fatal_reported_ = false;
  raft_index failed_index_ = 0;
  Held fatal_error_;

  CompletionQueue queue_;
  std::unique_ptr<Completion> close_completion_;

  // Proposals of this process by log index; only these get a result kept.
  std::unordered_map<raft_index, ApplyRequest*> pending_;
  // Where applied payloads are copied for JS (see payload_slab.h).
  PayloadSlab payloads_;
  // Keeps the JS buffers of the snapshot being written alive until finalize.
  std::vector<Held> snapshot_refs_;

  // Last role/leader/term reported to JS, to emit changes.
  int reported_state_ = -1;
  raft_id reported_leader_ = 0;
  raft_term reported_term_ = 0;
};

}  // namespace prevail

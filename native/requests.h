// The engine's requests, each with the promise it settles. A request is owned by a
// unique_ptr until the engine accepts it (Engine::Submitted), by the engine until its
// callback, and by the completion queue until it is settled.
#pragma once
#include <napi.h>

#include <memory>

#include "completion_queue.h"
#include "held.h"
#include "raft_c.h"

namespace prevail {

// A new request of `engine`, its raft request pointing back at it.
template <typename R>
std::unique_ptr<R> NewRequest(Napi::Env env, Engine* engine) {
  auto request = std::make_unique<R>(env, engine);
  request->req.data = request.get();
  return request;
}

struct ApplyRequest : Completion {
  using Completion::Completion;
  static void Cb(struct raft_apply* req, int status, void* result);
  void Settle(Napi::Env env) override;
  struct raft_apply req {};
  raft_index index = 0;
  bool fired = false;
  Held result;
};

struct BarrierRequest : Completion {
  using Completion::Completion;
  static void Cb(struct raft_barrier* req, int status);
  void Settle(Napi::Env env) override;
  struct raft_barrier req {};
};

struct ChangeRequest : Completion {
  using Completion::Completion;
  static void Cb(struct raft_change* req, int status);
  void Settle(Napi::Env env) override;
  struct raft_change req {};
  const char* what = "change";
};

struct TransferRequest : Completion {
  using Completion::Completion;
  static void Cb(struct raft_transfer* req);
  void Settle(Napi::Env env) override;
  struct raft_transfer req {};
  raft_id leader = 0;
};

// Settles close(), or a start() that failed after the engine was initialised (the
// engine must be closed before its port and files are free again).
struct CloseRequest : Completion {
  using Completion::Completion;
  bool IsClose() const override { return true; }
  void Settle(Napi::Env env) override;
  Held error;
};

}  // namespace prevail

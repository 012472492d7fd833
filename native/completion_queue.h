// The "settle later" queue. A request's completion arrives from the engine inside a
// libuv callback; settling its promise there would run continuations in the middle of
// the engine's own callbacks. So it is queued, and the owner settles the queue from a
// uv_check handle (after poll, once the engine has returned), inside a callback scope.
// A uv_idle handle, active only while something is queued, keeps poll from blocking.
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "uv_handle.h"

namespace prevail {

class Engine;

struct Completion {
  Completion(Napi::Env env, Engine* owner)
      : deferred(Napi::Promise::Deferred::New(env)), engine(owner) {}
  virtual ~Completion() = default;
  virtual void Settle(Napi::Env env) = 0;
  // Settling it ends the engine: its owner tears down after the batch.
  virtual bool IsClose() const { return false; }
  Napi::Promise::Deferred deferred;
  int status = 0;
  Engine* const engine;
};

using Batch = std::vector<std::unique_ptr<Completion>>;

class CompletionQueue {
 public:
  using CheckCallback = void (*)(void* owner);
  // Calls `on_check(owner)` from every check phase. The check handle is unreferenced: it
  // must not keep the process alive by itself.
  void Open(uv_loop_t* loop, void* owner, CheckCallback on_check);
  void Close();  // closes the handles
  // Takes ownership; settled in this loop iteration.
  void Push(Completion* completion);
  // Makes this loop iteration reach the check phase without blocking in poll.
  void Wake();
  // Stops waking the loop once nothing is queued.
  void SleepIfIdle();
  bool Empty() const { return items_.empty(); }
  Batch TakeAll();

 private:
  UvHandlePtr<uv_check_t> check_;
  UvHandlePtr<uv_idle_t> idle_;
  void* owner_ = nullptr;
  CheckCallback on_check_ = nullptr;
  Batch items_;
};

}  // namespace prevail

// RAII for a callback scope: JS called from a raw libuv callback runs as if from an
// async callback of `resource`, and closing the scope drains the microtask queue
// (promise continuations run then, outside the engine's own callbacks).
#pragma once
#include <napi.h>

namespace prevail {

class AsyncScope {
 public:
  AsyncScope(Napi::Env env, Napi::Object resource, napi_async_context context) : env_(env) {
    napi_open_callback_scope(env_, resource, context, &scope_);
  }
  ~AsyncScope() { napi_close_callback_scope(env_, scope_); }
  AsyncScope(const AsyncScope&) = delete;
  AsyncScope& operator=(const AsyncScope&) = delete;

 private:
  Napi::Env env_;
  napi_callback_scope scope_ = nullptr;
};

}  // namespace prevail

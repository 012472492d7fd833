// The addon's only export surface: the internal Engine class and version facts.
#include <napi.h>
#include "raft_c.h"
#include <uv.h>

#include "engine.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", prevail::Engine::Define(env));
  // uv_version_string resolves against the node binary: it equals process.versions.uv
  // only if there is exactly one libuv in the process (tested).
  exports.Set("uvVersion", Napi::String::New(env, uv_version_string()));
  exports.Set("raftVersion", Napi::Number::New(env, raft_version_number()));
  return exports;
}

}  // namespace

NODE_API_MODULE(prevail, Init)

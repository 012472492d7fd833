// The addon's only export surface (declared in lib/engine/native.ts): the internal Engine class,
// the error codes' hand-over, the framing constants, and version facts.
#include <napi.h>
#include <uv.h>

#include "engine.h"
#include "errors.h"
#include "framing.h"
#include "raft_c.h"

namespace {

// setErrorCodes(ErrorCodes): lib/engine/native.ts hands over lib/core/errors.ts's table at load.
Napi::Value SetErrorCodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, "setErrorCodes(table) needs an object");
  prevail::SetErrorCodes(env, info[0].As<Napi::Object>());
  return env.Undefined();
}

// The framing constants (framing.h is their one home), for the readers in lib/format/framing.ts.
Napi::Object Framing(Napi::Env env) {
  Napi::Object framing = Napi::Object::New(env);
  framing.Set("entryMagic", Napi::Number::New(env, prevail::kEntryMagic));
  framing.Set("snapshotMagic", Napi::Number::New(env, prevail::kSnapshotMagic));
  framing.Set("snapshotHeaderFormat", Napi::Number::New(env, prevail::kSnapshotFormat));
  framing.Set("headerBytes", Napi::Number::New(env, static_cast<double>(prevail::kHeaderSize)));
  return framing;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", prevail::Engine::Define(env));
  exports.Set("setErrorCodes", Napi::Function::New<SetErrorCodes>(env, "setErrorCodes"));
  // uv_version_string resolves against the node binary: it equals process.versions.uv
  // only if there is exactly one libuv in the process (tested).
  exports.Set("uvVersion", Napi::String::New(env, uv_version_string()));
  exports.Set("raftVersion", Napi::Number::New(env, raft_version_number()));
  exports.Set("framing", Framing(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(prevail, Init)

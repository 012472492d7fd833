#include "errors.h"

#include <array>

#include "names.h"

namespace prevail {

namespace {

constexpr size_t kCodeCount = static_cast<size_t>(Code::kTooLarge) + 1;

// In the order of Code.
constexpr std::array<const char*, kCodeCount> kKeys = {
    "INVALID_ARGUMENT", "INVALID_STATE",       "CLOSED",        "REENTRANT",
    "ENGINE",           "SNAPSHOT_UNREADABLE", "CORRUPT_ENTRY", "TOO_LARGE",
};

// Per environment (a worker thread loads its own copy of the table).
struct ErrorCodeTable {
  std::array<std::string, kCodeCount> codes;
};

}  // namespace

void SetErrorCodes(Napi::Env env, Napi::Object table) {
  ErrorCodeTable loaded;
  for (size_t i = 0; i < kCodeCount; i++) {
    Napi::Value code = table.Get(kKeys[i]);
    if (!code.IsString())
      throw Napi::TypeError::New(env, std::string("setErrorCodes: no code for ") + kKeys[i]);
    loaded.codes[i] = code.As<Napi::String>().Utf8Value();
  }
  // Replaced in place: N-API does not finalize instance data that is set again.
  ErrorCodeTable* current = env.GetInstanceData<ErrorCodeTable>();
  if (current != nullptr) {
    *current = std::move(loaded);
  } else {
    env.SetInstanceData(new ErrorCodeTable(std::move(loaded)));  // freed with the environment
  }
}

bool HaveErrorCodes(Napi::Env env) { return env.GetInstanceData<ErrorCodeTable>() != nullptr; }

Napi::Error CodedError(Napi::Env env, Code code, const std::string& message) {
  const ErrorCodeTable* table = env.GetInstanceData<ErrorCodeTable>();
  Napi::Error err = Napi::Error::New(env, message);
  // Without a table (the addon loaded around lib/engine/native.ts) the error still says what went
  // wrong.
  if (table != nullptr)
    err.Set("code", Napi::String::New(env, table->codes[static_cast<size_t>(code)]));
  return err;
}

Napi::Error RaftError(Napi::Env env, Code code, int rv, const std::string& message) {
  Napi::Error err = CodedError(env, code, message);
  err.Set("raftCode", Napi::Number::New(env, rv));
  err.Set("raftName", Napi::String::New(env, RaftCodeName(rv)));
  return err;
}

Napi::Value Rejected(Napi::Env env, const Napi::Error& error) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error.Value());
  return deferred.Promise();
}

}  // namespace prevail

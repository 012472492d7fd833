// Coded errors. Their identity belongs to JS: lib/engine/native.ts hands the addon the ErrorCodes
// table of lib/core/errors.ts at load (setErrorCodes), and C++ names a code only by its key.
#pragma once
#include <napi.h>

#include <string>

namespace prevail {

// The codes the addon raises; each is the ErrorCodes entry of the same key.
enum class Code {
  kInvalidArgument,
  kInvalidState,
  kClosed,
  kReentrant,
  kEngine,
  kSnapshotUnreadable,
  kCorruptEntry,
  kTooLarge
};

// Takes the codes from `table` (ErrorCodes); throws if one of the keys is missing.
void SetErrorCodes(Napi::Env env, Napi::Object table);
bool HaveErrorCodes(Napi::Env env);

Napi::Error CodedError(Napi::Env env, Code code, const std::string& message);
// A coded error the engine's return value `rv` caused: it carries raftCode and raftName.
Napi::Error RaftError(Napi::Env env, Code code, int rv, const std::string& message);

// A promise already rejected with `error`.
Napi::Value Rejected(Napi::Env env, const Napi::Error& error);

}  // namespace prevail

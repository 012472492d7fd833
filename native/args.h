// Declarative argument checks for the addon's JS methods: each method states its
// parameters once, and a call that does not fit gets a coded error, never an unchecked cast.
#pragma once
#include <napi.h>

#include <cstddef>
#include <optional>

namespace prevail {

enum class ArgType {
  kUint,  // a non-negative integer a double holds exactly (an id, a count)
  kString,
  kObject,
  kBytes,  // a Uint8Array (a Buffer is one)
};

struct Param {
  ArgType type;
  const char* requirement;  // the error message when the argument does not fit
};

struct Signature {
  const char* method;
  bool async;  // returns a promise: a bad call rejects it instead of throwing
  size_t count;
  Param params[2];
};

// The INVALID_ARGUMENT error for a call that does not fit `sig`, if it does not.
std::optional<Napi::Error> ArgumentError(const Napi::CallbackInfo& info, const Signature& sig);

bool IsUint(Napi::Value value);

// The bytes of a Uint8Array, or false if `value` is not one.
bool GetBytes(Napi::Value value, const uint8_t** data, size_t* len);

}  // namespace prevail

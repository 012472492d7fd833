#include "args.h"

#include <cmath>
#include <string>

#include "errors.h"

namespace prevail {

namespace {

bool Fits(Napi::Value value, ArgType type) {
  const uint8_t* data;
  size_t len;
  switch (type) {
    case ArgType::kUint: return IsUint(value);
    case ArgType::kString: return value.IsString();
    case ArgType::kObject: return value.IsObject();
    case ArgType::kBytes: return GetBytes(value, &data, &len);
  }
  return false;
}

}  // namespace

std::optional<Napi::Error> ArgumentError(const Napi::CallbackInfo& info, const Signature& sig) {
  Napi::Env env = info.Env();
  if (info.Length() > sig.count) {
    return CodedError(
        env, Code::kInvalidArgument,
        std::string(sig.method) + "() takes " + std::to_string(sig.count) + " argument(s)");
  }
  // A missing argument is undefined, which fits no type.
  for (size_t i = 0; i < sig.count; i++) {
    if (!Fits(info[i], sig.params[i].type))
      return CodedError(env, Code::kInvalidArgument, sig.params[i].requirement);
  }
  return std::nullopt;
}

bool IsUint(Napi::Value value) {
  if (!value.IsNumber()) return false;
  const double n = value.As<Napi::Number>().DoubleValue();
  return n >= 0 && n <= 9007199254740991.0 && std::floor(n) == n;
}

bool GetBytes(Napi::Value value, const uint8_t** data, size_t* len) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    return false;
  auto bytes = value.As<Napi::Uint8Array>();
  *data = bytes.Data();
  *len = bytes.ByteLength();
  return true;
}

}  // namespace prevail

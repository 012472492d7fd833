// The stream transport's JS side (stream_transport.h): JS is asked to connect from the check
// phase, and hands verified connections to the engine. Each call returns JS's end of a
// socketpair as a file descriptor, or a negative libuv error code (UV_ECANCELED when the engine
// no longer wants the stream); JS then closes its connection.
#include "engine.h"

namespace prevail {

namespace {

raft_id IdArg(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<raft_id>(info[i].As<Napi::Number>().DoubleValue());
}

}  // namespace

Napi::Value Engine::Accept(const Napi::CallbackInfo& info) {
  const bool usable = started_ && !closing_ && !tcp_transport_;
  const int fd = usable ? streams_.Accept(IdArg(info, 0), info[1].As<Napi::String>().Utf8Value())
                        : UV_ECANCELED;
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Engine::Connected(const Napi::CallbackInfo& info) {
  const bool usable = !closed_ && !tcp_transport_;
  const int fd = usable ? streams_.Connected(static_cast<uint64_t>(IdArg(info, 0))) : UV_ECANCELED;
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Engine::ConnectFailed(const Napi::CallbackInfo& info) {
  if (!closed_ && !tcp_transport_) streams_.ConnectFailed(static_cast<uint64_t>(IdArg(info, 0)));
  return info.Env().Undefined();
}

}  // namespace prevail

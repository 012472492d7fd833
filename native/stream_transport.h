// A raft_uv_transport whose connections are made in JS (lib/engine/member-transport.ts: mutual TLS,
// each peer's id taken from its certificate) and handed to the engine as one end of a
// socketpair; JS copies bytes between the other end and the TLS socket. The engine then never
// sees a handshake it has to trust: the id and address of an accepted stream are the ones JS
// verified. go-dqlite proxies its TLS into the same engine family the same way.
//
// Outgoing: the engine's connect() is recorded under a token and reported to JS from the check
// phase (TakeNewConnects), never from inside the engine; JS answers with Connected(token) (a
// socketpair: the engine's end goes to the engine, JS gets the other fd) or ConnectFailed.
// Incoming: JS calls Accept(id, address) for a verified connection and gets its fd.
#pragma once
#include <uv.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft_c.h"

namespace prevail {

class StreamTransport {
 public:
  // A connect the engine asked for, not yet reported to JS.
  struct ConnectAsk {
    uint64_t token;
    raft_id id;
    std::string address;
  };

  StreamTransport() = default;
  StreamTransport(const StreamTransport&) = delete;
  StreamTransport& operator=(const StreamTransport&) = delete;

  // Fills `transport` to route through this object; `wake` makes the loop reach the check phase.
  void Install(struct raft_uv_transport* transport, uv_loop_t* loop, void (*wake)(void*),
               void* wake_arg);

  bool HasNewConnects() const { return !asks_.empty(); }
  std::vector<ConnectAsk> TakeNewConnects();

  // Each returns JS's end of a new socketpair, or a negative libuv error (UV_ECANCELED when the
  // engine no longer wants the stream: the token is unknown, or the transport is closed).
  int Accept(raft_id id, const std::string& address);
  int Connected(uint64_t token);
  void ConnectFailed(uint64_t token);

 private:
  static int OnInit(struct raft_uv_transport* t, raft_id id, const char* address);
  static int OnListen(struct raft_uv_transport* t, raft_uv_accept_cb cb);
  static int OnConnect(struct raft_uv_transport* t, struct raft_uv_connect* req, raft_id id,
                       const char* address, raft_uv_connect_cb cb);
  static void OnClose(struct raft_uv_transport* t, raft_uv_transport_close_cb cb);

  // A socketpair: the engine's end opened as a raft_malloc'd pipe handle in `*stream`.
  int Pair(struct uv_stream_s** stream);

  struct raft_uv_transport* transport_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  void (*wake_)(void*) = nullptr;
  void* wake_arg_ = nullptr;
  raft_uv_accept_cb accept_ = nullptr;
  bool closed_ = false;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, struct raft_uv_connect*> connecting_;
  std::vector<ConnectAsk> asks_;
};

}  // namespace prevail

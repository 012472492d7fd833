#include "stream_transport.h"

#include <unistd.h>

namespace prevail {

namespace {

StreamTransport* Self(struct raft_uv_transport* t) {
  return static_cast<StreamTransport*>(t->impl);
}

}  // namespace

void StreamTransport::Install(struct raft_uv_transport* transport, uv_loop_t* loop,
                              void (*wake)(void*), void* wake_arg) {
  transport_ = transport;
  loop_ = loop;
  wake_ = wake;
  wake_arg_ = wake_arg;
  transport->version = 1;
  transport->impl = this;
  transport->init = &StreamTransport::OnInit;
  transport->listen = &StreamTransport::OnListen;
  transport->connect = &StreamTransport::OnConnect;
  transport->close = &StreamTransport::OnClose;
}

int StreamTransport::OnInit(struct raft_uv_transport*, raft_id, const char*) { return 0; }

// Listening is JS's: it accepts (and verifies) connections and calls Accept.
int StreamTransport::OnListen(struct raft_uv_transport* t, raft_uv_accept_cb cb) {
  Self(t)->accept_ = cb;
  return 0;
}

int StreamTransport::OnConnect(struct raft_uv_transport* t, struct raft_uv_connect* req, raft_id id,
                               const char* address, raft_uv_connect_cb cb) {
  StreamTransport* self = Self(t);
  if (self->closed_) return RAFT_CANCELED;
  req->cb = cb;
  const uint64_t token = self->next_token_++;
  self->connecting_.emplace(token, req);
  self->asks_.push_back({token, id, address});
  self->wake_(self->wake_arg_);
  return 0;
}

// Stops accepting and cancels the connects in progress; their streams, if JS still makes them,
// are refused (Connected returns UV_ECANCELED and JS closes its end).
void StreamTransport::OnClose(struct raft_uv_transport* t, raft_uv_transport_close_cb cb) {
  StreamTransport* self = Self(t);
  self->closed_ = true;
  self->accept_ = nullptr;
  self->asks_.clear();
  auto connecting = std::move(self->connecting_);
  self->connecting_.clear();
  for (auto& [token, req] : connecting) req->cb(req, nullptr, RAFT_CANCELED);
  cb(t);
}

std::vector<StreamTransport::ConnectAsk> StreamTransport::TakeNewConnects() {
  std::vector<ConnectAsk> asks;
  asks.swap(asks_);
  return asks;
}

int StreamTransport::Pair(struct uv_stream_s** stream) {
  uv_os_sock_t fds[2];
  int rv = uv_socketpair(SOCK_STREAM, 0, fds, 0, 0);
  if (rv != 0) return rv;
  auto* pipe = static_cast<uv_pipe_t*>(raft_malloc(sizeof(uv_pipe_t)));
  if (pipe == nullptr) {
    close(fds[0]);
    close(fds[1]);
    return UV_ENOMEM;
  }
  uv_pipe_init(loop_, pipe, 0);
  rv = uv_pipe_open(pipe, fds[0]);
  if (rv != 0) {
    // The handle is initialised: it must be closed before its memory goes.
    uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* h) { raft_free(h); });
    close(fds[0]);
    close(fds[1]);
    return rv;
  }
  *stream = reinterpret_cast<struct uv_stream_s*>(pipe);
  return fds[1];
}

int StreamTransport::Accept(raft_id id, const std::string& address) {
  if (closed_ || accept_ == nullptr) return UV_ECANCELED;
  struct uv_stream_s* stream = nullptr;
  const int fd = Pair(&stream);
  if (fd < 0) return fd;
  accept_(transport_, id, address.c_str(), stream);  // the engine owns the stream now
  return fd;
}

int StreamTransport::Connected(uint64_t token) {
  auto it = connecting_.find(token);
  if (it == connecting_.end()) return UV_ECANCELED;
  struct raft_uv_connect* req = it->second;
  struct uv_stream_s* stream = nullptr;
  const int fd = Pair(&stream);
  connecting_.erase(it);
  if (fd < 0) {
    req->cb(req, nullptr, RAFT_NOCONNECTION);
    return fd;
  }
  req->cb(req, stream, 0);
  return fd;
}

void StreamTransport::ConnectFailed(uint64_t token) {
  auto it = connecting_.find(token);
  if (it == connecting_.end()) return;
  struct raft_uv_connect* req = it->second;
  connecting_.erase(it);
  req->cb(req, nullptr, RAFT_NOCONNECTION);
}

}  // namespace prevail

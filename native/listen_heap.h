// The engine's heap: a workaround for its failed-listen path.
//
// When bind/listen fails (e.g. the port is taken), raft 0.22.1's TCP transport
// (uvTcpListenOnMultipleIP) uv_close()s its listener handles and raft_free()s their
// memory right away, before libuv has finished closing them: libuv then reads and
// writes the freed handles in its closing phase (use-after-free, found by valgrind
// in scripts/leak-check.sh). The engine allocates through raft_heap, so the addon
// installs a heap that is plain malloc/free except that, while the transport's listen
// runs on this thread, frees are held back and released only after the engine has
// closed, when libuv is long done with them.
#pragma once
#include <vector>

#include "raft_c.h"

namespace prevail {

// Before any engine allocation; installing it again is harmless.
void InstallEngineHeap();

// Memory the engine freed during a failed listen; freed by Release() or on destruction.
class HeldFrees {
 public:
  HeldFrees() = default;
  HeldFrees(const HeldFrees&) = delete;
  HeldFrees& operator=(const HeldFrees&) = delete;
  ~HeldFrees() { Release(); }
  void Release();

 private:
  friend int ListenHoldingFrees(struct raft_uv_transport* t, raft_uv_accept_cb cb);
  std::vector<void*> ptrs_;
};

// raft_start(raft), with the listen of `transport` (raft's TCP transport) wrapped so that
// what a failed listen frees is kept in `held` instead.
int StartHoldingListenFrees(struct raft* raft, struct raft_uv_transport* transport,
                            HeldFrees* held);

}  // namespace prevail

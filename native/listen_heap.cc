#include "listen_heap.h"

#include <cstdlib>
#include <new>

namespace prevail {

namespace {

// A fixed buffer: the heap's free must not allocate.
struct ListenFrees {
  void* ptrs[16];
  size_t n = 0;
};
thread_local ListenFrees* t_listen_frees = nullptr;  // set while the engine's listen runs
thread_local HeldFrees* t_held = nullptr;            // set while raft_start runs
int (*tcp_listen)(struct raft_uv_transport* t, raft_uv_accept_cb cb) = nullptr;  // the engine's own

void* HeapMalloc(void*, size_t size) { return malloc(size); }
void HeapFree(void*, void* ptr) {
  ListenFrees* held = t_listen_frees;
  if (held != nullptr && ptr != nullptr && held->n < sizeof(held->ptrs) / sizeof(held->ptrs[0])) {
    held->ptrs[held->n++] = ptr;
  } else {
    free(ptr);
  }
}
void* HeapCalloc(void*, size_t n, size_t size) { return calloc(n, size); }
void* HeapRealloc(void*, void* ptr, size_t size) { return realloc(ptr, size); }
void* HeapAlignedAlloc(void*, size_t alignment, size_t size) {
  return aligned_alloc(alignment, size);
}
void HeapAlignedFree(void*, size_t, void* ptr) { free(ptr); }

struct raft_heap engine_heap = {nullptr,     HeapMalloc,       HeapFree,       HeapCalloc,
                                HeapRealloc, HeapAlignedAlloc, HeapAlignedFree};

}  // namespace

void InstallEngineHeap() { raft_heap_set(&engine_heap); }

void HeldFrees::Release() {
  for (void* ptr : ptrs_) free(ptr);
  ptrs_.clear();
}

int ListenHoldingFrees(struct raft_uv_transport* t, raft_uv_accept_cb cb) {
  HeldFrees* sink = t_held;
  if (sink == nullptr)
    return tcp_listen(t, cb);  // not expected: the engine listens only in raft_start
  ListenFrees held;
  t_listen_frees = &held;
  int rv = tcp_listen(t, cb);
  t_listen_frees = nullptr;
  if (rv == 0) {
    for (size_t i = 0; i < held.n; i++) free(held.ptrs[i]);  // nothing was closed: safe now
    return rv;
  }
  try {
    sink->ptrs_.insert(sink->ptrs_.end(), held.ptrs, held.ptrs + held.n);
  } catch (const std::bad_alloc&) {
    // Out of memory: leaking these few bytes beats a use-after-free.
  }
  return rv;
}

int StartHoldingListenFrees(struct raft* raft, struct raft_uv_transport* transport,
                            HeldFrees* held) {
  tcp_listen = transport->listen;  // the same function for every engine
  transport->listen = &ListenHoldingFrees;
  t_held = held;
  int rv = raft_start(raft);
  t_held = nullptr;
  return rv;
}

}  // namespace prevail

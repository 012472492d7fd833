// RAII for memory handed to or taken from the engine (raft_malloc/raft_free).
#pragma once
#include <memory>

#include "raft_c.h"

namespace prevail {

struct RaftFree {
  void operator()(void* ptr) const { raft_free(ptr); }
};

template <typename T>
using RaftPtr = std::unique_ptr<T, RaftFree>;

template <typename T>
RaftPtr<T> RaftAlloc(size_t count) {
  return RaftPtr<T>(static_cast<T*>(raft_malloc(sizeof(T) * count)));
}

}  // namespace prevail

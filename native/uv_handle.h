// RAII for libuv handles: a unique_ptr whose deleter hands the handle to uv_close and
// frees it in the close callback, as libuv requires (the memory must outlive uv_close).
#pragma once
#include <uv.h>

#include <memory>

namespace prevail {

template <typename T>
struct UvHandleCloser {
  void operator()(T* handle) const {
    uv_close(reinterpret_cast<uv_handle_t*>(handle),
             [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
  }
};

template <typename T>
using UvHandlePtr = std::unique_ptr<T, UvHandleCloser<T>>;

}  // namespace prevail

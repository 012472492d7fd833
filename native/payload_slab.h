// Copies of applied entries' payloads for JS, carved out of shared slabs.
//
// Why: every ArrayBuffer that owns its bytes counts towards V8's external memory, and once
// that is above its limit (a large store holds a long tail of applied entries and ~100 MB of
// capture frames) V8 runs an incremental-marking step of 5-10 ms inside *each* such
// allocation. With one new buffer per applied entry, a loop turn applying a few dozen
// entries then spent hundreds of milliseconds marking (docs/benchmarks.md, "One node
// alone"). Views into a 64 KiB slab make that one step per slab. Like Node's own Buffer
// pool, a view keeps its whole slab alive; larger payloads get a buffer of their own.
#pragma once
#include <napi.h>

#include <cstdint>
#include <cstring>

namespace prevail {

class PayloadSlab {
 public:
  static constexpr size_t kSlabBytes = 64 * 1024;
  static constexpr size_t kMaxPooledBytes = 4 * 1024;

  Napi::Uint8Array Copy(Napi::Env env, const uint8_t* data, size_t length) {
    if (length > kMaxPooledBytes) {
      Napi::ArrayBuffer own = Napi::ArrayBuffer::New(env, length);
      if (length > 0) std::memcpy(own.Data(), data, length);
      return Napi::Uint8Array::New(env, length, own, 0);
    }
    if (slab_.IsEmpty() || used_ + length > kSlabBytes) {
      Napi::ArrayBuffer fresh = Napi::ArrayBuffer::New(env, kSlabBytes);
      slab_ = Napi::Persistent(fresh);
      base_ = static_cast<uint8_t*>(fresh.Data());
      used_ = 0;
    }
    if (length > 0) std::memcpy(base_ + used_, data, length);
    Napi::Uint8Array view = Napi::Uint8Array::New(env, length, slab_.Value(), used_);
    used_ += (length + 7) & ~size_t{7};  // 8-aligned, like the entries they come from
    return view;
  }

  void Reset() {
    slab_.Reset();
    base_ = nullptr;
    used_ = 0;
  }

 private:
  Napi::Reference<Napi::ArrayBuffer> slab_;
  uint8_t* base_ = nullptr;  // the slab's bytes; they don't move while slab_ holds it
  size_t used_ = 0;
};

}  // namespace prevail

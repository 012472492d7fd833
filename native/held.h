// Keeps any JS value alive across loop turns.
#pragma once
#include <napi.h>

namespace prevail {

// N-API (before version 10) can only reference objects, so a value is held inside a
// one-property box object.
class Held {
 public:
  void Set(Napi::Value value) {
    Napi::Object box = Napi::Object::New(value.Env());
    box.Set("v", value);
    box_ = Napi::Persistent(box);
  }
  Napi::Value Get() const { return box_.Value().Get("v"); }
  bool IsEmpty() const { return box_.IsEmpty(); }
  void Reset() { box_.Reset(); }

 private:
  Napi::ObjectReference box_;
};

}  // namespace prevail

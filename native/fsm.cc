// The engine's FSM callbacks: they frame and unframe payloads (framing.h) and call the
// JS callbacks on the JS thread, inside their own handle scope.
#include <string>

#include "engine.h"
#include "framing.h"
#include "raft_memory.h"
#include "requests.h"

namespace prevail {

namespace {

Napi::Number IndexNumber(Napi::Env env, uint64_t v) {
  return Napi::Number::New(env, static_cast<double>(v));
}

// The parts fsm.snapshot() returned: one Uint8Array or an array of them.
std::vector<Napi::Value> SnapshotParts(Napi::Value value) {
  std::vector<Napi::Value> parts;
  if (!value.IsArray()) return {value};
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) parts.push_back(array.Get(i));
  return parts;
}

// The length of all `parts`, or false if one is not a Uint8Array.
bool TotalLength(const std::vector<Napi::Value>& parts, uint64_t* total) {
  for (const Napi::Value& part : parts) {
    const uint8_t* data;
    size_t len;
    if (!GetBytes(part, &data, &len)) return false;
    *total += len;
  }
  return true;
}

// The buffers of a snapshot: its header (allocated here), then `parts` themselves. No
// copy: the engine writes these bytes on the threadpool; the adapter's contract is to
// never mutate them afterwards. Null when out of memory.
RaftPtr<struct raft_buffer> FrameSnapshot(const std::vector<Napi::Value>& parts, uint64_t total) {
  RaftPtr<struct raft_buffer> out = RaftAlloc<struct raft_buffer>(parts.size() + 1);
  RaftPtr<uint8_t> header = RaftAlloc<uint8_t>(kHeaderSize);
  if (!out || !header) return nullptr;
  EncodeSnapshotHeader(header.get(), total);
  out.get()[0] = {header.release(), kHeaderSize};  // freed in finalize
  for (size_t i = 0; i < parts.size(); i++) {
    const uint8_t* data;
    size_t len;
    GetBytes(parts[i], &data, &len);
    out.get()[i + 1] = {const_cast<uint8_t*>(data), len};
  }
  return out;
}

}  // namespace

// An entry this replica can't apply stops it: skipping the entry would let it diverge
// silently. raft 0.22.1 asserts (aborts the process) when the FSM fails inside a timer or
// a received message, so once started the failure is recorded (Fail), the entry and every
// later one are acknowledged without reaching JS, and the node is closed from JS (told
// from the check phase). During raft_start the engine stops at the failure, and Start
// rejects with the error.
int Engine::FsmApply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  auto* self = static_cast<Engine*>(fsm->data);
  *result = nullptr;
  const int stop = self->started_ ? 0 : RAFT_INVALID;
  if (self->failed_) return stop;
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  const raft_index index = raft_last_applied(&self->raft_) + 1;
  EntryView entry;
  if (!DecodeEntry(static_cast<const uint8_t*>(buf->base), buf->len, &entry)) {
    Napi::Error err = CodedError(env, Code::kCorruptEntry,
                                 "entry " + std::to_string(index) + " is not a prevail entry");
    err.Set("index", IndexNumber(env, index));
    self->Fail(err.Value(), index);
    return stop;
  }
  auto it = self->pending_.find(index);
  ApplyRequest* mine = it != self->pending_.end() ? it->second : nullptr;
  // A copy (the engine frees the entry's memory later, and JS may keep the bytes), carved
  // out of a shared slab: see payload_slab.h for why not one buffer per entry.
  auto payload = self->payloads_.Copy(env, entry.payload, entry.length);
  try {
    Napi::Value value = self->CallFsm(
        self->apply_fn_, {payload, IndexNumber(env, index), IndexNumber(env, entry.term),
                          Napi::Boolean::New(env, mine != nullptr)});
    if (mine != nullptr) mine->result.Set(value);
  } catch (const Napi::Error& err) {
    // The JS adapter turns handler errors into results; an error here is fatal (an entry
    // this code can't apply, or the adapter itself failed).
    self->Fail(err.Value(), index);
    return stop;
  }
  return 0;
}

void Engine::Fail(Napi::Value error, raft_index index) {
  if (failed_) return;
  failed_ = true;
  failed_index_ = index;
  fatal_error_.Set(error);
  // Report it (and settle what it fails) from the check phase of this loop iteration.
  queue_.Wake();
}

Napi::Value Engine::FatalError(Napi::Env env) const {
  return fatal_error_.IsEmpty() ? CodedError(env, Code::kClosed, "the node stopped").Value()
                                : fatal_error_.Get();
}

int Engine::FsmSnapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<Engine*>(fsm->data);
  // After a failed apply the engine counts entries as applied that the state never saw:
  // a snapshot now would write that lie to disk.
  if (self->failed_) return RAFT_BUSY;
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  std::vector<Napi::Value> parts;
  try {
    parts = SnapshotParts(self->CallFsm(self->snapshot_fn_, {}));
  } catch (const Napi::Error& err) {
    self->last_fsm_error_ = "snapshot failed: " + err.Message();
    napi_fatal_exception(env, err.Value());
    return RAFT_INVALID;
  }
  uint64_t total = 0;
  if (!TotalLength(parts, &total)) {
    napi_fatal_exception(env,
                         CodedError(env, Code::kInvalidArgument,
                                    "fsm.snapshot() must return a Uint8Array or an array of them")
                             .Value());
    return RAFT_INVALID;
  }
  RaftPtr<struct raft_buffer> out = FrameSnapshot(parts, total);
  if (!out) return RAFT_NOMEM;
  // The references keep the parts alive until finalize (the engine writes them uncopied).
  for (const Napi::Value& part : parts) {
    self->snapshot_refs_.emplace_back();
    self->snapshot_refs_.back().Set(part);
  }
  *n_bufs = static_cast<unsigned>(parts.size() + 1);
  *bufs = out.release();  // freed in finalize
  return 0;
}

int Engine::FsmSnapshotFinalize(struct raft_fsm* fsm, struct raft_buffer* bufs[],
                                unsigned* n_bufs) {
  auto* self = static_cast<Engine*>(fsm->data);
  if (*bufs != nullptr) {
    raft_free((*bufs)[0].base);
    raft_free(*bufs);
  }
  *bufs = nullptr;
  *n_bufs = 0;
  self->snapshot_refs_.clear();
  return 0;
}

int Engine::FsmRestore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  auto* self = static_cast<Engine*>(fsm->data);
  RaftPtr<void> owned(buf->base);  // the FSM owns the buffer once it returns 0
  if (self->failed_) return 0;     // stopping anyway; see FsmApply
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  const auto* bytes = static_cast<const uint8_t*>(buf->base);
  std::string problem = SnapshotProblem(bytes, buf->len);
  Napi::Value error;
  if (problem.empty()) {
    // A copy, so the engine's buffer can be freed and JS may keep what it restores.
    auto payload = Napi::Buffer<uint8_t>::Copy(env, bytes + kHeaderSize, buf->len - kHeaderSize);
    try {
      self->CallFsm(self->restore_fn_, {payload});
      return 0;
    } catch (const Napi::Error& err) {
      problem = "fsm.restore() threw: " + err.Message();
      error = err.Value();
    }
  }
  self->last_fsm_error_ = problem;
  if (error.IsEmpty()) error = CodedError(env, Code::kSnapshotUnreadable, problem).Value();
  self->last_fsm_exception_.Set(error);
  if (self->started_) {
    // Installed from the leader while running: this replica stops (see FsmApply).
    self->Fail(error, raft_last_applied(&self->raft_) + 1);
    return 0;
  }
  owned.release();  // refused: the engine keeps it
  return RAFT_MALFORMED;
}

// While an FSM callback runs, Usable() refuses requests: the engine is mid-callback and
// must not be re-entered. The flag is reset however the call ends.
Napi::Value Engine::CallFsm(const Napi::FunctionReference& fn,
                            const std::initializer_list<napi_value>& args) {
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{in_fsm_};
  in_fsm_ = true;
  return fn.Call(args);
}

}  // namespace prevail

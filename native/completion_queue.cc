#include "completion_queue.h"

namespace prevail {

void CompletionQueue::Open(uv_loop_t* loop, void* owner, CheckCallback on_check) {
  owner_ = owner;
  on_check_ = on_check;
  check_.reset(new uv_check_t);
  uv_check_init(loop, check_.get());
  check_->data = this;
  uv_check_start(check_.get(), [](uv_check_t* h) {
    auto* self = static_cast<CompletionQueue*>(h->data);
    self->on_check_(self->owner_);
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(check_.get()));
  idle_.reset(new uv_idle_t);
  uv_idle_init(loop, idle_.get());
}

void CompletionQueue::Close() {
  check_.reset();
  idle_.reset();
}

void CompletionQueue::Push(Completion* completion) {
  items_.emplace_back(completion);
  Wake();
}

void CompletionQueue::Wake() {
  if (idle_) uv_idle_start(idle_.get(), [](uv_idle_t*) {});
}

void CompletionQueue::SleepIfIdle() {
  if (items_.empty() && idle_) uv_idle_stop(idle_.get());
}

Batch CompletionQueue::TakeAll() {
  Batch batch;
  batch.swap(items_);
  return batch;
}

}  // namespace prevail

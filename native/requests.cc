#include "requests.h"

#include "engine.h"

namespace prevail {

namespace {
Napi::Number IndexNumber(Napi::Env env, raft_index index) {
  return Napi::Number::New(env, static_cast<double>(index));
}
}  // namespace

void ApplyRequest::Cb(struct raft_apply* req, int status, void* /*result*/) {
  auto* self = static_cast<ApplyRequest*>(req->data);
  self->status = status;
  self->fired = true;
  if (self->index != 0) self->engine->ForgetPending(self->index);
  self->engine->Enqueue(self);
}

void ApplyRequest::Settle(Napi::Env env) {
  if (status == 0 && engine->FailedAt(index)) {
    deferred.Reject(
        engine->FatalError(env));  // its entry (or an earlier one) could not be applied here
  } else if (status == 0) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(uint32_t(0), IndexNumber(env, index));
    pair.Set(uint32_t(1), result.IsEmpty() ? env.Undefined() : result.Get());
    deferred.Resolve(pair);
  } else {
    auto err = engine->EngineError(env, status, "apply");
    err.Set("index", IndexNumber(env, index));
    deferred.Reject(err.Value());
  }
}

void BarrierRequest::Cb(struct raft_barrier* req, int status) {
  auto* self = static_cast<BarrierRequest*>(req->data);
  self->status = status;
  self->engine->Enqueue(self);
}

void BarrierRequest::Settle(Napi::Env env) {
  if (status == 0 && engine->FailedAt(req.index))
    deferred.Reject(engine->FatalError(env));  // this node's state stopped short of the barrier
  else if (status == 0)
    deferred.Resolve(IndexNumber(env, req.index));
  else
    deferred.Reject(engine->EngineError(env, status, "barrier").Value());
}

void ChangeRequest::Cb(struct raft_change* req, int status) {
  auto* self = static_cast<ChangeRequest*>(req->data);
  self->status = status;
  self->engine->Enqueue(self);
}

void ChangeRequest::Settle(Napi::Env env) {
  if (status == 0)
    deferred.Resolve(env.Undefined());
  else
    deferred.Reject(engine->EngineError(env, status, what).Value());
}

void TransferRequest::Cb(struct raft_transfer* req) {
  auto* self = static_cast<TransferRequest*>(req->data);
  self->leader = self->engine->LeaderId();
  self->engine->Enqueue(self);
}

void TransferRequest::Settle(Napi::Env env) {
  deferred.Resolve(Napi::Number::New(env, static_cast<double>(leader)));
}

void CloseRequest::Settle(Napi::Env env) {
  if (error.IsEmpty())
    deferred.Resolve(env.Undefined());
  else
    deferred.Reject(error.Get());
}

}  // namespace prevail

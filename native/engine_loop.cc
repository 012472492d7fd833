// The engine's side of the loop: the check phase (settle completions, report the fatal
// error and state changes to JS) and shutdown.
#include "async_scope.h"
#include "engine.h"
#include "names.h"

namespace prevail {

namespace {

// JS called from the check phase has no caller to throw to: its error is uncaught.
template <typename F>
void ReportingUncaught(Napi::Env env, F call) {
  try {
    call();
  } catch (const Napi::Error& err) {
    napi_fatal_exception(env, err.Value());
  }
}

}  // namespace

void Engine::OnCheck() {
  const StateReport report = ReadState();
  const bool report_fatal = failed_ && !fatal_reported_ && started_;
  const bool connects = streams_.HasNewConnects() && started_;
  if (queue_.Empty() && !report.changed && !report_fatal && !connects) return;
  Napi::HandleScope scope(env_);
  bool teardown = false;
  {
    AsyncScope callback_scope(env_, Value(),
                              async_context_);  // closing it runs promise continuations
    Batch batch = queue_.TakeAll();
    // The fatal error first, so JS knows the node has stopped before the requests it fails settle.
    if (report_fatal) ReportFatal();
    teardown = SettleAll(env_, batch);
    if (report.changed) ReportState(report);
    if (connects) ReportConnects();
  }
  queue_.SleepIfIdle();
  if (teardown) {
    TearDown();
    Unref();  // balances the Ref() taken when the engine started
  }
}

Engine::StateReport Engine::ReadState() const {
  StateReport report;
  if (!started_ || closing_) return report;
  auto* raft = const_cast<struct raft*>(&raft_);  // the engine's getters take a non-const raft
  report.state = raft_state(raft);
  raft_leader(raft, &report.leader, &report.leader_address);
  report.term = raft_current_term(raft);
  report.changed = report.state != reported_state_ || report.leader != reported_leader_ ||
                   report.term != reported_term_;
  return report;
}

void Engine::ReportFatal() {
  fatal_reported_ = true;
  if (fatal_fn_.IsEmpty()) {
    napi_fatal_exception(env_, fatal_error_.Get());
    return;
  }
  ReportingUncaught(env_, [&] { fatal_fn_.Call({fatal_error_.Get()}); });
}

bool Engine::SettleAll(Napi::Env env, Batch& batch) {
  bool closed = false;
  for (auto& completion : batch) {
    ReportingUncaught(env, [&] { completion->Settle(env); });
    if (completion->IsClose()) closed = true;
  }
  return closed;
}

void Engine::ReportState(const StateReport& report) {
  reported_state_ = report.state;
  reported_leader_ = report.leader;
  reported_term_ = report.term;
  Napi::Value address = report.leader != 0 && report.leader_address != nullptr
                            ? Napi::Value(Napi::String::New(env_, report.leader_address))
                            : env_.Null();
  ReportingUncaught(env_, [&] {
    state_fn_.Call({Napi::String::New(env_, StateName(report.state)),
                    Napi::Number::New(env_, static_cast<double>(report.term)),
                    Napi::Number::New(env_, static_cast<double>(report.leader)), address});
  });
}

// The connects the stream transport was asked for since the last check (engine_streams.cc).
void Engine::ReportConnects() {
  for (const StreamTransport::ConnectAsk& ask : streams_.TakeNewConnects()) {
    ReportingUncaught(env_, [&] {
      connect_fn_.Call({Napi::Number::New(env_, static_cast<double>(ask.token)),
                        Napi::Number::New(env_, static_cast<double>(ask.id)),
                        Napi::String::New(env_, ask.address)});
    });
  }
}

void Engine::OnRaftClosed(struct raft* r) {
  auto* self = static_cast<Engine*>(r->data);
  raft_uv_close(&self->io_);
  if (self->transport_ready_) raft_uv_tcp_close(&self->transport_);
  self->raft_ready_ = self->io_ready_ = self->transport_ready_ = false;
  self->closed_ = true;
  self->pending_.clear();
  if (self->close_completion_) self->Enqueue(self->close_completion_.release());
}

void Engine::TearDown() {
  held_frees_.Release();  // the engine has closed: libuv is done with those handles
  queue_.Close();
  apply_fn_.Reset();
  payloads_.Reset();
  snapshot_fn_.Reset();
  restore_fn_.Reset();
  state_fn_.Reset();
  fatal_fn_.Reset();
  last_fsm_exception_.Reset();
}

}  // namespace prevail

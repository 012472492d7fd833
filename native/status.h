// status() of a running engine, as lib/engine/native.ts's NativeStatus.
#pragma once
#include <napi.h>

#include "raft_c.h"

namespace prevail {

Napi::Object DescribeRunning(Napi::Env env, struct raft* raft);

}  // namespace prevail

// The engine's headers declare C functions without extern "C"; include them here.
#pragma once
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

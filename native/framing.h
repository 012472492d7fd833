// The framing of every entry payload and snapshot the addon hands the engine. Both are
// on disk (and the entries on the wire): changing a layout needs a new magic or format
// number here, a reader for the old one, and a line in its version history.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace prevail {

// Entry header, 16 bytes, little-endian, then the payload zero-padded to a multiple of 8
// (the engine's disk backend refuses other lengths; see docs/internals.md):
//   [0]  u32 magic "PVE1"
//   [4]  u32 the payload's true length
//   [8]  u64 the term the leader appended it in (the FSM callback is not given the term)
// Version history:
//   PVE1  31c458b (2026-11-22): the first layout.
constexpr uint32_t kEntryMagic = 0x31455650;  // "PVE1"

// Snapshot header, 16 bytes, little-endian, then the FSM's snapshot bytes:
//   [0]  u32 magic "PVS1"
//   [4]  u32 format
//   [8]  u64 the length of what follows (a truncated snapshot is refused)
// Version history:
//   PVS1 format 1  31c458b (2026-11-22): the first layout.
constexpr uint32_t kSnapshotMagic = 0x31535650;  // "PVS1"
constexpr uint32_t kSnapshotFormat = 1;

constexpr size_t kHeaderSize = 16;  // both headers

// The framed size of an entry of `payload_len` bytes.
inline size_t EntrySize(size_t payload_len) {
  return kHeaderSize + ((payload_len + 7) & ~size_t(7));
}

// Frames `payload` into `out` (EntrySize(len) bytes), padding included.
void EncodeEntry(uint8_t* out, const uint8_t* payload, size_t len, uint64_t term);

struct EntryView {
  const uint8_t* payload;
  uint32_t length;
  uint64_t term;
};

// False if `bytes` is not a prevail entry.
bool DecodeEntry(const uint8_t* bytes, size_t len, EntryView* entry);

void EncodeSnapshotHeader(uint8_t* out, uint64_t payload_len);

// Why the snapshot in `bytes` can't be read, or "" if it can (its payload follows the header).
std::string SnapshotProblem(const uint8_t* bytes, size_t len);

}  // namespace prevail

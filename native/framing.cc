#include "framing.h"

#include <cstring>

#include "byte_codec.h"

namespace prevail {

void EncodeEntry(uint8_t* out, const uint8_t* payload, size_t len, uint64_t term) {
  const size_t total = EntrySize(len);
  PutU32(out, kEntryMagic);
  PutU32(out + 4, static_cast<uint32_t>(len));
  PutU64(out + 8, term);
  if (len > 0) memcpy(out + kHeaderSize, payload, len);
  memset(out + kHeaderSize + len, 0, total - kHeaderSize - len);
}

bool DecodeEntry(const uint8_t* bytes, size_t len, EntryView* entry) {
  if (len < kHeaderSize || GetU32(bytes) != kEntryMagic || GetU32(bytes + 4) > len - kHeaderSize)
    return false;
  entry->payload = bytes + kHeaderSize;
  entry->length = GetU32(bytes + 4);
  entry->term = GetU64(bytes + 8);
  return true;
}

void EncodeSnapshotHeader(uint8_t* out, uint64_t payload_len) {
  PutU32(out, kSnapshotMagic);
  PutU32(out + 4, kSnapshotFormat);
  PutU64(out + 8, payload_len);
}

std::string SnapshotProblem(const uint8_t* bytes, size_t len) {
  if (len < kHeaderSize || GetU32(bytes) != kSnapshotMagic)
    return "the snapshot was not written by prevail";
  if (GetU32(bytes + 4) != kSnapshotFormat) {
    return "snapshot format " + std::to_string(GetU32(bytes + 4)) +
           " is not readable by this build (it reads format " + std::to_string(kSnapshotFormat) +
           ")";
  }
  if (GetU64(bytes + 8) != len - kHeaderSize) return "the snapshot is truncated";
  return "";
}

}  // namespace prevail

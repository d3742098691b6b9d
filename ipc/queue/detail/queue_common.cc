#include <algorithm>
#include <cstring>
#include <string>

#include "ipc/queue/detail/mpmc_ops.h"

namespace ipc::detail {

uint64_t ring_capacity(uint64_t requested, std::string_view what) {
  if (requested == 0) throw InvalidArgument(std::string(what) + ": capacity must be at least 1");
  if (requested > (uint64_t{1} << 32)) {
    throw InvalidArgument(std::string(what) + ": capacity " + std::to_string(requested) + " exceeds 2^32 slots");
  }
  uint64_t c = 1;
  while (c < requested) c <<= 1;
  return c;
}

namespace {
// A put that found no free slot at `pos` (the ring full, or that slot still held by a consumer of the previous
// lap): the consumers are working at the very slot it would claim next, and each look at that slot takes its
// cache line away from them (a consumer's claim CAS then waits for the line to come back: the producer's polling
// slows the consumer it waits for; Queue 1 -> 1 in //bench:all ran at 21 M msgs/s so, 39 M without). Instead,
// look at the slot kRoomAhead positions further on, which the consumers reach only that many messages later, and
// come back once it is free: the put then finds a run of free slots and writes them without meeting a consumer.
// Far enough ahead that the look does not meet a lone consumer's lines either, which it asks for up to 1 KiB
// (32 slots of 8 bytes) ahead of its gets (MpmcRing::ask_for_lines_ahead()): 1024 slots (Queue 1 -> 1 where the
// CPUs are far apart: 76-89 M msgs/s with 64, 95-117 M with 1024). Bounded by kRoomSpins pauses (about 20
// microseconds, the time a consumer takes for kRoomAhead messages), and skipped when spinning cannot pay off: a
// consumer that stopped after taking fewer messages leaves the put to the blocking wait, which looks at `pos` itself
// (and reaps a dead claimer there). Returns true when the room came.
bool wait_for_room(const MpmcRing& r, uint64_t pos) {
  constexpr uint64_t kRoomAhead = 1024;
  constexpr int kRoomSpins = 1024;
  const uint64_t ahead = std::min(kRoomAhead, r.capacity() / 2);
  if (ahead == 0 || !spinning_pays()) return false;
  for (int i = 0; i < kRoomSpins; ++i) {
    if (r.free_for(pos + ahead)) return true;
    cpu_relax();
  }
  return false;
}

// The mirror of wait_for_room() for a get that found the ring empty at `pos`: the producers are about to write the
// very slot it would claim, and each look at that slot takes its cache line away from them (the producer's claim and
// publication then wait for the line to come back). Instead, look at the slot kMessagesAhead positions on, which the
// producers reach only that many messages later, and come back once it holds a message (or has been taken): the get
// then finds a run of messages and takes them without meeting a producer (Queue 1 -> 1 in //bench:all: level, or up
// to x1.5 in a fluctuating regime; docs/benchmarks.md). A lone message at `pos` is looked for every kLoneEvery
// pauses (and a close), so a get that waits for one message waits at most that many pauses longer. Bounded by
// kMessagesSpins pauses, and skipped when spinning cannot pay off. Returns true when a message came (or the ring
// closed).
bool wait_for_messages(const MpmcRing& r, uint64_t pos) {
  constexpr uint64_t kMessagesAhead = 16;
  constexpr int kMessagesSpins = 256;
  constexpr int kLoneEvery = 4;
  const uint64_t ahead = std::min(kMessagesAhead, r.capacity() / 2);
  if (ahead == 0 || !spinning_pays()) return false;
  for (int i = 1; i <= kMessagesSpins; ++i) {
    cpu_relax();
    if (r.filled_for(pos + ahead) || (i % kLoneEvery == 0 && (r.filled_for(pos) || r.closed()))) return true;
  }
  return false;
}
}  // namespace

Outcome mpmc_claim_write_after(const MpmcRing& r, const Deadline* deadline, uint64_t& pos, Claim first) {
  if (!deadline) {
    if (first == Claim::kBusy &&
        claim_past_busy([&](bool check_dead) { return r.try_claim_write(pos, check_dead); }) == Claim::kOk) {
      return Outcome::kOk;
    }
    return r.closed() ? Outcome::kClosed : Outcome::kFull;
  }
  // Full (or the next slot still held by a consumer): wait for a run of free slots before the blocking wait.
  if (wait_for_room(r, pos) && r.try_claim_write(pos, false) == Claim::kOk) return Outcome::kOk;
  Outcome result = Outcome::kTimeout;
  block_until<Arming::kMarked>(r.header().not_full, *deadline, [&](bool check_dead) {
    if (r.closed()) {
      result = Outcome::kClosed;
      return Attempt::kDone;
    }
    if (r.try_claim_write(pos, check_dead) == Claim::kOk) {
      result = Outcome::kOk;
      return Attempt::kDone;
    }
    return Attempt::kRetry;
  });
  return result;
}

Outcome mpmc_claim_read_after(const MpmcRing& r, const Deadline* deadline, uint64_t& pos, Claim first) {
  // One look's verdict, from its claim result `c` (made with `check_dead`).
  auto verdict = [&](Claim c, bool check_dead) -> Outcome {
    // Not waiting: a message being written is worth a short spin (see kBusyRetries).
    if (c == Claim::kBusy && !deadline && !check_dead) {
      c = claim_past_busy([&](bool dead) { return r.try_claim_read(pos, dead); });
    }
    if (c == Claim::kOk) return Outcome::kOk;
    if (c == Claim::kBusy || !r.closed()) return Outcome::kEmpty;
    // Empty and closed. seq_cst fence: with the producers' seq_cst claim CAS and closed_after_claim(), a slot
    // claimed by a producer that missed the close is visible to the second look (see MpmcRing::closed_after_claim);
    // a claim by store of the producers' lease holder is waited out first.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!r.claims_by_store_done()) return Outcome::kEmpty;
    switch (r.try_claim_read(pos, check_dead)) {
      case Claim::kOk: return Outcome::kOk;
      case Claim::kEmpty: return Outcome::kClosed;
      default: return Outcome::kEmpty;
    }
  };
  Outcome result = verdict(first, false);
  if (result != Outcome::kEmpty || !deadline) return result;
  // Empty (not closed): wait for a run of messages before the blocking wait.
  if (first == Claim::kEmpty && wait_for_messages(r, pos)) {
    result = verdict(r.try_claim_read(pos, false), false);
    if (result != Outcome::kEmpty) return result;
  }
  result = Outcome::kTimeout;
  block_until<Arming::kMarked>(r.header().not_empty, *deadline, [&](bool check_dead) {
    Outcome q = verdict(r.try_claim_read(pos, check_dead), check_dead);
    if (q == Outcome::kEmpty) return Attempt::kRetry;
    result = q;
    return Attempt::kDone;
  });
  return result;
}

void throw_corrupt_slot(uint64_t pos, uint32_t length, uint64_t max_payload) {
  throw StreamCorrupted("queue slot for position " + std::to_string(pos) + " claims a message of " +
                        std::to_string(length) + " bytes; a slot holds at most " + std::to_string(max_payload));
}

MpmcRing checked_mpmc(void* block, uint64_t bytes, uint64_t type_size, uint32_t kind_flags, std::string_view what) {
  if (!block || reinterpret_cast<uintptr_t>(block) % 64 != 0) {
    throw InvalidArgument(std::string(what) + ": the block must be 64-byte aligned");
  }
  if (bytes < sizeof(MpmcHeader)) throw InvalidArgument(std::string(what) + ": block too small for a queue");
  const auto* h = static_cast<const MpmcHeader*>(block);
  if (h->magic != kMpmcMagic || h->version != kMpmcVersion) {
    throw InvalidArgument(std::string(what) + ": the block is not an MPMC queue of this library version");
  }
  if (h->flags != kind_flags) {
    throw InvalidArgument(std::string(what) + ": the queue is of another kind (fixed-size, bytes or joinable)");
  }
  if (h->type_size != type_size) {
    throw InvalidArgument(std::string(what) + ": the queue holds values of " + std::to_string(h->type_size) +
                          " bytes, not " + std::to_string(type_size));
  }
  const uint64_t c = h->capacity;
  // A slot must hold a value of type_size after its header: a stride too small for it would put a value's last
  // bytes in the next slot, or past the block's end.
  if (c == 0 || (c & (c - 1)) != 0 || !MpmcRing::valid_stride(h->slot_stride) ||
      h->slot_stride - sizeof(SlotHeader) < type_size ||
      bytes < checked_add(sizeof(MpmcHeader), checked_mul(c, h->slot_stride, what), what)) {
    throw InvalidArgument(std::string(what) + ": the queue header is corrupt");
  }
  return MpmcRing(block);
}

uint64_t type_fingerprint(std::string_view type) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : type) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h ? h : 1;
}

void record_type(MpmcHeader& header, std::string_view type) {
  header.type_fingerprint = type_fingerprint(type);
  constexpr size_t kRoom = kTypeNameBytes - 1;  // and the NUL, which MpmcHeader{} wrote
  if (type.size() <= kRoom) {
    std::memcpy(header.type_name, type.data(), type.size());
  } else {
    std::memcpy(header.type_name, type.data(), kRoom - 3);
    std::memcpy(header.type_name + kRoom - 3, "...", 3);
  }
}

void check_type(const MpmcHeader& header, std::string_view type, std::string_view what) {
  if (header.type_fingerprint == 0 || header.type_fingerprint == type_fingerprint(type)) return;
  const std::string_view recorded(header.type_name, strnlen(header.type_name, kTypeNameBytes));
  throw InvalidArgument(std::string(what) + ": the queue holds " + std::string(recorded) + ", not " +
                        std::string(type));
}

Segment::NamedBlock find_queue_block(const Segment& segment, std::string_view name, const BlockKind& kind) {
  auto b = segment.find_block(name, kind);
  if (!b.ptr) throw NotFound("segment '" + segment.name() + "' has no queue named '" + std::string(name) + "'");
  return b;
}

}  // namespace ipc::detail

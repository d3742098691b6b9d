// ipc/queue/detail/spsc_ring.h: the single-producer/single-consumer ring behind SpscQueue (internal).
//
// Layout in one block of shared memory: SpscHeader (constants; tail, head, the consumer's `returned` record, the
// WaitSets, each on its own cache line), then `capacity` slots of `slot_bytes` bytes. The producer owns `tail`,
// the consumer owns `head` (Lamport's queue); each side keeps a process-local copy of the other's index and
// reloads it only when the ring looks full/empty, so the two sides touch each other's cache line rarely.
//
// Kill safety needs no reaping here: a producer killed before its release store of `tail` never made its message
// visible (its put() had not returned, so nothing was sent); a consumer killed before its release store of `head`
// leaves the message in the ring for the next consumer (its get() had not returned, so nothing was received).
// A consumer killed *after* that store, while it wakes a sleeping producer (a futex syscall, where SIGKILL is
// most often delivered), took messages it never returned: as its last step every get stores the head it returns
// with in `returned`, so `head - returned` is what a get has taken and not yet returned (0 between gets; 1 or a
// get_n batch inside one). Whoever next looks at a dead consumer's role (the next consumer taking it over, or
// abandoned_count()) counts that difference in `abandoned` and moves `returned` up to `head`, with a CAS, so
// exactly once. One store per get (an armed/cleared pair cost two, and a count a third when it changed).
// The roles are recorded as pids so that a second live producer (or consumer) is refused and a replacement may
// take over a dead one's role.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ipc/base/checked_math.h"
#include "ipc/queue/detail/test_hook.h"
#include "ipc/base/wait.h"

namespace ipc::detail {

inline constexpr uint64_t kSpscMagic = 0x4e4d505f53505343ull;  // "NMP_SPSC"
inline constexpr uint32_t kSpscVersion = 6;  // 2: returning + abandoned; 3: healing WaitSet; 4: returning_count;
                                              // 5: returning on its own cache line; 6: `returned` replaces both

struct SpscHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t type_hash;    // the low 32 bits of type_fingerprint(codec_type_name<T>()), never 0; 0: none recorded
  uint64_t capacity;     // slots, a power of two
  uint64_t slot_bytes;   // sizeof(T)
  std::atomic<uint32_t> closed;
  std::atomic<uint32_t> producer_pid;  // 0: no producer yet
  std::atomic<uint32_t> consumer_pid;  // 0: no consumer yet
  std::atomic<uint64_t> abandoned;     // messages a consumer took and died before returning them

  alignas(64) std::atomic<uint64_t> tail;  // written by the producer only
  alignas(64) std::atomic<uint64_t> head;  // written by the consumer only
  // The head the consumer's last get() returned with, on a line of its own: the consumer writes it once per get,
  // and nobody but a settler (after the consumer died) reads it, so the producer, which reads `head` when it
  // refreshes its cached copy, never pulls this store's line away from the consumer.
  alignas(64) std::atomic<uint64_t> returned;
  alignas(64) WaitSet not_empty;
  WaitSet not_full;
};
static_assert(offsetof(SpscHeader, tail) % 64 == 0 && offsetof(SpscHeader, head) - offsetof(SpscHeader, tail) >= 64);
static_assert(offsetof(SpscHeader, returned) - offsetof(SpscHeader, head) >= 64);
static_assert(offsetof(SpscHeader, not_empty) - offsetof(SpscHeader, returned) >= 64);
static_assert(sizeof(SpscHeader) % 64 == 0);
static_assert(std::is_standard_layout_v<SpscHeader>);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Throws InvalidArgument when the size does not fit in 64 bits.
inline uint64_t spsc_bytes_needed(uint64_t capacity, uint64_t slot_bytes) {
  return checked_add(sizeof(SpscHeader), checked_mul(capacity, slot_bytes, "SpscQueue"), "SpscQueue");
}

inline void spsc_init(void* block, uint64_t capacity, uint64_t slot_bytes, uint32_t type_hash) {
  auto* h = new (block) SpscHeader{};
  h->magic = kSpscMagic;
  h->version = kSpscVersion;
  h->type_hash = type_hash;
  h->capacity = capacity;
  h->slot_bytes = slot_bytes;
}
// SpscHeader::type_hash of a type named `type` (codec_type_name<T>()).
inline uint32_t spsc_type_hash(uint64_t fingerprint) {
  const auto h = static_cast<uint32_t>(fingerprint);
  return h ? h : 1;
}

// If the consumer role's holder `pid` is dead and was returning messages when it died (it moved `head` past
// `returned`), counts them once. Any process; slow path.
inline void settle_spsc_consumer(SpscHeader& h, uint32_t pid) {
  // acquire: partner is the consumer's release store of head; `returned` is the dead consumer's (all its stores
  // completed) or a settler's CAS below.
  uint64_t r = h.returned.load(std::memory_order_acquire);
  const uint64_t hd = h.head.load(std::memory_order_acquire);
  if (hd == r || pid == 0 || !process_dead(pid)) return;
  // acq_rel: whoever moves `returned` up to `head` counts, so the messages are counted once.
  if (h.returned.compare_exchange_strong(r, hd, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    h.abandoned.fetch_add(hd - r, std::memory_order_relaxed);  // relaxed: a counter, nothing is published with it
  }
}

// Values in the ring (an estimate). Any process.
inline uint64_t spsc_size_approx(const SpscHeader& h) {
  // relaxed: an estimate. head first, so that tail >= head normally holds for the pair we read.
  const uint64_t hd = h.head.load(std::memory_order_relaxed);
  const uint64_t t = h.tail.load(std::memory_order_relaxed);
  return t > hd ? t - hd : 0;
}

// Values lost to consumers that died mid-get, after settling a consumer that died inside one. Any process; slow.
inline uint64_t spsc_abandoned(SpscHeader& h) {
  settle_spsc_consumer(h, h.consumer_pid.load(std::memory_order_acquire));  // acquire: see take_role
  return h.abandoned.load(std::memory_order_relaxed);                       // relaxed: a counter
}

// Takes the role word for this process: free, already ours, or held by a dead process. False: a live process
// other than us holds it. Any process; slow path (called once per handle and process).
inline bool take_role(std::atomic<uint32_t>& role) {
  const uint32_t me = self_pid();
  // acquire: partner is the previous holder's CAS; we continue from the indices it left.
  uint32_t cur = role.load(std::memory_order_acquire);
  for (;;) {
    if (cur == me) return true;
    if (cur != 0 && !process_dead(cur)) return false;
    // acq_rel: acquire as above; release so that a later taker sees our claim.
    if (role.compare_exchange_strong(cur, me, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
  }
}

}  // namespace ipc::detail

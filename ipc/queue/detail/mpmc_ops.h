// ipc/queue/detail/mpmc_ops.h: blocking put/get on an MpmcRing, shared by Queue<T>, MessageQueue and friends
// (internal). `deadline == nullptr` means "try once, do not wait".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/base/error.h"
#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/result.h"
#include "ipc/segment/segment.h"

namespace ipc::detail {

// A non-blocking call that finds the next slot claimed by another process retries this many times (cpu_relax()
// between tries, a microsecond or two in all) before it asks whether the claimer died: a live claimer is almost
// always a few nanoseconds from finishing, and the liveness check is a syscall.
inline constexpr int kBusyRetries = 32;

// Retries `claim(check_dead)` while it reports kBusy, first kBusyRetries times without a liveness check, then once
// with one. Returns the last result.
template <typename TryClaim>
Claim claim_past_busy(TryClaim&& claim) {
  for (int i = 0; i < kBusyRetries; ++i) {
    cpu_relax();
    if (const Claim c = claim(false); c != Claim::kBusy) return c;
  }
  return claim(true);
}

// The rest of mpmc_claim_write() / mpmc_claim_read() after a first look that found no slot (`first`): the short
// spin past a busy slot, the close protocol, and blocking per `deadline` (queue_common.cc).
Outcome mpmc_claim_write_after(const MpmcRing& r, const Deadline* deadline, uint64_t& pos, Claim first);
Outcome mpmc_claim_read_after(const MpmcRing& r, const Deadline* deadline, uint64_t& pos, Claim first);

// Claims a slot for writing, waiting per `deadline`. kOk: `pos` is claimed. The first look is inline.
[[gnu::always_inline]] inline Outcome mpmc_claim_write(const MpmcRing& r, const Deadline* deadline, uint64_t& pos) {
  if (r.closed()) return Outcome::kClosed;
  const Claim first = r.try_claim_write(pos, false);
  if (first == Claim::kOk) [[likely]] return Outcome::kOk;
  return mpmc_claim_write_after(r, deadline, pos, first);
}

// Claims a slot for reading, waiting per `deadline`. kOk: `pos` is claimed. A closed ring is drained first: every
// put that returned kOk before (or while) the ring was closed is delivered, and kClosed comes only once the ring
// is empty. A slot still being written is waited for, also on a closed ring: a live writer publishes (or, if it
// saw the close, gives the slot up), a dead writer's slot is reaped and counted once we check for dead claimers.
// The first look is inline.
[[gnu::always_inline]] inline Outcome mpmc_claim_read(const MpmcRing& r, const Deadline* deadline, uint64_t& pos) {
  const Claim first = r.try_claim_read(pos, false);
  if (first == Claim::kOk) [[likely]] return Outcome::kOk;
  return mpmc_claim_read_after(r, deadline, pos, first);
}

// The rest of mpmc_put() once `s` (position `pos`) is claimed and the close checked: the write, the publication.
template <typename Write>
[[gnu::always_inline]] inline Outcome mpmc_write_claimed(const MpmcRing& r, SlotHeader& s, uint64_t pos,
                                                         Write& write) {
  uint32_t length;
  try {
    length = write(MpmcRing::payload(s));
  } catch (...) {
    r.publish_skip(s, pos);
    throw;
  }
  test_hook(HookPoint::kPutWritten);
  r.publish(s, pos, length);
  return Outcome::kOk;
}

// The rest of mpmc_put() once `s` (position `pos`) is claimed by CAS: the close check, the write, the publication.
// (A claim by store checked `closed` inside its bracket: see MpmcRing::closed_after_claim().)
template <typename Write>
[[gnu::always_inline]] inline Outcome mpmc_put_claimed(const MpmcRing& r, SlotHeader& s, uint64_t pos, Write& write) {
  if (r.closed_after_claim()) [[unlikely]] {
    r.publish_skip(s, pos);
    return Outcome::kClosed;
  }
  return mpmc_write_claimed(r, s, pos, write);
}

// mpmc_put() after a first look that claimed nothing: out of line, so that the inline call is the common case
// alone (no frame for the waits' state). `write` by value: the caller's functor never has its address taken, so
// the common case keeps it in registers.
template <typename Write>
[[gnu::noinline]] Outcome mpmc_put_slow(const MpmcRing& r, const Deadline* deadline, Write write) {
  uint64_t pos;
  const Outcome q = mpmc_claim_write(r, deadline, pos);
  if (q != Outcome::kOk) return q;
  return mpmc_put_claimed(r, r.slot(pos), pos, write);
}

// put: `write(std::byte* payload)` fills the claimed slot and returns the payload length. If it throws, the slot
// is published as a skip record (consumers pass over it) and the exception propagates. A producer that finds the
// ring closed once it holds its slot gives the slot up the same way and reports kClosed.
// The common case works on a copy of the handle, whose few fields stay in registers across its atomic operations
// (the handle itself, in the caller's object, would be read again after each); the rest gets the handle. It is the
// first look at the tail hint: by CAS on a shared side, by store for the lease holder (mpmc_ring.h, "Leases"); a
// thread that is neither (the first claimer, another thread while a lease is held) enters the side in the slow path.
template <typename Write>
[[gnu::always_inline]] inline Outcome mpmc_put(const MpmcRing& ring, const Deadline* deadline, Write&& write) {
  const MpmcRing r = ring;
  uint64_t pos;
  SlotHeader* s;
  const uint64_t holder = r.producers_holder();
  if (holder == kLeaseShared) {
    if (!r.closed() && r.claim_write_at_hint(pos, s)) [[likely]] return mpmc_put_claimed(r, *s, pos, write);
  } else if (holder == this_thread_identity() && r.claim_write_leased(pos, s)) [[likely]] {
    return mpmc_write_claimed(r, *s, pos, write);
  }
  return mpmc_put_slow(ring, deadline, write);
}

// Hands a claimed message of `length` bytes (at most max_payload()) to `read`, then releases its slot, also when
// `read` throws (the message is then consumed and the exception propagates). `claim_word`: the READING word of
// the claim (release_read()).
template <typename Read>
[[gnu::always_inline]] inline void mpmc_deliver(const MpmcRing& r, SlotHeader& s, uint64_t pos, uint64_t claim_word,
                                                uint32_t length, Read& read) {
  test_hook(HookPoint::kGetClaimed);
  struct Release {
    const MpmcRing& r;
    SlotHeader& s;
    uint64_t pos;
    uint64_t claim_word;
    [[gnu::always_inline]] ~Release() { r.release_read(s, pos, claim_word); }
  } release{r, s, pos, claim_word};
  read(static_cast<const std::byte*>(MpmcRing::payload(s)), length);
}

// A claimed slot whose length no put writes: memory overwritten behind the queue's back. Throws StreamCorrupted
// (queue_common.cc; the message is built out of line).
[[noreturn]] void throw_corrupt_slot(uint64_t pos, uint32_t length, uint64_t max_payload);

// mpmc_get() past its common case: a first look that claimed nothing (`claimed` null), or claimed a skip record
// or a slot of impossible length. Waits per `deadline` as mpmc_claim_read(). Out of line, as mpmc_put_slow().
template <typename Read>
[[gnu::noinline]] Outcome mpmc_get_slow(const MpmcRing& r, const Deadline* deadline, Read read, SlotHeader* claimed,
                                        uint64_t pos) {
  for (;; claimed = nullptr) {
    if (!claimed) {
      const Outcome q = mpmc_claim_read(r, deadline, pos);
      if (q != Outcome::kOk) return q;
      claimed = &r.slot(pos);
    }
    const uint32_t length = claimed->length;
    if (length == kSkipRecord) {
      r.release_skip(*claimed, pos);
      continue;
    }
    if (length > r.length_limit()) {
      // Only memory overwritten behind the queue's back gets here: the slot is consumed, nothing outside it read.
      r.release_skip(*claimed, pos);
      throw_corrupt_slot(pos, length, r.max_payload());
    }
    mpmc_deliver(r, *claimed, pos, make_hand_off(pos, claimer_pid()), length, read);
    return Outcome::kOk;
  }
}

// The first look of a get, inline: the slot at the head hint, claimed at once if it holds its message: by store for
// the consumers' lease holder, by CAS on a shared side (mpmc_ring.h, "Leases"). A thread that is neither (the first
// claimer, another thread while a lease is held) claims nothing here and enters the side in the slow path
// (mpmc_claim_read()). True: `s` (position `pos`) is claimed, `claim_word` is its READING word.
[[gnu::always_inline]] inline bool mpmc_claim_read_first(const MpmcRing& r, uint64_t& pos, SlotHeader*& s,
                                                         uint64_t& claim_word) {
  const uint64_t holder = r.consumers_holder();
  return holder == kLeaseShared ? r.claim_read_at_hint(pos, s, claim_word)
                                : holder == this_thread_identity() && r.claim_read_leased(pos, s, claim_word);
}

// The common case of a get (mpmc_get(), MessageQueue's gets): the first look, and a message of at most
// length_limit() bytes (one comparison keeps skip records, messages out of line and garbage lengths off this path)
// handed to `read` where it lies, its slot released after. True when delivered; else `claimed` is the slot the
// first look claimed (position `pos`) for the caller's slow path to take on, or nullptr when it claimed none.
template <typename Read>
[[gnu::always_inline]] inline bool mpmc_deliver_first(const MpmcRing& r, Read& read, SlotHeader*& claimed,
                                                      uint64_t& pos) {
  SlotHeader* s;
  uint64_t claim_word;
  claimed = nullptr;
  if (!mpmc_claim_read_first(r, pos, s, claim_word)) return false;
  const uint32_t length = s->length;
  if (length > r.length_limit()) [[unlikely]] {
    claimed = s;
    return false;
  }
  mpmc_deliver(r, *s, pos, claim_word, length, read);
  return true;
}

// get: `read(const std::byte* payload, uint32_t length)` consumes the claimed slot; the slot is released
// afterwards even if `read` throws (the message is then consumed and the exception propagates). Skip records are
// passed over. Inline: the first look claiming a message (one comparison with length_limit() keeps both skip
// records and garbage lengths off this path: mpmc_deliver_first()); the rest is mpmc_get_slow().
// As mpmc_put(), the common case works on a copy of the handle, and claims by CAS or by store.
template <typename Read>
[[gnu::always_inline]] inline Outcome mpmc_get(const MpmcRing& ring, const Deadline* deadline, Read&& read) {
  const MpmcRing r = ring;
  uint64_t pos = 0;  // unused by mpmc_get_slow() when nothing was claimed
  SlotHeader* claimed;
  if (mpmc_deliver_first(r, read, claimed, pos)) [[likely]] return Outcome::kOk;
  return mpmc_get_slow(ring, deadline, read, claimed, pos);
}

// Rounds a requested capacity up to the ring's power of two; throws InvalidArgument on 0 or absurd sizes.
uint64_t ring_capacity(uint64_t requested, std::string_view what);

// Checks that `block` (of `bytes` bytes) holds an MPMC ring of the expected kind; throws InvalidArgument.
MpmcRing checked_mpmc(void* block, uint64_t bytes, uint64_t type_size, uint32_t kind_flags, std::string_view what);

// A hash of a type's full name (FNV-1a, codec_type_name<T>()), never 0: 0 marks a queue that recorded no type.
uint64_t type_fingerprint(std::string_view type);
// Records `type` in a ring's header (its fingerprint, and its name shortened to fit), before the ring is found.
void record_type(MpmcHeader& header, std::string_view type);
// Throws InvalidArgument, naming both types, when the ring recorded a type other than `type` (none: accepted).
void check_type(const MpmcHeader& header, std::string_view type, std::string_view what);

// The kinds of queue a segment records with their names (checked on open).
inline constexpr BlockKind kQueueKind{block_kind_tag("QUEU"), "Queue"};
inline constexpr BlockKind kJoinableQueueKind{block_kind_tag("JQUE"), "JoinableQueue"};
inline constexpr BlockKind kMessageQueueKind{block_kind_tag("MSGQ"), "MessageQueue"};
inline constexpr BlockKind kSpscQueueKind{block_kind_tag("SPSC"), "SpscQueue"};
// The kind of an MPMC ring with these MpmcHeader flags.
constexpr const BlockKind& mpmc_kind(uint32_t flags) {
  if (flags & MpmcHeader::kFlagBytes) return kMessageQueueKind;
  return flags & MpmcHeader::kFlagJoinable ? kJoinableQueueKind : kQueueKind;
}

// Creates a named block of `bytes` and `kind` in `segment` (exclusive) and builds a ring in it with `init(void*)`
// before any other process can find it. Throws InvalidArgument when the name is taken.
template <typename Init>
void* create_block(Segment& segment, std::string_view name, uint64_t bytes, const BlockKind& kind, Init&& init) {
  return segment.create_block(name, bytes, 64, kind, init).ptr;
}
// The named block; throws NotFound when missing, InvalidArgument when it is not of `kind`.
Segment::NamedBlock find_queue_block(const Segment& segment, std::string_view name, const BlockKind& kind);

}  // namespace ipc::detail

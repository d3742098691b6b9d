// ipc/queue/detail/mpmc_ring.h: the multi-producer/multi-consumer ring every MPMC queue is built on (internal).
//
// Memory layout of one ring, in one block of shared memory (all offsets, no pointers):
//
//   +--------------------+ 0
//   | MpmcHeader         |  constants, closed flag, abandoned count, join counter,    (read-mostly lines)
//   |                    |  message type identity
//   |   tail   (own line)|  next position producers claim
//   |   head   (own line)|  next position consumers claim
//   |   producers        |  Lease (own line): the lone producer, which claims by a store (see "Leases")
//   |   consumers        |  Lease (own line): the lone consumer, likewise
//   |   not_empty        |  WaitSet consumers sleep on (marked: notify_marked(), ipc/base/wait.h)
//   |   not_full         |  WaitSet producers sleep on (marked)
//   |   join             |  WaitSet join() sleeps on
//   |   hand_offs[64]    |  one line each: consumers between releasing a slot and returning from get(),
//   |                    |  each owned by a thread (the first 48) or taken per get (the last 16)
//   +--------------------+ sizeof(MpmcHeader)
//   | slot 0             |  SlotHeader { word, length } + payload, `slot_stride` bytes (32, or a multiple of 64)
//   | slot 1             |
//   | ...                |  capacity slots, capacity a power of two
//   +--------------------+
//
// The protocol (docs/queue.md has the full argument). Each slot's 64-bit `word` packs
//   seq (40 bits: the position it is for, mod 2^40) | state (2 bits) | pid (22 bits: the claimer)
// and a slot goes round  FREE(p) -> WRITING(p, producer) -> FULL(p) -> READING(p, consumer) -> FREE(p + capacity).
// Producers and consumers claim a *slot* with a CAS on its word (so the claim records who holds it), then advance
// `tail`/`head` with a CAS that anyone may perform ("helping"): an index is only a hint of where to look, the
// slot words are the truth. A claim whose process died is found by whoever is blocked behind it (its pid no
// longer runs), and that process moves the slot on to FREE(p + capacity), counting one abandoned message.
//
// Leases. A claim CAS is a locked instruction, which a lone producer or a lone consumer does not need: nobody else
// writes the slot words it claims (FREE(p) is changed only by a producer's claim, FULL(p) only by a consumer's;
// reapers and settlers change only WRITING/READING words of dead claimers). So the first thread to claim on a side
// becomes its lease holder (`Lease::holder`, its thread identity) and claims at the hint with a plain store while
// it holds the lease. A claim by store is bracketed: the holder sets `busy`, light_fence(), reads `revoke` (and,
// producers, `closed`), and only if both are clear stores its claim word and clears `busy` (release). Another
// thread that wants to claim on that side first revokes the lease (enter_side() in mpmc_ring.cc): it sets
// `revoke`, runs a barrier on every CPU (barrier_every_cpu(), a membarrier), then waits until `busy` is clear or
// the holder's thread is gone, and marks the side kLeaseShared: from then on every claimer there, the former
// holder included, uses the CAS, as before leases. The barrier and the bracket are a Dekker pair: either the
// holder's read of `revoke` sees it set (and it claims by CAS), or the revoker sees `busy` and waits out that one
// claim. A consumer that finds the ring empty and closed does the same wait on the producers' lease before its
// second look (see closed_after_claim()). A holder killed inside the bracket leaves `busy` set: the revoker's
// liveness check of the holder's thread ends the wait, and its claimed slot is reaped like any dead claimer's. The
// lease of a holder whose thread is gone passes to the next claimer. A process takes leases only where they pay
// (process_takes_leases()). A shared side stays shared.
//
// Hand-offs. A consumer has copied its message out before it frees the slot, but its get() has not returned: the
// wake-up of sleeping producers (a futex syscall, where SIGKILL is most often delivered) still follows. So that a
// consumer killed there is counted too, it first arms a hand-off entry HANDOFF(pos, pid), then frees the slot,
// wakes, and disarms. For a dead pid the entry decides: whoever clears an armed entry counts the one loss (and
// first frees the slot if the consumer died before freeing it); a reaper that finds READING(pos, dead pid) with an
// armed entry settles the entry instead of counting the slot, so a loss is never counted twice. Entries
// [0, kOwnedHandOffs) are owned by a thread: taken once (a CAS of `owner` from 0, or from a thread that is gone,
// checked with tgkill(pid, tid, 0)), then armed and disarmed with plain stores, so a get costs one atomic
// read-modify-write (the slot claim). A thread that finds every owned entry held by a live thread arms one of the
// transient entries [kOwnedHandOffs, kHandOffs) with a CAS per get instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ipc/base/checked_math.h"
#include "ipc/queue/detail/test_hook.h"
#include "ipc/base/wait.h"

namespace ipc::detail {

inline constexpr uint64_t kMpmcMagic = 0x4e4d505f4d504d43ull;  // "NMP_MPMC"
inline constexpr uint32_t kMpmcVersion = 10;  // 2: hand-offs; 3: message type; 4: healing WaitSet; 5: owned hand-offs;
                                              // 6: marked waits (notify_marked); 7: half-line slots;
                                              // 8: hand-offs hold the claim word; 9: leases; 10: counted_lap

enum SlotState : uint64_t { kSlotFree = 0, kSlotWriting = 1, kSlotFull = 2, kSlotReading = 3 };

inline constexpr int kPidBits = 22;  // PID_MAX_LIMIT is 2^22: every Linux pid fits
inline constexpr int kStateBits = 2;
inline constexpr int kSeqBits = 64 - kPidBits - kStateBits;
inline constexpr uint64_t kSeqMask = (uint64_t{1} << kSeqBits) - 1;
inline constexpr uint64_t kPidMask = (uint64_t{1} << kPidBits) - 1;

constexpr uint64_t make_word(uint64_t pos, SlotState s, uint32_t pid) {
  return ((pos & kSeqMask) << (kPidBits + kStateBits)) | (uint64_t{s} << kPidBits) | (pid & kPidMask);
}
constexpr SlotState word_state(uint64_t w) { return SlotState((w >> kPidBits) & 3); }
constexpr uint32_t word_pid(uint64_t w) { return static_cast<uint32_t>(w & kPidMask); }
// (seq of w) - pos, as a signed distance modulo 2^40.
constexpr int64_t seq_diff(uint64_t w, uint64_t pos) {
  const uint64_t d = ((w >> (kPidBits + kStateBits)) - pos) & kSeqMask;
  return d >= (uint64_t{1} << (kSeqBits - 1)) ? static_cast<int64_t>(d) - (int64_t{1} << kSeqBits)
                                               : static_cast<int64_t>(d);
}
static_assert(seq_diff(make_word(5, kSlotFull, 7), 5) == 0);
static_assert(seq_diff(make_word(3, kSlotFull, 7), 5) == -2);
static_assert(seq_diff(make_word(0, kSlotFree, 0), kSeqMask) == 1, "sequence numbers wrap");
static_assert(word_pid(make_word(9, kSlotReading, 4194303)) == 4194303);
static_assert(word_state(make_word(9, kSlotReading, 4194303)) == kSlotReading);

// Length value marking a record that carries no message (a typed put whose encoder threw after claiming).
inline constexpr uint32_t kSkipRecord = 0xffffffffu;

struct SlotHeader {
  std::atomic<uint64_t> word;  // seq | state | pid, see above
  uint32_t length;             // payload bytes; written by the claiming producer, read by the claiming consumer
  // JoinableQueue: lap_tag() of the position for which the producer holding the slot added its value to
  // `unfinished` (MpmcRing::count_put()); any other value: it did not. 0 in every other kind of queue.
  std::atomic<uint32_t> counted_lap;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "slot words must be lock-free in shared memory");
// A slot's counted_lap for position `pos` of a ring of `capacity` slots (a power of two): its lap, plus one, so
// that the zero a slot starts with names no lap. A tag left from an earlier lap equals this one only 2^32 laps later.
constexpr uint32_t lap_tag(uint64_t pos, uint64_t capacity) {
  return static_cast<uint32_t>(pos >> std::countr_zero(capacity)) + 1;
}
static_assert(std::is_standard_layout_v<SlotHeader> && sizeof(SlotHeader) == 16);

// A consumer between freeing its slot and returning from get(): `word` is the consumer's claim word, READING(pos,
// pid), while armed (never 0), 0 otherwise. `owner` names the thread that owns the entry, thread_identity(pid,
// tid), 0 when nobody does (always 0 for the transient entries). Its own cache line, so that consumers in
// different processes arming at once do not share one.
struct alignas(64) HandOff {
  std::atomic<uint64_t> word;
  std::atomic<uint64_t> owner;
};
inline constexpr uint32_t kHandOffs = 64;       // consumers that can be in the window at once before one waits
inline constexpr uint32_t kOwnedHandOffs = 48;  // of which owned by a thread; the rest are taken per get
// Of the transient entries, those a held MessageView may keep armed (MpmcRing::try_begin_release); the other four
// stay for the gets of threads that own no entry, which hold one only for a moment.
inline constexpr uint32_t kViewHandOffs = 12;
static_assert(kViewHandOffs < kHandOffs - kOwnedHandOffs);
// How long a get waits for a transient entry while every one is armed (by live processes, or so an overwritten
// table says) before it goes on without one (MpmcRing::arm_transient_hand_off).
inline constexpr std::chrono::milliseconds kTransientHandOffWait{100};
// An armed entry holds the claim word itself, so that a get arms it with the value its claim CAS wrote.
constexpr uint64_t make_hand_off(uint64_t pos, uint32_t pid) { return make_word(pos, kSlotReading, pid); }
constexpr uint32_t hand_off_pid(uint64_t h) { return word_pid(h); }
constexpr uint64_t hand_off_seq(uint64_t h) { return h >> (kPidBits + kStateBits); }
constexpr uint64_t thread_identity(uint32_t pid, uint32_t tid) { return uint64_t{pid} << 32 | tid; }
constexpr uint32_t identity_pid(uint64_t id) { return static_cast<uint32_t>(id >> 32); }
constexpr uint32_t identity_tid(uint64_t id) { return static_cast<uint32_t>(id); }
static_assert(hand_off_pid(make_hand_off(kSeqMask, 4194303)) == 4194303);
static_assert(hand_off_seq(make_hand_off(kSeqMask + 6, 1)) == 5, "positions are kept mod 2^40, as in slot words");
static_assert(make_hand_off(0, 0) != 0, "an armed entry is never 0");
static_assert(identity_tid(thread_identity(7, 4194303)) == 4194303 && identity_pid(thread_identity(7, 9)) == 7);
static_assert(sizeof(HandOff) == 64);
static_assert(kOwnedHandOffs < kHandOffs, "a thread that cannot own an entry needs a transient one");

// This thread's identity (thread_identity(pid, tid)), cached per thread and refreshed after a fork(). Never 0.
uint64_t this_thread_identity_slow() noexcept;
inline uint64_t this_thread_identity() noexcept {
  struct Cached {
    uint32_t pid;
    uint64_t id;
  };
  static thread_local constinit Cached cached{0, 0};
  if (cached.pid != self_pid()) [[unlikely]] cached = {self_pid(), this_thread_identity_slow()};
  return cached.id;
}

// The hand-off entry a thread owns in each ring it got from lately: a few rings per thread, direct-mapped by the
// header's address. Checked against the entry's `owner` on every use (the ring may have been replaced by another
// at the same address). index == kNoOwnedEntry: every owned entry was held by a live thread when this thread
// last looked; it uses transient entries and looks again after `retry_after` more gets.
struct OwnedHandOffCache {
  static constexpr uint32_t kWays = 4;
  static constexpr uint32_t kNoOwnedEntry = ~0u;
  struct Way {
    const void* ring = nullptr;
    uint64_t owner = 0;
    uint32_t index = 0;
    uint32_t retry_after = 0;
  };
  // The entry this thread used last: in ring `ring`, taken for identity `owner`. Looked at before the ways: one
  // compare of the ring and one load of the entry's owner on the common path. A fork()ed child forgets its copy
  // (forget_last_in_fork_child(), mpmc_ring.cc): it has an identity of its own, while the entry still names its
  // parent's.
  struct Last {
    const void* ring = nullptr;
    HandOff* entry = nullptr;
    uint64_t owner = 0;
  };
  static Last& last() {
    static thread_local constinit Last l{};
    return l;
  }
  Way ways[kWays];
  static Way& way_for(const void* ring) {
    static thread_local constinit OwnedHandOffCache cache{};
    const auto a = reinterpret_cast<uintptr_t>(ring);
    return cache.ways[((a >> 6) ^ (a >> 12) ^ (a >> 20)) % kWays];
  }
};

// Whether threads of this process take leases: where light_fence() is only a compiler barrier (registered for
// membarrier), a claim by store saves the CAS's locked instruction; elsewhere it would cost a full fence, no less
// than the CAS, so the side is marked shared at the first claim. A TSan build takes them with full fences (the
// fences ipc/base/wait.cc uses there), so that its runs cover the lease protocol.
bool process_takes_leases() noexcept;

// One side's lease (producers or consumers; see "Leases" above). Its own cache line: the holder writes `busy` on
// every claim, and the line stays in its cache while nobody else claims on that side.
struct alignas(64) Lease {
  std::atomic<uint64_t> holder;  // kLeaseFree, the holder's thread_identity(), or kLeaseShared
  std::atomic<uint32_t> busy;    // 1 while the holder is inside a claim by store; written by the holder only
  std::atomic<uint32_t> revoke;  // 1 once another thread asked to claim on this side
  // Producers' lease only: 1 once a consumer that found the ring closed waited out the holder's claim by store
  // (claims_by_store_done()). Every bracket after that wait reads `closed` set, so later consumers need not wait.
  std::atomic<uint32_t> closed_fenced;
  uint32_t reserved;
  // Consumers' lease only, written by the holder only: how far its gets may ask for slot lines ahead
  // (MpmcRing::ask_for_lines_ahead()). Positions below `lines_ahead_end` were claimed by a producer (and are
  // written, or nearly) when the holder last looked at the tail hint; it looks again at position `look_again_at`
  // at the earliest once a look found no run to ask for.
  std::atomic<uint64_t> lines_ahead_end;
  std::atomic<uint64_t> look_again_at;
};
inline constexpr uint64_t kLeaseFree = 0;
inline constexpr uint64_t kLeaseShared = ~uint64_t{0};  // every claimer uses the CAS (no thread identity is ~0)
static_assert(sizeof(Lease) == 64);

inline constexpr size_t kTypeNameBytes = 192;

struct MpmcHeader {
  // Constants, written once before the ring can be found.
  uint64_t magic;
  uint32_t version;
  uint32_t flags;                 // kFlag* below
  uint64_t capacity;              // slots, a power of two
  uint64_t slot_stride;           // bytes per slot: 32, or a multiple of 64 (stride_for())
  uint64_t max_payload_bytes;     // payload room per slot
  uint64_t type_size;             // sizeof(T) for typed fixed-size queues, 0 for byte queues (checked on open)
  std::atomic<uint32_t> closed;   // 0 open, 1 closed
  uint32_t reserved;
  std::atomic<uint64_t> abandoned;   // messages lost to processes that died holding a claim
  std::atomic<int64_t> unfinished;   // JoinableQueue: puts minus task_done() calls
  // MessageQueue::create<T>: a hash of the message type's full name (codec_type_name<T>()), and the name itself,
  // NUL-terminated, shortened to fit. Zero for an untyped queue.
  uint64_t type_fingerprint;
  char type_name[kTypeNameBytes];

  alignas(64) std::atomic<uint64_t> tail;  // hint: next position to produce (written by all producers)
  alignas(64) std::atomic<uint64_t> head;  // hint: next position to consume (written by all consumers)
  Lease producers;
  Lease consumers;
  alignas(64) WaitSet not_empty;
  WaitSet not_full;
  WaitSet join;
  HandOff hand_offs[kHandOffs];

  static constexpr uint32_t kFlagJoinable = 1;  // puts count into `unfinished`
  static constexpr uint32_t kFlagBytes = 2;     // variable-size messages (MessageQueue)
};
static_assert(offsetof(MpmcHeader, tail) % 64 == 0 && offsetof(MpmcHeader, head) % 64 == 0);
static_assert(offsetof(MpmcHeader, head) - offsetof(MpmcHeader, tail) >= 64, "tail and head on their own lines");
static_assert(offsetof(MpmcHeader, producers) - offsetof(MpmcHeader, head) >= 64);
static_assert(offsetof(MpmcHeader, not_empty) - offsetof(MpmcHeader, consumers) >= 64);
static_assert(sizeof(MpmcHeader) % 64 == 0);
static_assert(std::is_standard_layout_v<MpmcHeader>);
static_assert(std::atomic<int64_t>::is_always_lock_free);

// This process's pid as it goes into a claim word: self_pid_after_setup() (an MpmcRing exists only in a process
// that set up), which the compiler may take to fit in kPidBits (Linux pids are below PID_MAX_LIMIT, 2^22).
[[gnu::always_inline]] inline uint32_t claimer_pid() noexcept {
  const uint32_t pid = self_pid_after_setup();
  if (pid > kPidMask) __builtin_unreachable();
  return pid;
}

// What one non-blocking claim attempt found.
enum class Claim { kOk, kFull, kEmpty, kBusy };

// A process-local view of a ring: the base address in this process and a few constants copied out of the header.
class MpmcRing {
 public:
  MpmcRing() = default;
  // The geometry is read once, here (checked_mpmc() validated it): a header overwritten later cannot move a slot
  // or a payload outside the block.
  explicit MpmcRing(void* block) : h_(static_cast<MpmcHeader*>(block)) {
    // The one place the queues over this ring (Queue, JoinableQueue, MessageQueue) set the process up: every
    // handle is made here, and the hot paths read this process's pid with claimer_pid().
    ensure_process_setup();
    mask_ = h_->capacity - 1;
    stride_ = h_->slot_stride;
    slots_ = reinterpret_cast<std::byte*>(h_) + sizeof(MpmcHeader);
    length_limit_ = static_cast<uint32_t>(std::min<uint64_t>(max_payload(), kSkipRecord - 1));
  }

  // Both throw InvalidArgument when the size does not fit in 64 bits.
  // A slot of up to 16 payload bytes takes half a cache line; larger ones take whole lines. Two small slots to a
  // line halve the lines that move between a producer and a consumer streaming through the ring (Queue 1 -> 1
  // between processes: +15-20% when the two run on separate cores); consumers of neighbouring slots then share a
  // line (Queue 2 -> 2 measured the same within its spread; docs/queue.md).
  static uint64_t stride_for(uint64_t payload_bytes) {
    const uint64_t bytes = checked_add(sizeof(SlotHeader), payload_bytes, "queue slot");
    return bytes <= kHalfLineSlot ? kHalfLineSlot : checked_round_up(bytes, 64, "queue slot");
  }
  static constexpr uint64_t kHalfLineSlot = 32;
  // Whether `stride` is one stride_for() can produce (checked on attach).
  static constexpr bool valid_stride(uint64_t stride) {
    return stride == kHalfLineSlot || (stride != 0 && stride % 64 == 0);
  }
  static uint64_t bytes_needed(uint64_t capacity, uint64_t payload_bytes) {
    return checked_add(sizeof(MpmcHeader), checked_mul(capacity, stride_for(payload_bytes), "queue"), "queue");
  }
  // Builds a ring in `block` (bytes_needed() bytes, 64-byte aligned). REQUIRES: capacity a power of two.
  static void init(void* block, uint64_t capacity, uint64_t payload_bytes, uint64_t type_size, uint32_t flags);

  MpmcHeader& header() const { return *h_; }
  bool valid() const { return h_ != nullptr; }
  uint64_t capacity() const { return mask_ + 1; }
  // More steps than one claim walk takes in a live queue (each step is another process's progress or a skip).
  uint64_t walk_limit() const { return 4 * capacity() + 1024; }
  // Payload bytes a slot holds (from the geometry read at attach, not from the shared header).
  uint64_t max_payload() const { return stride_ - sizeof(SlotHeader); }
  // The longest message a slot can carry: max_payload(), and below kSkipRecord, so that `length <= length_limit()`
  // tells a deliverable message from both a skip record and a length overwritten behind the queue's back.
  uint32_t length_limit() const { return length_limit_; }

  SlotHeader& slot(uint64_t pos) const { return *reinterpret_cast<SlotHeader*>(slots_ + (pos & mask_) * stride_); }
  std::byte* payload(uint64_t pos) const { return payload(slot(pos)); }
  static std::byte* payload(SlotHeader& s) { return reinterpret_cast<std::byte*>(&s) + sizeof(SlotHeader); }

  // Claims the next free slot for writing. kOk: `pos` is ours (state WRITING) until publish(pos). kFull: no free
  // slot. kBusy: no free slot, and the next one is still claimed by a consumer (or a producer) of the previous
  // lap. `check_dead`: look at the claimer of a slot we are stuck behind and reap it if it died.
  // kBusy also while another thread's lease on the producers cannot be revoked yet (its holder is inside a
  // claim, e.g. stopped there by a debugger). Any process; lock-free.
  // The first look is inline: the slot at the tail hint free for that position, claimed at once. Anything else
  // (a stale hint, a full ring, a dead claimer) is the walk in mpmc_ring.cc.
  [[gnu::always_inline]] Claim try_claim_write(uint64_t& pos, bool check_dead) const {
    if (!may_claim_by_cas(h_->producers)) [[unlikely]] return Claim::kBusy;
    SlotHeader* claimed;
    if (claim_write_at_hint(pos, claimed)) [[likely]] return Claim::kOk;
    return walk_claim_write(pos, check_dead);
  }
  // The first look of try_claim_write() alone: the slot at the tail hint, claimed if it is free for that position.
  // True: `claimed` is the claimed slot, `pos` its position; false when this look claimed nothing (then
  // try_claim_write() says why). For a caller that keeps the walk out of line. Any process; a load and a CAS.
  // REQUIRES: the producers' side is shared (holder kLeaseShared), or may_claim_by_cas() said yes.
  [[gnu::always_inline]] bool claim_write_at_hint(uint64_t& pos, SlotHeader*& claimed) const {
    // relaxed: the tail is only a hint; the slot word's acquire load below orders everything that matters.
    pos = h_->tail.load(std::memory_order_relaxed);
    SlotHeader& s = slot(pos);
    // acquire: partner is the consumer's release store of FREE(pos) in release_read(), so its payload reads
    // happen before our payload writes.
    uint64_t w = s.word.load(std::memory_order_acquire);
    // seq_cst on success: see walk_claim_write().
    if (w == make_word(pos, kSlotFree, 0) &&
        s.word.compare_exchange_strong(w, make_word(pos, kSlotWriting, claimer_pid()), std::memory_order_seq_cst,
                                       std::memory_order_relaxed)) [[likely]] {
      advance(h_->tail, pos);
      claimed = &s;
      return true;
    }
    return false;
  }

  // claim_write_at_hint() by the producers' lease holder: a store instead of the CAS (see "Leases" above). False
  // when the lease was revoked, the ring closed or the slot at the hint is not free for it: then the holder takes
  // the way of every claimer (try_claim_write()). REQUIRES: this thread holds the producers' lease.
  [[gnu::always_inline]] bool claim_write_leased(uint64_t& pos, SlotHeader*& claimed) const {
    Lease& lease = h_->producers;
    // relaxed: ordered by light_fence() against the revoker's barrier (or the closing consumer's); only this
    // thread writes `busy`.
    lease.busy.store(1, std::memory_order_relaxed);
    light_fence();
    bool ok = false;
    // relaxed `revoke`: see above. seq_cst `closed`: the holder's half of the close protocol with a lease
    // (claims_by_store_done()); a plain load on x86.
    if (lease.revoke.load(std::memory_order_relaxed) == 0 && h_->closed.load(std::memory_order_seq_cst) == 0)
        [[likely]] {
      test_hook(HookPoint::kPutByStore);
      pos = h_->tail.load(std::memory_order_relaxed);  // relaxed: a hint, which only this thread writes now
      SlotHeader& s = slot(pos);
      // acquire: partner is the consumer's release store of FREE(pos), as in claim_write_at_hint().
      if (s.word.load(std::memory_order_acquire) == make_word(pos, kSlotFree, 0)) [[likely]] {
        // relaxed: nobody else writes a FREE(pos) word while the lease holds; a consumer reads the payload only
        // after publish()'s release store.
        s.word.store(make_word(pos, kSlotWriting, claimer_pid()), std::memory_order_relaxed);
        h_->tail.store(pos + 1, std::memory_order_relaxed);  // relaxed: a hint
        claimed = &s;
        ok = true;
      }
    }
    // release: partner is the acquire load of `busy` in wait_out_claim_by_store(): whoever waited this claim out
    // sees its word.
    lease.busy.store(0, std::memory_order_release);
    return ok;
  }

  // Whether the slot of position `pos` is free for it or a later lap (consumers are past pos - capacity). Any
  // process; a load.
  bool free_for(uint64_t pos) const {
    // relaxed: a hint for when to try a claim; the claim's own acquire load orders what matters.
    return seq_diff(slot(pos).word.load(std::memory_order_relaxed), pos) >= 0;
  }

  // Whether the slot of position `pos` has held its message: it is full, being read, or gone round to a later lap.
  // Any process; a load.
  bool filled_for(uint64_t pos) const {
    // relaxed: a hint for when to try a claim, as free_for().
    const uint64_t w = slot(pos).word.load(std::memory_order_relaxed);
    const int64_t d = seq_diff(w, pos);
    return d > 0 || (d == 0 && word_state(w) >= kSlotFull);
  }

  // JoinableQueue's put, inside its write (the slot claimed for writing, the close checked): adds the value to
  // `unfinished`, then tags the slot as counted for its lap, before the value is published (so that a fast
  // task_done() never finds the count at zero). reap() of a producer killed holding the slot takes the value off
  // the count only when the tag says it was added: a producer killed before the count (asleep in put on a full
  // queue, say) put nothing. One killed between the two instructions leaves the count one high.
  void count_put(std::byte* payload) const {
    SlotHeader& s = *reinterpret_cast<SlotHeader*>(payload - sizeof(SlotHeader));
    // relaxed: published with the value by publish()'s release store; the task_done() that takes it off reads
    // it after acquiring that.
    h_->unfinished.fetch_add(1, std::memory_order_relaxed);
    // relaxed: our own claim word; the tag is read by a reaper only once we are dead.
    const uint64_t pos = s.word.load(std::memory_order_relaxed) >> (kPidBits + kStateBits);
    s.counted_lap.store(lap_tag(pos, capacity()), std::memory_order_relaxed);
  }
  // Makes a written slot visible to consumers. Producer of `pos` only; wait-free. (The forms taking the slot too,
  // here and below, are for a caller that has it: slot() is a multiply and three loads, which a caller's atomic
  // operations in between make the compiler repeat.)
  void publish(uint64_t pos, uint32_t length) const { publish(slot(pos), pos, length); }
  void publish(SlotHeader& s, uint64_t pos, uint32_t length) const {
    s.length = length;
    // release: partner is the consumer's acquire load/CAS in try_claim_read(); the payload and length are visible.
    s.word.store(make_word(pos, kSlotFull, 0), std::memory_order_release);
    notify_marked(h_->not_empty);
  }

  // Claims the next full slot for reading. kOk: `pos` is ours (state READING) until release_read(pos). kEmpty:
  // nothing to read. kBusy: the next message is being written (`obstacle` = its producer's pid).
  // kBusy also as try_claim_write() (the consumers' lease). Any process; lock-free.
  // As try_claim_write: the first look inline, the walk in mpmc_ring.cc.
  [[gnu::always_inline]] Claim try_claim_read(uint64_t& pos, bool check_dead) const {
    if (!may_claim_by_cas(h_->consumers)) [[unlikely]] return Claim::kBusy;
    SlotHeader* claimed;
    uint64_t claim_word;
    if (claim_read_at_hint(pos, claimed, claim_word)) [[likely]] return Claim::kOk;
    return walk_claim_read(pos, check_dead);
  }
  // The first look of try_claim_read() alone, as claim_write_at_hint(); `claim_word` is the READING word it wrote
  // (for release_read()). REQUIRES: as claim_write_at_hint(), for the consumers' side.
  [[gnu::always_inline]] bool claim_read_at_hint(uint64_t& pos, SlotHeader*& claimed, uint64_t& claim_word) const {
    pos = h_->head.load(std::memory_order_relaxed);  // relaxed: the head is only a hint, see try_claim_write
    SlotHeader& s = slot(pos);
    // acquire: partner is publish()'s release store; the payload is visible once we see FULL(pos).
    uint64_t w = s.word.load(std::memory_order_acquire);
    claim_word = make_word(pos, kSlotReading, claimer_pid());
    // acquire on success: same partner as the load above.
    if (w == make_word(pos, kSlotFull, 0) &&
        s.word.compare_exchange_strong(w, claim_word, std::memory_order_acquire, std::memory_order_relaxed))
        [[likely]] {
      advance(h_->head, pos);
      claimed = &s;
      return true;
    }
    return false;
  }

  // claim_read_at_hint() by the consumers' lease holder, as claim_write_leased(). REQUIRES: this thread holds the
  // consumers' lease.
  [[gnu::always_inline]] bool claim_read_leased(uint64_t& pos, SlotHeader*& claimed, uint64_t& claim_word) const {
    Lease& lease = h_->consumers;
    lease.busy.store(1, std::memory_order_relaxed);  // relaxed: as in claim_write_leased()
    light_fence();
    bool ok = false;
    if (lease.revoke.load(std::memory_order_relaxed) == 0) [[likely]] {  // relaxed: as in claim_write_leased()
      test_hook(HookPoint::kGetByStore);
      pos = h_->head.load(std::memory_order_relaxed);  // relaxed: a hint, which only this thread writes now
      SlotHeader& s = slot(pos);
      // acquire: partner is publish()'s release store; the payload is visible once we see FULL(pos).
      if (s.word.load(std::memory_order_acquire) == make_word(pos, kSlotFull, 0)) [[likely]] {
        claim_word = make_word(pos, kSlotReading, claimer_pid());
        s.word.store(claim_word, std::memory_order_relaxed);  // relaxed: nobody else writes a FULL(pos) word now
        h_->head.store(pos + 1, std::memory_order_relaxed);  // relaxed: a hint
        claimed = &s;
        ok = true;
      }
    }
    lease.busy.store(0, std::memory_order_release);  // release: as in claim_write_leased()
    if (ok && (pos * stride_) % 64 == 0) ask_for_lines_ahead(lease, pos);
    return ok;
  }

  // A lone consumer streaming behind its producer misses on every slot line it reaches: the producer wrote it
  // last, and the claim and the release write it again (a read that brings the line in shared is followed by a
  // second round trip to own it). So a leased get that starts a new line asks for the line kLinesAheadBytes on
  // for writing (ipc::prefetch_for_write), if the producer is done with it: it lies below the tail hint the holder
  // last read, one slot short of it (a lone producer publishes in order; the slot before the tail may be being
  // written). The tail hint is read again only when the line passes what the holder knew, and, when that look finds
  // the producer too close (the ring nearly empty: asking would take lines the producer is writing), not before
  // kLookAgainSlots more gets. Queue 1 -> 1 where the CPUs are far apart: 47-53 M msgs/s without, 78-89 M with
  // (docs/queue.md). Only a hint: nothing any thread reads changes. REQUIRES: this thread holds the consumers' lease.
  [[gnu::always_inline]] void ask_for_lines_ahead(Lease& lease, uint64_t pos) const {
    const uint64_t ahead = pos + std::max<uint64_t>(1, kLinesAheadBytes / stride_);
    const uint64_t line_end = ahead + std::max<uint64_t>(1, 64 / stride_);  // past the last slot of that line
    // relaxed: only this thread writes the window while it holds the lease, and it is only a hint.
    if (line_end >= lease.lines_ahead_end.load(std::memory_order_relaxed) && !look_at_tail(lease, pos, line_end))
        [[unlikely]] {
      return;
    }
    prefetch_for_write(&slot(ahead));
  }
  static constexpr uint64_t kLinesAheadBytes = kPrefetchAheadBytes;
  static constexpr uint64_t kLookAgainSlots = 256;
  // ask_for_lines_ahead() past what the holder knew: reads the tail hint (unless it looked too recently) and
  // returns whether the slots before `line_end` are written. Out of line: once per lap of a ring kept full.
  [[gnu::noinline]] bool look_at_tail(Lease& lease, uint64_t pos, uint64_t line_end) const;

  // The holder of the producers' (consumers') lease: kLeaseShared when every claimer there uses the CAS, this
  // thread's identity (this_thread_identity()) when it may claim by store. One load, for the inline first look.
  [[gnu::always_inline]] uint64_t producers_holder() const { return holder(h_->producers); }
  [[gnu::always_inline]] uint64_t consumers_holder() const { return holder(h_->consumers); }

  // For a consumer that found the ring empty and closed, before it looks again (the close protocol, see
  // closed_after_claim()): waits out a claim by store of the producers' lease holder that may have missed the
  // close. False when that claim may still be in flight (its holder stopped inside it): the caller looks again
  // later instead of reporting the ring drained. Slow path: a barrier on every CPU when a lease is held, once per
  // ring (Lease::closed_fenced). REQUIRES: the caller saw the ring closed.
  bool claims_by_store_done() const;

  // Returns a read slot whose message the caller has taken to producers. The message counts as delivered once
  // this returns; a consumer killed inside is counted in abandoned() (see "Hand-offs" above). Consumer of `pos`
  // only; lock-free. `claim_word`: the READING word of the claim (what the hand-off entry is armed with).
  void release_read(uint64_t pos) const { release_read(slot(pos), pos, make_hand_off(pos, claimer_pid())); }
  [[gnu::always_inline]] void release_read(SlotHeader& s, uint64_t pos, uint64_t claim_word) const {
    HandOff& entry = arm_hand_off(claim_word);
    free_slot(s, pos);
    test_hook(HookPoint::kGetReleased);
    notify_marked(h_->not_full);
    // release: partner is the acquire load in settle(); nothing of ours is touched after this.
    entry.word.store(0, std::memory_order_release);
  }
  // Returns a read slot that carried no message (a skip record): nothing to count if we die. Consumer only.
  void release_skip(uint64_t pos) const { release_skip(slot(pos), pos); }
  void release_skip(SlotHeader& s, uint64_t pos) const {
    free_slot(s, pos);
    notify_marked(h_->not_full);
  }

  // Abandons a claimed write without a message (an encoder threw): consumers skip it.
  void publish_skip(uint64_t pos) const { publish(pos, kSkipRecord); }
  void publish_skip(SlotHeader& s, uint64_t pos) const { publish(s, pos, kSkipRecord); }

  bool closed() const {
    // acquire: partner is close()'s store; a closed ring stays closed.
    return h_->closed.load(std::memory_order_acquire) != 0;
  }
  // The close protocol (mpmc_ops.h). A producer re-checks `closed` after claiming its slot and gives the slot up
  // when it is set; a consumer that found the ring empty and closed looks at the ring once more. With the claim
  // CAS, this load, close()'s store and the consumer's fence all seq_cst, either the producer sees the close (and
  // its put fails), or the consumer's second look sees the claimed slot (and waits for the message): a put that
  // succeeded is never left behind a get that returned kClosed. A lease holder's claim by store is no seq_cst RMW:
  // it reads `closed` inside its claim bracket instead, and the consumer, after its fence, waits that claim out
  // (claims_by_store_done()) before its second look.
  bool closed_after_claim() const { return h_->closed.load(std::memory_order_seq_cst) != 0; }
  void close() const;

  uint64_t size_approx() const {
    // relaxed: an estimate by definition.
    const uint64_t t = h_->tail.load(std::memory_order_relaxed);
    const uint64_t hd = h_->head.load(std::memory_order_relaxed);
    return t > hd ? (t - hd > capacity() ? capacity() : t - hd) : 0;
  }
  // Messages lost to dead processes. First settles the hand-offs of consumers that died inside release_read(),
  // so the count is complete when this returns. Any process; slow (a liveness check per armed hand-off).
  uint64_t abandoned() const;

  // release_read() in two halves, for a consumer that keeps reading its message after the slot is free
  // (MessageQueue's MessageView of a message in its arena): try_begin_release() frees the slot and leaves the
  // hand-off entry armed until end_release(), so that a consumer killed in between is counted once, as one
  // killed while returning. The entry is one of the kViewHandOffs transient entries a view may keep (this
  // thread's owned entry serves its next get), so at most that many consumers hold one at once. Never waits:
  // when none is free (even after settling those of dead consumers) it returns nullptr, and the slot is still
  // READING and the caller's, to release as a get does. Consumer of `pos` only; lock-free.
  HandOff* try_begin_release(uint64_t pos) const {
    HandOff* entry = try_arm_view_hand_off(make_hand_off(pos, claimer_pid()));
    if (entry == nullptr) return nullptr;
    free_slot(pos);
    test_hook(HookPoint::kGetReleased);
    notify_marked(h_->not_full);
    return entry;
  }
  void end_release(HandOff& entry) const {
    // release: partner is the acquire load in settle() and in message_gone().
    entry.word.store(0, std::memory_order_release);
  }

  // Whether the message at `pos` is gone: its slot moved past `pos` (taken, or its claim reaped) and no consumer
  // holds it through an armed hand-off (try_begin_release). A dead claimer of the slot, or a dead consumer's armed
  // entry, is reaped or settled first (counted once in abandoned()). For MessageQueue's arena, whose pages live
  // as long as their message. Any process; slow path (liveness checks, a look at every hand-off entry).
  bool message_gone(uint64_t pos) const {
    SlotHeader& s = slot(pos);
    // acquire: partner is the release that moved the slot on (free_slot, reap); an entry armed before it is seen.
    uint64_t w = s.word.load(std::memory_order_acquire);
    const SlotState state = word_state(w);
    if (seq_diff(w, pos) == 0 && (state == kSlotWriting || state == kSlotReading) && reap(s, w)) {
      w = s.word.load(std::memory_order_acquire);  // acquire: as above
    }
    if (seq_diff(w, pos) == 0) return false;
    for (HandOff& e : h_->hand_offs) {
      const uint64_t h = e.word.load(std::memory_order_acquire);  // acquire: as in reap()
      if (h == 0 || hand_off_seq(h) != (pos & kSeqMask)) continue;
      if (!process_dead(hand_off_pid(h))) return false;
      settle(e, h);
    }
    return true;
  }

 private:
  static uint64_t holder(const Lease& lease) {
    // relaxed: a side marked shared stays shared, and claims by CAS need nothing ordered before them; only this
    // thread makes itself the holder, and only another thread's revocation takes the lease away, which the claim
    // bracket checks.
    return lease.holder.load(std::memory_order_relaxed);
  }
  // Whether this thread may claim on the side of `lease` by CAS now: the side is shared, or this thread holds its
  // lease; else enter_side() settles the lease first. Inline, a load, on a shared side.
  [[gnu::always_inline]] bool may_claim_by_cas(Lease& lease) const {
    return holder(lease) == kLeaseShared || enter_side(lease);
  }
  // The lease of a side that is not shared: takes it when free (or its holder's thread is gone), acknowledges a
  // revocation of our own lease, or revokes another thread's. True once this thread may claim there by CAS; false
  // when the holder is still inside a claim by store after a short wait. Slow path.
  bool enter_side(Lease& lease) const;
  // Waits until the holder `holder` of `lease` is outside any claim by store that may have missed a flag set
  // before this call (`revoke`, `closed`): a barrier on every CPU, then until `busy` reads clear, the holder's
  // thread is gone or the lease changed hands. False when the holder is still inside after a short wait.
  bool wait_out_claim_by_store(Lease& lease, uint64_t holder) const;

  // Moves an index hint from `pos` to `pos + 1` unless someone already moved it. A load and a store, not a CAS,
  // so that a put or get costs one atomic read-modify-write (the slot claim): two claimers racing here may move
  // the hint back to an older position, which only costs the next claimer a few steps forward over slots that
  // are already taken (seq_diff > 0 above); the slot words, not the hints, decide every claim.
  static void advance(std::atomic<uint64_t>& index, uint64_t pos) {
    // relaxed: indices are hints; the slot words carry the synchronisation.
    if (index.load(std::memory_order_relaxed) == pos) index.store(pos + 1, std::memory_order_relaxed);
  }
  // The next position to look at after `pos`, whose slot word `w` is for a later position (pos was claimed), with
  // the index hint moved there. A slot whose word is for position q has gone round from q - capacity, which was
  // consumed, and positions are claimed in order: nothing before q - capacity + 1 is left to claim. Jumping there
  // (or to the hint, if further) instead of stepping one position at a time bounds the walk to about `capacity`
  // steps, also when the hint was left far behind or a word was overwritten in shared memory (which would
  // otherwise walk up to 2^39 positions: a hang). Like advance(), a load and a store: a racing claimer may move
  // the hint back a little, never past a position still to claim.
  uint64_t skip_claimed(std::atomic<uint64_t>& index, uint64_t pos, uint64_t w) const {
    const uint64_t word_pos = pos + static_cast<uint64_t>(seq_diff(w, pos));
    const uint64_t consumed_before = word_pos >= capacity() ? word_pos - capacity() + 1 : 0;
    // relaxed: indices are hints; the slot words carry the synchronisation.
    const uint64_t hint = index.load(std::memory_order_relaxed);
    const uint64_t next = std::max({pos + 1, consumed_before, hint});
    if (hint < next) index.store(next, std::memory_order_relaxed);
    return next;
  }
  // If the process holding slot `s` (whose word was `w`: WRITING or READING) is dead, frees the slot for the next
  // lap and counts an abandoned message. Returns true when the slot changed (reaped by us or anyone), so the caller
  // looks again. Slow path: a liveness check (claimer_dead()).
  bool reap(SlotHeader& s, uint64_t w) const;
  void free_slot(uint64_t pos) const { free_slot(slot(pos), pos); }
  void free_slot(SlotHeader& s, uint64_t pos) const {
    // release: partner is the producer's acquire load/CAS in try_claim_write(); our payload reads are done.
    s.word.store(make_word(pos + capacity(), kSlotFree, 0), std::memory_order_release);
  }
  // The claim walks behind try_claim_write()/try_claim_read(): from the index hint over stale and reaped slots.
  Claim walk_claim_write(uint64_t& pos, bool check_dead) const;
  Claim walk_claim_read(uint64_t& pos, bool check_dead) const;
  // Arms a hand-off entry with `armed` for a get of this thread and returns it: the entry this thread owns in this
  // ring, inline when it is the one it used last; else arm_hand_off_slow().
  [[gnu::always_inline]] HandOff& arm_hand_off(uint64_t armed) const {
    const OwnedHandOffCache::Last& last = OwnedHandOffCache::last();
    // relaxed: only a thread that is gone loses its entry to another, so while we live it holds our identity,
    // unless the ring at this address was replaced (then the owner differs, and we take an entry again).
    if (last.ring == h_ && last.entry->owner.load(std::memory_order_relaxed) == last.owner) [[likely]] {
      // release: partner is the acquire loads in reap(), settle() and abandoned(): a settler that sees the entry
      // armed sees what this consumer did before. A plain store: only the owner writes an owned entry's word while
      // it lives, and it found the word 0 when it took the entry.
      last.entry->word.store(armed, std::memory_order_release);
      return *last.entry;
    }
    return MpmcRing(*this).arm_hand_off_slow(armed);  // a copy: the caller's handle stays in registers
  }
  // arm_hand_off() past the thread's last entry: its owned entry from owned_hand_off_from_ways() (a plain store),
  // else a transient one (arm_transient_hand_off()).
  HandOff& arm_hand_off_slow(uint64_t armed) const;
  // The hand-off entry this thread owns in this ring, or nullptr when it has none (every owned entry is held by a
  // live thread): the ways of its cache, else take_owned_hand_off(). Records what it found as the thread's last
  // entry.
  HandOff* owned_hand_off_from_ways() const;
  // Finds or takes an owned entry for thread `me` (its own from before, a free one, or one whose thread is gone,
  // settling the dead owner's armed hand-off first) and records it in `way`. Slow path: liveness checks.
  HandOff* take_owned_hand_off(OwnedHandOffCache::Way& way, uint64_t me) const;
  // Arms a free transient entry with `armed` (a CAS). Waits (yielding) only if all of them are in use, at most
  // kTransientHandOffWait: then (an overwritten table, or more consumers in the window than entries, held up
  // that long) it returns an entry of this thread outside the table, so that the get completes; a death in its
  // window then goes uncounted.
  HandOff& arm_transient_hand_off(uint64_t armed) const;
  // Arms a free entry of the kViewHandOffs a view may keep, settling those of dead consumers if none is free;
  // nullptr when all are held by live ones. Never waits.
  HandOff* try_arm_view_hand_off(uint64_t armed) const;
  // For an entry armed by a dead consumer: frees its slot if it had not, clears the entry and counts the loss
  // once (whoever clears the entry counts). REQUIRES: the entry's pid is dead.
  void settle(HandOff& entry, uint64_t armed) const;
  // settle() for each armed entry in hand_offs[first, end) whose consumer is dead.
  void settle_dead_entries(uint32_t first, uint32_t end) const;
  // The loss of one message: the counter, a joinable queue's unfinished count (unless `counted` is false: a
  // producer that died before it counted its value), and the waiters that care.
  void count_abandoned(bool counted = true) const;

  MpmcHeader* h_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t stride_ = 0;
  std::byte* slots_ = nullptr;
  uint32_t length_limit_ = 0;
};

}  // namespace ipc::detail

#include "ipc/queue/detail/mpmc_ring.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <new>
#include <thread>

namespace ipc::detail {

std::atomic<TestHook> g_test_hook{nullptr};

void MpmcRing::init(void* block, uint64_t capacity, uint64_t payload_bytes, uint64_t type_size, uint32_t flags) {
  auto* h = new (block) MpmcHeader{};
  h->magic = kMpmcMagic;
  h->version = kMpmcVersion;
  h->flags = flags;
  h->capacity = capacity;
  h->slot_stride = stride_for(payload_bytes);
  h->max_payload_bytes = h->slot_stride - sizeof(SlotHeader);
  h->type_size = type_size;
  auto* slots = static_cast<std::byte*>(block) + sizeof(MpmcHeader);
  for (uint64_t i = 0; i < capacity; ++i) {
    auto* s = new (slots + i * h->slot_stride) SlotHeader{};
    // relaxed: the block is published to other processes later, by the segment's lock or a fork().
    s->word.store(make_word(i, kSlotFree, 0), std::memory_order_relaxed);
  }
}

bool MpmcRing::look_at_tail(Lease& lease, uint64_t pos, uint64_t line_end) const {
  // relaxed: the window is only a hint, written by this thread alone while it holds the lease.
  if (pos < lease.look_again_at.load(std::memory_order_relaxed)) return false;
  // relaxed: the tail is a hint; the slot words decide every claim, and a line asked for early is only a hint.
  const uint64_t tail = h_->tail.load(std::memory_order_relaxed);
  lease.lines_ahead_end.store(tail, std::memory_order_relaxed);
  if (line_end < tail) return true;
  lease.look_again_at.store(pos + kLookAgainSlots, std::memory_order_relaxed);
  return false;
}

void MpmcRing::close() const {
  // seq_cst: partner is closed_after_claim() (see there) and the acquire load in closed().
  h_->closed.store(1, std::memory_order_seq_cst);
  notify_all(h_->not_empty);
  notify_all(h_->not_full);
  notify_all(h_->join);
}

void MpmcRing::count_abandoned(bool counted) const {
  h_->abandoned.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter, nothing is published with it
  if (counted && (h_->flags & MpmcHeader::kFlagJoinable)) {
    // The lost message will never be task_done()'d: account for it so that join() can return.
    if (h_->unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) notify_all(h_->join);
  }
}

namespace {

// How long a verdict "alive" on a claimer stays good in the thread that reached it. Whoever is stuck behind a live
// claimer (a producer preempted between claiming and publishing, for a whole time slice) asks again on every
// attempt; with the verdict cached, that costs a clock read instead of kill() plus a /proc read. A claimer that dies
// is reaped at most this much later, against the kMaxSleep a sleeping waiter may take to notice anyway.
constexpr std::chrono::microseconds kAliveVerdict{200};

// Whether the claimer `pid` died: process_dead(), unless this thread found `pid` alive less than kAliveVerdict ago.
bool claimer_dead(uint32_t pid) {
  struct Verdict {
    uint32_t pid = 0;
    Deadline::Clock::time_point until{};
  };
  thread_local Verdict alive;
  const auto now = Deadline::Clock::now();
  if (alive.pid == pid && now < alive.until) return false;
  if (process_dead(pid)) return true;
  alive = {pid, now + kAliveVerdict};
  return false;
}

}  // namespace

Claim MpmcRing::walk_claim_write(uint64_t& pos, bool check_dead) const {
  const uint32_t me = self_pid();
  // relaxed: the tail is only a hint; the slot word's acquire load below orders everything that matters.
  pos = h_->tail.load(std::memory_order_relaxed);
  for (uint64_t steps = 0;; ++steps) {
    // Slot words overwritten in shared memory can send the walk round in a circle (found by
    // message_queue_fuzz): past any bound a live queue needs, the slot counts as busy, and the caller waits.
    if (steps > walk_limit()) return Claim::kBusy;
    SlotHeader& s = slot(pos);
    // acquire: partner is the consumer's release store of FREE(pos) in release_read(), so its payload reads
    // happen before our payload writes.
    uint64_t w = s.word.load(std::memory_order_acquire);
    const int64_t d = seq_diff(w, pos);
    if (d == 0 && word_state(w) == kSlotFree) {
      // seq_cst on success: acquire as for the load above, and ordered before the producer's seq_cst load of
      // `closed` in mpmc_put() against close()'s seq_cst store (see closed_after_claim()). The CAS records our
      // pid as the claimer. (A locked cmpxchg on x86 either way.)
      if (s.word.compare_exchange_weak(w, make_word(pos, kSlotWriting, me), std::memory_order_seq_cst,
                                       std::memory_order_relaxed)) {
        advance(h_->tail, pos);
        return Claim::kOk;
      }
      continue;
    }
    if (d >= 0) {  // position pos already claimed by another producer: the tail hint is stale
      pos = skip_claimed(h_->tail, pos, w);
      continue;
    }
    // d < 0: the slot still holds the previous lap.
    const bool claimed = word_state(w) == kSlotReading || word_state(w) == kSlotWriting;
    if (check_dead && claimed && reap(s, w)) continue;
    const uint64_t t = h_->tail.load(std::memory_order_relaxed);  // relaxed: hint, see above
    if (t != pos) {
      pos = t;
      continue;
    }
    return claimed ? Claim::kBusy : Claim::kFull;
  }
}

Claim MpmcRing::walk_claim_read(uint64_t& pos, bool check_dead) const {
  const uint32_t me = self_pid();
  pos = h_->head.load(std::memory_order_relaxed);  // relaxed: the head is only a hint, see try_claim_write
  for (uint64_t steps = 0;; ++steps) {
    if (steps > walk_limit()) return Claim::kBusy;  // see try_claim_write
    SlotHeader& s = slot(pos);
    // acquire: partner is publish()'s release store; the payload is visible once we see FULL(pos).
    uint64_t w = s.word.load(std::memory_order_acquire);
    const int64_t d = seq_diff(w, pos);
    if (d == 0) {
      switch (word_state(w)) {
        case kSlotFull:
          // acquire on success: same partner as the load above.
          if (s.word.compare_exchange_weak(w, make_word(pos, kSlotReading, me), std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
            advance(h_->head, pos);
            return Claim::kOk;
          }
          continue;
        case kSlotReading:  // another consumer has it: the head hint is stale
          advance(h_->head, pos);
          pos = h_->head.load(std::memory_order_relaxed);
          continue;
        case kSlotWriting:
          if (check_dead && reap(s, w)) continue;
          if (const uint64_t hd = h_->head.load(std::memory_order_relaxed); hd != pos) {
            pos = hd;
            continue;
          }
          return Claim::kBusy;
        case kSlotFree:
          if (const uint64_t hd = h_->head.load(std::memory_order_relaxed); hd != pos) {
            pos = hd;
            continue;
          }
          return Claim::kEmpty;
      }
    }
    if (d > 0) {  // position pos consumed (or reaped) already: the head hint is stale
      pos = skip_claimed(h_->head, pos, w);
      continue;
    }
    // d < 0: the slot still holds the previous lap; nothing produced for pos yet.
    if (const uint64_t hd = h_->head.load(std::memory_order_relaxed); hd != pos) {
      pos = hd;
      continue;
    }
    return Claim::kEmpty;
  }
}

bool MpmcRing::reap(SlotHeader& s, uint64_t w) const {
  const uint32_t pid = word_pid(w);
  if (!claimer_dead(pid)) return false;
  const uint64_t slot_pos = w >> (kPidBits + kStateBits);  // the position the claim was for (mod 2^40)
  if (word_state(w) == kSlotReading) {
    // A consumer that armed a hand-off for this slot died between arming and freeing: the entry owns the loss.
    const uint64_t armed = make_hand_off(slot_pos, pid);
    for (HandOff& e : h_->hand_offs) {
      // acquire: partner is arm_hand_off()'s CAS (the dead consumer's last writes are visible).
      if (e.word.load(std::memory_order_acquire) == armed) {
        settle(e, armed);
        return true;
      }
    }
  }
  // acq_rel: acquire pairs with the dead claimer's CAS (we take over its slot); release pairs with the next
  // claimer's acquire, like free_slot(). Only one reaper wins, so the loss is counted once.
  // A producer's value is in a joinable queue's unfinished count once its tag says so (count_put()); a consumer's
  // always is. Read before the slot is freed, after the claimer's death made its writes final.
  // relaxed: the dead producer wrote it before it died; the CAS below decides who counts.
  const bool counted = word_state(w) != kSlotWriting ||
                       s.counted_lap.load(std::memory_order_relaxed) == lap_tag(slot_pos, capacity());
  if (s.word.compare_exchange_strong(w, make_word(slot_pos + capacity(), kSlotFree, 0), std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
    count_abandoned(counted);
    notify(h_->not_full);
    notify(h_->not_empty);
  }
  return true;
}

namespace {

// Gets a thread that found no owned entry free makes with transient ones before it looks for an owned entry again.
constexpr uint32_t kRetryOwnedAfter = 4096;

// Whether the thread `id` (thread_identity) has ended: gone from its process, or its process dead (a zombie's
// threads still answer tgkill).
bool thread_gone(uint64_t id) {
  const uint32_t pid = identity_pid(id);
  if (::syscall(SYS_tgkill, static_cast<pid_t>(pid), static_cast<pid_t>(identity_tid(id)), 0) != 0 && errno == ESRCH) {
    return true;
  }
  return process_dead(pid);
}

}  // namespace

bool process_takes_leases() noexcept {
#if defined(__SANITIZE_THREAD__)
  return true;
#else
  return asymmetric_fences();
#endif
}

namespace {

// Where the kernel refuses the barrier (membarrier) in this process, a store the lease holder made before it read
// our flag reaches the other CPUs in nanoseconds (store buffers drain as fast as the memory system takes them), so
// waiting this long before reading its `busy` stands in for the barrier. Only processes with different seccomp
// filters get here: the holder's process registered for membarrier, ours may not call it.
constexpr std::chrono::milliseconds kStoreBufferDrain{1};

}  // namespace

bool MpmcRing::wait_out_claim_by_store(Lease& lease, uint64_t holder) const {
  if (!barrier_every_cpu()) std::this_thread::sleep_for(kStoreBufferDrain);
  // A claim by store takes nanoseconds: spin for about as long as a context switch, then yield to a holder that
  // may share our CPU, then ask whether it is gone (killed inside its claim).
  constexpr int kSpins = 1024;
  constexpr int kYields = 64;
  for (int i = 0; i < kSpins + kYields; ++i) {
    // acquire: partner is the holder's release store clearing `busy`, or the release CAS that moved the lease on:
    // the claim word it stored is visible to our claims.
    if (lease.busy.load(std::memory_order_acquire) == 0 || lease.holder.load(std::memory_order_acquire) != holder) {
      return true;
    }
    if (i < kSpins) {
      cpu_relax();
    } else {
      yield_cpu();
    }
  }
  return thread_gone(holder);
}

bool MpmcRing::enter_side(Lease& lease) const {
  const uint64_t me = this_thread_identity();
  // acquire: partner is the CAS that set the holder (a taker's, or a revoker's after its wait).
  uint64_t holder = lease.holder.load(std::memory_order_acquire);
  for (;;) {
    if (holder == kLeaseShared) return true;
    if (holder == me) {
      // relaxed: a revocation we do not see yet is seen by our next claim bracket; our claims by CAS are right
      // either way.
      if (lease.revoke.load(std::memory_order_relaxed) == 0) return true;
      // Revoked: we claim by CAS from now on (our brackets see `revoke`); mark the side shared for the revoker.
      // acq_rel: as the revoker's CAS below.
      if (lease.holder.compare_exchange_strong(holder, kLeaseShared, std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
        return true;
      }
      continue;
    }
    // A holder word no thread can have (memory overwritten behind the queue's back) counts as gone.
    const bool impossible = identity_pid(holder) > kPidMask || identity_tid(holder) > kPidMask;
    if (holder == kLeaseFree || impossible || thread_gone(holder)) {
      // A free lease, or one whose holder's thread ended (its process killed, maybe inside a claim by store: that
      // claim is reaped like any dead claimer's). Taken, unless a revocation is pending or this process does not
      // take leases: then the side becomes shared.
      const bool take = process_takes_leases() && lease.revoke.load(std::memory_order_relaxed) == 0;
      // seq_cst: the taker's half of the close protocol (claims_by_store_done()): a consumer that found the lease
      // free after the close, before this CAS, is followed by our brackets' seq_cst loads of `closed`, which see it.
      if (lease.holder.compare_exchange_strong(holder, take ? me : kLeaseShared, std::memory_order_seq_cst,
                                               std::memory_order_acquire)) {
        return true;
      }
      continue;
    }
    // Another live thread holds the lease: revoke it. seq_cst: before the barrier in wait_out_claim_by_store().
    if (lease.revoke.load(std::memory_order_relaxed) == 0) lease.revoke.store(1, std::memory_order_seq_cst);
    if (!wait_out_claim_by_store(lease, holder)) return false;
    test_hook(HookPoint::kRevoked);
    // acq_rel: release pairs with the acquire loads of the holder above (claimers after us find the side shared);
    // acquire with the CAS that made `holder` the holder.
    if (lease.holder.compare_exchange_strong(holder, kLeaseShared, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      return true;
    }
  }
}

bool MpmcRing::claims_by_store_done() const {
  Lease& lease = h_->producers;
  // acquire: partner is the release store below; the claims that wait saw finished are visible to our next look.
  if (lease.closed_fenced.load(std::memory_order_acquire) != 0) return true;
  // seq_cst: after the caller's seq_cst fence that follows its look at `closed`; see enter_side() for a lease
  // taken after this load.
  const uint64_t holder = lease.holder.load(std::memory_order_seq_cst);
  if (holder == kLeaseFree || holder == kLeaseShared) return true;
  test_hook(HookPoint::kCloseWaitOut);
  if (!wait_out_claim_by_store(lease, holder)) return false;
  // The ring was closed before our barrier, so every bracket after it reads `closed` set and claims nothing by
  // store (as does a later holder, whose taking CAS is seq_cst: see enter_side()). release: the claim we waited
  // out is visible to whoever reads the flag.
  lease.closed_fenced.store(1, std::memory_order_release);
  return true;
}

uint64_t this_thread_identity_slow() noexcept {
  return thread_identity(self_pid(), static_cast<uint32_t>(::syscall(SYS_gettid)));
}

namespace {

// A fork()ed child's copy of the forking thread's last entry names its parent's entry, whose owner is still the
// parent's identity: the child forgets it, and its first get finds or takes an entry for its own identity.
void forget_last_in_fork_child() { OwnedHandOffCache::last() = {}; }

}  // namespace

HandOff& MpmcRing::arm_hand_off_slow(uint64_t armed) const {
  if (HandOff* entry = owned_hand_off_from_ways()) {
    // release: as in arm_hand_off().
    entry->word.store(armed, std::memory_order_release);
    return *entry;
  }
  return arm_transient_hand_off(armed);
}

HandOff* MpmcRing::owned_hand_off_from_ways() const {
  OwnedHandOffCache::Way& way = OwnedHandOffCache::way_for(h_);
  const uint64_t me = this_thread_identity();
  HandOff* entry = nullptr;
  if (way.ring == h_ && way.owner == me && way.index != OwnedHandOffCache::kNoOwnedEntry &&
      // relaxed: only a thread that is gone loses its entry to another, so while we live it holds our identity,
      // unless the ring at this address was replaced (then we take an entry again).
      h_->hand_offs[way.index].owner.load(std::memory_order_relaxed) == me) {
    entry = &h_->hand_offs[way.index];
  } else if (way.ring == h_ && way.owner == me && way.index == OwnedHandOffCache::kNoOwnedEntry &&
             way.retry_after-- != 0) {
    return nullptr;  // every owned entry was held by a live thread lately: a transient one, without looking again
  } else {
    entry = take_owned_hand_off(way, me);
  }
  // Registered before the first entry is recorded as the thread's last, once per process (a child inherits the
  // registration). Without the handler a child would arm its parent's entry through last(), so nothing is recorded
  // there: the entry still serves through the ways above, which compare this thread's identity, pid included.
  static const bool forgets_in_children = pthread_atfork(nullptr, nullptr, forget_last_in_fork_child) == 0;
  if (entry && forgets_in_children) OwnedHandOffCache::last() = {h_, entry, me};
  return entry;
}

HandOff* MpmcRing::take_owned_hand_off(OwnedHandOffCache::Way& way, uint64_t me) const {
  way = {h_, me, OwnedHandOffCache::kNoOwnedEntry, kRetryOwnedAfter};
  HandOff* const owned = h_->hand_offs;
  auto take = [&](uint32_t i) {
    way.index = i;
    return &owned[i];
  };
  // An entry this thread owns already: the cache forgot it, or a thread before us had our identity (a thread of
  // this process with our tid, which returned from its last get; or, with pids reused, a killed process that may
  // have left its entry armed: settled first, as below, since we are not inside a get ourselves).
  for (uint32_t i = 0; i < kOwnedHandOffs; ++i) {
    // acquire: pairs with the owner CAS of whoever wrote our identity there (its armed word is visible).
    if (owned[i].owner.load(std::memory_order_acquire) != me) continue;
    const uint64_t armed = owned[i].word.load(std::memory_order_acquire);  // acquire: as in reap()
    if (armed != 0) settle(owned[i], armed);
    return take(i);
  }
  for (uint32_t i = 0; i < kOwnedHandOffs; ++i) {
    uint64_t expected = 0;
    // acq_rel: acquire pairs with the clearing of the word by whoever settled it last; release publishes our claim.
    if (owned[i].owner.load(std::memory_order_relaxed) == 0 &&
        owned[i].owner.compare_exchange_strong(expected, me, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      return take(i);
    }
  }
  // Every owned entry is taken: some may belong to threads that are gone (or processes that died).
  for (uint32_t i = 0; i < kOwnedHandOffs; ++i) {
    uint64_t owner = owned[i].owner.load(std::memory_order_acquire);  // acquire: as the CAS below
    if (owner == me || owner == 0 || !thread_gone(owner)) continue;
    // acq_rel: only one taker wins an entry; acquire makes the gone owner's last stores (its armed word) visible.
    if (!owned[i].owner.compare_exchange_strong(owner, me, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      continue;
    }
    // A process killed inside get() leaves its entry armed: settle it (count the loss once) before arming ours.
    // Afterwards the word is 0: settlers only ever clear it.
    const uint64_t armed = owned[i].word.load(std::memory_order_acquire);  // acquire: as in reap()
    if (armed != 0) settle(owned[i], armed);
    return take(i);
  }
  return nullptr;
}

HandOff& MpmcRing::arm_transient_hand_off(uint64_t armed) const {
  constexpr uint32_t kTransient = kHandOffs - kOwnedHandOffs;
  // Start where this thread succeeded last time: that line is then usually still in our cache and free.
  thread_local uint32_t hint = static_cast<uint32_t>(syscall(SYS_gettid)) % kTransient;
  std::chrono::steady_clock::time_point give_up{};
  for (uint32_t round = 0;; ++round) {
    for (uint32_t k = 0; k < kTransient; ++k) {
      HandOff& e = h_->hand_offs[kOwnedHandOffs + (hint + k) % kTransient];
      uint64_t expected = 0;
      // relaxed load: a cheap look before the CAS. acq_rel CAS: release so that a settler that sees the entry
      // also sees everything before it; acquire pairs with the previous holder's clearing store.
      if (e.word.load(std::memory_order_relaxed) == 0 &&
          e.word.compare_exchange_strong(expected, armed, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        hint = (hint + k) % kTransient;
        return e;
      }
    }
    // Every transient entry in use: some may belong to dead consumers.
    settle_dead_entries(kOwnedHandOffs, kHandOffs);
    const auto now = std::chrono::steady_clock::now();
    if (round == 0) {
      give_up = now + kTransientHandOffWait;
    } else if (now >= give_up) {
      // No settler ever looks at this one: the caller's window goes uncounted, but its get completes.
      thread_local HandOff outside_the_table{};
      outside_the_table.word.store(armed, std::memory_order_relaxed);  // relaxed: no other thread reads it
      return outside_the_table;
    } else {
      yield_cpu();
    }
  }
}

HandOff* MpmcRing::try_arm_view_hand_off(uint64_t armed) const {
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t k = kOwnedHandOffs; k < kOwnedHandOffs + kViewHandOffs; ++k) {
      HandOff& e = h_->hand_offs[k];
      uint64_t expected = 0;
      // As in arm_transient_hand_off().
      if (e.word.load(std::memory_order_relaxed) == 0 &&
          e.word.compare_exchange_strong(expected, armed, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        return &e;
      }
    }
    if (pass == 1) break;
    // Every one in use: some may belong to dead consumers.
    settle_dead_entries(kOwnedHandOffs, kOwnedHandOffs + kViewHandOffs);
  }
  return nullptr;
}

void MpmcRing::settle_dead_entries(uint32_t first, uint32_t end) const {
  for (uint32_t k = first; k < end; ++k) {
    HandOff& e = h_->hand_offs[k];
    const uint64_t h = e.word.load(std::memory_order_acquire);  // acquire: as in reap()
    if (h != 0 && process_dead(hand_off_pid(h))) settle(e, h);
  }
}

void MpmcRing::settle(HandOff& entry, uint64_t armed) const {
  const uint64_t pos = hand_off_seq(armed);
  SlotHeader& s = slot(pos);
  uint64_t reading = make_word(pos, kSlotReading, hand_off_pid(armed));
  // Died before freeing: free the slot for it (no count here: the entry below counts). acq_rel as in reap().
  if (s.word.compare_exchange_strong(reading, make_word(pos + capacity(), kSlotFree, 0), std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
    notify(h_->not_full);
  }
  // acq_rel: whoever clears the entry counts; the acquire pairs with arm_hand_off()'s release.
  if (entry.word.compare_exchange_strong(armed, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    count_abandoned();
  }
}

uint64_t MpmcRing::abandoned() const {
  settle_dead_entries(0, kHandOffs);
  return h_->abandoned.load(std::memory_order_relaxed);  // relaxed: a counter, nothing is published with it
}

}  // namespace ipc::detail

#include "ipc/queue/detail/mpmc_ring.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <new>

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

void MpmcRing::close() const {
  // seq_cst: partner is closed_after_claim() (see there) and the acquire load in closed().
  h_->closed.store(1, std::memory_order_seq_cst);
  notify_all(h_->not_empty);
  notify_all(h_->not_full);
  notify_all(h_->join);
}

void MpmcRing::count_abandoned() const {
  h_->abandoned.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter, nothing is published with it
  if (h_->flags & MpmcHeader::kFlagJoinable) {
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
  if (s.word.compare_exchange_strong(w, make_word(slot_pos + capacity(), kSlotFree, 0), std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
    count_abandoned();
    notify(h_->not_full);
    notify(h_->not_empty);
  }
  return true;
}

HandOff& MpmcRing::arm_hand_off(uint64_t pos) const {
  const uint32_t me = self_pid();
  const uint64_t armed = make_hand_off(pos, me);
  // Start where this thread succeeded last time: that line is then usually still in our cache and free.
  thread_local uint32_t hint = static_cast<uint32_t>(syscall(SYS_gettid)) % kHandOffs;
  for (uint32_t round = 0;; ++round) {
    for (uint32_t k = 0; k < kHandOffs; ++k) {
      HandOff& e = h_->hand_offs[(hint + k) % kHandOffs];
      uint64_t expected = 0;
      // relaxed load: a cheap look before the CAS. acq_rel CAS: release so that a settler that sees the entry
      // also sees everything before it; acquire pairs with the previous holder's clearing store.
      if (e.word.load(std::memory_order_relaxed) == 0 &&
          e.word.compare_exchange_strong(expected, armed, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        hint = (hint + k) % kHandOffs;
        return e;
      }
    }
    // Every entry in use: some may belong to dead consumers.
    for (HandOff& e : h_->hand_offs) {
      const uint64_t h = e.word.load(std::memory_order_acquire);  // acquire: as in reap()
      if (h != 0 && process_dead(hand_off_pid(h))) settle(e, h);
    }
    if (round > 0) yield_cpu();
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
  for (HandOff& e : h_->hand_offs) {
    const uint64_t h = e.word.load(std::memory_order_acquire);  // acquire: as in reap()
    if (h != 0 && process_dead(hand_off_pid(h))) settle(e, h);
  }
  return h_->abandoned.load(std::memory_order_relaxed);  // relaxed: a counter, nothing is published with it
}

}  // namespace ipc::detail

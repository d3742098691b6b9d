// ipc/sync/barrier.h: Barrier, a process-shared rendezvous of a fixed number of parties, that breaks instead of
// hanging when a party dies.
//
// Happens-before: everything each party did before its wait() happens before everything any party does after a
// wait() of the same generation returns kOk (the action, if any, runs after all arrivals and before all
// releases).
//
// Threads: any thread of any process may be a party; each wait() is one arrival.
// Processes: lives in shared memory (a Segment, by name, or any MAP_SHARED mapping; address-free).
//   While a party waits it holds a robust per-waiter slot mutex; waiting parties re-check every
//   kLivenessCheckInterval whether another waiting party's slot mutex reports its owner dead. A party that dies
//   while waiting therefore breaks the barrier within about that interval: every other waiter returns kBroken
//   and later waits return kBroken until reset(). A party that dies *before* arriving cannot be told from a slow
//   one: pass a timeout, or have the supervisor that sees it exit call abort().
// Lifetime: create() in a Segment or construct in place once. The barrier stays broken (abort, timeout, dead
//   party, failed action) until reset().
// Errors: passed (kOk), broken (kBroken) and timed out (kTimeout) are results (BarrierWait); a missing name throws
//   NotFound; parties outside 1..kMaxParties throws InvalidArgument. An action that throws breaks the barrier and
//   its exception propagates to the party that ran it (the others get kBroken). OS failures throw SystemError.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "ipc/base/futex.h"
#include "ipc/segment/named.h"
#include "ipc/sync/internal/robust_mutex.h"
#include "ipc/sync/lock.h"

namespace ipc {

// kOk and kTimeout mean what ipc::Outcome's do (ipc/base/error.h); kBroken is the barrier's own.
enum class BarrierStatus {
  kOk,       // passed: every party arrived; index says in which order this one did
  kTimeout,  // this party's timeout passed; the barrier is now broken for everyone
  kBroken,   // the barrier is (or became) broken: aborted, another party timed out or died, or reset() ran
};

struct [[nodiscard]] BarrierWait {
  BarrierStatus status;
  uint32_t index;  // kOk only: 0 for the first arrival .. parties-1 for the last (which ran the action)
  bool passed() const { return status == BarrierStatus::kOk; }
};

// Why a barrier is broken.
enum class BrokenReason : uint32_t { kNone, kAborted, kTimeout, kPartyDied, kActionFailed };
const char* to_string(BrokenReason r);

class Barrier {
 public:
  static constexpr BlockKind kKind{block_kind_tag("BARR"), "Barrier"};
  static constexpr uint32_t kMaxParties = 64;
  static constexpr std::chrono::milliseconds kLivenessCheckInterval{100};

  static Barrier& create(Segment& segment, std::string_view name, uint32_t parties) {
    return create_named<Barrier>(segment, name, parties);
  }
  static Barrier& open(Segment& segment, std::string_view name) {
    return open_named<Barrier>(segment, name);
  }

  // REQUIRES: 1 <= parties <= kMaxParties (else InvalidArgument).
  explicit Barrier(uint32_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Arrives and waits for the other parties, up to `timeout` (nullopt: forever). Any thread, any process.
  BarrierWait wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return wait_impl(Deadline::from(timeout), nullptr, nullptr);
  }
  // As wait(); the last party to arrive runs `action()` before releasing the others (Python passes the action to
  // the constructor; a callable cannot live in shared memory, so here each party passes it).
  template <typename F>
  BarrierWait wait_with_action(F&& action, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return wait_impl(Deadline::from(timeout), [](void* f) { (*static_cast<std::remove_reference_t<F>*>(f))(); },
                     &action);
  }

  // Breaks the barrier: current and later waiters get kBroken until reset(). Any process.
  void abort();
  // Back to the initial state; parties waiting now get kBroken. Any process.
  void reset();

  uint32_t parties() const { return parties_; }
  // Parties waiting in the current generation (a snapshot).
  uint32_t n_waiting_approx() const { return count_.load(std::memory_order_relaxed); }
  bool broken() const { return broken_reason() != BrokenReason::kNone; }
  BrokenReason broken_reason() const {
    return static_cast<BrokenReason>(broken_reason_.load(std::memory_order_relaxed));  // a snapshot
  }

 private:
  enum SlotState : uint32_t { kFree, kWaiting, kReleasedPassed, kReleasedBroken };
  // One per waiting party. The waiter holds `mutex` for as long as it waits, so a dead waiter is visible to
  // others as EOWNERDEAD on try_lock. `state` is written under mu_ and read by its waiter without it.
  struct Slot {
    sync_internal::RobustMutex mutex{sync_internal::RobustMutex::Kind::kNormal};
    std::atomic<uint32_t> state{kFree};
  };
  // Waiters of one generation plus woken waiters of the previous one that have not left yet.
  static constexpr uint32_t kSlots = 2 * kMaxParties;

  BarrierWait wait_impl(const Deadline& deadline, void (*action)(void*), void* action_ctx);
  void lock_state();
  Slot* claim_slot();
  bool find_dead_waiter(const Slot* mine);
  void release_waiters(SlotState outcome);
  void break_locked(BrokenReason reason);

  uint32_t parties_;
  Lock mu_;  // guards count_, broken_reason_ and every slot's state
  // Arrivals in the current generation. Written under mu_; relaxed because mu_ orders it (read unlocked only by
  // n_waiting_approx).
  std::atomic<uint32_t> count_{0};
  std::atomic<uint32_t> broken_reason_{static_cast<uint32_t>(BrokenReason::kNone)};  // as count_
  // The futex word waiters sleep on: bumped (release) after slot states change, so that a waiter that reads the
  // new value (acquire) also sees its slot's new state.
  std::atomic<uint32_t> phase_{0};
  Slot slots_[kSlots];
};

static_assert(std::is_standard_layout_v<Barrier>, "Barrier lives in shared memory");
static_assert(std::atomic<uint32_t>::is_always_lock_free);

}  // namespace ipc

// ipc/sync/condition.h: Condition, a process-shared condition variable with its own robust Lock.
//
// Happens-before: everything a thread did while holding the lock before notify() happens before everything a
// waiter it wakes does after wait() returns (the waiter re-acquires the same lock).
//
// Threads: any thread may wait and notify, holding lock() (as Python requires; waiting or notifying without it
//   throws StateError).
// Processes: lives in shared memory (a Segment, by name, or any MAP_SHARED mapping; address-free). Built from a
//   robust Lock and a futex sequence word, not a pthread_cond_t: a process killed in the middle of a
//   pthread_cond_wait can leave a shared pthread_cond_t wedged, while here a dead waiter simply stops being a
//   kernel futex waiter, so notify(n) still wakes n live ones. One killed after a notify woke it, while it waits
//   to re-acquire the lock, takes that wake-up with it (as in Python): notify_all() reaches every live waiter.
// Lifetime: create() in a Segment or construct in place once. A process that dies holding the lock is reported
//   to the next acquirer, including a waiter re-acquiring it on its way out of wait(): then wait() returns
//   kOwnerDied, the caller holds the lock and must repair and mark_consistent() (see lock.h). A process that dies
//   while waiting leaves nothing behind.
// Errors: timeout and owner death are results (ipc::Outcome: kOk, kTimeout, kOwnerDied). Waiting or notifying
//   without holding the lock throws StateError; the rest as Lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/base/futex.h"
#include "ipc/segment/named.h"
#include "ipc/sync/lock.h"

namespace ipc {

class Condition {
 public:
  static constexpr BlockKind kKind{block_kind_tag("COND"), "Condition"};

  static Condition& create(Segment& segment, std::string_view name) {
    return create_named<Condition>(segment, name);
  }
  static Condition& open(Segment& segment, std::string_view name) {
    return open_named<Condition>(segment, name);
  }
  static Condition& open_or_create(Segment& segment, std::string_view name) {
    return open_or_create_named<Condition>(segment, name);
  }

  Condition() = default;
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // The lock that protects the condition's data (a non-recursive Lock). Use it with LockGuard.
  Lock& lock() { return lock_; }
  [[nodiscard]] Outcome acquire(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return lock_.acquire(timeout);
  }
  void release() { lock_.release(); }

  // Releases the lock, sleeps until notified or `timeout` passes, re-acquires the lock (without a timeout, as
  // Python does) and returns: kOk (woken by notify, or spuriously: re-check the condition), kTimeout, or
  // kOwnerDied (re-acquiring found the previous owner dead: repair, mark_consistent(), re-check). The lock is held
  // on return, whatever the result.
  // REQUIRES: the calling thread holds lock() (else StateError), and it is consistent.
  [[nodiscard]] Outcome wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return wait_until(Deadline::from(timeout));
  }

  // Waits until `predicate()` (called with the lock held) is true or `timeout` passes. kOk means the predicate is
  // true; kTimeout that it is still false. On kOwnerDied the predicate was not evaluated: repair,
  // mark_consistent(), then re-check.
  // REQUIRES: as wait().
  template <typename Predicate>
  [[nodiscard]] Outcome wait_for(Predicate predicate, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    Deadline deadline = Deadline::from(timeout);
    while (!predicate()) {
      Outcome r = wait_until(deadline);
      if (r == Outcome::kOwnerDied) return r;
      if (r == Outcome::kTimeout) return predicate() ? Outcome::kOk : Outcome::kTimeout;
    }
    return Outcome::kOk;
  }

  // Wakes up to `n` waiters (no system call when there are none). REQUIRES: the calling thread holds lock().
  void notify(uint32_t n = 1);
  void notify_all() { notify(UINT32_MAX); }

 private:
  Outcome wait_until(const Deadline& deadline);

  Lock lock_;
  // The futex word: bumped by every notify that has someone to wake. A waiter reads it before releasing the
  // lock and sleeps only while it is unchanged, so a notify after that release is never missed. Every access
  // happens under lock_, which orders them (relaxed is enough).
  std::atomic<uint32_t> seq_{0};
  // Waiters between taking a ticket and re-acquiring the lock; read and written only under lock_. A waiter that
  // died leaves it too high, which costs notify() one spare FUTEX_WAKE.
  uint32_t waiters_ = 0;
};

static_assert(std::is_standard_layout_v<Condition>, "Condition lives in shared memory");

}  // namespace ipc

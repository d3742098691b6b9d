#include "ipc/sync/event.h"

#include "ipc/base/futex.h"

namespace ipc {

void Event::set() {
  // Release: pairs with the acquire loads in is_set() and wait(), publishing what was written before set().
  uint32_t old = state_.exchange(kSet, std::memory_order_release);
  if (old & kHasWaiters) futex_wake_all(state_);
}

void Event::clear() {
  // Relaxed: clearing publishes nothing; kHasWaiters is kept so sleepers are still woken by the next set().
  state_.fetch_and(~kSet, std::memory_order_relaxed);
}

bool Event::is_set() const {
  return state_.load(std::memory_order_acquire) & kSet;  // acquire: pairs with set()'s release exchange
}

Outcome Event::wait(std::optional<std::chrono::nanoseconds> timeout) {
  Deadline deadline = Deadline::from(timeout);
  uint32_t s = state_.load(std::memory_order_acquire);  // acquire: pairs with set()'s release exchange
  for (;;) {
    if (s & kSet) return Outcome::kOk;
    if (!(s & kHasWaiters)) {
      // Announce a sleeper so that set() wakes; acquire on success for the same pairing as above.
      if (!state_.compare_exchange_weak(s, s | kHasWaiters, std::memory_order_acquire, std::memory_order_acquire)) {
        continue;
      }
      s |= kHasWaiters;
    }
    if (futex_wait(state_, s, deadline) == FutexWaitResult::kTimeout) {
      return is_set() ? Outcome::kOk : Outcome::kTimeout;
    }
    s = state_.load(std::memory_order_acquire);  // acquire: pairs with set()'s release exchange
  }
}

}  // namespace ipc

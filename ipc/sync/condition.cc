#include "ipc/sync/condition.h"

#include <algorithm>

namespace ipc {

Outcome Condition::wait_until(const Deadline& deadline) {
  if (!lock_.held_by_this_thread()) throw StateError("Condition::wait: the calling thread does not hold the lock");
  // Relaxed: notify() changes seq_ only under lock_, which we hold (see seq_).
  uint32_t ticket = seq_.load(std::memory_order_relaxed);
  ++waiters_;
  lock_.release();
  FutexWaitResult woke = futex_wait(seq_, ticket, deadline);
  Outcome again = lock_.acquire();
  --waiters_;
  if (again == Outcome::kOwnerDied) return Outcome::kOwnerDied;
  return woke == FutexWaitResult::kTimeout ? Outcome::kTimeout : Outcome::kOk;
}

void Condition::notify(uint32_t n) {
  if (!lock_.held_by_this_thread()) throw StateError("Condition::notify: the calling thread does not hold the lock");
  if (waiters_ == 0 || n == 0) return;
  seq_.fetch_add(1, std::memory_order_relaxed);  // relaxed: ordered by lock_ (see seq_)
  futex_wake(seq_, static_cast<int>(std::min<uint32_t>(n, INT32_MAX)));
}

}  // namespace ipc

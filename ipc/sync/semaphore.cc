#include "ipc/sync/semaphore.h"

#include <algorithm>
#include <string>

#include "ipc/base/error.h"

namespace ipc {
namespace sync_internal {
namespace {

// Spinning briefly before sleeping saves the futex round trip when a release is imminent (a holder on another
// core); short, because on 2 cores the releaser may need our core.
constexpr int kSpinIterations = 100;

}  // namespace

bool SemaphoreCore::try_acquire() {
  uint32_t v = value_.load(std::memory_order_relaxed);
  while (v > 0) {
    // Acquire: pairs with the release (fetch_add / CAS) in release() that made this unit available.
    if (value_.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
  return false;
}

bool SemaphoreCore::acquire(const Deadline& deadline) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (try_acquire()) return true;
    cpu_relax();
  }
  for (;;) {
    // Dekker pair with release(): we count ourselves (seq_cst), then read value_; release() adds units, then reads
    // sleepers_; all four seq_cst. Either release() sees us counted and wakes us, or we see its units.
    const uint32_t half = sleepers_.enter();
    if (value_.load(std::memory_order_seq_cst) == 0) {
      // The kernel re-reads the word under its lock: a release between our load and the sleep returns at once.
      // Bounded, and counted afresh for each sleep, so that the count of a waiter that dies heals (wait.h).
      (void)futex_wait(value_, 0, detail::sleep_slice(deadline));
    }
    sleepers_.leave(half);
    if (try_acquire()) return true;
    if (deadline.expired()) return false;
  }
}

void SemaphoreCore::release(uint32_t n, uint32_t max_value, const char* who) {
  if (n == 0) return;
  uint32_t limit = max_value ? max_value : Semaphore::kMaxValue;
  uint32_t v = value_.load(std::memory_order_relaxed);
  do {
    if (n > limit || v > limit - n) {
      if (max_value) {
        throw StateError(std::string(who) + "::release: released more times than acquired (value " +
                         std::to_string(v) + " + " + std::to_string(n) + " > bound " + std::to_string(max_value) +
                         ")");
      }
      throw InvalidArgument(std::string(who) + "::release: value would exceed kMaxValue");
    }
    // seq_cst: the release half pairs with try_acquire's acquire CAS; the full fence orders it before our load
    // of sleepers_ (Dekker pair with acquire()).
  } while (!value_.compare_exchange_weak(v, v + n, std::memory_order_seq_cst, std::memory_order_relaxed));
  if (sleepers_.any(std::memory_order_seq_cst) &&
      futex_wake(value_, static_cast<int>(std::min<uint32_t>(n, INT32_MAX))) == 0) {
    sleepers_.heal();  // counted, yet nobody asleep: perhaps a waiter that died (wait.h)
  }
}

}  // namespace sync_internal

Semaphore::Semaphore(uint32_t initial) : core_(initial) {
  if (initial > kMaxValue) throw InvalidArgument("Semaphore: initial value above kMaxValue");
}
Outcome Semaphore::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  return core_.acquire(Deadline::from(timeout)) ? Outcome::kOk : Outcome::kTimeout;
}
Outcome Semaphore::try_acquire() { return core_.try_acquire() ? Outcome::kOk : Outcome::kTimeout; }
void Semaphore::release(uint32_t n) { core_.release(n, 0, "Semaphore"); }

BoundedSemaphore::BoundedSemaphore(uint32_t initial) : max_value_(initial), core_(initial) {
  if (initial == 0 || initial > Semaphore::kMaxValue) {
    throw InvalidArgument("BoundedSemaphore: the initial value (the bound) must be 1..kMaxValue");
  }
}
Outcome BoundedSemaphore::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  return core_.acquire(Deadline::from(timeout)) ? Outcome::kOk : Outcome::kTimeout;
}
Outcome BoundedSemaphore::try_acquire() { return core_.try_acquire() ? Outcome::kOk : Outcome::kTimeout; }
void BoundedSemaphore::release(uint32_t n) { core_.release(n, max_value_, "BoundedSemaphore"); }

}  // namespace ipc

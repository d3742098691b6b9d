// ipc/sync/acquire_result.h: the outcome of acquiring a lock, and the error for a lock that cannot be recovered.
//
// Threads, Processes, Lifetime: plain values.
// Errors: this header defines LockNotRecoverable (a StateError).
#pragma once

#include <string>

#include "ipc/base/error.h"

namespace ipc {

// What acquiring a lock-like object produced. Every value but kTimedOut means the caller now holds the lock.
enum class AcquireResult {
  kAcquired,   // held; the previous owner released it normally
  kOwnerDied,  // held; the previous owner died holding it: check and repair the data, then mark_consistent()
  kTimedOut,   // not held: the timeout passed (or, for try_acquire, another thread holds it)
};

// True when the caller holds the lock after the call (kAcquired or kOwnerDied).
constexpr bool holds(AcquireResult r) { return r != AcquireResult::kTimedOut; }

const char* to_string(AcquireResult r);

// A lock whose owner died was released again without mark_consistent(): its data is declared unrepairable and
// every later acquire throws this. Recreate the object (and its data) to continue.
class LockNotRecoverable : public StateError {
 public:
  explicit LockNotRecoverable(const std::string& what) : StateError(what) {}
};

}  // namespace ipc

// ipc/sync/acquire_result.h: the error for a lock that cannot be recovered. Acquiring returns an ipc::Outcome
// (ipc/base/error.h): kOk, kOwnerDied (both: the caller holds the lock, see holds()) or kTimeout.
//
// Threads, Processes, Lifetime: plain values.
// Errors: this header defines LockNotRecoverable (a StateError).
#pragma once

#include <string>

#include "ipc/base/error.h"

namespace ipc {

// A lock whose owner died was released again without mark_consistent(): its data is declared unrepairable and
// every later acquire throws this. Recreate the object (and its data) to continue.
class LockNotRecoverable : public StateError {
 public:
  explicit LockNotRecoverable(const std::string& what) : StateError(what) {}
};

}  // namespace ipc

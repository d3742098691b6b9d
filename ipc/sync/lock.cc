#include "ipc/sync/lock.h"

#include <linux/futex.h>

#include <string>

#include "ipc/base/process.h"

namespace ipc::sync_internal {

namespace {

// "Lock::release", "RLock::mark_consistent": the public names, for errors.
std::string method_name(RobustMutex::Kind kind, const char* method) {
  return std::string(kind == RobustMutex::Kind::kNormal ? "Lock::" : "RLock::") + method;
}

}  // namespace

template <RobustMutex::Kind K>
void OwnedMutex<K>::on_acquired(Outcome r) {
  if (!holds(r)) return;
  // Relaxed: only this thread will compare against its own id (see owner_tid_).
  if (r == Outcome::kOwnerDied || owner_tid_.load(std::memory_order_relaxed) != this_thread_id()) {
    // First acquisition by this thread (a dead owner's depth is meaningless to us).
    owner_tid_.store(this_thread_id(), std::memory_order_relaxed);
    depth_ = 1;
  } else {
    ++depth_;
  }
}

template <RobustMutex::Kind K>
std::optional<LockOwner> OwnedMutex<K>::owner() const {
  const uint32_t word = mutex_.lock_word();
  if (const pid_t tid = static_cast<pid_t>(word & FUTEX_TID_MASK); tid != 0) {
    return LockOwner{tid, !process_dead(static_cast<uint32_t>(tid))};
  }
  // The kernel clears a dead owner's id from the word and sets OWNER_DIED; owner_tid_ still names it, since only
  // a release clears it. Relaxed: see owner_tid_.
  if (word & FUTEX_OWNER_DIED) return LockOwner{owner_tid_.load(std::memory_order_relaxed), false};
  return std::nullopt;
}

template <RobustMutex::Kind K>
Outcome OwnedMutex<K>::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  Outcome r = mutex_.lock(Deadline::from(timeout));
  on_acquired(r);
  return r;
}

template <RobustMutex::Kind K>
Outcome OwnedMutex<K>::try_acquire() {
  Outcome r = mutex_.try_lock();
  on_acquired(r);
  return r;
}

template <RobustMutex::Kind K>
void OwnedMutex<K>::release() {
  if (!held_by_this_thread()) {
    throw StateError(method_name(K, "release") + ": the calling thread does not hold this lock");
  }
  if (--depth_ == 0) owner_tid_.store(0, std::memory_order_relaxed);  // before unlocking: written only while held
  mutex_.unlock();
}

template <RobustMutex::Kind K>
void OwnedMutex<K>::mark_consistent() {
  if (!held_by_this_thread()) {
    throw StateError(method_name(K, "mark_consistent") + ": the calling thread does not hold this lock");
  }
  mutex_.mark_consistent();
}

template <RobustMutex::Kind K>
bool OwnedMutex<K>::held_by_this_thread() const {
  return owner_tid_.load(std::memory_order_relaxed) == this_thread_id();
}

template class OwnedMutex<RobustMutex::Kind::kNormal>;
template class OwnedMutex<RobustMutex::Kind::kRecursive>;

}  // namespace ipc::sync_internal

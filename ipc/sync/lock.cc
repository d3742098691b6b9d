#include "ipc/sync/lock.h"

namespace ipc {

using sync_internal::this_thread_id;

// ---- Lock

Lock::Lock() = default;

void Lock::on_acquired(Outcome r) {
  // Relaxed: only this thread will compare against its own id (see owner_tid_).
  if (holds(r)) owner_tid_.store(this_thread_id(), std::memory_order_relaxed);
}

Outcome Lock::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  Outcome r = mutex_.lock(Deadline::from(timeout));
  on_acquired(r);
  return r;
}

Outcome Lock::try_acquire() {
  Outcome r = mutex_.try_lock();
  on_acquired(r);
  return r;
}

void Lock::release() {
  if (!held_by_this_thread()) throw StateError("Lock::release: the calling thread does not hold this lock");
  owner_tid_.store(0, std::memory_order_relaxed);  // before unlocking: written only while held
  mutex_.unlock();
}

void Lock::mark_consistent() {
  if (!held_by_this_thread()) throw StateError("Lock::mark_consistent: the calling thread does not hold this lock");
  mutex_.mark_consistent();
}

bool Lock::held_by_this_thread() const {
  return owner_tid_.load(std::memory_order_relaxed) == this_thread_id();
}

// ---- RLock

RLock::RLock() = default;

void RLock::on_acquired(Outcome r) {
  if (!holds(r)) return;
  if (r == Outcome::kOwnerDied || owner_tid_.load(std::memory_order_relaxed) != this_thread_id()) {
    // First acquisition by this thread (a dead owner's depth is meaningless to us).
    owner_tid_.store(this_thread_id(), std::memory_order_relaxed);
    depth_ = 1;
  } else {
    ++depth_;
  }
}

Outcome RLock::acquire(std::optional<std::chrono::nanoseconds> timeout) {
  Outcome r = mutex_.lock(Deadline::from(timeout));
  on_acquired(r);
  return r;
}

Outcome RLock::try_acquire() {
  Outcome r = mutex_.try_lock();
  on_acquired(r);
  return r;
}

void RLock::release() {
  if (!held_by_this_thread()) throw StateError("RLock::release: the calling thread does not hold this lock");
  if (--depth_ == 0) owner_tid_.store(0, std::memory_order_relaxed);
  mutex_.unlock();
}

void RLock::mark_consistent() {
  if (!held_by_this_thread()) throw StateError("RLock::mark_consistent: the calling thread does not hold this lock");
  mutex_.mark_consistent();
}

bool RLock::held_by_this_thread() const {
  return owner_tid_.load(std::memory_order_relaxed) == this_thread_id();
}

uint32_t RLock::depth_for_this_thread() const { return held_by_this_thread() ? depth_ : 0; }

}  // namespace ipc

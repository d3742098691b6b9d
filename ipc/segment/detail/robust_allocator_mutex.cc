#include "ipc/segment/detail/robust_allocator_mutex.h"

#include <cerrno>

#include "ipc/base/error.h"

namespace ipc::segment_detail {

namespace {
constexpr const char* kPoisoned =
    "a process died while allocating or looking up a name in this segment, holding the lock of its allocator or "
    "name index; what that lock protects may be inconsistent, so it is no longer used (objects already found keep "
    "working; recreate the segment to allocate or look up names again)";
}  // namespace

void RobustAllocatorMutex::init(bool recursive) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  int r = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  if (r != 0) throw SystemError(r, "pthread_mutex_init (segment allocator)");
}

void RobustAllocatorMutex::throw_poisoned() const { throw StateError(kPoisoned); }

void RobustAllocatorMutex::poison_and_throw() {
  // release: partner is the acquire load in lock()/try_lock(); later callers fail without taking the mutex.
  poisoned_.store(1, std::memory_order_release);
  // Consistent again as a mutex, so that nobody ever blocks on it; the poisoned flag carries the bad news.
  pthread_mutex_consistent(&mutex_);
  pthread_mutex_unlock(&mutex_);
  throw_poisoned();
}

void RobustAllocatorMutex::lock() {
  // acquire: partner is the release store in poison_and_throw().
  if (poisoned_.load(std::memory_order_acquire)) throw_poisoned();
  int r = pthread_mutex_lock(&mutex_);
  if (r == EOWNERDEAD) poison_and_throw();
  if (r != 0) throw SystemError(r, "pthread_mutex_lock (segment allocator)");
  if (poisoned_.load(std::memory_order_acquire)) {  // poisoned while we waited
    pthread_mutex_unlock(&mutex_);
    throw_poisoned();
  }
}

bool RobustAllocatorMutex::try_lock() {
  if (poisoned_.load(std::memory_order_acquire)) throw_poisoned();  // acquire: as in lock()
  int r = pthread_mutex_trylock(&mutex_);
  if (r == EBUSY) return false;
  if (r == EOWNERDEAD) poison_and_throw();
  if (r != 0) throw SystemError(r, "pthread_mutex_trylock (segment allocator)");
  return true;
}

void RobustAllocatorMutex::unlock() { pthread_mutex_unlock(&mutex_); }

}  // namespace ipc::segment_detail

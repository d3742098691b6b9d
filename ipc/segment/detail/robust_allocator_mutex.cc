#include "ipc/segment/detail/robust_allocator_mutex.h"

#include <cerrno>
#include <string>

#include "ipc/base/error.h"

namespace ipc::segment_detail {

namespace {
constexpr const char* kPoisoned =
    "a process died while allocating in this segment, holding the lock of its allocator; the allocator may be "
    "inconsistent, so it is no longer used (named objects can still be found and opened, and objects already "
    "found keep working; recreate the segment to allocate again)";
}  // namespace

void init_robust_mutex(pthread_mutex_t& mutex, bool recursive, const char* what) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  int r = pthread_mutex_init(&mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (r != 0) throw SystemError(r, std::string("pthread_mutex_init (") + what + ")");
}

void RobustAllocatorMutex::init(bool recursive) { init_robust_mutex(mutex_, recursive, "segment allocator"); }

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

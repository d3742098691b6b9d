#include "ipc/sync/internal/robust_mutex.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>

#include "ipc/base/error.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace ipc::sync_internal {
namespace {

thread_local pid_t cached_tid = 0;

// A forked child's only thread inherits the parent thread's cached id; forget it there.
const int atfork_registered = pthread_atfork(nullptr, nullptr, [] { cached_tid = 0; });

void check(int rc, const char* what) {
  if (rc != 0) throw SystemError(rc, what);
}

// pthread_mutex_timedlock takes a CLOCK_REALTIME instant (ThreadSanitizer does not intercept the
// CLOCK_MONOTONIC pthread_mutex_clocklock); the caller re-checks its monotonic deadline after every ETIMEDOUT, so
// a wall-clock step shortens one slice but never the whole wait.
timespec realtime_after(Deadline::Clock::duration left) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  long long ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count() + now.tv_nsec;
  timespec at;
  at.tv_sec = now.tv_sec + static_cast<time_t>(ns / 1000000000);
  at.tv_nsec = static_cast<long>(ns % 1000000000);
  return at;
}

// ThreadSanitizer's pthread_mutex_timedlock interceptor records a lock only for a 0 result (its lock and trylock
// interceptors also handle EOWNERDEAD); tell it that EOWNERDEAD, too, means we now hold the mutex.
void note_owner_died_lock(pthread_mutex_t* m) {
#if defined(__SANITIZE_THREAD__)
  __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
  __tsan_mutex_post_lock(m, __tsan_mutex_try_lock, 0);
#else
  (void)m;
#endif
}

}  // namespace

pid_t this_thread_id() {
  (void)atfork_registered;
  if (cached_tid == 0) cached_tid = gettid();
  return cached_tid;
}

RobustMutex::RobustMutex(Kind kind) {
  pthread_mutexattr_t attr;
  check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
  // ERRORCHECK so that a relock by the owner and an unlock by a non-owner are errors rather than undefined.
  check(pthread_mutexattr_settype(&attr, kind == Kind::kRecursive ? PTHREAD_MUTEX_RECURSIVE
                                                                   : PTHREAD_MUTEX_ERRORCHECK),
        "pthread_mutexattr_settype");
  check(pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED), "pthread_mutexattr_setpshared");
  check(pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust");
  int rc = pthread_mutex_init(&mutex_, &attr);
  pthread_mutexattr_destroy(&attr);
  check(rc, "pthread_mutex_init (process-shared, robust)");
}

RobustMutex::~RobustMutex() { pthread_mutex_destroy(&mutex_); }

uint32_t RobustMutex::lock_word() const {
  // glibc's lock word is the futex the kernel's robust-list walk writes. Relaxed: a snapshot for tools, it
  // orders nothing.
  static_assert(sizeof(mutex_.__data.__lock) == sizeof(uint32_t));
  return static_cast<uint32_t>(
      std::atomic_ref<int>(const_cast<int&>(mutex_.__data.__lock)).load(std::memory_order_relaxed));
}

Outcome RobustMutex::interpret(int rc, const char* what) {
  switch (rc) {
    case 0: return Outcome::kOk;
    case EOWNERDEAD: return Outcome::kOwnerDied;
    case ETIMEDOUT:
    case EBUSY: return Outcome::kTimeout;
    case EDEADLK: throw StateError(std::string(what) + ": the calling thread already holds this lock");
    case ENOTRECOVERABLE:
      throw LockNotRecoverable(std::string(what) +
                               ": a previous owner died and the lock was released without mark_consistent(); "
                               "the data it protects is declared unrepairable");
    default: throw SystemError(rc, what);
  }
}

Outcome RobustMutex::lock(const Deadline& deadline) {
  if (deadline.is_never()) return interpret(pthread_mutex_lock(&mutex_), "Lock::acquire");
  for (;;) {
    auto left = deadline.remaining();
    if (*left <= Deadline::Clock::duration::zero()) return interpret(pthread_mutex_trylock(&mutex_), "Lock::acquire");
    timespec at = realtime_after(*left);
    int rc = pthread_mutex_timedlock(&mutex_, &at);
    if (rc == EOWNERDEAD) note_owner_died_lock(&mutex_);
    if (rc != ETIMEDOUT) return interpret(rc, "Lock::acquire");
  }
}

Outcome RobustMutex::try_lock() { return interpret(pthread_mutex_trylock(&mutex_), "Lock::try_acquire"); }

void RobustMutex::unlock() {
  int rc = pthread_mutex_unlock(&mutex_);
  if (rc == EPERM) throw StateError("Lock::release: the calling thread does not hold this lock");
  check(rc, "pthread_mutex_unlock");
}

void RobustMutex::mark_consistent() {
  int rc = pthread_mutex_consistent(&mutex_);
  if (rc == EINVAL) throw StateError("Lock::mark_consistent: the lock is not in the owner-died state");
  check(rc, "pthread_mutex_consistent");
}

}  // namespace ipc::sync_internal

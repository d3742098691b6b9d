// ipc/sync/internal/robust_mutex.h: a process-shared, robust pthread mutex, the one owner-tracking primitive
// under Lock, RLock, Condition and Barrier. Internal: use Lock / RLock.
//
// Threads: a mutex is owned by the thread that acquired it; only that thread may release it.
// Processes: lives in any MAP_SHARED mapping; any process that maps it may acquire it. When the owning thread dies
//   (its process is killed, or the thread exits) the kernel walks the owner's robust-futex list and marks the word
//   FUTEX_OWNER_DIED, so the next acquirer gets EOWNERDEAD instead of waiting forever.
// Lifetime: the constructor initialises the mutex in place; it must run once, in one process, before any other
//   process uses the memory.
// Errors: EOWNERDEAD and ETIMEDOUT are results; EDEADLK, EPERM, ENOTRECOVERABLE and OS failures throw.
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <type_traits>

#include "ipc/base/futex.h"
#include "ipc/sync/acquire_result.h"

namespace ipc::sync_internal {

// The calling thread's kernel id, cached per thread and refreshed in a forked child.
pid_t this_thread_id();

class RobustMutex {
 public:
  enum class Kind { kNormal, kRecursive };

  explicit RobustMutex(Kind kind);
  ~RobustMutex();
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  // Blocks until acquired or the deadline passes. kOwnerDied: acquired, and the data it protects may be
  // half-updated. Throws LockNotRecoverable, StateError (relocking a Kind::kNormal mutex from its owner thread).
  [[nodiscard]] Outcome lock(const Deadline& deadline);
  // Never blocks; kTimeout when another thread holds it.
  [[nodiscard]] Outcome try_lock();
  // Throws StateError when the calling thread does not hold it.
  void unlock();
  // After kOwnerDied: declares the protected data repaired. Throws StateError when not in the owner-died state.
  void mark_consistent();
  // The kernel's lock word, read without taking the mutex: the owner's thread id in FUTEX_TID_MASK (0: free, or
  // its owner died), FUTEX_OWNER_DIED once the kernel found its owner dead. Any process; a snapshot.
  uint32_t lock_word() const;

 private:
  Outcome interpret(int rc, const char* what);

  // glibc's pthread_mutex_t: a lock word holding the owner's tid (the futex the kernel's robust-list walk marks)
  // plus the owner's robust-list links. Those links are addresses in the *owner's* mapping, read only by the
  // owner's own process and by the kernel when that process exits, so the object is still address-free for
  // every other process.
  pthread_mutex_t mutex_;
};

static_assert(std::is_standard_layout_v<pthread_mutex_t> && std::is_trivially_copyable_v<pthread_mutex_t>,
              "pthread_mutex_t must be plain data to live in shared memory");
static_assert(std::is_standard_layout_v<RobustMutex>);

}  // namespace ipc::sync_internal

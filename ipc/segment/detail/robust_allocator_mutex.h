// ipc/segment/detail/robust_allocator_mutex.h (internal): the lock of a segment's Boost allocator.
//
// Boost's own interprocess mutexes are not robust: a process killed while allocating leaves them locked, and every
// later allocation in any process hangs. These are robust, process-shared pthread mutexes instead (one guards the
// allocator's free tree; Boost's mutex family also wants a recursive one, which guards only its index of named
// objects, unused here: names live in the segment's directory, detail/directory.h). When a holder dies, the next
// locker is told (EOWNERDEAD); what the lock guards may be half-updated, so that lock is *poisoned*: the locker
// and every later one get a StateError saying what happened, and nobody hangs. Finding named objects never takes
// this lock, and objects already found keep working (queues, locks and values do not allocate after creation).
//
// Threads/Processes: as pthread mutexes with PTHREAD_PROCESS_SHARED. Lives inside the segment (address-free).
// Errors: lock() of a poisoned allocator throws ipc::StateError; OS failures throw ipc::SystemError.
#pragma once

#include <pthread.h>

#include <atomic>

namespace ipc::segment_detail {

// Initialises `mutex` as a robust, process-shared pthread mutex (recursive if asked); `what` names it in errors.
void init_robust_mutex(pthread_mutex_t& mutex, bool recursive, const char* what);

class RobustAllocatorMutex {
 public:
  RobustAllocatorMutex() { init(false); }
  ~RobustAllocatorMutex() { pthread_mutex_destroy(&mutex_); }
  RobustAllocatorMutex(const RobustAllocatorMutex&) = delete;
  RobustAllocatorMutex& operator=(const RobustAllocatorMutex&) = delete;

  void lock();
  bool try_lock();
  void unlock();

 protected:
  explicit RobustAllocatorMutex(bool recursive) { init(recursive); }

 private:
  void init(bool recursive);
  // Called with the mutex held after EOWNERDEAD: records the poisoning, releases, throws.
  [[noreturn]] void poison_and_throw();
  [[noreturn]] void throw_poisoned() const;

  pthread_mutex_t mutex_;
  // Set once a holder died; read before locking so that later callers fail fast.
  std::atomic<uint32_t> poisoned_{0};
};

class RobustAllocatorRecursiveMutex : public RobustAllocatorMutex {
 public:
  RobustAllocatorRecursiveMutex() : RobustAllocatorMutex(true) {}
};

// The Boost.Interprocess mutex family of a segment's managed buffer.
struct RobustMutexFamily {
  using mutex_type = RobustAllocatorMutex;
  using recursive_mutex_type = RobustAllocatorRecursiveMutex;
};

}  // namespace ipc::segment_detail

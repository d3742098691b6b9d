// ipc/segment/detail/robust_allocator_mutex.h (internal): the lock of a segment's Boost allocator and name index.
//
// Boost's own interprocess mutexes are not robust: a process killed while allocating (or looking a name up) leaves
// them locked, and every later allocation or find() in any process hangs. These are robust, process-shared
// pthread mutexes instead (one guards the allocator's free tree, a recursive one the name index). When a holder
// dies, the next locker is told (EOWNERDEAD); what the lock guards may be half-updated, so that lock is
// *poisoned*: the locker and every later one get a StateError saying what happened, and nobody hangs. Objects that were already found keep working (queues, locks and values do not
// use the allocator after creation).
//
// Threads/Processes: as pthread mutexes with PTHREAD_PROCESS_SHARED. Lives inside the segment (address-free).
// Errors: lock() of a poisoned allocator throws ipc::StateError; OS failures throw ipc::SystemError.
#pragma once

#include <pthread.h>

#include <atomic>

namespace ipc::segment_detail {

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

// ipc/sync/lock.h: Lock and RLock, process-shared mutual exclusion that survives a holder's death, and LockGuard.
//
// Happens-before: everything a thread did before release() happens before everything the next acquirer (in any
// process) does after its acquire() returns kOk or kOwnerDied.
//
// Threads: any thread may acquire; a Lock is owned by the *thread* that acquired it, and only that thread may
//   release it (unlike Python's multiprocessing.Lock, which any process may release). RLock may be re-acquired by
//   its owner thread and is released when every acquire has been matched by a release.
// Processes: Lock and RLock live in shared memory (a Segment, by name, or any MAP_SHARED mapping: they are
//   address-free) and work across every process that maps them.
// Lifetime: create() constructs in a Segment, open() finds it from another process. Placed by hand, the
//   constructor must run once, before any other process uses the memory. The object outlives the processes that
//   use it; destroy it (Segment::destroy) only when no process uses it.
//   When the owner dies while holding it (killed, crashed, or its thread exited), the next acquirer is told so:
//   acquire() returns kOwnerDied *and the caller holds the lock*. The caller checks and repairs the data it
//   protects, then calls mark_consistent() before release(). Releasing without mark_consistent() declares the
//   data unrepairable: every later acquire throws LockNotRecoverable. See docs/sync.md.
// Errors: timeout and owner death are results (ipc::Outcome: kOk, kOwnerDied, kTimeout). Releasing a lock the
//   calling thread does not hold, re-acquiring a Lock its owner thread holds, and mark_consistent() outside the
//   owner-died state throw StateError; an unrecoverable lock throws LockNotRecoverable; OS failures throw
//   SystemError. open() of a missing name throws NotFound; create() of a taken name or open() of another kind of
//   object ("... is a Queue, not a Lock") throw InvalidArgument.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/segment/named.h"
#include "ipc/sync/acquire_result.h"
#include "ipc/sync/internal/robust_mutex.h"

namespace ipc {

class Segment;

// Who holds a Lock or RLock, as owner() reads it.
struct LockOwner {
  pid_t thread_id = 0;  // the owner thread's kernel id (its process's pid for a single-threaded process)
  bool alive = true;    // false: the owner died holding it, and nobody has acquired it since
};

namespace sync_internal {

// The body of Lock (kNormal) and RLock (kRecursive): a robust mutex that knows its owner thread and how many
// times that thread holds it (always once for a Lock, whose mutex refuses a relock by its owner).
template <RobustMutex::Kind K>
class OwnedMutex {
 public:
  OwnedMutex() = default;
  OwnedMutex(const OwnedMutex&) = delete;
  OwnedMutex& operator=(const OwnedMutex&) = delete;

  // Blocks until held or `timeout` passes (nullopt: forever). Any thread, any process. An RLock's owner thread
  // re-acquiring gets kOk at once and deepens the recursion.
  [[nodiscard]] Outcome acquire(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Never blocks: kTimeout when another thread holds it. Any thread, any process.
  [[nodiscard]] Outcome try_acquire();
  // Undoes one acquire; the lock is free after the last. REQUIRES: the calling thread holds it (else StateError).
  void release();
  // After kOwnerDied, once the protected data is repaired (a dead owner's recursion is discarded: the new owner
  // holds it once). REQUIRES: the calling thread holds it.
  void mark_consistent();
  // Whether the calling thread holds it. Any thread; exact for the calling thread.
  bool held_by_this_thread() const;
  // Who holds it, read without taking it (for tools such as `numa_mp inspect`): nullopt when it is free; a dead
  // owner (alive = false) when its holder died and nobody has acquired it since. Any thread, any process; a
  // snapshot that may be stale once it returns.
  std::optional<LockOwner> owner() const;

 protected:
  // How many times the calling thread holds it (0 when it does not).
  uint32_t depth_for_this_thread() const { return held_by_this_thread() ? depth_ : 0; }

 private:
  void on_acquired(Outcome r);

  // The owner thread's id, 0 when free; written only by the owner while it holds mutex_, so a thread that reads
  // its own id here is certain it holds the lock. Relaxed: it answers "is it me?", never orders data.
  std::atomic<pid_t> owner_tid_{0};
  uint32_t depth_ = 0;  // read and written only by the owner thread, under mutex_
  RobustMutex mutex_{K};
};

extern template class OwnedMutex<RobustMutex::Kind::kNormal>;
extern template class OwnedMutex<RobustMutex::Kind::kRecursive>;

}  // namespace sync_internal

class Lock : public sync_internal::OwnedMutex<sync_internal::RobustMutex::Kind::kNormal> {
 public:
  static constexpr BlockKind kKind{block_kind_tag("LOCK"), "Lock"};

  // Named objects in a segment. Any process that has the segment open.
  static Lock& create(Segment& segment, std::string_view name) {
    return create_named<Lock>(segment, name);
  }
  static Lock& open(Segment& segment, std::string_view name) { return open_named<Lock>(segment, name); }
  static Lock& open_or_create(Segment& segment, std::string_view name) {
    return open_or_create_named<Lock>(segment, name);
  }

  // acquire(timeout), try_acquire(), release(), mark_consistent() and held_by_this_thread() as OwnedMutex says.
};

class RLock : public sync_internal::OwnedMutex<sync_internal::RobustMutex::Kind::kRecursive> {
 public:
  static constexpr BlockKind kKind{block_kind_tag("RLCK"), "RLock"};

  static RLock& create(Segment& segment, std::string_view name) {
    return create_named<RLock>(segment, name);
  }
  static RLock& open(Segment& segment, std::string_view name) {
    return open_named<RLock>(segment, name);
  }
  static RLock& open_or_create(Segment& segment, std::string_view name) {
    return open_or_create_named<RLock>(segment, name);
  }

  // acquire(timeout), try_acquire(), release(), mark_consistent() and held_by_this_thread() as OwnedMutex says.
  using OwnedMutex::depth_for_this_thread;
};

static_assert(std::is_standard_layout_v<Lock> && std::is_standard_layout_v<RLock>,
              "Lock and RLock live in shared memory");
static_assert(std::atomic<pid_t>::is_always_lock_free, "the owner id is read across processes");

// RAII ownership of a Lock or RLock: acquires in the constructor, releases in the destructor if held.
// A guard belongs to one thread. Check owner_died() before touching the protected data:
//   LockGuard g(lock);
//   if (g.owner_died()) { repair(data); g.mark_consistent(); }
template <typename L>
class [[nodiscard]] LockGuard {
 public:
  // Blocks until held (kOk or kOwnerDied).
  explicit LockGuard(L& lock) : lock_(&lock), result_(lock.acquire()) {}
  // Gives up after `timeout`: then owns_lock() is false and result() is kTimeout.
  LockGuard(L& lock, std::chrono::nanoseconds timeout) : lock_(&lock), result_(lock.acquire(timeout)) {}
  ~LockGuard() {
    if (owns_lock()) lock_->release();
  }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

  Outcome result() const { return result_; }
  bool owns_lock() const { return holds(result_); }
  bool owner_died() const { return result_ == Outcome::kOwnerDied; }
  explicit operator bool() const { return owns_lock(); }

  // The protected data is repaired; later guards see kOk.
  void mark_consistent() { lock_->mark_consistent(); }

 private:
  L* lock_;
  Outcome result_;
};

}  // namespace ipc

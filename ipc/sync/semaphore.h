// ipc/sync/semaphore.h: Semaphore and BoundedSemaphore, process-shared counting semaphores on a futex.
//
// Happens-before: everything a thread did before a release() happens before everything done after the
// acquire() that took one of the units it released.
//
// Threads: any thread may acquire and release; a semaphore has no owner, so any thread of any process may release
//   units that another acquired.
// Processes: lives in shared memory (a Segment, by name, or any MAP_SHARED mapping; address-free). Waiting sleeps
//   on a futex in the shared word (a short spin first); release() makes no system call when nobody waits.
// Lifetime: create() in a Segment or construct in place once before other processes use it. A process that dies
//   holding units does not give them back (a semaphore cannot know who holds what: use a Lock when the holder
//   must be tracked); a process that dies while waiting leaves nothing behind (its place in the sleeper count
//   heals: ipc/base/wait.h).
// Errors: a timeout is a result (Outcome::kTimeout). BoundedSemaphore::release beyond the initial value throws
//   StateError; a value above kMaxValue throws InvalidArgument.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/base/futex.h"
#include "ipc/base/wait.h"
#include "ipc/segment/named.h"

namespace ipc {

namespace sync_internal {

// Defined by tests that look inside (semaphore_test.cc).
struct SemaphoreTestAccess;

// The counter shared by Semaphore and BoundedSemaphore.
class SemaphoreCore {
 public:
  explicit SemaphoreCore(uint32_t initial) : value_(initial) {}
  bool acquire(const Deadline& deadline);
  bool try_acquire();
  // Adds `n` units; when `max_value` is nonzero, refuses (StateError) to go above it.
  void release(uint32_t n, uint32_t max_value, const char* who);
  uint32_t value_approx() const { return value_.load(std::memory_order_relaxed); }
  // Whether a waiter may sleep (for tests of the healing count).
  bool sleepers_approx() const { return sleepers_.any(std::memory_order_relaxed); }

 private:
  // The futex word: units available. A taker's successful CAS is an acquire, pairing with the releaser's
  // fetch_add / CAS (release).
  std::atomic<uint32_t> value_;
  // Threads (of any process) inside acquire's sleeping path; lets release() skip FUTEX_WAKE when zero. A waiter
  // that dies leaves it too high until it heals, which costs only spare wake-up calls meanwhile.
  detail::SleeperCount sleepers_;
};

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<SemaphoreCore>);

}  // namespace sync_internal

class Semaphore {
 public:
  static constexpr BlockKind kKind{block_kind_tag("SEMA"), "Semaphore"};
  static constexpr uint32_t kMaxValue = INT32_MAX;

  static Semaphore& create(Segment& segment, std::string_view name, uint32_t initial = 1) {
    return create_named<Semaphore>(segment, name, initial);
  }
  static Semaphore& open(Segment& segment, std::string_view name) {
    return open_named<Semaphore>(segment, name);
  }

  // REQUIRES: initial <= kMaxValue (else InvalidArgument).
  explicit Semaphore(uint32_t initial = 1);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Takes one unit, waiting up to `timeout` (nullopt: forever): kOk or kTimeout. Any thread, any process.
  [[nodiscard]] Outcome acquire(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Takes one unit if one is available now (kOk), else kTimeout (as a zero timeout would). Lock-free.
  [[nodiscard]] Outcome try_acquire();
  // Adds `n` units and wakes up to `n` waiters. Any thread, any process. Throws InvalidArgument above kMaxValue.
  void release(uint32_t n = 1);
  // A snapshot that may be stale by the time it is read.
  uint32_t value_approx() const { return core_.value_approx(); }

 private:
  friend struct sync_internal::SemaphoreTestAccess;
  sync_internal::SemaphoreCore core_;
};

// A Semaphore that refuses to be released above its initial value: releasing more than was acquired is a bug,
// reported as StateError instead of silently raising the count.
class BoundedSemaphore {
 public:
  static constexpr BlockKind kKind{block_kind_tag("BSEM"), "BoundedSemaphore"};

  static BoundedSemaphore& create(Segment& segment, std::string_view name, uint32_t initial = 1) {
    return create_named<BoundedSemaphore>(segment, name, initial);
  }
  static BoundedSemaphore& open(Segment& segment, std::string_view name) {
    return open_named<BoundedSemaphore>(segment, name);
  }

  // REQUIRES: 1 <= initial <= Semaphore::kMaxValue (else InvalidArgument).
  explicit BoundedSemaphore(uint32_t initial = 1);
  BoundedSemaphore(const BoundedSemaphore&) = delete;
  BoundedSemaphore& operator=(const BoundedSemaphore&) = delete;

  [[nodiscard]] Outcome acquire(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  [[nodiscard]] Outcome try_acquire();
  // Throws StateError, and changes nothing, when the value would exceed max_value().
  void release(uint32_t n = 1);
  uint32_t value_approx() const { return core_.value_approx(); }
  uint32_t max_value() const { return max_value_; }

 private:
  friend struct sync_internal::SemaphoreTestAccess;
  uint32_t max_value_;
  sync_internal::SemaphoreCore core_;
};

static_assert(std::is_standard_layout_v<Semaphore> && std::is_standard_layout_v<BoundedSemaphore>,
              "semaphores live in shared memory");

}  // namespace ipc

// ipc/sync/event.h: Event, a process-shared flag that threads can wait for.
//
// Happens-before: everything a thread did before set() happens before everything done after a wait() (or
// is_set()) that returns kOk (true) because of that set().
//
// Threads: any thread may set, clear, test and wait.
// Processes: lives in shared memory (a Segment, by name, or any MAP_SHARED mapping; address-free). Waiters sleep
//   on a futex in the shared word; set() makes no system call when nobody waits.
// Lifetime: create() in a Segment or construct in place once. A process that dies while waiting leaves nothing
//   behind; there is no owner to die.
// Errors: timeout is a result (ipc::Outcome::kTimeout). A missing name throws NotFound. OS failures throw
//   SystemError.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/segment/named.h"

namespace ipc {

class Event {
 public:
  static constexpr BlockKind kKind{block_kind_tag("EVNT"), "Event"};

  static Event& create(Segment& segment, std::string_view name) {
    return create_named<Event>(segment, name);
  }
  static Event& open(Segment& segment, std::string_view name) {
    return open_named<Event>(segment, name);
  }
  static Event& open_or_create(Segment& segment, std::string_view name) {
    return open_or_create_named<Event>(segment, name);
  }

  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Sets the flag and wakes every waiter. Any thread, any process.
  void set();
  // Clears the flag; later waits block until the next set(). Any thread, any process.
  void clear();
  // Lock-free read of the flag.
  bool is_set() const;
  // kOk once the flag is set, kTimeout if `timeout` (nullopt: forever) passes first. Any thread.
  [[nodiscard]] Outcome wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

 private:
  static constexpr uint32_t kSet = 1;
  static constexpr uint32_t kHasWaiters = 2;

  // The futex word: kSet, plus kHasWaiters once someone sleeps on it (cleared by set(), which wakes them).
  std::atomic<uint32_t> state_{0};
};

static_assert(std::is_standard_layout_v<Event>, "Event lives in shared memory");
static_assert(std::atomic<uint32_t>::is_always_lock_free);

}  // namespace ipc

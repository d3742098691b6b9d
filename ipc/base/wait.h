// ipc/base/wait.h: cross-process waiting shared by the components above (queues, pipes): internal, namespace
// ipc::detail, not a user API.
//
// A WaitSet lives in shared memory beside the state it guards (a queue's ring): a futex word (`epoch`) and a count
// of processes about to sleep or asleep (`sleepers`). The protocol is an event count:
//   waiter:   sleepers += 1; heavy_fence(); e = epoch; re-check the condition; futex_wait(epoch, e); sleepers -= 1
//   notifier: change the state (release); light_fence(); if (sleepers != 0) { epoch += 1; futex_wake(epoch) }
// The two fences form a Dekker pair: either the waiter's re-check sees the new state, or the notifier sees the
// waiter counted and bumps the epoch (so the waiter's futex_wait returns at once or is woken). The notifier pays
// no syscall when nobody sleeps.
//
// Asymmetric fences: light_fence() is only a compiler barrier when this process registered for
// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED); heavy_fence() then issues that membarrier, which runs a full memory
// barrier on every CPU currently running a registered process. The put/get hot path thus carries no mfence; the
// cost (a few microseconds) moves to the waiter, which is about to sleep anyway. Where membarrier is unavailable
// both fences are full seq_cst fences (always correct).
//
// Sleeps are bounded (kMaxSleep) so that a waiter re-checks even if a notifier died between changing the state and
// waking it, and so that stuck slots of dead processes are found.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "ipc/base/futex.h"
#include "ipc/base/process.h"

namespace ipc::detail {

// How long a waiter sleeps at most before re-checking on its own.
inline constexpr std::chrono::milliseconds kMaxSleep{50};

struct alignas(64) WaitSet {
  std::atomic<uint32_t> epoch{0};     // futex word; bumped by notifiers that saw sleepers
  std::atomic<uint32_t> sleepers{0};  // processes between "about to sleep" and "awake again"
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(WaitSet) == 64, "a WaitSet fills exactly one cache line");

// This process's id, cached (refreshed in fork children); cheap enough for every put/get.
uint32_t self_pid() noexcept;

using ipc::process_dead;  // ipc/base/process.h

// Whether the fences below are asymmetric (membarrier) in this process; for documentation and benchmarks.
bool asymmetric_fences() noexcept;

// Set once per process by ensure_process_setup(); read by light_fence().
extern std::atomic<bool> g_asymmetric_fences;

// The notifier's half of the Dekker pair (after publishing a state change, before reading `sleepers`).
inline void light_fence() noexcept {
  // relaxed: the flag is written once per process before any queue is used (ensure_process_setup).
  if (g_asymmetric_fences.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}
// The waiter's half (after incrementing `sleepers`, before re-checking the state).
void heavy_fence() noexcept;

// sched_yield(), for the short phase between spinning and sleeping.
void yield_cpu() noexcept;

// Registers this process for asymmetric fences and the pid cache; idempotent; called when a queue is attached.
void ensure_process_setup() noexcept;

// Wakes sleepers if there are any. Call after the state change is published. Any process.
inline void notify(WaitSet& ws) noexcept {
  light_fence();
  // relaxed: ordered by the fence pair above; partner: the fetch_add in wait_once().
  if (ws.sleepers.load(std::memory_order_relaxed) != 0) {
    // release: a waiter that reads the new epoch (futex compares it) also sees our state change.
    ws.epoch.fetch_add(1, std::memory_order_release);
    futex_wake_all(ws.epoch);
  }
}

// Wakes every sleeper unconditionally (close()).
inline void notify_all(WaitSet& ws) noexcept {
  // release: partner is the acquire load of epoch in wait_once().
  ws.epoch.fetch_add(1, std::memory_order_release);
  futex_wake_all(ws.epoch);
}

// What an attempt inside a blocking loop reported.
enum class Attempt { kDone, kRetry };

// Spins briefly, then sleeps on `ws`, calling `attempt(check_dead)` until it returns kDone or the deadline
// passes. `check_dead` is false during the first quick spins (a stuck slot is almost always a live process that
// is a few nanoseconds from finishing) and true afterwards. Returns false on timeout.
template <typename F>
bool block_until(WaitSet& ws, const Deadline& deadline, F&& attempt) {
  // Spin for a few microseconds (a partner that is running answers well within that), then yield a few times (on
  // an oversubscribed machine the partner may need our CPU), then sleep.
  constexpr auto kSpinTime = std::chrono::microseconds(5);
  constexpr int kYields = 4;
  const auto spin_end = Deadline::Clock::now() + kSpinTime;
  for (int i = 0;; ++i) {
    if (attempt(i >= 32) == Attempt::kDone) return true;
    cpu_relax();
    if ((i & 15) == 15 && Deadline::Clock::now() >= spin_end) break;
  }
  for (int i = 0; i < kYields; ++i) {
    yield_cpu();
    if (attempt(true) == Attempt::kDone) return true;
  }
  for (;;) {
    if (deadline.expired()) return false;
    // seq_cst + heavy_fence: the waiter's half of the Dekker pair; partner: light_fence() in notify().
    ws.sleepers.fetch_add(1, std::memory_order_seq_cst);
    heavy_fence();
    // acquire: partner is the release fetch_add on epoch in notify(); read *before* the re-check so that a
    // notification between the re-check and the futex call changes the word and the futex returns at once.
    const uint32_t e = ws.epoch.load(std::memory_order_acquire);
    if (attempt(true) == Attempt::kDone) {
      ws.sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for notifiers
      return true;
    }
    const Deadline bounded = Deadline::after(kMaxSleep);
    const auto left = deadline.remaining();
    const bool deadline_first = left && *left < std::chrono::duration_cast<Deadline::Clock::duration>(kMaxSleep);
    futex_wait(ws.epoch, e, deadline_first ? deadline : bounded);
    ws.sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for notifiers
  }
}

}  // namespace ipc::detail

// ipc/base/wait.h: cross-process waiting shared by the components above (queues, pipes, sync): internal,
// namespace ipc::detail, not a user API.
//
// Threads, Processes: a WaitSet lives in shared memory (no pointers; asserted below); any thread of any process
//   may wait on it or notify it.
// Lifetime: it belongs to the object that contains it. A process killed at any point leaves at most a stale
//   sleeper count, which heals (below).
// Errors: notify() and notify_all() never throw (futex_wake aborts on an impossible errno); block_until throws
//   what futex_wait (SystemError) and the caller's attempt throw.
//
// A WaitSet lives in shared memory beside the state it guards (a queue's ring): a futex word (`epoch`) and a count
// of processes about to sleep or asleep (`sleepers`, a SleeperCount). The protocol is an event count:
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
//
// The count heals. A process killed asleep never takes itself off `sleepers`, which would make every later notify
// pay a futex syscall for nothing. Correctness never rests on the count being exact (an undercount costs a sleeper
// at most kMaxSleep of latency, an overcount a syscall), so the count is repaired, not trusted: sleepers count
// themselves in one of two halves of the count, chosen by the parity of a `round`. A notifier whose wake-up woke
// nobody while the count said someone slept advances the round, at most once per kRoundLength, and first clears
// the half that the new round will reuse. That half was last chosen at least kRoundLength ago, longer than any
// live sleeper stays counted (kMaxSleep), so only the dead remain in it: two rounds after a death it is gone.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "ipc/base/futex.h"
#include "ipc/base/process.h"

namespace ipc::detail {

// How long a waiter sleeps at most before re-checking on its own.
inline constexpr std::chrono::milliseconds kMaxSleep{50};
// How long a round of the sleeper count lasts at least (see "The count heals" above): well above kMaxSleep, so that
// a live sleeper that was descheduled for a while still leaves its half before the half is cleared.
inline constexpr std::chrono::milliseconds kRoundLength{4 * kMaxSleep};

// The bit one sleeper adds to SleeperCount::counts in the half of round parity `half`.
constexpr uint64_t sleeper_unit(uint32_t half) noexcept { return uint64_t{1} << (32 * (half & 1)); }

// How many processes are between "about to sleep" and "awake again" on some futex word: a hint for notifiers
// (nonzero: someone may sleep), which heals when a sleeper dies (see "The count heals" above). Its users sleep at
// most kMaxSleep at a time and count themselves afresh for each sleep (sleep_slice()). Lives in shared memory.
struct SleeperCount {
  std::atomic<uint32_t> round{0};  // new sleepers count themselves in half (round & 1) of `counts`
  uint32_t reserved = 0;
  // Two 32-bit counts, one per round parity (parity 0 in the low half).
  std::atomic<uint64_t> counts{0};
  std::atomic<int64_t> round_start_ns{0};  // steady (CLOCK_MONOTONIC, machine-wide) time the round began

  // Counts the caller in; returns the half to give to leave(). seq_cst: the sleeper's half of a Dekker pair (the
  // caller follows it with heavy_fence() or a seq_cst load of its condition); partner: the notifier's any().
  uint32_t enter() noexcept {
    // relaxed: any half would be correct; the round only decides which counts heal() may drop.
    const uint32_t half = round.load(std::memory_order_relaxed) & 1;
    counts.fetch_add(sleeper_unit(half), std::memory_order_seq_cst);
    return half;
  }
  // Counts the caller out of `half`, unless heal() already cleared it (never below zero).
  void leave(uint32_t half) noexcept;
  // Whether anyone may sleep.
  bool any(std::memory_order order) const noexcept { return counts.load(order) != 0; }
  // For a notifier whose futex wake-up woke nobody although any() was true: advances the round and clears the
  // stale half once the round has lasted kRoundLength. Lock-free.
  void heal() noexcept;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free &&
              std::atomic<int64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<SleeperCount> && sizeof(SleeperCount) == 24);

struct alignas(64) WaitSet {
  std::atomic<uint32_t> epoch{0};  // futex word; bumped by notifiers that saw sleepers
  SleeperCount sleepers;
};
static_assert(sizeof(WaitSet) == 64, "a WaitSet fills exactly one cache line");

// For tests only: stretches every periodic re-check that sleeps through sleep_slice() (kMaxSleep of the queues and
// the semaphore, a barrier's liveness check) and the sleeper count's kRoundLength by `factor` (1 by default), in
// this process and in the children it forks afterwards. A test makes the re-check far longer than its own waits,
// so that a missing wake-up makes a blocked call miss its deadline instead of being covered by the re-check.
// Stuck slots of dead processes are then found only that much later. Not for production use.
void stretch_rechecks_for_testing(uint32_t factor) noexcept;
// The factor set above (relaxed: a process sets it before it forks the children that use it).
extern std::atomic<uint32_t> g_recheck_stretch;

// The deadline of one bounded sleep: `deadline` or `period` (stretched for tests, above) from now, whichever comes
// first. Called just before sleeping, off the fast path.
inline Deadline sleep_slice(const Deadline& deadline, std::chrono::milliseconds period = kMaxSleep) {
  period *= g_recheck_stretch.load(std::memory_order_relaxed);  // relaxed: see g_recheck_stretch
  const auto left = deadline.remaining();
  const bool deadline_first = left && *left < std::chrono::duration_cast<Deadline::Clock::duration>(period);
  return deadline_first ? deadline : Deadline::after(period);
}

// Set by ensure_process_setup() (and refreshed in fork children); 0 before. Read through self_pid().
extern std::atomic<uint32_t> g_self_pid;
// The out-of-line first call of self_pid() in a process that has not set up yet.
uint32_t self_pid_slow() noexcept;
// This process's id, cached (refreshed in fork children): one load, cheap enough for every put/get.
inline uint32_t self_pid() noexcept {
  // relaxed: each process writes its own copy before it touches any queue (see ensure_process_setup()).
  const uint32_t pid = g_self_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : self_pid_slow();
}

// self_pid() without its test for a process that has not set up: one load, for hot paths of objects that only a
// process that ran ensure_process_setup() (or a fork child of one: the atfork handler refreshes the pid) can hold,
// such as a queue handle, which every factory builds after that call. REQUIRES: that setup ran.
inline uint32_t self_pid_after_setup() noexcept {
  return g_self_pid.load(std::memory_order_relaxed);  // relaxed: as self_pid()
}

using ipc::process_dead;  // ipc/base/process.h

// Whether the fences below are asymmetric (membarrier) in this process; for documentation and benchmarks.
bool asymmetric_fences() noexcept;

// Set once per process by ensure_process_setup(); read by light_fence().
extern std::atomic<bool> g_asymmetric_fences;

// The notifier's half of the Dekker pair (after publishing a state change, before reading `sleepers`).
[[gnu::always_inline]] inline void light_fence() noexcept {
  // relaxed: the flag is written once per process before any queue is used (ensure_process_setup).
  if (g_asymmetric_fences.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}
// The waiter's half (after incrementing `sleepers`, before re-checking the state).
void heavy_fence() noexcept;

// A full memory barrier on every CPU that runs a thread of a process registered for membarrier (the processes
// whose light_fence() is a compiler barrier), the caller's included: membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED),
// which needs no registration of the caller. False when the kernel refuses it (too old, or a seccomp filter):
// then only the caller's own seq_cst fence ran. For a thread that must know, not just hope, that another
// process's light-fenced store before a load is visible (the queues' leases). A few microseconds.
bool barrier_every_cpu() noexcept;

// sched_yield(), for the short phase between spinning and sleeping.
void yield_cpu() noexcept;

// Whether spinning can pay off now: fewer runnable tasks on the machine than CPUs this process may use, so that the
// partner a waiter spins for has a CPU of its own. On an oversubscribed machine a spinning waiter burns the time
// slice its partner needs, so it should sleep at once. Decided from the kernel's count of runnable tasks
// (/proc/loadavg), re-read at most every few milliseconds per process (spinning_verdict_stands()); a fork inherits
// the cached verdict (a pool asks before it forks a worker, which then reads nothing before its first task). Any
// thread; never throws.
bool spinning_pays() noexcept;
// Whether a verdict of spinning_pays() (`pays`) reached at `reached_ns` still stands at `now_ns` (steady clock).
// "Spin" stands for 10 ms: long enough that the /proc read (a few microseconds) is rare, short enough to follow a
// machine whose load changes. "Sleep" stands for 1 ms only: the count is one instant's, and it often includes a
// kernel thread that runs for microseconds (softirq work, a kworker); held for 10 ms, one such sample turned every
// wait of the process into a sleep and a wake-up for that long (a 2 -> 2 Queue ran at 60% of today's rate). On a
// machine that is really oversubscribed the verdict is read again each millisecond and stays "sleep".
constexpr bool spinning_verdict_stands(bool pays, int64_t reached_ns, int64_t now_ns) {
  return now_ns - reached_ns < (pays ? 10'000'000 : 1'000'000);
}
// Tests: makes spinning_pays() answer `verdict` (true: spin, as on an idle machine; false: sleep at once, as on a
// busy one) instead of reading /proc/loadavg, in this process and in children forked afterwards, so that a test of
// a waiting path does not depend on the machine's load; std::nullopt restores the real verdict. Any thread.
void set_spinning_verdict_for_testing(std::optional<bool> verdict) noexcept;

// Registers this process for asymmetric fences and the pid cache; idempotent; called when a queue is attached.
void ensure_process_setup() noexcept;

// The notifier may not fail: a futex wake that fails is a bug in this process, which futex_wake reports by
// aborting, never by throwing (ipc/base/futex.h).
static_assert(noexcept(futex_wake(std::declval<std::atomic<uint32_t>&>(), 1)),
              "notify() and notify_all() are noexcept: futex_wake must not throw");

// Wakes sleepers if there are any. Call after the state change is published. Any process.
inline void notify(WaitSet& ws) noexcept {
  light_fence();
  // relaxed: ordered by the fence pair above; partner: sleepers.enter() in block_until().
  if (ws.sleepers.any(std::memory_order_relaxed)) {
    // release: a waiter that reads the new epoch (futex compares it) also sees our state change.
    ws.epoch.fetch_add(1, std::memory_order_release);
    if (futex_wake_all(ws.epoch) == 0) ws.sleepers.heal();
  }
}

// How block_until() reads the futex word before it sleeps. kPlain: a load (for notify()). kMarked: a seq_cst
// fetch_or that sets the word's low bit, "a sleeper waits on this epoch", for notifiers that use notify_marked().
// A WaitSet whose notifiers use notify_marked() must have only kMarked waiters; notify() and notify_all() wake
// either kind.
enum class Arming { kPlain, kMarked };

// The slow half of notify_marked(): someone is counted as a sleeper.
void notify_marked_slow(WaitSet& ws) noexcept;

// As notify(), for a WaitSet whose waiters all block with Arming::kMarked: bumps the epoch and wakes only when a
// sleeper marked the current epoch. A sleeper that was woken stays in the count until it runs again (on a busy
// machine, for a whole time slice); notify() pays a futex syscall per call in that time, this pays a fence and a
// load. Any process.
inline void notify_marked(WaitSet& ws) noexcept {
  light_fence();
  // relaxed: ordered by the fence pair, as in notify().
  if (ws.sleepers.any(std::memory_order_relaxed)) [[unlikely]] notify_marked_slow(ws);
}

// Wakes every sleeper unconditionally (close()).
inline void notify_all(WaitSet& ws) noexcept {
  // release: partner is the acquire load of epoch in block_until().
  ws.epoch.fetch_add(1, std::memory_order_release);
  futex_wake_all(ws.epoch);
}

// What an attempt inside a blocking loop reported.
enum class Attempt { kDone, kRetry };

// Spins briefly, then sleeps on `ws`, calling `attempt(check_dead)` until it returns kDone or the deadline
// passes. `check_dead` is false during the first quick spins (a stuck slot is almost always a live process that
// is a few nanoseconds from finishing) and true afterwards. Returns false on timeout.
// With Arming::kMarked, the epoch is marked before the re-check (see Arming), for notifiers using notify_marked().
template <Arming arming = Arming::kPlain, typename F>
bool block_until(WaitSet& ws, const Deadline& deadline, F&& attempt) {
  // A few quick retries first, without the clock: a ring that is empty (full) for a moment while the partner runs
  // costs no more than that. Then, only while spinning can pay off (spinning_pays()), spin for a few microseconds
  // (a partner that is running answers well within that); then yield a few times (the partner may need our CPU),
  // then sleep.
  constexpr int kQuickTries = 32;
  constexpr auto kSpinTime = std::chrono::microseconds(5);
  constexpr int kYields = 4;
  for (int i = 0; i < kQuickTries; ++i) {
    if (attempt(false) == Attempt::kDone) return true;
    cpu_relax();
  }
  if (spinning_pays()) {
    const auto spin_end = Deadline::Clock::now() + kSpinTime;
    for (int i = 0;; ++i) {
      if (attempt(true) == Attempt::kDone) return true;
      cpu_relax();
      if ((i & 15) == 15 && Deadline::Clock::now() >= spin_end) break;
    }
  }
  for (int i = 0; i < kYields; ++i) {
    yield_cpu();
    if (attempt(true) == Attempt::kDone) return true;
  }
  for (;;) {
    if (deadline.expired()) return false;
    // enter() + heavy_fence: the waiter's half of the Dekker pair; partner: light_fence() in notify().
    const uint32_t half = ws.sleepers.enter();
    heavy_fence();
    // acquire: partner is the release fetch_add on epoch in notify(); read *before* the re-check so that a
    // notification between the re-check and the futex call changes the word and the futex returns at once.
    uint32_t e;
    if constexpr (arming == Arming::kMarked) {
      // seq_cst RMW and fence: the waiter's half of the pair with notify_marked_slow()'s fence and epoch load:
      // either that load sees the mark (and the notifier wakes us), or our re-check below sees its state change.
      // acquire as above.
      e = ws.epoch.fetch_or(1, std::memory_order_seq_cst) | 1;
      std::atomic_thread_fence(std::memory_order_seq_cst);
    } else {
      e = ws.epoch.load(std::memory_order_acquire);
    }
    if (attempt(true) == Attempt::kDone) {
      ws.sleepers.leave(half);
      return true;
    }
    futex_wait(ws.epoch, e, sleep_slice(deadline));
    ws.sleepers.leave(half);
  }
}

}  // namespace ipc::detail

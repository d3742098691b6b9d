#include "ipc/base/wait.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace ipc::detail {

std::atomic<bool> g_asymmetric_fences{false};
std::atomic<uint32_t> g_recheck_stretch{1};

void stretch_rechecks_for_testing(uint32_t factor) noexcept {
  g_recheck_stretch.store(factor == 0 ? 1 : factor, std::memory_order_relaxed);  // relaxed: see wait.h
}

namespace {

std::atomic<uint32_t> g_pid{0};

bool register_membarrier() noexcept {
  long supported = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported < 0 || !(supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
      !(supported & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)) {
    return false;
  }
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

void setup_this_process() noexcept {
  // relaxed: each process writes its own copy before it touches any queue; threads of the process that use a
  // queue were either started after this or reach it through ensure_process_setup()'s call_once.
  g_pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
#if defined(__SANITIZE_THREAD__)
  // TSan does not model membarrier; full fences keep its view of the program exact.
  g_asymmetric_fences.store(false, std::memory_order_relaxed);
#else
  g_asymmetric_fences.store(register_membarrier(), std::memory_order_relaxed);
#endif
}

void once_per_process() {
  setup_this_process();
  // A forked child is a new process: new pid, and the membarrier registration is re-done for its own mm.
  pthread_atfork(nullptr, nullptr, [] { setup_this_process(); });
}

}  // namespace

void ensure_process_setup() noexcept {
  static std::once_flag once;
  std::call_once(once, once_per_process);
}

uint32_t self_pid() noexcept {
  // relaxed: see setup_this_process().
  uint32_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    ensure_process_setup();
    pid = g_pid.load(std::memory_order_relaxed);
  }
  return pid;
}

bool asymmetric_fences() noexcept {
  ensure_process_setup();
  return g_asymmetric_fences.load(std::memory_order_relaxed);
}

void heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (g_asymmetric_fences.load(std::memory_order_relaxed)) {
    // Fails only if the kernel withdrew support after registration; the bounded sleep then covers the race.
    syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
  }
}

void yield_cpu() noexcept { sched_yield(); }

void SleeperCount::leave(uint32_t half) noexcept {
  const uint64_t unit = sleeper_unit(half);
  const uint64_t mask = unit * 0xffffffffu;
  // relaxed: the count is only a hint for notifiers; the Dekker pair orders enter(), not this.
  uint64_t cur = counts.load(std::memory_order_relaxed);
  while ((cur & mask) != 0 &&
         !counts.compare_exchange_weak(cur, cur - unit, std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
}

void SleeperCount::heal() noexcept {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Deadline::Clock::now().time_since_epoch()).count();
  // relaxed: the round's fields are hints; a stale read at worst heals one round late or clears a half twice.
  int64_t start = round_start_ns.load(std::memory_order_relaxed);
  // A stretched re-check (tests) stretches the round with it: a live sleeper must leave its half first.
  const auto round_length = kRoundLength * g_recheck_stretch.load(std::memory_order_relaxed);
  if (now - start < std::chrono::duration_cast<std::chrono::nanoseconds>(round_length).count()) return;
  // One notifier per round: the one whose CAS moves the start.
  if (!round_start_ns.compare_exchange_strong(start, now, std::memory_order_relaxed)) return;
  const uint32_t r = round.load(std::memory_order_relaxed);
  // Clear before advancing: until the advance new sleepers count in the current half, so none is cleared. What the
  // stale half holds was counted before the current round began, kRoundLength ago: the dead, and (rarely) a live
  // sleeper descheduled for that long, which then sleeps at most kMaxSleep past a notification.
  counts.fetch_and(~(sleeper_unit(r + 1) * 0xffffffffu), std::memory_order_relaxed);
  round.store(r + 1, std::memory_order_relaxed);
}

}  // namespace ipc::detail

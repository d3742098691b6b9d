#include "ipc/base/wait.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

namespace ipc::detail {

std::atomic<bool> g_asymmetric_fences{false};
std::atomic<uint32_t> g_recheck_stretch{1};
std::atomic<uint32_t> g_self_pid{0};

void stretch_rechecks_for_testing(uint32_t factor) noexcept {
  g_recheck_stretch.store(factor == 0 ? 1 : factor, std::memory_order_relaxed);  // relaxed: see wait.h
}

namespace {

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
  g_self_pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
#if defined(__SANITIZE_THREAD__)
  // TSan does not model membarrier; full fences keep its view of the program exact.
  g_asymmetric_fences.store(false, std::memory_order_relaxed);
#else
  g_asymmetric_fences.store(register_membarrier(), std::memory_order_relaxed);
#endif
}

void once_per_process() {
  setup_this_process();
  // A forked child is a new process with a new pid. Its registration for membarrier is not re-done: fork copies the
  // registration with the address space (only exec drops it; membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) in a
  // child of a registered process reports it registered), so g_asymmetric_fences, copied with it, stays true. Two
  // system calls fewer in every forked child (a pool worker's start).
  pthread_atfork(nullptr, nullptr, [] {
    // relaxed: as in setup_this_process(); the child has only this thread.
    g_self_pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
  });
}

}  // namespace

void ensure_process_setup() noexcept {
  static std::once_flag once;
  std::call_once(once, once_per_process);
}

uint32_t self_pid_slow() noexcept {
  ensure_process_setup();
  return g_self_pid.load(std::memory_order_relaxed);  // relaxed: see setup_this_process()
}

bool asymmetric_fences() noexcept {
  ensure_process_setup();
  return g_asymmetric_fences.load(std::memory_order_relaxed);
}

bool barrier_every_cpu() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

void heavy_fence() noexcept {
  if (g_asymmetric_fences.load(std::memory_order_relaxed)) {
    // Fails only if the kernel withdrew support after registration; the bounded sleep then covers the race.
    (void)barrier_every_cpu();
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

void yield_cpu() noexcept { sched_yield(); }

void notify_marked_slow(WaitSet& ws) noexcept {
  // seq_cst fence: the notifier's half of the pair with the marking waiter's seq_cst fetch_or and fence in
  // block_until(): either the load below sees the mark, or that waiter's re-check sees our state change.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint32_t e = ws.epoch.load(std::memory_order_relaxed);  // relaxed: ordered by the fence above
  // No mark: every sleeper still counted was woken since it marked (and re-checks before it sleeps again), or has
  // yet to mark (and re-checks after).
  // A sleeper killed asleep stays counted and no wake-up finds it gone here: let the count heal as notify() does
  // (heal() drops only what was counted a whole round ago).
  if ((e & 1) == 0) {
    ws.sleepers.heal();
    return;
  }
  // release: as in notify(). A failed CAS means another notifier (or notify_all) moved the epoch on and wakes.
  if (ws.epoch.compare_exchange_strong(e, e + 1, std::memory_order_release, std::memory_order_relaxed) &&
      futex_wake_all(ws.epoch) == 0) {
    ws.sleepers.heal();
  }
}

namespace {

// Runnable tasks on the whole machine, the caller included: the numerator of the fourth field of /proc/loadavg
// ("0.52 0.58 0.59 3/289 1234"), or 0 when it cannot be read.
unsigned runnable_tasks() noexcept {
  const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = buf;
  for (int spaces = 0; *p && spaces < 3; ++p) spaces += *p == ' ';
  return static_cast<unsigned>(std::strtoul(p, nullptr, 10));
}

unsigned usable_cpus() noexcept {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(CPU_COUNT(&set));
}

}  // namespace

namespace {
// set_spinning_verdict_for_testing(): -1 none, else the forced verdict.
std::atomic<int> g_forced_spinning_verdict{-1};
}  // namespace

void set_spinning_verdict_for_testing(std::optional<bool> verdict) noexcept {
  // relaxed: set by a test before the waits it concerns, read as a hint.
  g_forced_spinning_verdict.store(verdict ? (*verdict ? 1 : 0) : -1, std::memory_order_relaxed);
}

bool spinning_pays() noexcept {
  // relaxed: see set_spinning_verdict_for_testing().
  if (const int forced = g_forced_spinning_verdict.load(std::memory_order_relaxed); forced >= 0) return forced == 1;
  // A process-wide cache: the verdict in the low bit, the time it was reached (ns) above it. relaxed: a hint;
  // a stale or lost update costs one more /proc read or one spin too many, never correctness.
  static std::atomic<int64_t> cached{0};
  static const unsigned cpus = usable_cpus();
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Deadline::Clock::now().time_since_epoch()).count();
  const int64_t c = cached.load(std::memory_order_relaxed);
  if (c != 0 && spinning_verdict_stands(c & 1, c >> 1, now)) return c & 1;
  const unsigned runnable = runnable_tasks();
  // `runnable` counts this waiter; spinning pays while every runnable task can have a CPU.
  const bool pays = runnable == 0 || runnable <= cpus;
  cached.store((now << 1) | (pays ? 1 : 0), std::memory_order_relaxed);
  return pays;
}

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

#include "ipc/base/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ipc/base/error.h"

namespace ipc {

bool detail::cpu_has_prefetchw() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_PRFCHW) != 0;
#else
  return false;
#endif
}

std::optional<Deadline::Clock::duration> Deadline::remaining() const {
  if (!at_) return std::nullopt;
  auto now = Clock::now();
  return now >= *at_ ? Clock::duration::zero() : *at_ - now;
}

FutexWaitResult futex_wait(std::atomic<uint32_t>& word, uint32_t expected, const Deadline& deadline) {
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (auto left = deadline.remaining()) {
    if (*left <= Deadline::Clock::duration::zero()) return FutexWaitResult::kTimeout;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*left).count();
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    tsp = &ts;
  }
  // FUTEX_WAIT (not FUTEX_WAIT_PRIVATE): the kernel keys the wait on the shared page, so a waker in another
  // process that maps the same object at another address finds this waiter. The timeout is relative.
  long r = syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (r == 0) return FutexWaitResult::kWoken;
  switch (errno) {
    case EAGAIN: return FutexWaitResult::kValueChanged;
    case ETIMEDOUT: return FutexWaitResult::kTimeout;
    case EINTR: return FutexWaitResult::kWoken;  // callers re-check their condition and the deadline
    default: throw_errno("futex wait");
  }
}

int futex_wake(std::atomic<uint32_t>& word, int count) noexcept {
  long r = syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, count, nullptr, nullptr, 0);
  if (r < 0) {
    // FUTEX_WAKE fails only for a word outside this process's memory (EFAULT), a misaligned word or bad operation
    // (EINVAL), or a kernel without futexes (ENOSYS): a bug here, which no notifier could handle.
    char message[96];
    const int n = std::snprintf(message, sizeof message, "numa_mp: futex wake failed: %s\n", strerror(errno));
    if (n > 0) (void)!write(STDERR_FILENO, message, std::min<size_t>(size_t(n), sizeof message - 1));
    std::abort();
  }
  return static_cast<int>(r);
}

}  // namespace ipc

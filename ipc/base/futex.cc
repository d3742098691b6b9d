#include "ipc/base/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <emmintrin.h>
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

size_t streaming_copy_bytes() noexcept {
  static const size_t bytes = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? static_cast<size_t>(l2) : size_t{1} << 20;
  }();
  return bytes;
}

void detail::copy_for_reader_large(void* dst, const void* src, size_t n) noexcept {
  if (n >= streaming_copy_bytes()) {
    copy_streaming(dst, src, n);
  } else {
    std::memcpy(dst, src, n);
  }
}

void detail::copy_streaming(void* dst, const void* src, size_t n) noexcept {
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
#if defined(__x86_64__)
  // Up to the first line boundary of the destination, and after its last whole line: memcpy.
  const size_t head = std::min(n, (64 - reinterpret_cast<uintptr_t>(d) % 64) % 64);
  if (head != 0) std::memcpy(d, s, head);
  size_t i = head;
  for (; n - i >= 64; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  if (i < n) std::memcpy(d + i, s + i, n - i);
  // Streaming stores are weakly ordered: the fence puts them before the caller's release store that publishes them.
  _mm_sfence();
#else
  if (n != 0) std::memcpy(d, s, n);
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

// ipc/base/futex.h: sleeping and waking on a 32-bit word in shared memory (Linux futex, process-shared), and the
// CPU hints of the loops around them (cpu_relax, prefetch_for_write), a consumer's wait for a run (wait_for_run) and
// the copy of a large message for another CPU (copy_for_reader).
//
// Threads: any thread may wait or wake.
// Processes: the word may live in any MAP_SHARED mapping; waiters and wakers may be in different processes and
//   see the word at different addresses. These are deliberately *not* FUTEX_PRIVATE operations, and not
//   std::atomic::wait, which libstdc++ implements with private futexes and a process-local waiter table.
// Lifetime: the word belongs to whatever object contains it; nothing is allocated here.
// Errors: timeouts and spurious wake-ups are return values; an unexpected kernel error in futex_wait throws
//   SystemError, in futex_wake (a bad address: a bug) aborts.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

namespace ipc {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "a futex word must be a plain 32-bit word");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "a futex word must be lock-free");

// A point in time on the monotonic clock, or "never". Built from an optional relative timeout.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline never() { return Deadline(std::nullopt); }
  // A timeout past what the clock can count (hours::max(), say) never expires: the sum would overflow.
  template <typename Rep, typename Period>
  static Deadline after(std::chrono::duration<Rep, Period> timeout) {
    const Clock::time_point now = Clock::now();
    // Compared in double seconds, which hold any duration's count without overflow. Half the room left: what
    // rounding in that compare may hide stays far from the limit.
    const double seconds = std::chrono::duration<double>(timeout).count();
    if (seconds >= std::chrono::duration<double>(Clock::time_point::max() - now).count() / 2) return never();
    if (seconds <= 0) return Deadline(now);
    return Deadline(now + std::chrono::duration_cast<Clock::duration>(timeout));
  }
  // nullopt means "wait forever".
  template <typename Rep, typename Period>
  static Deadline from(std::optional<std::chrono::duration<Rep, Period>> timeout) {
    return timeout ? after(*timeout) : never();
  }

  bool is_never() const { return !at_; }
  // The point in time; nullopt for "never".
  std::optional<Clock::time_point> time_point() const { return at_; }
  bool expired() const { return at_ && Clock::now() >= *at_; }
  // Time left (zero once expired); nullopt for "never".
  std::optional<Clock::duration> remaining() const;

 private:
  explicit Deadline(std::optional<Clock::time_point> at) : at_(at) {}
  std::optional<Clock::time_point> at_;
};

enum class FutexWaitResult { kWoken, kValueChanged, kTimeout };

// Sleeps while `*word == expected`, until woken, the deadline passes, or a signal arrives (reported as kWoken:
// callers always re-check their condition). Returns at once with kValueChanged if the word differs.
// Any process, any thread.
FutexWaitResult futex_wait(std::atomic<uint32_t>& word, uint32_t expected, const Deadline& deadline);

// Wakes up to `count` waiters sleeping on `word`; returns how many were woken. Any process, any thread. Never
// throws, so that notifiers can be noexcept: the kernel refuses a wake only for a bad address or operation, a bug
// that aborts the process with a message.
int futex_wake(std::atomic<uint32_t>& word, int count) noexcept;
inline int futex_wake_all(std::atomic<uint32_t>& word) noexcept { return futex_wake(word, INT32_MAX); }

// A CPU hint for spin loops (PAUSE on x86).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

namespace detail {
// Whether the CPU has PREFETCHW (CPUID 0x80000001, ECX bit 8). Read once, at dynamic initialization: a call of
// prefetch_for_write() before that gets the weaker hint, never a fault.
bool cpu_has_prefetchw() noexcept;
inline const bool g_cpu_has_prefetchw = cpu_has_prefetchw();
}  // namespace detail

// How far ahead of its writes a producer streaming through a ring in shared memory asks for a line with
// prefetch_for_write() (SpscQueue's puts, the Pipe's writes): far enough that the line arrives before the writes reach
// it where two CPUs are far apart (a round trip of 0.5 us is about 30 puts of 8 bytes), near enough to stay inside
// the room of a ring that is not nearly full.
inline constexpr uint64_t kPrefetchAheadBytes = 1024;

// A CPU hint before writing the cache line that holds `p` soon: asks for the line in a writable state now, so that
// the write does not wait for another CPU to give it up (PREFETCHW where the CPU has it, else a prefetch for
// writing the compiler knows). Only a hint: nothing any thread reads changes.
inline void prefetch_for_write(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  if (detail::g_cpu_has_prefetchw) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
    return;
  }
#endif
  __builtin_prefetch(p, 1, 3);
}

// From how many bytes copy_for_reader() streams: the size of the L2 cache (sysconf; 1 MiB where the system does
// not say), read once.
size_t streaming_copy_bytes() noexcept;

// Copies `n` bytes into shared memory that a process on another CPU reads next: a message MessageQueue puts, a part
// of a Pipe's long message. From streaming_copy_bytes() on, with non-temporal (streaming) stores, then a store
// fence; below that, memcpy. A copy that fills the writer's L2 cache does not stay there until the reader takes it,
// and a cached write first fetches each line for ownership, from the reader's cache where the previous lap lies.
// MessageQueue, 1 MiB messages 1 -> 1 process through an 8 MiB arena (a 2-vCPU VM, docs/queue.md): where the two
// vCPUs were far apart 4.6-5.0 GB/s cached, 11.5-14.0 streamed; where close, 11.6-13.7 cached, 9.3-11.8 streamed;
// 128-512 KiB messages the same either way. The bytes are visible to another CPU once the caller's release store
// publishes them, as after memcpy. Inline: a message below kNeverStreamedBytes is a memcpy in the caller, with no
// call and no look at the threshold (MessageQueue's small puts); from there on, copy_for_reader_large().
[[gnu::always_inline]] inline void copy_for_reader(void* dst, const void* src, size_t n) noexcept;

namespace detail {
// Below this many bytes copy_for_reader() never streams: less than any L2 cache of the CPUs this library runs on, so
// below streaming_copy_bytes() (checked in futex_test).
inline constexpr size_t kNeverStreamedBytes = size_t{64} << 10;
// copy_for_reader() from kNeverStreamedBytes on: streams from streaming_copy_bytes() on, else memcpy.
void copy_for_reader_large(void* dst, const void* src, size_t n) noexcept;
// copy_for_reader()'s streaming copy, at any size (tests reach it below the threshold): non-temporal stores of the
// whole 64-byte lines of `dst`, memcpy for the bytes before the first and after the last, then a store fence.
void copy_streaming(void* dst, const void* src, size_t n) noexcept;
}  // namespace detail

inline void copy_for_reader(void* dst, const void* src, size_t n) noexcept {
  if (n < detail::kNeverStreamedBytes) [[likely]] {
    if (n != 0) std::memcpy(dst, src, n);  // an empty message may come with a null pointer
    return;
  }
  detail::copy_for_reader_large(dst, src, n);
}

// For a consumer of a single-producer ring that has taken everything it knew of, right behind its producer (SpscQueue
// gets, the Pipe's receives): the producer's position `tail` (loaded with acquire), and while the producer keeps
// adding and fewer than `run` units lie between `head` and it, a wait for a run: a look at `tail` every 4 pauses,
// up to 4 looks. Each look takes the line of `tail` from the producer, whose next store of it then waits for the
// line (and every store behind that one, in order): a consumer that looks after each item slows the producer it
// waits for. A producer that stopped (or lost its CPU: `tail` the same at two looks) is not waited for, so an item
// sent alone waits 4 pauses longer; an empty ring is left to the caller's wait. No clock, no syscall.
inline uint64_t wait_for_run(const std::atomic<uint64_t>& tail, uint64_t head, uint64_t run) {
  constexpr int kLooks = 4;
  constexpr int kPauses = 4;
  // acquire (each load): partner is the producer's release store of its position; what it wrote is visible.
  uint64_t t = tail.load(std::memory_order_acquire);
  if (t == head || t - head >= run) return t;
  for (int look = 0; look < kLooks; ++look) {
    for (int i = 0; i < kPauses; ++i) cpu_relax();
    const uint64_t now = tail.load(std::memory_order_acquire);
    const bool stopped = now == t;
    t = now;
    if (stopped || t - head >= run) break;
  }
  return t;
}

}  // namespace ipc

// ipc/queue/spsc_queue.h: the fastest queue: one producer process, one consumer process, fixed-size values.
//
//   auto q = ipc::SpscQueue<uint64_t>::create(seg, "ticks", 4096);   // or ::open(seg, "ticks") elsewhere
//   producer:  if (q.put(v) == ipc::Outcome::kClosed) ...
//   consumer:  uint64_t v; while (q.get(v) == ipc::Outcome::kOk) ...
//   batches:   size_t n; q.put_n(values, n);  uint64_t buf[64]; q.get_n(buf, n);   // n: how many went through
//
// Threads: at most one thread puts and at most one thread gets at a time (they may differ). size/closed/close
//   from any thread. Blocking calls spin briefly, then sleep on a futex; a blocking get() that finds only a few
//   values while the producer is still adding some waits (spinning, a few hundred nanoseconds at most) for a run
//   of them, which keeps it off the producer's cache lines (docs/queue.md); try_get() takes what is there.
// Processes: the ring lives in shared memory and holds no pointers. The first process to put becomes the
//   producer and the first to get becomes the consumer; another live process that tries to put (get) throws
//   StateError. A process may take over a role whose holder died. Happens-before: everything the producer did
//   before put(v) happens before the get() that returns v.
// Lifetime: as Queue<T> (create/open by name in a Segment, or create_at/attach in raw shared memory; a handle
//   does not keep the segment mapped). Kill safety: a producer killed mid-put had not sent its value (the value
//   never becomes visible); a consumer killed mid-get either had not taken it (the value stays for the next
//   consumer) or had taken it and is counted in abandoned_count() (every value of a get_n batch). A value put()
//   reported as sent is delivered to a consumer that lived past its get() or counted; nothing is delivered twice,
//   nothing wedges. A producer killed inside put_n has sent the values it had published (whole batches).
// Errors: full/empty/timeout/closed are Outcome values; misuse (a second live producer or consumer, a bad
//   capacity, a wrong block) throws StateError/InvalidArgument. put/get never allocate and never throw on the hot
//   path.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/queue/detail/mpmc_ops.h"
#include "ipc/queue/detail/spsc_ring.h"
#include "ipc/queue/result.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/codec.h"

namespace ipc {

template <typename T>
class SpscQueue {
  static_assert(std::is_trivially_copyable_v<T>, "SpscQueue<T> copies T bytewise through shared memory");
  static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process; send an offset");

 public:
  using value_type = T;

  static uint64_t bytes_needed(uint64_t capacity) {
    return detail::spsc_bytes_needed(detail::ring_capacity(capacity, "SpscQueue"), sizeof(T));
  }
  // Creates a queue named `name` holding at least `capacity` values. Throws InvalidArgument if the name is taken.
  static SpscQueue create(Segment& segment, std::string_view name, uint64_t capacity) {
    detail::ensure_process_setup();
    const uint64_t c = detail::ring_capacity(capacity, "SpscQueue");
    void* p = detail::create_block(segment, name, detail::spsc_bytes_needed(c, sizeof(T)), detail::kSpscQueueKind,
                                   [&](void* b) { detail::spsc_init(b, c, sizeof(T), type_hash()); });
    return SpscQueue(p);
  }
  // Opens the queue named `name`. Throws NotFound, or InvalidArgument when it is not an SpscQueue<T>.
  static SpscQueue open(const Segment& segment, std::string_view name) {
    auto b = detail::find_queue_block(segment, name, detail::kSpscQueueKind);
    return attach(b.ptr, b.bytes);
  }
  // Builds a queue in caller-provided shared memory (64-byte aligned, bytes_needed(capacity) bytes).
  static SpscQueue create_at(void* block, uint64_t bytes, uint64_t capacity) {
    detail::ensure_process_setup();
    const uint64_t c = detail::ring_capacity(capacity, "SpscQueue");
    if (bytes < detail::spsc_bytes_needed(c, sizeof(T)) || reinterpret_cast<uintptr_t>(block) % 64 != 0) {
      throw InvalidArgument("SpscQueue::create_at: the block must be 64-byte aligned and hold " + std::to_string(c) +
                            " values");
    }
    detail::spsc_init(block, c, sizeof(T), type_hash());
    return SpscQueue(block);
  }
  // Attaches to a queue built by create_at; checks that it is an SpscQueue<T>.
  static SpscQueue attach(void* block, uint64_t bytes) {
    detail::ensure_process_setup();
    const auto* h = static_cast<const detail::SpscHeader*>(block);
    if (bytes < sizeof(detail::SpscHeader) || h->magic != detail::kSpscMagic || h->version != detail::kSpscVersion ||
        h->slot_bytes != sizeof(T) || h->capacity == 0 || (h->capacity & (h->capacity - 1)) != 0 ||
        bytes < detail::spsc_bytes_needed(h->capacity, sizeof(T))) {
      throw InvalidArgument("SpscQueue::attach: the block is not an SpscQueue of " + std::to_string(sizeof(T)) +
                            "-byte values");
    }
    if (h->type_hash != 0 && h->type_hash != type_hash()) {
      throw InvalidArgument("SpscQueue::attach: the queue holds values of another type than " + codec_type_name<T>() +
                            " (of the same size)");
    }
    return SpscQueue(block);
  }

  SpscQueue() = default;

  // Producer only. Blocks while full: kOk or kClosed.
  [[nodiscard, gnu::always_inline]] Outcome put(const T& value) { return put_one(value, &kNever); }
  // Producer only. kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return put_one(value, &d);
  }
  // Producer only; wait-free: kOk, kFull or kClosed.
  [[nodiscard, gnu::always_inline]] Outcome try_put(const T& value) { return put_one(value, nullptr); }

  // Consumer only. Blocks while empty: kOk or kClosed (closed and drained).
  [[nodiscard, gnu::always_inline]] Outcome get(T& out) { return get_one(out, &kNever); }
  // Consumer only. kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(T& out, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_one(out, &d);
  }
  // Consumer only; wait-free: kOk, kEmpty or kClosed.
  [[nodiscard, gnu::always_inline]] Outcome try_get(T& out) { return get_one(out, nullptr); }

  // Batches: one index update (and one wake-up check) per batch instead of per value.
  // Producer only. Puts all of `values` in order, as many at a time as fit, blocking while full: kOk, or kClosed
  // when the queue was closed first (`put_count` says how many went in before).
  [[nodiscard]] Outcome put_n(std::span<const T> values, size_t& put_count) {
    return put_until(values.data(), values.size(), put_count, &kNever);
  }
  // Producer only; wait-free: puts as many of `values` as fit, at once: kOk (at least one, or `values` is empty),
  // kFull (none fit) or kClosed.
  [[nodiscard]] Outcome try_put_n(std::span<const T> values, size_t& put_count) {
    return put_until(values.data(), values.size(), put_count, nullptr);
  }
  // Consumer only. Waits for at least one value, then takes all there are, up to out.size(): kOk (`got` >= 1) or
  // kClosed (closed and drained). REQUIRES: out is not empty.
  [[nodiscard]] Outcome get_n(std::span<T> out, size_t& got) { return get_until(out.data(), out.size(), got, &kNever); }
  // Consumer only; wait-free: as get_n, kEmpty when there is nothing to take.
  [[nodiscard]] Outcome try_get_n(std::span<T> out, size_t& got) {
    return get_until(out.data(), out.size(), got, nullptr);
  }
  // Consumer only. The next value; nullopt when closed and drained.
  [[nodiscard]] std::optional<T> get() {
    T v;
    if (get(v) == Outcome::kOk) return v;
    return std::nullopt;
  }

  // Any process: later puts return kClosed, gets drain and then return kClosed, blocked calls wake. Idempotent.
  void close() {
    h_->closed.store(1, std::memory_order_release);  // release: partner is closed()'s acquire load
    detail::notify_all(h_->not_empty);
    detail::notify_all(h_->not_full);
  }
  bool closed() const { return h_->closed.load(std::memory_order_acquire) != 0; }  // acquire: see close()

  // Any process; estimates.
  uint64_t size_approx() const { return detail::spsc_size_approx(*h_); }
  bool empty_approx() const { return size_approx() == 0; }
  bool full_approx() const { return size_approx() >= capacity(); }
  uint64_t capacity() const { return h_->capacity; }
  // Values lost because a consumer died after taking one, before its get() returned. Any process; slow (it
  // first checks whether the consumer role's holder died inside a get()).
  uint64_t abandoned_count() const { return detail::spsc_abandoned(*h_); }

 private:
  explicit SpscQueue(void* block)
      : h_(static_cast<detail::SpscHeader*>(block)),
        slots_(reinterpret_cast<std::byte*>(block) + sizeof(detail::SpscHeader)),
        mask_(h_->capacity - 1) {}

  // Slot `i` of the ring at `slots` with `mask` (the handle's slots_ and mask_, which the callers hold in locals).
  static std::byte* slot(std::byte* slots, uint64_t mask, uint64_t i) { return slots + (i & mask) * sizeof(T); }

  // Takes (or re-takes after a fork) the producer role for this process; refreshes the cached consumer index.
  // self_pid_after_setup(): every factory ran ensure_process_setup() before it built this handle.
  void be_producer() {
    if (producer_pid_ != detail::self_pid_after_setup()) [[unlikely]] take_producer_role();
  }
  void be_consumer() {
    if (consumer_pid_ != detail::self_pid_after_setup()) [[unlikely]] take_consumer_role();
  }
  [[gnu::noinline]] void take_producer_role() {
    if (!detail::take_role(h_->producer_pid)) {
      throw StateError("SpscQueue: another live process (pid " + std::to_string(h_->producer_pid.load(std::memory_order_relaxed)) +
                       ") is the producer");
    }
    producer_pid_ = detail::self_pid();
    head_cache_ = h_->head.load(std::memory_order_acquire);  // acquire: partner is the consumer's release of head
  }
  [[gnu::noinline]] void take_consumer_role() {
    // A dead predecessor may have died returning a value: count it before its record is overwritten.
    detail::settle_spsc_consumer(*h_, h_->consumer_pid.load(std::memory_order_acquire));  // acquire: see take_role
    if (!detail::take_role(h_->consumer_pid)) {
      throw StateError("SpscQueue: another live process (pid " + std::to_string(h_->consumer_pid.load(std::memory_order_relaxed)) +
                       ") is the consumer");
    }
    consumer_pid_ = detail::self_pid();
    tail_cache_ = h_->tail.load(std::memory_order_acquire);  // acquire: partner is the producer's release of tail
  }

  // Copies `n` values between `values` and the ring from position `pos` on (wrapping round the end). One value is
  // one fixed-size copy (a move for small T, not a memcpy call of a variable length): put()/get() pass n = 1, a
  // constant once inlined, and the loops that wait for them test it at run time.
  [[gnu::always_inline]] static void copy_in(std::byte* slots, uint64_t mask, uint64_t pos, const T* values,
                                             uint64_t n) {
    if (n == 1) {
      std::memcpy(slot(slots, mask, pos), values, sizeof(T));
      return;
    }
    const uint64_t first = std::min(n, mask + 1 - (pos & mask));
    std::memcpy(slot(slots, mask, pos), values, first * sizeof(T));
    if (first < n) std::memcpy(slots, values + first, (n - first) * sizeof(T));
  }
  [[gnu::always_inline]] static void copy_out(std::byte* slots, uint64_t mask, uint64_t pos, T* out, uint64_t n) {
    if (n == 1) {
      std::memcpy(out, slot(slots, mask, pos), sizeof(T));
      return;
    }
    const uint64_t first = std::min(n, mask + 1 - (pos & mask));
    std::memcpy(out, slot(slots, mask, pos), first * sizeof(T));
    if (first < n) std::memcpy(out + first, slots, (n - first) * sizeof(T));
  }

  // How far ahead of the tail a put asks for its cache line (try_push; ipc::kPrefetchAheadBytes). SpscQueue 1 -> 1
  // between processes on distant cores: 49-93 M values/s without, 87-310 M with (docs/benchmarks.md).
  static constexpr uint64_t kPrefetchSlots =
      kPrefetchAheadBytes / sizeof(T) > 0 ? kPrefetchAheadBytes / sizeof(T) : 1;
  static constexpr uint64_t kSlotsPerLine = sizeof(T) >= 64 ? 1 : 64 / sizeof(T);
  // Puts up to `n` values at once; how many. The header, slots and mask are read into locals once: the compiler
  // barrier in notify() (light_fence) and the stores to the header would otherwise make it reload them from the
  // handle after each.
  [[gnu::always_inline]] uint64_t try_push(const T* values, uint64_t n) {
    detail::SpscHeader& h = *h_;
    std::byte* const slots = slots_;
    const uint64_t mask = mask_;
    const uint64_t t = h.tail.load(std::memory_order_relaxed);  // relaxed: only the producer writes tail
    // What this handle last saw of head may lie more than a lap behind `t`: another handle of this process (a
    // copy, another thread's) may have put since. Then `used` exceeds the capacity, and the reload below
    // corrects it; an unchecked `mask + 1 - used` would wrap round to a huge room and overwrite unread values.
    uint64_t used = t - head_cache_;
    if (used >= mask + 1 || n > mask + 1 - used) {
      // acquire: partner is the consumer's release store of head; its reads of the slots are done.
      head_cache_ = h.head.load(std::memory_order_acquire);
      used = t - head_cache_;
      if (used >= mask + 1) return 0;  // full (or positions out of order: nothing is written)
    }
    const uint64_t room = mask + 1 - used;
    const uint64_t k = std::min(n, room);
    // Each new cache line a put starts asks for the line kPrefetchSlots ahead, which the consumer has left (it is
    // inside the room): the consumer read that line a lap ago, and a write waits until the consumer's copy is
    // gone, one cross-core round trip per line if asked only then (ipc::prefetch_for_write). A batch asks for
    // every line it starts (a slot that holds a line's first byte, then one slot in kSlotsPerLine).
    if (room > kPrefetchSlots) {
      const uint64_t end = t + std::min(k, room - kPrefetchSlots);
      uint64_t p = t;
      while (p < end && ((p & mask) * sizeof(T)) % 64 >= sizeof(T)) ++p;
      for (; p < end; p += kSlotsPerLine) prefetch_for_write(slot(slots, mask, p + kPrefetchSlots));
    }
    copy_in(slots, mask, t, values, k);
    // release: partner is the consumer's acquire load of tail; the slots' bytes are visible with it.
    h.tail.store(t + k, std::memory_order_release);
    detail::notify(h.not_empty);
    return k;
  }
  // Takes up to `n` values at once; how many. Locals as in try_push.
  [[gnu::always_inline]] uint64_t try_pop(T* out, uint64_t n) {
    detail::SpscHeader& h = *h_;
    std::byte* const slots = slots_;
    const uint64_t mask = mask_;
    const uint64_t hd = h.head.load(std::memory_order_relaxed);  // relaxed: only the consumer writes head
    // As in try_push: what this handle last saw of tail may lie behind `hd` (another handle of this process took
    // values since), which reads as more than a lap ready; the reload corrects it.
    uint64_t ready = tail_cache_ - hd;
    if (ready < n || ready > mask + 1) {
      // acquire: partner is the producer's release store of tail.
      tail_cache_ = h.tail.load(std::memory_order_acquire);
      ready = tail_cache_ - hd;
      if (ready == 0 || ready > mask + 1) return 0;  // empty (or positions out of order: nothing is read)
    }
    const uint64_t k = std::min(n, ready);
    copy_out(slots, mask, hd, out, k);
    // release: partner is the producer's acquire load of head; our reads of the slots are done before it reuses them.
    h.head.store(hd + k, std::memory_order_release);
    detail::test_hook(detail::HookPoint::kGetReleased);
    detail::notify(h.not_full);
    // relaxed: only a settler reads it, after this process died (every store of ours is then visible). Until this
    // store, head - returned = k counts the values as taken and not returned.
    h.returned.store(hd + k, std::memory_order_relaxed);
    return k;
  }

  // put()/get() in one value: the common case inline (a role check, for put the closed check, one ring
  // operation); a full or empty ring goes out of line to the general path (which looks again, checks `closed`,
  // then waits per `d`). For a small T the inline path works on a copy of the value and the out-of-line calls
  // take their own, so that the caller's variables never escape into them: escaped, they would be stored and
  // reloaded around every compiler barrier of the inline path (light_fence()) in the caller's loop.
  // (A T without a default constructor takes the by-reference path: the copies need a T to copy into.)
  static constexpr bool kCopyInRegisters = sizeof(T) <= 2 * sizeof(uint64_t) && std::is_default_constructible_v<T>;
  [[gnu::always_inline]] Outcome put_one(const T& value, const Deadline* d) {
    be_producer();
    if (closed()) [[unlikely]] return Outcome::kClosed;
    if constexpr (kCopyInRegisters) {
      const T copy = value;
      if (try_push(&copy, 1) != 0) [[likely]] return Outcome::kOk;
      return put_one_waiting_by_value(value, d);
    } else {
      if (try_push(&value, 1) != 0) [[likely]] return Outcome::kOk;
      return put_one_waiting(value, d);
    }
  }
  [[gnu::always_inline]] Outcome get_one(T& out, const Deadline* d) {
    be_consumer();
    // A blocking get that has taken every value it knew of looks at `tail` through refill() (`d` is a constant
    // once inlined: get() tests the index, try_get() nothing).
    if (d != nullptr && tail_cache_ == h_->head.load(std::memory_order_relaxed)) [[unlikely]] refill();
    if constexpr (kCopyInRegisters) {
      T taken;
      if (try_pop(&taken, 1) != 0) [[likely]] {
        out = taken;
        return Outcome::kOk;
      }
      return get_one_waiting_by_value(out, d);
    } else {
      if (try_pop(&out, 1) != 0) [[likely]] return Outcome::kOk;
      return get_one_waiting(out, d);
    }
  }
  // put_one_waiting() from a copy of its own (see put_one).
  [[gnu::always_inline]] Outcome put_one_waiting_by_value(const T& value, const Deadline* d) {
    const T waiting = value;
    return put_one_waiting(waiting, d);
  }
  // get_one_waiting() into a temporary of its own (see put_one), copied out on success.
  [[gnu::always_inline]] Outcome get_one_waiting_by_value(T& out, const Deadline* d) {
    T waited;
    const Outcome result = get_one_waiting(waited, d);
    if (result == Outcome::kOk) out = waited;
    return result;
  }
  [[gnu::noinline]] Outcome put_one_waiting(const T& value, const Deadline* d) {
    size_t put_count;
    return put_until(&value, 1, put_count, d);
  }
  [[gnu::noinline]] Outcome get_one_waiting(T& out, const Deadline* d) {
    size_t got;
    return get_until(&out, 1, got, d);
  }

  // Puts `n` values; with a deadline waits for room until all are in, without one puts what fits.
  [[gnu::always_inline]] Outcome put_until(const T* values, size_t n, size_t& done, const Deadline* d) {
    be_producer();
    done = 0;
    if (closed()) return Outcome::kClosed;
    done = try_push(values, n);
    if (done == n) return Outcome::kOk;
    if (!d) return done > 0 ? Outcome::kOk : Outcome::kFull;
    Outcome result = Outcome::kTimeout;
    detail::block_until(h_->not_full, *d, [&](bool) {
      if (closed()) {
        result = Outcome::kClosed;
        return detail::Attempt::kDone;
      }
      done += try_push(values + done, n - done);
      if (done < n) return detail::Attempt::kRetry;
      result = Outcome::kOk;
      return detail::Attempt::kDone;
    });
    return result;
  }
  // One look: kOk (`got` values taken), kEmpty, or kClosed once closed and drained.
  [[gnu::always_inline]] Outcome take(T* out, size_t n, size_t& got) {
    if ((got = try_pop(out, n)) != 0) return Outcome::kOk;
    if (!closed()) return Outcome::kEmpty;
    return (got = try_pop(out, n)) != 0 ? Outcome::kOk : Outcome::kClosed;  // drain what was put before close()
  }
  // Takes between 1 and `n` values; with a deadline waits for the first.
  [[gnu::always_inline]] Outcome get_until(T* out, size_t n, size_t& got, const Deadline* d) {
    be_consumer();
    Outcome result = take(out, n, got);
    if (result != Outcome::kEmpty || !d) return result;
    result = Outcome::kTimeout;
    detail::block_until(h_->not_empty, *d, [&](bool) {
      const Outcome q = take(out, n, got);
      if (q == Outcome::kEmpty) return detail::Attempt::kRetry;
      result = q;
      return detail::Attempt::kDone;
    });
    return result;
  }

  // For a blocking get() that has taken every value it knew of: reloads `tail`, waiting for a run of kRefillRun
  // values while the producer keeps adding (ipc::wait_for_run(): a value sent alone waits 4 pauses longer).
  // SpscQueue 1 -> 1 between processes on distant cores, alternated runs: 45-90 M values/s without, 65-83 M with
  // (docs/benchmarks.md). It asks no spinning_pays() verdict, which reads the clock: a consumer right behind its
  // producer comes here every few values, and the wait's stop rule ends it for a producer that lost its CPU.
  [[gnu::noinline]] void refill() {
    constexpr uint64_t kRefillRun = 32;
    const uint64_t hd = h_->head.load(std::memory_order_relaxed);  // relaxed: only the consumer writes head
    tail_cache_ = wait_for_run(h_->tail, hd, std::min(kRefillRun, (mask_ + 1) / 2));
  }

  inline static const Deadline kNever = Deadline::never();
  // T's name, hashed, as the header records it (checked on attach and open).
  static uint32_t type_hash() { return detail::spsc_type_hash(detail::type_fingerprint(codec_type_name<T>())); }
  detail::SpscHeader* h_ = nullptr;
  std::byte* slots_ = nullptr;
  uint64_t mask_ = 0;
  // Process-local: which process this handle took each role for, and the cached index of the other side.
  uint32_t producer_pid_ = 0;
  uint32_t consumer_pid_ = 0;
  uint64_t head_cache_ = 0;
  uint64_t tail_cache_ = 0;
};

}  // namespace ipc

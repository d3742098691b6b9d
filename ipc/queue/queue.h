// ipc/queue/queue.h: bounded multi-producer/multi-consumer queues of fixed-size values in shared memory:
// Queue<T>, JoinableQueue<T> (task_done/join) and SimpleQueue<T>. See also spsc_queue.h (one producer, one
// consumer, fastest) and message_queue.h (variable-size messages, Codec<T>).
//
//   ipc::Segment seg = ipc::Segment::create("app", 1 << 20);
//   auto jobs = ipc::Queue<Job>::create(seg, "jobs", 1024);        // in one process
//   auto jobs = ipc::Queue<Job>::open(seg2, "jobs");               // in another (seg2 = Segment::open("app"))
//   if (jobs.put(job) == ipc::Outcome::kClosed) ...                // blocks while full
//   Job j; switch (jobs.get(j, 100ms)) { case ipc::Outcome::kOk: ... case kTimeout: ... case kClosed: ... }
//
// Threads: every method may be called from any number of threads at once (lock-free claims; blocking calls
//   spin briefly, then sleep on a futex). A lone producer and a lone consumer claim by a plain store instead of a
//   CAS (a lease per side); the second thread to put (get) revokes that lease, once, which costs it a barrier of
//   a few microseconds and waits out the holder's claim if one is in flight (docs/queue.md, "Leases"). Not
//   async-signal-safe: a put or get from a signal handler that interrupted a call of the same thread on the same
//   queue may lose a value uncounted (a thread's claims by store and its hand-off entry are not reentrant).
// Processes: the ring lives in a segment (or any MAP_SHARED memory) and holds no pointers; any number of
//   processes may put and get. Ordering: FIFO per producer; values from different producers interleave.
//   Happens-before: everything a producer did before put(v) happens before the get() that returns v.
// Lifetime: create() builds the ring under a name before any other process can find it; open() finds it. A
//   handle is a small process-local view: it does not keep the segment mapped, so keep the Segment alive while
//   using it. The ring lives until the segment is removed (or the block is removed with Segment::remove_block).
//   A process killed at any point (mid-put, mid-get, asleep) does not wedge the queue: the slot it held is
//   reclaimed by whoever is blocked behind it, at most that one in-flight message is lost, and each loss adds 1
//   to abandoned_count(), which every process can read: a message is delivered to a consumer that lived past
//   its get(), or counted. close() does not strand messages: gets drain everything put before it (waiting for
//   a slot still being written) and only then return kClosed. See docs/queue.md for the protocol.
// Errors: full/empty/timeout/closed are ipc::Outcome values ([[nodiscard]]). A bad capacity, a name already
//   taken, or opening a block that is not this kind of queue ("... is a Lock, not a Queue") throw InvalidArgument;
//   a missing name throws NotFound; OS failures throw SystemError. put/get never allocate and never throw on the
//   hot path. Memory overwritten behind the queue's back may lose or garble values, but no call reads or writes
//   outside the block or hangs: the geometry is read once at create/open (message_queue_fuzz).
#pragma once

#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/queue/detail/mpmc_ops.h"
#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/result.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/codec.h"

namespace ipc {

template <typename T>
class Queue {
  static_assert(std::is_trivially_copyable_v<T>, "Queue<T> copies T bytewise through shared memory");
  static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process; send an offset");

 public:
  using value_type = T;

  // Bytes a ring of `capacity` values needs (for create_at). Capacity is rounded up to a power of two.
  static uint64_t bytes_needed(uint64_t capacity) {
    return detail::MpmcRing::bytes_needed(detail::ring_capacity(capacity, "Queue"), sizeof(T));
  }
  // Creates a queue named `name` in `segment` holding at least `capacity` values. Throws InvalidArgument if the
  // name is taken. Any process.
  static Queue create(Segment& segment, std::string_view name, uint64_t capacity) {
    return Queue(create_ring(segment, name, capacity, kFlags));
  }
  // Opens the queue named `name`. Throws NotFound, or InvalidArgument when it is not a Queue<T>.
  static Queue open(const Segment& segment, std::string_view name) { return Queue(open_ring(segment, name, kFlags)); }
  // Builds a queue in caller-provided shared memory (64-byte aligned, bytes_needed(capacity) bytes), e.g. a
  // MAP_SHARED mapping inherited by fork()ed children.
  static Queue create_at(void* block, uint64_t bytes, uint64_t capacity) {
    return Queue(init_ring(block, bytes, capacity, kFlags));
  }
  // Attaches to a queue built by create_at (in this or another process); checks that it is a Queue<T>.
  static Queue attach(void* block, uint64_t bytes) {
    return Queue(checked_ring(block, bytes, kFlags, "Queue::attach"));
  }

  Queue() = default;  // an empty handle; assign a created or opened one before use

  // The put/get calls are inline in the caller, as SpscQueue's, down to their first look at the ring (a claim at
  // the index hint); the walks, waits and reaping stay out of line (mpmc_ops.h). Left to the compiler, a program
  // that calls them from several places got them out of line, each call a frame of six saved registers: a put + get
  // pair in one process took 222 instructions so, 172 inline (callgrind; docs/queue.md).
  // Blocks while the queue is full. Returns kOk or kClosed. Any process/thread.
  [[nodiscard, gnu::always_inline]] Outcome put(const T& value) { return put_until(value, nullptr); }
  // As put(), giving up after `timeout`: kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return put_until(value, &d);
  }
  // Never blocks: kOk, kFull or kClosed. Lock-free.
  [[nodiscard, gnu::always_inline]] Outcome try_put(const T& value) {
    return detail::mpmc_put(ring_, nullptr, [&](std::byte* p) { return write(p, value); });
  }

  // Blocks while the queue is empty. kOk (value in `out`) or kClosed (closed and drained). Any process/thread.
  [[nodiscard, gnu::always_inline]] Outcome get(T& out) { return get_until(out, nullptr); }
  // As get(T&), giving up after `timeout`: kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(T& out, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_until(out, &d);
  }
  // Never blocks: kOk, kEmpty or kClosed (closed and drained). Lock-free.
  [[nodiscard, gnu::always_inline]] Outcome try_get(T& out) {
    return detail::mpmc_get(ring_, nullptr, [&](const std::byte* p, uint32_t) { std::memcpy(&out, p, sizeof(T)); });
  }
  // Blocks for the next value; nullopt when the queue is closed and drained.
  [[nodiscard, gnu::always_inline]] std::optional<T> get() {
    T v;
    if (get(v) == Outcome::kOk) return v;
    return std::nullopt;
  }

  // Closes the queue for everyone: later puts return kClosed, gets drain what is left and then return kClosed,
  // and every blocked put/get wakes up. Idempotent. Any process.
  void close() { ring_.close(); }
  bool closed() const { return ring_.closed(); }

  // Estimates, exact only while nobody puts or gets. Any process.
  uint64_t size_approx() const { return ring_.size_approx(); }
  bool empty_approx() const { return size_approx() == 0; }
  bool full_approx() const { return size_approx() >= capacity(); }
  uint64_t capacity() const { return ring_.capacity(); }
  // Messages lost because a process died holding a claim on them (mid-put or mid-get), including a consumer
  // killed after taking its message but before get() returned. Any process; slow-ish (checks armed hand-offs).
  uint64_t abandoned_count() const { return ring_.abandoned(); }

 private:
  // JoinableQueue builds its Queue<T> with its own flags and reads the ring's counters.
  template <typename>
  friend class JoinableQueue;
  static constexpr uint32_t kFlags = 0;
  explicit Queue(detail::MpmcRing ring) : ring_(ring) {}

  static detail::MpmcRing init_ring(void* block, uint64_t bytes, uint64_t capacity, uint32_t flags) {
    const uint64_t c = detail::ring_capacity(capacity, "Queue");
    if (bytes < detail::MpmcRing::bytes_needed(c, sizeof(T))) {
      throw InvalidArgument("Queue::create_at: " + std::to_string(bytes) + " bytes is too small for " +
                            std::to_string(c) + " values");
    }
    init_typed(block, c, flags);
    return detail::checked_mpmc(block, bytes, sizeof(T), flags, "Queue::create_at");
  }
  // A ring of T: its geometry, and T's name for the checks on open and attach.
  static void init_typed(void* block, uint64_t capacity, uint32_t flags) {
    detail::MpmcRing::init(block, capacity, sizeof(T), sizeof(T), flags);
    detail::record_type(*static_cast<detail::MpmcHeader*>(block), codec_type_name<T>());
  }
  static detail::MpmcRing checked_ring(void* block, uint64_t bytes, uint32_t flags, std::string_view what) {
    detail::MpmcRing ring = detail::checked_mpmc(block, bytes, sizeof(T), flags, what);
    detail::check_type(ring.header(), codec_type_name<T>(), what);
    return ring;
  }
  static detail::MpmcRing create_ring(Segment& segment, std::string_view name, uint64_t capacity, uint32_t flags) {
    const uint64_t c = detail::ring_capacity(capacity, "Queue");
    const uint64_t bytes = detail::MpmcRing::bytes_needed(c, sizeof(T));
    void* p = detail::create_block(segment, name, bytes, detail::mpmc_kind(flags),
                                   [&](void* b) { init_typed(b, c, flags); });
    return detail::MpmcRing(p);
  }
  static detail::MpmcRing open_ring(const Segment& segment, std::string_view name, uint32_t flags) {
    auto b = detail::find_queue_block(segment, name, detail::mpmc_kind(flags));
    return checked_ring(b.ptr, b.bytes, flags, "Queue::open");
  }

  static uint32_t write(std::byte* p, const T& value) {
    std::memcpy(p, &value, sizeof(T));
    return sizeof(T);
  }
  [[gnu::always_inline]] Outcome put_until(const T& value, const Deadline* d) {
    return detail::mpmc_put(ring_, d ? d : &kNever, [&](std::byte* p) { return write(p, value); });
  }
  // JoinableQueue's puts (`d`: nullptr for try_put): as put_until(), counting the value into `unfinished` once the
  // slot is held, before it is published (MpmcRing::count_put()).
  [[gnu::always_inline]] Outcome put_counted(const T& value, const Deadline* d) {
    return detail::mpmc_put(ring_, d, [&](std::byte* p) {
      ring_.count_put(p);
      return write(p, value);
    });
  }
  [[gnu::always_inline]] Outcome get_until(T& out, const Deadline* d) {
    return detail::mpmc_get(ring_, d ? d : &kNever,
                            [&](const std::byte* p, uint32_t) { std::memcpy(&out, p, sizeof(T)); });
  }

  inline static const Deadline kNever = Deadline::never();
  detail::MpmcRing ring_;
};

// A queue of T that also counts unfinished work, like Python's JoinableQueue: every successful put adds one, every
// task_done() removes one, join() waits until the count is zero. It has a Queue<T> rather than being one, so no
// put can reach the ring around the count (a JoinableQueue does not convert to Queue<T>&).
// Threads/Processes: as Queue<T>; task_done() and join() from any process.
// Lifetime: as Queue<T>. A message lost to a killed process (abandoned_count()) is also removed from the count, and
//   a producer killed before its put held a slot (asleep on a full queue) never added one; a consumer killed after
//   get() but before task_done() leaves its item counted: use join(timeout) where workers may die.
// Errors: as Queue<T>; task_done() called more times than values were put throws StateError.
template <typename T>
class JoinableQueue {
  static constexpr uint32_t kJoinFlags = detail::MpmcHeader::kFlagJoinable;

 public:
  using value_type = T;

  static uint64_t bytes_needed(uint64_t capacity) { return Queue<T>::bytes_needed(capacity); }
  static JoinableQueue create(Segment& segment, std::string_view name, uint64_t capacity) {
    return JoinableQueue(Queue<T>::create_ring(segment, name, capacity, kJoinFlags));
  }
  static JoinableQueue open(const Segment& segment, std::string_view name) {
    return JoinableQueue(Queue<T>::open_ring(segment, name, kJoinFlags));
  }
  static JoinableQueue create_at(void* block, uint64_t bytes, uint64_t capacity) {
    return JoinableQueue(Queue<T>::init_ring(block, bytes, capacity, kJoinFlags));
  }
  static JoinableQueue attach(void* block, uint64_t bytes) {
    return JoinableQueue(Queue<T>::checked_ring(block, bytes, kJoinFlags, "JoinableQueue::attach"));
  }
  JoinableQueue() = default;

  // As Queue<T>; a put that returns kOk adds one to the unfinished count. The count is taken once the put holds
  // its slot, just before the value is written: a producer killed before (asleep on a full queue, say) put nothing,
  // and one killed after is a loss, counted in abandoned_count() and taken off the count again.
  [[nodiscard, gnu::always_inline]] Outcome put(const T& value) { return q_.put_counted(value, &Queue<T>::kNever); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return q_.put_counted(value, &d);
  }
  [[nodiscard, gnu::always_inline]] Outcome try_put(const T& value) { return q_.put_counted(value, nullptr); }

  // As Queue<T>.
  [[nodiscard, gnu::always_inline]] Outcome get(T& out) { return q_.get(out); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(T& out, std::chrono::duration<Rep, Period> timeout) {
    return q_.get(out, timeout);
  }
  [[nodiscard, gnu::always_inline]] Outcome try_get(T& out) { return q_.try_get(out); }
  [[nodiscard, gnu::always_inline]] std::optional<T> get() { return q_.get(); }
  void close() { q_.close(); }
  bool closed() const { return q_.closed(); }
  uint64_t size_approx() const { return q_.size_approx(); }
  bool empty_approx() const { return q_.empty_approx(); }
  bool full_approx() const { return q_.full_approx(); }
  uint64_t capacity() const { return q_.capacity(); }
  uint64_t abandoned_count() const { return q_.abandoned_count(); }

  // Marks one got value as processed. Throws StateError when there is no unfinished value. Any process.
  void task_done() {
    auto& u = header().unfinished;
    // acq_rel: release pairs with join()'s acquire load (the work done before task_done() is visible to the
    // joiner); acquire pairs with the puts' increments.
    int64_t cur = u.load(std::memory_order_acquire);
    do {
      if (cur <= 0) throw StateError("JoinableQueue::task_done() called more times than values were put");
    } while (!u.compare_exchange_weak(cur, cur - 1, std::memory_order_acq_rel, std::memory_order_acquire));
    if (cur == 1) detail::notify_all(header().join);
  }
  // Blocks until every value put has been task_done()'d. Any process.
  void join() { (void)join_until(Deadline::never()); }
  // As join(), giving up after `timeout`: kOk or kTimeout.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(Deadline::after(timeout)) ? Outcome::kOk : Outcome::kTimeout;
  }
  // Puts not yet matched by task_done(). Any process.
  int64_t unfinished_approx() const {
    return header().unfinished.load(std::memory_order_relaxed);  // relaxed: an estimate
  }

 private:
  explicit JoinableQueue(detail::MpmcRing ring) : q_(ring) {}
  detail::MpmcHeader& header() const { return q_.ring_.header(); }

  bool join_until(const Deadline& d) {
    return detail::block_until(header().join, d, [&](bool check_dead) {
      // A consumer killed while returning an item never task_done()s it: settling its hand-off removes it.
      if (check_dead) (void)q_.ring_.abandoned();
      // acquire: partner is task_done()'s release; the consumers' work is visible after join() returns.
      return header().unfinished.load(std::memory_order_acquire) <= 0 ? detail::Attempt::kDone
                                                                       : detail::Attempt::kRetry;
    });
  }

  Queue<T> q_;
};
static_assert(!std::is_convertible_v<JoinableQueue<int>&, Queue<int>&>,
              "a put through a Queue<T>& would skip the unfinished count");

// Python's SimpleQueue: a Queue<T> with only the blocking put/get, empty and close, for code that wants no
// options. Same contract as Queue<T>.
template <typename T>
class SimpleQueue {
 public:
  static constexpr uint64_t kDefaultCapacity = 1024;
  static SimpleQueue create(Segment& segment, std::string_view name, uint64_t capacity = kDefaultCapacity) {
    return SimpleQueue(Queue<T>::create(segment, name, capacity));
  }
  static SimpleQueue open(const Segment& segment, std::string_view name) {
    return SimpleQueue(Queue<T>::open(segment, name));
  }
  SimpleQueue() = default;

  // Blocks while full: kOk or kClosed.
  [[nodiscard, gnu::always_inline]] Outcome put(const T& value) { return q_.put(value); }
  // Blocks while empty; nullopt when the queue is closed and drained.
  [[nodiscard, gnu::always_inline]] std::optional<T> get() { return q_.get(); }
  bool empty() const { return q_.empty_approx(); }
  void close() { q_.close(); }

 private:
  explicit SimpleQueue(Queue<T> q) : q_(q) {}
  Queue<T> q_;
};

}  // namespace ipc

// ipc/queue/message_queue.h: a bounded multi-producer/multi-consumer queue of variable-size messages in shared
// memory (bytes; strings, vectors and any type with an ipc::Codec<T> through put(const T&) / get<T>()).
//
//   auto q = ipc::MessageQueue::create(seg, "events", 256, 64 * 1024);   // 256 messages of up to 64 KiB
//   q.put(std::as_bytes(std::span(text)));
//   std::vector<std::byte> msg;  if (q.get(msg) == ipc::Outcome::kOk) ...
//
// Typed: MessageQueue::create<T>(seg, "events", 256, 4096) records T (its codec_type_name<T>(), for Cap'n Proto
// messages the schema's name and id) in the queue, and MessageQueue::open<T>(seg, "events") refuses a queue made
// for another type at once, naming both, before any message is consumed. Untyped create/open work as before
// (an untyped open of a typed queue is allowed: bytes are always bytes).
//
// Each message occupies one slot of max_message_bytes() (like POSIX mq_msgsize and Boost's message_queue), so
// memory is capacity * max_message_bytes; choose the maximum for the largest message you send.
//
// Threads: every method from any number of threads at once (lock-free claims, then a copy in or out).
// Processes: the ring lives in shared memory, holds no pointers, and is used from any number of processes.
//   Happens-before: everything a producer did before put(m) happens before the get() that returns m.
// Lifetime: as Queue<T> (see queue.h), including kill safety: a process killed mid-put or mid-get loses at most
//   its one in-flight message, counted in abandoned_count().
// Errors: full/empty/timeout/closed are Outcome values. open<T>() of a queue created for another type, or
//   untyped, throws InvalidArgument ("queue 'events' in segment 's' carries Foo, not Bar"). A message longer
//   than max_message_bytes() throws MessageTooLarge at once (before waiting: it could never fit). A caller buffer
//   smaller than max_message_bytes() throws InvalidArgument. A codec that fails on decode throws its CodecError
//   from get<T>() (the corrupt message is consumed). put/get of bytes never allocate (get into a vector
//   allocates only when the vector must grow) and never throw on the hot path. Memory overwritten behind the
//   queue's back (another process writing into the block): a slot length that cannot be throws StreamCorrupted
//   from get (the slot is consumed); no call reads or writes outside the block or hangs (message_queue_fuzz).
#pragma once

#include <chrono>
#include <optional>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/queue/detail/mpmc_ops.h"
#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/result.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/codec.h"

namespace ipc {

class MessageQueue {
 public:
  // Bytes a ring of `capacity` messages of up to `max_message_bytes` needs (for create_at).
  static uint64_t bytes_needed(uint64_t capacity, uint64_t max_message_bytes);
  // Creates a queue named `name` in `segment`. Throws InvalidArgument if the name is taken, a size is 0, or
  // capacity * max_message_bytes does not fit in 64 bits.
  static MessageQueue create(Segment& segment, std::string_view name, uint64_t capacity, uint64_t max_message_bytes);
  // Opens the queue named `name`. Throws NotFound, or InvalidArgument when it is not a MessageQueue.
  static MessageQueue open(const Segment& segment, std::string_view name);
  // As create(), recording that the queue carries values of type T (see the header comment).
  template <typename T>
  static MessageQueue create(Segment& segment, std::string_view name, uint64_t capacity, uint64_t max_message_bytes) {
    return create_typed(segment, name, capacity, max_message_bytes, codec_type_name<T>());
  }
  // As open(); also throws InvalidArgument naming both types unless the queue was created by create<T>().
  template <typename T>
  static MessageQueue open(const Segment& segment, std::string_view name) {
    return open_typed(segment, name, codec_type_name<T>());
  }
  // In caller-provided shared memory (64-byte aligned, bytes_needed() bytes), e.g. a MAP_SHARED mapping.
  static MessageQueue create_at(void* block, uint64_t bytes, uint64_t capacity, uint64_t max_message_bytes);
  static MessageQueue attach(void* block, uint64_t bytes);

  MessageQueue() = default;

  // Blocks while full: kOk or kClosed. Throws MessageTooLarge. Any process/thread.
  [[nodiscard]] Outcome put(std::span<const std::byte> message) { return put_bytes(message, &kNever); }
  // kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome put(std::span<const std::byte> message, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return put_bytes(message, &d);
  }
  // Never blocks: kOk, kFull or kClosed. Lock-free.
  [[nodiscard]] Outcome try_put(std::span<const std::byte> message) { return put_bytes(message, nullptr); }

  // Blocks while empty: kOk (the message replaces `out`'s contents) or kClosed (closed and drained).
  [[nodiscard]] Outcome get(std::vector<std::byte>& out) { return get_vector(out, &kNever); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(std::vector<std::byte>& out, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_vector(out, &d);
  }
  // Never blocks: kOk, kEmpty or kClosed.
  [[nodiscard]] Outcome try_get(std::vector<std::byte>& out) { return get_vector(out, nullptr); }
  // Into a caller buffer of at least max_message_bytes() (else InvalidArgument); `size` receives the length.
  [[nodiscard]] Outcome get(std::span<std::byte> buffer, size_t& size) { return get_span(buffer, size, &kNever); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(std::span<std::byte> buffer, size_t& size,
                                std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_span(buffer, size, &d);
  }
  [[nodiscard]] Outcome try_get(std::span<std::byte> buffer, size_t& size) {
    return get_span(buffer, size, nullptr);
  }

  // Typed messages through ipc::Codec<T> (strings, vectors, maps, your own types; see ipc/shared/codec.h). The
  // value is encoded straight into the slot and decoded straight out of it. put_value: as put(span), plus
  // MessageTooLarge when the encoding exceeds max_message_bytes(); an encoder exception propagates and nothing is
  // sent. get_value: as get(vector), plus CodecError for a corrupt message (which is consumed).
  template <typename T>
  [[nodiscard]] Outcome put_value(const T& value) { return put_encoded(value, &kNever); }
  template <typename T, typename Rep, typename Period>
  [[nodiscard]] Outcome put_value(const T& value, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return put_encoded(value, &d);
  }
  template <typename T>
  [[nodiscard]] Outcome try_put_value(const T& value) { return put_encoded(value, nullptr); }
  template <typename T>
  [[nodiscard]] Outcome get_value(T& out) { return get_decoded(out, &kNever); }
  template <typename T, typename Rep, typename Period>
  [[nodiscard]] Outcome get_value(T& out, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_decoded(out, &d);
  }
  template <typename T>
  [[nodiscard]] Outcome try_get_value(T& out) { return get_decoded(out, nullptr); }
  // Blocks for the next value; nullopt when the queue is closed and drained.
  template <typename T>
  [[nodiscard]] std::optional<T> get_value() {
    std::optional<T> v;
    get_with(&kNever, [&](const std::byte* p, uint32_t n) { v = Codec<T>::decode(std::span(p, n)); });
    return v;
  }

  // As Queue<T>: close for everyone (gets drain first), wake all waiters. Any process.
  void close() { ring_.close(); }
  bool closed() const { return ring_.closed(); }
  uint64_t size_approx() const { return ring_.size_approx(); }
  bool empty_approx() const { return size_approx() == 0; }
  bool full_approx() const { return size_approx() >= capacity(); }
  uint64_t capacity() const { return ring_.capacity(); }
  // The largest message this queue can carry (at least what was asked at creation).
  uint64_t max_message_bytes() const { return ring_.max_payload(); }
  // Messages lost because a process died holding a claim on them, or died returning one from get(). Any process.
  uint64_t abandoned_count() const { return ring_.abandoned(); }
  // The message type recorded by create<T>() (shortened if very long); empty for an untyped queue. Any process.
  std::string type_name() const;

 protected:
  explicit MessageQueue(detail::MpmcRing ring) : ring_(ring) {}
  // `type`: codec_type_name<T>(), or empty for an untyped queue.
  static MessageQueue create_typed(Segment& segment, std::string_view name, uint64_t capacity,
                                   uint64_t max_message_bytes, std::string_view type);
  static MessageQueue open_typed(const Segment& segment, std::string_view name, std::string_view type);

  void check_size(uint64_t bytes) const {
    if (bytes > max_message_bytes()) throw_too_large(bytes);
  }
  [[noreturn]] void throw_too_large(uint64_t bytes) const;

  // Shared by the bytes API and the typed one: write(std::byte*) fills the slot and returns the length.
  template <typename Write>
  Outcome put_with(const Deadline* d, Write&& write) {
    return detail::mpmc_put(ring_, d, std::forward<Write>(write));
  }
  template <typename Read>
  Outcome get_with(const Deadline* d, Read&& read) {
    return detail::mpmc_get(ring_, d, std::forward<Read>(read));
  }

  Outcome put_bytes(std::span<const std::byte> m, const Deadline* d) {
    check_size(m.size());
    return put_with(d, [&](std::byte* p) {
      if (!m.empty()) std::memcpy(p, m.data(), m.size());
      return static_cast<uint32_t>(m.size());
    });
  }
  Outcome get_vector(std::vector<std::byte>& out, const Deadline* d) {
    return get_with(d, [&](const std::byte* p, uint32_t n) { out.assign(p, p + n); });
  }
  Outcome get_span(std::span<std::byte> buffer, size_t& size, const Deadline* d);

  template <typename T>
  Outcome put_encoded(const T& value, const Deadline* d) {
    const size_t n = Codec<T>::encoded_size(value);
    check_size(n);
    return put_with(d, [&](std::byte* p) {
      Codec<T>::encode(value, std::span<std::byte>(p, n));
      return static_cast<uint32_t>(n);
    });
  }
  template <typename T>
  Outcome get_decoded(T& out, const Deadline* d) {
    return get_with(d, [&](const std::byte* p, uint32_t n) { out = Codec<T>::decode(std::span(p, n)); });
  }

  inline static const Deadline kNever = Deadline::never();
  detail::MpmcRing ring_;
};

}  // namespace ipc

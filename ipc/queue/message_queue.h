// ipc/queue/message_queue.h: a bounded multi-producer/multi-consumer queue of variable-size messages in shared
// memory (bytes; strings, vectors and any type with an ipc::Codec<T> through put_value / get_value<T>()).
//
//   auto q = ipc::MessageQueue::create(seg, "events", 256, 4096);   // 256 messages of up to 4 KiB, in the slots
//   auto big = ipc::MessageQueue::create(seg, "frames", {.capacity = 64, .inline_bytes = 256,
//                                                        .arena_bytes = 64 << 20});  // larger ones out of line
//   q.put(std::as_bytes(std::span(text)));
//   std::vector<std::byte> msg;  if (q.get(msg) == ipc::Outcome::kOk) ...
//   ipc::MessageView v;  if (big.get_view(v) == ipc::Outcome::kOk) use(v.bytes());   // in place: no copy
//
// Sizes: a message of up to max_inline_bytes() travels inside its ring slot; a larger one (with an arena) in a
// run of 4 KiB pages of the queue's arena, in the same block, whose first page travels through the slot. So one
// large message among many small ones costs its own size, not capacity * the largest. max_message_bytes() is the
// largest message that can ever be sent: the larger of the inline room and the arena.
//
// Typed: create<T>(...) records T (its codec_type_name<T>()) in the queue; open<T>() refuses a queue made for
// another type at once, naming both (docs/queue.md).
//
// Threads: every method from any number of threads at once (lock-free claims, then a copy in or out; a lone
//   producer's or consumer's claims by store and their revocation as in queue.h).
// Processes: everything lives in one block of shared memory, holds no pointers, and is used from any number of
//   processes. Happens-before: everything a producer did before put(m) happens before the get() that returns m.
// Lifetime: as Queue<T> (queue.h). A process killed mid-put, mid-get or while it holds a MessageView loses at
//   most its one in-flight message, counted once in abandoned_count(); the arena pages of that message are
//   reclaimed by whoever next needs room (or by open(), or abandoned_count()), never leaked and never handed out
//   while a live process reads them (docs/queue.md, "Messages of any size").
// Errors: full/empty/timeout/closed are Outcome values; put blocks (try_put returns kFull) while the ring or the
//   arena is momentarily full. A message longer than max_message_bytes() throws MessageTooLarge at once. A caller
//   buffer smaller than max_message_bytes() throws InvalidArgument. open<T>() of a queue made for another type
//   throws InvalidArgument. A codec that fails on decode throws its CodecError (the message is consumed). Memory
//   overwritten behind the queue's back: a slot length or chunk record that cannot be throws StreamCorrupted from
//   get (the slot is consumed); no call reads or writes outside the block or hangs (message_queue_fuzz).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/queue/detail/chunk_arena.h"
#include "ipc/queue/detail/mpmc_ops.h"
#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/result.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/codec.h"

namespace ipc {

// A message taken by MessageQueue::get_view(). A message that travelled out of line (larger than the queue's
// max_inline_bytes()) is read in place: bytes() lies in the queue's arena, no copy made, and the view holds its
// pages until it is reset, reassigned or destroyed. A message that travelled inline (small) is copied into the
// view, whose buffer is reused by the next get_view() into it. Move-only; one thread at a time. A process killed
// while it holds a view of an out-of-line message loses that message, counted in abandoned_count(). At most
// 12 views read in place at once across all processes (each keeps one of the ring's hand-off entries armed,
// docs/queue.md): while 12 are held, get_view() of another out-of-line message copies it into the view
// (in_place() false), without waiting.
class MessageView {
 public:
  MessageView() = default;
  MessageView(MessageView&& other) noexcept { take_from(other); }
  MessageView& operator=(MessageView&& other) noexcept {
    if (this != &other) {
      reset();
      take_from(other);
    }
    return *this;
  }
  ~MessageView() { reset(); }

  // The message; empty when the view holds none.
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  bool holds_message() const { return held_; }
  // Whether bytes() lies in the queue's shared memory (an out-of-line message read in place).
  bool in_place() const { return held_ && pages_ != 0; }
  // Decodes the message through Codec<T> (CodecError if it is not a T).
  template <typename T>
  T value() const {
    return Codec<T>::decode(bytes());
  }
  // Hands the message back (its arena pages, then the ring's hand-off entry); the view then holds none.
  void reset() noexcept;

 private:
  friend class MessageQueue;
  void take_from(MessageView& other) noexcept {
    ring_ = other.ring_;
    arena_ = other.arena_;
    entry_ = other.entry_;
    first_page_ = other.first_page_;
    pages_ = other.pages_;
    copy_ = std::move(other.copy_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    held_ = std::exchange(other.held_, false);
  }

  detail::MpmcRing ring_;
  detail::ChunkArena arena_;
  detail::HandOff* entry_ = nullptr;  // armed while an out-of-line message is held
  uint64_t first_page_ = 0;
  uint64_t pages_ = 0;  // 0: an inline message, copied into copy_
  std::vector<std::byte> copy_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool held_ = false;
};

class MessageQueue {
 public:
  // How a queue is sized at creation. Designated initializers read well:
  // {.capacity = 64, .inline_bytes = 256, .arena_bytes = 64 << 20}.
  struct Options {
    uint64_t capacity = 0;      // messages in the queue at once (rounded up to a power of two)
    uint64_t inline_bytes = 0;  // messages up to this size travel inside their ring slot (each slot has this room)
    uint64_t arena_bytes = 0;   // room shared by larger messages, out of line (rounded up to 4 KiB pages); 0: none,
                                // every message travels inline and inline_bytes is the largest
  };

  // Bytes a queue of these options needs (for create_at). Throws InvalidArgument as create() does.
  static uint64_t bytes_needed(const Options& options);
  static uint64_t bytes_needed(uint64_t capacity, uint64_t max_message_bytes) {
    return bytes_needed(Options{capacity, max_message_bytes, 0});
  }
  // Creates a queue named `name` in `segment`. Throws InvalidArgument if the name is taken, capacity or
  // inline_bytes is 0, inline_bytes is 4 GiB or more, or the sizes do not fit in 64 bits.
  static MessageQueue create(Segment& segment, std::string_view name, const Options& options) {
    return create_typed(segment, name, options, {});
  }
  // Every message inline: create(segment, name, {capacity, max_message_bytes, 0}).
  static MessageQueue create(Segment& segment, std::string_view name, uint64_t capacity, uint64_t max_message_bytes) {
    return create(segment, name, Options{capacity, max_message_bytes, 0});
  }
  // Opens the queue named `name`. Throws NotFound, or InvalidArgument when it is not a MessageQueue. Reclaims
  // the slots and arena pages of processes that died holding them.
  static MessageQueue open(const Segment& segment, std::string_view name);
  // As create(), recording that the queue carries values of type T (see the header comment).
  template <typename T>
  static MessageQueue create(Segment& segment, std::string_view name, const Options& options) {
    return create_typed(segment, name, options, codec_type_name<T>());
  }
  template <typename T>
  static MessageQueue create(Segment& segment, std::string_view name, uint64_t capacity, uint64_t max_message_bytes) {
    return create<T>(segment, name, Options{capacity, max_message_bytes, 0});
  }
  // As open(); also throws InvalidArgument naming both types unless the queue was created by create<T>().
  template <typename T>
  static MessageQueue open(const Segment& segment, std::string_view name) {
    return open_typed(segment, name, codec_type_name<T>());
  }
  // In caller-provided shared memory (64-byte aligned, bytes_needed() bytes), e.g. a MAP_SHARED mapping.
  static MessageQueue create_at(void* block, uint64_t bytes, const Options& options);
  static MessageQueue create_at(void* block, uint64_t bytes, uint64_t capacity, uint64_t max_message_bytes) {
    return create_at(block, bytes, Options{capacity, max_message_bytes, 0});
  }
  // Attaches to a queue built by create_at; reclaims as open() does.
  static MessageQueue attach(void* block, uint64_t bytes);

  MessageQueue() = default;

  // Blocks while the ring or the arena is full: kOk or kClosed. Throws MessageTooLarge. Any process/thread.
  [[nodiscard, gnu::always_inline]] Outcome put(std::span<const std::byte> message) {
    return put_bytes(message, &kNever);
  }
  // kOk, kTimeout or kClosed.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome put(std::span<const std::byte> message, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return put_bytes(message, &d);
  }
  // Never blocks: kOk, kFull (no free slot, or no free run of arena pages for it) or kClosed. Lock-free.
  [[nodiscard, gnu::always_inline]] Outcome try_put(std::span<const std::byte> message) {
    return put_bytes(message, nullptr);
  }

  // Blocks while empty: kOk (the message replaces `out`'s contents) or kClosed (closed and drained).
  [[nodiscard, gnu::always_inline]] Outcome get(std::vector<std::byte>& out) { return get_vector(out, &kNever); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(std::vector<std::byte>& out, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_vector(out, &d);
  }
  // Never blocks: kOk, kEmpty or kClosed.
  [[nodiscard, gnu::always_inline]] Outcome try_get(std::vector<std::byte>& out) { return get_vector(out, nullptr); }
  // Into a caller buffer of at least max_message_bytes() (else InvalidArgument); `size` receives the length.
  [[nodiscard, gnu::always_inline]] Outcome get(std::span<std::byte> buffer, size_t& size) {
    return get_span(buffer, size, &kNever);
  }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get(std::span<std::byte> buffer, size_t& size,
                                std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return get_span(buffer, size, &d);
  }
  [[nodiscard, gnu::always_inline]] Outcome try_get(std::span<std::byte> buffer, size_t& size) {
    return get_span(buffer, size, nullptr);
  }
  // In place, no copy: `view` (first handing back whatever it held) receives the next message. Blocks while
  // empty: kOk or kClosed. Any process/thread.
  [[nodiscard]] Outcome get_view(MessageView& view) { return take(&kNever, view); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome get_view(MessageView& view, std::chrono::duration<Rep, Period> timeout) {
    const Deadline d = Deadline::after(timeout);
    return take(&d, view);
  }
  // Never blocks: kOk, kEmpty or kClosed.
  [[nodiscard]] Outcome try_get_view(MessageView& view) { return take(nullptr, view); }

  // Typed messages through ipc::Codec<T> (strings, vectors, maps, your own types; see ipc/shared/codec.h). The
  // value is encoded straight into the slot or its arena pages and decoded straight out of them. put_value: as
  // put(span), plus MessageTooLarge when the encoding exceeds max_message_bytes(); an encoder exception
  // propagates and nothing is sent. get_value: as get(vector), plus CodecError for a corrupt message (consumed).
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
    (void)get_with(&kNever, [&](const std::byte* p, size_t n) { v = Codec<T>::decode(std::span(p, n)); });
    return v;
  }

  // As Queue<T>: close for everyone (gets drain first), wake all waiters. Any process.
  void close();
  bool closed() const { return ring_.closed(); }
  uint64_t size_approx() const { return ring_.size_approx(); }
  bool empty_approx() const { return size_approx() == 0; }
  bool full_approx() const { return size_approx() >= capacity(); }
  uint64_t capacity() const { return ring_.capacity(); }
  // The largest message this queue can ever carry: the larger of max_inline_bytes() and arena_bytes() (at least
  // what was asked at creation).
  uint64_t max_message_bytes() const {
    return std::max(max_inline_bytes(), std::min(arena_bytes(), kLongestMessage));
  }
  // Messages up to this size travel inside their slot (at least Options::inline_bytes, and below 4 GiB: a slot's
  // length field has 32 bits, and its all-ones value marks a skipped slot).
  uint64_t max_inline_bytes() const { return ring_.length_limit(); }
  // The arena's size (Options::arena_bytes rounded up to 4 KiB pages); 0 without one.
  uint64_t arena_bytes() const { return arena_.capacity_bytes(); }
  // Messages lost because a process died holding a claim on them (mid-put, mid-get, or holding a MessageView),
  // or died returning one from get(). First reclaims what dead processes hold, so the count is complete when it
  // returns. Any process; slow (a liveness check per claimed slot).
  uint64_t abandoned_count() const;
  // The message type recorded by create<T>() (shortened if very long); empty for an untyped queue. Any process.
  std::string type_name() const;

 protected:
  MessageQueue(detail::MpmcRing ring, detail::ChunkArena arena) : ring_(ring), arena_(arena) {}
  // `type`: codec_type_name<T>(), or empty for an untyped queue.
  static MessageQueue create_typed(Segment& segment, std::string_view name, const Options& options,
                                   std::string_view type);
  static MessageQueue open_typed(const Segment& segment, std::string_view name, std::string_view type);
  // Reaps the claims of dead processes on any slot and frees the arena pages of messages that are gone.
  void reclaim() const;

  void check_size(uint64_t bytes) const {
    if (bytes > max_message_bytes()) throw_too_large(bytes);
  }
  [[noreturn]] void throw_too_large(uint64_t bytes) const;

  // Shared by the bytes API and the typed one: write(std::byte* dst) fills the `bytes` of the message at dst (in
  // its slot or its arena pages). Throws MessageTooLarge first.
  template <typename Write>
  [[gnu::always_inline]] Outcome put_with(uint64_t bytes, const Deadline* d, Write&& write) {
    check_size(bytes);
    if (bytes <= max_inline_bytes()) {
      return detail::mpmc_put(ring_, d, [&](std::byte* p) {
        write(p);
        return static_cast<uint32_t>(bytes);
      });
    }
    return put_out_of_line(bytes, d, [](void* w, std::byte* p) { (*static_cast<Write*>(w))(p); }, &write);
  }
  Outcome put_out_of_line(uint64_t bytes, const Deadline* d, void (*write)(void*, std::byte*), void* writer);
  // A message claimed for reading: its slot is READING(pos); `pages` != 0 when it lies in the arena.
  struct Claimed {
    uint64_t pos;
    uint64_t first_page;
    uint64_t pages;
    const std::byte* data;
    size_t size;
  };
  // Claims the next message, waiting per `d`. kOk, or the outcome of the wait.
  Outcome claim(const Deadline* d, Claimed& c);
  // The message in the slot of `pos`, which this thread claimed for reading, into `c`; false when the slot held a
  // skip record (then released). Throws StreamCorrupted for a length or chunk record that cannot be (the slot is
  // consumed).
  bool describe_claimed(uint64_t pos, Claimed& c);
  // Hands a claimed message back: its pages, then its slot.
  void finish(const Claimed& c) const noexcept {
    if (c.pages != 0) arena_.give_back(c.first_page, c.pages);
    ring_.release_read(c.pos);
  }
  // get_view(): `view` (reset first) receives the next message.
  Outcome take(const Deadline* d, MessageView& view);
  // read(const std::byte* message, size_t bytes) consumes the next message in place; it is handed back after,
  // also when `read` throws (the message is then consumed and the exception propagates).
  // The common case is inline, as Queue's get (detail::mpmc_deliver_first()): a message that travelled in its
  // slot is handed over where it lies. Anything else (a message in the arena, a skip record) is get_slow().
  template <typename Read>
  [[gnu::always_inline]] Outcome get_with(const Deadline* d, Read&& read) {
    const detail::MpmcRing r = ring_;  // a copy: its fields stay in registers across the claim's atomics
    uint64_t pos = 0;
    detail::SlotHeader* claimed;
    if (detail::mpmc_deliver_first(r, read, claimed, pos)) [[likely]] return Outcome::kOk;
    return get_slow(d, read, claimed ? &pos : nullptr);
  }
  // get_with() past its first look: `claimed` (when not null) is the position it claimed, whose slot holds a message
  // out of line, a skip record, or a length that cannot be. Out of line; `read` by value, as mpmc_get_slow().
  template <typename Read>
  [[gnu::noinline]] Outcome get_slow(const Deadline* d, Read read, const uint64_t* claimed) {
    Claimed c;
    if (!claimed || !describe_claimed(*claimed, c)) {
      const Outcome q = claim(d, c);
      if (q != Outcome::kOk) return q;
    }
    struct Finish {
      const MessageQueue& q;
      const Claimed& c;
      ~Finish() { q.finish(c); }
    } finish_after{*this, c};
    read(c.data, c.size);
    return Outcome::kOk;
  }

  [[gnu::always_inline]] Outcome put_bytes(std::span<const std::byte> m, const Deadline* d) {
    // A large message is streamed into the arena (copy_for_reader): the consumer reads it from another CPU.
    return put_with(m.size(), d, [&](std::byte* p) { copy_for_reader(p, m.data(), m.size()); });
  }
  [[gnu::always_inline]] Outcome get_vector(std::vector<std::byte>& out, const Deadline* d) {
    return get_with(d, [&](const std::byte* p, size_t n) { out.assign(p, p + n); });
  }
  [[gnu::always_inline]] Outcome get_span(std::span<std::byte> buffer, size_t& size, const Deadline* d) {
    if (buffer.size() < max_message_bytes()) [[unlikely]] throw_buffer_too_small(buffer.size());
    return get_with(d, [&](const std::byte* p, size_t n) {
      if (n) std::memcpy(buffer.data(), p, n);
      size = n;
    });
  }
  [[noreturn]] void throw_buffer_too_small(size_t buffer_bytes) const;

  template <typename T>
  Outcome put_encoded(const T& value, const Deadline* d) {
    const size_t n = Codec<T>::encoded_size(value);
    return put_with(n, d, [&](std::byte* p) { Codec<T>::encode(value, std::span<std::byte>(p, n)); });
  }
  template <typename T>
  Outcome get_decoded(T& out, const Deadline* d) {
    return get_with(d, [&](const std::byte* p, size_t n) { out = Codec<T>::decode(std::span(p, n)); });
  }

  // The slot lengths are 32 bits, and the largest value marks a skip record.
  static constexpr uint64_t kLongestMessage = detail::kSkipRecord - 1;
  inline static const Deadline kNever = Deadline::never();
  detail::MpmcRing ring_;
  detail::ChunkArena arena_;
};

}  // namespace ipc

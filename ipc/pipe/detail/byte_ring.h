// ipc/pipe/detail/byte_ring.h (internal): a single-producer/single-consumer ring of variable-size records in
// shared memory, the data path of one direction of a Pipe.
//
// Layout: a ByteRingHeader (three cache lines) followed by `capacity` bytes (a power of two). Positions are byte
// counters that only grow; index = position & (capacity - 1). Each record is a header and its payload, byte after
// byte with no padding (payloads are unaligned; every copy in and out is a memcpy). The header of a whole message
// of fewer than kShortWholeLimit bytes is one byte, its length plus one: an 8-byte message takes 9 bytes, seven to
// a cache line. Any other record starts with a tag byte (kTagBase + its RecordKind); a kPad (the rest of the ring
// is filler) and a kAbandon (no payload) are that byte alone, the others (kWhole of kShortWholeLimit bytes or more,
// kFirst, kMore, kLast) follow it with their payload length (4 bytes, little-endian). A header byte of 0 starts no
// record, so zeros never read as a message. A record never wraps: when it does not fit before the end, the
// producer writes a kPad there and starts at the beginning. A record's payload is at most max_record_payload() (a
// quarter of the capacity less the longest header, and below 2^28), so a message larger than that is split into
// kFirst/kMore/kLast records.
//
// Threads/Processes: one producer and one consumer at a time (any processes); the header holds no pointers.
// Happens-before: everything the producer wrote into a record before commit() happens before the consumer's
//   peek() that returns it (tail: release store / acquire load); the consumer's reads of a record happen before
//   the producer's reuse of its bytes (head: release store / acquire load).
// Lifetime: placement-constructed by the Pipe's creator in a MAP_SHARED mapping; plain memory, nothing to destroy.
// Errors: the producer's caller checks sizes (record payloads are bounded by max_record_payload()). Neither side
//   trusts what it reads from shared memory: the capacity is read once when the handle is made, peek() checks
//   every record header against it and the producer's tail and reports kCorrupt (with fault()) instead of reading
//   outside the ring, and the producer bounds every record it writes by its own copy of the capacity, so an
//   overwritten tail moves where it writes but never outside the ring (pipe_fuzz).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"

namespace ipc::detail {

enum class RecordKind : uint32_t {
  kWhole = 1,  // a complete message
  kFirst = 2,  // first part of a long message; the payload starts with its total length and sender (first_part_word)
  kMore = 3,   // a middle part
  kLast = 4,   // the final part
  kPad = 5,    // filler up to the end of the buffer; skipped
  kAbandon = 6,  // no payload: the long message whose parts came before was given up (its send timed out)
};

// A record's header as the consumer reads it (peek()); in the ring it is 1 or kLongHeaderBytes bytes.
struct RecordHeader {
  uint32_t payload_bytes;
  RecordKind kind;
  uint32_t header_bytes;  // 1 or kLongHeaderBytes
  uint64_t record_bytes() const { return uint64_t{header_bytes} + payload_bytes; }
};
// A whole message of fewer bytes than this has a one-byte header: its length plus one (1 to kShortWholeLimit).
inline constexpr uint32_t kShortWholeLimit = 0xE0;
// The tag byte of any other record: kTagBase + its kind (0xF1 to 0xF6). Header bytes above kShortWholeLimit and
// below kTagBase + kWhole, above kTagBase + kAbandon, and 0 start no record.
inline constexpr uint32_t kTagBase = 0xF0;
inline constexpr uint64_t kLongHeaderBytes = 5;  // the tag, then the payload length (uint32, little-endian)
// The longest payload a record's header may announce (the length field is 32 bits; parts stay well below).
inline constexpr uint32_t kMaxLengthField = (uint32_t{1} << 28) - 1;
constexpr uint32_t tag_of(RecordKind kind) { return kTagBase + static_cast<uint32_t>(kind); }
// Whether a record whose header starts with the byte `first` has the long header: a tag (kWhole, kFirst, kMore,
// kLast) followed by the payload length.
constexpr bool has_long_header(uint32_t first) {
  return first >= tag_of(RecordKind::kWhole) && first <= tag_of(RecordKind::kLast);
}
// The bytes of the header of a record of `kind` carrying `payload` bytes.
constexpr uint64_t header_bytes(RecordKind kind, uint64_t payload) {
  if (kind == RecordKind::kWhole) return payload < kShortWholeLimit ? 1 : kLongHeaderBytes;
  return kind == RecordKind::kPad || kind == RecordKind::kAbandon ? 1 : kLongHeaderBytes;
}
// Writes the header of a record of `kind` carrying `payload` bytes at `at` (header_bytes(kind, payload) bytes).
inline void write_record_header(std::byte* at, RecordKind kind, uint32_t payload) {
  if (header_bytes(kind, payload) == 1) {
    at[0] = static_cast<std::byte>(kind == RecordKind::kWhole ? payload + 1 : tag_of(kind));
    return;
  }
  at[0] = static_cast<std::byte>(tag_of(kind));
  std::memcpy(at + 1, &payload, sizeof payload);  // little-endian on every target (static_assert below)
}
static_assert(std::endian::native == std::endian::little, "record lengths are little-endian in the ring");
static_assert(header_bytes(RecordKind::kWhole, 8) == 1 && header_bytes(RecordKind::kWhole, 1000) == 5);

// The record format a ring holds (ByteRingHeader::format): adopt() refuses rings of another one (a handoff from a
// program built with another version of the library). 4: a kFirst record names its sender's pid beside the total
// (3: the total alone; one-byte headers for small whole messages, no padding since 3; 2: 4-byte header words,
// payloads padded to 4; 1: 8-byte headers).
inline constexpr uint32_t kRecordFormat = 4;

// The uint64 that starts a kFirst record's payload: the message's total length in the low kTotalBits bits, the
// sending process's pid above them. A receiver holding the first parts of a message when a new message starts
// can then tell a sender that died in the middle of it (another process with a copy of the sending end sends on:
// the parts are dropped) from two processes sending at once (StreamCorrupted).
inline constexpr unsigned kTotalBits = 40;
inline constexpr uint64_t kMaxLongMessageBytes = (uint64_t{1} << kTotalBits) - 1;  // 1 TiB less a byte
constexpr uint64_t first_part_word(uint64_t total, uint32_t pid) { return total | uint64_t{pid} << kTotalBits; }
constexpr uint64_t first_part_total(uint64_t word) { return word & kMaxLongMessageBytes; }
constexpr uint32_t first_part_sender(uint64_t word) { return static_cast<uint32_t>(word >> kTotalBits); }
static_assert(first_part_sender(first_part_word(kMaxLongMessageBytes, 4194303)) == 4194303 &&
              first_part_total(first_part_word(kMaxLongMessageBytes, 4194303)) == kMaxLongMessageBytes);

// How many bytes of the stream pass between two looks of the sending side at its socket, the only sign of a
// receiver that died while busy (Connection::kBytesBetweenLooks): the producer learns that one is due when its
// tail crosses a multiple of it. A power of two, above a cache line.
inline constexpr uint64_t kBytesBetweenLooks = uint64_t{1} << 18;
static_assert((kBytesBetweenLooks & (kBytesBetweenLooks - 1)) == 0 && kBytesBetweenLooks > 64);

// What one side of a ring needs to sleep and be woken. The side writes `waiting`; the other side bumps `wake` to
// wake it and `peer_closes` whenever it closes one of its copies of its end (see connection.cc).
struct SleepWords {
  // How this side sleeps (a Sleeper value); 0 while it does not sleep.
  std::atomic<uint32_t> waiting{0};
  // The futex word a side asleep on its futex waits on.
  std::atomic<uint32_t> wake{0};
  // How many copies of the other end (in any process) were closed so far: a side that finds it changed since it
  // last looked at its socket looks again before it sleeps, since only the socket says whether that was the last.
  std::atomic<uint32_t> peer_closes{0};
};

struct ByteRingHeader {
  // The consumer's position. Written by the consumer only; read by the producer to find free space.
  alignas(64) std::atomic<uint64_t> head{0};
  // The producer's position. Written by the producer only; read by the consumer to find records.
  alignas(64) std::atomic<uint64_t> tail{0};
  // The consumer's (waiting for records) and the producer's (waiting for room) sleep words.
  alignas(64) SleepWords consumer;
  SleepWords producer;
  uint64_t capacity = 0;  // bytes of record space after the header; a power of two; immutable after creation
  uint32_t format = 0;    // kRecordFormat of the library that made the ring; immutable after creation
};

// How a side sleeps, in its `waiting` word: on the futex word of its direction (woken by a futex wake), or in
// poll(2) on its socket (woken by a one-byte doorbell; a poll set also sees the peer hang up and other descriptors).
enum Sleeper : uint32_t { kAwake = 0, kOnFutex = 1, kInPoll = 2 };
static_assert(std::is_standard_layout_v<ByteRingHeader>);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(ByteRingHeader) == 192, "head, tail and the sleep words each own a cache line");
static_assert(offsetof(SleepWords, wake) % 4 == 0 && offsetof(ByteRingHeader, consumer) % 4 == 0 &&
                  offsetof(ByteRingHeader, producer) % 4 == 0,
              "futex words are aligned 32-bit words");

// Copies `n` bytes; a message of up to 16 bytes (the common small message) without a call into the C library,
// whose general memcpy costs more than the rest of a small send or recv.
[[gnu::always_inline]] inline void copy_bytes(std::byte* to, const std::byte* from, size_t n) {
  if (n > 16) {
    std::memcpy(to, from, n);
  } else if (n >= 8) {  // two 8-byte words, overlapping when n < 16
    uint64_t first, last;
    std::memcpy(&first, from, 8);
    std::memcpy(&last, from + n - 8, 8);
    std::memcpy(to, &first, 8);
    std::memcpy(to + n - 8, &last, 8);
  } else if (n >= 4) {
    uint32_t first, last;
    std::memcpy(&first, from, 4);
    std::memcpy(&last, from + n - 4, 4);
    std::memcpy(to, &first, 4);
    std::memcpy(to + n - 4, &last, 4);
  } else if (n > 0) {  // 1 to 3 bytes: the first, the middle and the last (overlapping when n < 3)
    to[0] = from[0];
    to[n / 2] = from[n / 2];
    to[n - 1] = from[n - 1];
  }
}

// A process's handle on one ring: the shared header and data plus the side's private cached position of the
// other side (so that the common case reads no shared cache line the other side is writing).
class ByteRing {
 public:
  ByteRing() = default;
  // The capacity is read once, here (Pipe() wrote it, Connection::adopt() checked it): every bound below uses this
  // copy, so a header overwritten later cannot move a record outside the ring.
  ByteRing(ByteRingHeader* header)
      : h_(header),
        data_(reinterpret_cast<std::byte*>(header + 1)),
        capacity_(header->capacity),
        mask_(capacity_ - 1),
        max_payload_(std::min<uint64_t>(capacity_ / 4 - kLongHeaderBytes, kMaxLengthField)) {}

  static uint64_t bytes_needed(uint64_t capacity) { return sizeof(ByteRingHeader) + capacity; }
  ByteRingHeader& header() const { return *h_; }
  // The capacity read once at attach (the private copy above).
  uint64_t capacity() const { return capacity_; }
  uint64_t max_record_payload() const { return max_payload_; }

  // Producer: writes a whole message `payload` as one record (header, bytes, then the tail: one pass) when there is
  // room for it before the end of the ring; false when there is no room now or the record would need a filler
  // first (then the caller takes try_reserve() and commit()). Calls `look_due()` when the record crosses a multiple
  // of kBytesBetweenLooks. REQUIRES: payload.size() <= max_record_payload(). Lock-free; no syscall.
  template <typename LookDue>
  [[gnu::always_inline]] bool try_write_whole(std::span<const std::byte> payload, LookDue&& look_due) {
    // The members in locals: the stores through std::byte below may alias anything, and would otherwise make the
    // compiler read them again after each one.
    ByteRingHeader* const h = h_;
    std::byte* const data = data_;
    const uint64_t capacity = capacity_;
    const uint64_t n = payload.size();
    const bool short_header = n < kShortWholeLimit;
    const uint64_t bytes = (short_header ? 1 : kLongHeaderBytes) + n;
    // relaxed: only the producer writes tail.
    const uint64_t tail = h->tail.load(std::memory_order_relaxed);
    const uint64_t index = tail & mask_;
    if (bytes > capacity - index) [[unlikely]] return false;
    if (tail + bytes - cached_head_ > capacity) {
      // acquire: partner is the consumer's release store of head in release() and release_to(); the bytes it
      // finished reading may now be overwritten.
      cached_head_ = h->head.load(std::memory_order_acquire);
      if (tail + bytes - cached_head_ > capacity) return false;
    }
    // Once per cache line, not per record: a record that reaches into a new line asks for the line
    // kPrefetchAheadBytes ahead when the consumer has left it (it lies inside the room): a write to a line the
    // consumer read a lap ago otherwise waits a cross-core round trip for it (as SpscQueue's puts;
    // ipc::prefetch_for_write). A multiple of kBytesBetweenLooks is also a line's start, so the look is due here.
    if (const uint64_t crossed = tail ^ (tail + bytes); crossed >= 64) [[unlikely]] {
      if (tail + kPrefetchAheadBytes + 64 - cached_head_ <= capacity) {
        prefetch_for_write(data + ((tail + kPrefetchAheadBytes) & mask_));
      }
      if (crossed >= kBytesBetweenLooks) look_due();
    }
    std::byte* const at = data + index;
    if (short_header) [[likely]] {
      at[0] = static_cast<std::byte>(n + 1);
      copy_bytes(at + 1, payload.data(), n);
    } else {
      write_record_header(at, RecordKind::kWhole, static_cast<uint32_t>(n));
      copy_bytes(at + kLongHeaderBytes, payload.data(), n);
    }
    // release: the record's bytes become visible with the new tail; partner: the acquire load of tail in peek()
    // and try_peek_whole().
    h->tail.store(tail + bytes, std::memory_order_release);
    return true;
  }

  // Producer: reserves a record of `kind` carrying `payload` bytes (after a kPad when it does not fit before the
  // end of the ring) and returns where to write the payload, or nullptr when there is no room now. REQUIRES:
  // payload <= max_record_payload(). Lock-free; no syscall.
  std::byte* try_reserve(RecordKind kind, uint32_t payload) {
    const uint64_t need = header_bytes(kind, payload) + payload;
    // relaxed: only the producer writes tail.
    uint64_t tail = h_->tail.load(std::memory_order_relaxed);
    const uint64_t index = tail & mask_;
    const uint64_t to_end = capacity() - index;
    const uint64_t total = need <= to_end ? need : to_end + need;  // with a kPad record when it does not fit
    if (tail + total - cached_head_ > capacity()) {
      // acquire: partner is the consumer's release store of head in release(); the bytes it finished reading
      // may now be overwritten.
      cached_head_ = h_->head.load(std::memory_order_acquire);
      if (tail + total - cached_head_ > capacity()) return nullptr;
    }
    if (need > to_end) {
      write_record_header(data_ + index, RecordKind::kPad, 0);  // one byte: the rest of the ring is filler
      tail += to_end;
    }
    reserved_at_ = tail;
    reserved_kind_ = kind;
    reserved_payload_ = payload;
    return data_ + (tail & mask_) + header_bytes(kind, payload);
  }
  // Producer: publishes the record reserved last; whether the tail crossed a multiple of kBytesBetweenLooks since
  // the last publication (as try_write_whole()'s look_due). Lock-free; no syscall.
  bool commit() {
    write_record_header(data_ + (reserved_at_ & mask_), reserved_kind_, reserved_payload_);
    // relaxed: only the producer writes tail.
    const uint64_t old_tail = h_->tail.load(std::memory_order_relaxed);
    const uint64_t new_tail = reserved_at_ + header_bytes(reserved_kind_, reserved_payload_) + reserved_payload_;
    // release: the record's bytes (and a pad header) become visible with the new tail; partner: the acquire
    // load of tail in peek().
    h_->tail.store(new_tail, std::memory_order_release);
    return (old_tail ^ new_tail) >= kBytesBetweenLooks;
  }

  // Consumer: the payload of the next record when it is a whole message (kWhole) that keeps every rule peek()
  // checks, with its length in `payload_bytes` and the position after it in `next_head`; nullptr when the ring is
  // empty or anything else comes next (a filler, a part of a long message, a header that breaks the format: the
  // caller then looks with peek()). Free it with release_to(next_head). Having taken every byte it knew of, it
  // reloads tail through tail_after_run(), which waits for a run of messages behind a busy sender. Lock-free.
  [[gnu::always_inline]] const std::byte* try_peek_whole(uint32_t& payload_bytes, uint64_t& next_head) {
    // relaxed: only the consumer writes head.
    const uint64_t head = h_->head.load(std::memory_order_relaxed);
    if (head == cached_tail_) {
      cached_tail_ = tail_after_run(head);
      if (head == cached_tail_) return nullptr;
    }
    const uint64_t index = head & mask_;
    const uint64_t committed = cached_tail_ - head;  // at least 1: the header byte lies inside the ring
    if (committed > capacity_) [[unlikely]] return nullptr;
    const std::byte* const at = data_ + index;
    // One compare for "a whole message with a one-byte header": a header byte of 0 wraps round, and tags lie above.
    uint64_t payload = std::to_integer<uint32_t>(at[0]) - 1u;
    uint64_t header = 1;
    if (payload >= kShortWholeLimit) [[unlikely]] {
      if (std::to_integer<uint32_t>(at[0]) != tag_of(RecordKind::kWhole) ||
          kLongHeaderBytes > std::min(committed, capacity_ - index)) {
        return nullptr;
      }
      uint32_t length;
      std::memcpy(&length, at + 1, sizeof length);
      if (length > max_payload_) return nullptr;
      payload = length;
      header = kLongHeaderBytes;
    }
    const uint64_t bytes = header + payload;
    if (bytes > capacity_ - index || bytes > committed) [[unlikely]] return nullptr;
    payload_bytes = static_cast<uint32_t>(payload);
    next_head = head + bytes;
    return at + header;
  }
  // Consumer, at `head` with every byte it knew of taken: tail, and while the producer keeps committing, after a
  // wait for a run of kRefillRunBytes (ipc::wait_for_run(), as SpscQueue::refill(): a message sent alone waits 4
  // pauses longer). Each look at tail takes its line from the producer. Pipe 8 B one way, alternated runs of a
  // scratch program: 41-81 M msgs/s without, 71-131 M with (docs/pipe.md). Out of line: once per run.
  [[gnu::noinline]] uint64_t tail_after_run(uint64_t head) const {
    constexpr uint64_t kRefillRunBytes = 1536;  // 170 records of an 8-byte message (9 bytes each)
    // acquire (inside): partner is the release store of tail in commit() and try_write_whole(); the bytes are
    // visible.
    return wait_for_run(h_->tail, head, std::min<uint64_t>(kRefillRunBytes, capacity_ / 2));
  }
  // Consumer: frees the record try_peek_whole() returned. Lock-free.
  [[gnu::always_inline]] void release_to(uint64_t next_head) {
    // release: our reads of the record happen before the producer reuses its bytes; partner: the acquire load of
    // head in try_write_whole() and try_reserve().
    h_->head.store(next_head, std::memory_order_release);
  }

  enum class Peek { kEmpty, kRecord, kCorrupt };
  // Consumer: the next record (kPad records are skipped), kEmpty when the ring is empty, or kCorrupt when the
  // header at the head breaks the format (fault() says how; nothing is consumed). A kRecord's header and payload
  // lie inside the ring and inside what the producer committed. Lock-free.
  Peek peek(RecordHeader& header, const std::byte*& payload) {
    // relaxed: only the consumer writes head.
    uint64_t head = h_->head.load(std::memory_order_relaxed);
    for (;;) {
      if (head == cached_tail_) {
        // acquire: partner is the release store of tail in commit(); the record's bytes are visible.
        cached_tail_ = h_->tail.load(std::memory_order_acquire);
        if (head == cached_tail_) return Peek::kEmpty;
      }
      const uint64_t committed = cached_tail_ - head;
      if (committed > capacity()) [[unlikely]] {
        // What this handle last saw of tail may lie behind head: another handle of this end received since (this
        // process's before a fork, or before the end was handed off). Only the shared tail says it is corrupt.
        // acquire: as above.
        cached_tail_ = h_->tail.load(std::memory_order_acquire);
        if (cached_tail_ - head > capacity()) return corrupt_at(head, nullptr, 0);
        continue;
      }
      const uint64_t index = head & mask_;
      const uint64_t to_end = capacity() - index;
      const uint64_t readable = std::min(committed, to_end);  // at least 1
      const uint32_t first = std::to_integer<uint32_t>(data_[index]);
      if (first - 1u < kShortWholeLimit) {
        header = RecordHeader{first - 1u, RecordKind::kWhole, 1};
      } else if (first == tag_of(RecordKind::kPad)) {
        if (to_end > committed) [[unlikely]] return corrupt_at(head, nullptr, first);
        head += to_end;
        // release: partner is the producer's acquire load of head in try_reserve().
        h_->head.store(head, std::memory_order_release);
        continue;
      } else if (first == tag_of(RecordKind::kAbandon)) {
        header = RecordHeader{0, RecordKind::kAbandon, 1};
      } else if (has_long_header(first)) {
        if (readable < kLongHeaderBytes) [[unlikely]] return corrupt_at(head, nullptr, first);
        uint32_t length;
        std::memcpy(&length, data_ + index + 1, sizeof length);
        header = RecordHeader{length, static_cast<RecordKind>(first - kTagBase), kLongHeaderBytes};
      } else {
        return corrupt_at(head, nullptr, first);
      }
      if (header.payload_bytes > max_record_payload() || header.record_bytes() > readable) [[unlikely]] {
        return corrupt_at(head, &header, first);
      }
      payload = data_ + index + header.header_bytes;
      return Peek::kRecord;
    }
  }
  // What the last kCorrupt from peek() found, with the byte position.
  const std::string& fault() const { return fault_; }
  // Consumer: frees the record returned by the last peek(). Lock-free.
  void release(const RecordHeader& header) {
    const uint64_t head = h_->head.load(std::memory_order_relaxed);  // relaxed: only the consumer writes head
    // release: our reads of the record happen before the producer reuses its bytes; partner: the acquire load of
    // head in try_reserve().
    h_->head.store(head + header.record_bytes(), std::memory_order_release);
  }

  // Either side: whether a record may be waiting (acquire: partner is commit()'s release store).
  bool readable() const {
    return h_->head.load(std::memory_order_relaxed) != h_->tail.load(std::memory_order_acquire);
  }
  // Either side: whether a record of `kind` carrying `payload` bytes would fit now (for the producer's wait).
  bool writable(RecordKind kind, uint32_t payload) const {
    const uint64_t tail = h_->tail.load(std::memory_order_relaxed);
    const uint64_t to_end = capacity() - (tail & mask_);
    const uint64_t need = header_bytes(kind, payload) + payload;
    const uint64_t total = need <= to_end ? need : to_end + need;
    // acquire: partner is release()'s release store of head.
    return tail + total - h_->head.load(std::memory_order_acquire) <= capacity();
  }

 private:
  // Says which rule the record at `head` broke (`header`: nullptr when its header could not be read; `first`: its
  // first byte). Out of line, so that peek()'s checks stay a few compares.
  [[gnu::cold, gnu::noinline]] Peek corrupt_at(uint64_t head, const RecordHeader* header, uint32_t first) {
    const uint64_t committed = cached_tail_ - head;
    if (committed > capacity()) {
      return corrupt(head, "positions out of order (head " + std::to_string(head) + ", tail " +
                               std::to_string(cached_tail_) + ")");
    }
    const uint64_t to_end = capacity() - (head & mask_);
    if (first == tag_of(RecordKind::kPad)) {
      return corrupt(head, "a filler up to the end of the ring (" + std::to_string(to_end) +
                               " bytes) that the sender did not commit (" + std::to_string(committed) + " bytes)");
    }
    if (!header && has_long_header(first)) {
      return corrupt(head, "a record header of " + std::to_string(kLongHeaderBytes) + " bytes does not fit (" +
                               std::to_string(std::min(to_end, committed)) + " bytes are left)");
    }
    if (!header) return corrupt(head, "unknown record header byte " + std::to_string(first));
    return corrupt(head, "a record of " + std::to_string(header->payload_bytes) + " bytes does not fit (parts "
                         "carry at most " + std::to_string(max_record_payload()) + " bytes; " +
                         std::to_string(std::min(to_end, committed) - header->header_bytes) + " bytes are left)");
  }
  Peek corrupt(uint64_t head, const std::string& what) {
    fault_ = "corrupt record at byte " + std::to_string(head) + ": " + what;
    return Peek::kCorrupt;
  }

  ByteRingHeader* h_ = nullptr;
  std::byte* data_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t mask_ = 0;
  uint64_t max_payload_ = 0;  // max_record_payload(), from the private capacity
  uint64_t cached_head_ = 0;  // producer side: last head seen
  uint64_t cached_tail_ = 0;  // consumer side: last tail seen
  uint64_t reserved_at_ = 0;  // producer side: where the reserved record's header goes
  RecordKind reserved_kind_ = RecordKind::kWhole;  // producer side: the reserved record's kind and payload
  uint32_t reserved_payload_ = 0;
  std::string fault_;         // consumer side: what peek() last found corrupt
};

}  // namespace ipc::detail

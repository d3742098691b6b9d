// manager/detail/ring_stream.h: the shared-memory transport of a local Manager connection. Internal.
//
// A connection over a Unix socket carries its Cap'n Proto byte stream in two rings in a memfd (one per
// direction) that the server makes and hands to the client with SCM_RIGHTS right after connect (the client asks
// first, see kRingRequest; docs/manager.md, "The shared-memory transport"). The socket stays: it carries one-byte
// doorbells to a side that sleeps, and its end (EOF, a reset) is how each side learns the other is gone. While both
// sides are busy a call and its reply move through the rings with no system call at all.
//
//   server: kj::AutoCloseFd memory; RingStream s = RingStream::create(memory);
//           send `memory` over the socket (SCM_RIGHTS), then close it.
//   client: RingStream s = RingStream::open(received_fd);
//   either: n = s.write_some(bytes); if (s.take_reader_wakeup()) ring the peer's doorbell (one byte on the socket)
//           n = s.read_some(buffer); if (s.take_writer_wakeup()) ring the peer's doorbell
//
// Each direction is a single-producer/single-consumer byte ring: the producer copies bytes in and publishes its
// position (`tail`, release); the consumer copies them out and publishes its own (`head`). A side about to sleep
// sets its waiting flag (arm_reader / arm_writer) and looks again; the other side, after publishing, takes the flag
// and rings the doorbell (Dekker: a seq_cst store and a seq_cst fence on each side, so either the sleeper sees the
// bytes or the publisher sees the flag). One doorbell per arming: the socket never fills. The header page also
// holds how many queue items the client's get() calls took (count_item_taken), which the server reads to tell an
// item whose reply the client read but never returned from get() (it died in between) from one it took.
//
// Trust: the peer can write anything into the shared memory. Each side keeps its own position privately and only
// reads the other's, which it checks (a producer ahead of its consumer by more than the ring, or a consumer ahead of
// its producer): a bad position throws (see Errors) and never makes this side read or write outside the ring. The
// memory is sealed at its size (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL), so the client cannot truncate it under
// the server's mapping. Bytes are copied out before they are parsed, so the peer cannot change a message while it
// is being read.
//
// Threads: one thread per RingStream (the connection's event loop). Processes: the two sides of one connection.
// Lifetime: owns its mapping; the memory goes with the last mapping (the memfd is closed once mapped).
// Errors: a position the peer broke throws kj::Exception (FAILED, "... shared ring is corrupt ..."), and so does
//   open() for memory that is not a ring pair of this format and size; system call failures throw kj::Exception
//   naming the call. The connection that sees one ends; the others go on.
#pragma once

#include <kj/io.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipc::manager::detail {

// The first bytes a client sends on a Unix socket to ask for the shared-memory transport. Its first word can
// never start a Cap'n Proto frame (a segment count of 2^32), so a server tells it from a plain Cap'n Proto peer,
// which it serves over the socket as before.
inline constexpr unsigned char kRingRequest[8] = {0xff, 0xff, 0xff, 0xff, 'R', 'I', 'N', 'G'};
// On a socket (TCP, or a Unix socket without rings), what a client sends after each queue item its get() took, as
// the last step before the get returns it (SocketVatNetwork::count_item_taken(); on the rings the count is a word
// in shared memory instead). Like kRingRequest, no Cap'n Proto frame starts with it; it may come between any two
// frames.
inline constexpr unsigned char kItemTaken[8] = {0xff, 0xff, 0xff, 0xff, 'T', 'A', 'K', 'E'};
// The server's one-byte answer: kRingGranted comes with the memfd (SCM_RIGHTS); kRingRefused (no memory could be
// made) keeps the connection on the socket.
inline constexpr unsigned char kRingGranted = 'R';
inline constexpr unsigned char kRingRefused = 'S';

class RingStream {
 public:
  enum class Side { kServer, kClient };
  static constexpr std::uint32_t kFormat = 2;  // 2: the header page holds the count of queue items taken
  static constexpr std::size_t kRingBytes = std::size_t{256} << 10;  // per direction, a power of two

  RingStream() = default;
  RingStream(RingStream&&) noexcept;
  RingStream& operator=(RingStream&&) noexcept;
  RingStream(const RingStream&) = delete;
  RingStream& operator=(const RingStream&) = delete;
  ~RingStream();

  // Server: makes the memory of both rings; `memory` gets its descriptor, to hand to the client.
  static RingStream create(kj::AutoCloseFd& memory);
  // Client: maps the memory a server made (takes `memory` and closes it once mapped).
  static RingStream open(kj::AutoCloseFd memory);

  explicit operator bool() const { return base_ != nullptr; }

  // Copies up to `n` bytes in: how many fit (0: the ring is full).
  std::size_t write_some(const unsigned char* bytes, std::size_t n);
  // Copies up to `n` bytes out: how many were there (0: none).
  std::size_t read_some(unsigned char* out, std::size_t n);
  // Whether read_some would return bytes now: one load.
  bool readable() const { return in_->tail.load(std::memory_order_acquire) != in_head_; }

  // Before sleeping for bytes: sets this side's reader flag, then looks again. true: bytes are there (the caller
  // need not sleep; the flag may stay set, costing the peer one doorbell at most).
  bool arm_reader();
  // While spinning (the caller looks at readable() itself): clears the reader flag, so that the peer does not ring.
  void disarm_reader() { in_->reader_waiting.store(0, std::memory_order_relaxed); }
  // Before sleeping for room: sets this side's writer flag, then looks again. true: there is room now.
  bool arm_writer();
  // After write_some: whether the peer's reader sleeps and must be rung (takes its flag: one doorbell per sleep).
  bool take_reader_wakeup();
  // After read_some: whether the peer's writer sleeps for room and must be rung.
  bool take_writer_wakeup();

  // Bytes written into the outgoing ring, ever, and how many of them the peer has taken out (its position,
  // checked: throws if the peer broke it).
  std::uint64_t written() const { return out_tail_; }
  std::uint64_t consumed_by_peer() const;

  // Queue items (docs/manager.md, "Queue items and dying consumers"). Client: counts one more item that a get()
  // with countsTaken set has in the caller's hands, as its last step before it returns; the count lives in the
  // shared memory, where the server still finds it after this process died. Server: the client's count, as it
  // wrote it (a client that writes a wrong one only misplaces its own items between delivered and abandoned).
  void count_item_taken();
  std::uint64_t items_taken_by_client() const;

 private:
  // One direction's positions and flags, each on its own cache line (who writes it: see the comments).
  struct alignas(64) Positions {
    alignas(64) std::atomic<std::uint64_t> tail;            // the producer
    alignas(64) std::atomic<std::uint64_t> head;            // the consumer
    alignas(64) std::atomic<std::uint32_t> reader_waiting;  // the consumer sets, the producer takes
    alignas(64) std::atomic<std::uint32_t> writer_waiting;  // the producer sets, the consumer takes
  };
  struct Layout;
  static RingStream map(int fd, Side side);
  std::uint64_t checked_peer_head() const;

  unsigned char* base_ = nullptr;  // the whole mapping
  std::size_t bytes_ = 0;
  Positions* in_ = nullptr;  // the direction this side reads
  Positions* out_ = nullptr;  // the direction this side writes
  unsigned char* in_data_ = nullptr;
  unsigned char* out_data_ = nullptr;
  std::uint64_t in_head_ = 0;   // this side's own positions, kept here: the shared copies are only published
  std::uint64_t out_tail_ = 0;
  std::atomic<std::uint64_t>* items_taken_ = nullptr;  // in the header page (count_item_taken)
  std::uint64_t items_counted_ = 0;                     // the client's own count, kept here as the positions are
};

}  // namespace ipc::manager::detail

// RingStream, the shared-memory transport of a local Manager connection: bytes in order both ways across the
// rings' wrap-around, a full ring, the wake-up flags (one doorbell per arming), positions a hostile peer wrote into
// the shared memory (mapped here by hand), memory that open() refuses, and a 64 MiB stream between two processes
// that sleep on a socketpair doorbell.
#include "manager/detail/ring_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "ipc/base/process.h"

using ipc::manager::detail::RingStream;

namespace {

constexpr std::size_t kRing = RingStream::kRingBytes;

// The memory layout (offsets from the start of the memfd), as ring_stream.cc's Layout and Positions make it; the
// test "the shared memory has the documented layout" checks it before the corruption tests rely on it.
constexpr std::size_t kFormatAt = 0;
constexpr std::size_t kRingBytesAt = 8;
constexpr std::size_t kToServer = 64;   // client -> server positions
constexpr std::size_t kToClient = 320;  // server -> client positions
constexpr std::size_t kTail = 0, kHead = 64, kReaderWaiting = 128, kWriterWaiting = 192;
constexpr std::size_t kItemsTaken = 576;  // the client's count of queue items taken (after both positions)
constexpr std::size_t kToServerData = 4096;
constexpr std::size_t kToClientData = 4096 + kRing;
constexpr std::size_t kMemoryBytes = 4096 + 2 * kRing;

// The byte at stream position `p`: a hash, so a byte from any other position (a ring off, one off) mismatches.
unsigned char pattern(std::uint64_t p, std::uint64_t seed = 0) {
  return static_cast<unsigned char>(((p + seed) * 0x9E3779B97F4A7C15ull) >> 56);
}

void fill(unsigned char* out, std::size_t n, std::uint64_t from, std::uint64_t seed = 0) {
  for (std::size_t i = 0; i < n; ++i) out[i] = pattern(from + i, seed);
}

// How many of `n` bytes differ from the pattern at stream positions from..from+n.
std::size_t mismatches(const unsigned char* in, std::size_t n, std::uint64_t from, std::uint64_t seed = 0) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += in[i] != pattern(from + i, seed);
  return bad;
}

kj::AutoCloseFd dup_of(const kj::AutoCloseFd& fd) {
  int copy = ::dup(fd.get());
  REQUIRE(copy >= 0);
  return kj::AutoCloseFd(copy);
}

// A server side and the client side opened from a dup of its memfd.
struct Pair {
  kj::AutoCloseFd memory;
  RingStream server;
  RingStream client;
  Pair() : server(RingStream::create(memory)), client(RingStream::open(dup_of(memory))) {}
};

// The memfd mapped by the test itself, as a peer that writes anything into it.
class Mapping {
 public:
  explicit Mapping(const kj::AutoCloseFd& fd) {
    void* p = ::mmap(nullptr, kMemoryBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    REQUIRE(p != MAP_FAILED);
    base_ = static_cast<unsigned char*>(p);
  }
  ~Mapping() { ::munmap(base_, kMemoryBytes); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  std::uint64_t u64(std::size_t at) const { return __atomic_load_n(word<std::uint64_t>(at), __ATOMIC_SEQ_CST); }
  std::uint32_t u32(std::size_t at) const { return __atomic_load_n(word<std::uint32_t>(at), __ATOMIC_SEQ_CST); }
  void set_u64(std::size_t at, std::uint64_t v) { __atomic_store_n(word<std::uint64_t>(at), v, __ATOMIC_SEQ_CST); }
  void set_u32(std::size_t at, std::uint32_t v) { __atomic_store_n(word<std::uint32_t>(at), v, __ATOMIC_SEQ_CST); }
  const unsigned char* at(std::size_t offset) const { return base_ + offset; }

 private:
  template <typename T>
  T* word(std::size_t at) const {
    return reinterpret_cast<T*>(base_ + at);
  }
  unsigned char* base_ = nullptr;
};

// The description of the kj::Exception `f` throws ("<nothing thrown>" if none).
template <typename F>
std::string thrown_description(F&& f) {
  try {
    f();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "<nothing thrown>";
}

// One direction's stream: writes in chunks of `write_chunk` as long as they fit, reads one `read_chunk` per step,
// and checks the bytes, the counts write_some and read_some return, and written() / consumed_by_peer().
struct Stream {
  RingStream& from;
  RingStream& to;
  std::uint64_t total;
  std::size_t write_chunk;
  std::size_t read_chunk;
  std::uint64_t seed;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::size_t bad_bytes = 0;
  std::size_t bad_counts = 0;
  std::vector<unsigned char> out = std::vector<unsigned char>(write_chunk);
  std::vector<unsigned char> in = std::vector<unsigned char>(read_chunk);

  bool done() const { return received == total; }

  void step() {
    while (sent < total) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(write_chunk, total - sent));
      fill(out.data(), want, sent, seed);
      const std::size_t room = kRing - static_cast<std::size_t>(sent - received);
      const std::size_t n = from.write_some(out.data(), want);
      bad_counts += n != std::min(want, room);
      sent += n;
      if (n < want) break;
    }
    bad_counts += from.written() != sent;
    const std::size_t n = to.read_some(in.data(), read_chunk);
    bad_counts += n != std::min<std::uint64_t>(read_chunk, sent - received);
    bad_bytes += mismatches(in.data(), n, received, seed);
    received += n;
    bad_counts += from.consumed_by_peer() != received;
  }
};

}  // namespace

TEST_CASE("the shared memory has the documented layout", "[ring_stream]") {
  Pair p;
  Mapping m(p.memory);
  CHECK(m.u32(kFormatAt) == RingStream::kFormat);
  CHECK(m.u64(kRingBytesAt) == kRing);

  unsigned char bytes[7] = {1, 2, 3, 4, 5, 6, 7};
  REQUIRE(p.client.write_some(bytes, 7) == 7);
  REQUIRE(p.server.write_some(bytes, 5) == 5);
  CHECK(m.u64(kToServer + kTail) == 7);
  CHECK(m.u64(kToClient + kTail) == 5);
  CHECK(std::memcmp(m.at(kToServerData), bytes, 7) == 0);
  CHECK(std::memcmp(m.at(kToClientData), bytes, 5) == 0);

  unsigned char in[8] = {};
  REQUIRE(p.server.read_some(in, 2) == 2);
  REQUIRE(p.client.read_some(in, 3) == 3);
  CHECK(m.u64(kToServer + kHead) == 2);
  CHECK(m.u64(kToClient + kHead) == 3);

  CHECK(m.u32(kToServer + kReaderWaiting) == 0);
  CHECK(p.server.arm_reader());  // 5 bytes wait
  CHECK(m.u32(kToServer + kReaderWaiting) == 1);
  CHECK(m.u32(kToClient + kReaderWaiting) == 0);
  CHECK(p.client.arm_reader());
  CHECK(m.u32(kToClient + kReaderWaiting) == 1);
  CHECK(m.u32(kToServer + kWriterWaiting) == 0);
  CHECK(p.client.arm_writer());
  CHECK(m.u32(kToServer + kWriterWaiting) == 1);
  CHECK(m.u32(kToClient + kWriterWaiting) == 0);
  CHECK(p.server.arm_writer());
  CHECK(m.u32(kToClient + kWriterWaiting) == 1);

  // The count of queue items the client took: its own word, which the server reads and nothing else moves.
  CHECK(p.server.items_taken_by_client() == 0);
  p.client.count_item_taken();
  p.client.count_item_taken();
  CHECK(m.u64(kItemsTaken) == 2);
  CHECK(p.server.items_taken_by_client() == 2);
  CHECK(m.u64(kToServer + kTail) == 7);
  CHECK(m.u64(kToClient + kHead) == 3);
  m.set_u64(kItemsTaken, 41);  // a peer may write anything there: the server reads it as it is
  CHECK(p.server.items_taken_by_client() == 41);
}

TEST_CASE("bytes arrive in order both ways, across the rings' wrap-around", "[ring_stream]") {
  Pair p;
  const std::uint64_t total = 5 * kRing + 12345;
  auto [write_chunk, read_chunk] = GENERATE(std::pair<std::size_t, std::size_t>{1000, 4093},
                                            std::pair<std::size_t, std::size_t>{4093, 1000},
                                            std::pair<std::size_t, std::size_t>{kRing - 1, 3 * 4093});
  CAPTURE(write_chunk, read_chunk);
  Stream to_client{p.server, p.client, total, write_chunk, read_chunk, 0};
  Stream to_server{p.client, p.server, total + 1, read_chunk, write_chunk, 77};
  std::size_t steps = 0;
  while ((!to_client.done() || !to_server.done()) && steps < 100000) {
    if (!to_client.done()) to_client.step();
    if (!to_server.done()) to_server.step();
    ++steps;
  }
  CHECK(to_client.received == total);
  CHECK(to_server.received == total + 1);
  CHECK(to_client.bad_bytes == 0);
  CHECK(to_server.bad_bytes == 0);
  CHECK(to_client.bad_counts == 0);
  CHECK(to_server.bad_counts == 0);
  CHECK(p.server.written() == total);
  CHECK(p.server.consumed_by_peer() == total);
  CHECK(p.client.written() == total + 1);
  CHECK(p.client.consumed_by_peer() == total + 1);
  CHECK_FALSE(p.server.readable());
  CHECK_FALSE(p.client.readable());
  unsigned char spare[16];
  CHECK(p.server.read_some(spare, sizeof spare) == 0);
  CHECK(p.client.read_some(spare, sizeof spare) == 0);
}

TEST_CASE("a full ring takes only what fits, and exactly what the peer read", "[ring_stream]") {
  Pair p;
  std::vector<unsigned char> chunk(1000);
  std::uint64_t sent = 0;
  std::vector<std::size_t> accepted;
  for (;;) {
    fill(chunk.data(), chunk.size(), sent);
    const std::size_t n = p.server.write_some(chunk.data(), chunk.size());
    if (n == 0) break;
    accepted.push_back(n);
    sent += n;
    REQUIRE(accepted.size() <= kRing / 1000 + 1);
  }
  CHECK(sent == kRing);
  CHECK(accepted.back() == kRing % 1000);  // the last write only partly fit
  CHECK(p.server.written() == kRing);
  CHECK(p.server.consumed_by_peer() == 0);
  CHECK(p.server.write_some(chunk.data(), 1) == 0);
  CHECK(p.server.write_some(chunk.data(), 0) == 0);
  // The other direction is unaffected.
  CHECK(p.client.write_some(chunk.data(), 10) == 10);

  std::vector<unsigned char> in(kRing);
  CHECK(p.client.read_some(in.data(), 777) == 777);
  CHECK(mismatches(in.data(), 777, 0) == 0);
  CHECK(p.server.consumed_by_peer() == 777);
  fill(chunk.data(), chunk.size(), sent);
  CHECK(p.server.write_some(chunk.data(), chunk.size()) == 777);  // wraps around
  sent += 777;
  CHECK(p.server.write_some(chunk.data(), chunk.size()) == 0);

  // The ring holds the rest in order, the wrapped bytes last.
  CHECK(p.client.read_some(in.data(), in.size()) == kRing);
  CHECK(mismatches(in.data(), kRing, 777) == 0);
  CHECK(p.server.consumed_by_peer() == sent);

  // One write bigger than the ring.
  std::vector<unsigned char> big(kRing + 1);
  fill(big.data(), big.size(), sent);
  CHECK(p.server.write_some(big.data(), big.size()) == kRing);
  CHECK(p.server.write_some(big.data(), big.size()) == 0);
  CHECK(p.client.read_some(in.data(), in.size()) == kRing);
  CHECK(mismatches(in.data(), kRing, sent) == 0);
}

TEST_CASE("the reader's wake-up flag: one doorbell per arming", "[ring_stream]") {
  Pair p;
  unsigned char bytes[4] = {9, 8, 7, 6};
  unsigned char in[4] = {};

  // Never armed: no doorbell.
  CHECK_FALSE(p.server.take_reader_wakeup());
  REQUIRE(p.server.write_some(bytes, 4) == 4);
  CHECK_FALSE(p.server.take_reader_wakeup());
  REQUIRE(p.client.read_some(in, 4) == 4);

  // Armed on an empty ring: the first take after a write rings, the second does not.
  CHECK_FALSE(p.client.arm_reader());
  REQUIRE(p.server.write_some(bytes, 2) == 2);
  CHECK(p.server.take_reader_wakeup());
  CHECK_FALSE(p.server.take_reader_wakeup());
  REQUIRE(p.server.write_some(bytes, 1) == 1);
  CHECK_FALSE(p.server.take_reader_wakeup());

  // Armed while bytes are there: arm_reader says so (the flag stays, costing at most one doorbell).
  CHECK(p.client.arm_reader());
  CHECK(p.server.take_reader_wakeup());
  CHECK_FALSE(p.server.take_reader_wakeup());

  // Disarmed: no doorbell.
  REQUIRE(p.client.read_some(in, 4) == 3);
  CHECK_FALSE(p.client.arm_reader());
  p.client.disarm_reader();
  REQUIRE(p.server.write_some(bytes, 4) == 4);
  CHECK_FALSE(p.server.take_reader_wakeup());

  // The other direction's flag is its own.
  CHECK_FALSE(p.server.arm_reader());
  CHECK_FALSE(p.server.take_reader_wakeup());
  REQUIRE(p.client.write_some(bytes, 1) == 1);
  CHECK(p.client.take_reader_wakeup());
  CHECK_FALSE(p.client.take_reader_wakeup());
}

TEST_CASE("the writer's wake-up flag: one doorbell per arming on a full ring", "[ring_stream]") {
  Pair p;
  std::vector<unsigned char> block(kRing);
  unsigned char in[100] = {};

  // Never armed: no doorbell.
  REQUIRE(p.server.write_some(block.data(), 10) == 10);
  REQUIRE(p.client.read_some(in, 10) == 10);
  CHECK_FALSE(p.client.take_writer_wakeup());

  // Room left: arm_writer says so.
  CHECK(p.server.arm_writer());
  CHECK(p.client.take_writer_wakeup());  // the flag that arming left: one doorbell
  CHECK_FALSE(p.client.take_writer_wakeup());

  // Armed on a full ring: the first take after a read rings, the second does not.
  REQUIRE(p.server.write_some(block.data(), block.size()) == kRing);
  CHECK_FALSE(p.server.arm_writer());
  REQUIRE(p.client.read_some(in, 100) == 100);
  CHECK(p.client.take_writer_wakeup());
  CHECK_FALSE(p.client.take_writer_wakeup());
  REQUIRE(p.client.read_some(in, 1) == 1);
  CHECK_FALSE(p.client.take_writer_wakeup());

  // Armed with room: true, and the flag costs one doorbell.
  CHECK(p.server.arm_writer());
  CHECK(p.client.take_writer_wakeup());
  CHECK_FALSE(p.client.take_writer_wakeup());

  // The other direction's flag is its own.
  CHECK_FALSE(p.server.take_writer_wakeup());
  REQUIRE(p.client.write_some(block.data(), block.size()) == kRing);
  CHECK_FALSE(p.client.arm_writer());
  CHECK_FALSE(p.client.take_writer_wakeup());
  REQUIRE(p.server.read_some(in, 1) == 1);
  CHECK(p.server.take_writer_wakeup());
  CHECK_FALSE(p.server.take_writer_wakeup());
}

TEST_CASE("a write position the peer broke makes read_some throw and read nothing", "[ring_stream][corrupt]") {
  Pair p;
  const bool server_reads = GENERATE(true, false);
  CAPTURE(server_reads);
  RingStream& writer = server_reads ? p.client : p.server;
  RingStream& reader = server_reads ? p.server : p.client;
  const std::size_t tail_at = (server_reads ? kToServer : kToClient) + kTail;
  const std::size_t head_at = (server_reads ? kToServer : kToClient) + kHead;
  Mapping m(p.memory);

  unsigned char bytes[10];
  fill(bytes, 10, 0);
  REQUIRE(writer.write_some(bytes, 10) == 10);
  unsigned char in[16];
  REQUIRE(reader.read_some(in, 4) == 4);
  REQUIRE(m.u64(tail_at) == 10);

  auto read_throws_untouched = [&](std::uint64_t tail) {
    INFO("tail " << tail);
    m.set_u64(tail_at, tail);
    std::vector<unsigned char> buffer(kRing + 16, 0xAA);
    REQUIRE_THROWS_AS(reader.read_some(buffer.data(), buffer.size()), kj::Exception);
    CHECK(std::all_of(buffer.begin(), buffer.end(), [](unsigned char b) { return b == 0xAA; }));
    CHECK_THAT(thrown_description([&] { reader.read_some(buffer.data(), buffer.size()); }),
               Catch::Contains("corrupt"));
    CHECK(m.u64(head_at) == 4);  // this side's published position did not move
  };
  read_throws_untouched(4 + kRing + 1);  // more than a ring ahead of what was read
  read_throws_untouched(4 + 3 * kRing);
  read_throws_untouched(3);  // behind what was read
  read_throws_untouched(0);
  read_throws_untouched(~std::uint64_t{0});

  // Positions within a ring of what was read are the peer's to choose: nothing, then the bytes in order again.
  m.set_u64(tail_at, 4);
  CHECK(reader.read_some(in, sizeof in) == 0);
  m.set_u64(tail_at, 10);
  REQUIRE(reader.read_some(in, sizeof in) == 6);
  CHECK(mismatches(in, 6, 4) == 0);
  m.set_u64(tail_at, 10 + kRing);  // exactly a full ring: allowed
  std::vector<unsigned char> whole(kRing + 1);
  CHECK(reader.read_some(whole.data(), whole.size()) == kRing);
  CHECK(m.u64(head_at) == 10 + kRing);
}

TEST_CASE("a read position the peer broke makes write_some and consumed_by_peer throw", "[ring_stream][corrupt]") {
  Pair p;
  const bool server_writes = GENERATE(true, false);
  CAPTURE(server_writes);
  RingStream& writer = server_writes ? p.server : p.client;
  RingStream& reader = server_writes ? p.client : p.server;
  const std::size_t tail_at = (server_writes ? kToClient : kToServer) + kTail;
  const std::size_t head_at = (server_writes ? kToClient : kToServer) + kHead;
  Mapping m(p.memory);

  std::vector<unsigned char> block(kRing + 1);
  fill(block.data(), block.size(), 0);
  auto write_throws = [&](std::uint64_t head) {
    INFO("head " << head);
    const std::uint64_t written = writer.written();
    m.set_u64(head_at, head);
    REQUIRE_THROWS_AS(writer.write_some(block.data(), block.size()), kj::Exception);
    REQUIRE_THROWS_AS(writer.consumed_by_peer(), kj::Exception);
    REQUIRE_THROWS_AS(writer.arm_writer(), kj::Exception);
    CHECK_THAT(thrown_description([&] { writer.write_some(block.data(), 1); }), Catch::Contains("corrupt"));
    CHECK_THAT(thrown_description([&] { writer.consumed_by_peer(); }), Catch::Contains("corrupt"));
    CHECK(writer.written() == written);  // nothing was written
    CHECK(m.u64(tail_at) == written);
  };

  SECTION("ahead of what was written") {
    REQUIRE(writer.write_some(block.data(), 10) == 10);
    write_throws(11);
    write_throws(10 + kRing);
    write_throws(std::uint64_t{1} << 63);
    m.set_u64(head_at, 10);  // all read: the whole ring is free again
    CHECK(writer.consumed_by_peer() == 10);
    CHECK(writer.write_some(block.data(), block.size()) == kRing);
  }

  SECTION("more than a ring behind what was written") {
    REQUIRE(writer.write_some(block.data(), 100) == 100);
    unsigned char in[100];
    REQUIRE(reader.read_some(in, 100) == 100);
    REQUIRE(writer.write_some(block.data(), block.size()) == kRing);  // full: 100 + kRing written
    write_throws(99);
    write_throws(0);
    m.set_u64(head_at, 100);  // a full ring behind: allowed, and full
    CHECK(writer.consumed_by_peer() == 100);
    CHECK(writer.write_some(block.data(), 1) == 0);
    CHECK_FALSE(writer.arm_writer());
    m.set_u64(head_at, 100 + 5);
    CHECK(writer.consumed_by_peer() == 105);
    CHECK(writer.write_some(block.data(), block.size()) == 5);
  }
}

TEST_CASE("open refuses memory that is not a ring pair of this format and size", "[ring_stream]") {
  SECTION("the wrong size") {
    for (std::size_t size : {std::size_t{4096}, kMemoryBytes - 4096, kMemoryBytes + 4096}) {
      CAPTURE(size);
      kj::AutoCloseFd fd(::memfd_create("ring_stream_test", MFD_CLOEXEC));
      REQUIRE(fd.get() >= 0);
      REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
      REQUIRE_THROWS_AS(RingStream::open(dup_of(fd)), kj::Exception);
      CHECK_THAT(thrown_description([&] { RingStream::open(dup_of(fd)); }), Catch::Contains(std::to_string(size)));
    }
  }

  kj::AutoCloseFd memory;
  RingStream server = RingStream::create(memory);
  Mapping m(memory);
  REQUIRE(RingStream::open(dup_of(memory)));  // as made: accepted

  SECTION("the wrong format") {
    m.set_u32(kFormatAt, RingStream::kFormat + 1);
    REQUIRE_THROWS_AS(RingStream::open(dup_of(memory)), kj::Exception);
    CHECK_THAT(thrown_description([&] { RingStream::open(dup_of(memory)); }), Catch::Contains("format"));
    m.set_u32(kFormatAt, 0);
    REQUIRE_THROWS_AS(RingStream::open(dup_of(memory)), kj::Exception);
    m.set_u32(kFormatAt, RingStream::kFormat);
    CHECK(RingStream::open(dup_of(memory)));
  }

  SECTION("the wrong ring size") {
    m.set_u64(kRingBytesAt, kRing * 2);
    REQUIRE_THROWS_AS(RingStream::open(dup_of(memory)), kj::Exception);
    m.set_u64(kRingBytesAt, kRing);
    CHECK(RingStream::open(dup_of(memory)));
  }

  SECTION("the client's own positions not at 0") {
    const std::size_t at = GENERATE(kToServer + kTail, kToClient + kHead);
    CAPTURE(at);
    m.set_u64(at, 5);
    REQUIRE_THROWS_AS(RingStream::open(dup_of(memory)), kj::Exception);
    CHECK_THAT(thrown_description([&] { RingStream::open(dup_of(memory)); }), Catch::Contains("corrupt"));
  }
}

namespace {

constexpr std::uint64_t kStreamBytes = std::uint64_t{64} << 20;
constexpr int kWaitMs = 30000;

// A doorbell: one byte on the socket. Never blocks: if the socket is full, the sleeper has unread doorbells already.
void ring(int fd) {
  const unsigned char b = 1;
  (void)::send(fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

enum class Woken { kRung, kTimeout, kClosed };

// Sleeps until a doorbell comes (at most kWaitMs) and drains every doorbell there.
Woken sleep_for_doorbell(int fd) {
  pollfd pfd{fd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&pfd, 1, kWaitMs);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Woken::kTimeout;
  if (r < 0) return Woken::kClosed;
  for (;;) {
    unsigned char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return Woken::kClosed;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? Woken::kRung : Woken::kClosed;
  }
}

// The child: opens the client side, streams kStreamBytes of the pattern to the server in chunks, then reads the
// server's answer (how many bytes it found right). Its exit code: 0, or which step failed.
int stream_child(int memfd, int sock) {
  try {
    RingStream client = RingStream::open(kj::AutoCloseFd(::dup(memfd)));
    std::vector<unsigned char> chunk(40961);
    std::uint64_t chunk_at = 0;  // the stream position of chunk[0]
    fill(chunk.data(), chunk.size(), chunk_at);
    std::uint64_t sent = 0;
    while (sent < kStreamBytes) {
      if (sent == chunk_at + chunk.size()) fill(chunk.data(), chunk.size(), chunk_at = sent);
      const std::size_t want = static_cast<std::size_t>(
          std::min<std::uint64_t>(chunk_at + chunk.size() - sent, kStreamBytes - sent));
      const std::size_t n = client.write_some(chunk.data() + (sent - chunk_at), want);
      if (n > 0) {
        sent += n;
        if (client.take_reader_wakeup()) ring(sock);
        continue;
      }
      if (client.arm_writer()) continue;  // room came before the flag was up
      const Woken w = sleep_for_doorbell(sock);
      if (w == Woken::kTimeout) return 10;
      if (w == Woken::kClosed) return 11;
    }
    if (client.written() != kStreamBytes) return 12;

    unsigned char answer[8];
    std::size_t got = 0;
    while (got < sizeof answer) {
      const std::size_t n = client.read_some(answer + got, sizeof answer - got);
      if (n > 0) {
        got += n;
        if (client.take_writer_wakeup()) ring(sock);
        continue;
      }
      if (client.arm_reader()) continue;
      const Woken w = sleep_for_doorbell(sock);
      if (w == Woken::kTimeout) return 13;
      if (w == Woken::kClosed && !client.readable()) return 14;
    }
    std::uint64_t right = 0;
    std::memcpy(&right, answer, sizeof right);
    if (right != kStreamBytes) return 15;                    // the server saw a byte out of place
    if (client.consumed_by_peer() != kStreamBytes) return 16;
    return 0;
  } catch (...) {
    return 20;
  }
}

}  // namespace

TEST_CASE("64 MiB stream from a forked client to the server, both sleeping on a socketpair doorbell",
          "[ring_stream][fork]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  kj::AutoCloseFd mine(sv[0]), theirs(sv[1]);
  kj::AutoCloseFd memory;
  RingStream server = RingStream::create(memory);

  // ~Process kills and reaps the child if the test ends before it joined it.
  ipc::Process child = ipc::Process::start([&] {
    ::close(sv[0]);
    return stream_child(memory.get(), sv[1]);
  });
  theirs = nullptr;  // the child's end: its exit is this side's EOF

  std::vector<unsigned char> in(100003);
  std::uint64_t received = 0;
  std::uint64_t bad = 0;
  std::uint64_t sleeps = 0;
  while (received < kStreamBytes) {
    const std::size_t n = server.read_some(in.data(), in.size());
    if (n > 0) {
      bad += mismatches(in.data(), n, received);
      received += n;
      if (server.take_writer_wakeup()) ring(mine);
      continue;
    }
    if (server.arm_reader()) continue;  // bytes came before the flag was up
    ++sleeps;
    const Woken w = sleep_for_doorbell(mine);
    if (w == Woken::kTimeout) {
      FAIL("the child (the writer) sent nothing for " << kWaitMs << " ms; " << received << " of " << kStreamBytes
                                                      << " bytes received");
    }
    if (w == Woken::kClosed && !server.readable()) {
      FAIL("the child (the writer) closed its socket after " << received << " of " << kStreamBytes << " bytes");
    }
  }
  CHECK(received == kStreamBytes);
  CHECK(bad == 0);
  CHECK(server.consumed_by_peer() == 0);  // nothing written this way yet
  CAPTURE(sleeps);

  // The answer: how many bytes were right.
  const std::uint64_t right = received - bad;
  unsigned char answer[8];
  std::memcpy(answer, &right, sizeof answer);
  REQUIRE(server.write_some(answer, sizeof answer) == sizeof answer);
  if (server.take_reader_wakeup()) ring(mine);

  // The child reads it and exits: its end of the socket closes.
  for (;;) {
    const Woken w = sleep_for_doorbell(mine);
    if (w == Woken::kTimeout) FAIL("the child did not read the server's answer and exit within " << kWaitMs << " ms");
    if (w == Woken::kClosed) break;
  }
  const std::optional<int> code = child.join(std::chrono::milliseconds(kWaitMs));
  INFO("child exit: 10/11 no room/socket closed while writing, 12 written() wrong, 13/14 no answer/socket closed, "
       "15 answer wrong, 16 consumed_by_peer() wrong, 20 exception; negative: killed by that signal");
  REQUIRE(code.has_value());  // its socket closed: it ended, or is about to
  CHECK(*code == 0);
  CHECK(server.consumed_by_peer() == sizeof answer);
}

TEST_CASE("the client cannot resize the memory under the server's mapping", "[ring_stream]") {
  Pair p;
  kj::AutoCloseFd client_copy = dup_of(p.memory);  // what the client receives
  CHECK(::ftruncate(client_copy, 0) != 0);
  CHECK(errno == EPERM);
  CHECK(::ftruncate(client_copy, 1 << 30) != 0);
  CHECK(errno == EPERM);
  CHECK(::fcntl(client_copy, F_ADD_SEALS, 0) != 0);  // sealed for good: nobody can lift or change the seals
  // The server still reads and writes all of its ring.
  std::vector<unsigned char> bytes(RingStream::kRingBytes, 0x5a);
  CHECK(p.server.write_some(bytes.data(), bytes.size()) == bytes.size());
  std::vector<unsigned char> out(bytes.size());
  CHECK(p.client.read_some(out.data(), out.size()) == out.size());
  CHECK(out == bytes);
}

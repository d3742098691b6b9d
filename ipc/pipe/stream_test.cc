// ipc/pipe/stream_test.cc: the integrity of a pipe's stream of records: corrupt records in shared memory and two
// senders on one end give StreamCorrupted (never an over-read or a heap overflow), and a timeout holds across
// every part of a long message, in send and in recv, without the receiver ever taking half a message for a whole.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "ipc/pipe/connection.h"
#include "ipc/pipe/detail/test_access.h"
#include "tests/support/test_support.h"

using ipc::Pipe;
using ipc::PipeOptions;
using ipc::Outcome;
using ipc::detail::PipeHookPoint;
using ipc::detail::PipeTestAccess;
using ipc::detail::RecordHeader;
using ipc::detail::RecordKind;
using ipc::test::ForkedChild;
using ipc::test::patience;
using ipc::test::PipeSignal;
using namespace std::chrono_literals;
using Catch::Contains;

namespace {

std::vector<std::byte> patterned(uint64_t seq, size_t size) {
  std::vector<std::byte> m(size);
  for (size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>((seq * 131 + i * 7) & 0xff);
  return m;
}

// 16 KiB rings carry records of up to 4091 bytes: a 6000-byte message is two parts, a 10000-byte one three, and
// either fits the ring whole while nobody reads.
PipeOptions ring_16k() {
  PipeOptions o;
  o.ring_bytes = 16384;
  return o;
}

// The record at byte `offset` of the ring's record space (detail/byte_ring.h: a one-byte header for a small whole
// message, a tag byte and a 4-byte length for the others), read and overwritten as the receiver would find it, and
// its payload.
struct RecordAt {
  std::byte* at;
  uint32_t first() const { return std::to_integer<uint32_t>(at[0]); }
  bool long_header() const { return ipc::detail::has_long_header(first()); }
  RecordHeader header() const {
    if (first() - 1u < ipc::detail::kShortWholeLimit) return RecordHeader{first() - 1u, RecordKind::kWhole, 1};
    if (!long_header()) return RecordHeader{0, static_cast<RecordKind>(first() - ipc::detail::kTagBase), 1};
    uint32_t n;
    std::memcpy(&n, at + 1, sizeof n);
    return RecordHeader{n, static_cast<RecordKind>(first() - ipc::detail::kTagBase),
                        static_cast<uint32_t>(ipc::detail::kLongHeaderBytes)};
  }
  RecordKind kind() const { return header().kind; }
  uint32_t payload_bytes() const { return header().payload_bytes; }
  uint32_t header_bytes() const { return header().header_bytes; }
  // A length of the header's own form: a short header's below kShortWholeLimit.
  void set_payload_bytes(uint32_t n) {
    if (long_header()) {
      std::memcpy(at + 1, &n, sizeof n);
    } else {
      REQUIRE(n < ipc::detail::kShortWholeLimit);
      at[0] = static_cast<std::byte>(n + 1);
    }
  }
  // The tag byte of a long header (`kind` may be one that does not exist).
  void set_kind(RecordKind kind) {
    REQUIRE(long_header());
    at[0] = static_cast<std::byte>(ipc::detail::kTagBase + static_cast<uint32_t>(kind));
  }
  std::byte* payload() const { return at + header_bytes(); }
};
RecordAt record_at(ipc::detail::ByteRing& ring, size_t offset) {
  return RecordAt{reinterpret_cast<std::byte*>(&ring.header() + 1) + offset};
}

// Matches a StreamCorrupted whose message contains `expected`.
Catch::Matchers::Generic::PredicateMatcher<ipc::StreamCorrupted> names_the_fault(const std::string& expected) {
  return Catch::Matchers::Predicate<ipc::StreamCorrupted>(
      [expected](const ipc::StreamCorrupted& e) { return std::string(e.what()).find(expected) != std::string::npos; },
      "the message names what was wrong");
}

// A child that sends message `seq` of `bytes` bytes on `tx` and stops after its first part until resume() (or
// until it gives up waiting, so that a test whose receiver blocks where it must not fails instead of hanging).
PipeSignal* g_part_sent = nullptr;
PipeSignal* g_resume = nullptr;
void stop_after_part(PipeHookPoint) {
  g_part_sent->notify();
  (void)g_resume->wait(patience(10s));
}

class StoppedSender {
 public:
  StoppedSender(ipc::Connection& rx, ipc::Connection& tx, uint64_t seq, size_t bytes)
      : child_([&, this] {
          rx.close();
          g_part_sent = &part_sent_;
          g_resume = &resume_;
          ipc::detail::g_pipe_test_hook.store(stop_after_part, std::memory_order_relaxed);
          return tx.send_bytes(patterned(seq, bytes)) == Outcome::kOk ? 0 : 2;
        }) {}
  // True once the child has sent its first part and stopped.
  bool stopped() { return part_sent_.wait(); }
  void resume() { resume_.notify(); }
  ForkedChild& child() { return child_; }

 private:
  PipeSignal part_sent_, resume_;
  ForkedChild child_;
};

}  // namespace

TEST_CASE("a corrupt record in shared memory is StreamCorrupted, never an over-read", "[pipe][corrupt]") {
  auto [rx, tx] = Pipe(ring_16k());
  REQUIRE(tx.send_bytes(patterned(1, 10000)) == Outcome::kOk);  // kFirst at 0, kMore at 4096, kLast at 8192
  auto& ring = PipeTestAccess::receiving_ring(rx);
  REQUIRE(record_at(ring, 0).kind() == RecordKind::kFirst);
  REQUIRE(record_at(ring, 4096).kind() == RecordKind::kMore);
  std::string expected;
  SECTION("a part longer than the ring allows") {
    record_at(ring, 4096).set_payload_bytes(ipc::detail::kMaxLengthField);
    expected = "record of 268435455 bytes";
  }
  SECTION("a record kind that does not exist") {
    record_at(ring, 0).set_kind(static_cast<RecordKind>(9));
    expected = "unknown record header byte 249";
  }
  SECTION("a record kind of 0") {
    record_at(ring, 0).set_kind(static_cast<RecordKind>(0));
    expected = "unknown record header byte 240";
  }
  SECTION("a header byte of 0 (zeros never read as a message)") {
    record_at(ring, 0).at[0] = std::byte{0};
    expected = "unknown record header byte 0";
  }
  SECTION("a message total larger than its parts") {
    const uint64_t huge = ipc::detail::kMaxLongMessageBytes;  // the sender's pid above it left 0
    std::memcpy(record_at(ring, 0).payload(), &huge, sizeof huge);
    expected = "ended after 10000 of its 1099511627775 bytes";
  }
  SECTION("a message total smaller than its parts") {
    const uint64_t small = 5000;
    std::memcpy(record_at(ring, 0).payload(), &small, sizeof small);
    expected = "overruns its 5000 bytes";
  }
  std::vector<std::byte> got;
  CHECK_THROWS_MATCHES(rx.recv_bytes(got), ipc::StreamCorrupted, names_the_fault(expected));
  // The stream cannot be trusted past a corrupt record: every later recv says so too.
  CHECK_THROWS_AS(rx.recv_bytes(got, 0ms), ipc::StreamCorrupted);
}

// A message that fits one record is read by recv's fast path (ByteRing::try_peek_whole), which must refuse what
// peek() refuses and leave the report to it.
TEST_CASE("a corrupt header of a whole message is StreamCorrupted, never an over-read", "[pipe][corrupt]") {
  auto [rx, tx] = Pipe(ring_16k());
  for (uint64_t seq = 1; seq <= 3; ++seq) REQUIRE(tx.send_bytes(patterned(seq, 4000)) == Outcome::kOk);
  auto& ring = PipeTestAccess::receiving_ring(rx);
  REQUIRE(record_at(ring, 0).kind() == RecordKind::kWhole);
  std::string expected;
  SECTION("a length past what the sender committed") {
    REQUIRE(tx.send_bytes(patterned(4, 100)) == Outcome::kOk);
    RecordAt last = record_at(ring, 3 * 4005);
    REQUIRE((last.kind() == RecordKind::kWhole && last.payload_bytes() == 100 && last.header_bytes() == 1));
    last.set_payload_bytes(200);  // a one-byte header may say this, but only 101 bytes were committed
    expected = "a record of 200 bytes does not fit";
    std::vector<std::byte> got;
    for (uint64_t seq = 1; seq <= 3; ++seq) {
      REQUIRE(rx.recv_bytes(got) == Outcome::kOk);
      REQUIRE(got == patterned(seq, 4000));
    }
  }
  SECTION("a length longer than a part, inside what the sender committed") {
    record_at(ring, 0).set_payload_bytes(4092);  // parts carry at most 4091 bytes
    expected = "parts carry at most 4091 bytes";
  }
  std::vector<std::byte> got;
  CHECK_THROWS_MATCHES(rx.recv_bytes(got), ipc::StreamCorrupted, names_the_fault(expected));
  std::vector<std::byte> buffer(5000);
  size_t n = 0;
  CHECK_THROWS_AS(rx.recv_bytes_into(buffer, n), ipc::StreamCorrupted);
}

TEST_CASE("a whole message after the first part of a long one that a recv kept is StreamCorrupted", "[pipe][corrupt]") {
  auto [rx, tx] = Pipe(ring_16k());
  REQUIRE(tx.send_bytes(patterned(1, 4000)) == Outcome::kOk);
  // The record now starts a 5000-byte message: a recv takes it, finds nothing more and keeps it.
  auto& ring = PipeTestAccess::receiving_ring(rx);
  record_at(ring, 0).set_kind(RecordKind::kFirst);
  const uint64_t total = 5000;
  std::memcpy(record_at(ring, 0).payload(), &total, sizeof total);
  std::vector<std::byte> got;
  REQUIRE(rx.recv_bytes(got, 0ms) == Outcome::kTimeout);
  REQUIRE(tx.send_bytes(patterned(2, 100)) == Outcome::kOk);
  CHECK_THROWS_WITH(rx.recv_bytes(got), Contains("a whole message inside a 5000-byte message after 3992 of its bytes"));
}

// Regression (pipe_fuzz, corpus/pipe_fuzz/regression-write-past-ring): both sides bounded records by the capacity
// in the ring's shared header, and the sender wrote a record header at a tail that was not a record boundary: an
// overwritten header made send write past the end of the ring. Each side now bounds records by the capacity it read
// when it was made, and every byte is a record boundary, so an overwritten tail moves where the sender writes,
// never outside the ring; the receiver reports the break.
TEST_CASE("an overwritten ring capacity or tail never makes send write past the ring", "[pipe][corrupt][fuzz]") {
  PipeOptions o = ring_16k();
  o.duplex = false;
  auto [rx, tx] = Pipe(o);
  ipc::detail::ByteRing& ring = PipeTestAccess::receiving_ring(rx);
  // The ring of a simplex Pipe starts its mapping, whose last page is zeros after the ring (as in pipe_fuzz).
  auto* end = reinterpret_cast<std::byte*>(&ring.header()) + ipc::detail::ByteRing::bytes_needed(16384);
  const std::vector<std::byte> after_the_ring(end, end + 64);
  REQUIRE(after_the_ring == std::vector<std::byte>(64));
  ring.header().capacity = uint64_t{1} << 40;  // ignored: each side read the capacity when it was made
  const std::vector<std::byte> sent = patterned(1, 10000);
  REQUIRE(tx.send_bytes(sent, 1s) == Outcome::kOk);  // still in parts of at most a quarter of the real ring
  std::vector<std::byte> got;
  REQUIRE(rx.recv_bytes(got, 1s) == Outcome::kOk);
  CHECK(got == sent);
  const uint64_t head = ring.header().head.load(std::memory_order_seq_cst);
  // A tail 3 bytes before the end of the ring, inside what the receiver has not read: a record of 100 bytes does
  // not fit there, so the sender writes a one-byte filler and the record at the start of the ring.
  ring.header().tail.store(16384 - 3, std::memory_order_seq_cst);
  CHECK(tx.send_bytes(patterned(2, 100), 1s) == Outcome::kOk);
  CHECK(ring.header().tail.load(std::memory_order_seq_cst) == 16384 + 101);
  CHECK(std::vector<std::byte>(end, end + 64) == after_the_ring);
  CHECK(record_at(ring, 0).payload_bytes() == 100);
  // The receiver, at `head`, finds zeros where the sender never wrote: no record starts with a 0.
  REQUIRE(head < 16384 - 3);
  CHECK_THROWS_WITH(rx.recv_bytes(got, 1s), Contains("unknown record header byte 0"));
}

// A whole message of fewer than kShortWholeLimit bytes has a one-byte header, a longer one five bytes: both kinds,
// on either side of the limit, through both receive paths (inline and out of line, as after a filler).
TEST_CASE("messages on either side of the one-byte header's limit arrive intact", "[pipe]") {
  PipeOptions o;
  o.ring_bytes = 4096;
  o.duplex = false;
  auto [rx, tx] = Pipe(o);
  auto& ring = PipeTestAccess::receiving_ring(rx);
  const uint32_t limit = ipc::detail::kShortWholeLimit;
  std::vector<std::byte> got, buffer(4096);
  uint64_t seq = 0;
  for (int round = 0; round < 12; ++round) {  // 1.7 KiB a round: five laps of the ring, with fillers at its end
    for (const uint32_t n : {0u, 1u, limit - 1, limit, limit + 1, 1019u}) {
      const uint64_t at = ring.header().tail.load(std::memory_order_seq_cst);
      REQUIRE(tx.send_bytes(patterned(++seq, n), 0ms) == Outcome::kOk);
      const uint64_t written = ring.header().tail.load(std::memory_order_seq_cst) - at;
      // The record and, when it did not fit before the end, the filler before it.
      const uint64_t record = (n < limit ? 1 : ipc::detail::kLongHeaderBytes) + n;
      CHECK((written == record || (at % 4096 + record > 4096 && written == 4096 - at % 4096 + record)));
      if (seq % 2 == 0) {
        REQUIRE(rx.recv_bytes(got, 0ms) == Outcome::kOk);
        CHECK(got == patterned(seq, n));
      } else {
        size_t size = 0;
        REQUIRE(rx.recv_bytes_into(buffer, size, 0ms) == Outcome::kOk);
        CHECK(std::vector<std::byte>(buffer.begin(), buffer.begin() + size) == patterned(seq, n));
      }
    }
  }
}

TEST_CASE("two senders on one end put the stream out of step: StreamCorrupted, not a heap overflow",
          "[pipe][corrupt][process]") {
  auto [rx, tx] = Pipe(ring_16k());
  StoppedSender sender(rx, tx, 1, 6000);
  REQUIRE(sender.stopped());
  // The child is between the two parts of its message; this process holds a copy of the same end and sends too.
  REQUIRE(tx.send_bytes(patterned(2, 6000)) == Outcome::kOk);
  std::vector<std::byte> got;
  CHECK_THROWS_WITH(rx.recv_bytes(got, patience(10s)), Contains("out of step") && Contains("two senders"));
  sender.resume();
  CHECK(sender.child().wait() == 0);
}

TEST_CASE("recv with a timeout returns in time when the sender stops between the parts of a message",
          "[pipe][timeout][process]") {
  auto [rx, tx] = Pipe(ring_16k());
  StoppedSender sender(rx, tx, 1, 6000);
  tx.close();
  REQUIRE(sender.stopped());
  std::vector<std::byte> got;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(rx.recv_bytes(got, 200ms) == Outcome::kTimeout);
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= 200ms);
  CHECK(waited < 200ms + patience(2s));
  // The part already taken is kept: once the sender goes on, the next recv returns the whole message.
  sender.resume();
  REQUIRE(rx.recv_bytes(got, patience(10s)) == Outcome::kOk);
  CHECK(got == patterned(1, 6000));
  CHECK(sender.child().wait() == 0);
  CHECK(rx.recv_bytes(got, patience(10s)) == Outcome::kClosed);
}

TEST_CASE("send with a timeout returns in time when the receiver stops reading in the middle of a message, "
          "and the receiver never sees that message",
          "[pipe][timeout][process]") {
  PipeOptions o;
  o.ring_bytes = 4096;  // parts of up to 1019 bytes: a 20000-byte message cannot fit while nobody reads
  auto [rx, tx] = Pipe(o);
  PipeSignal timed_out;
  ForkedChild child([&, &rx_end = rx, &tx_end = tx] {
    rx_end.close();
    const auto t0 = std::chrono::steady_clock::now();
    if (tx_end.send_bytes(patterned(1, 20000), 200ms) != Outcome::kTimeout) return 2;
    const auto waited = std::chrono::steady_clock::now() - t0;
    if (waited < 200ms || waited > 200ms + patience(2s)) return 3;
    timed_out.notify();
    // The next message, sent once the receiver reads again, is the next thing it receives.
    return tx_end.send_bytes(patterned(2, 3000)) == Outcome::kOk ? 0 : 4;
  });
  tx.close();
  // Read nothing until the child's timed send is over.
  REQUIRE(timed_out.wait(patience(10s)));
  std::vector<std::byte> got;
  REQUIRE(rx.recv_bytes(got, patience(10s)) == Outcome::kOk);
  CHECK(got == patterned(2, 3000));
  CHECK(child.wait() == 0);
  CHECK(rx.recv_bytes(got, patience(10s)) == Outcome::kClosed);
}

// The inline send path (Connection::try_send_now) must not write a small message while the kAbandon of a long one
// given up is still due: the receiver, holding that message's parts, would take it for a stream out of step.
TEST_CASE("a small message sent after a long one was given up arrives whole, after the receiver drained the parts",
          "[pipe][timeout][process]") {
  PipeOptions o;
  o.ring_bytes = 4096;  // parts of up to 1019 bytes: a 20000-byte message cannot fit while nobody reads
  auto [rx, tx] = Pipe(o);
  PipeSignal timed_out, drained;
  ForkedChild child([&, &rx_end = rx, &tx_end = tx] {
    rx_end.close();
    if (tx_end.send_bytes(patterned(1, 20000), 200ms) != Outcome::kTimeout) return 2;
    timed_out.notify();
    // The ring is empty now: a message of one record has room, and goes after the kAbandon still due.
    if (!drained.wait(patience(10s))) return 3;
    return tx_end.send_bytes(patterned(2, 8)) == Outcome::kOk ? 0 : 4;
  });
  tx.close();
  REQUIRE(timed_out.wait(patience(10s)));
  std::vector<std::byte> got;
  REQUIRE(rx.recv_bytes(got, 100ms) == Outcome::kTimeout);  // takes the parts there are, and keeps them
  drained.notify();
  REQUIRE(rx.recv_bytes(got, patience(10s)) == Outcome::kOk);
  CHECK(got == patterned(2, 8));
  CHECK(child.wait() == 0);
  CHECK(rx.recv_bytes(got, patience(10s)) == Outcome::kClosed);
}

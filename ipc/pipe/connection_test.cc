#include "ipc/pipe/connection.h"
#include "ipc/pipe/detail/test_access.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "tests/support/test_support.h"

using ipc::Connection;
using ipc::Pipe;
using ipc::PipeOptions;
using ipc::Outcome;
using ipc::test::ForkedChild;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes_of(const std::string& s) {
  auto b = std::as_bytes(std::span(s));
  return {b.begin(), b.end()};
}

// A message whose content is a function of (seq, size), so the receiver can check it without a copy.
std::vector<std::byte> patterned(uint64_t seq, size_t size) {
  std::vector<std::byte> m(size);
  for (size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>((seq * 131 + i * 7) & 0xff);
  if (size >= 8) std::memcpy(m.data(), &seq, 8);
  return m;
}

bool check_patterned(const std::vector<std::byte>& m, uint64_t seq, size_t size) {
  return m == patterned(seq, size);
}

PipeOptions small_ring() {
  PipeOptions o;
  o.ring_bytes = 4096;  // records of up to 1019 bytes: exercises wrap-around and multi-part messages
  return o;
}

}  // namespace

TEST_CASE("bytes and typed values go through a duplex pipe both ways", "[pipe]") {
  auto [a, b] = Pipe();
  REQUIRE(a.send_bytes(bytes_of("ping")) == Outcome::kOk);
  std::vector<std::byte> got;
  REQUIRE(b.recv_bytes(got) == Outcome::kOk);
  CHECK(got == bytes_of("ping"));
  REQUIRE(b.send(std::map<std::string, int>{{"x", 1}, {"y", 2}}) == Outcome::kOk);
  auto m = a.recv<std::map<std::string, int>>();
  REQUIRE(m);
  CHECK(m->at("y") == 2);
  REQUIRE(a.send(std::string()) == Outcome::kOk);  // an empty message is a message
  CHECK(b.recv<std::string>() == std::string());
}

TEST_CASE("messages of every size arrive intact and in order across wrap-around", "[pipe]") {
  auto [a, b] = Pipe(small_ring());
  std::mt19937 rng(7);
  // Interleave sends and receives so that the ring wraps many times with the reader behind the writer. One
  // thread plays both sides, so every message is a single record here (multi-part ones need a concurrent reader
  // and are covered across processes below).
  std::vector<size_t> sizes;
  for (int i = 0; i < 4000; ++i) sizes.push_back(rng() % 3 == 0 ? rng() % 1020 : rng() % 64);
  size_t next_recv = 0;
  std::vector<std::byte> got;
  for (size_t i = 0; i < sizes.size(); ++i) {
    while (a.send_bytes(patterned(i, sizes[i]), 0ms) != Outcome::kOk) {
      REQUIRE(b.recv_bytes(got) == Outcome::kOk);
      REQUIRE(check_patterned(got, next_recv, sizes[next_recv]));
      ++next_recv;
    }
  }
  while (next_recv < sizes.size()) {
    REQUIRE(b.recv_bytes(got, 1s) == Outcome::kOk);
    REQUIRE(check_patterned(got, next_recv, sizes[next_recv]));
    ++next_recv;
  }
  CHECK_FALSE(b.poll());
}

TEST_CASE("recv times out on an empty pipe and poll reports readiness", "[pipe]") {
  auto [a, b] = Pipe();
  std::vector<std::byte> got;
  auto t0 = std::chrono::steady_clock::now();
  CHECK(b.recv_bytes(got, 20ms) == Outcome::kTimeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  CHECK_FALSE(b.poll());
  CHECK_FALSE(b.poll(5ms));
  REQUIRE(a.send(42) == Outcome::kOk);
  CHECK(b.poll());
  CHECK(b.recv<int>() == 42);
}

TEST_CASE("a buffer too small for the next message is an error that loses nothing", "[pipe]") {
  PipeOptions o;
  o.ring_bytes = 16384;  // room for a 5000-byte message in two parts with nobody reading yet
  auto [a, b] = Pipe(o);
  REQUIRE(a.send_bytes(patterned(1, 100)) == Outcome::kOk);
  REQUIRE(a.send_bytes(patterned(2, 5000)) == Outcome::kOk);  // multi-part
  std::vector<std::byte> small(50), big(6000);
  size_t n = 0;
  try {
    (void)b.recv_bytes_into(small, n);
    FAIL("no BufferTooSmall");
  } catch (const ipc::BufferTooSmall& e) {
    CHECK(e.needed_bytes() == 100);
  }
  REQUIRE(b.recv_bytes_into(big, n) == Outcome::kOk);
  CHECK(n == 100);
  CHECK(std::vector<std::byte>(big.begin(), big.begin() + 100) == patterned(1, 100));
  CHECK_THROWS_AS(b.recv_bytes_into(small, n), ipc::BufferTooSmall);
  REQUIRE(b.recv_bytes_into(big, n) == Outcome::kOk);
  CHECK(n == 5000);
  CHECK(std::vector<std::byte>(big.begin(), big.begin() + 5000) == patterned(2, 5000));
}

TEST_CASE("a transferable pipe's rings are reserved when it is made, not at their first write", "[pipe][resources]") {
  ipc::PipeOptions o;
  o.transferable = true;
  o.ring_bytes = 1 << 20;
  auto [a, b] = ipc::Pipe(o);
  struct stat st;
  REQUIRE(fstat(a.handoff().memory_fd, &st) == 0);
  // Every page of the memfd is allocated (a sparse file holds only the pages written so far: the ring headers).
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 >= a.handoff().memory_bytes);
  CHECK(a.handoff().memory_bytes >= 2 * o.ring_bytes);
}

TEST_CASE("a sleeping receiver is woken once, however many sends come before it runs", "[pipe][wake]") {
  auto [a, b] = ipc::Pipe();
  // As a receiver that went to sleep in poll(2) and has not run since: its flag says so.
  auto& waiting = ipc::detail::PipeTestAccess::receiving_ring(b).header().consumer.waiting;
  waiting.store(ipc::detail::Sleeper::kInPoll, std::memory_order_relaxed);  // relaxed: one thread
  for (int i = 0; i < 5; ++i) REQUIRE(a.send(i) == ipc::Outcome::kOk);
  // One doorbell on its socket, not five: the first send took the flag.
  int queued = -1;
  REQUIRE(ioctl(b.fileno(), FIONREAD, &queued) == 0);
  CHECK(queued == 1);
  CHECK(waiting.load(std::memory_order_relaxed) == ipc::detail::Sleeper::kAwake);
  for (int i = 0; i < 5; ++i) CHECK(b.recv<int>() == i);
}

TEST_CASE("ring_pages says where both rings are, also after every end in this process is closed", "[pipe]") {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  ipc::PipeOptions o;
  o.ring_bytes = 1 << 16;
  auto [a, b] = ipc::Pipe(o);
  const ipc::Connection::RingPages pages = a.ring_pages();
  const auto before = pages.now();
  INFO(before.to_string());
  CHECK(before.total_pages >= 2 * o.ring_bytes / page);
  // An anonymous pipe's pages come as they are first written: its two ring headers so far, not the whole rings.
  CHECK(before.pages_not_present > 0);
  CHECK(before.total_pages - before.pages_not_present >= 2);
  REQUIRE(a.send(std::string(20000, 'x')) == ipc::Outcome::kOk);
  const auto after = pages.now();
  CHECK(after.pages_not_present < before.pages_not_present);  // the message's pages
  a.close();
  b.close();
  // The handle keeps the mapping: asking after both ends are gone reads the same pages, not freed memory.
  CHECK(pages.now().total_pages == before.total_pages);
  CHECK(pages.now().pages_not_present == after.pages_not_present);
  CHECK_THROWS_AS(a.ring_pages(), ipc::StateError);
  CHECK_THROWS_AS(ipc::Connection::RingPages().now(), ipc::StateError);
}

TEST_CASE("ring_pages maps nothing until asked, and a first ask after every end is closed reads the rings", "[pipe]") {
  auto mappings = [] {
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);) ++n;
    return n;
  };
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  ipc::PipeOptions o;
  o.ring_bytes = 1 << 16;
  auto [a, b] = ipc::Pipe(o);
  const int before = mappings();
  const ipc::Connection::RingPages pages = a.ring_pages();
  const ipc::Connection::RingPages copy = pages;
  CHECK(mappings() == before);  // no view yet: a pool keeps one of these per worker and rarely asks
  a.close();
  b.close();
  CHECK(mappings() == before);  // the rings stay mapped for the handle, nothing more
  const auto placed = copy.now();
  INFO(placed.to_string());
  CHECK(placed.total_pages >= 2 * o.ring_bytes / page);
  CHECK(placed.total_pages - placed.pages_not_present >= 2);  // the two ring headers, written by Pipe()
  CHECK(mappings() == before + 1);                             // the read-only view, made once ...
  CHECK(pages.now().total_pages == placed.total_pages);
  CHECK(mappings() == before + 1);  // ... and shared by the copies
}

TEST_CASE("release_to_child closes this process's copy of a child's end without telling the peer", "[pipe]") {
  auto [parent_end, child_end] = ipc::Pipe();
  // Where the peer (parent_end) counts closes of child_end's copies: on its sending and on its receiving side.
  auto& sending = ipc::detail::PipeTestAccess::sending_ring(parent_end).header().producer;
  auto& receiving = ipc::detail::PipeTestAccess::receiving_ring(parent_end).header().consumer;
  auto closes = [&] {
    // relaxed: read in this thread after the calls that change them.
    return std::pair{sending.peer_closes.load(std::memory_order_relaxed),
                     receiving.peer_closes.load(std::memory_order_relaxed)};
  };
  ipc::Process child = ipc::Process::start([&] {
    parent_end.close_descriptors_in_child();
    if (child_end.send(std::string("ready")) != ipc::Outcome::kOk) return 1;
    return child_end.recv<std::string>() == "bye" ? 0 : 2;  // holds child_end until the parent is done
  });
  const auto before = closes();
  child_end.release_to_child();
  // close() would count one on each side and wake the peer.
  CHECK(closes().first == before.first);
  CHECK(closes().second == before.second);
  CHECK_THROWS_AS(child_end.send(std::string("x")), ipc::StateError);  // closed in this process
  REQUIRE(parent_end.recv<std::string>() == "ready");
  REQUIRE(parent_end.send(std::string("bye")) == ipc::Outcome::kOk);
  REQUIRE(child.join(60s) == 0);
  // The child's copy was the last one: end of stream (this process's descriptors are closed too, or this waits).
  std::string unused;
  CHECK(parent_end.recv(unused, 60s) == ipc::Outcome::kClosed);
  // The counts are what the test reads: a close() does move them.
  auto [x, y] = ipc::Pipe();
  auto& counted = ipc::detail::PipeTestAccess::receiving_ring(x).header().consumer.peer_closes;
  const uint32_t was = counted.load(std::memory_order_relaxed);  // relaxed: as above
  y.close();
  CHECK(counted.load(std::memory_order_relaxed) == was + 1);  // relaxed: as above
}

TEST_CASE("a forked child that closes its copies of an end's descriptors leaves the end open elsewhere", "[pipe]") {
  auto [parent_end, child_end] = ipc::Pipe();
  auto [other_parent, other_child] = ipc::Pipe();
  ipc::Process child = ipc::Process::start([&] {
    // The child keeps only child_end: its copies of the other descriptors go, the objects stay untouched.
    parent_end.close_descriptors_in_child();
    other_parent.close_descriptors_in_child();
    other_child.close_descriptors_in_child();
    if (child_end.send(std::string("ready")) != ipc::Outcome::kOk) return 1;
    return child_end.recv<std::string>() == "bye" ? 0 : 2;  // alive, holding child_end, until the parent is done
  });
  child_end.close();
  REQUIRE(parent_end.recv<std::string>() == "ready");
  // The other pipe is untouched in this process: both ends still talk.
  REQUIRE(other_parent.send(std::string("still open")) == ipc::Outcome::kOk);
  CHECK(other_child.recv<std::string>() == "still open");
  // While the child lives: closing this process's other_child ends the stream at once, because the child holds
  // no copy of it (one kept would hold the stream open until the child exits: a timeout here).
  other_child.close();
  std::string unused;
  CHECK(other_parent.recv(unused, 60s) == ipc::Outcome::kClosed);
  REQUIRE(parent_end.send(std::string("bye")) == ipc::Outcome::kOk);
  REQUIRE(child.join(60s) == 0);
}

namespace {

// A duplex Pipe whose ends can be handed over (4 KiB rings).
std::pair<ipc::Connection, ipc::Connection> transferable_pipe() {
  ipc::PipeOptions o;
  o.transferable = true;
  o.ring_bytes = 4096;
  return ipc::Pipe(o);
}

// What a receiver of `end`'s handoff over SCM_RIGHTS gets: the same handoff with descriptors of its own.
ipc::ConnectionHandoff received_handoff(const ipc::Connection& end) {
  ipc::ConnectionHandoff h = end.handoff();
  h.memory_fd = dup(h.memory_fd);
  h.in_fd = dup(h.in_fd);
  h.out_fd = dup(h.out_fd);
  return h;
}

// A child that takes one message, the int 1, on `child_end` (after closing its copy of `parent_end`), says so on
// `first_taken`, and then runs `then(child_end)`, whose result is its exit code.
template <typename Then>
ForkedChild receiver_of_one(ipc::Connection& parent_end, ipc::Connection& child_end,
                            ipc::test::PipeSignal& first_taken, Then then) {
  return ForkedChild([&, then] {
    parent_end.close();
    int first = 0;
    if (child_end.recv(first, ipc::test::kWakeDeadline) != Outcome::kOk || first != 1) return 2;
    first_taken.notify();
    return then(child_end);
  });
}

}  // namespace

TEST_CASE("an end handed over by its descriptors works through its own mapping", "[pipe]") {
  auto [a, b] = transferable_pipe();
  ipc::ConnectionHandoff h = received_handoff(b);  // adopt() maps the memory afresh
  b.close();
  ipc::Connection c = ipc::Connection::adopt(h);
  const std::string big(3000, 'x');  // three ring parts (fits the ring: one thread sends and receives)
  REQUIRE(a.send(big) == ipc::Outcome::kOk);
  CHECK(c.recv<std::string>() == big);
  REQUIRE(c.send(std::string("back")) == ipc::Outcome::kOk);
  CHECK(a.recv<std::string>() == "back");
  c.close();
  CHECK_FALSE(a.recv<std::string>().has_value());  // the adopted end was the last copy: end of stream
  auto [plain, other] = ipc::Pipe();
  CHECK_THROWS_AS(plain.handoff(), ipc::StateError);
  ipc::ConnectionHandoff bad = a.handoff();
  bad.memory_fd = dup(bad.memory_fd);
  bad.in_fd = dup(bad.in_fd);
  bad.out_fd = -1;
  bad.in_offset = 8;
  CHECK_THROWS_AS(ipc::Connection::adopt(bad), ipc::InvalidArgument);
}

// Each handle of a receiving end remembers the tail it last saw; another handle (this process's before a fork, or
// the end before it was handed off) may have received past it since.
TEST_CASE("an end that received, then was handed off, receives on through its new handle", "[pipe]") {
  auto [a, b] = transferable_pipe();
  REQUIRE(a.send(std::string("first")) == Outcome::kOk);
  REQUIRE(b.recv<std::string>() == std::string("first"));
  ipc::ConnectionHandoff h = received_handoff(b);
  b.close();
  ipc::Connection adopted = ipc::Connection::adopt(h);
  REQUIRE(a.send(std::string("second")) == Outcome::kOk);
  CHECK(adopted.recv<std::string>() == std::string("second"));
  REQUIRE(a.send(std::string("third")) == Outcome::kOk);
  CHECK(adopted.recv<std::string>() == std::string("third"));
}

TEST_CASE("a receiving end used by a parent, then by its forked child, delivers every message once",
          "[pipe][process]") {
  auto [a, b] = ipc::Pipe();
  ipc::test::PipeSignal parent_done;
  REQUIRE(a.send(std::string("one")) == Outcome::kOk);
  ForkedChild child([&, &a = a, &b = b] {
    a.close_descriptors_in_child();
    parent_done.wait();  // the parent took "one" meanwhile
    const auto m = b.recv<std::string>();
    return m && *m == "two" ? 0 : 2;
  });
  REQUIRE(b.recv<std::string>() == std::string("one"));
  REQUIRE(a.send(std::string("two")) == Outcome::kOk);
  parent_done.notify();  // from now on only the child receives
  CHECK(ipc::test::exit_problem(child, 0, "child receiver (an exception: StreamCorrupted)") == "");
}

TEST_CASE("an end whose rings hold another record format is refused on adoption, naming both formats", "[pipe]") {
  auto [a, b] = transferable_pipe();
  ipc::ConnectionHandoff h = received_handoff(b);
  // What a program built with an older library would have made: the same rings, of record format 2.
  void* memory = mmap(nullptr, h.memory_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, h.memory_fd, 0);
  REQUIRE(memory != MAP_FAILED);
  auto* ring = reinterpret_cast<ipc::detail::ByteRingHeader*>(static_cast<char*>(memory) + h.in_offset);
  REQUIRE(ring->format == ipc::detail::kRecordFormat);
  ring->format = 2;
  munmap(memory, h.memory_bytes);
  CHECK_THROWS_WITH(ipc::Connection::adopt(h),
                    Catch::Contains("holds records of format 2, this library reads format " +
                                    std::to_string(ipc::detail::kRecordFormat)));
  CHECK(fcntl(h.memory_fd, F_GETFD) == -1);  // the descriptors were the call's: closed on failure
}

TEST_CASE("misuse of an end is a clear error", "[pipe]") {
  auto [reader, writer] = Pipe(false);
  CHECK(reader.readable_end());
  CHECK_FALSE(reader.writable_end());
  CHECK_THROWS_WITH(reader.send(1), Catch::Contains("cannot send"));
  std::vector<std::byte> got;
  CHECK_THROWS_WITH(writer.recv_bytes(got), Catch::Contains("cannot receive"));
  REQUIRE(writer.send(5) == Outcome::kOk);
  CHECK(reader.recv<int>() == 5);
  writer.close();
  CHECK(writer.closed());
  CHECK_THROWS_AS(writer.send(1), ipc::StateError);
  CHECK_THROWS_AS(ipc::Pipe(PipeOptions{true, 1000, {}}), ipc::InvalidArgument);
}

TEST_CASE("a corrupt typed message is a CodecError and is consumed", "[pipe]") {
  auto [a, b] = Pipe();
  REQUIRE(a.send_bytes(bytes_of("xy")) == Outcome::kOk);  // not a valid encoded std::string
  CHECK_THROWS_AS(b.recv<std::string>(), ipc::CodecError);
  REQUIRE(a.send(std::string("ok")) == Outcome::kOk);
  CHECK(b.recv<std::string>() == std::string("ok"));
}

TEST_CASE("a child's stream of messages arrives exactly once and in order, then end of stream", "[pipe][process]") {
  auto [parent_end, child_end] = Pipe(small_ring());
  constexpr int kMessages = 20000;
  ForkedChild child([&, &ce = child_end, &pe = parent_end] {
    pe.close();
    std::mt19937 rng(99);
    for (int i = 0; i < kMessages; ++i) {
      size_t size = rng() % 50 == 0 ? 1000 + rng() % 20000 : rng() % 100;
      if (ce.send_bytes(patterned(i, size)) != Outcome::kOk) return 2;
    }
    return 0;  // exiting closes the child's end
  });
  child_end.close();
  std::mt19937 rng(99);
  std::vector<std::byte> got;
  for (int i = 0; i < kMessages; ++i) {
    size_t size = rng() % 50 == 0 ? 1000 + rng() % 20000 : rng() % 100;
    REQUIRE(parent_end.recv_bytes(got, 30s) == Outcome::kOk);
    REQUIRE(check_patterned(got, i, size));
  }
  CHECK(parent_end.recv_bytes(got, 30s) == Outcome::kClosed);
  CHECK(child.wait() == 0);
}

TEST_CASE("a receiver that waits for a run of messages takes them in order, and one sent alone arrives",
          "[pipe][process]") {
  // A receive that has taken every byte it knew of, right behind a sender in another process, waits for a run of
  // messages before taking them (ByteRing::tail_after_run()): the messages must still come in order, none twice or
  // skipped, across the end of the ring. Then messages sent one at a time, each answered before the next: a
  // receive that waited for a run that never comes would hang here.
  auto [parent_end, child_end] = Pipe(small_ring());
  constexpr uint64_t kStreamed = 200000;
  constexpr uint64_t kAlone = 2000;
  auto bytes_of = [](uint64_t v) {
    std::vector<std::byte> b(sizeof v);
    std::memcpy(b.data(), &v, sizeof v);
    return b;
  };
  auto value_of = [](const std::vector<std::byte>& b) {
    uint64_t v = ~uint64_t{0};
    if (b.size() == sizeof v) std::memcpy(&v, b.data(), sizeof v);
    return v;
  };
  ForkedChild child([&, &ce = child_end, &pe = parent_end] {
    pe.close();
    for (uint64_t i = 0; i < kStreamed; ++i) {
      if (ce.send_bytes(bytes_of(i + 1), ipc::test::time_left()) != Outcome::kOk) return 2;
    }
    std::vector<std::byte> answer;
    for (uint64_t i = 0; i < kAlone; ++i) {
      if (ce.send_bytes(bytes_of(i), ipc::test::time_left()) != Outcome::kOk ||
          ce.recv_bytes(answer, ipc::test::time_left()) != Outcome::kOk || value_of(answer) != i) {
        return 3;
      }
    }
    return 0;
  });
  child_end.close();
  std::vector<std::byte> got;
  for (uint64_t i = 0; i < kStreamed; ++i) {
    INFO("streamed message " << i << ": the sending process did not send it in time");
    REQUIRE(parent_end.recv_bytes(got, ipc::test::time_left()) == Outcome::kOk);
    REQUIRE(value_of(got) == i + 1);
  }
  for (uint64_t i = 0; i < kAlone; ++i) {
    INFO("message " << i << " sent alone did not arrive in time");
    REQUIRE(parent_end.recv_bytes(got, ipc::test::time_left()) == Outcome::kOk);
    REQUIRE(value_of(got) == i);
    REQUIRE(parent_end.send_bytes(got) == Outcome::kOk);
  }
  INFO("the sending process did not finish");
  CHECK(child.wait() == 0);
}

TEST_CASE("a receiver blocked in recv sees end of stream when the sender is killed", "[pipe][kill]") {
  auto [parent_end, child_end] = Pipe();
  ipc::test::PipeSignal started;
  ForkedChild child([&, &pe = parent_end] {
    pe.close();
    started.notify();
    for (;;) pause();
    return 0;
  });
  child_end.close();
  REQUIRE(started.wait());
  std::vector<std::byte> got;
  ForkedChild killer([&] {
    kill(child.pid(), SIGKILL);
    return 0;
  });
  CHECK(parent_end.recv_bytes(got, 30s) == Outcome::kClosed);
  CHECK(child.wait() == -SIGKILL);
}

TEST_CASE("a look without waiting notes a peer that was killed, and recv then reports end of stream", "[pipe][kill]") {
  auto [parent_end, child_end] = Pipe();
  ForkedChild child([&, &pe = parent_end] {
    pe.close();
    for (;;) pause();
    return 0;
  });
  child_end.close();
  CHECK_FALSE(parent_end.poll());  // the child lives: nothing to read
  kill(child.pid(), SIGKILL);
  REQUIRE(child.wait() == -SIGKILL);  // reaped: every copy of its end is closed now
  // Only zero-timeout looks: they must find the end of stream themselves, not through a wait that sleeps.
  CHECK(parent_end.poll());
  std::vector<std::byte> got;
  CHECK(parent_end.recv_bytes(got, 0s) == Outcome::kClosed);
}

TEST_CASE("a sender killed in the middle of long messages never delivers a partial one", "[pipe][kill]") {
  for (int round = 0; round < 5; ++round) {
    auto [parent_end, child_end] = Pipe(small_ring());
    ipc::test::PipeSignal started;
    ForkedChild child([&, &ce = child_end, &pe = parent_end] {
      pe.close();
      started.notify();
      for (uint64_t i = 0;; ++i) {
        if (ce.send_bytes(patterned(i, 100000)) != Outcome::kOk) return 2;
      }
      return 0;
    });
    child_end.close();
    REQUIRE(started.wait());
    std::vector<std::byte> got;
    REQUIRE(parent_end.recv_bytes(got, 30s) == Outcome::kOk);
    child.kill(SIGKILL);
    uint64_t seq = 0;
    Outcome r;
    while ((r = parent_end.recv_bytes(got, 30s)) == Outcome::kOk) {
      ++seq;
      REQUIRE(check_patterned(got, seq, 100000));  // every message delivered is whole
    }
    CHECK(r == Outcome::kClosed);
    CHECK(child.wait() == -SIGKILL);
  }
}

// Two processes with copies of one sending end, taking turns: the first parts of a message whose sender was killed
// mid-message lie in the stream when the other's next message comes. The receiver drops them (the first part names
// its sender, who is dead), where before it reported "two senders on one end" and stayed broken.
TEST_CASE("a sender killed mid-message while another copy of its end sends on costs only its message",
          "[pipe][kill]") {
  PipeOptions o = small_ring();
  o.duplex = false;
  auto [rx, tx] = Pipe(o);
  ForkedChild child([&, &rx = rx, &tx = tx] {
    rx.close_descriptors_in_child();
    ipc::detail::g_pipe_test_hook.store([](ipc::detail::PipeHookPoint point) {
      if (point == ipc::detail::PipeHookPoint::kPartSent) ::raise(SIGKILL);
    });
    return tx.send_bytes(patterned(1, 10000)) == Outcome::kOk ? 0 : 2;
  });
  REQUIRE(child.wait() == -SIGKILL);  // killed after its first part was in the ring
  REQUIRE(tx.send_bytes(patterned(2, 100)) == Outcome::kOk);
  REQUIRE(tx.send_bytes(patterned(3, 2500)) == Outcome::kOk);  // three parts, and room for them beside the rest
  std::vector<std::byte> got;
  REQUIRE(rx.recv_bytes(got, 30s) == Outcome::kOk);
  CHECK(check_patterned(got, 2, 100));
  REQUIRE(rx.recv_bytes(got, 30s) == Outcome::kOk);
  CHECK(check_patterned(got, 3, 2500));
}

namespace {

// For the test below: the receiving process, and the end its hook marks.
ForkedChild* g_receiver = nullptr;
Connection* g_sender = nullptr;
std::string g_receiver_problem;

// At a message's last commit, before the send looks whether the receiver sleeps: waits for the receiver to end
// (having taken the message, or not), then leaves its sleep flag as a receiver does whose flag the send read just
// before it cleared it (it had set it, found the message at its last look, and took it): the send's wake-up then
// finds it gone.
void receiver_ends_as_woken(ipc::detail::PipeHookPoint point) {
  if (point != ipc::detail::PipeHookPoint::kMessageCommitted) return;
  g_receiver_problem = ipc::test::exit_problem(*g_receiver, 0, "the receiver");
  // relaxed: the flag is read by this thread next.
  ipc::detail::PipeTestAccess::sending_ring(*g_sender).header().consumer.waiting.store(ipc::detail::kOnFutex,
                                                                                         std::memory_order_relaxed);
}

}  // namespace

// A pool worker that reads its task and dies at once, as the send goes to wake it: the wake-up finds it gone. The
// send reported kClosed, and the pool ran the task again on another worker; it is kOk when the receiver took the
// message (the pool then fails that task with WorkerLost), and kClosed when it did not.
TEST_CASE("a send whose receiver took the message, then died as the send woke it, is kOk; the next is kClosed",
          "[pipe][kill]") {
  const bool takes_it = GENERATE(true, false);
  CAPTURE(takes_it);
  PipeOptions o = small_ring();
  o.duplex = false;
  auto [rx, tx] = Pipe(o);
  ForkedChild receiver([&, &rx = rx, &tx = tx] {
    tx.close_descriptors_in_child();
    if (!takes_it) return 0;
    std::vector<std::byte> got;
    Outcome r;
    // Looks without sleeping (no time to wait), so that it never sets its sleep flag itself.
    while ((r = rx.recv_bytes(got, 0ms)) == Outcome::kTimeout) {
    }
    return r == Outcome::kOk && check_patterned(got, 1, 2500) ? 0 : 2;
  });
  rx.close();
  g_receiver = &receiver;
  g_sender = &tx;
  g_receiver_problem.clear();
  ipc::detail::g_pipe_test_hook.store(receiver_ends_as_woken, std::memory_order_relaxed);
  // Three parts (records of up to 1019 bytes): the last one's commit calls the hook.
  const Outcome sent = tx.send_bytes(patterned(1, 2500));
  ipc::detail::g_pipe_test_hook.store(nullptr, std::memory_order_relaxed);
  REQUIRE(g_receiver_problem == "");
  CHECK(sent == (takes_it ? Outcome::kOk : Outcome::kClosed));
  CHECK(tx.send_bytes(patterned(2, 10)) == Outcome::kClosed);
}

TEST_CASE("a send after every copy of the receiving end was closed returns kClosed, not before", "[pipe]") {
  SECTION("in one process") {
    auto [a, b] = Pipe();
    REQUIRE(a.send_bytes(bytes_of("before")) == Outcome::kOk);
    b.close();
    CHECK(a.send_bytes(bytes_of("after")) == Outcome::kClosed);
    CHECK(a.send(std::string("typed")) == Outcome::kClosed);
  }
  SECTION("the last copy closed in another process") {
    auto [a, b] = Pipe();
    auto [go, go_child] = Pipe();
    ForkedChild child([&, &a = a, &b = b, &go = go, &go_child = go_child] {
      a.close();
      go.close();
      // Hold our copy of b until told to close it, then say so and exit without reading.
      if (!go_child.recv<int>()) return 1;
      b.close();
      return go_child.send(1) == Outcome::kOk ? 0 : 2;
    });
    go_child.close();
    b.close();
    CHECK(a.send_bytes(bytes_of("the child's copy is open")) == Outcome::kOk);
    REQUIRE(go.send(1) == Outcome::kOk);
    int closed = 0;
    REQUIRE(go.recv(closed, 30s) == Outcome::kOk);  // the child closed its copy
    REQUIRE(closed == 1);
    CHECK(a.send_bytes(bytes_of("nobody can read this")) == Outcome::kClosed);
    CHECK(child.wait() == 0);
  }
}

TEST_CASE("end_sending ends the stream for the other end while this end stays open and waited on",
          "[pipe][process]") {
  SECTION("in one process") {
    auto [a, b] = Pipe();
    REQUIRE(a.send_bytes(bytes_of("last")) == Outcome::kOk);
    REQUIRE(b.send_bytes(bytes_of("back")) == Outcome::kOk);
    a.end_sending();
    std::vector<std::byte> got;
    REQUIRE(b.recv_bytes(got, 30s) == Outcome::kOk);  // what was sent first arrives
    CHECK(got == bytes_of("last"));
    CHECK(b.recv_bytes(got, 30s) == Outcome::kClosed);
    CHECK(b.send_bytes(bytes_of("to nobody")) == Outcome::kClosed);  // b now counts a as gone
    CHECK_FALSE(a.closed());
    REQUIRE(a.recv_bytes(got, 30s) == Outcome::kOk);  // still open here, and still receiving
    CHECK(got == bytes_of("back"));
  }
  SECTION("a receiver asleep in another process, while a thread here waits on the same end") {
    auto [a, b] = Pipe();
    ipc::test::PipeSignal asleep;
    ForkedChild child([&, &a = a, &b = b] {
      a.close();
      asleep.notify();
      std::vector<std::byte> got;
      return b.recv_bytes(got) == Outcome::kClosed ? 0 : 2;  // no timeout: only end_sending() ends it
    });
    b.close();
    REQUIRE(asleep.wait());
    Connection* const ends[] = {&a};
    size_t ready = 0;
    // Ready once the child, having seen end of stream, exits and closes its copy of b.
    std::thread waiter([&] { ready = ipc::wait(ends, 30s).connections.size(); });
    a.end_sending();
    CHECK(child.wait() == 0);
    waiter.join();
    CHECK(ready == 1);
    std::vector<std::byte> got;
    CHECK(a.recv_bytes(got, 30s) == Outcome::kClosed);
  }
}

// A receiver killed while it sleeps waiting for a message, as an idle receiver does, in each phase of its sleep: on
// the ring's futex word (kept there by StretchedRechecks) and in poll(2) on its socket. The send that would wake it
// finds it gone, and reports kClosed: the message went nowhere, as a write to an OS pipe fails with EPIPE.
TEST_CASE("a send to a receiver that died asleep in recv gets kClosed at once", "[pipe][kill]") {
  using ipc::detail::Sleeper;
  for (const Sleeper phase : {Sleeper::kOnFutex, Sleeper::kInPoll}) {
    INFO((phase == Sleeper::kOnFutex ? "asleep on the futex" : "asleep in poll"));
    std::optional<ipc::test::StretchedRechecks> stretched;
    if (phase == Sleeper::kOnFutex) stretched.emplace();
    auto [parent_end, child_end] = Pipe();
    ipc::test::PipeSignal first_taken;
    ForkedChild child = receiver_of_one(parent_end, child_end, first_taken, [](ipc::Connection& end) {
      std::vector<std::byte> got;
      (void)end.recv_bytes(got);
      return 1;  // never woken: the parent sends nothing more while it lives
    });
    child_end.close();
    // One exchange while the child lives, so that the sender has taken note of every close before (its own copy
    // of the child's end): only the kill is left to be found.
    REQUIRE(parent_end.send(1) == Outcome::kOk);
    REQUIRE(first_taken.wait());
    auto& waiting = ipc::detail::PipeTestAccess::sending_ring(parent_end).header().consumer.waiting;
    // relaxed: only watched until the child's flag shows the phase; the kill below is what the test orders.
    REQUIRE(ipc::test::wait_until([&] { return waiting.load(std::memory_order_relaxed) == phase; },
                                  ipc::test::kWakeDeadline));
    child.kill(SIGKILL);
    REQUIRE(child.wait() == -SIGKILL);  // reaped: every copy of its end is closed now
    CHECK(parent_end.send(7) == Outcome::kClosed);
    CHECK(parent_end.send(8) == Outcome::kClosed);
  }
}

namespace {

// A receiver killed while busy (it neither closed its end nor slept in recv, so no close count and no failed
// wake-up tells): a child that takes one message from `child_end` and then never comes back to recv, killed and
// reaped once it took it. Every copy of `child_end` is closed when this returns; `parent_end` is open.
void kill_a_busy_receiver(ipc::Connection& parent_end, ipc::Connection& child_end) {
  ipc::test::PipeSignal first_taken;
  ForkedChild child = receiver_of_one(parent_end, child_end, first_taken, [](ipc::Connection&) {
    for (;;) pause();  // busy elsewhere: never back in recv
    return 0;
  });
  child_end.close();
  REQUIRE(parent_end.send(1) == Outcome::kOk);  // every close before (our copy of its end) is noted
  REQUIRE(first_taken.wait());
  child.kill(SIGKILL);
  REQUIRE(child.wait() == -SIGKILL);  // reaped: every copy of its end is closed now
}

}  // namespace

// The sender sees a receiver killed while busy within kBytesBetweenLooks bytes of records (29127 8-byte messages,
// 9 bytes a record), long before the 1 MiB ring is full (116508 of them), and every send after that reports kClosed.
TEST_CASE("a sender sees a receiver killed while busy within a bounded number of sends", "[pipe][kill]") {
  auto [parent_end, child_end] = Pipe();
  kill_a_busy_receiver(parent_end, child_end);
  const uint64_t eight = 8;
  const auto bytes = std::as_bytes(std::span(&eight, 1));
  constexpr uint64_t kRecordBytes = 1 + sizeof eight;  // a record's header byte, then the message
  uint32_t sent = 0;
  while (sent < 110000 && parent_end.send_bytes(bytes) == Outcome::kOk) ++sent;
  INFO(sent << " sends succeeded after the receiver was gone");
  CHECK(sent <= ipc::Connection::kBytesBetweenLooks / kRecordBytes + 1);
  CHECK(parent_end.send_bytes(bytes) == Outcome::kClosed);
}

// The same for long messages, which go out in parts on the out-of-line path (a 4 MiB ring takes records of up to
// 1 MiB - 5 bytes): the ring holds three messages of 1 MiB and 1 KiB, and the first of them crosses
// kBytesBetweenLooks, so the send after it looks and reports kClosed (without that look it would be the fourth,
// once the ring is full).
TEST_CASE("a sender of long messages sees a receiver killed while busy before the ring is full", "[pipe][kill]") {
  PipeOptions options;
  options.ring_bytes = 4 << 20;
  auto [parent_end, child_end] = Pipe(options);
  kill_a_busy_receiver(parent_end, child_end);
  const std::vector<std::byte> message((1 << 20) + 1024, std::byte{5});
  uint32_t sent = 0;
  while (sent < 4 && parent_end.send_bytes(message) == Outcome::kOk) ++sent;
  CHECK(sent == 1);
  CHECK(parent_end.send_bytes(message) == Outcome::kClosed);
}

TEST_CASE("a sender blocked on a full ring gets kClosed when the receiver dies", "[pipe][kill]") {
  auto [parent_end, child_end] = Pipe(small_ring());
  ForkedChild child([&, &pe = parent_end] {
    pe.close();
    for (;;) pause();
    return 0;
  });
  child_end.close();
  // Fill the ring (the child never reads), then block on the next send while the child is killed.
  while (parent_end.send_bytes(patterned(0, 500), 0ms) == Outcome::kOk) {
  }
  ForkedChild killer([&] {
    kill(child.pid(), SIGKILL);
    return 0;
  });
  CHECK(parent_end.send_bytes(patterned(0, 500), 30s) == Outcome::kClosed);
  CHECK(child.wait() == -SIGKILL);
}

TEST_CASE("wait returns the connections that are ready and the processes that exited", "[pipe][process]") {
  auto [p1, c1] = Pipe();
  auto [p2, c2] = Pipe();
  ipc::test::PipeSignal go, finish;
  ForkedChild child([&, &c2r = c2] {
    p1.close();
    p2.close();  // keeps c1 open (silent) and sends on c2 when told
    if (!go.wait()) return 3;
    if (c2r.send(std::string("second")) != Outcome::kOk) return 2;
    return finish.wait() ? 0 : 4;
  });
  c1.close();
  c2.close();
  std::vector<Connection*> conns{&p1, &p2};
  auto none = ipc::wait(conns, 10ms);
  CHECK(none.connections.empty());
  go.notify();
  auto ready = ipc::wait(conns, std::chrono::nanoseconds(30s));
  REQUIRE(ready.connections.size() == 1);
  CHECK(ready.connections.front() == &p2);
  CHECK(p2.recv<std::string>() == std::string("second"));
  finish.notify();
  // The child exits: its pidfd sentinel becomes ready, and both pipes report end of stream.
  int sentinel = ipc::process_sentinel(child.pid());
  std::vector<int> sentinels{sentinel};
  auto exited = ipc::wait({}, sentinels, std::chrono::nanoseconds(30s));
  CHECK(exited.sentinels == sentinels);
  close(sentinel);
  CHECK(child.wait() == 0);
  auto eos = ipc::wait(conns, std::chrono::nanoseconds(30s));
  CHECK(eos.connections.size() == 2);
  CHECK_FALSE(p1.recv<int>().has_value());
}

TEST_CASE("a receiver waiting on an idle pipe uses no CPU", "[pipe]") {
  auto [a, b] = Pipe();
  ForkedChild child([&, &bb = b] {
    std::vector<std::byte> got;
    (void)bb.recv_bytes(got, 1s);  // nothing comes
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long cpu_us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
    return cpu_us < 50000 ? 0 : 1;  // a generous bound: a spinning receiver would use ~1 s
  });
  CHECK(child.wait() == 0);
}

TEST_CASE("two threads stream through both directions of a pipe", "[pipe][threads]") {
  // The same protocol as across processes, in one address space so that the thread sanitizer can check it.
  auto [a, b] = Pipe(small_ring());
  constexpr int kMessages = 20000;
  std::thread echo([&, &bb = b] {
    std::vector<std::byte> m;
    while (bb.recv_bytes(m) == Outcome::kOk) {
      if (bb.send_bytes(m) != Outcome::kOk) return;
    }
  });
  std::thread sender([&, &aa = a] {
    for (int i = 0; i < kMessages; ++i) {
      if (aa.send_bytes(patterned(i, i % 97 == 0 ? 3000 : i % 50)) != Outcome::kOk) return;
    }
  });
  std::vector<std::byte> got;
  // The main thread reads the echoes from `a` while `sender` writes to it: one reader and one writer per end.
  for (int i = 0; i < kMessages; ++i) {
    REQUIRE(a.recv_bytes(got, 30s) == Outcome::kOk);
    REQUIRE(check_patterned(got, i, i % 97 == 0 ? 3000 : i % 50));
  }
  sender.join();
  // Shutting down b's reader: close a (both directions end), so the echo thread sees end of stream.
  a.close();
  echo.join();
}

// The shared-memory transport of local connections (ClientOptions::Transport, manager/detail/ring_stream.h): which
// connections use it, that calls behave alike on every transport, a peer that breaks the rings or the request, and
// a client killed while its bytes are in a ring.
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ipc/base/unix_socket.h"
#include "manager/client.h"
#include "manager/detail/raw_wire.h"
#include "manager/detail/ring_stream.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::manager::Client;
using ipc::manager::ClientOptions;
using ipc::manager::ConnectedClient;
using ipc::manager::Value;
using ipc::manager::detail::kRingGranted;
using ipc::manager::detail::kRingRequest;
using ipc::manager::detail::RingStream;
using ipc::manager::testing::closed_by_server;
using ipc::manager::testing::raw_connect;
using ipc::manager::testing::run_child;
using ipc::manager::testing::server_on;
using ipc::manager::testing::Signal;
using Transport = ClientOptions::Transport;

namespace {

ClientOptions with(Transport t) {
  ClientOptions o;
  o.transport = t;
  return o;
}

const ConnectedClient& caller_of(const std::vector<ConnectedClient>& clients) {
  auto it = std::find_if(clients.begin(), clients.end(), [](const ConnectedClient& c) { return c.caller; });
  REQUIRE(it != clients.end());
  return *it;
}

// Whether status() lists no connection of `pid`.
bool gone_from_status(Client& client, int pid) {
  const auto clients = client.status().clients;
  return std::none_of(clients.begin(), clients.end(), [&](const ConnectedClient& c) { return c.pid == pid; });
}

// A raw connection that asked for the rings and got them: the socket, and the rings' memory mapped here as the
// client side would see it (offsets: ring_stream.cc, RingStream::Layout).
struct RawRingClient {
  int fd = -1;
  unsigned char* memory = nullptr;
  std::size_t bytes = 0;
  explicit RawRingClient(const std::string& address) {
    fd = raw_connect(address);
    REQUIRE(::send(fd, kRingRequest, sizeof kRingRequest, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof kRingRequest));
    std::byte answer{};
    std::vector<int> fds;
    bool truncated = false;
    REQUIRE(ipc::detail::recv_with_fds(fd, std::span<std::byte>(&answer, 1), fds, truncated) == 1);
    REQUIRE(static_cast<unsigned char>(answer) == kRingGranted);
    REQUIRE(fds.size() == 1);
    bytes = 4096 + 2 * RingStream::kRingBytes;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    ::close(fds[0]);
    REQUIRE(p != MAP_FAILED);
    memory = static_cast<unsigned char*>(p);
  }
  ~RawRingClient() {
    if (memory != nullptr) ::munmap(memory, bytes);
    if (fd >= 0) ::close(fd);
  }
  // The client -> server direction's write position (what the server reads up to).
  void set_tail_to_server(std::uint64_t tail) {
    reinterpret_cast<std::atomic<std::uint64_t>*>(memory + 64)->store(tail, std::memory_order_release);
  }
  void ring_doorbell() {
    const char bell = 1;
    REQUIRE(::send(fd, &bell, 1, MSG_NOSIGNAL) == 1);
  }
};

}  // namespace

TEST_CASE("a local client's calls go through shared memory unless it asks for the socket; TCP uses the socket",
          "[manager][transport]") {
  struct Case {
    const char* name;
    const char* address;
    Transport transport;
    bool shared_memory;
  };
  const Case c = GENERATE(Case{"unix, shared memory", ipc::manager::testing::kUnixSocket, Transport::kSharedMemory, true},
                          Case{"unix, socket", ipc::manager::testing::kUnixSocket, Transport::kSocket, false},
                          Case{"tcp, shared memory asked", ipc::manager::testing::kTcpLoopback,
                               Transport::kSharedMemory, false});
  // Spinning on or off here and in the server forked afterwards: with it the sides find each other's bytes by
  // looking at the rings, without it every wait yields a few times, then sleeps and is woken by a doorbell.
  const bool spin = GENERATE(true, false);
  ipc::test::ForcedSpinningVerdict verdict(spin);
  auto server = server_on(c.address);
  INFO((spin ? "spinning" : "sleeping at once"));
  INFO(c.name);
  Client client(server.address(), server.key(), with(c.transport));
  CHECK(caller_of(client.status().clients).shared_memory == c.shared_memory);

  // The same calls, the same answers: blocking, pipelined, and larger than a ring.
  auto d = client.dict("d");
  d.set("k", 41);
  CHECK(d.get("k") == Value(std::int64_t{41}));
  std::vector<ipc::manager::Future<void>> sets;
  for (int i = 0; i < 2000; ++i) sets.push_back(d.set_async("p" + std::to_string(i % 10), i));
  for (auto& f : sets) f.get();
  CHECK(d.get("p9") == Value(std::int64_t{1999}));
  std::string big(3 * RingStream::kRingBytes + 123, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  d.set("big", big);
  CHECK(d.get("big") == Value(big));
  auto q = client.queue("q");
  REQUIRE(q.put("item") == Outcome::kOk);
  CHECK(q.get(30s).value == Value("item"));
}

TEST_CASE("clients on both transports share one object", "[manager][transport]") {
  auto server = ipc::manager::start_server();
  Client on_ring(server.address(), server.key(), with(Transport::kSharedMemory));
  Client on_socket(server.address(), server.key(), with(Transport::kSocket));
  auto a = on_ring.counter("n");
  auto b = on_socket.counter("n");
  for (int i = 0; i < 100; ++i) {
    a.add(1);
    b.add(2);
  }
  CHECK(a.get() == 300);
  CHECK(b.get() == 300);
}

TEST_CASE("a peer that breaks the shared ring loses its connection; the server keeps serving the others",
          "[manager][transport][security]") {
  auto server = ipc::manager::start_server();
  Client bystander(server.address(), server.key());
  auto d = bystander.dict("d");
  d.set("k", 1);

  SECTION("a write position beyond the ring") {
    RawRingClient raw(server.address());
    raw.set_tail_to_server(5 * RingStream::kRingBytes);
    raw.ring_doorbell();
    CHECK(closed_by_server(raw.fd));
  }
  SECTION("a write position behind what the server read") {
    RawRingClient raw(server.address());
    raw.set_tail_to_server(~std::uint64_t{0} - 7);
    raw.ring_doorbell();
    CHECK(closed_by_server(raw.fd));
  }
  SECTION("bytes after the request, before the answer") {
    const int fd = raw_connect(server.address());
    std::vector<std::uint8_t> bytes(kRingRequest, kRingRequest + sizeof kRingRequest);
    bytes.resize(bytes.size() + 8, 0);
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
    CHECK(closed_by_server(fd));
    ::close(fd);
  }
  CHECK(d.get("k") == Value(std::int64_t{1}));
  d.set("k", 2);
  CHECK(d.get("k") == Value(std::int64_t{2}));
}

TEST_CASE("a client killed while its calls stream through the ring leaves the server serving, its connection gone",
          "[manager][transport][kill]") {
  auto server = ipc::manager::start_server();
  Client survivor(server.address(), server.key());
  auto d = survivor.dict("d");
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    // Values larger than a ring keep the child inside its calls, writing into a full ring, most of the time: it is
    // killed mid-message.
    Signal streaming;
    auto child = run_child([&] {
      Client c(server.address(), server.key());
      auto dc = c.dict("d");
      std::string value(RingStream::kRingBytes + 4096, 'v');
      dc.set("child", value);
      streaming.notify();
      for (std::int64_t i = 0;; ++i) {
        value[0] = static_cast<char>('a' + i % 26);
        dc.set("child", value);
      }
      return 0;
    });
    REQUIRE(streaming.wait_for(60s));
    child.kill();
    CHECK(child.join() == -SIGKILL);
    CHECK(ipc::test::wait_until([&] { return gone_from_status(survivor, child.pid()); }));
    d.set("k", round);
    CHECK(d.get("k") == Value(std::int64_t{round}));
    const auto last = d.get("child");
    REQUIRE(last.has_value());
    // Only whole messages were applied.
    const std::string& text = last->as_text();
    CHECK(text.size() == RingStream::kRingBytes + 4096);
    CHECK(std::all_of(text.begin() + 1, text.end(), [](char ch) { return ch == 'v'; }));
  }
}

TEST_CASE("a Client connected on a thread whose loop was idle longer than connect_timeout connects",
          "[manager][transport]") {
  // The thread's event loop reads the clock only when it polls for I/O: a handshake timed from the clock the loop
  // read at its last call (seconds ago) would give up at once.
  auto server = ipc::manager::start_server();
  const auto t = GENERATE(Transport::kSharedMemory, Transport::kSocket);
  Client first(server.address(), server.key(), with(t));
  first.dict("d").set("k", 1);
  std::this_thread::sleep_for(1500ms);  // the scenario: this thread does other work, not a wait for a process
  ClientOptions short_timeout = with(t);
  short_timeout.connect_timeout = 1s;
  Client second(server.address(), server.key(), short_timeout);
  CHECK(second.dict("d").get("k") == Value(std::int64_t{1}));
}

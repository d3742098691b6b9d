// What dies, and what the survivors see: clients killed while holding or waiting, servers killed under clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "manager/client.h"
#include "manager/detail/test_hooks.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::manager::Client;
using ipc::Outcome;
using ipc::manager::Value;
using ipc::manager::testing::kTcpLoopback;
using ipc::manager::testing::kUnixSocket;
using ipc::manager::testing::run_child;
using ipc::manager::testing::server_on;
using ipc::manager::testing::Signal;

TEST_CASE("a client killed while holding a lock releases it to the next client", "[manager][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  Signal holding;
  auto child = run_child([&] {
    Client c(server.address(), server.key());
    auto held = c.lock("L").acquire();
    holding.notify();
    ::pause();  // killed here, still holding
    return 0;
  });
  REQUIRE(holding.wait_for(30s));
  Client client(server.address(), server.key());
  auto lock = client.lock("L");
  CHECK_FALSE(lock.try_acquire().has_value());
  child.kill();
  CHECK(child.join() == -SIGKILL);
  auto held = lock.try_acquire(30s);
  CHECK(held.has_value());
}

TEST_CASE("a client killed while waiting for a lock does not keep it from others", "[manager][kill]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto lock = client.lock("L");
  auto held = lock.acquire();
  Signal waiting;
  auto child = run_child([&] {
    Client c(server.address(), server.key());
    auto l = c.lock("L");
    auto request = l.capability().acquireRequest();
    request.setTimeoutNs(-1);
    auto reply = request.send();
    (void)l.locked();  // calls of one connection run in order: the acquire above is now waiting
    waiting.notify();
    c.wait(kj::mv(reply));
    ::pause();
    return 0;
  });
  REQUIRE(waiting.wait_for(30s));
  child.kill();
  CHECK(child.join() == -SIGKILL);
  held.release();
  // Had the dead waiter been handed the lock, this would time out.
  CHECK(lock.try_acquire(30s).has_value());
}

namespace {

// Forks a client process whose get() on queue `name` is waiting on the server when this returns. Once answered it
// pauses: it ends only when killed.
ipc::Process consumer_waiting_in_get(const ipc::manager::ServerProcess& server,
                                                            const char* name,
                                                            ipc::manager::ClientOptions options = {}) {
  Signal waiting;
  auto child = run_child([&] {
    Client c(server.address(), server.key(), options);
    auto q = c.queue(name);
    auto request = q.capability().getRequest();
    request.setTimeoutNs(-1);
    auto reply = request.send();
    (void)q.size_approx();  // calls of one connection run in order: the get above is now waiting
    waiting.notify();
    c.wait(kj::mv(reply));
    ::pause();
    return 0;
  });
  REQUIRE(waiting.wait_for(30s));
  return child;
}

}  // namespace

TEST_CASE("a client killed while waiting on a queue does not swallow the next item", "[manager][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  auto child = consumer_waiting_in_get(server, "q");
  child.kill();
  CHECK(child.join() == -SIGKILL);
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  REQUIRE(q.put("item") == Outcome::kOk);
  auto item = q.get(30s);
  CHECK(item.status == Outcome::kOk);
  CHECK(item.value == Value("item"));
}

TEST_CASE("items handed to consumers killed while blocked in get reach a survivor or are counted as abandoned",
          "[manager][kill]") {
  // Each round kills a consumer blocked in get() on an empty queue and at once puts an item, racing the server's
  // notice of the death: the item may go to the dead consumer's pending get, its reply may be written before or
  // after the consumer's socket closed, or the get may already be gone. The survivor (this process) then waits
  // until that item is back in the queue or counted, so that every round starts empty.
  constexpr int kItems = 20;
  auto server = ipc::manager::start_server();
  Client survivor(server.address(), server.key());
  auto q = survivor.queue("q");
  std::set<std::int64_t> received;
  std::uint64_t abandoned = 0;
  for (int i = 0; i < kItems; ++i) {
    auto consumer = consumer_waiting_in_get(server, "q");
    consumer.kill();
    REQUIRE(q.put(i) == Outcome::kOk);
    CHECK(consumer.join() == -SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (received.size() + abandoned < static_cast<std::size_t>(i) + 1 &&
           std::chrono::steady_clock::now() < deadline) {
      auto item = q.get(100ms);
      if (item) CHECK(received.insert(item.value.as_int()).second);  // never twice
      abandoned = q.abandoned_count();
    }
    INFO("round " << i << ": received " << received.size() << ", abandoned " << abandoned);
    REQUIRE(received.size() + abandoned == static_cast<std::size_t>(i) + 1);
  }
  CHECK(q.get(0s).status == Outcome::kTimeout);  // and nothing more
}

namespace {

using Transport = ipc::manager::ClientOptions::Transport;

// The server's address kind and the consumer's transport: the shared rings, a Unix socket, TCP (always a socket).
struct ConsumerPath {
  std::string address_kind;
  Transport transport;
  ipc::manager::ClientOptions options() const {
    ipc::manager::ClientOptions o;
    o.transport = transport;
    return o;
  }
  std::string describe() const {
    if (!address_kind.empty()) return "server on " + address_kind + ", consumer on the socket";
    return transport == Transport::kSocket ? "Unix socket, consumer on the socket" : "Unix socket, shared rings";
  }
};
ConsumerPath every_consumer_path() {
  return GENERATE(ConsumerPath{kUnixSocket, Transport::kSharedMemory}, ConsumerPath{kUnixSocket, Transport::kSocket},
                  ConsumerPath{kTcpLoopback, Transport::kSharedMemory});
}

}  // namespace

// The worst moment of a get: the consumer read the reply that carries its item (out of the shared ring, or from its
// socket: either alone used to make the item delivered) and dies before get() returns it. The item is gone with the
// process, and the survivors must be able to count it.
TEST_CASE("a consumer killed inside get(), after it read the item's reply, has the item counted as abandoned",
          "[manager][kill][tcp]") {
  const ConsumerPath path = every_consumer_path();
  INFO(path.describe());
  auto server = server_on(path.address_kind);
  Client survivor(server.address(), server.key());
  auto q = survivor.queue("q");
  constexpr int kRounds = 3;
  for (int i = 0; i < kRounds; ++i) {
    INFO("round " << i);
    REQUIRE(q.put(i) == Outcome::kOk);
    auto consumer = run_child([&] {
      Client c(server.address(), server.key(), path.options());
      auto mine = c.queue("q");
      ipc::manager::detail::g_manager_test_hook.store(
          [](ipc::manager::detail::ManagerHookPoint point) {
            if (point == ipc::manager::detail::ManagerHookPoint::kItemRead) ::raise(SIGKILL);
          },
          std::memory_order_relaxed);
      (void)mine.get(30s);
      return 0;  // not reached: killed inside the get
    });
    CHECK(consumer.join() == -SIGKILL);
    const auto counted = [&] { return q.abandoned_count() == static_cast<std::uint64_t>(i) + 1; };
    REQUIRE(ipc::test::wait_until(counted, 30s));
    CHECK(q.size_approx() == 0);  // not given back: the consumer had read it
  }
  CHECK(q.get(0s).status == Outcome::kTimeout);
}

// The other side of the count: items whose get() returned are delivered, whether the consumer then exits or is
// killed, and however its connection ends.
TEST_CASE("items a consumer's get() returned stay delivered when it exits or is killed afterwards",
          "[manager][kill][tcp]") {
  const ConsumerPath path = every_consumer_path();
  INFO(path.describe());
  auto server = server_on(path.address_kind);
  Client survivor(server.address(), server.key());
  auto q = survivor.queue("q");
  constexpr int kEach = 3;
  for (int i = 0; i < 2 * kEach; ++i) REQUIRE(q.put(i) == Outcome::kOk);
  auto take = [&] {
    Client c(server.address(), server.key(), path.options());
    auto mine = c.queue("q");
    for (int i = 0; i < kEach; ++i) {
      if (!mine.get(30s)) return 1;
    }
    return 0;
  };
  auto exits = run_child(take);
  CHECK(exits.join() == 0);
  Signal took;
  auto killed = run_child([&] {
    const int r = take();
    took.notify();
    ::pause();  // killed here, with its items in hand
    return r;
  });
  REQUIRE(took.wait_for(30s));
  killed.kill();
  CHECK(killed.join() == -SIGKILL);
  // The server settles a connection's items as it drops it from its table, in one turn of its loop: once only
  // the survivor is listed, both verdicts are in.
  REQUIRE(ipc::test::wait_until([&] { return survivor.status().clients.size() == 1; }, 30s));
  CHECK(q.abandoned_count() == 0);
  CHECK(q.get(0s).status == Outcome::kTimeout);  // none given back either
}

// The reply that carries an item reaches the consumer's kernel (over TCP, it is acknowledged), but the consumer is
// stopped and never reads it, and is then killed: its kernel resets the connection with the reply unread, and the
// item goes back to the queue. Over every transport: SIOCOUTQ of a TCP socket counts only what the peer's kernel
// has not acknowledged, so the verdict must come from the reset, not from an empty send queue; on a shared ring
// (a local client's default) it comes from the consumer's read position, which never moved past the reply.
TEST_CASE("an item whose reply a stopped consumer never read goes back to the queue when it is killed",
          "[manager][kill][tcp]") {
  const ConsumerPath path = every_consumer_path();
  auto server = server_on(path.address_kind);
  INFO(path.describe() << " (" << server.address() << ")");
  Client survivor(server.address(), server.key());
  auto q = survivor.queue("q");
  constexpr int kRounds = 5;
  for (int i = 0; i < kRounds; ++i) {
    INFO("round " << i);
    auto consumer = consumer_waiting_in_get(server, "q", path.options());
    REQUIRE(::kill(consumer.pid(), SIGSTOP) == 0);
    REQUIRE(ipc::test::wait_until([&] { return ipc::test::stopped(consumer.pid()); }));
    REQUIRE(q.put(i) == Outcome::kOk);
    // The server hands the item to the stopped consumer's pending get: it leaves the queue, and its reply is
    // written to the consumer's socket.
    REQUIRE(ipc::test::wait_until([&] { return q.size_approx() == 0; }));
    consumer.kill();
    CHECK(consumer.join() == -SIGKILL);
    auto item = q.get(30s);
    REQUIRE(item.status == Outcome::kOk);  // given back, not lost
    CHECK(item.value == Value(static_cast<std::int64_t>(i)));
  }
  CHECK(q.abandoned_count() == 0);
}

TEST_CASE("a pending call fails with Disconnected when the server is killed, and so do later calls",
          "[manager][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  Client client(server.address(), server.key());
  auto ev = client.event("E");
  auto d = client.dict("d");
  auto request = ev.capability().waitRequest();
  request.setTimeoutNs(-1);
  auto pending = request.send();
  (void)ev.is_set();  // the wait above is now pending on the server
  ::kill(server.pid(), SIGKILL);
  CHECK_THROWS_AS(client.wait(kj::mv(pending)), ipc::manager::Disconnected);
  CHECK_THROWS_AS(d.set("k", 1), ipc::manager::Disconnected);
  CHECK_THROWS_WITH(d.set("k", 1), Catch::Contains(server.address()));
  CHECK_THROWS_AS(ev.wait(), ipc::manager::Disconnected);
  CHECK_THROWS_AS(client.dict("other"), ipc::manager::Disconnected);
  CHECK(server.stop() == -SIGKILL);
}

// The direct path's calls (dict set and get, counter add, and the others) are matched to their replies by the client itself: when
// the connection ends, every one still waiting must fail as the RPC system's own calls do. The server is stopped
// (SIGSTOP) so that the calls are surely in flight when it is killed. In a child, so that a hang is reported.
TEST_CASE("direct calls in flight fail with Disconnected naming the address when the server is killed",
          "[manager][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  auto client_process = run_child([&] {
    Client client(server.address(), server.key());
    auto d = client.dict("d");
    auto c = client.counter("c");
    d.set("k", 1);
    if (::kill(server.pid(), SIGSTOP) != 0) return 100;
    // kill() returns before the server stops: a server still polling its socket would answer the first calls.
    if (!ipc::test::wait_until([&] { return ipc::test::stopped(server.pid()); })) return 102;
    std::vector<ipc::manager::Future<void>> sets;
    std::vector<ipc::manager::Future<std::optional<Value>>> gets;
    std::vector<ipc::manager::Future<std::int64_t>> adds;
    for (int i = 0; i < 100; ++i) {
      sets.push_back(d.set_async("k", i));
      gets.push_back(d.get_async("k"));
      adds.push_back(c.add_async(1));
    }
    if (::kill(server.pid(), SIGKILL) != 0) return 101;
    int not_disconnected = 0;
    auto expect_disconnected = [&](auto& future) {
      try {
        future.get();
        ++not_disconnected;
      } catch (const ipc::manager::Disconnected& e) {
        if (std::string(e.what()).find(server.address()) == std::string::npos) ++not_disconnected;
      }
    };
    for (auto& f : sets) expect_disconnected(f);
    for (auto& f : gets) expect_disconnected(f);
    for (auto& f : adds) expect_disconnected(f);
    auto later = d.get_async("k");  // on a connection known to be gone: fails at once
    expect_disconnected(later);
    return not_disconnected;
  });
  const std::optional<int> code = client_process.join(ipc::test::time_left());
  if (!code) FAIL("the client process did not finish: a direct call waits on a dead connection");
  CHECK(*code == 0);
  CHECK(server.stop() == -SIGKILL);
}

TEST_CASE("a blocking call in progress fails with Disconnected when the server stops", "[manager][kill]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  auto killer = run_child([&] {
    Client c(server.address(), server.key());
    // Signals the parent's pending get by stopping the server once the parent waits.
    auto ev = c.event("parent waiting");
    if (ev.wait(30s) != Outcome::kOk) return 1;
    ::kill(server.pid(), SIGTERM);
    return 0;
  });
  auto request = q.capability().getRequest();
  request.setTimeoutNs(-1);
  auto pending = request.send();
  client.event("parent waiting").set();
  CHECK_THROWS_AS(client.wait(kj::mv(pending)), ipc::manager::Disconnected);
  CHECK(killer.join() == 0);
}

TEST_CASE("connecting to a stopped server fails with a system error naming the address", "[manager][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  std::string path = server.address();
  auto key = server.key();
  CHECK(server.stop() == 0);
  CHECK_THROWS_AS(Client(path, key), ipc::SystemError);
  CHECK_THROWS_WITH(Client(path, key), Catch::Contains(path));
}

namespace {

// A listening socket nothing ever accepts from, on TCP loopback (a port the kernel picks) or a Unix socket in a
// fresh private directory; `backlog` as listen(2) takes it. A peer that is not a Manager, or one too busy to accept.
class SilentListener {
 public:
  SilentListener(const std::string& transport, int backlog) {
    if (transport == kTcpLoopback) {
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t size = sizeof a;
      REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
      REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &size) == 0);
      address_ = "tcp:127.0.0.1:" + std::to_string(ntohs(a.sin_port));
      target_.assign(reinterpret_cast<const char*>(&a), sizeof a);
    } else {
      std::string dir = (std::filesystem::temp_directory_path() / "silent-XXXXXX").string();
      REQUIRE(::mkdtemp(dir.data()) != nullptr);
      dir_ = dir;
      address_ = dir + "/socket";
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      REQUIRE(address_.size() < sizeof a.sun_path);  // strncpy below would cut a longer path
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, address_.c_str(), sizeof a.sun_path - 1);
      REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
      target_.assign(reinterpret_cast<const char*>(&a), sizeof a);
    }
    REQUIRE(::listen(fd_, backlog) == 0);
  }
  ~SilentListener() {
    for (int fd : fillers_) ::close(fd);
    ::close(fd_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  const std::string& address() const { return address_; }

  // Connects one raw socket and waits until the kernel has queued it for accept() (the listener reads as ready),
  // so that a backlog of 0 is then full: the next TCP SYN is dropped, the next Unix connect must wait for room.
  void fill_backlog() {
    const auto* target = reinterpret_cast<const sockaddr*>(target_.data());
    const int fd = ::socket(target->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    fillers_.push_back(fd);
    REQUIRE(::connect(fd, target, static_cast<socklen_t>(target_.size())) == 0);
    pollfd queued{fd_, POLLIN, 0};
    REQUIRE(::poll(&queued, 1, 60'000) == 1);
  }

 private:
  int fd_ = -1;
  std::string address_;
  std::string dir_;
  std::string target_;  // the bound sockaddr
  std::vector<int> fillers_;
};

// Expects `connect` to throw SystemError(ETIMEDOUT) naming `address` and saying `says`, and to give up within a
// bound far below what the kernel would take alone (TCP's SYN retries run for minutes, a Unix connect to a full
// backlog waits for ever).
template <typename Connect>
void check_gives_up(Connect&& connect, const std::string& address, const std::string& says) {
  const auto start = std::chrono::steady_clock::now();
  try {
    connect();
    FAIL("connected to " << address);
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == ETIMEDOUT);
    CHECK_THAT(e.what(), Catch::Contains(address) && Catch::Contains(says) &&
                             Catch::Contains("ClientOptions::connect_timeout"));
  }
  CHECK(std::chrono::steady_clock::now() - start < 30s);
}

}  // namespace

TEST_CASE("connecting gives up after connect_timeout when the server cannot accept the connection",
          "[manager][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  SilentListener busy(transport, 0);
  busy.fill_backlog();
  INFO("listener on " << busy.address());
  const auto key = ipc::manager::random_bytes(32);
  check_gives_up([&] { Client(busy.address(), key, {.connect_timeout = 300ms}); }, busy.address(),
                 "no connection within 300 ms");
}

TEST_CASE("connecting gives up after connect_timeout when the peer accepts but never answers the handshake",
          "[manager][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  SilentListener mute(transport, 16);
  INFO("listener on " << mute.address());
  const auto key = ipc::manager::random_bytes(32);
  check_gives_up([&] { Client(mute.address(), key, {.connect_timeout = 300ms}); }, mute.address(),
                 "did not complete the handshake within 300 ms");
}

TEST_CASE("a connect_timeout that is not positive is InvalidArgument", "[manager]") {
  auto server = server_on(kUnixSocket);
  const auto key = server.key();
  CHECK_THROWS_MATCHES(Client(server.address(), key, {.connect_timeout = 0ms}), ipc::InvalidArgument,
                       Catch::Message("ClientOptions::connect_timeout must be positive (got 0 ms)"));
  CHECK_THROWS_AS(Client(server.address(), key, {.connect_timeout = -5ms}), ipc::InvalidArgument);
  CHECK(Client(server.address(), key, {.connect_timeout = 60'000ms}).address() == server.address());
  // Longer than poll(2) or the clock's arithmetic can take: connects as one that long would.
  CHECK(Client(server.address(), key, {.connect_timeout = std::chrono::milliseconds::max()}).address() ==
        server.address());
}

TEST_CASE("a new server replaces the socket of a killed one, but not of a live one", "[manager][kill]") {
  char templ[] = "/tmp/numa_mp-test-XXXXXX";
  REQUIRE(::mkdtemp(templ) != nullptr);
  std::string path = std::string(templ) + "/m.sock";
  ipc::manager::ServerProcessOptions options;
  options.address = path;
  {
    auto first = ipc::manager::start_server(options);
    options.key = first.key();
    CHECK_THROWS_WITH(ipc::manager::start_server(options), Catch::Contains("already serves"));
    ::kill(first.pid(), SIGKILL);
    first.stop();
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);  // left behind by the killed server
    auto second = ipc::manager::start_server(options);
    Client client(second.address(), second.key());
    client.dict("d").set("k", 1);
  }
  ::unlink(path.c_str());
  ::rmdir(templ);
}

TEST_CASE("a server that fails to start reports why, and leaves no process behind", "[manager][kill]") {
  ipc::manager::ServerProcessOptions options;
  options.setup = [](ipc::manager::Server&) { throw std::runtime_error("setup refused: no disk"); };
  CHECK_THROWS_WITH(ipc::manager::start_server(options), Catch::Contains("setup refused: no disk"));
  CHECK(ipc::active_children().empty());
}

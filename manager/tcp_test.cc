// The Manager over TCP: the address string, a port the kernel picks, and shared objects used by several processes
// through 127.0.0.1. (What TCP shares with the Unix socket, authentication, limits, deaths and fork(), runs over
// both transports in security_test, failure_test and fork_test.)
#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::manager::Client;
using ipc::manager::Value;
using ipc::manager::testing::kTcpLoopback;
using ipc::manager::testing::run_child;
using ipc::manager::testing::server_on;

namespace {

constexpr auto kPatience = 60s;

// The port of a "tcp:HOST:PORT" address.
int port_of(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

int exit_code(ipc::Process& child) {
  const auto code = child.join(kPatience);
  if (!code) {
    child.kill();
    FAIL("child " << child.pid() << " still runs after " << kPatience.count() << " s");
  }
  return *code;
}

}  // namespace

TEST_CASE("a malformed TCP address is InvalidArgument naming the address and what is wrong", "[manager][tcp]") {
  const auto key = ipc::manager::random_bytes(32);
  struct Bad {
    const char* address;
    const char* says;
  };
  const Bad bad[] = {
      {"tcp:", "has no host and no port"},
      {"tcp:host", "has no port"},
      {"tcp:host:", "has no port"},
      {"tcp::5000", "has no host"},
      {"tcp:host:99999", "port out of range (99999)"},
      {"tcp:host:abc", "port that is not a number ('abc')"},
      {"tcp:host:-1", "port that is not a number ('-1')"},
      {"tcp:[::1:5000", "'[' without its ']'"},
      {"tcp:[::1]5000", "needs ':' between ']' and the port"},
  };
  for (const Bad& b : bad) {
    INFO(b.address);
    // (Catch's combined matchers refer to their parts: each part must outlive the combination.)
    const auto names_it = Catch::Contains(std::string("'") + b.address + "'");
    const auto says_why = Catch::Contains(b.says);
    const auto says_form = Catch::Contains("expected tcp:HOST:PORT");
    CHECK_THROWS_AS(Client(b.address, key), ipc::InvalidArgument);
    CHECK_THROWS_WITH(Client(b.address, key), names_it && says_why && says_form);
    CHECK_THROWS_AS(ipc::manager::Server(ipc::manager::ServerOptions{b.address, key}), ipc::InvalidArgument);
    CHECK_THROWS_WITH(ipc::manager::Server(ipc::manager::ServerOptions{b.address, key}),
                      names_it && says_why && says_form);
    CHECK_THROWS_AS(server_on(b.address), ipc::InvalidArgument);  // in the caller, before any process starts
  }
  CHECK(ipc::active_children().empty());
  // Port 0 is a server's "any free port": a client has to be told the port the server got.
  CHECK_THROWS_AS(Client("tcp:127.0.0.1:0", key), ipc::InvalidArgument);
  CHECK_THROWS_WITH(Client("tcp:127.0.0.1:0", key), Catch::Contains("port 0"));
}

TEST_CASE("a server on port 0 gets a free port and reports it; the port is then taken", "[manager][tcp]") {
  auto server = server_on(kTcpLoopback);
  const std::string address = server.address();
  INFO("server on " << address);
  REQUIRE(address.rfind("tcp:127.0.0.1:", 0) == 0);
  const int port = port_of(address);
  CHECK(port > 0);
  CHECK(port <= 65535);
  Client client(address, server.key());
  CHECK(client.address() == address);
  client.dict("d").set("k", 1);
  CHECK(client.dict("d").get("k") == Value(1));

  // A second server on the same port is refused, with the reason; a Server (not a process) reports its port too.
  const auto key = ipc::manager::random_bytes(32);
  CHECK_THROWS_AS(ipc::manager::Server(ipc::manager::ServerOptions{address, key}), ipc::StateError);
  CHECK_THROWS_WITH(ipc::manager::Server(ipc::manager::ServerOptions{address, key}), Catch::Contains("in use"));
  ipc::manager::Server own(ipc::manager::ServerOptions{kTcpLoopback, key});
  CHECK(own.address().rfind("tcp:127.0.0.1:", 0) == 0);
  CHECK(port_of(own.address()) != 0);
  CHECK(port_of(own.address()) != port);
}

TEST_CASE("a host name is resolved, and one that does not resolve is an error naming the address",
          "[manager][tcp]") {
  auto server = server_on("tcp:localhost:0");
  INFO("server on " << server.address());
  // The server reports the numeric address it bound, which a client may use as it is, or by the host name.
  Client numeric(server.address(), server.key());
  Client by_name("tcp:localhost:" + std::to_string(port_of(server.address())), server.key());
  by_name.counter("c").add(2);
  CHECK(numeric.counter("c").get() == 2);
  // NotFound from a resolver that answers; SystemError where none can be asked (a machine without DNS).
  const std::string nowhere = "tcp:no-such-host.invalid:5000";
  CHECK_THROWS_AS(Client(nowhere, server.key()), ipc::Error);
  CHECK_THROWS_WITH(Client(nowhere, server.key()), Catch::Contains(nowhere));
}

TEST_CASE("processes share a dict, a queue and a lock over TCP", "[manager][tcp]") {
  constexpr int kChildren = 3;
  constexpr int kItems = 200;
  constexpr int kIncrements = 50;
  auto server = server_on(kTcpLoopback);
  INFO("server on " << server.address());
  Client client(server.address(), server.key());
  auto results = client.dict("results");
  auto q = client.queue("q");
  auto total = client.value("total");
  total.set(0);

  std::vector<ipc::Process> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(run_child([&, c] {
      Client own(server.address(), server.key());
      auto cq = own.queue("q");
      for (int i = 0; i < kItems; ++i) {
        if (cq.put(c * kItems + i) != Outcome::kOk) return 2;
      }
      // A read-modify-write that only the lock makes atomic: with no lock, increments would get lost.
      auto lock = own.lock("L");
      auto value = own.value("total");
      for (int i = 0; i < kIncrements; ++i) {
        auto held = lock.acquire();
        value.set(value.get().as_int() + 1);
      }
      own.dict("results").set("child " + std::to_string(c), "done");
      return 0;
    }));
  }
  std::set<std::int64_t> received;
  for (int n = 0; n < kChildren * kItems; ++n) {
    auto item = q.get(kPatience);
    REQUIRE(item.status == Outcome::kOk);
    CHECK(received.insert(item.value.as_int()).second);  // never twice
  }
  for (auto& child : children) CHECK(exit_code(child) == 0);
  CHECK(received.size() == static_cast<std::size_t>(kChildren * kItems));  // every item, once
  CHECK(*received.begin() == 0);
  CHECK(*received.rbegin() == kChildren * kItems - 1);
  CHECK(q.get(0s).status == Outcome::kTimeout);
  CHECK(total.get() == Value(kChildren * kIncrements));
  CHECK(results.size() == static_cast<std::size_t>(kChildren));
}

TEST_CASE("status over TCP lists each connection's address and marks the caller's", "[manager][tcp]") {
  auto server = server_on(kTcpLoopback);
  INFO("server on " << server.address());
  Client first(server.address(), server.key());
  Client second(server.address(), server.key());
  const auto status = second.status();
  REQUIRE(status.clients.size() == 2);
  int callers = 0;
  std::set<std::string> addresses;
  for (const auto& c : status.clients) {
    INFO("client " << c.address);
    CHECK(c.address.rfind("tcp:127.0.0.1:", 0) == 0);
    CHECK(c.pid == 0);  // unknown over TCP
    CHECK(c.authenticated);
    addresses.insert(c.address);
    callers += c.caller ? 1 : 0;
  }
  CHECK(addresses.size() == 2);  // two connections, two source ports
  CHECK(callers == 1);
  CHECK(status.clients.back().caller);  // the table is in connection order: `second` connected last
}

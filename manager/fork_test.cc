// Clients and proxies across fork(): children started with ipc::Process and ipc::Pool workers use the Manager on
// their main thread, through a new Client or through the proxies they inherited, while the parent's session
// (its calls in flight, its locks, its connection) carries on untouched.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/pool/pool.h"
#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::manager::Client;
using ipc::Outcome;
using ipc::manager::Value;
using ipc::manager::testing::kTcpLoopback;
using ipc::manager::testing::kUnixSocket;
using ipc::manager::testing::server_on;

namespace {

constexpr auto kPatience = std::chrono::seconds(120);  // sanitizer builds on a busy 2-core machine

// Waits for `child` and returns its exit code, with what escaped its callable (if anything) in the report.
int exit_code(ipc::Process& child) {
  auto code = child.join(kPatience);
  if (!code) {
    child.kill();
    FAIL("child " << child.pid() << " still runs after " << kPatience.count() << " s");
  }
  if (const auto& e = child.exception()) {
    UNSCOPED_INFO("child " << child.pid() << " threw " << e->type_name << ": " << e->message);
  }
  return *code;
}

template <typename F>
bool throws_state_error(F&& f) {
  try {
    f();
  } catch (const ipc::StateError&) {
    return true;
  }
  return false;
}

std::int64_t pid_value() { return static_cast<std::int64_t>(::getpid()); }

// Sends `request` (a get or a wait, with no timeout) and returns its promise once the server holds the call: the
// calls of one connection run in order, so the reply to `later_call` proves it.
template <typename Request, typename LaterCall>
auto pending_on_server(Request request, LaterCall&& later_call) {
  request.setTimeoutNs(-1);
  auto promise = request.send();
  later_call();
  return promise;
}

}  // namespace

TEST_CASE("a child forked from a thread with a Client connects a new Client on its main thread", "[manager][fork]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  d.set("parent", 1);  // this thread's event loop has run: the child inherits it
  auto child = ipc::Process::start([&] {
    Client own(server.address(), server.key());
    auto cd = own.dict("d");
    if (cd.get("parent") != Value(1)) return 2;
    cd.set("child", pid_value());
    return 0;
  });
  CHECK(exit_code(child) == 0);
  CHECK(d.get("child") == Value(child.pid()));
  d.set("parent", 2);
  CHECK(d.size() == 2);
}

TEST_CASE("children use the proxies their parent made, each through a connection of its own",
          "[manager][fork][tcp]") {
  constexpr int kChildren = 4;
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  Client client(server.address(), server.key());
  auto results = client.dict("results");
  auto hits = client.counter("hits");
  results.set("parent", "before");
  std::vector<ipc::Process> children;
  for (int i = 1; i <= kChildren; ++i) {
    children.push_back(ipc::Process::start([&, i] {
      hits.add(i);
      results.set("child " + std::to_string(i), pid_value());
      return results.get("parent") == Value("before") ? 0 : 2;
    }));
    hits.add(1000);  // the parent keeps calling between the forks
  }
  for (auto& child : children) CHECK(exit_code(child) == 0);
  CHECK(hits.get() == kChildren * 1000 + kChildren * (kChildren + 1) / 2);
  REQUIRE(results.size() == kChildren + 1);
  for (int i = 1; i <= kChildren; ++i) {
    CHECK(results.get("child " + std::to_string(i)) == Value(children[i - 1].pid()));
  }
  results.set("parent", "after");
  CHECK(results.get("parent") == Value("after"));
}

TEST_CASE("a grandchild uses the proxies its parent inherited, and each generation keeps its connection",
          "[manager][fork]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto hits = client.counter("hits");
  auto child = ipc::Process::start([&] {
    hits.add(1);  // the child's connection
    auto grandchild = ipc::Process::start([&] { hits.add(10); });
    if (grandchild.join(kPatience) != 0) return 2;
    hits.add(100);  // still the child's connection
    return 0;
  });
  CHECK(exit_code(child) == 0);
  CHECK(hits.add(1000) == 1111);
}

TEST_CASE("in a child, an inherited Client belongs to the thread that used it first", "[manager][fork]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto hits = client.counter("hits");
  auto child = ipc::Process::start([&] {
    hits.add(1);
    bool refused = false;
    std::thread other([&] { refused = throws_state_error([&] { hits.add(1); }); });
    other.join();
    return refused ? 0 : 2;
  });
  CHECK(exit_code(child) == 0);
  CHECK(hits.get() == 1);
}

namespace {

// Set before a pool starts, so that its workers inherit it.
std::optional<ipc::manager::CounterProxy> g_tasks_counted;

int count_through_inherited_proxy(int x) {
  g_tasks_counted->add(1);
  return x;
}

int count_through_new_client(std::string address, std::vector<std::uint8_t> key, int x) {
  Client client(address, key);
  client.counter("counted by new clients").add(1);
  return 2 * x;
}

ipc::PoolOptions two_workers(unsigned max_tasks_per_child) {
  ipc::PoolOptions o;
  o.workers = 2;
  o.max_tasks_per_child = max_tasks_per_child;
  return o;
}

}  // namespace

TEST_CASE("pool tasks use a proxy set before the pool started", "[manager][fork][pool]") {
  // With max_tasks_per_child, replacement workers are forked from the pool's supervisor thread, which never had
  // an event loop; the first workers are forked from this thread, which had one.
  const unsigned max_tasks_per_child = GENERATE(0u, 3u);
  constexpr int kTasks = 60;
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  g_tasks_counted = client.counter("counted through an inherited proxy");
  struct Reset {
    ~Reset() { g_tasks_counted.reset(); }
  } reset;
  ipc::Pool pool(two_workers(max_tasks_per_child));
  std::vector<int> in(kTasks);
  std::iota(in.begin(), in.end(), 0);
  CHECK(pool.map(count_through_inherited_proxy, in, 1) == in);
  CHECK(g_tasks_counted->get() == kTasks);
  CHECK(g_tasks_counted->add(1) == kTasks + 1);  // the parent's proxy works on
  pool.close();
  pool.join();
}

TEST_CASE("pool tasks connect a Client from a socket path and key passed as arguments", "[manager][fork][pool]") {
  constexpr int kTasks = 40;
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto counted = client.counter("counted by new clients");
  ipc::Pool pool(two_workers(0));
  std::vector<std::tuple<std::string, std::vector<std::uint8_t>, int>> in;
  for (int i = 0; i < kTasks; ++i) in.emplace_back(server.address(), server.key(), i);
  auto out = pool.starmap(count_through_new_client, in, 1);
  REQUIRE(out.size() == kTasks);
  for (int i = 0; i < kTasks; ++i) CHECK(out[i] == 2 * i);
  CHECK(counted.get() == kTasks);
  pool.close();
  pool.join();
}

TEST_CASE("a call in flight in the parent completes while its children use their own connections",
          "[manager][fork]") {
  constexpr int kChildren = 3;
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  auto d = client.dict("d");
  auto pending = pending_on_server(q.capability().getRequest(), [&] { (void)q.size_approx(); });
  std::vector<ipc::Process> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(ipc::Process::start([&, i] {
      d.set("child " + std::to_string(i), pid_value());
      return q.put(i) == Outcome::kOk ? 0 : 2;
    }));
  }
  for (auto& child : children) REQUIRE(exit_code(child) == 0);  // else the call below would wait for ever
  auto first = client.wait(kj::mv(pending));
  REQUIRE(first.getOk());
  std::set<std::int64_t> items{ipc::manager::from_wire(first.getValue()).as_int()};
  for (int i = 1; i < kChildren; ++i) {
    auto item = q.get(kPatience);
    REQUIRE(item);
    items.insert(item.value.as_int());
  }
  CHECK(items == std::set<std::int64_t>{0, 1, 2});
  CHECK(d.size() == kChildren);
  CHECK(q.size_approx() == 0);
}

TEST_CASE("a child that drops the Client, proxies, futures and lock holders it inherited leaves the parent's alone",
          "[manager][fork]") {
  auto server = ipc::manager::start_server();
  std::optional<Client> client(std::in_place, server.address(), server.key());
  std::optional<ipc::manager::DictProxy> d = client->dict("d");
  std::optional<ipc::manager::LockHolder> held = client->lock("L").acquire();
  std::optional<ipc::manager::QueueProxy> full = client->queue("full", 1);
  REQUIRE(full->put(0) == Outcome::kOk);
  std::optional<ipc::manager::Future<Outcome>> put = full->put_async(1);  // waits for room on the server
  (void)full->size_approx();  // calls of one connection run in order: the put is pending on the server now

  auto child = ipc::Process::start([&] {
    if (!throws_state_error([&] { held->release(); })) return 2;
    if (!throws_state_error([&] { (void)put->get(); })) return 3;
    // Destroyed here, down to the last reference to the parent's connection: none of them may release, cancel or
    // close anything of the parent's.
    held.reset();
    put.reset();
    d.reset();
    full.reset();
    client.reset();
    return 0;
  });
  CHECK(exit_code(child) == 0);

  Client other(server.address(), server.key());
  CHECK_FALSE(other.lock("L").try_acquire().has_value());  // still the parent's
  auto queue = other.queue("full");
  CHECK(queue.get(kPatience).value == Value(0));
  // The parent's pending put takes the room made: had the child cancelled it, item 1 would never come (and
  // put->get() would wait for ever).
  REQUIRE(queue.get(30s).value == Value(1));
  CHECK(put->get() == Outcome::kOk);
  d->set("k", 1);
  CHECK(d->get("k") == Value(1));
  held->release();
  CHECK(other.lock("L").try_acquire(kPatience).has_value());
}

TEST_CASE("a lock held by a process that died is released while the children it forked live on",
          "[manager][fork][kill][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  struct ReleaseAtTheEnd {
    ipc::test::PipeSignal signal;
    ~ReleaseAtTheEnd() { signal.notify(); }
  } release_grandchild;
  auto holder = ipc::Process::start([&] {
    Client client(server.address(), server.key());
    auto held = client.lock("L").acquire();
    // Outlives this process: it ends when told to (or after kPatience), not with its parent.
    auto grandchild = ipc::Process::start([&] { release_grandchild.signal.wait(kPatience); });
    ::_exit(0);  // dies holding the lock, without releasing it or closing anything first
  });
  REQUIRE(exit_code(holder) == 0);
  Client client(server.address(), server.key());
  // The server releases the lock once every descriptor of the holder's connection is closed: the grandchild must
  // not hold one.
  CHECK(client.lock("L").try_acquire(20s).has_value());
}

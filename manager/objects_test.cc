// Semantics of every built-in object, from one client and across processes.
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"

using namespace std::chrono_literals;
using ipc::manager::Bytes;
using ipc::manager::Client;
using ipc::manager::Kind;
using ipc::manager::ObjectRef;
using ipc::manager::Open;
using ipc::Outcome;
using ipc::manager::Value;
using ipc::manager::testing::run_child;
using ipc::manager::testing::Signal;

TEST_CASE("a dict stores, replaces, erases and lists values", "[manager][dict]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  CHECK(d.size() == 0);
  CHECK_FALSE(d.get("missing").has_value());

  d.set("int", 7);
  d.set("text", "hello");
  d.set("nested", Value::Map{{"xs", Value::List{1, 2.5, Bytes{{9}}}}});
  d.set("int", 8);  // replaces
  CHECK(d.get("int") == Value(8));
  CHECK(d.get("text") == Value("hello"));
  CHECK(d.get("nested")->as_map().at("xs").as_list()[2] == Value(Bytes{{9}}));
  CHECK(d.size() == 3);
  CHECK(d.keys() == std::vector<std::string>{"int", "nested", "text"});

  CHECK(d.erase("text"));
  CHECK_FALSE(d.erase("text"));
  d.update({{"a", 1}, {"b", 2}});
  CHECK(d.items().size() == 4);
  d.clear();
  CHECK(d.size() == 0);

  // A second proxy, from a second connection, sees the same object.
  d.set("shared", true);
  Client other(server.address(), server.key());
  CHECK(other.dict("d").get("shared") == Value(true));
}

TEST_CASE("a list indexes like Python and rejects out-of-range indices", "[manager][list]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto l = client.list("l");
  l.append(1);
  l.extend({2, 3, 4});
  CHECK(l.size() == 4);
  CHECK(l.get(0) == Value(1));
  CHECK(l.get(-1) == Value(4));
  l.set(-2, "three");
  CHECK(l.pop() == Value(4));
  CHECK(l.pop(0) == Value(1));
  CHECK(l.items() == Value::List{2, "three"});
  CHECK_THROWS_AS(l.get(2), ipc::InvalidArgument);
  CHECK_THROWS_WITH(l.get(-3), Catch::Contains("out of range"));
  l.clear();
  CHECK_THROWS_AS(l.pop(), ipc::InvalidArgument);
}

TEST_CASE("a namespace keeps attributes", "[manager][namespace]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto ns = client.namespace_("config");
  ns.set("threads", 4);
  ns.set("name", "run-1");
  CHECK(ns.get("threads") == Value(4));
  CHECK_FALSE(ns.get("absent").has_value());
  CHECK(ns.erase("name"));
  CHECK_FALSE(ns.erase("name"));
  ns.set("threads", 8);  // replaces
  CHECK(ns.items() == Value::Map{{"threads", 8}});

  // A second proxy, from a second connection, sees the same object; a removed one fails as a dict does.
  Client other(server.address(), server.key());
  CHECK(other.namespace_("config").get("threads") == Value(8));
  CHECK(client.remove("config"));
  CHECK_THROWS_WITH(ns.set("threads", 1), Catch::Contains("namespace 'config' was removed"));
  CHECK_THROWS_AS(ns.get("threads"), ipc::StateError);
}

TEST_CASE("a queue hands items from a producer process to a consumer in order", "[manager][queue]") {
  auto server = ipc::manager::start_server();
  constexpr int kItems = 200;
  auto producer = run_child([&] {
    Client client(server.address(), server.key());
    auto q = client.queue("q");
    for (int i = 0; i < kItems; ++i) {
      if (q.put(i) != Outcome::kOk) return 1;
    }
    return 0;
  });
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  for (int i = 0; i < kItems; ++i) {
    auto item = q.get(30s);
    REQUIRE(item.status == Outcome::kOk);
    CHECK(item.value == Value(i));
  }
  CHECK(producer.join() == 0);
  CHECK(q.get(0s).status == Outcome::kTimeout);
}

TEST_CASE("queue get times out on an empty queue", "[manager][queue]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  auto start = std::chrono::steady_clock::now();
  CHECK(q.get(50ms).status == Outcome::kTimeout);
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  CHECK(q.get(0s).status == Outcome::kTimeout);
}

TEST_CASE("a bounded queue refuses a put while full and takes it after a get", "[manager][queue]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("bounded", 2);
  CHECK(q.put(1, 0s) == Outcome::kOk);
  CHECK(q.put(2, 0s) == Outcome::kOk);
  CHECK(q.put(3, 0s) == Outcome::kTimeout);
  CHECK(q.put(3, 20ms) == Outcome::kTimeout);
  // A waiting put gets in as soon as a get makes room.
  auto pending = q.put_async(3, 30s);
  CHECK(q.get().value == Value(1));
  CHECK(pending.get() == Outcome::kOk);
  CHECK(q.size_approx() == 2);
  CHECK(q.get().value == Value(2));
  CHECK(q.get().value == Value(3));
}

TEST_CASE("closing a queue wakes a waiting getter in another process", "[manager][queue]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  REQUIRE(q.put("left over") == Outcome::kOk);
  Signal child_waiting;
  auto consumer = run_child([&] {
    Client c(server.address(), server.key());
    auto cq = c.queue("q");
    if (cq.get(30s).value != Value("left over")) return 1;
    auto request = cq.capability().getRequest();
    request.setTimeoutNs(-1);
    auto reply = request.send();
    // The server handles one connection's calls in order: once this answer is back, the get above is waiting.
    (void)cq.size_approx();
    child_waiting.notify();
    auto r = c.wait(kj::mv(reply));
    return (!r.getOk() && r.getClosed()) ? 0 : 2;
  });
  REQUIRE(child_waiting.wait_for(30s));
  q.close();
  CHECK(consumer.join() == 0);
  CHECK(q.put(1) == Outcome::kClosed);
}

TEST_CASE("a lock excludes another process until it is released", "[manager][lock]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto lock = client.lock("L");
  auto held = lock.acquire();
  CHECK(lock.locked());
  CHECK_FALSE(lock.try_acquire().has_value());

  Signal child_waiting;
  auto child = run_child([&] {
    Client c(server.address(), server.key());
    auto l = c.lock("L");
    if (l.try_acquire(0s).has_value()) return 1;  // must be held by the parent
    auto request = l.capability().acquireRequest();
    request.setTimeoutNs(30'000'000'000);
    auto reply = request.send();
    (void)l.locked();  // calls of one connection run in order: the acquire above is now waiting
    child_waiting.notify();
    return c.wait(kj::mv(reply)).getAcquired() ? 0 : 2;
  });
  REQUIRE(child_waiting.wait_for(30s));
  held.release();
  CHECK(child.join() == 0);
  CHECK_THROWS_AS(held.release(), ipc::StateError);
  // The child's holder went away with its process: the lock is free again.
  auto again = lock.try_acquire(30s);
  CHECK(again.has_value());
}

TEST_CASE("an event wakes a waiter in another process", "[manager][event]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto ev = client.event("E");
  CHECK_FALSE(ev.is_set());
  CHECK(ev.wait(10ms) == Outcome::kTimeout);
  auto child = run_child([&] {
    Client c(server.address(), server.key());
    c.event("E").set();
    return 0;
  });
  CHECK(ev.wait(30s) == Outcome::kOk);
  CHECK(child.join() == 0);
  CHECK(ev.is_set());
  ev.clear();
  CHECK_FALSE(ev.is_set());
}

TEST_CASE("a value supports get, set and compare_exchange", "[manager][value]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto v = client.value("v");
  CHECK(v.get().is_null());
  v.set(Value::List{1, 2});
  auto failed = v.compare_exchange(Value::List{1}, "new");
  CHECK_FALSE(failed.exchanged);
  CHECK(failed.previous == Value::List{1, 2});
  auto done = v.compare_exchange(Value::List{1, 2}, "new");
  CHECK(done.exchanged);
  CHECK(v.get() == Value("new"));
}

TEST_CASE("a counter adds, and reports overflow as an error", "[manager][counter]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto c = client.counter("c");
  CHECK(c.add() == 1);
  CHECK(c.add(41) == 42);
  CHECK(c.get() == 42);
  c.set(INT64_MAX);
  CHECK_THROWS_AS(c.add(), ipc::InvalidArgument);
  CHECK(c.get() == INT64_MAX);
}

TEST_CASE("a name of another kind, a missing name and a bad name are errors", "[manager][errors]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  client.dict("taken");
  CHECK_THROWS_AS(client.list("taken"), ipc::InvalidArgument);
  CHECK_THROWS_WITH(client.list("taken"), Catch::Contains("is a dict, not a list"));
  CHECK_THROWS_AS(client.dict("nope", Open::kExisting), ipc::NotFound);
  CHECK_THROWS_AS(client.dict(""), ipc::InvalidArgument);
  CHECK_THROWS_AS(client.dict(std::string(256, 'x')), ipc::InvalidArgument);
}

TEST_CASE("calls on a removed object fail with a state error", "[manager][errors]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  d.set("k", 1);
  auto ev = client.event("e");
  CHECK(client.remove("d"));
  CHECK_FALSE(client.remove("d"));
  CHECK_THROWS_AS(d.get("k"), ipc::StateError);
  CHECK_THROWS_WITH(d.set("k", 2), Catch::Contains("dict 'd' was removed"));
  // The name is free again, for a fresh object.
  CHECK_FALSE(client.dict("d").get("k").has_value());
  CHECK(client.objects() == std::vector<ObjectRef>{{"d", Kind::kDict}, {"e", Kind::kEvent}});
}

TEST_CASE("removing an object fails the calls waiting on it", "[manager][errors]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto q = client.queue("q");
  auto request = q.capability().getRequest();
  request.setTimeoutNs(-1);
  auto reply = request.send();
  client.remove("q");
  CHECK_THROWS_AS(client.wait(kj::mv(reply)), ipc::StateError);

  auto lock = client.lock("l");
  auto holder = lock.acquire();
  auto acquire = lock.capability().acquireRequest();
  acquire.setTimeoutNs(-1);
  auto acquired = acquire.send();
  auto event = client.event("e");
  auto wait = event.capability().waitRequest();
  wait.setTimeoutNs(-1);
  auto woken = wait.send();
  client.remove("l");
  client.remove("e");
  CHECK_THROWS_WITH(client.wait(kj::mv(acquired)), Catch::Contains("lock 'l' was removed while the call waited"));
  CHECK_THROWS_WITH(client.wait(kj::mv(woken)), Catch::Contains("event 'e' was removed while the call waited"));
}

TEST_CASE("a value can refer to another object, opened as a proxy", "[manager][nested]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  client.list("inner").append("deep");
  client.dict("outer").set("child", ObjectRef{"inner", Kind::kList});
  auto ref = client.dict("outer").get("child")->as_ref();
  CHECK(client.open<ipc::manager::ListProxy>(ref).get(0) == Value("deep"));
  CHECK_THROWS_AS(client.open<ipc::manager::DictProxy>(ref), ipc::InvalidArgument);
}

TEST_CASE("pipelined calls all complete, in order, without waiting for each", "[manager][async]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  auto c = client.counter("c");
  std::vector<ipc::manager::Future<std::int64_t>> adds;
  std::vector<ipc::manager::Future<void>> sets;
  for (int i = 0; i < 1000; ++i) {
    sets.push_back(d.set_async("k" + std::to_string(i), i));
    adds.push_back(c.add_async(1));
  }
  for (int i = 0; i < 1000; ++i) {
    sets[i].get();
    CHECK(adds[i].get() == i + 1);
  }
  CHECK(d.size() == 1000);
}

// More than the socket buffers hold in both directions at once: both sides must wait for room to write (and keep
// reading meanwhile) rather than lose, reorder or deadlock.
TEST_CASE("large values and long pipelines survive full socket buffers", "[manager][async]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  Bytes big;
  big.data.resize(8 << 20);
  for (std::size_t i = 0; i < big.data.size(); ++i) big.data[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<ipc::manager::Future<void>> sets;
  std::vector<ipc::manager::Future<std::optional<Value>>> gets;
  for (int i = 0; i < 4; ++i) {
    sets.push_back(d.set_async("big" + std::to_string(i), big));
    gets.push_back(d.get_async("big" + std::to_string(i)));
  }
  std::string padding(200, 'x');
  for (int i = 0; i < 20000; ++i) sets.push_back(d.set_async("k" + std::to_string(i % 100), padding));
  for (auto& f : sets) f.get();
  for (auto& f : gets) CHECK(f.get() == Value(big));
  CHECK(d.size() == 104);
}

TEST_CASE("a client used from another thread is refused", "[manager][threads]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  bool refused = false;
  std::thread t([&] {
    try {
      d.set("k", 1);
    } catch (const ipc::StateError&) {
      refused = true;
    }
  });
  t.join();
  CHECK(refused);
}

// Messages up to 2 KiB are built in, and received into, buffers each connection reuses (SocketVatNetwork): a value
// written after a larger one must not carry any of the larger one's bytes, on either side of the connection.
TEST_CASE("values of changing sizes come back exactly through reused message buffers", "[manager][dict]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("sizes");
  for (int round = 0; round < 3; ++round) {
    for (std::size_t len : {1500, 0, 700, 3, 1900, 1, 5000, 12}) {
      const std::string text(len, static_cast<char>('a' + len % 26));
      const Value value = Value::List{static_cast<std::int64_t>(len), text, Value::Map{{"n", 1}}};
      d.set("k", value);
      REQUIRE(d.get("k") == value);
      // In flight together: several messages of each direction alive at once.
      auto a = d.set_async("a", text);
      auto b = d.get_async("k");
      a.get();
      REQUIRE(b.get() == value);
      REQUIRE(d.get("a") == Value(text));
    }
  }
}

// The hot calls (dict and namespace set and get, counter add, get and set) go out on the client's direct path, addressed by the import id the
// open's reply carried; everything else through Cap'n Proto's RPC system. Each proxy must reach its own object,
// also when one object is opened twice and one of its proxies goes.
TEST_CASE("the calls of each proxy reach its own object, whichever path they take", "[manager][direct]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto a = client.dict("a");
  auto b = client.dict("b");
  auto c = client.counter("c");
  a.set("k", "in a");
  b.set("k", "in b");
  CHECK(c.add(5) == 5);
  {
    auto a_again = client.dict("a");
    CHECK(a_again.get("k") == Value("in a"));
    a_again.set("k2", 2);
  }
  // a_again's capability is gone; a's import of the same object still stands.
  CHECK(a.get("k2") == Value(2));
  CHECK(a.get("k") == Value("in a"));
  CHECK(b.get("k") == Value("in b"));
  CHECK_FALSE(b.get("k2").has_value());
  CHECK(a.size() == 2);
  CHECK(b.size() == 1);
  CHECK(client.counter("c").add(1) == 6);
  auto n1 = client.namespace_("n1");
  auto n2 = client.namespace_("n2");
  auto c2 = client.counter("c2");
  n1.set("attr", 1);
  n2.set("attr", 2);
  c2.set(40);
  CHECK(n1.get("attr") == Value(1));
  CHECK(n2.get("attr") == Value(2));
  CHECK(c.get() == 6);
  CHECK(c2.get() == 40);
}

// Both paths share the connection's output: a call made after another reaches the server after it.
TEST_CASE("direct calls and RPC calls on one object run in the order they were made", "[manager][direct]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  for (int i = 0; i < 200; ++i) {
    auto set = d.set_async("k", i);                                // direct
    auto erase = d.capability().eraseRequest();                    // RPC system
    erase.setKey("k");
    auto erased = erase.send();
    auto gone = d.get_async("k");                                  // direct: after the erase
    auto set_again = d.set_async("k", i + 1);                      // direct
    auto read = d.capability().getRequest();                       // RPC system: after the second set
    read.setKey("k");
    auto after = read.send();
    set.get();
    REQUIRE(client.wait(kj::mv(erased)).getErased());
    REQUIRE_FALSE(gone.get().has_value());
    set_again.get();
    auto response = client.wait(kj::mv(after));
    REQUIRE(response.getFound());
    REQUIRE(response.getValue().getInt() == i + 1);
  }
}

// A Future dropped unread leaves its call's slot (and question id) taken until the reply is in: reusing the id
// earlier would make the server refuse the connection ("questionId is already in use").
TEST_CASE("futures dropped unread free their calls' slots only once the replies are in", "[manager][direct]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  auto c = client.counter("c");
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 500; ++i) {
      (void)d.set_async("k" + std::to_string(i % 10), i);
      (void)c.add_async(1);
    }
    std::vector<ipc::manager::Future<std::int64_t>> kept;
    for (int i = 0; i < 100; ++i) kept.push_back(c.add_async(1));
    for (int i = 0; i < 100; ++i) REQUIRE(kept[i].get() == round * 600 + 500 + i + 1);
  }
  CHECK(c.get() == 20 * 600);
  CHECK(d.size() == 10);
}

TEST_CASE("a Future's reply is taken once", "[manager][direct]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  auto d = client.dict("d");
  auto set = d.set_async("k", 1);
  set.get();
  CHECK_THROWS_AS(set.get(), ipc::StateError);
  auto put = client.queue("q").put_async(1);  // through the RPC system
  CHECK(put.get() == Outcome::kOk);
  CHECK_THROWS_AS(put.get(), ipc::StateError);
}

#include "ipc/sync/event.h"

#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <vector>

#include "ipc/segment/segment.h"
#include "ipc/sync/internal/test_util.h"

using namespace std::chrono_literals;
using ipc::testing::fork_child;
using ipc::testing::kill_and_wait;
using ipc::testing::SharedMapping;
using ipc::testing::Signal;
using ipc::testing::wait_exit;

TEST_CASE("an event starts clear, is set, and is cleared again", "[event]") {
  ipc::Event e;
  CHECK_FALSE(e.is_set());
  CHECK_FALSE(e.wait(10ms));
  e.set();
  CHECK(e.is_set());
  CHECK(e.wait());
  CHECK(e.wait(0ms));
  e.clear();
  CHECK_FALSE(e.is_set());
  CHECK_FALSE(e.wait(10ms));
}

TEST_CASE("setting an event wakes every waiting process and publishes what was written before", "[event]") {
  struct Shared {
    ipc::Event e;
    int payload = 0;
  };
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  Signal waiting;
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    kids.push_back(fork_child([&] {
      waiting.notify();
      return s.e.wait(30s) && s.payload == 42 ? 0 : 1;
    }));
  }
  for (int i = 0; i < 3; ++i) REQUIRE(waiting.wait() == 1);
  s.payload = 42;
  s.e.set();
  for (pid_t k : kids) CHECK(wait_exit(k) == 0);
}

TEST_CASE("a waiter killed while waiting does not stop the event from waking the others", "[event][kill]") {
  SharedMapping mem(4096);
  auto& e = mem.make<ipc::Event>(0);
  Signal waiting;
  pid_t doomed = fork_child([&] {
    waiting.notify();
    return e.wait() ? 0 : 1;
  });
  REQUIRE(waiting.wait() == 1);
  REQUIRE(kill_and_wait(doomed) == -SIGKILL);
  pid_t survivor = fork_child([&] {
    waiting.notify();
    return e.wait(30s) ? 0 : 1;
  });
  REQUIRE(waiting.wait() == 1);
  e.set();
  CHECK(wait_exit(survivor) == 0);
}

TEST_CASE("an event created in a segment is set from a process that opened it", "[event][segment]") {
  std::string name = ipc::testing::unique_name("sync_event");
  auto segment = ipc::Segment::create(name, 1 << 16);
  ipc::Event& e = ipc::Event::create(segment, "go");
  pid_t child = fork_child([&] {
    auto mine = ipc::Segment::open(name);
    ipc::Event::open(mine, "go").set();
    return 0;
  });
  CHECK(e.wait(30s));
  CHECK(wait_exit(child) == 0);
}

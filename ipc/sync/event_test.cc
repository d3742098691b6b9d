#include "ipc/sync/event.h"

#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <vector>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::ForkedChild;
using ipc::test::PipeSignal;
using ipc::test::SharedMapping;

TEST_CASE("an event starts clear, is set, and is cleared again", "[event]") {
  ipc::Event e;
  CHECK_FALSE(e.is_set());
  CHECK(e.wait(10ms) == Outcome::kTimeout);
  e.set();
  CHECK(e.is_set());
  CHECK(e.wait() == Outcome::kOk);
  CHECK(e.wait(0ms) == Outcome::kOk);
  e.clear();
  CHECK_FALSE(e.is_set());
  CHECK(e.wait(10ms) == Outcome::kTimeout);
}

TEST_CASE("setting an event wakes every waiting process and publishes what was written before", "[event]") {
  struct Shared {
    ipc::Event e;
    int payload = 0;
  };
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  PipeSignal waiting;
  std::vector<ForkedChild> kids;
  for (int i = 0; i < 3; ++i) {
    kids.emplace_back([&] {
      waiting.notify();
      return s.e.wait(30s) == Outcome::kOk && s.payload == 42 ? 0 : 1;
    });
  }
  for (int i = 0; i < 3; ++i) REQUIRE(waiting.wait());
  s.payload = 42;
  s.e.set();
  for (auto& k : kids) CHECK(k.wait() == 0);
}

TEST_CASE("a waiter killed asleep does not stop the event from waking the others", "[event][kill]") {
  SharedMapping mem(4096);
  auto& e = mem.make<ipc::Event>(0);
  ForkedChild doomed([&] { return e.wait() == Outcome::kOk ? 0 : 1; });
  // Killed asleep inside wait(), after it marked the event as having waiters.
  REQUIRE(ipc::test::wait_until([&] { return ipc::test::sleeping(doomed.pid()); }));
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);
  CHECK(ipc::test::wake_problem(
            "survivor", [&] { return e.wait(ipc::test::kWakeDeadline) == Outcome::kOk; }, [&] { e.set(); }) == "");
}

TEST_CASE("an event created in a segment is set from a process that opened it", "[event][segment]") {
  std::string name = ipc::test::unique_name("sync_event");
  auto segment = ipc::Segment::create(name, 1 << 16);
  ipc::Event& e = ipc::Event::create(segment, "go");
  ForkedChild child([&] {
    auto mine = ipc::Segment::open(name);
    ipc::Event::open(mine, "go").set();
    return 0;
  });
  CHECK(e.wait(30s) == Outcome::kOk);
  CHECK(child.wait() == 0);
}

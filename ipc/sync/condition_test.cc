#include "ipc/sync/condition.h"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::ForkedChild;
using ipc::test::PipeSignal;
using ipc::test::SharedMapping;

namespace {

struct Shared {
  ipc::Condition cond;
  int ready = 0;  // guarded by cond.lock()
  int woken = 0;  // guarded by cond.lock()
};

}  // namespace

TEST_CASE("waiting or notifying without holding the lock throws StateError", "[condition]") {
  ipc::Condition c;
  CHECK_THROWS_AS((void)c.wait(1ms), ipc::StateError);
  CHECK_THROWS_AS(c.notify(), ipc::StateError);
  CHECK_THROWS_AS(c.notify_all(), ipc::StateError);
}

TEST_CASE("a wait with nobody to notify times out with the lock held again", "[condition]") {
  ipc::Condition c;
  REQUIRE(c.acquire() == Outcome::kOk);
  CHECK(c.wait(20ms) == Outcome::kTimeout);
  CHECK(c.lock().held_by_this_thread());
  CHECK(c.wait_for([] { return true; }) == Outcome::kOk);
  CHECK(c.wait_for([] { return false; }, 10ms) == Outcome::kTimeout);
  c.notify();  // nobody waits: no effect
  c.release();
}

TEST_CASE("a notify in one process wakes a waiter in another whose predicate became true", "[condition]") {
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  PipeSignal waiting;
  ForkedChild child([&] {
    ipc::LockGuard g(s.cond.lock());
    waiting.notify();
    return s.cond.wait_for([&] { return s.ready == 1; }, 30s) == Outcome::kOk ? 0 : 1;
  });
  REQUIRE(waiting.wait());
  {
    ipc::LockGuard g(s.cond.lock());  // the child is now inside wait (it released the lock)
    s.ready = 1;
    s.cond.notify();
  }
  CHECK(child.wait() == 0);
}

TEST_CASE("notify_all wakes every waiting process", "[condition]") {
  constexpr int kWaiters = 3;
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  PipeSignal waiting;
  std::vector<ForkedChild> kids;
  for (int i = 0; i < kWaiters; ++i) {
    kids.emplace_back([&] {
      ipc::LockGuard g(s.cond.lock());
      waiting.notify();
      if (s.cond.wait_for([&] { return s.ready == 1; }, 30s) != Outcome::kOk) return 1;
      ++s.woken;
      return 0;
    });
  }
  for (int i = 0; i < kWaiters; ++i) REQUIRE(waiting.wait());
  {
    ipc::LockGuard g(s.cond.lock());
    s.ready = 1;
    s.cond.notify_all();
  }
  for (auto& k : kids) CHECK(k.wait() == 0);
  CHECK(s.woken == kWaiters);
}

TEST_CASE("a process killed in the middle of a wait does not absorb a notify meant for the others",
          "[condition][kill]") {
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  PipeSignal waiting;
  ForkedChild doomed([&] {
    ipc::LockGuard g(s.cond.lock());
    waiting.notify();
    (void)s.cond.wait();
    return 0;
  });
  REQUIRE(waiting.wait());
  { ipc::LockGuard g(s.cond.lock()); }  // taken: the doomed child is inside wait()
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);

  ForkedChild survivor([&] {
    ipc::LockGuard g(s.cond.lock());
    waiting.notify();
    return s.cond.wait_for([&] { return s.ready == 1; }, 30s) == Outcome::kOk ? 0 : 1;
  });
  REQUIRE(waiting.wait());
  {
    ipc::LockGuard g(s.cond.lock());
    REQUIRE(g.result() == Outcome::kOk);  // the dead waiter held nothing
    s.ready = 1;
    s.cond.notify(1);  // one wake-up, and it must reach the live waiter
  }
  CHECK(survivor.wait() == 0);
}

TEST_CASE("a waiter re-acquiring the lock from a killed holder gets kOwnerDied", "[condition][kill]") {
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  PipeSignal waiting, holding;
  ForkedChild waiter([&] {
    ipc::LockGuard g(s.cond.lock());
    waiting.notify();
    Outcome r = s.cond.wait_for([&] { return s.ready == 1; }, 30s);
    if (r != Outcome::kOwnerDied) return 1;
    s.ready = 1;  // repaired
    g.mark_consistent();
    return 0;
  });
  REQUIRE(waiting.wait());
  ForkedChild holder([&] {
    if (s.cond.acquire() != Outcome::kOk) return 1;
    s.cond.notify_all();  // wakes the waiter, which then blocks on the lock this process holds
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait());
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == -SIGKILL);
  CHECK(waiter.wait() == 0);
  ipc::LockGuard g(s.cond.lock());
  CHECK(g.result() == Outcome::kOk);
  CHECK(s.ready == 1);
}

TEST_CASE("a condition created in a segment is opened by name", "[condition][segment]") {
  auto segment = ipc::Segment::create(ipc::test::unique_name("sync_cond"), 1 << 16);
  ipc::Condition& c = ipc::Condition::create(segment, "c");
  CHECK(&ipc::Condition::open(segment, "c") == &c);
  CHECK(&ipc::Condition::open_or_create(segment, "c") == &c);
}

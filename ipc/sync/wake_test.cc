// Wake-ups, tested so that a missing one fails. Semaphore and Barrier sleepers also re-check on their own (every
// kMaxSleep, every kLivenessCheckInterval), which would hide a lost futex wake from a test that waits longer than
// that; here the re-checks are stretched far beyond the blocked call's deadline (ipc::test::StretchedRechecks).
// Each test puts a child to sleep in one blocking call, acts once from this process, and requires the child's
// call to succeed within kWakeDeadline (ipc::test::wake_problem).
#include <catch2/catch.hpp>

#include "ipc/sync/barrier.h"
#include "ipc/sync/condition.h"
#include "ipc/sync/event.h"
#include "ipc/sync/semaphore.h"
#include "tests/support/test_support.h"

using ipc::Outcome;
using ipc::test::kWakeDeadline;
using ipc::test::SharedMapping;
using ipc::test::wake_problem;

TEST_CASE("an acquire asleep on an empty semaphore is woken by a release", "[semaphore][wake]") {
  ipc::test::StretchedRechecks stretched;
  SharedMapping mem(4096);
  auto& sem = mem.make<ipc::Semaphore>(0, 0u);
  CHECK(wake_problem("acquirer", [&] { return sem.acquire(kWakeDeadline) == Outcome::kOk; },
                     [&] { sem.release(); }) == "");
}

TEST_CASE("a wait asleep on a clear event is woken by set()", "[event][wake]") {
  ipc::test::StretchedRechecks stretched;
  SharedMapping mem(4096);
  auto& e = mem.make<ipc::Event>(0);
  CHECK(wake_problem("waiter", [&] { return e.wait(kWakeDeadline) == Outcome::kOk; }, [&] { e.set(); }) == "");
}

TEST_CASE("a wait asleep on a condition is woken by notify()", "[condition][wake]") {
  ipc::test::StretchedRechecks stretched;
  struct Shared {
    ipc::Condition cond;
    int ready = 0;  // guarded by cond.lock()
  };
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  CHECK(wake_problem(
            "waiter",
            [&] {
              ipc::LockGuard g(s.cond.lock());
              return s.cond.wait_for([&] { return s.ready == 1; }, kWakeDeadline) == Outcome::kOk;
            },
            [&] {
              ipc::LockGuard g(s.cond.lock());  // the waiter sleeps, so it released the lock
              s.ready = 1;
              s.cond.notify();
            }) == "");
}

TEST_CASE("a party asleep at a barrier is woken by the last party's arrival", "[barrier][wake]") {
  ipc::test::StretchedRechecks stretched;
  SharedMapping mem(sizeof(ipc::Barrier));
  auto& b = mem.make<ipc::Barrier>(0, 2u);
  CHECK(wake_problem("first party", [&] { return b.wait(kWakeDeadline).passed(); },
                     [&] { CHECK(b.wait(kWakeDeadline).passed()); }) == "");
}

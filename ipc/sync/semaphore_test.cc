#include "ipc/sync/semaphore.h"

#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::ForkedChild;
using ipc::test::PipeSignal;
using ipc::test::SharedMapping;

TEST_CASE("a semaphore hands out its initial units and then times out", "[semaphore]") {
  ipc::Semaphore sem(2);
  CHECK(sem.try_acquire() == Outcome::kOk);
  CHECK(sem.acquire(10ms) == Outcome::kOk);
  CHECK(sem.try_acquire() == Outcome::kTimeout);
  CHECK(sem.acquire(20ms) == Outcome::kTimeout);
  sem.release(2);
  CHECK(sem.value_approx() == 2);
  CHECK(sem.try_acquire() == Outcome::kOk);
}

TEST_CASE("a semaphore may be released above its initial value", "[semaphore]") {
  ipc::Semaphore sem(0);
  sem.release(3);
  CHECK(sem.value_approx() == 3);
  CHECK_THROWS_AS(sem.release(ipc::Semaphore::kMaxValue), ipc::InvalidArgument);
  CHECK(sem.value_approx() == 3);
}

TEST_CASE("releasing a bounded semaphore beyond its bound throws StateError and changes nothing",
          "[semaphore]") {
  ipc::BoundedSemaphore sem(2);
  CHECK_THROWS_AS(sem.release(), ipc::StateError);
  REQUIRE(sem.try_acquire() == Outcome::kOk);
  CHECK_THROWS_AS(sem.release(2), ipc::StateError);
  CHECK(sem.value_approx() == 1);
  sem.release();
  CHECK(sem.value_approx() == 2);
  CHECK_THROWS_AS(ipc::BoundedSemaphore(0), ipc::InvalidArgument);
}

TEST_CASE("a release in one process wakes a waiter blocked in another", "[semaphore]") {
  SharedMapping mem(4096);
  auto& sem = mem.make<ipc::Semaphore>(0, 0u);
  PipeSignal waiting;
  ForkedChild child([&] {
    waiting.notify();
    return sem.acquire(30s) == Outcome::kOk ? 0 : 1;
  });
  REQUIRE(waiting.wait());
  sem.release();
  CHECK(child.wait() == 0);
  CHECK(sem.value_approx() == 0);
}

TEST_CASE("a semaphore of N units admits at most N processes at once", "[semaphore][stress]") {
  constexpr int kUnits = 2, kProcesses = 4, kRounds = 2000;
  struct Shared {
    ipc::Semaphore sem{kUnits};
    std::atomic<int> inside{0};
    std::atomic<int> most{0};
  };
  SharedMapping mem(4096);
  auto& s = mem.make<Shared>(0);
  std::vector<ForkedChild> kids;
  for (int p = 0; p < kProcesses; ++p) {
    kids.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        if (s.sem.acquire(30s) != Outcome::kOk) return 1;
        int now = s.inside.fetch_add(1) + 1;
        int seen = s.most.load();
        while (now > seen && !s.most.compare_exchange_weak(seen, now)) {
        }
        s.inside.fetch_sub(1);
        s.sem.release();
      }
      return 0;
    });
  }
  for (auto& k : kids) CHECK(k.wait() == 0);
  CHECK(s.most.load() <= kUnits);
  CHECK(s.sem.value_approx() == kUnits);
}

namespace ipc::sync_internal {

struct SemaphoreTestAccess {
  static bool sleepers(const Semaphore& s) { return s.core_.sleepers_approx(); }
  static bool sleepers(const BoundedSemaphore& s) { return s.core_.sleepers_approx(); }
};

}  // namespace ipc::sync_internal

TEST_CASE("a waiter killed asleep does not swallow a later release", "[semaphore][kill]") {
  using Access = ipc::sync_internal::SemaphoreTestAccess;
  SharedMapping mem(4096);
  auto& sem = mem.make<ipc::BoundedSemaphore>(0, 1u);
  REQUIRE(sem.try_acquire() == Outcome::kOk);
  ForkedChild doomed([&] { return sem.acquire() == Outcome::kOk ? 0 : 1; });
  // Killed asleep inside acquire(), counted among the sleepers: the release below finds the count nonzero and
  // its one wake-up must still reach the live waiter.
  REQUIRE(ipc::test::wait_until([&] { return Access::sleepers(sem) && ipc::test::sleeping(doomed.pid()); }));
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);
  ipc::test::StretchedRechecks stretched;  // only the wake-up, not a re-check, may end the survivor's sleep
  CHECK(ipc::test::wake_problem(
            "survivor", [&] { return sem.acquire(ipc::test::kWakeDeadline) == Outcome::kOk; },
            [&] { sem.release(); }) == "");
}

TEST_CASE("a waiter killed asleep stops costing every release a wake-up within two rounds", "[semaphore][kill]") {
  using Access = ipc::sync_internal::SemaphoreTestAccess;
  SharedMapping mem(4096);
  auto& sem = mem.make<ipc::Semaphore>(0, 0u);
  // A kill that lands between two bounded sleeps (a few microseconds awake) leaves nothing counted: kill again
  // until a dead waiter is counted.
  bool dead_waiter_counted = false;
  for (int attempt = 0; attempt < 5 && !dead_waiter_counted; ++attempt) {
    ForkedChild doomed([&] { return sem.acquire() == ipc::Outcome::kOk ? 0 : 1; });
    REQUIRE(ipc::test::wait_until([&] { return Access::sleepers(sem) && ipc::test::sleeping(doomed.pid()); }));
    doomed.kill(SIGKILL);
    REQUIRE(doomed.wait() == -SIGKILL);
    dead_waiter_counted = Access::sleepers(sem);
  }
  REQUIRE(dead_waiter_counted);
  const auto start = std::chrono::steady_clock::now();
  int releases = 0;
  while (Access::sleepers(sem) &&
         std::chrono::steady_clock::now() - start < ipc::test::patience(10 * ipc::detail::kRoundLength)) {
    sem.release();
    REQUIRE(sem.try_acquire() == ipc::Outcome::kOk);
    ++releases;
  }
  INFO(releases << " releases");
  CHECK(!Access::sleepers(sem));
  CHECK(std::chrono::steady_clock::now() - start < ipc::test::patience(3 * ipc::detail::kRoundLength));
}

TEST_CASE("semaphores are created and opened by name in a segment", "[semaphore][segment]") {
  auto segment = ipc::Segment::create(ipc::test::unique_name("sync_sem"), 1 << 16);
  ipc::BoundedSemaphore& b = ipc::BoundedSemaphore::create(segment, "b", 3);
  ipc::Semaphore::create(segment, "s", 0);
  CHECK(&ipc::BoundedSemaphore::open(segment, "b") == &b);
  CHECK(ipc::BoundedSemaphore::open(segment, "b").max_value() == 3);
  CHECK_THROWS_AS(ipc::BoundedSemaphore::open(segment, "s"), ipc::InvalidArgument);
}

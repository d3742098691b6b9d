#include "ipc/sync/lock.h"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::ForkedChild;
using ipc::test::PipeSignal;
using ipc::test::SharedMapping;

namespace {

// A lock and the data it protects, as users lay them out in shared memory.
template <typename L>
struct Guarded {
  L lock;
  int64_t a = 0;
  int64_t b = 0;  // invariant when consistent: a == b
};

// Runs `body` on another thread and returns its result (to see the lock as a non-owner sees it).
template <typename F>
auto on_other_thread(F body) {
  decltype(body()) r{};
  std::thread t([&] { r = body(); });
  t.join();
  return r;
}

}  // namespace

TEST_CASE("an uncontended lock is acquired, held by its thread only, and released", "[lock]") {
  ipc::Lock lock;
  REQUIRE(lock.acquire() == Outcome::kOk);
  CHECK(lock.held_by_this_thread());
  CHECK(on_other_thread([&] { return lock.held_by_this_thread(); }) == false);
  CHECK(on_other_thread([&] { return lock.try_acquire(); }) == Outcome::kTimeout);
  CHECK(on_other_thread([&] { return lock.acquire(20ms); }) == Outcome::kTimeout);
  lock.release();
  CHECK_FALSE(lock.held_by_this_thread());
  CHECK(on_other_thread([&] {
          Outcome r = lock.try_acquire();
          if (ipc::holds(r)) lock.release();
          return r;
        }) == Outcome::kOk);
}

TEST_CASE("releasing a lock the caller does not hold throws StateError", "[lock]") {
  ipc::Lock lock;
  CHECK_THROWS_AS(lock.release(), ipc::StateError);
  REQUIRE(lock.acquire() == Outcome::kOk);
  CHECK(on_other_thread([&] {
    try {
      lock.release();
      return false;
    } catch (const ipc::StateError&) {
      return true;
    }
  }));
  lock.release();
}

TEST_CASE("re-acquiring a Lock from the thread that holds it throws StateError", "[lock]") {
  ipc::Lock lock;
  REQUIRE(lock.acquire() == Outcome::kOk);
  CHECK_THROWS_AS((void)lock.acquire(), ipc::StateError);
  lock.release();
}

TEST_CASE("mark_consistent outside the owner-died state throws StateError", "[lock]") {
  ipc::Lock lock;
  CHECK_THROWS_AS(lock.mark_consistent(), ipc::StateError);  // not held
  REQUIRE(lock.acquire() == Outcome::kOk);
  CHECK_THROWS_AS(lock.mark_consistent(), ipc::StateError);  // held, but nobody died
  lock.release();
}

TEST_CASE("a lock excludes other processes: N processes x M locked increments are exact", "[lock][stress]") {
  constexpr int kProcesses = 3, kIncrements = 20000;
  SharedMapping mem(4096);
  auto& g = mem.make<Guarded<ipc::Lock>>(0);
  std::vector<ForkedChild> kids;
  for (int p = 0; p < kProcesses; ++p) {
    kids.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        ipc::LockGuard guard(g.lock);
        if (!guard.owns_lock() || guard.owner_died()) return 1;
        ++g.a;  // not atomic: only exact if the lock excludes
        ++g.b;
      }
      return 0;
    });
  }
  for (auto& k : kids) CHECK(k.wait() == 0);
  CHECK(g.a == kProcesses * kIncrements);
  CHECK(g.b == kProcesses * kIncrements);
}

TEST_CASE("a holder killed with SIGKILL makes the next acquirer see kOwnerDied, repair and continue",
          "[lock][kill]") {
  SharedMapping mem(4096);
  auto& g = mem.make<Guarded<ipc::Lock>>(0);
  PipeSignal holding;
  ForkedChild holder([&] {
    if (g.lock.acquire() != Outcome::kOk) return 1;
    ++g.a;  // half of an update: a != b until b catches up
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait());
  const auto live = g.lock.owner();
  REQUIRE(live.has_value());
  CHECK(live->thread_id == holder.pid());
  CHECK(live->alive);
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == -SIGKILL);
  // Read without taking it: the dead holder is named, and the lock is left for the next acquirer to repair.
  const auto dead = g.lock.owner();
  REQUIRE(dead.has_value());
  CHECK(dead->thread_id == holder.pid());
  CHECK_FALSE(dead->alive);

  {
    ipc::LockGuard guard(g.lock, 30s);
    REQUIRE(guard.result() == Outcome::kOwnerDied);
    REQUIRE(guard.owns_lock());
    CHECK(g.a == 1);
    CHECK(g.b == 0);
    g.b = g.a;  // the repair
    guard.mark_consistent();
  }
  CHECK_FALSE(g.lock.owner().has_value());
  // Normal service again, in this process and in another.
  REQUIRE(g.lock.acquire() == Outcome::kOk);
  CHECK(g.lock.owner().has_value());
  CHECK(g.lock.owner()->thread_id == ipc::sync_internal::this_thread_id());
  g.lock.release();
  CHECK_FALSE(g.lock.owner().has_value());
  ForkedChild next([&] {
    ipc::LockGuard guard(g.lock);
    return guard.result() == Outcome::kOk && g.a == g.b ? 0 : 1;
  });
  CHECK(next.wait() == 0);
}

TEST_CASE("a process blocked on the lock when its holder is killed wakes with kOwnerDied", "[lock][kill]") {
  SharedMapping mem(4096);
  auto& g = mem.make<Guarded<ipc::Lock>>(0);
  PipeSignal holding, waiting;
  ForkedChild holder([&] {
    if (g.lock.acquire() != Outcome::kOk) return 1;
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait());
  ForkedChild waiter([&] {
    waiting.notify();
    ipc::LockGuard guard(g.lock, 30s);
    if (!guard.owner_died()) return 1;
    guard.mark_consistent();
    return 0;
  });
  REQUIRE(waiting.wait());
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == -SIGKILL);
  CHECK(waiter.wait() == 0);
  REQUIRE(g.lock.try_acquire() == Outcome::kOk);
  g.lock.release();
}

TEST_CASE("releasing an owner-died lock without mark_consistent makes it unrecoverable", "[lock][kill]") {
  SharedMapping mem(4096);
  auto& g = mem.make<Guarded<ipc::Lock>>(0);
  PipeSignal holding;
  ForkedChild holder([&] {
    if (g.lock.acquire() != Outcome::kOk) return 1;
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait());
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == -SIGKILL);
  {
    ipc::LockGuard guard(g.lock);
    REQUIRE(guard.owner_died());
    // No repair, no mark_consistent: the guard's release declares the data unrepairable.
  }
  CHECK_THROWS_AS((void)g.lock.acquire(), ipc::LockNotRecoverable);
  CHECK_THROWS_AS((void)g.lock.try_acquire(), ipc::LockNotRecoverable);
}

TEST_CASE("a lock created in a segment is opened by name from another process", "[lock][segment]") {
  std::string name = ipc::test::unique_name("sync_lock");
  auto segment = ipc::Segment::create(name, 1 << 16);
  ipc::Lock& lock = ipc::Lock::create(segment, "the_lock");
  REQUIRE(lock.acquire() == Outcome::kOk);
  PipeSignal tried;
  ForkedChild child([&] {
    auto mine = ipc::Segment::open(name);
    ipc::Lock& same = ipc::Lock::open(mine, "the_lock");
    if (same.try_acquire() != Outcome::kTimeout) return 1;  // the parent holds it
    tried.notify();
    return same.acquire(30s) == Outcome::kOk ? 0 : 2;
  });
  REQUIRE(tried.wait());
  lock.release();
  CHECK(child.wait() == 0);
  CHECK_THROWS_AS(ipc::Lock::open(segment, "no_such_lock"), ipc::NotFound);
  CHECK_THROWS_AS(ipc::RLock::open(segment, "the_lock"), ipc::InvalidArgument);  // wrong type or size
  CHECK(&ipc::Lock::open_or_create(segment, "the_lock") == &lock);
}

TEST_CASE("an RLock is re-entered by its owner and freed by the last release", "[rlock]") {
  ipc::RLock lock;
  REQUIRE(lock.acquire() == Outcome::kOk);
  REQUIRE(lock.acquire() == Outcome::kOk);
  REQUIRE(lock.try_acquire() == Outcome::kOk);
  CHECK(lock.depth_for_this_thread() == 3);
  CHECK(on_other_thread([&] { return lock.try_acquire(); }) == Outcome::kTimeout);
  lock.release();
  lock.release();
  CHECK(lock.held_by_this_thread());
  CHECK(on_other_thread([&] { return lock.acquire(10ms); }) == Outcome::kTimeout);
  lock.release();
  CHECK(lock.depth_for_this_thread() == 0);
  CHECK_THROWS_AS(lock.release(), ipc::StateError);
  CHECK(on_other_thread([&] {
          Outcome r = lock.try_acquire();
          if (ipc::holds(r)) lock.release();
          return r;
        }) == Outcome::kOk);
}

TEST_CASE("an RLock holder killed while holding it three deep hands kOwnerDied to the next acquirer",
          "[rlock][kill]") {
  SharedMapping mem(4096);
  auto& g = mem.make<Guarded<ipc::RLock>>(0);
  PipeSignal holding;
  ForkedChild holder([&] {
    for (int i = 0; i < 3; ++i) {
      if (g.lock.acquire() != Outcome::kOk) return 1;
    }
    ++g.a;
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait());
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == -SIGKILL);
  {
    ipc::LockGuard guard(g.lock, 30s);
    REQUIRE(guard.owner_died());
    CHECK(g.lock.depth_for_this_thread() == 1);  // the dead owner's depth is discarded
    g.b = g.a;
    guard.mark_consistent();
  }
  CHECK_FALSE(g.lock.held_by_this_thread());
  ForkedChild next([&] {
    ipc::LockGuard outer(g.lock);
    ipc::LockGuard inner(g.lock);
    return outer.result() == Outcome::kOk && inner.result() == Outcome::kOk ? 0 : 1;
  });
  CHECK(next.wait() == 0);
}

#include "ipc/sync/barrier.h"

#include <catch2/catch.hpp>

#include <sched.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <vector>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::BarrierStatus;
using ipc::BrokenReason;
using ipc::test::ForkedChild;
using ipc::test::SharedMapping;

namespace {

// Waits (yielding) until `n` parties wait at `b`; false after 30 s. Waiting on the state itself, not on a guess.
bool await_waiting(const ipc::Barrier& b, uint32_t n) {
  auto until = std::chrono::steady_clock::now() + 30s;
  while (b.n_waiting_approx() != n) {
    if (std::chrono::steady_clock::now() > until) return false;
    sched_yield();
  }
  return true;
}

}  // namespace

TEST_CASE("a barrier of one party passes at once", "[barrier]") {
  ipc::Barrier b(1);
  auto w = b.wait();
  CHECK(w.passed());
  CHECK(w.index == 0);
  CHECK_THROWS_AS(ipc::Barrier(0), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Barrier(ipc::Barrier::kMaxParties + 1), ipc::InvalidArgument);
}

TEST_CASE("three processes pass a barrier together, generation after generation", "[barrier][stress]") {
  constexpr int kParties = 3, kRounds = 200;
  struct Shared {
    ipc::Barrier barrier{kParties};
    std::atomic<int> arrived[kRounds];
    std::atomic<int> actions{0};
    std::atomic<int> index_sum[kRounds];
  };
  SharedMapping mem(1 << 16);
  auto& s = mem.make<Shared>(0);
  for (int r = 0; r < kRounds; ++r) {
    s.arrived[r] = 0;
    s.index_sum[r] = 0;
  }
  std::vector<ForkedChild> kids;
  for (int p = 0; p < kParties; ++p) {
    kids.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        s.arrived[r].fetch_add(1);
        auto w = s.barrier.wait_with_action([&] { s.actions.fetch_add(1); }, 30s);
        if (!w.passed()) return 1;
        if (s.arrived[r].load() != kParties) return 2;  // nobody passes before everyone arrived
        s.index_sum[r].fetch_add(static_cast<int>(w.index));
      }
      return 0;
    });
  }
  for (auto& k : kids) CHECK(k.wait() == 0);
  CHECK(s.actions.load() == kRounds);
  for (int r = 0; r < kRounds; ++r) CHECK(s.index_sum[r].load() == 0 + 1 + 2);
  CHECK_FALSE(s.barrier.broken());
}

TEST_CASE("a party that times out breaks the barrier until reset", "[barrier]") {
  ipc::Barrier b(2);
  auto w = b.wait(30ms);
  CHECK(w.status == BarrierStatus::kTimeout);
  CHECK(b.broken());
  CHECK(b.broken_reason() == BrokenReason::kTimeout);
  CHECK(b.wait(1s).status == BarrierStatus::kBroken);
  b.reset();
  CHECK_FALSE(b.broken());
  CHECK(b.n_waiting_approx() == 0);
}

TEST_CASE("abort and reset release a waiting process with kBroken", "[barrier]") {
  SharedMapping mem(1 << 16);
  auto& b = mem.make<ipc::Barrier>(0, 2u);
  for (bool use_abort : {true, false}) {
    ForkedChild child([&] { return b.wait(30s).status == BarrierStatus::kBroken ? 0 : 1; });
    REQUIRE(await_waiting(b, 1));
    if (use_abort) {
      b.abort();
      CHECK(b.broken_reason() == BrokenReason::kAborted);
    } else {
      b.reset();
      CHECK_FALSE(b.broken());
    }
    CHECK(child.wait() == 0);
    b.reset();
  }
}

TEST_CASE("an action that throws breaks the barrier and reaches the party that ran it", "[barrier]") {
  SharedMapping mem(1 << 16);
  auto& b = mem.make<ipc::Barrier>(0, 2u);
  ForkedChild child([&] { return b.wait(30s).status == BarrierStatus::kBroken ? 0 : 1; });
  REQUIRE(await_waiting(b, 1));
  CHECK_THROWS_AS((void)b.wait_with_action([] { throw std::runtime_error("action failed"); }), std::runtime_error);
  CHECK(b.broken_reason() == BrokenReason::kActionFailed);
  CHECK(child.wait() == 0);
}

TEST_CASE("a party killed while waiting breaks the barrier for the others instead of hanging",
          "[barrier][kill]") {
  SharedMapping mem(1 << 16);
  auto& b = mem.make<ipc::Barrier>(0, 3u);
  ForkedChild doomed([&] { return b.wait().passed() ? 0 : 1; });
  REQUIRE(await_waiting(b, 1));
  ForkedChild other([&] { return b.wait(30s).status == BarrierStatus::kBroken ? 0 : 1; });
  REQUIRE(await_waiting(b, 2));
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);
  // The third party never comes; the survivor notices the death within the liveness interval, not at 30 s.
  auto started = std::chrono::steady_clock::now();
  CHECK(other.wait() == 0);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(b.broken_reason() == BrokenReason::kPartyDied);
  CHECK(b.wait(30s).status == BarrierStatus::kBroken);

  // After reset the barrier works again, and the dead party's slot is reused.
  b.reset();
  std::vector<ForkedChild> kids;
  for (int i = 0; i < 2; ++i) kids.emplace_back([&] { return b.wait(30s).passed() ? 0 : 1; });
  CHECK(b.wait(30s).passed());
  for (auto& k : kids) CHECK(k.wait() == 0);
}

// The last party to arrive would release the round at once: it looks for a dead waiter first (a try_lock of each
// waiting slot's robust mutex, no system call), so that a death never passes for an arrival.
TEST_CASE("the last party to arrive after a waiting party was killed is told the barrier broke", "[barrier][kill]") {
  SharedMapping mem(1 << 16);
  auto& b = mem.make<ipc::Barrier>(0, 2u);
  ForkedChild doomed([&] { return b.wait().passed() ? 0 : 1; });
  REQUIRE(await_waiting(b, 1));
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);  // it died waiting at the barrier
  CHECK(b.wait(30s).status == BarrierStatus::kBroken);
  CHECK(b.broken_reason() == BrokenReason::kPartyDied);
  b.reset();
  ForkedChild partner([&] { return b.wait(30s).passed() ? 0 : 1; });
  CHECK(b.wait(30s).passed());
  CHECK(partner.wait() == 0);
}

TEST_CASE("a barrier created in a segment is opened by name", "[barrier][segment]") {
  auto segment = ipc::Segment::create(ipc::test::unique_name("sync_barrier"), 1 << 16);
  ipc::Barrier& b = ipc::Barrier::create(segment, "b", 4);
  CHECK(ipc::Barrier::open(segment, "b").parties() == 4);
  CHECK(&ipc::Barrier::open(segment, "b") == &b);
}

// Wake-ups, tested so that a missing one fails. Every sleeper in a queue also re-checks on its own every kMaxSleep
// (ipc/base/wait.h), which would hide a lost notify from any test that waits longer than that; here the re-checks
// are stretched far beyond the blocked call's deadline (ipc::test::StretchedRechecks), so a call that returns in
// time was woken by its partner. Each test puts a child to sleep in one blocking call (get on an empty queue, put
// on a full one, join with work outstanding), acts once from this process, and requires the child's call to
// succeed within kWakeDeadline.
#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <set>

#include "ipc/base/wait.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "tests/support/test_support.h"

using ipc::Outcome;
using ipc::test::ForcedSpinningVerdict;
using ipc::test::kWakeDeadline;
using ipc::test::SharedMapping;
using ipc::test::wake_problem;

namespace {

constexpr uint64_t kCapacity = 4;

// One queue kind behind put/get/close of uint64_t, built in memory shared with the children forked afterwards.
template <typename Q>
struct Ring {
  explicit Ring(uint64_t bytes) : mem(bytes) {}
  Outcome put(uint64_t v) { return q.put(v, kWakeDeadline); }
  Outcome get(uint64_t& v) { return q.get(v, kWakeDeadline); }
  SharedMapping mem;
  Q q = Q::create_at(mem.base(), mem.bytes(), kCapacity);
};
struct MessageRing {
  SharedMapping mem{ipc::MessageQueue::bytes_needed(kCapacity, 64)};
  ipc::MessageQueue q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), kCapacity, 64);
  Outcome put(uint64_t v) { return q.put_value(v, kWakeDeadline); }
  Outcome get(uint64_t& v) { return q.get_value(v, kWakeDeadline); }
};
struct FixedRing : Ring<ipc::Queue<uint64_t>> {
  FixedRing() : Ring(ipc::Queue<uint64_t>::bytes_needed(kCapacity)) {}
};
struct SpscRing : Ring<ipc::SpscQueue<uint64_t>> {
  SpscRing() : Ring(ipc::SpscQueue<uint64_t>::bytes_needed(kCapacity)) {}
};

}  // namespace

TEMPLATE_TEST_CASE("a consumer asleep on an empty queue is woken by a put", "[queue][wake]", FixedRing, SpscRing,
                   MessageRing) {
  ipc::test::StretchedRechecks stretched;
  // Both ways to sleep, as for the producer below: after spinning (an MPMC get first spins looking for a run of
  // messages, which one put does not make, so that spin must give up), and at once.
  const bool spinning_pays = GENERATE(true, false);
  ForcedSpinningVerdict forced(spinning_pays);
  TestType r;
  CHECK(wake_problem(
            "consumer", [&] { uint64_t v = 0; return r.get(v) == Outcome::kOk && v == 7; },
            [&] { REQUIRE(r.put(7) == Outcome::kOk); }) == "");
}

TEMPLATE_TEST_CASE("a producer asleep on a full queue is woken by a get", "[queue][wake]", FixedRing, SpscRing,
                   MessageRing) {
  ipc::test::StretchedRechecks stretched;
  // Both ways to sleep: after spinning (an idle machine; an MPMC put then first spins looking for a run of free
  // slots, which one get does not make, so that spin must give up), and at once (a busy machine).
  const bool spinning_pays = GENERATE(true, false);
  ForcedSpinningVerdict forced(spinning_pays);
  TestType r;
  CHECK(wake_problem(
            "producer",
            [&] {
              for (uint64_t v = 0; v < kCapacity; ++v) {
                if (r.put(v) != Outcome::kOk) return false;
              }
              return r.put(kCapacity) == Outcome::kOk;  // full: sleeps until the get below
            },
            [&] {
              uint64_t v = 99;
              REQUIRE(r.get(v) == Outcome::kOk);
              CHECK(v == 0);
            }) == "");
  std::set<uint64_t> rest;
  for (uint64_t v = 0; rest.size() < kCapacity && r.get(v) == Outcome::kOk;) rest.insert(v);
  CHECK(rest == std::set<uint64_t>{1, 2, 3, kCapacity});
}

TEMPLATE_TEST_CASE("a consumer asleep on an empty queue is woken by close()", "[queue][wake][close]", FixedRing,
                   SpscRing, MessageRing) {
  ipc::test::StretchedRechecks stretched;
  TestType r;
  CHECK(wake_problem(
            "consumer", [&] { uint64_t v = 0; return r.get(v) == Outcome::kClosed; }, [&] { r.q.close(); }) == "");
}

TEST_CASE("join() asleep with an item outstanding is woken by its task_done()", "[queue][wake][joinable]") {
  ipc::test::StretchedRechecks stretched;
  SharedMapping mem(ipc::JoinableQueue<uint64_t>::bytes_needed(kCapacity));
  auto q = ipc::JoinableQueue<uint64_t>::create_at(mem.base(), mem.bytes(), kCapacity);
  REQUIRE(q.put(1) == Outcome::kOk);
  uint64_t v = 0;
  REQUIRE(q.get(v) == Outcome::kOk);
  CHECK(wake_problem("joiner", [&] { return q.join(kWakeDeadline) == Outcome::kOk; }, [&] { q.task_done(); }) ==
        "");
}

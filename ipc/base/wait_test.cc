// The WaitSet's sleeper count heals (a process that died asleep stops costing notifiers a syscall within two
// rounds) without dropping live sleepers, the notifiers cannot throw, and a "do not spin" verdict is short-lived.
#include "ipc/base/wait.h"

#include <catch2/catch.hpp>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <utility>

#include "tests/support/test_support.h"

using ipc::detail::kRoundLength;
using ipc::detail::sleeper_unit;
using ipc::detail::WaitSet;

// A notifier runs after its state change is published: if it could throw, the change would be made and the
// sleepers never told. The decision (futex_wake aborts on an impossible errno, never throws) is pinned here.
static_assert(noexcept(ipc::detail::notify(std::declval<WaitSet&>())));
static_assert(noexcept(ipc::detail::notify_all(std::declval<WaitSet&>())));
static_assert(noexcept(ipc::detail::notify_marked(std::declval<WaitSet&>())));
static_assert(noexcept(ipc::futex_wake(std::declval<std::atomic<uint32_t>&>(), 1)));
static_assert(noexcept(std::declval<ipc::detail::SleeperCount&>().heal()));

TEST_CASE("a verdict that spinning does not pay is read again after a millisecond, one that it pays after ten",
          "[wait]") {
  using ipc::detail::spinning_verdict_stands;
  constexpr int64_t kMs = 1'000'000;
  const int64_t at = GENERATE(int64_t{0}, int64_t{5'000} * kMs);  // any point of the steady clock
  // "Sleep": one sample of the runnable count may have caught a kernel thread that runs for microseconds.
  CHECK(spinning_verdict_stands(false, at, at));
  CHECK(spinning_verdict_stands(false, at, at + kMs - 1));
  CHECK_FALSE(spinning_verdict_stands(false, at, at + kMs));
  // "Spin": the /proc read stays rare.
  CHECK(spinning_verdict_stands(true, at, at + 10 * kMs - 1));
  CHECK_FALSE(spinning_verdict_stands(true, at, at + 10 * kMs));
}

TEST_CASE("a sleeper counted by a process that died is cleared by notifies within two rounds", "[wait]") {
  WaitSet ws;
  (void)ws.sleepers.enter();  // what a process killed asleep leaves: itself counted, never taken off
  const auto start = std::chrono::steady_clock::now();
  int notifies = 0;
  while (ws.sleepers.counts.load(std::memory_order_relaxed) != 0 &&
         std::chrono::steady_clock::now() - start < ipc::test::patience(10 * kRoundLength)) {
    ipc::detail::notify(ws);
    ++notifies;
  }
  CHECK(ws.sleepers.counts.load(std::memory_order_relaxed) == 0);
  // The first futile wake-up opened round 1, the next one kRoundLength later round 2.
  CHECK(ws.sleepers.round.load() == 2);
  CHECK(std::chrono::steady_clock::now() - start < ipc::test::patience(3 * kRoundLength));
  INFO(notifies << " notifies");
}

TEST_CASE("healing never drops a sleeper counted in the current or the previous round", "[wait]") {
  WaitSet ws;
  REQUIRE(ws.sleepers.enter() == 0);
  ipc::detail::notify(ws);  // wakes nobody: the first round ends at once, round 1 begins
  REQUIRE(ws.sleepers.round.load() == 1);
  // The sleeper of round 0 is only one round old: it may be alive and asleep, so it stays counted.
  CHECK(ws.sleepers.counts.load() == sleeper_unit(0));
  REQUIRE(ws.sleepers.enter() == 1);  // a sleeper of round 1
  for (int i = 0; i < 100; ++i) ipc::detail::notify(ws);  // within kRoundLength: no new round
  CHECK(ws.sleepers.round.load() == 1);
  CHECK(ws.sleepers.counts.load() == (sleeper_unit(0) | sleeper_unit(1)));
  // A sleeper that leaves after its half was cleared does not take another sleeper's count.
  ws.sleepers.leave(0);
  ws.sleepers.leave(0);
  CHECK(ws.sleepers.counts.load() == sleeper_unit(1));
}

// notify_marked() (the MPMC queues' notifier) wakes only when a sleeper marked the epoch: a sleeper that was woken
// and has not left the count yet costs no futex syscall (the epoch, the futex word, stays as it is).
TEST_CASE("notify_marked moves the epoch only when a sleeper marked it", "[wait]") {
  // relaxed below: one thread; nothing is published with the epoch here.
  WaitSet ws;
  ipc::detail::notify_marked(ws);
  CHECK(ws.epoch.load(std::memory_order_relaxed) == 0);  // nobody counted
  (void)ws.sleepers.enter();
  ipc::detail::notify_marked(ws);
  CHECK(ws.epoch.load(std::memory_order_relaxed) == 0);  // counted, but woken already (no mark): nothing to wake
  ws.epoch.fetch_or(1, std::memory_order_seq_cst);  // what block_until<Arming::kMarked> does before it sleeps
  ipc::detail::notify_marked(ws);
  CHECK(ws.epoch.load(std::memory_order_relaxed) == 2);  // woken: the epoch moved on, the mark cleared
  ipc::detail::notify_marked(ws);
  CHECK(ws.epoch.load(std::memory_order_relaxed) == 2);
}

// A forked child does not register for membarrier again (wait.cc's fork handler): it keeps its parent's asymmetric
// fences and relies on fork copying the registration with the address space. Were the registration lost, the
// child's light_fence() (a compiler barrier) would pair with a peer's heavy_fence() that no longer interrupts the
// child's CPU: a lost wake-up. The child here checks with the kernel that it is still registered.
TEST_CASE("a forked child keeps the membarrier registration its light fences rely on", "[wait]") {
  constexpr int kGetRegistrations = 1 << 9;  // MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3)
  if (!ipc::detail::asymmetric_fences()) {
    WARN("skipped: no membarrier here (or ThreadSanitizer): both fences are full");
    return;
  }
  if (syscall(SYS_membarrier, kGetRegistrations, 0, 0) < 0) {
    WARN("skipped: the kernel cannot report membarrier registrations");
    return;
  }
  ipc::Process child = ipc::Process::start([] {
    const long registered = syscall(SYS_membarrier, kGetRegistrations, 0, 0);
    const bool asymmetric = ipc::detail::asymmetric_fences();
    // Asymmetric fences in the child only while the kernel has it registered; and the pid refreshed.
    if (asymmetric && (registered < 0 || !(registered & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))) return 1;
    if (!asymmetric) return 2;
    return ipc::detail::self_pid() == static_cast<uint32_t>(getpid()) ? 0 : 3;
  });
  REQUIRE(child.join(std::chrono::seconds(30)) == 0);
}

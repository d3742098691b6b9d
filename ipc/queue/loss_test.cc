// Losses are delivered or counted, never silent: processes stopped at a named point *inside* put or get (a test
// hook raises SIGSTOP there) and then killed or resumed, so that each window is hit every time, not by chance.
//   - a closed ring still drains what was put behind a slot whose writer is slow (waited for) or dead (counted);
//   - a consumer killed after taking its message but before get() returned (while it wakes producers) is
//     counted in abandoned_count(), for Queue, MessageQueue, JoinableQueue and SpscQueue;
//   - the hand-off entries that record such a consumer (ipc/queue/detail/mpmc_ring.h, "Hand-offs"), owned by a
//     thread, looked at in the ring's header: threads that come and go (more than there are owned entries) reuse
//     the entries of ended threads; a fork()ed child takes its own; a consumer killed with its owned entry armed
//     is counted once, by the thread taking the entry over; one that finds every owned entry held by a live
//     thread arms a transient entry and is counted too;
//   - the leases of a lone producer and a lone consumer (ipc/queue/detail/mpmc_ring.h, "Leases"), who claim their
//     slots by a plain store: taken by the first claimers; revoked by a producer or consumer arriving mid-stream
//     (processes and threads), after which every value still arrives once, in order per producer, and the holder
//     claims by CAS; a close while the holder is inside its claim does not strand its value; a holder stopped
//     inside holds the others back while stopped; one killed inside does not wedge its side (the lease passes on);
//     one killed after claiming by store loses that one value, counted.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/detail/test_hook.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "ipc/queue/status.h"
#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::detail::HookPoint;
using ipc::detail::kHandOffs;
using ipc::detail::kLeaseFree;
using ipc::detail::kLeaseShared;
using ipc::detail::kOwnedHandOffs;

namespace {

// Generous: sanitizer builds on a busy 2-core machine.
constexpr auto kPatience = ipc::test::patience(std::chrono::seconds(60));

// The child side: at the g_passes_left-th pass through `g_stop_at`, tell the parent and stop (SIGSTOP) until it
// resumes or kills us.
HookPoint g_stop_at;
uint32_t g_passes_left = 0;
ipc::test::PipeSignal* g_arrived = nullptr;
void stop_here(HookPoint point) {
  if (point != g_stop_at || g_passes_left == 0 || --g_passes_left != 0) return;
  g_arrived->notify();
  raise(SIGSTOP);
}

// Forks a child that runs `body` with the hook armed for its `passes`-th pass through `point` (the first by
// default), and returns once the child is stopped there.
template <typename Body>
ipc::test::ForkedChild stopped_inside(HookPoint point, Body body, uint32_t passes = 1) {
  ipc::test::PipeSignal arrived;
  ipc::test::ForkedChild child([&] {
    g_stop_at = point;
    g_passes_left = passes;
    g_arrived = &arrived;
    ipc::detail::g_test_hook.store(stop_here, std::memory_order_relaxed);
    body();
  });
  REQUIRE(arrived.wait(kPatience));  // else: the child never reached the hook point
  int status = 0;
  // The child stops right after its notification; WUNTRACED reports the stop without reaping.
  REQUIRE(waitpid(child.pid(), &status, WUNTRACED) == child.pid());
  REQUIRE(WIFSTOPPED(status));
  return child;
}

void kill_and_reap(ipc::test::ForkedChild& child) {
  child.kill(SIGKILL);
  const std::optional<int> code = child.wait(kPatience);
  REQUIRE(code.has_value());  // else: the killed child did not end within kPatience
  REQUIRE(*code == -SIGKILL);
}

struct Fixture {
  std::string name = ipc::test::unique_name("loss");
  ipc::Segment seg = ipc::Segment::create(name, 1 << 20);
};

// A Queue<uint64_t> in a MAP_SHARED mapping, with a view of its ring's header.
struct Ring {
  static constexpr uint64_t kCapacity = 64;
  ipc::test::SharedMapping mem{ipc::Queue<uint64_t>::bytes_needed(kCapacity)};
  ipc::Queue<uint64_t> q = ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), kCapacity);
  ipc::detail::MpmcHeader& h = *mem.as<ipc::detail::MpmcHeader>();

  // The owned entry whose owner is `identity`, or -1.
  int owned_by(uint64_t identity) const {
    for (uint32_t i = 0; i < kOwnedHandOffs; ++i) {
      // acquire: partner is the owner's CAS in take_owned_hand_off().
      if (h.hand_offs[i].owner.load(std::memory_order_acquire) == identity) return static_cast<int>(i);
    }
    return -1;
  }
  // The entries armed now (their indices).
  std::vector<uint32_t> armed() const {
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < kHandOffs; ++i) {
      // acquire: partner is the consumer's release store that armed it.
      if (h.hand_offs[i].word.load(std::memory_order_acquire) != 0) out.push_back(i);
    }
    return out;
  }
  // Marks every owned entry nobody owns as owned by the calling thread, which stays alive: a thread that looks
  // for an owned entry afterwards finds none free and none to take over.
  void hold_free_owned_entries() {
    const uint64_t me = ipc::detail::this_thread_identity();
    for (uint32_t i = 0; i < kOwnedHandOffs; ++i) {
      uint64_t expected = 0;
      // relaxed: the threads and children that look at the entries start after this.
      h.hand_offs[i].owner.compare_exchange_strong(expected, me, std::memory_order_relaxed);
    }
  }
};

}  // namespace

TEST_CASE("a closed Queue waits for a slow writer and delivers everything put behind its slot", "[queue][close]") {
  Fixture f;
  auto q = ipc::Queue<uint64_t>::create(f.seg, "q", 8);
  auto writer = stopped_inside(HookPoint::kPutWritten, [&] {
    if (q.put(100) != Outcome::kOk) throw ipc::Error("the slow writer's put failed");
  });
  for (uint64_t v = 1; v <= 5; ++v) REQUIRE(q.put(v) == Outcome::kOk);
  q.close();
  uint64_t out = 0;
  // The head slot is still being written by a live process: neither closed nor drained yet.
  CHECK(q.try_get(out) == Outcome::kEmpty);
  CHECK(q.get(out, 50ms) == Outcome::kTimeout);
  writer.kill(SIGCONT);
  REQUIRE(writer.wait(kPatience) == std::optional<int>(0));
  std::vector<uint64_t> got;
  while (q.get(out, kPatience) == Outcome::kOk) got.push_back(out);
  CHECK(got == std::vector<uint64_t>{100, 1, 2, 3, 4, 5});
  CHECK(q.get(out) == Outcome::kClosed);
  CHECK(q.abandoned_count() == 0);
}

TEST_CASE("a closed Queue reclaims a dead writer's slot, counts it and delivers everything behind it",
          "[queue][close][kill]") {
  Fixture f;
  auto q = ipc::Queue<uint64_t>::create(f.seg, "q", 8);
  auto writer = stopped_inside(HookPoint::kPutWritten, [&] { (void)q.put(100); });
  for (uint64_t v = 1; v <= 5; ++v) REQUIRE(q.put(v) == Outcome::kOk);
  q.close();
  kill_and_reap(writer);
  std::vector<uint64_t> got;
  uint64_t out = 0;
  Outcome r;
  while ((r = q.get(out, kPatience)) == Outcome::kOk) got.push_back(out);
  CHECK(r == Outcome::kClosed);
  CHECK(got == std::vector<uint64_t>{1, 2, 3, 4, 5});
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("a closed MessageQueue reclaims a dead writer's slot and delivers everything behind it",
          "[queue][close][kill]") {
  Fixture f;
  auto q = ipc::MessageQueue::create(f.seg, "m", 8, 64);
  auto writer = stopped_inside(HookPoint::kPutWritten, [&] { (void)q.put_value(std::string("lost")); });
  for (int v = 1; v <= 3; ++v) REQUIRE(q.put_value(std::to_string(v)) == Outcome::kOk);
  q.close();
  kill_and_reap(writer);
  std::vector<std::string> got;
  while (auto s = q.get_value<std::string>()) got.push_back(*s);
  CHECK(got == std::vector<std::string>{"1", "2", "3"});
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("put and try_put on a closed Queue fail, and what was put before is still delivered",
          "[queue][close]") {
  Fixture f;
  auto q = ipc::Queue<uint64_t>::create(f.seg, "q", 8);
  REQUIRE(q.put(7) == Outcome::kOk);
  q.close();
  CHECK(q.put(8) == Outcome::kClosed);
  CHECK(q.try_put(8) == Outcome::kClosed);
  uint64_t out = 0;
  REQUIRE(q.get(out) == Outcome::kOk);
  CHECK(out == 7);
  CHECK(q.get(out) == Outcome::kClosed);
}

TEST_CASE("a Queue consumer killed after taking its message, before get() returned, is counted",
          "[queue][kill]") {
  Fixture f;
  auto q = ipc::Queue<uint64_t>::create(f.seg, "q", 8);
  for (uint64_t v = 1; v <= 5; ++v) REQUIRE(q.put(v) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)q.get(); });
  kill_and_reap(consumer);
  CHECK(q.abandoned_count() == 1);
  CHECK(q.abandoned_count() == 1);  // settled once, not again
  std::vector<uint64_t> got;
  q.close();
  while (auto v = q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{2, 3, 4, 5});  // delivered (4) + counted (1) == put (5)
}

TEST_CASE("a MessageQueue consumer killed while returning its message is counted", "[queue][kill]") {
  Fixture f;
  auto q = ipc::MessageQueue::create(f.seg, "m", 8, 64);
  for (int v = 1; v <= 3; ++v) REQUIRE(q.put_value(std::to_string(v)) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)q.get_value<std::string>(); });
  kill_and_reap(consumer);
  CHECK(q.abandoned_count() == 1);
  q.close();
  std::vector<std::string> got;
  while (auto s = q.get_value<std::string>()) got.push_back(*s);
  CHECK(got == std::vector<std::string>{"2", "3"});
}

TEST_CASE("join() returns when the consumer of the last item is killed while returning it", "[queue][kill]") {
  Fixture f;
  auto q = ipc::JoinableQueue<uint64_t>::create(f.seg, "j", 8);
  REQUIRE(q.put(1) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)q.get(); });
  kill_and_reap(consumer);
  CHECK(q.join(kPatience) == Outcome::kOk);  // the loss is found and removed from the unfinished count
  CHECK(q.abandoned_count() == 1);
  CHECK(q.unfinished_approx() == 0);
}

// The count went up before the put held a slot: a producer killed asleep on a full queue left it one high for
// good, and join() never returned.
TEST_CASE("join() returns after a producer is killed asleep in put on a full JoinableQueue, which put nothing",
          "[queue][kill]") {
  Fixture f;
  auto q = ipc::JoinableQueue<uint64_t>::create(f.seg, "j", 2);
  while (q.try_put(1) == Outcome::kOk) {
  }
  const int64_t full = q.unfinished_approx();
  REQUIRE(full == static_cast<int64_t>(q.capacity()));
  ipc::test::ForkedChild producer([&] { return q.put(2) == Outcome::kOk ? 0 : 1; });
  REQUIRE(ipc::test::wait_until([&] { return ipc::test::sleeping(producer.pid()); }));  // inside put, asleep
  kill_and_reap(producer);
  CHECK(q.unfinished_approx() == full);
  uint64_t v = 0;
  for (int64_t i = 0; i < full; ++i) {
    REQUIRE(q.get(v, kPatience) == Outcome::kOk);
    CHECK(v == 1);
    q.task_done();
  }
  CHECK(q.unfinished_approx() == 0);
  CHECK(q.join(kPatience) == Outcome::kOk);
  CHECK(q.abandoned_count() == 0);  // it put nothing, so nothing was lost
}

// Killed holding its slot, after the count: the value is lost, counted, and taken off the count again.
TEST_CASE("join() returns after a JoinableQueue producer is killed holding its written slot; the loss is counted",
          "[queue][kill]") {
  Fixture f;
  auto q = ipc::JoinableQueue<uint64_t>::create(f.seg, "j", 8);
  auto producer = stopped_inside(HookPoint::kPutWritten, [&] { (void)q.put(7); });
  CHECK(q.unfinished_approx() == 1);  // counted before it could be got
  kill_and_reap(producer);
  REQUIRE(q.put(8) == Outcome::kOk);
  uint64_t v = 0;
  REQUIRE(q.get(v, kPatience) == Outcome::kOk);  // passes the dead producer's slot, reaping it
  CHECK(v == 8);
  q.task_done();
  CHECK(q.join(kPatience) == Outcome::kOk);
  CHECK(q.abandoned_count() == 1);
  CHECK(q.unfinished_approx() == 0);
}

TEST_CASE("an SpscQueue consumer killed while returning its value is counted, and a successor takes over",
          "[queue][spsc][kill]") {
  Fixture f;
  auto q = ipc::SpscQueue<uint64_t>::create(f.seg, "s", 8);
  for (uint64_t v = 1; v <= 4; ++v) REQUIRE(q.put(v) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)q.get(); });
  kill_and_reap(consumer);
  CHECK(q.abandoned_count() == 1);
  std::vector<uint64_t> got;  // this process becomes the consumer in place of the dead one
  q.close();
  while (auto v = q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{2, 3, 4});
  CHECK(q.abandoned_count() == 1);
}

// An SpscQueue of capacity 8 in `f`'s segment holding 1..5, put in one batch.
static ipc::SpscQueue<uint64_t> spsc_holding_one_to_five(Fixture& f) {
  auto q = ipc::SpscQueue<uint64_t>::create(f.seg, "s", 8);
  const std::vector<uint64_t> values{1, 2, 3, 4, 5};
  size_t put = 0;
  REQUIRE(q.put_n(values, put) == Outcome::kOk);
  REQUIRE(put == 5);
  return q;
}

TEST_CASE("an SpscQueue consumer killed while returning a batch from get_n counts every value of it",
          "[queue][spsc][kill]") {
  Fixture f;
  auto q = spsc_holding_one_to_five(f);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] {
    uint64_t out[3];
    size_t got = 0;
    (void)q.get_n(out, got);
  });
  kill_and_reap(consumer);
  CHECK(q.abandoned_count() == 3);  // the batch of three it took, not one
  q.close();
  std::vector<uint64_t> got;
  while (auto v = q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{4, 5});
  CHECK(q.abandoned_count() == 3);
}

TEST_CASE("an SpscQueue consumer killed returning one value after a batch counts that one value",
          "[queue][spsc][kill]") {
  // What a killed get counts is head - returned: after a batch of three that returned normally, a single get
  // killed inside counts one value, not the batch.
  Fixture f;
  auto q = spsc_holding_one_to_five(f);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] {
    const ipc::detail::TestHook armed = ipc::detail::g_test_hook.exchange(nullptr, std::memory_order_relaxed);
    uint64_t out[3];
    size_t got = 0;
    if (q.get_n(out, got) != Outcome::kOk || got != 3) _exit(1);  // the batch returns normally: not counted
    ipc::detail::g_test_hook.store(armed, std::memory_order_relaxed);
    (void)q.get();
  });
  kill_and_reap(consumer);
  CHECK(q.abandoned_count() == 1);  // the single value 4, not the batch's three
  q.close();
  std::vector<uint64_t> got;
  while (auto v = q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{5});
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("an SpscQueue consumer that returned normally and then died is not counted", "[queue][spsc][kill]") {
  Fixture f;
  auto q = ipc::SpscQueue<uint64_t>::create(f.seg, "s", 8);
  REQUIRE(q.put(1) == Outcome::kOk);
  REQUIRE(q.put(2) == Outcome::kOk);
  ipc::test::ForkedChild consumer([&] { return q.get() == std::optional<uint64_t>(1) ? 0 : 1; });
  REQUIRE(consumer.wait(kPatience) == std::optional<int>(0));
  CHECK(q.abandoned_count() == 0);
  CHECK(q.get() == std::optional<uint64_t>(2));
  CHECK(q.abandoned_count() == 0);
}

TEST_CASE("threads that come and go reuse the hand-off entries of threads that ended", "[queue][threads]") {
  Ring r;
  // Waves of threads at once, more threads in all than there are owned entries: the later ones can only own one
  // if entries of ended threads are taken over.
  constexpr int kWaves = 3 * kOwnedHandOffs / 8;
  constexpr int kPerWave = 8;
  constexpr int kGetsPerThread = 4;
  std::atomic<int> without_entry{0}, failed_gets{0};
  uint64_t sum = 0, expected_sum = 0, next = 1;
  for (int wave = 0; wave < kWaves; ++wave) {
    for (int i = 0; i < kPerWave * kGetsPerThread; ++i, ++next) {
      REQUIRE(r.q.put(next) == Outcome::kOk);
      expected_sum += next;
    }
    std::vector<uint64_t> sums(kPerWave, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kPerWave; ++t) {
      threads.emplace_back([&, t] {
        for (int g = 0; g < kGetsPerThread; ++g) {
          uint64_t v = 0;
          if (r.q.get(v, kPatience) != Outcome::kOk) {
            failed_gets.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after join()
            return;
          }
          sums[t] += v;
        }
        // This thread returned from a get: it owns an entry (none of the other 7 threads of its wave has it).
        if (r.owned_by(ipc::detail::this_thread_identity()) < 0) without_entry.fetch_add(1, std::memory_order_relaxed);
      });
    }
    for (auto& t : threads) t.join();
    for (uint64_t s : sums) sum += s;
  }
  CHECK(failed_gets.load(std::memory_order_relaxed) == 0);
  CHECK(without_entry.load(std::memory_order_relaxed) == 0);
  CHECK(sum == expected_sum);
  CHECK(r.armed().empty());
  CHECK(r.q.abandoned_count() == 0);
}

TEST_CASE("a fork()ed child takes its own hand-off entry, not its parent thread's", "[queue][process]") {
  Ring r;
  for (uint64_t v = 1; v <= 4; ++v) REQUIRE(r.q.put(v) == Outcome::kOk);
  REQUIRE(r.q.get() == std::optional<uint64_t>(1));
  const int parent_entry = r.owned_by(ipc::detail::this_thread_identity());
  REQUIRE(parent_entry >= 0);
  ipc::test::ForkedChild child([&] {
    if (r.q.get() != std::optional<uint64_t>(2)) return 1;
    const int mine = r.owned_by(ipc::detail::this_thread_identity());
    return mine >= 0 && mine != parent_entry ? 0 : 2;
  });
  CHECK(ipc::test::exit_problem(child, 0, "child consumer") == "");
  // The parent's entry is still its own, and works.
  CHECK(r.owned_by(ipc::detail::this_thread_identity()) == parent_entry);
  CHECK(r.q.get() == std::optional<uint64_t>(3));
  CHECK(r.q.abandoned_count() == 0);
}

TEST_CASE("a ring built again at the same address: the thread takes an entry in the new ring", "[queue][threads]") {
  Ring r;
  REQUIRE(r.q.put(1) == Outcome::kOk);
  REQUIRE(r.q.get() == std::optional<uint64_t>(1));
  const uint64_t me = ipc::detail::this_thread_identity();
  REQUIRE(r.owned_by(me) >= 0);
  // A new ring in the same memory: its entries are all free, and the thread's memory of its last entry (the same
  // address, the same process) must not be trusted.
  r.q = ipc::Queue<uint64_t>::create_at(r.mem.base(), r.mem.bytes(), Ring::kCapacity);
  REQUIRE(r.owned_by(me) < 0);
  REQUIRE(r.q.put(2) == Outcome::kOk);
  REQUIRE(r.q.get() == std::optional<uint64_t>(2));
  CHECK(r.owned_by(me) >= 0);  // armed and disarmed an entry it owns, not one that nobody owns
  CHECK(r.armed().empty());
  CHECK(r.q.abandoned_count() == 0);
}

TEST_CASE("a consumer killed inside get() with its owned entry armed is counted once by the thread taking it over",
          "[queue][kill]") {
  Ring r;
  for (uint64_t v = 1; v <= 5; ++v) REQUIRE(r.q.put(v) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)r.q.get(); });
  const std::vector<uint32_t> armed = r.armed();
  REQUIRE(armed.size() == 1);
  CHECK(armed[0] < kOwnedHandOffs);  // the consumer armed the entry it owns
  kill_and_reap(consumer);
  // Every other owned entry is held by this (live) thread: a new thread finds the dead consumer's entry the only
  // one to take over, and must settle its armed hand-off before it arms its own.
  r.hold_free_owned_entries();
  int taken = -1;
  std::thread taker([&] {
    uint64_t v = 0;
    if (r.q.get(v, kPatience) == Outcome::kOk && v == 2) taken = r.owned_by(ipc::detail::this_thread_identity());
  });
  taker.join();
  CHECK(taken == static_cast<int>(armed[0]));
  // The raw counter, before abandoned_count() could settle anything itself: the taker counted the loss.
  CHECK(r.h.abandoned.load(std::memory_order_relaxed) == 1);
  CHECK(r.q.abandoned_count() == 1);  // and nobody counts it again
  CHECK(r.armed().empty());
  std::vector<uint64_t> got;
  r.q.close();
  while (auto v = r.q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{3, 4, 5});
}

TEST_CASE("a consumer that finds every owned hand-off entry held arms a transient one and is counted when killed",
          "[queue][kill]") {
  Ring r;
  for (uint64_t v = 1; v <= 3; ++v) REQUIRE(r.q.put(v) == Outcome::kOk);
  r.hold_free_owned_entries();  // by this thread, alive throughout
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)r.q.get(); });
  const std::vector<uint32_t> armed = r.armed();
  REQUIRE(armed.size() == 1);
  CHECK(armed[0] >= kOwnedHandOffs);
  kill_and_reap(consumer);
  CHECK(r.q.abandoned_count() == 1);
  CHECK(r.q.abandoned_count() == 1);  // settled once, not again
  CHECK(r.armed().empty());
  std::vector<uint64_t> got;
  r.q.close();
  while (auto v = r.q.get()) got.push_back(*v);
  CHECK(got == std::vector<uint64_t>{2, 3});
}

TEST_CASE("a thread that finds its own identity on an entry a killed process left armed (pids reused) settles it",
          "[queue][kill]") {
  Ring r;
  for (uint64_t v = 1; v <= 3; ++v) REQUIRE(r.q.put(v) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] { (void)r.q.get(); });
  const std::vector<uint32_t> armed = r.armed();
  REQUIRE(armed.size() == 1);
  REQUIRE(armed[0] < kOwnedHandOffs);
  kill_and_reap(consumer);
  // A new thread (nothing cached), as if the killed consumer's pid and tid had been given to it: the entry names
  // it as the owner. It adopts the entry in its get and must settle the armed hand-off first.
  std::optional<uint64_t> got;
  int adopted = -1;
  std::thread reborn([&] {
    // relaxed: this thread alone uses the ring while it runs; join() orders it before the checks below.
    r.h.hand_offs[armed[0]].owner.store(ipc::detail::this_thread_identity(), std::memory_order_relaxed);
    got = r.q.get();
    adopted = r.owned_by(ipc::detail::this_thread_identity());
  });
  reborn.join();
  CHECK(got == std::optional<uint64_t>(2));
  CHECK(adopted == static_cast<int>(armed[0]));
  CHECK(r.h.abandoned.load(std::memory_order_relaxed) == 1);  // raw: counted by the get, not by abandoned_count()
  CHECK(r.q.abandoned_count() == 1);
  CHECK(r.armed().empty());
}

namespace {

// A MessageQueue whose arena holds exactly one message of kWholeArena bytes: a put of that size succeeds only
// once every page of a lost message was reclaimed.
constexpr size_t kWholeArena = 64 << 10;
ipc::MessageQueue arena_queue(Fixture& f) {
  return ipc::MessageQueue::create(f.seg, "a", {.capacity = 8, .inline_bytes = 48, .arena_bytes = kWholeArena});
}
std::vector<std::byte> filled(size_t bytes, uint8_t value) { return std::vector<std::byte>(bytes, std::byte{value}); }

// Puts a message as large as the arena (which needs every page of the lost one back), then gets it whole.
void whole_arena_round_trip(ipc::MessageQueue& q) {
  REQUIRE(q.put(filled(kWholeArena, 9), kPatience) == Outcome::kOk);  // else: the lost message's pages leaked
  std::vector<std::byte> out;
  REQUIRE(q.get(out, kPatience) == Outcome::kOk);
  CHECK(out == filled(kWholeArena, 9));
}

// A child that takes the next message (filled with 1s) with get_view() and holds the view until it is killed.
// Returns once it holds it.
ipc::test::ForkedChild viewer_holding(ipc::MessageQueue& q) {
  ipc::test::PipeSignal holding;
  ipc::test::ForkedChild viewer([&] {
    ipc::MessageView view;
    if (q.get_view(view) != Outcome::kOk || view.bytes()[kWholeArena - 1] != std::byte{1}) return 1;
    holding.notify();
    for (;;) pause();
  });
  REQUIRE(holding.wait(kPatience));  // else: the viewer never got its view
  return viewer;
}

}  // namespace

TEST_CASE("a producer killed holding its slot and its arena pages is counted once, and a put reclaims the pages",
          "[queue][arena][kill]") {
  Fixture f;
  auto q = arena_queue(f);
  auto writer = stopped_inside(HookPoint::kPutWritten, [&] { (void)q.put(filled(kWholeArena, 1)); });
  for (int v = 1; v <= 3; ++v) REQUIRE(q.put_value(std::to_string(v)) == Outcome::kOk);  // inline, behind it
  kill_and_reap(writer);
  std::vector<std::string> got;
  for (int v = 1; v <= 3; ++v) got.push_back(q.get_value<std::string>().value());
  CHECK(got == std::vector<std::string>{"1", "2", "3"});
  whole_arena_round_trip(q);
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("a consumer killed holding the claim on an out-of-line message is counted once, and its pages reclaimed",
          "[queue][arena][kill]") {
  Fixture f;
  auto q = arena_queue(f);
  REQUIRE(q.put(filled(kWholeArena, 1)) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetClaimed, [&] {
    std::vector<std::byte> out;
    (void)q.get(out);
  });
  kill_and_reap(consumer);
  whole_arena_round_trip(q);
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("a consumer killed while get_view() returns an out-of-line message is counted once, its pages reclaimed",
          "[queue][arena][kill]") {
  Fixture f;
  auto q = arena_queue(f);
  REQUIRE(q.put(filled(kWholeArena, 1)) == Outcome::kOk);
  auto consumer = stopped_inside(HookPoint::kGetReleased, [&] {
    ipc::MessageView view;
    (void)q.get_view(view);
  });
  kill_and_reap(consumer);
  whole_arena_round_trip(q);
  CHECK(q.abandoned_count() == 1);
}

TEST_CASE("a process killed while it holds a view of an out-of-line message loses it, counted once; pages reclaimed",
          "[queue][arena][kill]") {
  Fixture f;
  auto q = arena_queue(f);
  REQUIRE(q.put(filled(kWholeArena, 1)) == Outcome::kOk);
  auto viewer = viewer_holding(q);
  CHECK(q.try_put(filled(kWholeArena, 2)) == Outcome::kFull);  // a live viewer's pages stay its own
  kill_and_reap(viewer);
  whole_arena_round_trip(q);
  CHECK(q.abandoned_count() == 1);
  CHECK(q.abandoned_count() == 1);  // settled once, not again
}

TEST_CASE("queue_status counts a MessageQueue writer killed mid-put as abandoned_count() does, reclaiming first",
          "[queue][arena][kill][status]") {
  Fixture f;
  auto q = arena_queue(f);
  auto writer = stopped_inside(HookPoint::kPutWritten, [&] { (void)q.put(filled(kWholeArena, 1)); });
  kill_and_reap(writer);
  // Asked before any get passed the dead writer's slot: its loss counts already.
  CHECK(ipc::queue_status(f.seg, "a").abandoned_count == 1);
  CHECK(q.abandoned_count() == 1);  // counted once
  CHECK(ipc::queue_status(f.seg, "a").abandoned_count == 1);
}

TEST_CASE("opening a MessageQueue reclaims the pages of a viewer that died, and counts the loss",
          "[queue][arena][kill]") {
  Fixture f;
  auto q = arena_queue(f);
  REQUIRE(q.put(filled(kWholeArena, 1)) == Outcome::kOk);
  auto viewer = viewer_holding(q);
  kill_and_reap(viewer);
  auto opened = ipc::MessageQueue::open(f.seg, "a");
  // A look that reclaims nothing itself: room for the whole arena is there at once.
  ipc::detail::ChunkArena arena = ipc::detail::ChunkArena::attach(
      static_cast<std::byte*>(f.seg.find_block("a", ipc::detail::kMessageQueueKind).ptr) +
          ipc::detail::MpmcRing::bytes_needed(8, opened.max_inline_bytes()),
      ipc::detail::ChunkArena::bytes_needed(kWholeArena / ipc::detail::kArenaPageBytes), "test");
  CHECK(arena.has_room(kWholeArena / ipc::detail::kArenaPageBytes));
  CHECK(opened.abandoned_count() == 1);
}

// Leases.

namespace {

// For the lease tests: a Queue<uint64_t> in a MAP_SHARED mapping, with a view of its header and room after the ring
// for counters the children write.
struct LeasedRing {
  explicit LeasedRing(uint64_t capacity)
      : mem(ipc::Queue<uint64_t>::bytes_needed(capacity) + sizeof(Counters)),
        q(ipc::Queue<uint64_t>::create_at(mem.base(), ipc::Queue<uint64_t>::bytes_needed(capacity), capacity)),
        h(*mem.as<ipc::detail::MpmcHeader>()),
        counters(*mem.as<Counters>(ipc::Queue<uint64_t>::bytes_needed(capacity))) {}

  // relaxed loads: read once the writers are stopped, reaped or joined, or as a poll.
  uint64_t producers() const { return h.producers.holder.load(std::memory_order_relaxed); }
  uint64_t consumers() const { return h.consumers.holder.load(std::memory_order_relaxed); }

  struct Counters {
    std::atomic<uint64_t> put[2];    // values each producer has put (or consumer has got) so far
    std::atomic<uint64_t> by_store;  // claims by store a child counted at its hook point
  };
  ipc::test::SharedMapping mem;
  ipc::Queue<uint64_t> q;
  ipc::detail::MpmcHeader& h;
  Counters& counters;
};

// The identity of a forked child's only thread: its tid is its pid.
uint64_t child_identity(pid_t pid) {
  return ipc::detail::thread_identity(static_cast<uint32_t>(pid), static_cast<uint32_t>(pid));
}

// Whether this process takes leases (registered for membarrier, or a TSan build); the tests of claims by store
// are skipped elsewhere.
bool leases_here() {
  if (ipc::detail::process_takes_leases()) return true;
  WARN("skipped: this process takes no leases (the kernel refuses membarrier here)");
  return false;
}

// Values carry their producer and their number, so that the consumer can check order per producer.
constexpr uint64_t value_of(uint64_t producer, uint64_t n) { return producer << 40 | n; }

// Counts this process's claims by store into the ring's counter (installed in a child).
std::atomic<uint64_t>* g_by_store = nullptr;
void count_by_store(HookPoint point) {
  if (point == HookPoint::kPutByStore || point == HookPoint::kGetByStore) {
    g_by_store->fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the child is reaped
  }
}

// Gets `count` values, checking that each producer's values arrive once each, in order; returns what is wrong
// ("" when nothing).
std::string drain_in_order(ipc::Queue<uint64_t>& q, uint64_t count, int producers) {
  std::vector<uint64_t> next(producers, 0);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    if (q.get(v, kPatience) != Outcome::kOk) {
      return "get " + std::to_string(i) + " of " + std::to_string(count) + " timed out";
    }
    const uint64_t p = v >> 40, n = v & ((uint64_t{1} << 40) - 1);
    if (p >= static_cast<uint64_t>(producers) || n != next[p]) {
      return "value " + std::to_string(n) + " of producer " + std::to_string(p) + " arrived where " +
             (p < next.size() ? std::to_string(next[p]) : std::string("nothing")) + " was due";
    }
    ++next[p];
  }
  return "";
}

}  // namespace

TEST_CASE("a lone producer and a lone consumer take the leases and claim by store", "[queue][lease]") {
  if (!leases_here()) return;
  constexpr uint64_t kN = 100'000;
  LeasedRing r(64);
  CHECK(r.producers() == kLeaseFree);
  ipc::test::ForkedChild producer([&] {
    g_by_store = &r.counters.by_store;
    ipc::detail::g_test_hook.store(count_by_store, std::memory_order_relaxed);
    for (uint64_t i = 0; i < kN; ++i) {
      if (r.q.put(value_of(0, i), kPatience) != Outcome::kOk) throw ipc::Error("put timed out");
    }
  });
  CHECK(drain_in_order(r.q, kN, 1) == "");
  CHECK(ipc::test::exit_problem(producer, 0, "producer") == "");
  CHECK(r.producers() == child_identity(producer.pid()));
  CHECK(r.consumers() == ipc::detail::this_thread_identity());
  // Every put that found a free slot at the hint claimed it by store: all but the first (which took the lease) and
  // those that found the ring full. Without leases there would be none.
  CHECK(r.counters.by_store.load(std::memory_order_relaxed) > kN / 2);  // relaxed: the child is reaped
  CHECK(r.q.abandoned_count() == 0);
}

TEST_CASE("a producer arriving mid-stream revokes the lease; every value arrives once, in order per producer",
          "[queue][lease]") {
  constexpr uint64_t kN = 200'000;
  const bool threads = GENERATE(false, true);
  CAPTURE(threads);
  LeasedRing r(64);
  auto produce = [&](uint64_t producer) {
    for (uint64_t i = 0; i < kN; ++i) {
      if (r.q.put(value_of(producer, i), kPatience) != Outcome::kOk) throw ipc::Error("put timed out");
      // relaxed: a progress hint for the second producer's start
      r.counters.put[producer].store(i + 1, std::memory_order_relaxed);
      // Half-way, the first producer (the holder) waits for the revocation, so that it happens mid-stream (else a
      // second producer arriving after the first ended would take its lease over).
      if (producer == 0 && i + 1 == kN / 2 && !ipc::test::wait_until([&] { return r.producers() == kLeaseShared; })) {
        throw ipc::Error("the second producer never revoked the lease");
      }
    }
  };
  // The second producer starts once the first, the lease holder, has put a quarter of its values.
  auto second = [&] {
    ipc::test::wait_until([&] { return r.counters.put[0].load(std::memory_order_relaxed) >= kN / 4; });
    produce(1);
  };
  std::string problem;
  if (threads) {
    std::thread a([&] { produce(0); });
    std::thread b(second);
    problem = drain_in_order(r.q, 2 * kN, 2);
    a.join();
    b.join();
  } else {
    ipc::test::ForkedChild a([&] { produce(0); });
    ipc::test::ForkedChild b(second);
    problem = drain_in_order(r.q, 2 * kN, 2);
    CHECK(ipc::test::exit_problem(a, 0, "first producer") == "");
    CHECK(ipc::test::exit_problem(b, 0, "second producer") == "");
  }
  CHECK(problem == "");
  CHECK(r.producers() == kLeaseShared);
  CHECK(r.q.abandoned_count() == 0);
  uint64_t v;
  CHECK(r.q.try_get(v) == Outcome::kEmpty);
}

TEST_CASE("a consumer arriving mid-stream revokes the lease; every value arrives exactly once", "[queue][lease]") {
  constexpr uint64_t kN = 200'000;
  LeasedRing r(64);
  ipc::test::SharedMapping seen(kN);  // one byte per value: how often it arrived
  auto consume = [&](uint64_t consumer) {
    for (;;) {
      uint64_t v = 0;
      const Outcome o = r.q.get(v, kPatience);
      if (o == Outcome::kClosed) return 0;
      if (o != Outcome::kOk || v >= kN) return 1;
      reinterpret_cast<std::atomic<uint8_t>*>(seen.as<uint8_t>(v))->fetch_add(1, std::memory_order_relaxed);
      r.counters.put[consumer].fetch_add(1, std::memory_order_relaxed);  // relaxed: a progress hint
    }
  };
  ipc::test::ForkedChild first([&] { return consume(0); });
  ipc::test::ForkedChild second([&] {
    ipc::test::wait_until([&] { return r.counters.put[0].load(std::memory_order_relaxed) >= kN / 4; });
    return consume(1);
  });
  for (uint64_t i = 0; i < kN; ++i) {
    REQUIRE(r.q.put(i, kPatience) == Outcome::kOk);
    // Half-way, the revocation is waited for, so that it happens while the first consumer still takes values.
    if (i + 1 == kN / 2) REQUIRE(ipc::test::wait_until([&] { return r.consumers() == kLeaseShared; }));
  }
  r.q.close();
  CHECK(ipc::test::exit_problem(first, 0, "first consumer") == "");
  CHECK(ipc::test::exit_problem(second, 0, "second consumer") == "");
  uint64_t wrong = 0;
  for (uint64_t i = 0; i < kN; ++i) wrong += *seen.as<uint8_t>(i) != 1;
  CHECK(wrong == 0);
  CHECK(r.consumers() == kLeaseShared);
  CHECK(r.producers() == ipc::detail::this_thread_identity());
}

TEST_CASE("a revoked lease holder claims by CAS from then on, before the revoker marks the side shared",
          "[queue][lease]") {
  if (!leases_here()) return;
  const bool producers = GENERATE(true, false);
  CAPTURE(producers);
  LeasedRing r(8);
  uint64_t v = 0;
  // This thread takes the side's lease, then a child stops right after revoking it (before it marks the side
  // shared): from the child's barrier on, our claims must not be by store.
  const auto claim = [&] { return producers ? r.q.put(value_of(0, v++)) : r.q.get(v); };
  for (uint64_t n = 0; n < 4; ++n) REQUIRE(r.q.put(value_of(0, n)) == Outcome::kOk);
  v = producers ? 4 : 0;
  REQUIRE(claim() == Outcome::kOk);
  REQUIRE((producers ? r.producers() : r.consumers()) == ipc::detail::this_thread_identity());
  auto revoker = stopped_inside(HookPoint::kRevoked, [&] {
    uint64_t out;
    if ((producers ? r.q.put(value_of(1, 0)) : r.q.get(out)) != Outcome::kOk) throw ipc::Error("the claim failed");
  });
  g_by_store = &r.counters.by_store;
  ipc::detail::g_test_hook.store(count_by_store, std::memory_order_relaxed);
  const Outcome o = claim();
  ipc::detail::g_test_hook.store(nullptr, std::memory_order_relaxed);
  REQUIRE(o == Outcome::kOk);
  CHECK(r.counters.by_store.load(std::memory_order_relaxed) == 0);  // relaxed: counted by this thread
  // We saw the revocation and marked the side shared ourselves.
  CHECK((producers ? r.producers() : r.consumers()) == kLeaseShared);
  revoker.kill(SIGCONT);
  CHECK(ipc::test::exit_problem(revoker, 0, "revoker") == "");
}

TEST_CASE("a close while the producers' lease holder is inside its claim does not strand its value",
          "[queue][lease][close]") {
  if (!leases_here()) return;
  LeasedRing r(8);
  // The child's first put takes the lease (a claim by CAS); its second claims by store and stops inside.
  auto writer = stopped_inside(HookPoint::kPutByStore, [&] {
    if (r.q.put(1) != Outcome::kOk || r.q.put(2) != Outcome::kOk) throw ipc::Error("a put failed");
  });
  r.q.close();
  uint64_t out = 0;
  REQUIRE(r.q.get(out) == Outcome::kOk);
  CHECK(out == 1);
  // The holder read `closed` before the close and will claim: not drained yet.
  CHECK(r.q.try_get(out) == Outcome::kEmpty);
  CHECK(r.q.get(out, 50ms) == Outcome::kTimeout);
  writer.kill(SIGCONT);
  CHECK(ipc::test::exit_problem(writer, 0, "writer") == "");
  REQUIRE(r.q.get(out, kPatience) == Outcome::kOk);
  CHECK(out == 2);
  CHECK(r.q.get(out) == Outcome::kClosed);
}

namespace {
// Counts this process's waits for the producers' lease holder after a close.
std::atomic<int> g_close_waits{0};
void count_close_waits(HookPoint point) {
  if (point == HookPoint::kCloseWaitOut) g_close_waits.fetch_add(1, std::memory_order_relaxed);  // relaxed: a count
}
}  // namespace

TEST_CASE("gets on a closed ring wait out the producers' lease holder once, not once per get",
          "[queue][lease][close]") {
  // Each wait is a barrier on every CPU (membarrier: an interrupt on each CPU running a registered process). A
  // consumer polling try_get on a closed queue must not send one per call while a producer holds the lease.
  if (!leases_here()) return;
  LeasedRing r(8);
  ipc::test::PipeSignal holding, done;
  ipc::test::ForkedChild holder([&] {
    if (r.q.put(1) != Outcome::kOk) throw ipc::Error("put failed");  // takes the lease
    holding.notify();
    done.wait(kPatience);  // alive, and holding the lease, until the test has looked
  });
  REQUIRE(holding.wait(kPatience));
  REQUIRE(r.producers() == child_identity(holder.pid()));
  r.q.close();
  g_close_waits.store(0, std::memory_order_relaxed);  // relaxed: this thread only
  ipc::detail::g_test_hook.store(count_close_waits, std::memory_order_relaxed);
  uint64_t out = 0;
  CHECK(r.q.get(out) == Outcome::kOk);
  CHECK(out == 1);
  for (int i = 0; i < 100; ++i) CHECK(r.q.try_get(out) == Outcome::kClosed);
  CHECK(r.q.get(out) == Outcome::kClosed);
  ipc::detail::g_test_hook.store(nullptr, std::memory_order_relaxed);
  CHECK(g_close_waits.load(std::memory_order_relaxed) == 1);  // relaxed: this thread only
  CHECK(r.producers() == child_identity(holder.pid()));  // still held: the waits were needed
  done.notify();
  CHECK(ipc::test::exit_problem(holder, 0, "holder") == "");
}

TEST_CASE("a producer waits while the lease holder is stopped inside its claim, and goes on once it resumes",
          "[queue][lease]") {
  if (!leases_here()) return;
  LeasedRing r(8);
  auto holder = stopped_inside(HookPoint::kPutByStore, [&] {
    if (r.q.put(value_of(0, 0)) != Outcome::kOk || r.q.put(value_of(0, 1)) != Outcome::kOk) {
      throw ipc::Error("a put failed");
    }
  });
  CHECK(r.producers() == child_identity(holder.pid()));
  // The lease cannot be revoked while its holder may still store its claim: our claim waits.
  CHECK(r.q.put(value_of(0, 2), 50ms) == Outcome::kTimeout);
  CHECK(r.q.try_put(value_of(0, 2)) == Outcome::kFull);
  holder.kill(SIGCONT);
  CHECK(ipc::test::exit_problem(holder, 0, "holder") == "");
  REQUIRE(r.q.put(value_of(0, 2), kPatience) == Outcome::kOk);
  CHECK(r.producers() == kLeaseShared);
  r.q.close();
  CHECK(drain_in_order(r.q, 3, 1) == "");
}

TEST_CASE("a producers' lease holder killed inside its claim leaves nothing behind; the next producer takes the lease",
          "[queue][lease][kill]") {
  if (!leases_here()) return;
  LeasedRing r(8);
  auto holder = stopped_inside(HookPoint::kPutByStore, [&] {
    (void)r.q.put(value_of(0, 0));
    (void)r.q.put(1);
  });
  kill_and_reap(holder);
  for (uint64_t n = 1; n <= 3; ++n) REQUIRE(r.q.put(value_of(0, n), kPatience) == Outcome::kOk);
  CHECK(r.producers() == ipc::detail::this_thread_identity());
  CHECK(drain_in_order(r.q, 4, 1) == "");
  CHECK(r.q.abandoned_count() == 0);  // it died before its claim: its put never happened
}

TEST_CASE("a consumers' lease holder killed inside its claim leaves nothing behind; the next consumer takes the lease",
          "[queue][lease][kill]") {
  if (!leases_here()) return;
  LeasedRing r(8);
  for (uint64_t n = 0; n < 5; ++n) REQUIRE(r.q.put(value_of(0, n)) == Outcome::kOk);
  uint64_t first = 99;
  auto holder = stopped_inside(HookPoint::kGetByStore, [&] {
    (void)r.q.get(first);
    (void)r.q.get(first);
  });
  kill_and_reap(holder);
  std::vector<uint64_t> got;
  uint64_t v = 0;
  while (r.q.try_get(v) == Outcome::kOk) got.push_back(v);
  CHECK(got == std::vector<uint64_t>{1, 2, 3, 4});  // 0 was the child's; nothing else was taken
  CHECK(r.consumers() == ipc::detail::this_thread_identity());
  CHECK(r.q.abandoned_count() == 0);
}

TEST_CASE("a producer killed after claiming by store loses that value, counted; the others still arrive",
          "[queue][lease][kill]") {
  LeasedRing r(8);
  // kPutWritten's second pass: the child's second put, claimed by store, written, not yet published.
  auto holder = stopped_inside(
      HookPoint::kPutWritten,
      [&] {
        (void)r.q.put(value_of(0, 0));
        (void)r.q.put(value_of(0, 99));
      },
      2);
  kill_and_reap(holder);
  for (uint64_t n = 1; n <= 3; ++n) REQUIRE(r.q.put(value_of(0, n), kPatience) == Outcome::kOk);
  CHECK(drain_in_order(r.q, 4, 1) == "");  // 0, 1, 2, 3: the dead claim was reaped on the way
  CHECK(r.q.abandoned_count() == 1);
}

TEST_CASE("a consumer killed after claiming by store loses that value, counted; producers do not stay blocked",
          "[queue][lease][kill]") {
  LeasedRing r(8);
  for (uint64_t n = 0; n < 8; ++n) REQUIRE(r.q.put(n) == Outcome::kOk);  // full
  uint64_t v = 0;
  // kGetClaimed's second pass: the child's second get, claimed by store, not yet read.
  auto holder = stopped_inside(
      HookPoint::kGetClaimed,
      [&] {
        (void)r.q.get(v);
        (void)r.q.get(v);
      },
      2);
  kill_and_reap(holder);
  // Two puts go round to the slots of 0 (freed) and 1 (held by the dead consumer: reaped, counted).
  REQUIRE(r.q.put(8, kPatience) == Outcome::kOk);
  REQUIRE(r.q.put(9, kPatience) == Outcome::kOk);
  CHECK(r.q.abandoned_count() == 1);
  std::vector<uint64_t> got;
  while (r.q.try_get(v) == Outcome::kOk) got.push_back(v);
  CHECK(got == std::vector<uint64_t>{2, 3, 4, 5, 6, 7, 8, 9});
}

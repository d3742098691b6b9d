// Losses are delivered or counted, never silent: processes stopped at a named point *inside* put or get (a test
// hook raises SIGSTOP there) and then killed or resumed, so that each window is hit every time, not by chance.
//   - a closed ring still drains what was put behind a slot whose writer is slow (waited for) or dead (counted);
//   - a consumer killed after taking its message but before get() returned (while it wakes producers) is
//     counted in abandoned_count(), for Queue, MessageQueue, JoinableQueue and SpscQueue.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipc/queue/detail/test_hook.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::detail::HookPoint;

namespace {

// Generous: sanitizer builds on a busy 2-core machine.
constexpr auto kPatience = ipc::test::patience(std::chrono::seconds(60));

// The child side: at `g_stop_at`, tell the parent and stop (SIGSTOP) until it resumes or kills us.
HookPoint g_stop_at;
ipc::test::PipeSignal* g_arrived = nullptr;
void stop_here(HookPoint point) {
  if (point != g_stop_at) return;
  g_arrived->notify();
  raise(SIGSTOP);
}

// Forks a child that runs `body` with the hook armed for `point`, and returns once the child is stopped there.
template <typename Body>
ipc::test::ForkedChild stopped_inside(HookPoint point, Body body) {
  ipc::test::PipeSignal arrived;
  ipc::test::ForkedChild child([&] {
    g_stop_at = point;
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

#include "ipc/shared/value.h"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::test::ForkedChild;
using ipc::test::PipeSignal;
using ipc::test::SharedMapping;

namespace {

struct Point3 {  // 24 bytes: not lock-free, so only the locked path exists
  int64_t x, y, z;
};

constexpr int kProcesses = 4;
constexpr int kIncrements = 20000;

// Runs `body` in kProcesses children and checks that each exits 0.
template <typename F>
void in_processes(F body) {
  std::vector<ForkedChild> kids;
  for (int p = 0; p < kProcesses; ++p) kids.emplace_back(body);
  for (auto& k : kids) CHECK(k.wait() == 0);
}

}  // namespace

static_assert(ipc::Value<int64_t>::kLockFree);
static_assert(!ipc::Value<Point3>::kLockFree);

TEST_CASE("a value loads, stores, exchanges and compares-and-exchanges without its lock", "[value]") {
  ipc::Value<int64_t> v(5);
  CHECK(v.load() == 5);
  v.store(7);
  CHECK(v.exchange(9) == 7);
  int64_t expected = 8;
  CHECK_FALSE(v.compare_exchange(expected, 10));
  CHECK(expected == 9);
  CHECK(v.compare_exchange(expected, 10));
  CHECK(v.fetch_add(5) == 10);
  CHECK(v.fetch_sub(3) == 15);
  CHECK(v.load() == 12);
  ipc::Value<double> d(1.5);
  d.store(d.load() * 2);
  CHECK(d.load() == 3.0);
}

TEST_CASE("N processes x M lock-free fetch_add increments give an exact count", "[value][stress]") {
  SharedMapping mem(4096);
  auto& counter = mem.make<ipc::Value<int64_t>>(0);
  in_processes([&] {
    for (int i = 0; i < kIncrements; ++i) counter.fetch_add(1);
    return 0;
  });
  CHECK(counter.load() == int64_t{kProcesses} * kIncrements);
}

TEST_CASE("N processes x M increments under the value's lock give an exact count", "[value][stress]") {
  SharedMapping mem(4096);
  auto& counter = mem.make<ipc::Value<int64_t>>(0);
  in_processes([&] {
    for (int i = 0; i < kIncrements; ++i) {
      auto v = counter.lock();
      if (v.owner_died()) return 1;
      v.set(v.get() + 1);  // a read and a write: exact only because the lock excludes
    }
    return 0;
  });
  CHECK(counter.load() == int64_t{kProcesses} * kIncrements);
}

TEST_CASE("a value of a type that is not lock-free is updated consistently through its lock", "[value][stress]") {
  SharedMapping mem(4096);
  auto& p = mem.make<ipc::Value<Point3>>(0, Point3{0, 0, 0});
  in_processes([&] {
    for (int i = 0; i < kIncrements / 4; ++i) {
      auto v = p.lock();
      Point3 q = v.get();
      if (q.x != q.y || q.y != q.z) return 1;  // never torn
      v.set({q.x + 1, q.y + 1, q.z + 1});
    }
    return 0;
  });
  auto v = p.lock();
  CHECK(v.get().z == kProcesses * (kIncrements / 4));
}

TEST_CASE("a process killed in the middle of a locked update is reported to the next locker", "[value][kill]") {
  SharedMapping mem(4096);
  auto& p = mem.make<ipc::Value<Point3>>(0, Point3{1, 1, 1});
  PipeSignal halfway;
  ForkedChild doomed([&] {
    auto v = p.lock();
    if (v.owner_died()) return 1;
    v.set({2, 2, 1});  // z not yet written
    halfway.notify();
    for (;;) pause();
  });
  REQUIRE(halfway.wait());
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == -SIGKILL);
  {
    auto v = p.lock();
    REQUIRE(v.owner_died());
    Point3 q = v.get();
    CHECK(q.z == 1);
    v.set({q.x, q.y, q.x});  // the repair
    v.mark_consistent();
  }
  auto v = p.lock();
  CHECK_FALSE(v.owner_died());
  CHECK(v.get().z == 2);
}

TEST_CASE("a value created in a segment is incremented by a process that opened it by name", "[value][segment]") {
  std::string name = ipc::test::unique_name("shared_value");
  auto segment = ipc::Segment::create(name, 1 << 16);
  auto& counter = ipc::Value<int64_t>::create(segment, "counter", 40);
  ForkedChild child([&] {
    auto mine = ipc::Segment::open(name);
    ipc::Value<int64_t>::open(mine, "counter").fetch_add(2);
    return 0;
  });
  CHECK(child.wait() == 0);
  CHECK(counter.load() == 42);
  CHECK_THROWS_AS(ipc::Value<int64_t>::open(segment, "missing"), ipc::NotFound);
  CHECK_THROWS_AS(ipc::Value<int64_t>::create(segment, "counter"), ipc::InvalidArgument);
}

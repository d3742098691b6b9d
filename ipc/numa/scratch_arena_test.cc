// Tests for ScratchArena: bump allocation, reset, exhaustion, node binding, trimming, huge pages.
#include "ipc/numa/scratch_arena.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory_resource>
#include <string>
#include <vector>

#include "ipc/numa/placement.h"
#include "ipc/numa/policy_error.h"

using ipc::numa::ScratchArena;
using ipc::numa::ScratchExhausted;
using Catch::Matchers::Contains;

namespace {

uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

long sysctl_value(const char* path) {
  std::ifstream in(path);
  long v = 0;
  in >> v;
  return v;
}

}  // namespace

TEST_CASE("allocations are aligned, disjoint and bumped; reset hands out the same memory again") {
  ScratchArena arena({.capacity = 1 << 20, .huge_pages = ScratchArena::HugePages::kOff});
  void* a = arena.allocate(3, 1);
  void* b = arena.allocate(8, 8);
  void* c = arena.allocate(100, 64);
  CHECK(address(b) % 8 == 0);
  CHECK(address(c) % 64 == 0);
  CHECK(address(b) >= address(a) + 3);
  CHECK(address(c) >= address(b) + 8);
  CHECK(arena.used() >= 111);
  std::memset(c, 0x5a, 100);

  auto doubles = arena.allocate_array<double>(1000);
  REQUIRE(doubles.size() == 1000);
  CHECK(address(doubles.data()) % alignof(double) == 0);
  doubles[999] = 1.5;
  size_t used = arena.used();
  CHECK(arena.high_water() == used);

  arena.reset();
  CHECK(arena.used() == 0);
  CHECK(arena.allocate(3, 1) == a);  // the first allocation again: nothing was freed piecemeal
  CHECK(arena.high_water() == used);
}

TEST_CASE("make<T> constructs in the arena") {
  struct Point {
    int x, y;
  };
  ScratchArena arena({.capacity = 4096, .huge_pages = ScratchArena::HugePages::kOff});
  Point& p = arena.make<Point>(Point{3, 4});
  CHECK(p.x == 3);
  CHECK(p.y == 4);
  CHECK(address(&p) >= address(arena.base()));
  CHECK(address(&p) < address(arena.base()) + arena.capacity());
}

TEST_CASE("a request that does not fit throws ScratchExhausted and leaves the arena usable") {
  ScratchArena arena({.capacity = 64 * 1024, .huge_pages = ScratchArena::HugePages::kOff});
  CHECK(arena.capacity() == 64 * 1024);
  (void)arena.allocate(60 * 1024);
  size_t used = arena.used();
  CHECK_THROWS_AS(arena.allocate(8 * 1024), ScratchExhausted);
  CHECK_THROWS_WITH(arena.allocate(8 * 1024), Contains("8192 bytes requested") && Contains("of 65536 bytes in use"));
  CHECK(arena.used() == used);
  CHECK_THROWS_AS(arena.allocate_array<uint64_t>(SIZE_MAX / 4), ScratchExhausted);  // count * 8 overflows
  CHECK(arena.allocate(1024) != nullptr);

  SECTION("through the memory resource it is std::bad_alloc") {
    arena.reset();
    std::pmr::vector<int> v(arena.resource());
    v.resize(1000);
    CHECK(address(v.data()) >= address(arena.base()));
    CHECK_THROWS_AS(v.resize(100 * 1024), std::bad_alloc);
  }
}

TEST_CASE("bad options and arguments are refused clearly") {
  CHECK_THROWS_AS(ScratchArena({.capacity = 0}), ipc::InvalidArgument);
  CHECK_THROWS_AS(ScratchArena({.capacity = 4096, .node = 1023}), ipc::numa::PolicyError);
  ScratchArena arena({.capacity = 4096, .huge_pages = ScratchArena::HugePages::kOff});
  CHECK_THROWS_AS(arena.allocate(8, 3), ipc::InvalidArgument);
  CHECK_THROWS_AS(arena.allocate(8, 0), ipc::InvalidArgument);
}

TEST_CASE("an arena with a node binds its pages there before any is touched") {
  ScratchArena arena({.capacity = 8 << 20, .node = 0});
  REQUIRE(arena.node() == 0);
  CHECK(ipc::numa::numa_maps_policy(arena.base()).rfind("bind:0", 0) == 0);
  auto bytes = arena.allocate_array<unsigned char>(2 << 20);
  std::memset(bytes.data(), 1, bytes.size());
  auto placement = ipc::numa::page_placement(bytes.data(), bytes.size());
  CHECK(placement.pages_on(0) == placement.total_pages);
}

TEST_CASE("reset gives pages past keep_bytes back to the kernel and keeps the rest") {
  ScratchArena arena({.capacity = 16 << 20, .huge_pages = ScratchArena::HugePages::kOff});
  auto bytes = arena.allocate_array<unsigned char>(8 << 20);
  std::memset(bytes.data(), 1, bytes.size());
  REQUIRE(ipc::numa::page_placement(bytes.data(), bytes.size()).pages_not_present == 0);

  arena.reset(1 << 20);
  auto kept = ipc::numa::page_placement(bytes.data(), 1 << 20);
  auto returned = ipc::numa::page_placement(bytes.data() + (1 << 20), (7 << 20));
  CHECK(kept.pages_not_present == 0);
  CHECK(returned.pages_not_present == returned.total_pages);
  auto again = arena.allocate_array<unsigned char>(8 << 20);
  CHECK(again.data() == bytes.data());
  CHECK(again[(8 << 20) - 1] == 0);  // a returned page faults in zeroed
}

TEST_CASE("huge pages: advised where transparent huge pages are enabled, off on request, hugetlb only if reserved") {
  ScratchArena off({.capacity = 4 << 20, .huge_pages = ScratchArena::HugePages::kOff});
  CHECK_FALSE(off.huge_pages());

  ScratchArena advised({.capacity = 4 << 20});
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting;
  std::getline(thp, setting);
  bool thp_on = setting.find("[always]") != std::string::npos || setting.find("[madvise]") != std::string::npos;
  CHECK(advised.huge_pages() == thp_on);
  if (thp_on) CHECK(address(advised.base()) % (2 << 20) == 0);

  if (sysctl_value("/proc/sys/vm/nr_hugepages") == 0) {
    auto require = [] { ScratchArena({.capacity = 2 << 20, .huge_pages = ScratchArena::HugePages::kRequire}); };
    CHECK_THROWS_AS(require(), ipc::Unsupported);
    CHECK_THROWS_WITH(require(), Contains("vm.nr_hugepages"));
  } else {
    ScratchArena huge({.capacity = 2 << 20, .huge_pages = ScratchArena::HugePages::kRequire});
    CHECK(huge.huge_pages());
    CHECK(huge.capacity() == (2 << 20));
  }
}

TEST_CASE("a moved arena keeps its memory and its resource; the moved-from one is empty") {
  ScratchArena a({.capacity = 1 << 20, .huge_pages = ScratchArena::HugePages::kOff});
  int& x = a.make<int>(42);
  ScratchArena b(std::move(a));
  CHECK(x == 42);
  CHECK(b.used() >= sizeof(int));
  CHECK(a.capacity() == 0);
  CHECK_THROWS_AS(a.allocate(1), ScratchExhausted);
  std::pmr::vector<int> v({1, 2, 3}, b.resource());
  CHECK(address(v.data()) >= address(b.base()));
  ScratchArena c({.capacity = 4096, .huge_pages = ScratchArena::HugePages::kOff});
  c = std::move(b);
  CHECK(x == 42);
  CHECK(v[2] == 3);
}

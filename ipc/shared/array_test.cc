#include "ipc/shared/array.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <vector>

#include "ipc/numa/memory_policy.h"
#include "ipc/numa/placement.h"
#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

using ipc::numa::MemoryPolicy;
using ipc::test::ForkedChild;
using ipc::test::SharedMapping;

TEST_CASE("a new array has value-initialised elements and checked access", "[array]") {
  SharedMapping mem(1 << 16);
  auto& a = ipc::Array<int32_t>::construct_at(mem.base(), mem.bytes(), 100);
  CHECK(a.size() == 100);
  for (int32_t x : a.span()) CHECK(x == 0);
  a[3] = 7;
  CHECK(a.at(3) == 7);
  CHECK(a.load(3) == 7);
  CHECK_THROWS_AS(a.at(100), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Array<int32_t>::construct_at(mem.base(), 64, 100), ipc::InvalidArgument);
}

TEST_CASE("an array whose byte size overflows is refused and allocates nothing", "[array]") {
  ipc::Segment segment = ipc::Segment::create(ipc::test::unique_name("array"), 1 << 20);
  const size_t free_before = segment.free_bytes();
  CHECK_THROWS_WITH(ipc::Array<uint64_t>::create(segment, "huge", uint64_t{1} << 61),
                    Catch::Contains("2305843009213693952") && Catch::Contains("overflows"));
  CHECK_THROWS_AS(ipc::Array<uint64_t>::bytes_needed(uint64_t{1} << 61, {MemoryPolicy::interleave({0})}),
                  ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Array<uint64_t>::bytes_needed(SIZE_MAX / 8), ipc::InvalidArgument);
  CHECK(segment.free_bytes() == free_before);
  CHECK(segment.blocks().empty());
}

TEST_CASE("processes increment every element of a shared array exactly, lock-free and locked", "[array][stress]") {
  constexpr int kProcesses = 3, kRounds = 2000;
  constexpr size_t kLength = 16;
  SharedMapping mem(1 << 16);
  auto& a = ipc::Array<int64_t>::construct_at(mem.base(), mem.bytes(), kLength);
  std::vector<ForkedChild> kids;
  for (int p = 0; p < kProcesses; ++p) {
    kids.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        for (size_t i = 0; i < kLength; i += 2) a.fetch_add(i, 1);
        ipc::LockGuard g(a.get_lock());
        if (g.owner_died()) return 1;
        for (size_t i = 1; i < kLength; i += 2) a[i] += 1;  // odd elements only ever under the lock
      }
      return 0;
    });
  }
  for (auto& k : kids) CHECK(k.wait() == 0);
  for (size_t i = 0; i < kLength; ++i) CHECK(a[i] == kProcesses * kRounds);
}

TEST_CASE("an interleaved array's pages land on the policy's nodes and the policy reads back", "[array][numa]") {
  auto segment = ipc::Segment::create(ipc::test::unique_name("shared_array"), 8 << 20);
  const MemoryPolicy policy = MemoryPolicy::interleave({0});  // this host has one node
  constexpr size_t kLength = 256 * 1024;                        // 2 MiB of doubles: 512 pages
  auto& a = ipc::Array<double>::create(segment, "big", kLength, {policy});
  REQUIRE(reinterpret_cast<uintptr_t>(a.data()) % 4096 == 0);
  const size_t bytes = kLength * sizeof(double);
  auto placement = ipc::numa::page_placement(a.data(), bytes);
  CHECK(placement.total_pages == bytes / 4096);
  CHECK(placement.pages_on(0) == placement.total_pages);  // every page was touched at creation, after mbind
  CHECK(MemoryPolicy::of_address(a.data()) == policy);

  // Read without the element type, as `numa_mp inspect` does: the array's own policy, not the segment's default.
  const ipc::ArrayInfo info = ipc::inspect_array(segment, "big");
  CHECK(info.length == kLength);
  CHECK(info.element_bytes == sizeof(double));
  CHECK(info.data == a.data());
  CHECK(info.data_bytes == bytes);
  REQUIRE(info.policy.has_value());
  CHECK(*info.policy == policy);
  auto& plain = ipc::Array<int32_t>::create(segment, "plain", 10);
  const ipc::ArrayInfo plain_info = ipc::inspect_array(segment, "plain");
  CHECK_FALSE(plain_info.policy.has_value());
  CHECK(plain_info.length == 10);
  CHECK(plain_info.data == plain.data());
  CHECK_THROWS_AS(ipc::inspect_array(segment, "missing"), ipc::NotFound);
  (void)ipc::Lock::create(segment, "a lock");
  CHECK_THROWS_AS(ipc::inspect_array(segment, "a lock"), ipc::InvalidArgument);

  auto& same = ipc::Array<double>::open(segment, "big");
  CHECK(&same == &a);
  CHECK_THROWS_AS(ipc::Array<float>::open(segment, "big"), ipc::InvalidArgument);  // element size differs
  CHECK_THROWS_AS(ipc::Array<double>::open(segment, "missing"), ipc::NotFound);
}

TEST_CASE("an array built in caller memory with a policy needs page-aligned memory", "[array][numa]") {
  SharedMapping mem(1 << 20);
  ipc::ArrayOptions options{MemoryPolicy::bind({0})};
  auto& a = ipc::Array<int64_t>::construct_at(mem.base(), mem.bytes(), 1000, options);
  CHECK(MemoryPolicy::of_address(a.data()) == MemoryPolicy::bind({0}));
  CHECK_THROWS_AS(ipc::Array<int64_t>::construct_at(static_cast<char*>(mem.base()) + 64, 4096 * 4, 10, options),
                  ipc::InvalidArgument);
}

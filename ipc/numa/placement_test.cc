// Applying policies on this host and reading them back three ways: get_mempolicy, /proc/self/numa_maps and
// move_pages. Multi-node placement is checked by the VM suite (tests/numa_vm).
#include "ipc/numa/placement.h"

#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "ipc/base/error.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/topology.h"

using ipc::numa::MemoryPolicy;
using ipc::numa::Mode;

namespace {

struct Mapping {
  explicit Mapping(size_t n) : length(n) {
    addr = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(addr != MAP_FAILED);
    madvise(addr, length, MADV_NOHUGEPAGE);
  }
  ~Mapping() { munmap(addr, length); }
  void* addr;
  size_t length;
};

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

}  // namespace

TEST_CASE("an applied policy reads back the same through get_mempolicy and numa_maps", "[numa][placement]") {
  const int node = ipc::numa::Topology::online_nodes().first();
  struct Case {
    MemoryPolicy policy;
    std::string numa_maps;
  };
  const std::string n = std::to_string(node);
  std::vector<Case> cases = {
      {MemoryPolicy::interleave({node}), "interleave:" + n},
      {MemoryPolicy::bind({node}), "bind:" + n},
      {MemoryPolicy::preferred(node), "prefer:" + n},
      {MemoryPolicy::local(), "local"},
      {MemoryPolicy::parse("bind:" + n + "+static"), "bind=static:" + n},
      {MemoryPolicy::preferred_many({node}), "prefer (many):" + n},  // Linux >= 5.15; its name holds a space
      {MemoryPolicy::parse("bind:" + n + "+balancing"), "bind=balancing:" + n},  // Linux >= 5.12
  };
  for (auto& c : cases) {
    INFO(c.policy.to_string());
    Mapping m(16 * kPage);
    c.policy.apply(m.addr, m.length);
    CHECK(MemoryPolicy::of_address(m.addr) == c.policy);
    CHECK(ipc::numa::numa_maps_policy(m.addr) == c.numa_maps);
  }
}

TEST_CASE("page placement counts touched pages on their node and untouched ones as absent", "[numa][placement]") {
  const int node = ipc::numa::Topology::online_nodes().first();
  Mapping m(32 * kPage);
  MemoryPolicy::bind({node}).apply(m.addr, m.length);
  auto before = ipc::numa::page_placement(m.addr, m.length);
  CHECK(before.total_pages == 32);
  CHECK(before.pages_not_present == 32);
  std::memset(m.addr, 1, 8 * kPage);
  auto after = ipc::numa::page_placement(m.addr, m.length);
  CHECK(after.pages_on(node) == 8);
  CHECK(after.pages_not_present == 24);
}

TEST_CASE("applying a policy naming an absent node fails before any syscall", "[numa][placement]") {
  const int absent = ipc::numa::Topology::online_nodes().last() + 1;
  Mapping m(4 * kPage);
  try {
    MemoryPolicy::bind({absent}).apply(m.addr, m.length);
    FAIL("bind to an absent node was accepted");
  } catch (const ipc::numa::PolicyError& e) {
    CHECK(e.rule() == ipc::numa::PolicyRule::kNodeNotOnline);
  }
  // The mapping kept its default policy.
  CHECK(MemoryPolicy::of_address(m.addr) == MemoryPolicy());
}

TEST_CASE("weighted interleave is applied or refused as unsupported, never silently dropped", "[numa][placement]") {
  const int node = ipc::numa::Topology::online_nodes().first();
  Mapping m(4 * kPage);
  auto policy = MemoryPolicy::weighted_interleave({node});
  bool kernel_has_it = ipc::numa::Topology::discover().has_weighted_interleave();
  if (kernel_has_it) {
    policy.apply(m.addr, m.length);
    CHECK(MemoryPolicy::of_address(m.addr) == policy);
  } else {
    CHECK_THROWS_AS(policy.apply(m.addr, m.length), ipc::Unsupported);
  }
}

// NUMA placement of pool workers, checked on this host: each worker's CPU affinity read back from the kernel,
// the node each one reports, node hints honoured and stolen. (Page placement on real 2- and 4-node kernels is
// the NUMA VM suite's job.)
#include <catch2/catch.hpp>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "ipc/numa/topology.h"
#include "ipc/pool/pool.h"
#include "tests/support/pool_main.h"

namespace {

int cpu_now(int) { return sched_getcpu(); }

std::vector<int> affinity_of(int pid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(pid, sizeof set, &set) == 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::vector<int> allowed_on(const ipc::numa::Topology& t, int node) {
  std::vector<int> cpus;
  for (int c : t.node(node).cpus) {
    if (std::binary_search(t.allowed_cpus().begin(), t.allowed_cpus().end(), c)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

TEST_CASE("spread and pack pin every worker to the allowed CPUs of its node", "[pool][numa]") {
  const auto topo = ipc::numa::Topology::discover();
  for (auto placement : {ipc::Placement::spread(), ipc::Placement::pack()}) {
    ipc::PoolOptions o;
    o.start_method = ipc::test::kStartMethod;
    o.workers = 3;
    o.placement = placement;
    ipc::Pool pool(o);
    const auto places = pool.placement();
    REQUIRE(places.size() == 3);
    for (const auto& p : places) {
      INFO("worker " << p.pid << " on node " << p.node);
      REQUIRE(topo.online().contains(p.node));
      CHECK(p.cpus == allowed_on(topo, p.node));
      CHECK(affinity_of(p.pid) == p.cpus);  // what the kernel holds for the worker
    }
    // Tasks run on those CPUs.
    for (int cpu : pool.map(cpu_now, std::vector<int>(32, 0), 1)) {
      CHECK(topo.node_of_cpu(cpu) >= 0);
    }
    if (placement.strategy == ipc::Placement::Strategy::kSpread) {
      // Round-robin over the nodes that have CPUs for us.
      std::vector<int> nodes;
      for (const auto& n : topo.nodes()) {
        if (!allowed_on(topo, n.id).empty()) nodes.push_back(n.id);
      }
      for (size_t i = 0; i < places.size(); ++i) CHECK(places[i].node == nodes[i % nodes.size()]);
    }
  }
}

TEST_CASE("an unplaced pool reports no node and pins nothing", "[pool][numa]") {
  ipc::PoolOptions o;
  o.start_method = ipc::test::kStartMethod;
  o.workers = 2;
  ipc::Pool pool(o);
  for (const auto& p : pool.placement()) {
    CHECK(p.node == -1);
    CHECK(p.cpus.empty());
  }
}

TEST_CASE("a placement on a node this machine lacks is refused", "[pool][numa]") {
  ipc::PoolOptions o;
  o.workers = 1;
  o.placement = ipc::Placement::spread({1023});
  CHECK_THROWS_AS(ipc::Pool(o), ipc::InvalidArgument);
}

TEST_CASE("node hints run at home when they can, and are stolen rather than left waiting", "[pool][numa]") {
  const auto topo = ipc::numa::Topology::discover();
  const int home = topo.node_of_cpu(topo.allowed_cpus().front());
  ipc::PoolOptions o;
  o.start_method = ipc::test::kStartMethod;
  o.workers = 2;
  o.placement = ipc::Placement::spread({home});
  ipc::Pool pool(o);
  std::vector<ipc::Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(pool.apply_async_on(home, cpu_now, 0));
  for (auto& f : fs) CHECK(topo.node_of_cpu(f.get()) == home);
  CHECK(pool.hinted_at_home() == std::pair<uint64_t, uint64_t>{50, 50});
  // A node no worker is on: idle workers steal the task instead of leaving it queued for ever.
  ipc::PoolOptions plain;
  plain.start_method = ipc::test::kStartMethod;
  plain.workers = 1;
  ipc::Pool unplaced(plain);
  CHECK(unplaced.apply_async_on(home, cpu_now, 0).get(std::chrono::seconds(120)).has_value());
  CHECK(unplaced.hinted_at_home() == std::pair<uint64_t, uint64_t>{0, 1});
}

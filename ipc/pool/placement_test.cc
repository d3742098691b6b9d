// NUMA placement of pool workers, checked on this host: each worker's CPU affinity read back from the kernel,
// the node each one reports, node hints honoured and stolen. (Page placement on real 2- and 4-node kernels is
// the NUMA VM suite's job.)
#include <catch2/catch.hpp>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <tuple>
#include <vector>

#include "ipc/numa/topology.h"
#include "ipc/numa/placement.h"
#include "ipc/pool/pool.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "tests/support/pool_main.h"
#include "tests/support/test_support.h"

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

// Options for a pool of `workers` workers of this binary's start method, unplaced or placed on `node`.
ipc::PoolOptions unplaced(unsigned workers) {
  ipc::PoolOptions o;
  o.start_method = ipc::test::kStartMethod;
  o.workers = workers;
  return o;
}
ipc::PoolOptions placed_on(int node, unsigned workers) {
  ipc::PoolOptions o = unplaced(workers);
  o.placement = ipc::Placement::spread({node});
  return o;
}

ipc::Segment new_segment(size_t bytes) { return ipc::Segment::create(ipc::test::unique_name("pool-array"), bytes); }

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
  ipc::Pool pool(unplaced(2));
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
  ipc::PoolOptions o = placed_on(home, 2);
  ipc::Pool pool(o);
  std::vector<ipc::Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(pool.apply_async_on(home, cpu_now, 0));
  for (auto& f : fs) CHECK(topo.node_of_cpu(f.get()) == home);
  CHECK(pool.hinted_at_home() == std::pair<uint64_t, uint64_t>{50, 50});
  // A node no worker is on: idle workers steal the task instead of leaving it queued for ever.
  ipc::Pool anywhere(unplaced(1));
  CHECK(anywhere.apply_async_on(home, cpu_now, 0).get(std::chrono::seconds(120)).has_value());
  CHECK(anywhere.hinted_at_home() == std::pair<uint64_t, uint64_t>{0, 1});
}

// ---- scratch arenas ---------------------------------------------------------------------------------------------

namespace {

constexpr size_t kPageBytes = 4096;

// Allocates `bytes` from the worker's arena and touches them; returns what the arena held before (0 when the
// previous task's allocations were reset).
size_t use_scratch(size_t bytes) {
  auto& arena = ipc::worker_scratch();
  const size_t before = arena.used();
  auto span = arena.allocate_array<unsigned char>(bytes);
  for (size_t i = 0; i < span.size(); i += kPageBytes) span[i] = 1;
  return before;
}

std::tuple<uint64_t, int, int> scratch_facts(int) {
  auto& arena = ipc::worker_scratch();
  return {arena.capacity(), arena.node().value_or(-1), ipc::numa::Topology::discover().node_of_cpu(sched_getcpu())};
}

}  // namespace

TEST_CASE("each worker has a scratch arena on its node, reset when each task or chunk ends", "[pool][scratch]") {
  const auto topo = ipc::numa::Topology::discover();
  const int home = topo.node_of_cpu(topo.allowed_cpus().front());
  ipc::PoolOptions o = placed_on(home, 2);
  o.scratch_bytes = 8u << 20;
  ipc::Pool pool(o);
  for (size_t before : pool.map(use_scratch, std::vector<size_t>(40, 100000), 1)) CHECK(before == 0);
  // A chunk of several items shares one arena: the reset comes when the chunk ends.
  std::vector<size_t> in_chunk = pool.map(use_scratch, std::vector<size_t>(4, 1000), 4);
  CHECK(in_chunk[0] == 0);
  CHECK(in_chunk[3] >= 3000);
  for (auto [capacity, node, cpu_node] : pool.map(scratch_facts, std::vector<int>(8, 0), 1)) {
    CHECK(capacity >= (8u << 20));
    CHECK(node == (topo.node(home).has_memory ? home : -1));
    CHECK(cpu_node == home);
  }
  // A task that outgrows the arena fails alone; the next task finds it empty again.
  auto too_big = pool.apply_async(use_scratch, size_t{9} << 20);
  CHECK_THROWS_WITH(too_big.get(), Catch::Contains("ScratchExhausted"));
  CHECK(pool.apply(use_scratch, size_t{1000}) == 0);
}

TEST_CASE("the placement report gives the pages of each worker's queue and arena per node", "[pool][scratch]") {
  const auto topo = ipc::numa::Topology::discover();
  const int home = topo.node_of_cpu(topo.allowed_cpus().front());
  ipc::PoolOptions o = placed_on(home, 1);
  o.scratch_bytes = 4u << 20;
  o.pipe_bytes = 1u << 16;
  ipc::Pool pool(o);
  REQUIRE(pool.apply(use_scratch, size_t{1} << 20) == 0);  // 256 pages touched, kept across the reset
  const auto places = pool.placement();
  REQUIRE(places.size() == 1);
  const auto& p = places[0];
  INFO("queue " << p.queue_pages.to_string() << "; scratch " << p.scratch_pages.to_string());
  CHECK(p.scratch_pages.total_pages >= (4u << 20) / kPageBytes);
  CHECK(p.scratch_pages.pages_on(home) >= 256);
  CHECK(p.scratch_pages.pages_on(home) + p.scratch_pages.pages_not_present == p.scratch_pages.total_pages);
  CHECK(p.queue_pages.total_pages >= 2 * (1u << 16) / kPageBytes);
  CHECK(p.queue_pages.pages_on(home) > 0);
  CHECK(p.queue_pages.pages_on(home) + p.queue_pages.pages_not_present == p.queue_pages.total_pages);
}

TEST_CASE("a worker reserves its arena at its first worker_scratch() call, not when it starts", "[pool][scratch]") {
  ipc::PoolOptions o;
  o.start_method = ipc::test::kStartMethod;
  o.workers = 1;
  o.scratch_bytes = 4u << 20;
  ipc::Pool pool(o);
  // A task that never asks: nothing reserved (a worker that had reserved it would have said so before this result).
  REQUIRE(pool.apply(cpu_now, 0) >= 0);
  REQUIRE(pool.placement().size() == 1);
  CHECK(pool.placement().at(0).scratch_pages.total_pages == 0);
  // The first call reserves it, and the pool hears where it is before that task's result.
  REQUIRE(pool.apply(use_scratch, size_t{1000}) == 0);
  const auto scratch = pool.placement().at(0).scratch_pages;
  INFO("scratch " << scratch.to_string());
  CHECK(scratch.total_pages >= (4u << 20) / kPageBytes);
  CHECK(scratch.pages_not_present < scratch.total_pages);  // the page the task touched is there
  CHECK(pool.apply(use_scratch, size_t{1000}) == 0);        // reset after the task, as before
}

TEST_CASE("worker_scratch outside a worker, or in a pool without arenas, is a StateError", "[pool][scratch]") {
  CHECK_THROWS_AS(ipc::worker_scratch(), ipc::StateError);
  ipc::PoolOptions o;
  o.start_method = ipc::test::kStartMethod;
  o.workers = 1;
  o.scratch_bytes = 0;
  ipc::Pool pool(o);
  CHECK_THROWS_WITH(pool.apply(use_scratch, size_t{10}), Catch::Contains("StateError") && Catch::Contains("scratch_bytes = 0"));
  CHECK(pool.placement().at(0).scratch_pages.total_pages == 0);
}

// ---- map over a placed Array ---------------------------------------------------------------------------------

namespace {

// The sum of the chunk and where it ran; doubles each element (the workers write the shared array).
std::tuple<int64_t, size_t, int> sum_and_double(std::span<int64_t> chunk, size_t first) {
  int64_t sum = 0;
  for (auto& x : chunk) sum += x, x *= 2;
  return {sum, first, ipc::numa::Topology::discover().node_of_cpu(sched_getcpu())};
}

int64_t chunk_sum(std::span<int64_t> chunk) {
  int64_t sum = 0;
  for (auto x : chunk) sum += x;
  return sum;
}

}  // namespace

TEST_CASE("map_array runs f on each chunk of an Array in every worker, at its home node", "[pool][array]") {
  const auto topo = ipc::numa::Topology::discover();
  const int home = topo.node_of_cpu(topo.allowed_cpus().front());
  // Made after the pool started: the workers open the segment by name (every start method).
  ipc::PoolOptions o = placed_on(home, 2);
  ipc::Pool pool(o);
  auto segment = new_segment(8u << 20);
  ipc::ArrayOptions ao;
  if (topo.node(home).has_memory) ao.policy = ipc::numa::MemoryPolicy::bind({home});
  auto& array = ipc::Array<int64_t>::create(segment, "numbers", 100000, ao);
  for (size_t i = 0; i < array.size(); ++i) array[i] = static_cast<int64_t>(i);
  ipc::ArrayMapOptions mo;
  mo.chunk_elements = 4096;
  auto r = pool.map_array(sum_and_double, segment, array, mo);
  REQUIRE(r.results.size() == 25);
  REQUIRE(r.chunks == 25);
  int64_t total = 0;
  for (size_t c = 0; c < r.results.size(); ++c) {
    auto [sum, first, node] = r.results[c];
    CHECK(first == c * 4096);
    CHECK(node == home);
    total += sum;
  }
  CHECK(total == int64_t{100000} * 99999 / 2);
  CHECK(r.chunks_with_home == 25);
  CHECK(r.chunks_at_home == 25);
  for (size_t i = 0; i < array.size(); i += 997) CHECK(array[i] == 2 * static_cast<int64_t>(i));  // written in place
  // Default chunking, and locality off: the same sums, still counted.
  mo.chunk_elements.reset();
  mo.locality = false;
  auto plain = pool.map_array(chunk_sum, segment, array, mo);
  int64_t total2 = 0;
  for (auto s : plain.results) total2 += s;
  CHECK(total2 == 2 * total);
  CHECK(plain.chunks == plain.results.size());
  CHECK(plain.chunks >= 2);
}

TEST_CASE("map_array refuses an array outside the segment and chunk_elements 0", "[pool][array]") {
  ipc::Pool pool(unplaced(1));
  auto segment = new_segment(1u << 20);
  auto other = new_segment(1u << 20);
  auto& array = ipc::Array<int64_t>::create(other, "numbers", 100);
  CHECK_THROWS_AS(pool.map_array(chunk_sum, segment, array), ipc::InvalidArgument);
  ipc::ArrayMapOptions zero;
  zero.chunk_elements = 0;
  CHECK_THROWS_AS(pool.map_array(chunk_sum, other, array, zero), ipc::InvalidArgument);
  // A segment removed before the workers open it: the chunks fail with NotFound, the pool lives on.
  auto gone = new_segment(1u << 20);
  auto& lost = ipc::Array<int64_t>::create(gone, "numbers", 100);
  ipc::Segment::remove(gone.name());
  CHECK_THROWS_WITH(pool.map_array(chunk_sum, gone, lost), Catch::Contains("NotFound"));
  CHECK(pool.map_array(chunk_sum, other, array).results.size() >= 1);
}

namespace {

// Kills its own worker in the middle of the chunk that starts at element 4096 (after reading part of it).
int64_t sum_or_die(std::span<int64_t> chunk, size_t first) {
  int64_t sum = 0;
  for (size_t i = 0; i < chunk.size(); ++i) {
    if (first == 4096 && i == chunk.size() / 2) ::raise(SIGKILL);
    sum += chunk[i];
  }
  return sum;
}

}  // namespace

TEST_CASE("a worker killed inside a map_array chunk fails the map with WorkerLost; the pool maps again", "[pool][array]") {
  ipc::Pool pool(unplaced(2));
  auto segment = new_segment(1u << 20);
  auto& array = ipc::Array<int64_t>::create(segment, "numbers", 16384);
  for (size_t i = 0; i < array.size(); ++i) array[i] = 1;
  ipc::ArrayMapOptions mo;
  mo.chunk_elements = 4096;
  CHECK_THROWS_AS(pool.map_array(sum_or_die, segment, array, mo), ipc::WorkerLost);
  // The replacement opens the segment itself and the next map is whole.
  mo.chunk_elements = 1000;
  auto r = pool.map_array(chunk_sum, segment, array, mo);
  int64_t total = 0;
  for (auto s : r.results) total += s;
  CHECK(total == 16384);
  CHECK(pool.workers_started() >= 3);
}

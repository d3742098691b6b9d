// NUMA bandwidth demo: the same array read by one worker per node, with the array's pages placed three ways —
// bound to the first node, interleaved across all nodes, and bound to each worker's own node — showing the read
// bandwidth each placement gives and the pages-per-node evidence of where the memory was. Each node has a Pool of
// one worker placed (and pinned) on it; the worker opens the array's segment by name and returns what it measured.
//
//   ./bazelw run //examples:numa_bandwidth -- [--mib N]
//
// On a one-node machine every placement is local and the figures agree; on a multi-node machine remote reads
// (bind:0 seen from node 1) are slower and interleave sits between.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "examples/args.h"
#include "examples/stopwatch.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/pool/pool.h"
#include "ipc/segment/segment.h"

namespace {

using namespace ipc;

// Sums the array `passes` times; returns bytes read per second.
double read_bandwidth(const uint64_t* data, size_t count, int passes) {
  volatile uint64_t sink = 0;
  const examples::Stopwatch clock;
  for (int p = 0; p < passes; ++p) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; ++i) sum += data[i];
    sink = sink + sum;
  }
  return static_cast<double>(count * sizeof(uint64_t)) * passes / clock.seconds();
}

// The task: a worker opens the segment by name, as any process would, and reads its "data" block.
double read_segment(std::string segment_name, uint64_t count) {
  Segment segment = Segment::open(segment_name);
  const auto* data = static_cast<const uint64_t*>(segment.find_block("data", Segment::kRawBlock).ptr);
  read_bandwidth(data, count, 1);  // warm-up: maps the pages
  return read_bandwidth(data, count, 3);
}

struct NodeReader {
  int node;
  std::unique_ptr<Pool> pool;  // one worker, placed on `node`
};

// One segment with `policy`, filled, then read by each node's worker in turn. Prints a row per node.
void measure(std::vector<NodeReader>& readers, const std::string& label, const numa::MemoryPolicy& policy,
             size_t bytes) {
  SegmentOptions options;
  options.policy = policy;
  const std::string name = "numa-bandwidth-" + std::to_string(getpid());
  Segment segment = Segment::create(name, bytes + (1 << 20), options);
  auto* data =
      static_cast<uint64_t*>(segment.create_block("data", bytes, 4096, ipc::Segment::kRawBlock, [](void*) {}).ptr);
  const size_t count = bytes / sizeof(uint64_t);
  for (size_t i = 0; i < count; ++i) data[i] = i;  // first touch: the policy places every page now
  std::printf("%-22s pages per node: %s\n", label.c_str(), numa::page_placement(data, bytes).to_string().c_str());
  for (NodeReader& reader : readers) {
    const double bw = reader.pool->apply(read_segment, name, uint64_t{count});
    std::printf("    worker on node %d reads %.2f GB/s\n", reader.node, bw / 1e9);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Args args(argc, argv, {{"mib", 256}});
  const size_t mib = args.get("mib");
  const numa::Topology topology = numa::Topology::discover();
  std::printf("%d node(s) with memory: %s; array of %zu MiB\n", topology.with_memory().count(),
              topology.with_memory().to_string().c_str(), mib);
  std::vector<NodeReader> readers;
  for (const auto& node : topology.nodes()) {
    if (node.cpus.empty()) continue;
    PoolOptions options;
    options.workers = 1;
    options.placement = Placement::spread({node.id});
    readers.push_back({node.id, std::make_unique<Pool>(options)});
  }
  const size_t bytes = mib << 20;
  const int first = topology.with_memory().first();
  measure(readers, "bind:" + std::to_string(first), numa::MemoryPolicy::bind({first}), bytes);
  measure(readers, "interleave:" + topology.with_memory().to_string(),
          numa::MemoryPolicy::interleave(topology.with_memory()), bytes);
  for (const auto& node : topology.nodes()) {
    if (!node.has_memory) continue;
    measure(readers, "bind:" + std::to_string(node.id) + " (local to it)", numa::MemoryPolicy::bind({node.id}),
            bytes);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "numa_bandwidth: %s\n", e.what());
  return 1;
}

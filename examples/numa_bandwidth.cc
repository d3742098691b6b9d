// NUMA bandwidth demo: the same array read by one worker per node, with the array's pages placed three ways —
// bound to node 0, interleaved across all nodes, and bound to each worker's own node — showing the read bandwidth
// each placement gives and the pages-per-node evidence of where the memory was.
//
//   ./bazelw run //examples:numa_bandwidth -- [MiB per array, default 256]
//
// On a one-node machine every placement is local and the figures agree; on a multi-node machine remote reads
// (bind:0 seen from node 1) are slower and interleave sits between.
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/segment/segment.h"

namespace {

using namespace ipc;

// Pins the calling process to the CPUs of `node`.
void pin_to_node(const numa::NodeInfo& node) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : node.cpus) CPU_SET(cpu, &set);
  if (!node.cpus.empty() && sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");
}

// Sums the array `passes` times; returns bytes read per second.
double read_bandwidth(const uint64_t* data, size_t count, int passes) {
  volatile uint64_t sink = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int p = 0; p < passes; ++p) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; ++i) sum += data[i];
    sink = sink + sum;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(count * sizeof(uint64_t)) * passes / seconds;
}

// One segment with `policy`, filled, then read by one pinned worker per node in turn. Prints a row per node.
void measure(const numa::Topology& topology, const std::string& label, const numa::MemoryPolicy& policy,
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
  for (const auto& node : topology.nodes()) {
    if (node.cpus.empty()) continue;
    int fds[2];
    if (pipe(fds) != 0) return;
    Process worker = Process::start([&] {
      close(fds[0]);
      pin_to_node(node);
      Segment mine = Segment::open(name);  // as any worker process would
      auto* mine_data = static_cast<const uint64_t*>(mine.find_block("data", ipc::Segment::kRawBlock).ptr);
      read_bandwidth(mine_data, count, 1);  // warm-up
      double bw = read_bandwidth(mine_data, count, 3);
      (void)!write(fds[1], &bw, sizeof bw);
    });
    close(fds[1]);
    double bw = 0;
    if (read(fds[0], &bw, sizeof bw) != sizeof bw) bw = -1;
    close(fds[0]);
    (void)worker.join();
    std::printf("    worker on node %d reads %.2f GB/s\n", node.id, bw / 1e9);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 256;
  if (mib == 0) {
    std::fprintf(stderr, "usage: %s [MiB per array, > 0]\n", argv[0]);
    return 2;
  }
  const numa::Topology topology = numa::Topology::discover();
  std::printf("%d node(s) with memory: %s; array of %zu MiB\n", topology.with_memory().count(),
              topology.with_memory().to_string().c_str(), mib);
  const size_t bytes = mib << 20;
  try {
    const int first = topology.with_memory().first();
    measure(topology, "bind:" + std::to_string(first), numa::MemoryPolicy::bind({first}), bytes);
    measure(topology, "interleave:" + topology.with_memory().to_string(),
            numa::MemoryPolicy::interleave(topology.with_memory()), bytes);
    for (const auto& node : topology.nodes()) {
      if (!node.has_memory) continue;
      measure(topology, "bind:" + std::to_string(node.id) + " (local to it)", numa::MemoryPolicy::bind({node.id}),
              bytes);
    }
  } catch (const ipc::Error& e) {
    std::fprintf(stderr, "numa_bandwidth: %s\n", e.what());
    return 1;
  }
  return 0;
}

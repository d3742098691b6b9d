// Quick start: a shared-memory segment interleaved across every NUMA node of this machine, filled by worker
// processes, then checked by the parent, with the pages-per-node evidence of where the memory really is.
//
//   ./bazelw run //examples:quickstart
#include <unistd.h>

#include <cstdio>
#include <cstdint>
#include <numeric>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/segment/segment.h"

int main() {
  using namespace ipc;
  const numa::Topology topology = numa::Topology::discover();
  std::printf("%s\n", topology.describe().c_str());

  // Interleave is the usual choice for data every worker reads: bandwidth from all nodes at once.
  SegmentOptions options;
  options.policy = numa::MemoryPolicy::interleave(topology.with_memory());
  const std::string name = "quickstart-" + std::to_string(getpid());
  constexpr size_t kCount = 4 << 20;  // 32 MiB of uint64_t
  Segment segment = Segment::create(name, kCount * sizeof(uint64_t) + (1 << 20), options);
  std::printf("segment %s: %zu MiB, policy %s\n", name.c_str(), segment.size_bytes() >> 20,
              segment.policy().to_string().c_str());

  // The array is a named block: any process can find it by name; here the workers inherit the mapping.
  auto* data = static_cast<uint64_t*>(
      segment.create_block("numbers", kCount * sizeof(uint64_t), 4096, ipc::Segment::kRawBlock, [](void*) {}).ptr);

  const int workers = static_cast<int>(cpu_count());  // the CPUs this process may use (affinity, cgroup quota)
  std::vector<Process> children;
  for (int w = 0; w < workers; ++w) {
    children.push_back(Process::start([&, w] {
      // Each worker opens the segment by name, as an unrelated process would, and fills its slice.
      Segment mine = Segment::open(name);
      auto* numbers = static_cast<uint64_t*>(mine.find_block("numbers", ipc::Segment::kRawBlock).ptr);
      for (size_t i = kCount * w / workers; i < kCount * (w + 1) / workers; ++i) numbers[i] = i;
    }));
  }
  for (Process& child : children) {
    if (child.join() != 0) {
      std::fprintf(stderr, "%s failed (exit code %d)\n", child.name().c_str(), *child.exitcode());
      return 1;
    }
  }

  const uint64_t sum = std::accumulate(data, data + kCount, uint64_t{0});
  const uint64_t expected = kCount * (kCount - 1) / 2;
  std::printf("%d workers filled %zu numbers: sum %llu (%s)\n", workers, kCount, static_cast<unsigned long long>(sum),
              sum == expected ? "correct" : "WRONG");
  std::printf("pages per node: %s\n", numa::page_placement(data, kCount * sizeof(uint64_t)).to_string().c_str());
  return sum == expected ? 0 : 1;
}

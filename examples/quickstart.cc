// Quick start: a Pool of worker processes maps a CPU-bound function over a large shared Array whose pages are
// interleaved across every NUMA node, checks the result against one process doing the same work, and prints the
// pages per node of the array (where the memory really is) and the speed-up over one process.
//
//   ./bazelw run //examples:quickstart -- [--count N] [--workers N]
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "examples/args.h"
#include "examples/stopwatch.h"
#include "ipc/base/process.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/pool/pool.h"
#include "ipc/shared/array.h"

namespace {

// The CPU-bound work: steps of the Collatz sequence from x down to 1.
uint64_t collatz_steps(uint64_t x) {
  uint64_t steps = 0;
  for (; x > 1; ++steps) x = x % 2 == 0 ? x / 2 : 3 * x + 1;
  return steps;
}

uint64_t sum_steps(const uint64_t* numbers, uint64_t begin, uint64_t end) {
  uint64_t sum = 0;
  for (uint64_t i = begin; i < end; ++i) sum += collatz_steps(numbers[i]);
  return sum;
}

// The task: sum_steps over a slice. A worker finds the array by its segment's name, as any process could (a task
// carries data, not pointers), and opens the segment once.
uint64_t sum_slice(std::string segment_name, uint64_t begin, uint64_t end) {
  static ipc::Segment segment = ipc::Segment::open(segment_name);
  static const auto& numbers = ipc::Array<uint64_t>::open(segment, "numbers");
  return sum_steps(numbers.data(), begin, end);
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Args args(argc, argv, {{"count", 4u << 20}, {"workers", uint64_t{ipc::cpu_count()}}});
  const size_t count = args.get("count");
  const auto topology = ipc::numa::Topology::discover();
  std::printf("%s\n", topology.describe().c_str());

  // The array's pages are interleaved over the nodes with memory: every worker reads from all of them at once.
  const ipc::ArrayOptions interleaved{ipc::numa::MemoryPolicy::interleave(topology.with_memory())};
  const std::string name = "quickstart-" + std::to_string(getpid());  // removed when `segment` is destroyed
  ipc::Segment segment =
      ipc::Segment::create(name, ipc::Array<uint64_t>::bytes_needed(count, interleaved) + (1 << 20));
  auto& numbers = ipc::Array<uint64_t>::create(segment, "numbers", count, interleaved);
  std::iota(numbers.data(), numbers.data() + count, uint64_t{1});
  std::printf("array of %zu numbers (%zu MiB), policy %s, pages per node: %s\n", count, count * 8 >> 20,
              interleaved.policy->to_string().c_str(),
              ipc::numa::page_placement(numbers.data(), count * sizeof(uint64_t)).to_string().c_str());

  examples::Stopwatch clock;
  const uint64_t expected = sum_steps(numbers.data(), 0, count);
  const double one_process = clock.seconds();

  ipc::PoolOptions options;
  options.workers = static_cast<unsigned>(args.get("workers"));
  ipc::Pool pool(options);
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> slices;  // 16 slices per worker: the load balances
  const size_t n_slices = 16 * size_t{pool.size()};
  for (size_t s = 0; s < n_slices; ++s) slices.emplace_back(name, count * s / n_slices, count * (s + 1) / n_slices);
  clock.restart();
  const std::vector<uint64_t> sums = pool.starmap(sum_slice, slices);
  const double in_pool = clock.seconds();
  const uint64_t total = std::accumulate(sums.begin(), sums.end(), uint64_t{0});

  std::printf("Collatz steps of 1..%zu: %llu with %u workers, %llu in one process: %s\n", count,
              static_cast<unsigned long long>(total), pool.size(), static_cast<unsigned long long>(expected),
              total == expected ? "equal" : "DIFFERENT");
  std::printf("one process %.3f s, pool %.3f s: speed-up x%.2f\n", one_process, in_pool, one_process / in_pool);
  return total == expected ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "quickstart: %s\n", e.what());
  return 1;
}

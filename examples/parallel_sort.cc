// Parallel sort: a large array of random keys in a segment interleaved across the NUMA nodes is sorted by a Pool.
// Each worker sorts one run of it in place (the workers map the segment: no key crosses a pipe), then rounds of
// pairwise merges between the array and a scratch array of the same size, each merge split into pieces that the
// workers take in parallel (merge path: a binary search finds where each piece starts in both runs). The result
// is checked sorted and equal to std::sort of a copy of the input (so it is a permutation of the input), and both
// wall times and the speed-up are printed.
//
//   ./bazelw run //examples:parallel_sort -- [--count N] [--workers N]
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "examples/args.h"
#include "examples/stopwatch.h"
#include "ipc/base/process.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/pool/pool.h"
#include "ipc/shared/array.h"

namespace {

// The two arrays as a worker sees them: opened by the segment's name, once per worker process.
std::pair<uint64_t*, uint64_t*> keys_and_scratch(const std::string& segment_name) {
  static ipc::Segment segment = ipc::Segment::open(segment_name);
  static std::pair<uint64_t*, uint64_t*> arrays{ipc::Array<uint64_t>::open(segment, "keys").data(),
                                                ipc::Array<uint64_t>::open(segment, "scratch").data()};
  return arrays;
}

// Task: sorts keys[begin, end) in place.
uint64_t sort_run(std::string segment_name, uint64_t begin, uint64_t end) {
  uint64_t* keys = keys_and_scratch(segment_name).first;
  std::sort(keys + begin, keys + end);
  return end - begin;
}

// Task: merges src[a_begin, a_end) and src[b_begin, b_end) into dst from `out` on, src and dst being keys and
// scratch (or, with from_scratch, the other way round).
uint64_t merge_piece(std::string segment_name, bool from_scratch, uint64_t a_begin, uint64_t a_end, uint64_t b_begin,
                     uint64_t b_end, uint64_t out) {
  auto [src, dst] = keys_and_scratch(segment_name);
  if (from_scratch) std::swap(src, dst);
  std::merge(src + a_begin, src + a_end, src + b_begin, src + b_end, dst + out);
  return (a_end - a_begin) + (b_end - b_begin);
}

// How many of the first d outputs of std::merge(a[0, m), b[0, n)) come from a (a wins ties, as in std::merge).
size_t from_a(size_t d, const uint64_t* a, size_t m, const uint64_t* b, size_t n) {
  size_t lo = d > n ? d - n : 0, hi = std::min(d, m);
  while (lo < hi) {  // the first i with b[d - i - 1] < a[i]
    const size_t i = (lo + hi) / 2;
    if (b[d - i - 1] < a[i]) hi = i; else lo = i + 1;
  }
  return lo;
}

using Run = std::pair<uint64_t, uint64_t>;  // [begin, end)
using Piece = std::tuple<std::string, bool, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t>;

// One round: merges runs pairwise from src into the other array, each pair as `pieces` tasks. The merged runs.
std::vector<Run> merge_round(ipc::Pool& pool, const std::string& name, bool from_scratch, const uint64_t* src,
                             const std::vector<Run>& runs, size_t pieces) {
  std::vector<Piece> tasks;
  std::vector<Run> merged;
  for (size_t r = 0; r < runs.size(); r += 2) {
    const auto [a0, a1] = runs[r];
    const auto [b0, b1] = r + 1 < runs.size() ? runs[r + 1] : Run{a1, a1};  // an odd run out is copied
    const size_t m = a1 - a0, n = b1 - b0;
    for (size_t p = 0; p < pieces; ++p) {
      const size_t d0 = (m + n) * p / pieces, d1 = (m + n) * (p + 1) / pieces;
      const size_t i0 = from_a(d0, src + a0, m, src + b0, n), i1 = from_a(d1, src + a0, m, src + b0, n);
      tasks.emplace_back(name, from_scratch, a0 + i0, a0 + i1, b0 + (d0 - i0), b0 + (d1 - i1), a0 + d0);
    }
    merged.emplace_back(a0, b1);
  }
  (void)pool.starmap(merge_piece, tasks, 1);
  return merged;
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Args args(argc, argv, {{"count", 1u << 23}, {"workers", uint64_t{ipc::cpu_count()}}});
  const size_t count = args.get("count");
  const auto topology = ipc::numa::Topology::discover();
  const ipc::ArrayOptions interleaved{ipc::numa::MemoryPolicy::interleave(topology.with_memory())};
  const std::string name = "parallel-sort-" + std::to_string(getpid());
  ipc::Segment segment =
      ipc::Segment::create(name, 2 * ipc::Array<uint64_t>::bytes_needed(count, interleaved) + (1 << 20));
  uint64_t* keys = ipc::Array<uint64_t>::create(segment, "keys", count, interleaved).data();
  uint64_t* scratch = ipc::Array<uint64_t>::create(segment, "scratch", count, interleaved).data();
  std::mt19937_64 random(42);  // keys in [0, count): about a third of them repeat, so ties are sorted too
  std::generate(keys, keys + count, [&] { return std::uniform_int_distribution<uint64_t>(0, count - 1)(random); });
  std::printf("%zu random keys (%zu MiB) and a scratch array, policy %s, pages per node: %s\n", count,
              count * 8 >> 20, interleaved.policy->to_string().c_str(),
              ipc::numa::page_placement(keys, count * sizeof(uint64_t)).to_string().c_str());

  std::vector<uint64_t> reference(keys, keys + count);
  examples::Stopwatch clock;
  std::sort(reference.begin(), reference.end());
  const double one_process = clock.seconds();

  ipc::PoolOptions options;
  options.workers = static_cast<unsigned>(args.get("workers"));
  ipc::Pool pool(options);
  std::vector<Run> runs;  // one per worker
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> sort_tasks;
  for (size_t w = 0; w < pool.size(); ++w) {
    runs.emplace_back(count * w / pool.size(), count * (w + 1) / pool.size());
    sort_tasks.emplace_back(name, runs.back().first, runs.back().second);
  }
  clock.restart();
  (void)pool.starmap(sort_run, sort_tasks, 1);
  const double sorting = clock.seconds();
  bool in_scratch = false;
  for (; runs.size() > 1; in_scratch = !in_scratch) {
    runs = merge_round(pool, name, in_scratch, in_scratch ? scratch : keys, runs, pool.size());
  }
  const double in_pool = clock.seconds();

  const uint64_t* sorted = in_scratch ? scratch : keys;
  const bool ordered = std::is_sorted(sorted, sorted + count);
  const bool same = std::equal(sorted, sorted + count, reference.begin());
  std::printf("%u workers: sorted: %s; the same keys as std::sort of the input: %s\n", pool.size(),
              ordered ? "yes" : "NO", same ? "yes" : "NO");
  std::printf("std::sort %.3f s, pool %.3f s (runs sorted %.3f s, merged %.3f s): speed-up x%.2f\n", one_process,
              in_pool, sorting, in_pool - sorting, one_process / in_pool);
  return ordered && same ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "parallel_sort: %s\n", e.what());
  return 1;
}

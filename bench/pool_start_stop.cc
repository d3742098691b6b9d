// bench/pool_start_stop.cc: a whole program that starts a pool of 2 workers, runs one trivial task, closes and
// joins it, beside the same in Python:
//   pool_start_stop [fork|forkserver|exec]            (default fork; forkserver times the fork server's start too)
//   pool_start_stop [fork|forkserver|exec] --rounds N
//   python3 -c 'import multiprocessing as mp; p = mp.get_context("fork").Pool(2); p.map(abs, [1]); p.close(); p.join()'
// Without --rounds: one round, timed from outside (process start-up included). With --rounds N: one untimed round,
// then N rounds timed here, printed one a line as "ms <milliseconds>", then this process's footprint as it was
// when the first timed pool forked its workers: "footprint <VmRSS kB> <VmSize kB> <mappings>". //bench:all runs
// this mode for its start rows, so that ours is measured in a process as small as the fresh interpreter
// Python's figure comes from (fork copies page tables: its cost grows with the forking process's mappings).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "ipc/pool/init.h"
#include "ipc/pool/pool.h"

namespace {
int inc(int x) { return x + 1; }

// One round: start, one apply, close, join. Returns false when the task's result was wrong.
bool round_trip(const ipc::PoolOptions& options) {
  ipc::Pool pool(options);
  const int two = pool.apply(inc, 1);
  pool.close();
  pool.join();
  return two == 2;
}

// VmRSS and VmSize (kB) of this process, and its count of mappings, printed as one "footprint" line.
void print_footprint() {
  unsigned long rss_kb = 0, size_kb = 0, mappings = 0;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss_kb = std::stoul(line.substr(6));
    if (line.rfind("VmSize:", 0) == 0) size_kb = std::stoul(line.substr(7));
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) ++mappings;
  std::printf("footprint %lu %lu %lu\n", rss_kb, size_kb, mappings);
}
}  // namespace

int main(int argc, char** argv) {
  ipc::init(argc, argv);  // an exec'd worker runs here
  const std::string method = argc > 1 ? argv[1] : "fork";
  int rounds = 0;
  if (argc == 4 && std::strcmp(argv[2], "--rounds") == 0) rounds = std::atoi(argv[3]);
  ipc::PoolOptions options;
  options.workers = 2;
  if (method == "forkserver") {
    ipc::start_fork_server();
    options.start_method = ipc::StartMethod::kForkServer;
  } else if (method == "exec") {
    options.start_method = ipc::StartMethod::kExec;
  } else if (method != "fork" || (argc > 2 && rounds <= 0)) {
    std::fprintf(stderr, "usage: %s [fork|forkserver|exec] [--rounds N (N >= 1)]\n", argv[0]);
    return 2;
  }
  if (rounds == 0) return round_trip(options) ? 0 : 1;
  if (!round_trip(options)) return 1;  // untimed: first touches, as Python's peer's untimed first round
  for (int i = 0; i < rounds; ++i) {
    if (i == 0) print_footprint();
    const auto t0 = std::chrono::steady_clock::now();
    if (!round_trip(options)) return 1;
    std::printf("ms %.4f\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return 0;
}

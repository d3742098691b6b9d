// bench/pool_apply_tasks.cc: a whole program that runs `rounds` x (apply_async x `tasks`, then get each) on a pool
// of 2 forked workers, the pool group's apply_async row alone, for counting what a task costs without the rest of
// the bench around it: instructions (valgrind --tool=callgrind --trace-children=yes), system calls (strace -c -f),
// faults. Prints tasks/s of each round.
//   pool_apply_tasks [tasks (default 20000)] [rounds (default 1)]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ipc/pool/init.h"
#include "ipc/pool/pool.h"

namespace {
int inc(int x) { return x + 1; }
}  // namespace

int main(int argc, char** argv) {
  ipc::init(argc, argv);
  const int tasks = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 1;
  if (tasks <= 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: %s [tasks >= 1] [rounds >= 1]\n", argv[0]);
    return 2;
  }
  ipc::PoolOptions options;
  options.workers = 2;
  ipc::Pool pool(options);
  for (int r = 0; r < rounds; ++r) {
    std::vector<ipc::Future<int>> futures;
    futures.reserve(static_cast<size_t>(tasks));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < tasks; ++i) futures.push_back(pool.apply_async(inc, i));
    long long sum = 0;
    for (auto& f : futures) sum += f.get();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    if (sum != static_cast<long long>(tasks) * (tasks + 1) / 2) {
      std::fprintf(stderr, "wrong sum %lld\n", sum);
      return 1;
    }
    std::printf("tasks/s %.0f\n", tasks / dt.count());
  }
  pool.close();
  pool.join();
  return 0;
}

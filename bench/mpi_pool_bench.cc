// bench/mpi_pool_bench.cc: the same maps on ipc::Pool and on ipc::mpi::Pool over the ranks it was started on, one
// run (issue 16). bench/mpi_pool_bench.sh runs it on 1 and on 3 ranks of this host and prints the table:
//   ./bazelw run --config=mpi //bench:mpi_pool_bench
// Figures (medians of --reps repetitions), each for the local pool and for the MPI pool:
//   map of 20k x -> x+1, chunksize 1         tasks/s: what a chunk costs (the pool's round trip, MPI's on top)
//   map of 1M x -> x+1, chunksize 250        tasks/s: many tasks per chunk, the per-chunk cost spread thin
//   map of 1 ms CPU tasks, chunksize 1       tasks/s: real work (on 3 ranks of a 2-CPU host, 3x the workers share
//                                            the same CPUs: no speed-up is possible there)
//   apply(...).get() one at a time           us per round trip, by the rank that ran it (the tasks go to the
//                                            ranks in turn): the MPI overhead per chunk is a remote rank's minus
//                                            the local pool's
//   2 s with the pool open and idle          CPU ms per second of rank 0's process (its MPI thread polls)
// Output: "RESULT<TAB>figure<TAB>pool<TAB>value<TAB>unit" lines; the script lays them out.
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "ipc/pool/mpi/pool.h"
#include "ipc/pool/pool.h"

namespace {

using Clock = std::chrono::steady_clock;

int inc(int x) { return x + 1; }
int cpu_ms(int ms) {
  // Busy for `ms` of this process's CPU time (not wall time: a preempted worker does not finish early).
  timespec t0, t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  do {
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000.0 + (t.tv_nsec - t0.tv_nsec) / 1e6 < ms);
  return ms;
}
int rank_of(int) { return ipc::mpi::rank(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1 : v[v.size() / 2];
}

void result(const std::string& figure, const std::string& pool, double value, const std::string& unit) {
  std::printf("RESULT\t%s\t%s\t%.6g\t%s\n", figure.c_str(), pool.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

template <typename Pool>
void measure(Pool& pool, const std::string& name, int reps) {
  (void)pool.map(inc, std::vector<int>(1000, 1), 1);  // warm up: every worker has run a task
  const auto tasks_per_second = [&](const std::string& figure, auto f, int n, int value, size_t chunksize) {
    const std::vector<int> in(static_cast<size_t>(n), value);
    std::vector<double> rates;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      const auto out = pool.map(f, in, chunksize);
      rates.push_back(n / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    result(figure, name, median(rates), "tasks/s");
  };
  tasks_per_second("map of 20k x -> x+1, chunksize 1", inc, 20000, 1, 1);
  tasks_per_second("map of 1M x -> x+1, chunksize 250", inc, 1000000, 1, 250);
  tasks_per_second("map of 1 ms CPU tasks, chunksize 1", cpu_ms, 200 * static_cast<int>(pool.size()), 1, 1);

  std::map<int, std::vector<double>> round_trips;  // rank -> us
  for (int i = 0; i < 300 * reps; ++i) {
    const auto t0 = Clock::now();
    const int rank = pool.apply(rank_of, i);
    round_trips[rank].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::vector<double> remote;
  for (auto& [rank, us] : round_trips) {
    if (rank != 0) remote.insert(remote.end(), us.begin(), us.end());
  }
  result("apply().get() round trip, rank 0's workers", name, median(round_trips[0]), "us");
  if (!remote.empty()) result("apply().get() round trip, another rank's workers", name, median(remote), "us");

  // What an open, idle pool costs rank 0 (its MPI thread polls; the local pool's supervisor sleeps in poll(2)).
  const auto cpu_ms = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
  };
  const double before = cpu_ms();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  result("CPU of rank 0's process, pool open and idle", name, (cpu_ms() - before) / 2, "ms/s");
}

}  // namespace

int main(int argc, char** argv) {
  ipc::mpi::init(argc, argv);
  unsigned workers = 2;
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--workers") == 0) workers = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  }
  ipc::PoolOptions o;
  o.workers = workers;
  o.start_method = ipc::StartMethod::kForkServer;  // as every pool's under MPI: the local pool is the same pool
  {
    ipc::Pool local(o);
    measure(local, "local ipc::Pool", reps);
  }
  const int ranks = ipc::mpi::world_size();
  ipc::mpi::Pool pool(o);
  measure(pool, "ipc::mpi::Pool, " + std::to_string(ranks) + (ranks == 1 ? " rank" : " ranks"), reps);
  return 0;
}

// A program whose ranks die in a chosen way, run by rank_death_test.sh under mpirun:
//   rank_death_program ok                 a map over every rank, then "rank 0: done", exit 0
//   rank_death_program kill-serving       a task kills its rank (rank 1) with SIGKILL in the middle of a map
//   rank_death_program abort-serving      the same with SIGABRT
//   rank_death_program term-serving-idle  rank 2 gets SIGTERM while rank 0 waits on nothing (sleeps)
//   rank_death_program kill-root          rank 0 SIGKILLs itself while every rank runs its tasks
//   rank_death_program exit-root          rank 0 calls exit(3) while every rank runs 20 s tasks
// Rank 0 prints "rank 0: ..." lines; "rank 0: still running" means the job outlived a dead rank.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ipc/pool/mpi/pool.h"
#include "ipc/pool/mpi/started_marks.h"

namespace {

int parent_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  int ppid = -1;
  std::sscanf(line.c_str() + line.rfind(')') + 1, " %*c %d", &ppid);
  return ppid;
}

// In a worker on rank `rank`: sends `sig` to that rank's process (the worker's parent is its rank's fork server,
// whose parent is the rank); elsewhere nothing. Then works a while, as the other tasks do.
int signal_rank(int rank, int sig) {
  if (ipc::mpi::rank() == rank) ::kill(parent_of(::getppid()), sig);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return ipc::mpi::rank();
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// 20 s tasks that mark their start, three per worker of every rank: every rank stays busy.
std::vector<std::tuple<std::string, int>> busy_tasks(const ipc::mpi::testing::StartedMarks& started,
                                                     const ipc::mpi::Pool& pool) {
  return std::vector<std::tuple<std::string, int>>(3 * pool.size(), {started.dir, 20000});
}

int fail(const char* why) {
  std::fprintf(stderr, "rank_death_program: %s\n", why);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  ipc::mpi::init(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "ok";
  ipc::PoolOptions options;
  options.workers = 2;
  ipc::mpi::Pool pool(options);
  std::printf("rank 0: a pool of %u workers on %d ranks\n", pool.size(), ipc::mpi::world_size());
  std::fflush(stdout);
  if (mode == "ok") {
    const auto out = pool.map(sleep_ms, std::vector<int>(30, 10), 1);
    std::printf("rank 0: done (%zu results)\n", out.size());
    return 0;
  }
  if (mode == "kill-serving" || mode == "abort-serving") {
    std::vector<std::pair<int, int>> tasks(60, {1, mode == "kill-serving" ? SIGKILL : SIGABRT});
    (void)pool.starmap(signal_rank, tasks, 1);
  } else if (mode == "term-serving-idle") {
    for (int r = 0; r < ipc::mpi::world_size(); ++r) (void)pool.apply_async(signal_rank, 2, SIGTERM);
    std::this_thread::sleep_for(std::chrono::seconds(60));
  } else if (mode == "kill-root") {
    const ipc::mpi::testing::StartedMarks started;
    auto f = pool.starmap_async(ipc::mpi::testing::mark_started_then_sleep, busy_tasks(started, pool), 1);
    if (!started.wait_for(pool.size(), std::chrono::seconds(60))) return fail("tasks did not start on every rank");
    ::raise(SIGKILL);
  } else if (mode == "exit-root") {
    const ipc::mpi::testing::StartedMarks started;
    auto f = pool.starmap_async(ipc::mpi::testing::mark_started_then_sleep, busy_tasks(started, pool), 1);
    if (!started.wait_for(pool.size(), std::chrono::seconds(60))) return fail("tasks did not start on every rank");
    std::printf("rank 0: exit(3) with every rank busy\n");
    std::fflush(stdout);
    std::exit(3);
  } else {
    std::fprintf(stderr, "rank_death_program: unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::printf("rank 0: still running\n");
  return 0;
}

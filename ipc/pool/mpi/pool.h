// ipc/pool/mpi/pool.h: the same Pool over MPI ranks (Open MPI), as mpi4py.futures / mpi4py.util.pool give Python.
//
//   int square(int x) { return x * x; }
//   int main(int argc, char** argv) {
//     ipc::mpi::init(argc, argv);              // ranks 1..N-1 serve here, and exit when rank 0 does
//     ipc::mpi::Pool pool;                     // rank 0: a local ipc::Pool on every rank, tasks spread over them
//     std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});
//   }
//   mpirun --bind-to none -np 3 ./program      or      ./program      (alone: an ipc::Pool of this machine)
//
// The API is ipc::Pool's task methods (detail::PoolMethods: apply_async, map, starmap, imap, imap_unordered, ...)
//   and close/join/terminate, with their semantics; PoolOptions apply to each rank's pool (`workers` per rank).
//   Not here: map_array, apply_async_on, placement(), worker_pids() (one host's). docs/mpi.md has the design.
// Threads: every method from any thread. Completion callbacks of tasks run on another rank run on rank 0's MPI
//   thread: keep them short, and do not wait in them for tasks of the same pool.
// Processes: rank 0 runs main; the other ranks stay in init() serving its pools. Under MPI every worker is
//   started by the fork server init() started before MPI_Init (kFork is taken as kForkServer): tasks and the
//   initializer are plain functions, and every rank runs the same executable (checked when a pool opens).
// Lifetime: the destructor terminates every rank's workers (close() and join() to finish the work). When rank 0's
//   program ends, the other ranks end their pools and exit; a rank that dies ends the whole job (mpirun names it).
// Errors: as ipc::Pool's, from any rank: TaskError (type and message as locally), WorkerLost and TaskTimeout
//   ("rank r: " in the message), PoolTerminated. A rank's failure to start its pool is thrown by the constructor
//   ("rank r: ..."). StateError: a Pool under mpirun without init(). InvalidArgument: a closure as the
//   initializer, a task of 2 GiB or more.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "ipc/pool/mpi/detail/rank_pool.h"
#include "ipc/pool/pool.h"

namespace ipc::mpi {

// The first line of main (it calls ipc::init and ipc::start_fork_server for you). Under mpirun: initialises MPI;
// on ranks other than 0 it serves rank 0's pools and never returns (the process exits when rank 0 ends). Without
// mpirun: returns at once. Exec'd pool workers run in it and never return. Once, from the main thread.
void init(int argc, char** argv);

// This process's rank: also in a pool worker, which reports the rank it works for; 0 without mpirun.
int rank();
// The ranks of the job; 1 without mpirun.
int world_size();

class Pool : public ipc::detail::PoolMethods {
 public:
  // Starts a pool on every rank and waits until each has its workers. Throws the first rank's failure.
  explicit Pool(PoolOptions options = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Workers of each rank (index = rank); size() is their sum.
  std::vector<unsigned> workers_per_rank() const { return ranks_->workers_per_rank(); }

  // No new tasks; queued ones still run (on every rank). Any thread.
  void close() { ranks_->close(); }
  // Kills every rank's workers now; every unfinished future fails with PoolTerminated. Returns once they are
  // reaped on every rank.
  void terminate() { ranks_->terminate(); }
  // REQUIRES: close() or terminate() before (else StateError). Waits until every task ended and every rank's
  // workers exited.
  void join() { ranks_->join(); }
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome join(std::chrono::duration<Rep, Period> timeout) {
    return ranks_->join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)) ? Outcome::kOk
                                                                                            : Outcome::kTimeout;
  }

 private:
  Pool(std::shared_ptr<detail::RankPool> ranks, unsigned read_ahead);

  std::shared_ptr<detail::RankPool> ranks_;
};

}  // namespace ipc::mpi

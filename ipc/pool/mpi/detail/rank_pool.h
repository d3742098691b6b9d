// ipc/pool/mpi/detail/rank_pool.h (internal; use ipc/pool/mpi/pool.h): rank 0's side of an ipc::mpi::Pool.
//
// RankPool is the TaskSink behind an mpi::Pool: it owns rank 0's own PoolCore and hands each task to a rank, its
// own or another's (a kTask message, wire.h), as credit allows: a rank holds at most kCreditPerWorker tasks per
// worker, enough to keep its workers busy while results travel back; the rest wait here, in submission order,
// and go to the least loaded rank with credit (ties in turn) as results come back. A remote rank's result
// completes the task's Completion on the MPI thread, a local one on rank 0's pool supervisor.
// Root is rank 0's Receiver: it routes each message to its pool and runs the shutdown at exit.
//
// Threads: every RankPool method may be called from any thread; opened/result/ended come from the MPI thread.
//   Lock order: RankPool::mu_, then the PoolCore's and the Transport's own locks; completions run unlocked.
// Lifetime: mpi::Pool owns its RankPool; Root holds it weakly, so a message for a pool that is gone is dropped.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ipc/pool/detail/pool_core.h"
#include "ipc/pool/mpi/detail/transport.h"
#include "ipc/pool/mpi/detail/wire.h"
#include "ipc/pool/pool.h"

namespace ipc::mpi::detail {

inline constexpr unsigned kCreditPerWorker = 2;

class RankPool;

class Root final : public Receiver {
 public:
  explicit Root(Transport& transport) : transport_(transport) {}
  Transport& transport() { return transport_; }

  // A new pool's id, under which its messages reach it. Any thread.
  uint64_t add(std::weak_ptr<RankPool> pool);
  void forget(uint64_t id);

  void on_message(int source, int tag, std::vector<std::byte> bytes) override;
  bool active() const override;

  // At exit: every other rank ends its pools, says goodbye and exits; then MPI is finalised here. Not from the
  // MPI thread.
  void shutdown();

 private:
  std::shared_ptr<RankPool> find(uint64_t id);

  Transport& transport_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::weak_ptr<RankPool>> pools_;
  uint64_t next_id_ = 1;
  int byes_ = 0;
};

// The process's Root: null without MPI (no mpirun, or before ipc::mpi::init).
Root* root();
void set_root(Root* root);

class RankPool final : public ipc::detail::TaskSink, public std::enable_shared_from_this<RankPool> {
 public:
  // A pool on every rank (on this one alone without MPI); throws what the first rank that failed threw.
  static std::shared_ptr<RankPool> open(const PoolOptions& options);
  // Joined or terminated (end()) first, by mpi::Pool's destructor: this one never waits.
  ~RankPool() override;

  void submit_task(ipc::detail::Invoker invoker, uintptr_t callable, std::vector<std::byte> message,
                   std::shared_ptr<ipc::detail::Completion> done) override;
  unsigned worker_count() const override { return total_workers_; }
  std::vector<unsigned> workers_per_rank() const;

  void close();
  void terminate();
  void join();
  bool join_for(std::chrono::nanoseconds timeout);
  // terminate() unless joined.
  void end();

  // MPI thread: rank `rank` answered kOpened / sent a kResult / sent kClosed or kTerminated.
  void opened(int rank, unsigned workers, std::optional<WireError> error);
  void result(int rank, uint64_t task_word, std::span<const std::byte> message);
  void ended(int rank);
  // Rank 0's own workers finished a task (from its pool's supervisor).
  void local_done();

  // Use open().
  RankPool(Root* root, uint64_t id, int ranks);

 private:
  struct Queued {
    ipc::detail::Invoker invoker;
    uintptr_t callable;
    uint64_t portable_invoker, portable_callable;
    std::vector<std::byte> message;
    std::shared_ptr<ipc::detail::Completion> done;
  };
  struct Rank {
    unsigned workers = 0;
    unsigned in_flight = 0;
    bool answered = false;  // kOpened came
    bool ended = false;     // kClosed or kTerminated came
    std::optional<WireError> error;
  };
  // Completions to run once mu_ is released (they run user callbacks, which may call this pool).
  using Later = std::vector<std::pair<std::shared_ptr<ipc::detail::Completion>, ipc::detail::Raise>>;

  void dispatch_locked(Later& later);
  int pick_rank_locked();
  void close_if_drained_locked();
  bool remote_ended_locked() const;
  void send_all_locked(int tag);
  static void run(Later& later);

  Root* root_;  // null: one rank, every task runs in local_
  uint64_t id_;
  std::unique_ptr<ipc::detail::PoolCore> local_;
  std::vector<std::string> objects_;  // what the portable code addresses of this pool's tasks refer to
  unsigned total_workers_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // signals answers and ends of ranks
  std::vector<Rank> ranks_;
  std::deque<Queued> queue_;
  std::unordered_map<uint64_t, std::pair<std::shared_ptr<ipc::detail::Completion>, int>> remote_;  // word -> (done, rank)
  uint64_t next_task_ = 1;
  size_t next_rank_ = 0;
  bool closed_ = false, terminated_ = false, close_sent_ = false, joined_ = false;
};

}  // namespace ipc::mpi::detail

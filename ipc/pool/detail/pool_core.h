// ipc/pool/detail/pool_core.h: the non-template engine behind ipc::Pool (internal; use ipc/pool/pool.h).
//
// One supervisor thread per pool owns every worker's Connection (a duplex Pipe per worker: tasks down, results
// up), the workers' pidfds, and the queue of tasks not yet sent. Callers only append to that queue (under a
// mutex) and ring an eventfd, except while the supervisor is parked (asleep with every worker idle): a submit then
// sends its small task to an idle worker itself (State::dispatch_directly()). The supervisor sends a task to a
// worker with nothing in hand, or a second (small) one to a worker busy with one, so that it never blocks on a full
// pipe while the worker blocks on a full result pipe; it completes futures as results arrive; it sees a worker's death
// on its pidfd, drains what the worker finished, fails the task it was running (WorkerLost, or TaskTimeout when the
// supervisor killed it for running too long), puts back the task it had not started, and starts a replacement when
// there is work for it.
//
// Wire format (one Pipe message each; every integer little-endian as in memory, both ends are the same binary):
//   task:   u64 task id | u64 invoker address | u64 callable word | argument bytes (Codec); with kForkServer and
//           kExec the two code words are portable addresses (detail/code_address.h), else addresses
//           meaningful in the workers because they are fork()s of this program
//   batch:  u64 kBatchId | per task: u64 bytes | task message | zero bytes up to a multiple of 8 (several small
//           tasks for one worker, sent at once; the worker runs them in order and answers each as above)
//   result: u64 task id | u8 status (0 ok, 1 failed) | ok: result bytes (Codec); failed: Codec<pair<string,string>>
//           of (exception type name, what())
// A kForkServer or kExec worker first receives its setup (detail/start.h) as one message and answers with a
// ready message (kReadyId).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "ipc/numa/placement.h"
#include "ipc/pool/future.h"
#include "ipc/pool/init.h"

namespace ipc::detail {

// Runs one task in a worker: decodes the arguments, calls the callable, appends the encoded result to `out`.
using Invoker = void (*)(uintptr_t callable, std::span<const std::byte> args, std::vector<std::byte>& out);

// Task header: id, invoker, callable (8 bytes each). Result header: id (8 bytes), then 1 when the task failed.
inline constexpr size_t kTaskHeaderBytes = 24;
inline constexpr size_t kResultHeaderBytes = 9;

// A header field at `p`, which need not be aligned.
template <typename T>
T load_field(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void store_field(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
// A kForkServer or kExec worker's first message, once it has its setup: a result header for task id 0 (no task
// has that id).
inline constexpr uint64_t kReadyId = 0;
// The first word of a batch of tasks (no task has id 0), and the bytes an entry of `task_bytes` takes in it.
inline constexpr uint64_t kBatchId = 0;
inline constexpr size_t kBatchHeaderBytes = 8;
constexpr uint64_t batch_entry_bytes(uint64_t task_bytes) { return 8 + (task_bytes + 7) / 8 * 8; }

// Where one worker slot runs: its NUMA node and the CPUs it is pinned to (empty: not pinned).
struct SlotPlace {
  int node = -1;  // -1: no placement
  std::vector<int> cpus;
};

struct CoreOptions {
  unsigned workers = 1;
  std::vector<SlotPlace> places;  // one per worker slot when placed; empty: no placement
  std::function<void()> initializer;
  unsigned max_tasks_per_child = 0;
  std::optional<std::chrono::nanoseconds> task_timeout;
  uint64_t pipe_bytes = 0;
  std::string name;
  StartMethod start_method = StartMethod::kFork;
  uint64_t scratch_bytes = 0;  // each worker's ScratchArena capacity; 0: none
};

// Where the tasks of one map ran: counted by the supervisor as each task completes (a task with a home node of
// -1 counts in `tasks` only).
struct HomeCount {
  std::atomic<uint64_t> at_home{0};
  std::atomic<uint64_t> tasks{0};
};

// Where the task methods shared by ipc::Pool and ipc::mpi::Pool (PoolMethods in pool.h) send their tasks: a
// PoolCore (this host's workers), or ipc/pool/mpi's dispatcher over the MPI ranks' PoolCores.
class TaskSink {
 public:
  virtual ~TaskSink() = default;
  // Queues a task, as PoolCore::submit without a node. Any thread.
  virtual void submit_task(Invoker invoker, uintptr_t callable, std::vector<std::byte> message,
                           std::shared_ptr<Completion> done) = 0;
  // The workers that run the tasks: default chunk sizes and read-ahead windows count them.
  virtual unsigned worker_count() const = 0;
};

class PoolCore final : public TaskSink {
 public:
  // Starts the workers and the supervisor thread. Throws SystemError when a worker cannot be started.
  explicit PoolCore(CoreOptions options);
  ~PoolCore();  // terminate() unless joined
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Queues a task: `message` starts with kTaskHeaderBytes left for the header (filled here). Throws StateError
  // after close() or terminate(). Any thread.
  // `node`: run it on a worker of that node when one can take it (idle workers of other nodes steal it rather
  // than sit idle); -1: anywhere. steer = false: `node` is only the task's home for `count`, the task goes
  // anywhere. `count` (optional): told where the task ran when it completes.
  void submit(Invoker invoker, uintptr_t callable, std::vector<std::byte> message, std::shared_ptr<Completion> done,
              int node = -1, bool steer = true, std::shared_ptr<HomeCount> count = nullptr);

  void submit_task(Invoker invoker, uintptr_t callable, std::vector<std::byte> message,
                   std::shared_ptr<Completion> done) override {
    submit(invoker, callable, std::move(message), std::move(done));
  }

  void close();
  void terminate();
  // REQUIRES: close() or terminate() first (StateError otherwise). Waits until every worker has exited.
  void join();
  // Waits up to `timeout` for the workers to exit after close(); false if they had not.
  bool join_for(std::chrono::nanoseconds timeout);

  unsigned worker_count() const override { return options_.workers; }
  // The pids of the workers the pool runs (for tests and tools): a worker that died is listed until the supervisor
  // has buried it. Any thread.
  std::vector<int> worker_pids() const;
  // Workers started so far, replacements included.
  uint64_t workers_started() const;
  // Live workers: pid, node (-1 unplaced), the CPUs they were pinned to, and where the pages of their pipe's
  // rings and of their scratch arena are now (read when placement() is called; the arena's pages are read from
  // the worker's address space, and are empty until the worker has said where its arena is).
  struct WorkerPlace {
    int pid;
    int node;
    std::vector<int> cpus;
    numa::PagePlacement queue_pages;    // both rings of the worker's pipe (shared memory)
    numa::PagePlacement scratch_pages;  // the worker's ScratchArena (its capacity in pages; touched ones present)
  };
  std::vector<WorkerPlace> placement() const;
  // Tasks that ran on a worker of the node they were hinted to, and hinted tasks in all (for the NUMA checks).
  std::pair<uint64_t, uint64_t> hinted_at_home() const;

 private:
  struct State;
  // At exit() (registered with std::atexit by the first pool): ends every pool of this process still running, as
  // terminate() does, before static destructors can pull anything from under its supervisor thread.
  static void end_live_pools_at_exit();
  // terminate() for the exit handler: waits at most a bounded time for the supervisor to finish (a callback may
  // block it), then joins it; returns at once when exit() was called on the supervisor thread (by a callback).
  void end_at_exit();
  // Throws StateError in any process but the one that made the pool (a forked child has a copy of the object,
  // without the supervisor thread and with the parent's workers' rings).
  void check_owner(const char* what) const;

  CoreOptions options_;
  std::unique_ptr<State> state_;
  int owner_pid_;  // the process that made the pool
};

}  // namespace ipc::detail

// ipc/pool/detail/start.h (internal; use ipc/pool/pool.h and ipc/pool/init.h): starting pool workers by each
// StartMethod, and the loop every worker runs.
//
// kFork: Process::start in the pool's process; the worker runs run_worker() with the options in hand.
// kForkServer and kExec: the pool makes a transferable Pipe and hands the worker's end over as descriptors
//   (SCM_RIGHTS to the fork server, or kept open across exec); the worker adopts it and reads a setup message
//   (setup_message) before its tasks. Code addresses in tasks are portable (code_address.h) for these methods.
// The fork server: a daemon child of the process that called start_fork_server(). It reads requests on a
//   SOCK_SEQPACKET socketpair (the worker's pipe descriptors and a status socket), forks the worker with
//   Process::start (a daemon: it dies with the server), sends back its pid and its sentinel (a pidfd, or a life
//   pipe on older kernels), and, once it has reaped the worker, its exit status and escaped exception on the
//   status socket: the pool's sentinel for the worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/pipe/connection.h"
#include "ipc/pool/detail/code_address.h"
#include "ipc/pool/init.h"

namespace ipc::detail {

// One worker process, however it was started. The destructor kills and reaps a worker that still runs.
class WorkerHandle {
 public:
  virtual ~WorkerHandle() = default;
  virtual int pid() const = 0;
  // Readable once the worker ended (and its status can be read without waiting).
  virtual int sentinel() const = 0;
  // Readable once the worker's process exited: with sentinel(), or before it when its status comes later (a fork
  // server's worker, whose status the server sends once it has reaped it).
  virtual int exit_fd() const { return sentinel(); }
  virtual void kill() = 0;
  // Waits for the end; the exit status, or minus the signal that killed it.
  virtual int join() = 0;
  // What escaped the worker's main function (its initializer threw, say); set by join().
  virtual std::optional<ChildException> exception() const = 0;
};

// What a worker needs besides its pipe.
struct WorkerSetup {
  std::vector<int> cpus;              // pinned to these before anything else; empty: not pinned
  std::function<void()> initializer;  // kFork: may capture
  uint64_t initializer_address = 0;   // kForkServer, kExec: a portable address of a void() function, or 0
  unsigned max_tasks_per_child = 0;
  std::vector<std::string> objects;   // kForkServer, kExec: what the portable addresses refer to
  uint64_t scratch_bytes = 0;         // the worker's ScratchArena capacity; 0: none
  int scratch_node = -1;              // bind its pages to this node; -1: the process's policy
};

// A worker's message for kReadyId (a result header for that id): where its scratch arena lies in its address space
// (base, capacity; 0, 0 before it has one), so that the pool can report the arena's pages
// (numa::page_placement_in). A kForkServer or kExec worker sends one first, as its ready message; any worker sends
// one, before that task's result, after the task that made its arena (the first worker_scratch() call).
using Hello = std::pair<uint64_t, uint64_t>;

// The worker: pins itself, sends its first Hello when `code` is set, runs the initializer, then tasks from `conn`
// until end of stream (or its task quota), resetting the scratch arena (if a task made it) after each; returns its
// exit status. `code` translates the code words of tasks (portable addresses) of a worker that is not a fork of
// the pool's process; null: they are addresses in this process (a fork, ready as soon as it runs).
int run_worker(Connection& conn, const WorkerSetup& setup, const CodeMap* code);

// kFork: `process` started by the pool.
std::unique_ptr<WorkerHandle> process_worker(Process process);

// kForkServer, kExec: a worker started from `worker_end` (an end of a transferable Pipe, which the caller closes
// afterwards). Send it setup_message() first. Throws StateError when the method cannot start workers in this
// process (see check_start_method), SystemError when the start fails.
std::unique_ptr<WorkerHandle> start_remote_worker(StartMethod method, const ConnectionHandoff& worker_end,
                                                  const std::string& name);
std::vector<std::byte> setup_message(const WorkerSetup& setup);

// StateError unless `method` can start workers in this process: kForkServer needs start_fork_server() in this
// process, kExec needs ipc::init() in main.
void check_start_method(StartMethod method);

}  // namespace ipc::detail

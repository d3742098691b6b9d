// ipc/pool/mpi/detail/wire.h (internal; use ipc/pool/mpi/pool.h): what the ranks send each other. Every rank runs
// the same program (checked when a pool opens), so integers travel in host order and Codec<T> is the format.
//
//   tag          from -> to     bytes
//   kOpen        0 -> each      Codec<OpenMessage>: a pool id, the program's build id, rank 0's loaded objects
//                               (what portable code addresses refer to) and the pool's options
//   kOpened      each -> 0      Codec<OpenedMessage>: the pool id, its worker count, or why it could not start
//   kTask        0 -> rank      the local pool's task message with its header filled: task word | portable
//                               invoker | portable callable (code_address.h) | the arguments (Codec)
//   kResult      rank -> 0      task word | u8 status (0 ok, 1 failed) | the result (Codec) or Codec<WireError>
//   kClose       0 -> each      Codec<uint64_t> pool id: no more tasks; kClosed once its workers have exited
//   kTerminate   0 -> each      Codec<uint64_t> pool id: kill its workers; kTerminated once they are reaped
//   kShutdown    0 -> each      empty: end every pool, answer kBye, finalise MPI and exit
//   kBye         each -> 0      empty: the last message that rank sends
// A task word is pool id << 40 | the task's number in its pool: a serving rank finds a task's pool from it.
// Messages between two ranks arrive in the order sent (MPI's non-overtaking rule), so a pool's kClose arrives
// after its last kTask, and a rank's kClosed after its last kResult.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "ipc/pool/future.h"
#include "ipc/pool/pool.h"

namespace ipc::mpi::detail {

enum Tag : int {
  kOpen = 1,
  kOpened,
  kTask,
  kResult,
  kClose,
  kClosed,
  kTerminate,
  kTerminated,
  kShutdown,
  kBye,
};

inline constexpr int kTaskNumberBits = 40;
inline constexpr uint64_t kMaxPools = (uint64_t{1} << (64 - kTaskNumberBits)) - 1;
inline constexpr uint64_t kMaxTasksPerPool = (uint64_t{1} << kTaskNumberBits) - 1;
inline constexpr uint64_t task_word(uint64_t pool, uint64_t number) { return pool << kTaskNumberBits | number; }
inline constexpr uint64_t pool_of(uint64_t task_word) { return task_word >> kTaskNumberBits; }
inline constexpr size_t kResultHeaderBytes = 9;

// A failure as values: which ipc exception it was and its fields, rebuilt on rank 0.
// (kind, type name (TaskError) , message, pid (WorkerLost), code (WorkerLost exit code, SystemError errno))
using WireError = std::tuple<uint8_t, std::string, std::string, int64_t, int64_t>;

// The failure `failure` raises (a task's), or the exception being handled (catch block only), as values.
WireError describe(const ipc::detail::Raise& failure);
WireError describe_current_exception();
// `error`, which happened on rank `rank`, as a failure to raise: the same exception class; a TaskError as it was
// (its type and message are the task's own), any other with "rank N: " before its message.
ipc::detail::Raise rebuild(const WireError& error, int rank);

// PoolOptions but for read_ahead (rank 0's business) and the initializer, which travels as a portable address.
using WireOptions = std::tuple<std::optional<unsigned>,  // workers (per rank)
                               unsigned,                 // max_tasks_per_child
                               std::optional<int64_t>,   // task_timeout, ns
                               uint64_t,                 // pipe_bytes
                               int,                      // placement strategy
                               std::vector<int>,         // placement nodes
                               bool,                     // placement pin
                               int,                      // start method
                               uint64_t,                 // scratch_bytes
                               uint64_t>;                // the initializer's portable address, or 0
WireOptions to_wire(const PoolOptions& options, uint64_t initializer);
// The options of `wire`, the initializer given as the address of a plain function in this process (or null).
PoolOptions from_wire(const WireOptions& wire, void (*initializer)());
uint64_t initializer_of(const WireOptions& wire);

using OpenMessage = std::tuple<uint64_t, std::string, std::vector<std::string>, WireOptions>;
using OpenedMessage = std::tuple<uint64_t, unsigned, std::optional<WireError>>;

// What identifies this program's code: the GNU build id of the executable (else its size in bytes).
std::string program_id();

}  // namespace ipc::mpi::detail

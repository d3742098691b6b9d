#include "ipc/pool/pool.h"

#include <unistd.h>

#include "ipc/base/process.h"

namespace ipc {
namespace {

detail::CoreOptions core_options(PoolOptions o) {
  detail::CoreOptions c;
  if (o.workers == 0u) throw InvalidArgument("Pool: the worker count must be at least 1");
  c.workers = o.workers ? *o.workers : cpu_count();
  c.initializer = std::move(o.initializer);
  c.max_tasks_per_child = o.max_tasks_per_child;
  c.task_timeout = o.task_timeout;
  if (o.task_timeout && o.task_timeout->count() <= 0) throw InvalidArgument("Pool: task_timeout must be positive");
  if (o.pipe_bytes < 4096 || (o.pipe_bytes & (o.pipe_bytes - 1)) != 0) {
    throw InvalidArgument("Pool: pipe_bytes must be a power of two >= 4096, got " + std::to_string(o.pipe_bytes));
  }
  c.pipe_bytes = o.pipe_bytes;
  c.name = "Pool-" + std::to_string(getpid());
  return c;
}

}  // namespace

Pool::Pool(PoolOptions options)
    : read_ahead_(options.read_ahead), core_(std::make_unique<detail::PoolCore>(core_options(std::move(options)))) {}

Pool::~Pool() = default;  // PoolCore's destructor terminates (see the header: never waits for user work)

}  // namespace ipc

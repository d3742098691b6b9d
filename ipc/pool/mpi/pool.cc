#include "ipc/pool/mpi/pool.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "ipc/base/error.h"
#include "ipc/pool/init.h"
#include "ipc/pool/mpi/detail/server.h"
#include "ipc/pool/mpi/detail/transport.h"

namespace ipc::mpi {
namespace {

// The variables a launcher sets in each rank's environment (Open MPI's mpirun; PMIx and PMI launchers).
const char* env_first(std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (const char* v = std::getenv(n)) return v;
  }
  return nullptr;
}
bool launched_by_mpirun() { return env_first({"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) != nullptr; }

detail::Transport* g_transport = nullptr;  // leaked: it lives until the process exits
pid_t g_rank0_pid = 0;                     // the process whose exit shuts the job down (not its forks)

void shut_down_at_exit() {
  if (::getpid() != g_rank0_pid) return;
  if (detail::Root* root = detail::root()) root->shutdown();
}

}  // namespace

void init(int argc, char** argv) {
  ipc::init(argc, argv);  // an exec'd worker runs here and never returns
  // Before MPI_Init: every worker of every pool is forked by this server, never by a process that holds MPI state.
  ipc::start_fork_server();
  if (!launched_by_mpirun() || g_transport) return;
  g_transport = new detail::Transport();
  if (g_transport->rank() != 0) {
    static detail::Server server(*g_transport);
    g_transport->run(&server);
    g_transport->join();  // rank 0 said kShutdown: MPI is finalised
    std::exit(0);
  }
  static detail::Root root(*g_transport);
  detail::set_root(&root);
  g_transport->run(&root);
  g_rank0_pid = ::getpid();
  std::atexit(shut_down_at_exit);
}

int rank() {
  static const int r = [] {
    const char* v = env_first({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"});
    return v ? std::atoi(v) : 0;
  }();
  return r;
}

int world_size() {
  if (g_transport) return g_transport->size();
  const char* v = env_first({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"});
  return v ? std::atoi(v) : 1;
}

Pool::Pool(PoolOptions options)
    : Pool(
          [&] {
            if (launched_by_mpirun() && !g_transport) {
              throw StateError("ipc::mpi::Pool under mpirun needs ipc::mpi::init(argc, argv) as the first line of main");
            }
            return detail::RankPool::open(options);
          }(),
          options.read_ahead) {}

Pool::Pool(std::shared_ptr<detail::RankPool> ranks, unsigned read_ahead)
    : PoolMethods(ranks.get(), read_ahead), ranks_(std::move(ranks)) {}

Pool::~Pool() { ranks_->end(); }

}  // namespace ipc::mpi

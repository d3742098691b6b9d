// bench/pool_start_stop.cc: a whole program that starts a pool of 2 workers, runs one trivial task, closes and
// joins it: for timing pool start + shutdown from outside, process start-up included, beside the same in Python:
//   pool_start_stop [fork|forkserver|exec]     (default fork; forkserver times the fork server's start too)
//   python3 -c 'import multiprocessing as mp; p = mp.get_context("fork").Pool(2); p.map(abs, [1]); p.close(); p.join()'
#include <cstdio>
#include <string>

#include "ipc/pool/init.h"
#include "ipc/pool/pool.h"

namespace {
int inc(int x) { return x + 1; }
}  // namespace

int main(int argc, char** argv) {
  ipc::init(argc, argv);  // an exec'd worker runs here
  const std::string method = argc > 1 ? argv[1] : "fork";
  ipc::PoolOptions options;
  options.workers = 2;
  if (method == "forkserver") {
    ipc::start_fork_server();
    options.start_method = ipc::StartMethod::kForkServer;
  } else if (method == "exec") {
    options.start_method = ipc::StartMethod::kExec;
  } else if (method != "fork") {
    std::fprintf(stderr, "usage: %s [fork|forkserver|exec]\n", argv[0]);
    return 2;
  }
  ipc::Pool pool(options);
  const int two = pool.apply(inc, 1);
  pool.close();
  pool.join();
  return two == 2 ? 0 : 1;
}

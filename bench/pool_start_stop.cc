// bench/pool_start_stop.cc: a whole program that starts a pool of 2 workers, runs one trivial task, closes and
// joins it: for timing pool start + shutdown from outside, process start-up included, beside the same in Python:
//   python3 -c 'import multiprocessing as mp; p = mp.get_context("fork").Pool(2); p.map(abs, [1]); p.close(); p.join()'
#include "ipc/pool/pool.h"

namespace {
int inc(int x) { return x + 1; }
}  // namespace

int main() {
  ipc::PoolOptions options;
  options.workers = 2;
  ipc::Pool pool(options);
  const int two = pool.apply(inc, 1);
  pool.close();
  pool.join();
  return two == 2 ? 0 : 1;
}

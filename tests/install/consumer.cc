// A program outside the Bazel tree that uses the installed numa_mp: a pool maps over a vector, and two processes
// talk through a queue in a named segment. Built by install_test.sh with pkg-config and with CMake.
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/pool/pool.h"
#include "ipc/queue/queue.h"
#include "ipc/segment/segment.h"

namespace {
long square(long x) { return x * x; }
}  // namespace

int main() {
  ipc::Pool pool(ipc::PoolOptions{.workers = 2});
  std::vector<long> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  std::vector<long> squares = pool.map(square, xs);
  long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  pool.close();
  pool.join();

  std::string name = "numa_mp_install_test_" + std::to_string(::getpid());
  ipc::Segment segment = ipc::Segment::create(name, 1 << 20);  // removed when `segment` goes out of scope
  auto queue = ipc::Queue<long>::create(segment, "numbers", 16);
  ipc::Process producer = ipc::Process::start([&] {
    for (long i = 1; i <= 10; ++i) (void)queue.put(i);
    return 0;
  });
  long received = 0;
  for (int i = 0; i < 10; ++i) {
    long v = 0;
    (void)queue.get(v);
    received += v;
  }
  int code = producer.join().value_or(-1);
  std::printf("sum of squares %ld, received %ld, producer exit %d\n", sum, received, code);
  return sum == 332833500L && received == 55 && code == 0 ? 0 : 1;
}

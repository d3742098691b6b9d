// The pool against what its users get wrong, and what tasks do to their workers: callbacks that throw, a task
// that ends its worker with exit(0), chunk sizes near SIZE_MAX, timeouts past what the clock counts, a pool used
// from a forked child, a Future that refers to no task, a program that ignores SIGCHLD, a worker that scribbles
// over its rings. Each is a clear error or a completed result, never a hang, a silent loss or an abort.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ipc/pool/pool.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "tests/support/pool_main.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;

namespace {

int identity(int x) { return x; }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// A task (or a library it calls) that ends its process with status 0.
int exit_zero(int x) {
  if (x == 1) std::_Exit(0);
  return x;
}
int die(int) {
  ::raise(SIGKILL);
  return 0;
}
int64_t chunk_sum(std::span<int64_t> chunk) {
  int64_t sum = 0;
  for (int64_t v : chunk) sum += v;
  return sum;
}
// A worker with a memory bug: it overwrites every shared mapping it has (its pipe's rings among them), then dies.
int scribble(int) {
  FILE* maps = std::fopen("/proc/self/maps", "r");
  char line[512];
  std::vector<std::pair<uintptr_t, uintptr_t>> shared;
  while (maps && std::fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    char perms[8];
    if (std::sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && std::string(perms) == "rw-s") {
      shared.emplace_back(lo, hi);
    }
  }
  if (maps) std::fclose(maps);
  // Bytes that differ from word to word, so that the rings' positions read as out of order.
  for (auto [lo, hi] : shared) {
    auto* p = reinterpret_cast<unsigned char*>(lo);
    for (uintptr_t i = 0; i < hi - lo; ++i) p[i] = static_cast<unsigned char>(i % 251);
  }
  ::raise(SIGKILL);
  return 0;
}

ipc::PoolOptions workers(unsigned n) {
  ipc::PoolOptions o;
  o.workers = n;
  o.start_method = ipc::test::kStartMethod;
  return o;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

TEST_CASE("a completion callback that throws leaves its future ready and the other callbacks run", "[pool]") {
  ipc::Pool pool(workers(1));
  auto f = pool.apply_async(identity, 7);
  bool second_ran = false;
  f.on_success([](const int&) { throw std::runtime_error("callback failed"); });
  f.on_success([&](const int&) { second_ran = true; });
  CHECK(f.get(ipc::test::kWakeDeadline) == std::optional<int>(7));
  CHECK(f.ready());
  auto m = pool.map_async(identity, std::vector<int>{1, 2, 3});
  m.on_success([](const std::vector<int>&) { throw 42; });  // not even a std::exception
  CHECK(m.get(ipc::test::kWakeDeadline) == std::optional<std::vector<int>>({1, 2, 3}));
  CHECK(second_ran);
  CHECK(pool.apply(identity, 8) == 8);  // the supervisor lived through both
}

// Before, the pool took status 0 for "between tasks" and put the task back: it ran again on each replacement, and
// its future never completed.
TEST_CASE("a task that ends its worker with exit status 0 fails with WorkerLost instead of running again", "[pool]") {
  ipc::Pool pool(workers(1));
  auto f = pool.apply_async(exit_zero, 1);
  const ipc::Outcome waited = f.wait(ipc::test::kWakeDeadline);
  INFO("workers started: " << pool.workers_started());
  REQUIRE(waited == ipc::Outcome::kOk);
  CHECK_THROWS_AS(f.get(), ipc::WorkerLost);
  CHECK(pool.apply(exit_zero, 2) == 2);  // a replacement runs the next task
}

TEST_CASE("chunk sizes near SIZE_MAX give every result", "[pool]") {
  ipc::Pool pool(workers(2));
  const std::vector<int> in{1, 2, 3};
  constexpr size_t kHuge = std::numeric_limits<size_t>::max();
  CHECK(pool.map(identity, in, kHuge) == in);
  CHECK(pool.map(identity, in, kHuge - 1) == in);
  std::vector<int> got;
  for (int v : pool.imap(identity, in, size_t{1} << 40)) got.push_back(v);
  CHECK(got == in);
  auto segment = ipc::Segment::create(ipc::test::unique_name("pool-huge-chunk"), 1 << 20);
  auto& array = ipc::Array<int64_t>::create(segment, "numbers", 100);
  for (size_t i = 0; i < 100; ++i) array[i] = 1;
  ipc::ArrayMapOptions huge;
  huge.chunk_elements = kHuge;
  const auto r = pool.map_array(chunk_sum, segment, array, huge);
  CHECK(r.chunks == 1);
  CHECK(r.results == std::vector<int64_t>{100});
  ipc::Segment::remove(segment.name());
}

TEST_CASE("timeouts past what the clock counts wait as long as it takes", "[pool]") {
  ipc::PoolOptions o = workers(1);
  o.task_timeout = std::chrono::nanoseconds::max();  // "no limit, really"
  ipc::Pool pool(o);
  auto f = pool.apply_async(sleep_ms, 300);
  CHECK(f.get(std::chrono::nanoseconds::max()) == std::optional<int>(300));
  auto g = pool.apply_async(sleep_ms, 300);
  CHECK(g.get(std::chrono::hours::max()) == std::optional<int>(300));
  // While a task runs, the supervisor sleeps (the limit's deadline overflowed into a zero wait: a busy loop).
  const double before = cpu_seconds();
  REQUIRE(pool.apply(sleep_ms, 1000) == 1000);
  const double cpu = cpu_seconds() - before;
  INFO("the pool's process used " << cpu << " s of CPU while its one task slept 1 s");
  CHECK(cpu < 0.5);
  pool.close();
  CHECK(pool.join(std::chrono::hours::max()) == ipc::Outcome::kOk);
}

TEST_CASE("a pool used from a forked child is a StateError, and the parent's pool is untouched", "[pool]") {
  auto* pool = new ipc::Pool(workers(2));
  REQUIRE(pool->apply(identity, 1) == 1);
  const std::vector<int> before = pool->worker_pids();
  ipc::test::ForkedChild child([pool] {
    int code = 0;
    try {
      (void)pool->apply_async(identity, 5);
      code = 2;
    } catch (const ipc::StateError& e) {
      if (std::string(e.what()).find("forked child") == std::string::npos) code = 3;
    }
    try {
      pool->close();
      code = 4;
    } catch (const ipc::StateError&) {
    }
    delete pool;  // the child's copy: leaves the parent's workers alone, and does not abort
    return code;
  });
  CHECK(ipc::test::exit_problem(child, 0, "child (2: a task went out, 3: another error, 4: close worked)") == "");
  CHECK(pool->apply(identity, 2) == 2);
  CHECK(pool->worker_pids() == before);
  CHECK(pool->workers_started() == 2);
  delete pool;
}

TEST_CASE("every call on a Future that refers to no task is a StateError", "[pool]") {
  ipc::Future<int> f;
  CHECK_FALSE(f.valid());
  CHECK_THROWS_AS(f.get(), ipc::StateError);
  CHECK_THROWS_AS(f.get(1s), ipc::StateError);
  CHECK_THROWS_AS(f.wait(), ipc::StateError);
  CHECK_THROWS_AS(f.ready(), ipc::StateError);
  CHECK_THROWS_AS(f.on_success([](const int&) {}), ipc::StateError);
}

// In a child of the test, after `setup`: a one-worker pool runs `task`, which kills its worker; the task must fail
// with WorkerLost and the pool go on. Both cases below run there: the one ignores SIGCHLD, the other's worker
// overwrites every shared mapping it has. A fork server's workers are not its children, and one forked child has
// none: the fork binaries only.
namespace {

std::string lost_task_problem(void (*setup)(), int (*task)(int)) {
  ipc::test::ForkedChild child([&] {
    setup();
    ipc::Pool pool(workers(1));
    auto f = pool.apply_async(task, 0);
    if (f.wait(ipc::test::kWakeDeadline) != ipc::Outcome::kOk) return 2;
    try {
      (void)f.get();
      return 3;
    } catch (const ipc::WorkerLost&) {
    }
    return pool.apply(identity, 5) == 5 ? 0 : 4;
  });
  return ipc::test::exit_problem(child, 0, "child (2: no result, 3: no WorkerLost, 4: the pool broke)");
}

}  // namespace

TEST_CASE("a worker's death in a program that ignores SIGCHLD fails only its task", "[pool][inherits]") {
  // As many daemons do: the kernel reaps the children, and their status is gone.
  CHECK(lost_task_problem([] { ::signal(SIGCHLD, SIG_IGN); }, die) == "");
}

TEST_CASE("a worker that overwrites its rings before it dies fails only its task", "[pool][inherits]") {
  CHECK(lost_task_problem([] {}, scribble) == "");
}

// ipc::mpi::Pool, run by pool_test.sh under `mpirun -np 3` (every rank on this host) and alone (one rank: a local
// pool). Each test holds for any number of ranks; what needs several (tasks on other ranks) checks world_size().
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "ipc/pool/mpi/pool.h"
#include "ipc/pool/mpi/started_marks.h"
#include "ipc/pool/pool.h"

namespace {

using namespace std::chrono_literals;
using ipc::mpi::testing::mark_started_then_sleep;
using ipc::mpi::testing::StartedMarks;

constexpr unsigned kWorkers = 2;

ipc::PoolOptions with_workers(unsigned n = kWorkers) {
  ipc::PoolOptions o;
  o.workers = n;
  return o;
}
// The local pool the results are compared with: started by the fork server, as every pool under MPI (a fork of
// rank 0 after MPI_Init is what ipc::mpi avoids).
ipc::PoolOptions local_options() {
  ipc::PoolOptions o = with_workers();
  o.start_method = ipc::StartMethod::kForkServer;
  return o;
}
bool under_mpi() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

std::vector<int> numbers(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}
std::set<int> all_ranks() {
  std::set<int> s;
  for (int r = 0; r < ipc::mpi::world_size(); ++r) s.insert(r);
  return s;
}

// ---- tasks ----------------------------------------------------------------------------------------------------
int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
std::pair<int, int> square_and_rank(int x) { return {x * x, ipc::mpi::rank()}; }
int rank_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ipc::mpi::rank();
}
int fail_odd(int x) {
  if (x % 2 != 0) throw std::runtime_error("odd " + std::to_string(x));
  return x;
}
int fail_with_rank(int) { throw std::invalid_argument("thrown on rank " + std::to_string(ipc::mpi::rank())); }
int kill_worker_on(int rank) {
  if (ipc::mpi::rank() == rank) ::raise(SIGKILL);
  return ipc::mpi::rank();
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
size_t length(std::string s) { return s.size(); }
std::string text_of_rank(size_t n) { return std::string(n, static_cast<char>('a' + ipc::mpi::rank())); }

int g_initialised = 0;
void initialise() { g_initialised = 42; }
int initialised(int) { return g_initialised; }

int parent_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // pid (comm) state ppid ...: the comm may hold spaces; ppid follows the last ')'.
  int ppid = -1;
  std::sscanf(line.c_str() + line.rfind(')') + 1, " %*c %d", &ppid);
  return ppid;
}
// A worker's lineage: its rank, its parent, grandparent and great-grandparent.
std::tuple<int, int, int, int> lineage(int) {
  const int parent = ::getppid(), grandparent = parent_of(parent);
  return {ipc::mpi::rank(), parent, grandparent, parent_of(grandparent)};
}

}  // namespace

TEST_CASE("a pool has the same workers on every rank, and size() counts them all", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  CHECK(pool.workers_per_rank() == std::vector<unsigned>(static_cast<size_t>(ipc::mpi::world_size()), kWorkers));
  CHECK(pool.size() == kWorkers * static_cast<unsigned>(ipc::mpi::world_size()));
  CHECK(ipc::mpi::rank() == 0);
  CHECK(ipc::mpi::world_size() == (under_mpi() ? std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) : 1));
}

TEST_CASE("map over every rank returns what the local pool's map returns", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  ipc::Pool local(local_options());
  const auto in = numbers(1000);
  const auto expected = local.map(square, in);
  CHECK(pool.map(square, in) == expected);
  CHECK(pool.map(square, in, 7) == expected);
  CHECK(pool.map(square, in, 1000) == expected);
  CHECK(pool.map(square, std::vector<int>{}).empty());
  std::vector<std::pair<int, int>> pairs;
  for (int i = 0; i < 300; ++i) pairs.emplace_back(i, 2 * i);
  CHECK(pool.starmap(add, pairs, 5) == local.starmap(add, pairs, 5));
  CHECK(pool.map_async(square, in, 3).get() == expected);
}

TEST_CASE("imap and imap_unordered over every rank give the local pool's results", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  ipc::Pool local(local_options());
  const auto in = numbers(500);
  std::vector<int> ours, theirs;
  for (int v : pool.imap(square, in, 3)) ours.push_back(v);
  for (int v : local.imap(square, in, 3)) theirs.push_back(v);
  CHECK(ours == theirs);

  ours.clear();
  theirs.clear();
  for (int v : pool.imap_unordered(square, in, 4)) ours.push_back(v);
  for (int v : local.imap_unordered(square, in, 4)) theirs.push_back(v);
  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  CHECK(ours == theirs);

  // An endless input: read only as far as the read-ahead window.
  std::vector<int> first;
  for (int v : pool.imap(square, std::views::iota(0), 2)) {
    first.push_back(v);
    if (first.size() == 200) break;
  }
  CHECK(first == local.map(square, numbers(200)));
}

TEST_CASE("apply_async futures complete on rank 0 with every rank's results and callbacks", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  ipc::Pool local(local_options());
  std::atomic<int> callbacks{0};
  std::vector<ipc::Future<std::pair<int, int>>> futures;
  for (int i = 0; i < 300; ++i) {
    futures.push_back(pool.apply_async(square_and_rank, i));
    futures.back().on_success([&](const std::pair<int, int>&) { callbacks.fetch_add(1, std::memory_order_relaxed); });
  }
  std::set<int> ranks;
  for (int i = 0; i < 300; ++i) {
    const auto [value, rank] = futures[static_cast<size_t>(i)].get();
    CHECK(value == local.apply(square, i));
    ranks.insert(rank);
  }
  CHECK(callbacks.load(std::memory_order_relaxed) == 300);  // get() returns after the callback ran (its lock orders it)
  CHECK(ranks == all_ranks());
  CHECK(pool.submit(add, 2, 3).get() == 5);
  CHECK(pool.apply(add, 20, 22) == 42);
}

TEST_CASE("the tasks of one map run on every rank", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  const auto ranks = pool.map(rank_after, std::vector<int>(60, 5), 1);
  CHECK(std::set<int>(ranks.begin(), ranks.end()) == all_ranks());
  // Each rank had its share: no rank took more than half again its fair part.
  for (int r : all_ranks()) {
    const auto n = std::count(ranks.begin(), ranks.end(), r);
    CHECK(n * ipc::mpi::world_size() <= 90);
  }
}

TEST_CASE("a task that throws on any rank fails its future on rank 0 as it does locally", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  ipc::Pool local(local_options());
  for (int x = 0; x < 30; ++x) {
    auto ours = pool.apply_async(fail_odd, x);
    auto theirs = local.apply_async(fail_odd, x);
    if (x % 2 == 0) {
      CHECK(ours.get() == x);
      continue;
    }
    std::string our_type, their_type, our_message, their_message;
    try {
      (void)ours.get();
    } catch (const ipc::TaskError& e) {
      our_type = e.type_name(), our_message = e.message();
    }
    try {
      (void)theirs.get();
    } catch (const ipc::TaskError& e) {
      their_type = e.type_name(), their_message = e.message();
    }
    CHECK(our_type == "std::runtime_error");
    CHECK(our_type == their_type);
    CHECK(our_message == their_message);
  }
  // The failures come from every rank, each with its own message.
  std::set<std::string> messages;
  std::vector<ipc::Future<int>> futures;
  for (int i = 0; i < 60; ++i) futures.push_back(pool.apply_async(fail_with_rank, i));
  for (auto& f : futures) {
    try {
      (void)f.get();
    } catch (const ipc::TaskError& e) {
      CHECK(e.type_name() == "std::invalid_argument");
      messages.insert(e.message());
    }
  }
  std::set<std::string> expected;
  for (int r : all_ranks()) expected.insert("thrown on rank " + std::to_string(r));
  CHECK(messages == expected);
  // A map fails with its first failed chunk; imap throws at that chunk's place and goes on.
  CHECK_THROWS_AS(pool.map(fail_odd, numbers(100), 4), ipc::TaskError);
  int failures = 0;
  auto results = pool.imap(fail_odd, numbers(20), 1);
  for (auto it = results.begin(); it != results.end();) {
    try {
      ++it;
    } catch (const ipc::TaskError&) {
      ++failures;
    }
  }
  CHECK(failures == 10);
  // The pool is unharmed.
  CHECK(pool.map(square, numbers(50)) == local.map(square, numbers(50)));
}

TEST_CASE("a worker killed on another rank fails its task with WorkerLost; every other task completes", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  const int target = ipc::mpi::world_size() - 1;
  std::vector<ipc::Future<int>> futures;
  for (int i = 0; i < 12 * ipc::mpi::world_size(); ++i) futures.push_back(pool.apply_async(kill_worker_on, target));
  int lost = 0, done = 0;
  for (auto& f : futures) {
    try {
      const int rank = f.get();
      CHECK(rank != target);
      ++done;
    } catch (const ipc::WorkerLost& e) {
      ++lost;
      CHECK(e.exitcode() == -SIGKILL);
      if (target != 0) CHECK(std::string(e.what()).rfind("rank " + std::to_string(target) + ": worker ", 0) == 0);
    }
  }
  CHECK(lost >= 1);
  CHECK(lost + done == static_cast<int>(futures.size()));
  if (ipc::mpi::world_size() > 1) CHECK(done >= 1);
  CHECK(pool.map(square, numbers(200)) == ipc::Pool(local_options()).map(square, numbers(200)));
}

TEST_CASE("task_timeout fails an overlong task on any rank with TaskTimeout", "[mpi]") {
  ipc::PoolOptions o = with_workers();
  o.task_timeout = 300ms;
  ipc::mpi::Pool pool(o);
  std::vector<ipc::Future<int>> futures;
  for (unsigned i = 0; i < pool.size(); ++i) futures.push_back(pool.apply_async(sleep_ms, 20000));
  const auto t0 = std::chrono::steady_clock::now();
  std::set<std::string> where;
  for (auto& f : futures) {
    try {
      (void)f.get();
    } catch (const ipc::TaskTimeout& e) {
      const std::string what = e.what();
      where.insert(what.rfind("rank ", 0) == 0 ? what.substr(0, what.find(':')) : "here");
    }
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(where.size() == static_cast<size_t>(ipc::mpi::world_size()));  // rank 0's own say no rank, the others do
  CHECK(pool.apply(sleep_ms, 1) == 1);
}

TEST_CASE("arguments and results of megabytes cross between ranks", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  std::vector<std::string> texts;
  for (size_t i = 0; i < 8; ++i) texts.emplace_back((i + 1) << 18, 'x');  // 0.25 to 2 MiB
  std::vector<size_t> expected;
  for (const auto& t : texts) expected.push_back(t.size());
  CHECK(pool.map(length, texts, 1) == expected);
  std::set<char> from;
  std::vector<ipc::Future<std::string>> futures;
  for (int i = 0; i < 4 * ipc::mpi::world_size(); ++i) futures.push_back(pool.apply_async(text_of_rank, size_t{2} << 20));
  for (auto& f : futures) {
    const std::string s = f.get();
    REQUIRE(s.size() == size_t{2} << 20);
    CHECK(std::all_of(s.begin(), s.end(), [&](char c) { return c == s[0]; }));
    from.insert(s[0]);
  }
  CHECK(from.size() == static_cast<size_t>(ipc::mpi::world_size()));
}

TEST_CASE("close and join let every queued task finish on every rank", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  std::vector<ipc::Future<int>> futures;
  for (int i = 0; i < 40; ++i) futures.push_back(pool.apply_async(rank_after, 20));
  pool.close();
  CHECK_THROWS_AS(pool.apply_async(square, 1), ipc::StateError);
  pool.join();
  std::set<int> ranks;
  for (auto& f : futures) {
    REQUIRE(f.ready());
    ranks.insert(f.get());
  }
  CHECK(ranks == all_ranks());
}

TEST_CASE("join(timeout) says kTimeout while tasks run, kOk once they are done", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  auto f = pool.map_async(sleep_ms, std::vector<int>(pool.size(), 500), 1);
  pool.close();
  CHECK(pool.join(50ms) == ipc::Outcome::kTimeout);
  CHECK(pool.join(20s) == ipc::Outcome::kOk);
  CHECK(f.ready());
}

TEST_CASE("misuse: join before close, chunksize 0, tasks after terminate", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  CHECK_THROWS_AS(pool.join(), ipc::StateError);
  CHECK_THROWS_AS(pool.map(square, numbers(3), 0), ipc::InvalidArgument);
  CHECK_THROWS_AS(pool.imap(square, numbers(3), 0), ipc::InvalidArgument);
  pool.terminate();
  CHECK_THROWS_AS(pool.apply_async(square, 1), ipc::StateError);
  pool.join();
}

TEST_CASE("terminate kills every rank's workers at once; unfinished futures fail with PoolTerminated", "[mpi]") {
  ipc::mpi::Pool pool(with_workers());
  const StartedMarks started;
  std::vector<ipc::Future<int>> futures;
  for (unsigned i = 0; i < 3 * pool.size(); ++i) {
    futures.push_back(pool.apply_async(mark_started_then_sleep, started.dir, 60000));
  }
  INFO("waiting for a task to start on every worker of every rank");
  REQUIRE(started.wait_for(pool.size(), 60s));
  const auto t0 = std::chrono::steady_clock::now();
  pool.terminate();
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  for (auto& f : futures) CHECK_THROWS_AS(f.get(), ipc::PoolTerminated);
}

TEST_CASE("the destructor terminates rather than waits", "[mpi]") {
  std::vector<ipc::Future<int>> futures;
  const StartedMarks started;
  std::chrono::steady_clock::time_point t0;
  {
    ipc::mpi::Pool pool(with_workers());
    for (unsigned i = 0; i < 2 * pool.size(); ++i) {
      futures.push_back(pool.apply_async(mark_started_then_sleep, started.dir, 60000));
    }
    INFO("waiting for a task to start on every worker of every rank");
    REQUIRE(started.wait_for(pool.size(), 60s));
    t0 = std::chrono::steady_clock::now();
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  for (auto& f : futures) CHECK_THROWS_AS(f.get(), ipc::PoolTerminated);
}

TEST_CASE("several pools at once, and one after another, keep their tasks apart", "[mpi]") {
  ipc::mpi::Pool a(with_workers(1)), b(with_workers(2));
  auto fa = a.map_async(square, numbers(300), 3);
  auto fb = b.map_async(rank_after, std::vector<int>(30, 1), 1);
  CHECK(fa.get() == ipc::Pool(local_options()).map(square, numbers(300)));
  CHECK(fb.get().size() == 30);
  CHECK(a.size() == 1u * static_cast<unsigned>(ipc::mpi::world_size()));
  for (int i = 0; i < 5; ++i) {
    ipc::mpi::Pool p(with_workers(1));
    CHECK(p.apply(add, i, 1) == i + 1);
    p.close();
    p.join();
  }
}

TEST_CASE("a pool that cannot start throws the rank's error and leaves no pool behind", "[mpi]") {
  ipc::PoolOptions o;
  o.workers = 0;
  CHECK_THROWS_AS(ipc::mpi::Pool(o), ipc::InvalidArgument);
  o.workers = 1;
  o.pipe_bytes = 1000;
  CHECK_THROWS_WITH(ipc::mpi::Pool(o), Catch::Contains("pipe_bytes must be a power of two"));
  ipc::mpi::Pool pool(with_workers(1));
  CHECK(pool.apply(add, 1, 1) == 2);
}

TEST_CASE("the initializer runs in every worker of every rank; under MPI it must be a plain function", "[mpi]") {
  ipc::PoolOptions o = with_workers();
  o.initializer = initialise;
  ipc::mpi::Pool pool(o);
  CHECK(pool.map(initialised, numbers(100), 1) == std::vector<int>(100, 42));
  if (under_mpi()) {
    int captured = 7;
    o.initializer = [captured] { g_initialised = captured; };
    CHECK_THROWS_AS(ipc::mpi::Pool(o), ipc::InvalidArgument);
  }
}

TEST_CASE("under MPI every worker is a child of its rank's fork server, not of the rank", "[mpi]") {
  if (!under_mpi()) {
    SUCCEED("not under mpirun: workers are ordinary ipc::Pool workers");
    return;
  }
  ipc::mpi::Pool pool(with_workers());
  const int mpirun = ::getppid();  // every rank on this host is a child of mpirun
  std::set<int> ranks;
  for (const auto& [rank, parent, grandparent, great] : pool.map(lineage, numbers(60), 1)) {
    ranks.insert(rank);
    CHECK(parent != grandparent);
    CHECK(great == mpirun);  // worker -> fork server -> rank -> mpirun
    if (rank == 0) CHECK(grandparent == ::getpid());
  }
  CHECK(ranks == all_ranks());
}


TEST_CASE("exec'd workers (StartMethod::kExec) work on every rank too", "[mpi]") {
  ipc::PoolOptions o = with_workers();
  o.start_method = ipc::StartMethod::kExec;  // each worker runs this program's main, whose ipc::mpi::init runs it
  ipc::mpi::Pool pool(o);
  const auto out = pool.map(square_and_rank, numbers(60), 1);
  std::set<int> ranks;
  for (size_t i = 0; i < out.size(); ++i) {
    CHECK(out[i].first == static_cast<int>(i * i));
    ranks.insert(out[i].second);
  }
  CHECK(ranks == all_ranks());
}

// Pool semantics across real worker processes: every API (map, starmap, imap, imap_unordered, apply, apply_async
// and futures), what may cross (any Codec type, any size), task exceptions, lifecycle and misuse.
#include <catch2/catch.hpp>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/pool/pool.h"
#include "tests/support/pool_main.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;

namespace {

constexpr auto kPatience = std::chrono::seconds(120);  // sanitizer builds on a busy 2-core machine

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int worker_pid(int) { return getpid(); }
std::string repeat(char c, size_t n) { return std::string(n, c); }
int fail_on_13(int x) {
  if (x == 13) throw std::runtime_error("thirteen is unlucky");
  return x;
}
struct Doubler {
  long operator()(long x) const { return 2 * x; }
};
int g_initialised = 0;
void initialise() { g_initialised = 42; }
int initialised(int) { return g_initialised; }
void nothing(int) {}
// Leaves a line in a fully buffered FILE, written out only when the worker leaves (as unflushed printf output is).
void write_unflushed(std::string path) {
  static FILE* file = nullptr;
  if (!file) {
    file = std::fopen(path.c_str(), "a");
    if (!file) throw std::runtime_error("fopen " + path);
    std::setvbuf(file, nullptr, _IOFBF, 1 << 16);
  }
  std::fputs("written when the worker left\n", file);
}
int forever(int) {
  for (;;) pause();
}

ipc::PoolOptions workers(unsigned n) {
  ipc::PoolOptions o;
  o.workers = n;
  o.start_method = ipc::test::kStartMethod;
  return o;
}

}  // namespace

TEST_CASE("map returns f of every input in input order, whatever the chunk size", "[pool]") {
  ipc::Pool pool(workers(2));
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), 0);
  std::vector<int> want;
  for (int x : in) want.push_back(x * x);
  CHECK(pool.map(square, in) == want);
  CHECK(pool.map(square, in, 1) == want);
  CHECK(pool.map(square, in, 7) == want);
  CHECK(pool.map(square, std::vector<int>{}).empty());
  CHECK(pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2}) == std::vector<int>{2, 3});
  CHECK(pool.map(Doubler{}, std::vector<long>{5, 6}) == std::vector<long>{10, 12});
}

namespace {
struct Point {  // trivially copyable: crosses as raw bytes, items and results alike
  int32_t x;
  int16_t y;
  bool operator==(const Point&) const = default;
};
Point to_point(uint8_t v) { return Point{v * 1000, static_cast<int16_t>(-v)}; }
double halve(Point p) { return p.x / 2.0 + p.y; }
uint64_t length_of(const std::string& s) { return s.size(); }
}  // namespace

TEST_CASE("map of raw values: items and results of other sizes, from contiguous and other ranges", "[pool]") {
  ipc::Pool pool(workers(2));
  std::vector<uint8_t> bytes(1001);
  std::iota(bytes.begin(), bytes.end(), uint8_t{0});  // wraps at 256
  std::vector<Point> points;
  for (uint8_t b : bytes) points.push_back(to_point(b));
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{128}, size_t{5000}}) {
    INFO("chunksize " << chunk);
    CHECK(pool.map(to_point, bytes, chunk) == points);  // 1-byte items, 8-byte results
    std::vector<double> halves;
    for (const Point& p : points) halves.push_back(halve(p));
    CHECK(pool.map(halve, points, chunk) == halves);  // 8-byte items, 8-byte results
    // Not contiguous: the items are gathered first.
    std::vector<Point> from_iota;
    for (int i = 0; i < 300; ++i) from_iota.push_back(to_point(static_cast<uint8_t>(i)));
    CHECK(pool.map(to_point, std::views::iota(0, 300) | std::views::transform([](int i) {
                                return static_cast<uint8_t>(i);
                              }), chunk) == from_iota);
    // Items with a codec of their own, raw results: each reply still goes straight into its place in the result.
    std::vector<std::string> words;
    std::vector<uint64_t> lengths;
    for (uint8_t b : bytes) {
      words.emplace_back(b % 7, 'w');
      lengths.push_back(b % 7);
    }
    CHECK(pool.map(length_of, words, chunk) == lengths);
    CHECK(pool.map_async(to_point, bytes, chunk).get() == points);  // the future's copy, as map's moved result
  }
  CHECK(pool.map(to_point, std::vector<uint8_t>{}).empty());
}

TEST_CASE("map spreads chunks over several workers", "[pool]") {
  ipc::Pool pool(workers(2));
  std::vector<int> in(200, 0);
  // Chunks of one that each take a moment: both workers must take part.
  auto pids = pool.map([](int) { usleep(2000); return static_cast<int>(getpid()); }, in, 1);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 2);
  const auto live = pool.worker_pids();
  for (int p : pids) CHECK(std::find(live.begin(), live.end(), p) != live.end());
}

TEST_CASE("starmap unpacks tuples and pairs into arguments", "[pool]") {
  ipc::Pool pool(workers(2));
  std::vector<std::tuple<int, int>> in{{1, 2}, {3, 4}, {5, 6}};
  CHECK(pool.starmap(add, in) == std::vector<int>{3, 7, 11});
  std::vector<std::pair<int, int>> pairs{{10, 1}};
  CHECK(pool.starmap(add, pairs) == std::vector<int>{11});
}

TEST_CASE("apply and apply_async run one call; futures report readiness, success and callbacks", "[pool]") {
  ipc::Pool pool(workers(2));
  CHECK(pool.apply(add, 2, 3) == 5);
  ipc::Future<int> f = pool.apply_async(square, 9);
  std::atomic<int> seen{0};
  // relaxed: the future's completion (its mutex) orders the callback before wait() returns.
  f.on_success([&](const int& v) { seen.store(v, std::memory_order_relaxed); });
  REQUIRE(f.wait(kPatience) == ipc::Outcome::kOk);
  CHECK(f.ready());
  CHECK(f.successful());
  CHECK(f.get() == 81);
  CHECK(f.get(1s) == std::optional<int>(81));
  CHECK(seen.load(std::memory_order_relaxed) == 81);  // callbacks run before waiters are released
  ipc::Future<void> v = pool.submit(nothing, 1);
  v.get();
  CHECK(v.successful());
  // A callback registered after completion runs at once in the registering thread.
  int late = 0;
  f.on_success([&](const int& x) { late = x; });
  CHECK(late == 81);
}

TEST_CASE("threads waiting on tiny tasks completed in batches are woken, and every callback runs", "[pool]") {
  // The supervisor releases the waiters of the futures it completes at the end of each batch of results: each
  // thread blocked in get() must still be woken, and the callbacks must still run before it returns.
  ipc::Pool pool(workers(2));
  std::vector<ipc::Future<int>> warm_up;  // the pool learns that tasks are short and collects results in batches
  for (int i = 0; i < 2000; ++i) warm_up.push_back(pool.apply_async(square, i));
  for (auto& f : warm_up) REQUIRE(f.get(kPatience));
  constexpr int kTasks = 20000;
  std::vector<ipc::Future<int>> fs;
  std::vector<std::atomic<int>> called(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    fs.push_back(pool.apply_async(add, i, 1));
    // relaxed: the future's completion orders the callback before get() returns. On every fourth task only:
    // a future with a callback releases its batch's waiters before the callback runs.
    if (i % 4 == 0) {
      fs.back().on_success([&called, i](const int&) { called[i].fetch_add(1, std::memory_order_relaxed); });
    }
  }
  // Two threads take every other future in turn, each get() blocking while its task is queued or running. A wait
  // that no completion ends would return only after kPatience: each thread says when it is through, and this
  // thread waits for that no longer than kPatience in all.
  std::mutex mu;
  std::condition_variable through_cv;
  int through = 0;  // guarded by mu
  std::atomic<bool> give_up{false};
  std::atomic<int> wrong{0};
  auto take = [&](int first) {
    // relaxed (give_up, wrong, called): flags and counters; wrong is read after the threads are joined.
    for (int i = first; i < kTasks && !give_up.load(std::memory_order_relaxed); i += 2) {
      if (fs[i].get(kPatience) != std::optional<int>(i + 1) ||
          called[i].load(std::memory_order_relaxed) != (i % 4 == 0 ? 1 : 0)) {
        wrong.fetch_add(1, std::memory_order_relaxed);
      }
    }
    std::lock_guard lock(mu);
    ++through;
    through_cv.notify_all();
  };
  std::thread even(take, 0), odd(take, 1);
  bool woken;
  {
    std::unique_lock lock(mu);
    woken = through_cv.wait_for(lock, kPatience, [&] { return through == 2; });
  }
  give_up.store(true, std::memory_order_relaxed);
  even.join();
  odd.join();
  CHECK(woken);
  CHECK(wrong.load(std::memory_order_relaxed) == 0);
}

TEST_CASE("get with a timeout returns nullopt while the task runs", "[pool]") {
  ipc::Pool pool(workers(1));
  ipc::Future<int> f = pool.apply_async(forever, 0);
  CHECK_FALSE(f.get(20ms).has_value());
  CHECK_FALSE(f.ready());
  CHECK_THROWS_AS(f.successful(), ipc::StateError);
  pool.terminate();
  CHECK_THROWS_AS(f.get(), ipc::PoolTerminated);
}

TEST_CASE("results and arguments of megabytes cross without sizing anything", "[pool]") {
  ipc::Pool pool(workers(2));
  const std::string big = pool.apply(repeat, 'x', size_t{5} << 20);
  CHECK(big.size() == (size_t{5} << 20));
  CHECK(std::all_of(big.begin(), big.end(), [](char c) { return c == 'x'; }));
  std::vector<std::string> ins{std::string(3 << 20, 'a'), "b"};
  auto sizes = pool.map([](std::string s) { return s.size(); }, ins, 1);
  CHECK(sizes == std::vector<size_t>{size_t{3} << 20, 1});
  std::map<std::string, int> m{{"a", 1}, {"b", 2}};
  CHECK(pool.apply([](std::map<std::string, int> x) { return x.size(); }, m) == 2);
}

namespace {
// This process's descriptors that are pipe rings' memfds (a transferable Pipe's memory).
int ring_memfds() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    if (!error && target.starts_with("/memfd:ipc-pipe")) ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("a forked pool's rings are anonymous memory: no memfd to reserve in full at start", "[pool][resources]") {
  // A memfd's pages are all allocated when the pipe is made (to fail then, not with a SIGBUS later), which costs a
  // forked pool's start most of its time; the anonymous mapping a fork inherits is accounted when it is mapped.
  const int before = ring_memfds();
  ipc::PoolOptions o;
  o.start_method = ipc::StartMethod::kFork;
  o.workers = 2;
  ipc::Pool pool(o);
  REQUIRE(pool.apply(square, 3) == 9);
  CHECK(ring_memfds() == before);
}

TEST_CASE("many short tasks held ahead by busy workers never block the pool on small pipes with large results",
          "[pool]") {
  // Short tasks make the pool hand each busy worker several at once. Then, with 16 KiB rings, 3.9 KiB arguments
  // (four fill a ring) and 32 KiB results, a worker blocks sending a result while the supervisor sends it more
  // tasks: the tasks held ahead must fit the ring then, or both wait for each other for ever. (Whether the
  // supervisor tries a fifth within the 1 ms it allows depends on the machine: on a busy one this may pass even
  // with that rule broken.)
  ipc::PoolOptions o = workers(2);
  o.pipe_bytes = 16 << 10;
  ipc::Pool pool(o);
  std::vector<ipc::Future<int>> warm_up;  // trivial tasks first: the pool learns that tasks are short
  for (int i = 0; i < 2000; ++i) warm_up.push_back(pool.apply_async(square, i));
  for (auto& f : warm_up) REQUIRE(f.get(kPatience));
  const std::string arg(3900, 'a');
  std::vector<ipc::Future<std::string>> futures;
  for (int i = 0; i < 300; ++i) {
    futures.push_back(pool.apply_async([](std::string s) { return std::string(32 << 10, s[0]); }, arg));
  }
  for (size_t i = 0; i < futures.size(); ++i) {
    INFO("task " << i << " of " << futures.size() << " did not finish: the pool is stuck");
    const std::optional<std::string> result = futures[i].get(kPatience);
    REQUIRE(result);
    CHECK(result->size() == (32 << 10));
  }
}

TEST_CASE("an exception in a task fails that task with its type and message; the worker lives on", "[pool]") {
  ipc::Pool pool(workers(1));
  const auto before = pool.worker_pids();
  auto f = pool.apply_async(fail_on_13, 13);
  std::string error_seen;
  f.on_error([&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const ipc::TaskError& t) {
      error_seen = t.message();
    }
  });
  try {
    f.get();
    FAIL("no exception");
  } catch (const ipc::TaskError& e) {
    CHECK(e.type_name() == "std::runtime_error");
    CHECK(e.message() == "thirteen is unlucky");
  }
  CHECK_FALSE(f.successful());
  CHECK(error_seen == "thirteen is unlucky");
  CHECK(pool.apply(fail_on_13, 12) == 12);
  CHECK(pool.worker_pids() == before);
  CHECK(pool.workers_started() == 1);
  std::vector<int> in(30);
  std::iota(in.begin(), in.end(), 0);
  CHECK_THROWS_AS(pool.map(fail_on_13, in), ipc::TaskError);
}

TEST_CASE("imap is lazy and ordered: an endless input is read only a window ahead", "[pool]") {
  ipc::PoolOptions o = workers(2);
  o.read_ahead = 4;
  ipc::Pool pool(o);
  int pulled = 0;  // the input is read in this process, by the consuming thread
  auto endless = std::views::iota(0) | std::views::transform([&pulled](int x) {
                   ++pulled;
                   return x;
                 });
  std::vector<int> got;
  for (int r : pool.imap(square, endless, 3)) {
    got.push_back(r);
    if (got.size() == 100) break;
  }
  for (int i = 0; i < 100; ++i) REQUIRE(got[i] == i * i);
  CHECK(pulled <= 100 + 4 * 3 + 3);  // what was consumed + the window of chunks + the chunk being filled
}

TEST_CASE("imap_unordered returns every result once, in completion order", "[pool]") {
  ipc::Pool pool(workers(2));
  std::multiset<int> got;
  for (int r : pool.imap_unordered(square, std::views::iota(0, 500), 10)) got.insert(r);
  std::multiset<int> want;
  for (int i = 0; i < 500; ++i) want.insert(i * i);
  CHECK(got == want);
}

TEST_CASE("an imap chunk that fails throws at its place and iteration continues", "[pool]") {
  ipc::Pool pool(workers(2));
  auto results = pool.imap(fail_on_13, std::views::iota(10, 16));
  std::vector<int> got;
  int failures = 0;
  for (;;) {
    try {
      auto r = results.next();
      if (!r) break;
      got.push_back(*r);
    } catch (const ipc::TaskError&) {
      ++failures;
    }
  }
  CHECK(got == std::vector<int>{10, 11, 12, 14, 15});
  CHECK(failures == 1);
}

TEST_CASE("the initializer runs in every worker before its tasks", "[pool]") {
  ipc::PoolOptions o = workers(2);
  o.initializer = initialise;
  ipc::Pool pool(o);
  CHECK(g_initialised == 0);  // not in this process
  auto r = pool.map(initialised, std::vector<int>(20, 0), 1);
  CHECK(std::all_of(r.begin(), r.end(), [](int v) { return v == 42; }));
}

TEST_CASE("max_tasks_per_child replaces workers after that many tasks, and no task is lost", "[pool]") {
  ipc::PoolOptions o = workers(2);
  o.max_tasks_per_child = 2;
  ipc::Pool pool(o);
  std::vector<int> in(20, 0);
  auto pids = pool.map(worker_pid, in, 1);
  CHECK(pids.size() == 20);
  std::map<int, int> per_pid;
  for (int p : pids) ++per_pid[p];
  for (auto [pid, n] : per_pid) CHECK(n <= 2);
  CHECK(per_pid.size() >= 10);
  CHECK(pool.workers_started() >= 10);
}

TEST_CASE("close then join lets queued work finish and the workers exit", "[pool]") {
  ipc::Pool pool(workers(2));
  std::vector<ipc::Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(pool.apply_async(square, i));
  const auto pids = pool.worker_pids();
  pool.close();
  CHECK_THROWS_AS(pool.apply_async(square, 1), ipc::StateError);
  REQUIRE(pool.join(kPatience) == ipc::Outcome::kOk);
  for (int i = 0; i < 50; ++i) CHECK(fs[i].get() == i * i);
  CHECK(pool.worker_pids().empty());
  const auto children = ipc::active_children();  // the fork server is one (pool_main starts it)
  for (int p : pids) CHECK(std::find(children.begin(), children.end(), p) == children.end());
}

TEST_CASE("join returns only once every worker has exited, and terminate ends those still on their way", "[pool]") {
  for (const bool terminate : {false, true}) {
    ipc::Pool pool(workers(2));
    CHECK(pool.apply(square, 3) == 9);
    const auto pids = pool.worker_pids();
    REQUIRE(pids.size() == 2);
    // A stopped worker cannot exit: it sees the end of its stream only once it runs again.
    REQUIRE(kill(pids[0], SIGSTOP) == 0);
    pool.close();
    CHECK(pool.join(200ms) == ipc::Outcome::kTimeout);
    CHECK(kill(pids[0], 0) == 0);
    if (terminate) {
      pool.terminate();  // kills it, stopped as it is
    } else {
      REQUIRE(kill(pids[0], SIGCONT) == 0);
      REQUIRE(pool.join(kPatience) == ipc::Outcome::kOk);
    }
    CHECK(pool.worker_pids().empty());
    for (int p : pids) CHECK(kill(p, 0) != 0);  // exited and reaped: not even a zombie is left
  }
}

TEST_CASE("a replacement worker leaves on its own at close: what it left buffered is written", "[pool]") {
  const std::string path = "/tmp/" + ipc::test::unique_name("numa_mp-pool-flush") + ".txt";
  ipc::PoolOptions options = workers(1);
  options.max_tasks_per_child = 2;
  {
    ipc::Pool pool(options);
    pool.apply(nothing, 0);
    pool.apply(nothing, 1);  // the first worker's quota: it leaves
    // Its replacement, started by the supervisor thread, runs this; the close comes first, so that the supervisor
    // ends the worker's stream as soon as the task is done.
    auto written = pool.apply_async(write_unflushed, path);
    pool.close();
    pool.join();
    written.get();
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(path);
  // Not killed on its way out (a parent-death signal that followed a thread which ended first).
  CHECK(text.str() == "written when the worker left\n");
}

TEST_CASE("terminate and the destructor never wait for running tasks", "[pool]") {
  ipc::Future<int> f;
  std::vector<int> pids;
  {
    ipc::Pool pool(workers(2));
    f = pool.apply_async(forever, 0);
    pids = pool.worker_pids();
  }  // the destructor kills the workers
  CHECK_THROWS_AS(f.get(), ipc::PoolTerminated);
  for (int p : pids) CHECK(kill(p, 0) != 0);
}

TEST_CASE("misuse is refused with a clear error", "[pool]") {
  CHECK_THROWS_AS(ipc::Pool(workers(0)), ipc::InvalidArgument);
  ipc::Pool pool(workers(1));
  CHECK_THROWS_AS(pool.join(), ipc::StateError);  // neither closed nor terminated
  CHECK_THROWS_AS(pool.map(square, std::vector<int>{1}, 0), ipc::InvalidArgument);
  CHECK_THROWS_AS(pool.imap(square, std::vector<int>{1}, 0), ipc::InvalidArgument);
  ipc::PoolOptions bad = workers(1);
  bad.task_timeout = 0ms;
  CHECK_THROWS_AS(ipc::Pool(bad), ipc::InvalidArgument);
  pool.terminate();
  CHECK_THROWS_AS(pool.apply_async(square, 1), ipc::StateError);
}

TEST_CASE("the default worker count is cpu_count()", "[pool]") {
  ipc::Pool pool;
  CHECK(pool.size() == ipc::cpu_count());
  CHECK(pool.worker_pids().size() == ipc::cpu_count());
}

TEST_CASE("which callables can be tasks is decided at compile time", "[pool]") {
  int k = 3;
  auto capturing = [k](int x) { return x + k; };
  auto captureless = [](int x) { return x; };
  STATIC_REQUIRE(ipc::detail::Shippable<decltype(&square)>);
  STATIC_REQUIRE(ipc::detail::Shippable<decltype(captureless)>);
  STATIC_REQUIRE(ipc::detail::Shippable<Doubler>);
  STATIC_REQUIRE_FALSE(ipc::detail::Shippable<decltype(capturing)>);  // its state is in this process only
  STATIC_REQUIRE_FALSE(ipc::detail::Shippable<std::function<int(int)>>);
  CHECK(capturing(1) == 4);
}

namespace {
// Tasks say they run (made before the pool: inherited by fork()ed workers only, hence the tag [inherits]).
ipc::test::PipeSignal* g_started = nullptr;
ipc::test::PipeSignal* g_release = nullptr;  // ... and wait for the test to let them finish
int hold(int x) {
  // Old enough that the pool no longer hands this worker a second task (see dispatch()).
  const auto until = std::chrono::steady_clock::now() + 5ms;
  while (std::chrono::steady_clock::now() < until) {
  }
  g_started->notify();
  if (!g_release->wait(kPatience)) return -1;
  return x;
}
}  // namespace

TEST_CASE("short tasks are not queued behind a long one while another worker can run them", "[pool][inherits]") {
  ipc::test::PipeSignal started, release;
  g_started = &started;
  g_release = &release;
  ipc::Pool pool(workers(2));
  auto long_task = pool.apply_async(hold, 1);
  REQUIRE(started.wait(kPatience));  // the long task runs (and is 5 ms old)
  std::vector<ipc::Future<int>> shorts;
  for (int i = 0; i < 3; ++i) shorts.push_back(pool.apply_async(square, i));
  for (int i = 0; i < 3; ++i) {
    INFO("short task " << i << " is stuck behind the long one");
    REQUIRE(shorts[i].get(kPatience) == std::optional<int>(i * i));
  }
  CHECK_FALSE(long_task.ready());
  release.notify();
  CHECK(long_task.get() == 1);
}

TEST_CASE("a dead worker is replaced before work is queued behind a live one", "[pool][kill][inherits]") {
  ipc::test::PipeSignal started, release;
  g_started = &started;
  g_release = &release;
  ipc::Pool pool(workers(2));
  const int victim = pool.worker_pids().at(0);
  REQUIRE(kill(victim, SIGKILL) == 0);
  // Wait until the pool has buried it (a task sent at the very moment of the death would fail with WorkerLost).
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  auto buried = [&] {
    const auto pids = pool.worker_pids();
    return std::find(pids.begin(), pids.end(), victim) == pids.end();
  };
  while (!buried() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  REQUIRE(buried());
  auto a = pool.apply_async(hold, 1);
  auto b = pool.apply_async(hold, 2);
  // Both run at once: one on the survivor, one on the replacement.
  REQUIRE(started.wait(kPatience));
  REQUIRE(started.wait(kPatience));
  release.notify();
  release.notify();
  CHECK(a.get() == 1);
  CHECK(b.get() == 2);
  CHECK(pool.workers_started() == 3);
}

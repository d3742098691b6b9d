// Pool failures that must never hang and never lose work silently: workers killed from outside or crashing in
// the middle of a task (map, imap, imap_unordered, apply_async), tasks past their time limit, and the pool's own
// process SIGKILLed. Each failure hits exactly the task it interrupted; the pool replaces the worker and goes on.
#include <catch2/catch.hpp>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/poll.h"
#include "ipc/base/process.h"
#include "ipc/pool/pool.h"
#include "tests/support/pool_main.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;

namespace {

constexpr auto kPatience = ipc::test::patience(std::chrono::seconds(120));  // sanitizer builds on a busy 2-core machine

int identity(int x) { return x; }
int die_on_13(int x) {
  if (x == 13) raise(SIGKILL);
  return x;
}
int crash(int how) {
  // The workers inherit this test's handlers (Catch2's, the sanitizers'): crash the way an unprepared program does.
  signal(SIGSEGV, SIG_DFL);
  signal(SIGABRT, SIG_DFL);
  if (how == 0) raise(SIGSEGV);
  if (how == 1) std::abort();
  std::_Exit(3);
}

// An event a task raises by name, whatever its worker's start method (no memory or descriptor is inherited): a
// FIFO the task writes its pid into.
class PidFifo {
 public:
  PidFifo() : path_("/tmp/" + ipc::test::unique_name("numa_mp-pool-kill") + ".fifo") {
    if (mkfifo(path_.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path_);
    fd_ = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // no writer yet: not readable until one writes
  }
  ~PidFifo() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // The pid a task wrote, or 0 when none did within kPatience.
  int wait() {
    if (ipc::wait(std::span<const int>(&fd_, 1), kPatience).empty()) return 0;
    int pid = 0;
    return read(fd_, &pid, sizeof pid) == sizeof pid ? pid : 0;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

int announce_and_wait(std::string fifo) {
  const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  const int pid = getpid();
  if (fd < 0 || write(fd, &pid, sizeof pid) != sizeof pid) return -1;
  close(fd);
  for (;;) pause();
}
// Forks a child that outlives this worker (as a task that starts a server does), writes the child's pid and then
// its own into `fifo`, and waits to be killed.
int fork_announce_and_wait(std::string fifo) {
  const pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  const int pids[2] = {child, getpid()};
  if (child < 0 || fd < 0 || write(fd, &pids[0], sizeof(int)) != sizeof(int) ||
      write(fd, &pids[1], sizeof(int)) != sizeof(int)) {
    return -1;
  }
  close(fd);
  for (;;) pause();
}
int forever(int) {
  for (;;) pause();
}
int sleep_for_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// Appends `x` to the file `log` (one write of 4 bytes with O_APPEND: records never interleave), or dies at 1013.
int log_or_die_at_1013(int x, std::string log) {
  if (x == 1013) raise(SIGKILL);
  const int fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  const bool logged = fd >= 0 && write(fd, &x, sizeof x) == sizeof x;
  if (fd >= 0) close(fd);
  if (!logged) throw std::runtime_error("cannot log to " + log);
  return x;
}

ipc::PoolOptions workers(unsigned n) {
  ipc::PoolOptions o;
  o.workers = n;
  o.start_method = ipc::test::kStartMethod;
  return o;
}

// Fails the test (with which pid) unless `pid` ends within kPatience.
void require_gone(int pid) {
  INFO("process " << pid << " still runs after " << kPatience.count() / 1000 << " s");
  REQUIRE(ipc::test::wait_gone(pid, kPatience));
}

// `f`, once it finished within kPatience; else fails the test naming the pool's workers, so that a worker that
// hangs (or a lost result) is reported at once rather than left to Bazel's timeout.
template <typename T>
ipc::Future<T>& in_time(ipc::Future<T>& f, const ipc::Pool& pool) {
  if (f.wait(kPatience) != ipc::Outcome::kOk) {
    std::string workers;
    for (int pid : pool.worker_pids()) workers += " " + std::to_string(pid);
    FAIL("a task did not finish within " << kPatience.count() / 1000 << " s; the pool's workers:" << workers);
  }
  return f;
}
template <typename T>
ipc::Future<T>&& in_time(ipc::Future<T>&& f, const ipc::Pool& pool) {
  return std::move(in_time(f, pool));
}

// Every future of `fs` gives its own index back, but the one at `killed`, whose worker died: that fails with
// WorkerLost.
void check_only_one_lost(std::vector<ipc::Future<int>>& fs, int killed, const ipc::Pool& pool) {
  int lost = 0;
  for (int i = 0; i < static_cast<int>(fs.size()); ++i) {
    INFO("task " << i);
    if (i == killed) {
      CHECK_THROWS_AS(in_time(fs[i], pool).get(), ipc::WorkerLost);
      ++lost;
    } else {
      CHECK(in_time(fs[i], pool).get() == i);
    }
  }
  CHECK(lost == 1);
}
}  // namespace

TEST_CASE("a worker killed from outside mid-task fails exactly that task, naming the pid and signal",
          "[pool][kill]") {
  PidFifo running;
  ipc::Pool pool(workers(2));
  auto victim_task = pool.apply_async(announce_and_wait, running.path());
  const int victim = running.wait();
  REQUIRE(victim != 0);  // else: the task never started
  std::vector<ipc::Future<int>> others;
  for (int i = 0; i < 40; ++i) others.push_back(pool.apply_async(identity, i));
  REQUIRE(kill(victim, SIGKILL) == 0);
  try {
    in_time(victim_task, pool).get();
    FAIL("the killed task succeeded");
  } catch (const ipc::WorkerLost& e) {
    CHECK(e.pid() == victim);
    CHECK(e.exitcode() == -SIGKILL);
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(victim)) && Catch::Contains("SIGKILL"));
  }
  for (int i = 0; i < 40; ++i) CHECK(in_time(others[i], pool).get() == i);
  CHECK(in_time(pool.apply_async(identity, 7), pool).get() == 7);  // still usable
  CHECK(pool.worker_pids().size() <= 2);
}

TEST_CASE("a worker killed while a child it forked runs on is seen dead at once", "[pool][kill]") {
  // The child holds copies of the worker's descriptors. On a kernel without pidfds the pool sees the worker's end
  // as its life pipe hanging up, which the child would hold back had it kept a copy of that pipe's write end.
  PidFifo running;
  ipc::Pool pool(workers(1));
  auto task = pool.apply_async(fork_announce_and_wait, running.path());
  const int child = running.wait();
  const int victim = running.wait();
  REQUIRE(child != 0);  // else: the task never started
  REQUIRE(victim != 0);
  REQUIRE(kill(victim, SIGKILL) == 0);
  const bool failed_in_time = task.wait(kPatience) == ipc::Outcome::kOk;
  kill(child, SIGKILL);  // now it may go (init reaps it)
  INFO("worker " << victim << " killed; its child " << child << " still ran");
  REQUIRE(failed_in_time);
  CHECK_THROWS_AS(in_time(task, pool).get(), ipc::WorkerLost);
  CHECK(in_time(pool.apply_async(identity, 7), pool).get() == 7);
}

TEST_CASE("a worker dying in the middle of a large map fails only its own chunk", "[pool][kill]") {
  ipc::Pool pool(workers(2));
  std::vector<ipc::Future<int>> fs;
  for (int i = 0; i < 200; ++i) fs.push_back(pool.apply_async(die_on_13, i));
  check_only_one_lost(fs, 13, pool);
  std::vector<int> in(300);
  std::iota(in.begin(), in.end(), 0);
  // map itself fails with the dead chunk's error; a map without the killer afterwards completes in full.
  CHECK_THROWS_AS(in_time(pool.map_async(die_on_13, in, 10), pool).get(), ipc::WorkerLost);
  in.erase(in.begin() + 13);
  CHECK(in_time(pool.map_async(die_on_13, in, 10), pool).get() == in);
  CHECK(pool.workers_started() >= 4);  // two replacements
}

TEST_CASE("a worker killed in a batch of small tasks fails the one it ran; each other runs exactly once",
          "[pool][kill]") {
  // Once tasks are seen to be short, a busy worker is sent many small ones in one message: it must still answer
  // each as it finishes it, so that a kill fails only the task it interrupts, and the pool must put back, not
  // lose or rerun, those behind it.
  const std::string log = "/tmp/" + ipc::test::unique_name("numa_mp-pool-batch") + ".log";
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  close(fd);
  ipc::Pool pool(workers(2));
  std::vector<ipc::Future<int>> warm_up;  // the pool learns that tasks are short
  for (int i = 0; i < 2000; ++i) warm_up.push_back(pool.apply_async(identity, i));
  for (auto& f : warm_up) REQUIRE(f.get(kPatience));
  constexpr int kTasks = 3000;
  std::vector<ipc::Future<int>> fs;
  for (int i = 0; i < kTasks; ++i) fs.push_back(pool.apply_async(log_or_die_at_1013, i, log));
  check_only_one_lost(fs, 1013, pool);
  std::vector<int> runs(kTasks, 0);
  const int in = open(log.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(in >= 0);
  for (int x; read(in, &x, sizeof x) == sizeof x;) {
    REQUIRE((x >= 0 && x < kTasks));
    ++runs[x];
  }
  close(in);
  unlink(log.c_str());
  for (int i = 0; i < kTasks; ++i) {
    INFO("task " << i << " ran " << runs[i] << " times");
    CHECK(runs[i] == (i == 1013 ? 0 : 1));
  }
}

TEST_CASE("imap and imap_unordered deliver every other result around a killed worker", "[pool][kill]") {
  ipc::Pool pool(workers(2));
  for (bool ordered : {true, false}) {
    std::vector<int> got;
    int lost = 0;
    auto run = [&](auto results) {
      for (;;) {
        try {
          auto r = results.next();
          if (!r) break;
          got.push_back(*r);
        } catch (const ipc::WorkerLost& e) {
          CHECK(e.exitcode() == -SIGKILL);
          ++lost;
        }
      }
    };
    if (ordered) {
      run(pool.imap(die_on_13, std::views::iota(0, 100), 1));
    } else {
      run(pool.imap_unordered(die_on_13, std::views::iota(0, 100), 1));
    }
    CHECK(lost == 1);
    std::vector<int> want;
    for (int i = 0; i < 100; ++i) {
      if (i != 13) want.push_back(i);
    }
    if (!ordered) std::sort(got.begin(), got.end());
    CHECK(got == want);
  }
}

TEST_CASE("a task given to an idle pool just after one of its workers died runs on a live worker", "[pool][kill]") {
  ipc::Pool pool(workers(2));
  for (int round = 0; round < 200; ++round) {
    // Idle (the task done): a submit may now hand its task to a worker itself, not through the supervisor.
    REQUIRE(in_time(pool.apply_async(identity, round), pool).get() == round);
    const auto pids = pool.worker_pids();
    REQUIRE(!pids.empty());
    // The worker a task goes to first. It may be gone already: the worker killed in the round before, still listed
    // until the supervisor buries it, and reaped by its parent, the fork server (kForkServer): that is the case
    // this test is about too.
    // Gone before the next task, which the supervisor may not have seen yet.
    if (kill(pids[0], SIGKILL) == 0) REQUIRE(ipc::test::wait_gone(pids[0], kPatience));
    // Not WorkerLost: the tasks never go to the dead worker.
    INFO("round " << round << " killed " << pids[0] << " of " << pids.size());
    for (int i = 0; i < 2; ++i) CHECK(in_time(pool.apply_async(identity, i), pool).get() == i);
  }
}

TEST_CASE("crashes report their signal or exit status", "[pool][kill]") {
  ipc::Pool pool(workers(1));
  const int expected[] = {-SIGSEGV, -SIGABRT, 3};
  for (int how = 0; how < 3; ++how) {
    try {
      (void)in_time(pool.apply_async(crash, how), pool).get();
      FAIL("the crash went unnoticed");
    } catch (const ipc::WorkerLost& e) {
      CHECK(e.exitcode() == expected[how]);
    }
  }
  CHECK(in_time(pool.apply_async(identity, 5), pool).get() == 5);
}

TEST_CASE("a task past its time limit fails with TaskTimeout; its worker is replaced", "[pool][kill]") {
  ipc::PoolOptions o = workers(2);
  o.task_timeout = 300ms;
  ipc::Pool pool(o);
  auto stuck = pool.apply_async(forever, 0);
  std::vector<ipc::Future<int>> fine;
  for (int i = 0; i < 20; ++i) fine.push_back(pool.apply_async(identity, i));
  CHECK_THROWS_AS(in_time(stuck, pool).get(), ipc::TaskTimeout);
  for (int i = 0; i < 20; ++i) CHECK(in_time(fine[i], pool).get() == i);
  CHECK(in_time(pool.apply_async(identity, 1), pool).get() == 1);
}

// The supervisor was held in a completion callback (x's) while a task (a) finished within its limit but past the
// time its limit counted to; its result lay unread. The supervisor then killed a's worker as overdue, and the task
// batched behind it (b), which had run 0.6 s of its 1 s, failed with TaskTimeout.
TEST_CASE("a task behind one whose result came in while the supervisor was busy is not failed with TaskTimeout",
          "[pool][kill]") {
  ipc::PoolOptions o = workers(2);
  o.task_timeout = 1s;
  ipc::Pool pool(o);
  // Short tasks first: the running estimate of a task's time then lets a busy worker hold the next one.
  for (int i = 0; i < 32; ++i) REQUIRE(in_time(pool.apply_async(identity, i), pool).get() == i);
  const auto start = std::chrono::steady_clock::now();
  auto x = pool.apply_async(sleep_for_ms, 50);   // an idle worker
  auto a = pool.apply_async(sleep_for_ms, 600);  // the other idle worker
  auto b = pool.apply_async(sleep_for_ms, 800);  // behind a, the task started last
  x.on_success([start](const int&) { std::this_thread::sleep_until(start + 1200ms); });
  CHECK(in_time(x, pool).get() == 50);
  CHECK(in_time(a, pool).get() == 600);
  CHECK(in_time(b, pool).get() == 800);
}

TEST_CASE("when the pool's process is SIGKILLed its workers exit too", "[pool][kill]") {
  ipc::test::SharedMapping shared(4 * sizeof(std::atomic<int>));
  auto* pids = shared.as<std::atomic<int>>();
  ipc::test::PipeSignal started;
  ipc::test::ForkedChild owner([&] {
    // A forked child has no fork server of its own; it starts one as a program's main would.
    if (ipc::test::kStartMethod == ipc::StartMethod::kForkServer) ipc::start_fork_server();
    ipc::Pool pool(workers(2));
    auto wp = pool.worker_pids();
    // relaxed: the pipe notification below orders them before the test's reads.
    pids[0].store(wp.at(0), std::memory_order_relaxed);
    pids[1].store(wp.at(1), std::memory_order_relaxed);
    auto busy = pool.apply_async(forever, 0);  // one worker mid-task, the other idle
    started.notify();
    for (;;) pause();
  });
  REQUIRE(started.wait(kPatience));
  // relaxed: read after the owner's pipe notification.
  const int a = pids[0].load(std::memory_order_relaxed), b = pids[1].load(std::memory_order_relaxed);
  owner.kill(SIGKILL);
  REQUIRE(owner.wait(kPatience).has_value());
  require_gone(a);
  require_gone(b);
}

TEST_CASE("exit() with a pool still running ends its workers first and fails its tasks", "[pool][kill]") {
  ipc::test::SharedMapping shared(2 * sizeof(std::atomic<int>));
  auto* pids = shared.as<std::atomic<int>>();
  PidFifo running;
  int told[2];
  REQUIRE(pipe(told) == 0);
  ipc::test::ForkedChild owner([&] {
    if (ipc::test::kStartMethod == ipc::StartMethod::kForkServer) ipc::start_fork_server();
    close(told[0]);
    // Never destroyed: alive when exit() runs, as a leaked Pool or one a function owned when it called exit(). In
    // static storage (still reachable: no leak for LeakSanitizer), with no destructor that could end it instead.
    alignas(ipc::Pool) static unsigned char storage[sizeof(ipc::Pool)];
    auto* pool = new (storage) ipc::Pool(workers(2));
    auto wp = pool->worker_pids();
    // relaxed: the child's exit, which the test waits for, orders them before the test's reads.
    pids[0].store(wp.at(0), std::memory_order_relaxed);
    pids[1].store(wp.at(1), std::memory_order_relaxed);
    auto busy = pool->apply_async(announce_and_wait, running.path());
    busy.on_error([fd = told[1]](const std::exception_ptr& e) {
      try {
        std::rethrow_exception(e);
      } catch (const ipc::PoolTerminated&) {
        (void)!write(fd, "T", 1);  // the task failed as terminate() fails it
      } catch (...) {
        (void)!write(fd, "?", 1);
      }
    });
    if (running.wait() == 0) std::_Exit(2);  // the task never started
    std::exit(7);  // atexit handlers, then static destructors, with the pool and its busy worker alive
  });
  close(told[1]);
  CHECK(ipc::test::exit_problem(owner, 7, "the pool's process calling exit(7)", kPatience) == "");
  char verdict = 0;
  CHECK(read(told[0], &verdict, 1) == 1);
  close(told[0]);
  INFO("the busy task's error callback wrote '" << verdict << "' ('T': PoolTerminated)");
  CHECK(verdict == 'T');
  // relaxed: read after the owner was reaped.
  require_gone(pids[0].load(std::memory_order_relaxed));
  require_gone(pids[1].load(std::memory_order_relaxed));
}

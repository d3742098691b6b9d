// Start methods across real processes: pools made by the fork server and by exec work in a program that started
// threads first (one holding a lock, one allocating without pause); what crosses to such workers (plain code, no
// state) and the clear errors for what cannot; the fork server's own lifetime (it dies with its program, taking
// its workers with it). The core pool tests run per method in pool_test_*, pool_kill_test_* and placement_test_*.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "ipc/base/poll.h"
#include "ipc/base/process.h"
#include "ipc/pool/pool.h"
#include "tests/support/pool_main.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;

namespace {

const auto kPatience = ipc::test::patience(60s);

ipc::PoolOptions options(ipc::StartMethod method, unsigned workers = 2) {
  ipc::PoolOptions o;
  o.workers = workers;
  o.start_method = method;
  return o;
}

std::mutex g_held;  // a thread of the test holds it while pools start
// 1 when the worker could take g_held (as in a fresh program), 0 when it inherited it locked; and some allocation.
int take_lock_and_allocate(int n) {
  std::unique_lock lock(g_held, std::try_to_lock);
  if (!lock.owns_lock()) return 0;
  std::vector<std::unique_ptr<std::string>> v;
  for (int i = 0; i < n; ++i) v.push_back(std::make_unique<std::string>(100 + i % 50, 'x'));
  return 1;
}

int g_set_after_start = 1;  // the test sets it to 2 after main started the fork server
int read_global(int) { return g_set_after_start; }

int g_initialised = 0;
void initialise() { g_initialised = 7; }
int initialised(int) { return g_initialised; }

int square(int x) { return x * x; }

// What a worker knows of who started it: "<parent pid> <parent name> <alive|ended> | <its own name>".
std::string who_started_me(int) {
  const auto parent = ipc::parent_process();
  if (!parent) return "no parent | " + ipc::current_process().name;
  return std::to_string(parent->pid) + " " + parent->name + " " + (parent->is_alive() ? "alive" : "ended") + " | " +
         ipc::current_process().name;
}

// Threads that a real program might have when it makes its pools: one holding a lock, one allocating all the time.
class BusyThreads {
 public:
  BusyThreads() {
    holder_ = std::thread([this] {
      std::unique_lock held(g_held);
      std::unique_lock lock(mu_);
      locked_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return stop_; });
    });
    allocator_ = std::thread([this] {
      while (!stop_allocating_.load(std::memory_order_relaxed)) {  // relaxed: only ends the loop
        std::vector<std::unique_ptr<char[]>> v;
        for (int i = 0; i < 64; ++i) v.push_back(std::make_unique<char[]>(1 + i * 97));
      }
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return locked_; });
  }
  ~BusyThreads() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    stop_allocating_.store(true, std::memory_order_relaxed);
    holder_.join();
    allocator_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool locked_ = false, stop_ = false;
  std::atomic<bool> stop_allocating_{false};
  std::thread holder_, allocator_;
};

}  // namespace

TEST_CASE("the fork server and exec start pools safely in a program that started threads first",
          "[pool][start]") {
  BusyThreads threads;  // g_held is locked from now on
  for (auto method : {ipc::StartMethod::kForkServer, ipc::StartMethod::kExec}) {
    INFO("start method " << static_cast<int>(method));
    ipc::Pool pool(options(method));
    const auto got = pool.map(take_lock_and_allocate, std::vector<int>(40, 1000), 1);
    CHECK(std::accumulate(got.begin(), got.end(), 0) == 40);  // every worker found the lock free
    CHECK(pool.apply(square, 12) == 144);
  }
  // For contrast: fork()ed workers inherit the lock locked, as the hazard says.
  ipc::Pool forked(options(ipc::StartMethod::kFork, 1));
  CHECK(forked.apply(take_lock_and_allocate, 10) == 0);
}

TEST_CASE("fork-server workers see the program as it was when the server started; exec workers a fresh one",
          "[pool][start]") {
  g_set_after_start = 2;
  CHECK(ipc::Pool(options(ipc::StartMethod::kFork, 1)).apply(read_global, 0) == 2);
  CHECK(ipc::Pool(options(ipc::StartMethod::kForkServer, 1)).apply(read_global, 0) == 1);
  CHECK(ipc::Pool(options(ipc::StartMethod::kExec, 1)).apply(read_global, 0) == 1);
  g_set_after_start = 1;
}

TEST_CASE("the initializer crosses as a plain function; a closure is refused at construction", "[pool][start]") {
  for (auto method : {ipc::StartMethod::kForkServer, ipc::StartMethod::kExec}) {
    ipc::PoolOptions o = options(method);
    o.initializer = initialise;
    ipc::Pool pool(o);
    auto r = pool.map(initialised, std::vector<int>(10, 0), 1);
    CHECK(std::all_of(r.begin(), r.end(), [](int v) { return v == 7; }));
    o.initializer = +[] { g_initialised = 8; };  // a captureless lambda made a function pointer
    CHECK(ipc::Pool(o).apply(initialised, 0) == 8);
    int k = 3;
    o.initializer = [k] { g_initialised = k; };
    try {
      ipc::Pool refused(o);
      FAIL("a capturing initializer was accepted");
    } catch (const ipc::InvalidArgument& e) {
      CHECK_THAT(e.what(), Catch::Contains("plain function"));
    }
    o.initializer = [] { g_initialised = 9; };  // captureless, but held as a lambda, not a function pointer
    CHECK_THROWS_AS(ipc::Pool(o), ipc::InvalidArgument);
  }
}

TEST_CASE("a worker of every start method names the pool's process as its parent, and itself by its name",
          "[pool][start]") {
  const std::string parent = std::to_string(::getpid()) + " " + ipc::current_process().name + " alive | ";
  for (auto method : {ipc::StartMethod::kFork, ipc::StartMethod::kForkServer, ipc::StartMethod::kExec}) {
    INFO("start method " << static_cast<int>(method));
    ipc::Pool pool(options(method, 1));
    const std::string got = pool.apply(who_started_me, 0);
    CHECK(got.rfind(parent, 0) == 0);  // for the fork server: the program, not the server
    CHECK(got.substr(got.find(" | ") + 3) == "Pool-" + std::to_string(::getpid()) + "-worker-1");
  }
}

TEST_CASE("code made at run time cannot be sent to exec or fork-server workers: InvalidArgument", "[pool][start]") {
  // A function in an anonymous executable page: in no loaded object, so it has no (object, offset).
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* code = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(code != MAP_FAILED);
  std::memset(code, 0xC3, 1);  // ret
  REQUIRE(mprotect(code, page, PROT_READ | PROT_EXEC) == 0);
  auto* fn = reinterpret_cast<void (*)(int)>(code);
  for (auto method : {ipc::StartMethod::kForkServer, ipc::StartMethod::kExec}) {
    ipc::Pool pool(options(method, 1));
    try {
      (void)pool.apply_async(fn, 1);
      FAIL("run-time code was sent");
    } catch (const ipc::InvalidArgument& e) {
      CHECK_THAT(e.what(), Catch::Contains("no loaded program or library"));
    }
    CHECK(pool.apply(square, 3) == 9);  // the pool is still fine
  }
  munmap(code, page);
}

TEST_CASE("a fork-server pool needs the fork server of its own process", "[pool][start]") {
  ipc::test::ForkedChild child([] {
    // A fork of the test: the server it inherited a handle to is its parent's.
    try {
      ipc::Pool pool(options(ipc::StartMethod::kForkServer, 1));
      return 2;
    } catch (const ipc::StateError& e) {
      if (std::string(e.what()).find("start_fork_server") == std::string::npos) return 3;
    }
    ipc::start_fork_server();
    ipc::Pool pool(options(ipc::StartMethod::kForkServer, 1));
    return pool.apply(square, 5) == 25 ? 0 : 4;
  });
  CHECK(ipc::test::exit_problem(child, 0, "child with its own fork server") == "");
}

TEST_CASE("the fork server and its workers die with their program, also when it is SIGKILLed", "[pool][start][kill]") {
  ipc::test::SharedMapping shared(4 * sizeof(std::atomic<int>));
  auto* pids = shared.as<std::atomic<int>>();
  ipc::test::PipeSignal started;
  ipc::test::ForkedChild owner([&] {
    const auto before = ipc::active_children();
    ipc::start_fork_server();
    const auto after = ipc::active_children();
    int server = 0;
    for (int p : after) {
      if (std::find(before.begin(), before.end(), p) == before.end()) server = p;
    }
    ipc::Pool pool(options(ipc::StartMethod::kForkServer));
    (void)pool.apply(square, 1);
    const auto wp = pool.worker_pids();
    // relaxed: the pipe notification below orders them before the test's reads.
    pids[0].store(server, std::memory_order_relaxed);
    pids[1].store(wp.at(0), std::memory_order_relaxed);
    pids[2].store(wp.at(1), std::memory_order_relaxed);
    started.notify();
    for (;;) pause();
  });
  REQUIRE(started.wait(kPatience));
  std::vector<int> gone;
  for (int i = 0; i < 3; ++i) gone.push_back(pids[i].load(std::memory_order_relaxed));  // relaxed: as above
  REQUIRE(gone[0] != 0);
  owner.kill(SIGKILL);
  REQUIRE(owner.wait(kPatience).has_value());
  for (size_t i = 0; i < gone.size(); ++i) {
    INFO("process " << gone[i] << (i == 0 ? " (the fork server)" : " (a worker)") << " outlived its program");
    CHECK(ipc::test::wait_gone(gone[i], kPatience));
  }
}

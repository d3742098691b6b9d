// The README's tour of the API, compiled and run from the README itself: tests/readme_tour.py extracts each tour
// section's ```cpp block at build time (see there for the convention that makes a fragment compile), and each test
// case below defines what its block uses but does not define, includes the block, and checks what it did. A README
// block that no longer compiles fails this test's build, reported at README.md:line.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <map>
#include <numeric>
#include <span>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/pipe/listener.h"
#include "tests/readme_tour/blocks.h"
#include "tests/support/test_support.h"

namespace {

struct Job {
  int id;
  double weight;
};

// Whether every node in `nodes` is online here (the numa and segment blocks name nodes 0-3 and 0-1).
bool online(std::initializer_list<int> nodes) {
  const ipc::numa::NodeSet here = ipc::numa::Topology::online_nodes();
  for (int n : nodes) {
    if (!here.contains(n)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the README's pool block runs", "[readme]") {
  // The block's map_array needs a segment, an Array in it and a chunk function.
  ipc::Segment segment = ipc::Segment::create(ipc::test::unique_name("tour-pool"), 1 << 20);
  ipc::Array<double>& array = ipc::Array<double>::create(segment, "values", 10000);
  for (size_t i = 0; i < array.size(); ++i) array.data()[i] = 1.0;
  auto chunk_sum = [](std::span<double> chunk) { return std::accumulate(chunk.begin(), chunk.end(), 0.0); };
#include "tests/readme_tour/ipc_pool.inc"
  CHECK(squares == std::vector<int>{1, 4, 9});
  CHECK(v == 49);
  CHECK(std::accumulate(r.results.begin(), r.results.end(), 0.0) == 10000.0);
  CHECK(r.chunks == r.results.size());
}

TEST_CASE("the README's process block runs", "[readme]") {
  // The block sorts in.txt into out.txt in the current directory, and crunch() throws (the exception path).
  REQUIRE(chdir(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") == 0);
  std::ofstream("in.txt") << "pear\napple\n";
  auto crunch = []() -> int { throw std::runtime_error("no input"); };
#include "tests/readme_tour/ipc_base_process.inc"
  CHECK_FALSE(ended.empty());
  CHECK(code == 1);
  REQUIRE(worker.exception());
  CHECK(worker.exception()->message == "no input");
  const std::optional<int> sorted = sorter.join(std::chrono::seconds(10));
  CHECK((sorted == 0 || sorted == -SIGTERM));  // terminate() came before or after sort finished
  if (sorted == 0) {
    std::ifstream result("out.txt");
    CHECK(std::string(std::istreambuf_iterator<char>(result), {}) == "apple\npear\n");
  }
  CHECK(cpus >= 1);
}

TEST_CASE("the README's numa block runs (or names the missing nodes)", "[readme]") {
  const size_t length = 1 << 20;
  void* addr = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(addr != MAP_FAILED);
  auto tour = [&] {
#include "tests/readme_tour/ipc_numa.inc"
  };
  if (online({0, 1, 2, 3})) {
    CHECK_NOTHROW(tour());
  } else {
    CHECK_THROWS_AS(tour(), ipc::numa::PolicyError);  // interleave:0-3 here: the apply names the nodes
  }
  munmap(addr, length);
}

TEST_CASE("the README's segment block runs (or names the missing nodes)", "[readme]") {
  auto tour = [&] {
#include "tests/readme_tour/ipc_segment.inc"
    CHECK(counter.load() == 1);
  };
  if (online({0, 1})) {
    tour();
  } else {
    CHECK_THROWS_AS(tour(), ipc::numa::PolicyError);  // interleave({0, 1}) on a machine without node 1
  }
}

TEST_CASE("the README's queue block runs", "[readme]") {
  Job job{7, 0.5};
#include "tests/readme_tour/ipc_queue.inc"
  CHECK(j.id == 7);
  CHECK(line == std::optional<std::string>("hello"));
  CHECK(jobs.get(j) == ipc::Outcome::kClosed);
}

TEST_CASE("the README's pipe block runs", "[readme]") {
  ipc::Process child = ipc::Process::start([] { return 0; });
  std::vector<ipc::Connection*> connections;  // only the child's sentinel is waited for
#include "tests/readme_tour/ipc_pipe.inc"
  REQUIRE(m);
  CHECK(m->at("x") == 1);
  CHECK(child.join(ipc::test::time_left()) == 0);
}

TEST_CASE("the README's sync and shared blocks run", "[readme]") {
  ipc::Segment seg = ipc::Segment::create(ipc::test::unique_name("readme"), 1 << 20);
  int ledger = 0;
  auto repair = [](int& l) { l = 0; };
  auto update = [](int& l) { ++l; };
  auto sync_tour = [&] {
#include "tests/readme_tour/ipc_sync.inc"
  };
  sync_tour();
  CHECK(ledger == 1);
  CHECK(ipc::Lock::open(seg, "ledger lock").acquire(std::chrono::seconds(0)) == ipc::Outcome::kOk);

#include "tests/readme_tour/ipc_shared.inc"
  CHECK(hits.load() == 2);
  CHECK(std::get<1>(back) == "x");
  CHECK(std::get<2>(back) == std::vector<double>{2.5});
}

TEST_CASE("the README's manager block runs", "[readme]") {
#include "tests/readme_tour/manager.inc"
  CHECK(results.size() == 1);
  CHECK(counter.add(0) == 1000);
}

// The Listener snippet is the pipe section's second block, which tests/readme_tour.py does not extract (it takes
// each section's first): this case is a copy of it, kept beside the generated ones.
TEST_CASE("the README's listener snippet works", "[readme]") {
  const std::vector<std::uint8_t> key(32, 7);
  const std::string name = ipc::test::unique_name("tour");
  ipc::Listener listener(name, key);
  ipc::Process client = ipc::Process::start([&] {
    ipc::Connection c = ipc::connect(name, key);
    (void)c.send(std::string("to be or not to be"));
  });
  ipc::Connection served = listener.accept();
  CHECK(served.recv<std::string>() == "to be or not to be");
  CHECK(served.recv<std::string>() == std::nullopt);  // the client exited: end of stream
  CHECK(client.join(ipc::test::patience(std::chrono::seconds(60))) == 0);
}

// The README's tour of the API, compiled and run, so that the snippets users copy keep working.
#include <signal.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <cstdint>
#include <cstdio>
#include <map>
#include <ranges>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ipc/base/process.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"
#include "ipc/pool/pool.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/codec.h"
#include "ipc/shared/value.h"
#include "ipc/sync/lock.h"
#include "manager/client.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

namespace {
int square(int x) { return x * x; }
struct Job {
  int id;
  double weight;
};
}  // namespace

TEST_CASE("the README's pool snippet works", "[readme]") {
  ipc::Pool pool;
  std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});
  CHECK(squares == std::vector<int>{1, 4, 9});
  int n = 0;
  for (int s : pool.imap(square, std::views::iota(0, 1000), 64)) CHECK(s == square(n++));
  CHECK(n == 1000);
  ipc::Future<int> f = pool.apply_async(square, 7);
  int seen = 0;
  f.on_success([&](const int& v) { seen = v; });
  CHECK(f.get() == 49);
  CHECK(seen == 49);
  pool.close();
  pool.join();
}

TEST_CASE("the README's process snippet works", "[readme]") {
  const std::string in = "/tmp/" + ipc::test::unique_name("readme-sort-in");
  const std::string out = "/tmp/" + ipc::test::unique_name("readme-sort-out");
  std::ofstream(in) << "pear\napple\n";
  auto crunch = [] { throw std::runtime_error("no input"); };
  ipc::Process worker = ipc::Process::start([&] { return crunch(); }, {.name = "cruncher"});
  ipc::Process sorter = ipc::Process::exec("sort", {"sort", "-o", out, in});
  std::vector<int> ended = ipc::wait(std::array{worker.sentinel(), sorter.sentinel()}, std::chrono::seconds(10));
  CHECK_FALSE(ended.empty());
  std::optional<int> code = worker.join(std::chrono::seconds(5));
  CHECK(code == 1);
  REQUIRE(worker.exception());
  CHECK(worker.exception()->message == "no input");
  sorter.terminate();  // finished or not, it ends
  const std::optional<int> sorted = sorter.join(std::chrono::seconds(10));
  CHECK((sorted == 0 || sorted == -SIGTERM));
  if (sorted == 0) {
    std::ifstream result(out);
    CHECK(std::string(std::istreambuf_iterator<char>(result), {}) == "apple\npear\n");
  }
  CHECK(ipc::cpu_count() >= 1);
  std::remove(in.c_str());
  std::remove(out.c_str());
}

TEST_CASE("the README's numa and segment snippets work", "[readme]") {
  using namespace ipc::numa;
  Topology t = Topology::discover();
  CHECK(t.describe().find("available:") != std::string::npos);
  MemoryPolicy q = MemoryPolicy::from_oci_json(
      R"({"mode": "MPOL_BIND", "nodes": "0,1", "flags": ["MPOL_F_STATIC_NODES"]})");
  CHECK(q.to_oci_json() == R"({"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]})");
  CHECK(MemoryPolicy::parse("interleave:0-3").to_string() == "interleave:0-3");

  ipc::SegmentOptions opts;
  opts.policy = MemoryPolicy::interleave(t.online());
  const std::string name = ipc::test::unique_name("readme");
  ipc::Segment seg = ipc::Segment::create(name, 1 << 20, opts);
  seg.construct<std::atomic<uint64_t>>("counter", 0u);
  ipc::Segment same = ipc::Segment::open(name);
  same.find<std::atomic<uint64_t>>("counter")->fetch_add(1, std::memory_order_relaxed);
  CHECK(seg.find<std::atomic<uint64_t>>("counter")->load(std::memory_order_relaxed) == 1);
  CHECK(page_placement(seg.base(), seg.size_bytes()).total_pages == seg.size_bytes() / 4096);
}

TEST_CASE("the README's queue, pipe, sync and shared snippets work", "[readme]") {
  ipc::Segment seg = ipc::Segment::create(ipc::test::unique_name("readme"), 16 << 20);
  auto jobs = ipc::Queue<Job>::create(seg, "jobs", 1024);
  auto text = ipc::MessageQueue::create<std::string>(seg, "lines", 256, 4096);
  REQUIRE(jobs.put(Job{1, 0.5}, std::chrono::milliseconds(100)) == ipc::Outcome::kOk);
  Job j{};
  REQUIRE(jobs.get(j) == ipc::Outcome::kOk);
  CHECK(j.id == 1);
  REQUIRE(text.put_value(std::string("hello")) == ipc::Outcome::kOk);
  CHECK(text.get_value<std::string>() == std::string("hello"));
  CHECK_NOTHROW(ipc::MessageQueue::open<std::string>(seg, "lines"));
  CHECK_THROWS_AS(ipc::MessageQueue::open<int>(seg, "lines"), ipc::InvalidArgument);
  jobs.close();
  CHECK(jobs.get(j) == ipc::Outcome::kClosed);
  CHECK(jobs.abandoned_count() == 0);

  auto [parent_end, child_end] = ipc::Pipe();
  ipc::Process child = ipc::Process::start([&] {
    parent_end.close();
    return child_end.send(std::map<std::string, int>{{"x", 1}}) == ipc::Outcome::kOk ? 0 : 1;
  });
  child_end.close();
  auto m = parent_end.recv<std::map<std::string, int>>();
  REQUIRE(m);
  CHECK(m->at("x") == 1);
  std::vector<ipc::Connection*> connections{&parent_end};
  auto ready = ipc::wait(connections, std::array{child.sentinel()}, std::chrono::seconds(10));
  CHECK((ready.connections.size() == 1 || ready.sentinels.size() == 1));
  CHECK(child.join() == 0);

  ipc::Lock& lock = ipc::Lock::create(seg, "ledger lock");
  REQUIRE(lock.acquire(std::chrono::seconds(1)) == ipc::Outcome::kOk);
  lock.release();

  auto& hits = ipc::Value<int64_t>::create(seg, "hits", 0);
  hits.fetch_add(1);
  {
    auto g = hits.lock();
    g.set(g.get() * 2);
  }
  CHECK(hits.load() == 2);

  std::vector<std::byte> bytes = ipc::encode(std::tuple{1, std::string("x"), std::vector<double>{2.5}});
  auto back = ipc::decode<std::tuple<int, std::string, std::vector<double>>>(bytes);
  CHECK(std::get<1>(back) == "x");
}

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

TEST_CASE("the README's manager snippet works", "[readme]") {
  auto server = ipc::manager::start_server();
  ipc::manager::Client client(server.socket_path(), server.key());
  auto results = client.dict("results");
  results.set("answer", 42);
  auto counter = client.counter("items");
  CHECK(counter.add(1000) == 1000);
  CHECK(results.size() == 1);
}

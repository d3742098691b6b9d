// The stress test with threads instead of processes, so that ThreadSanitizer (--config=tsan) can check the
// memory orderings of every queue: several producers and consumers, exactly-once delivery, intact payloads.
// Ledger counters are relaxed: they are read only after the processes or threads that wrote them have been
// reaped or joined, which orders every write before the read.
#include <catch2/catch.hpp>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::SharedMapping;

namespace {

struct Item {
  uint32_t producer;
  uint32_t seq;
  uint64_t check;
};
uint64_t check_of(uint32_t p, uint32_t s) { return (uint64_t{p} << 32 | s) * 0x9e3779b97f4a7c15ull; }

// Catch2's assertions are not thread-safe: threads count failures here and the test thread checks the count.
std::atomic<uint32_t> g_put_failures{0};
void expect_ok(Outcome r) {
  if (r != Outcome::kOk) g_put_failures.fetch_add(1, std::memory_order_relaxed);
}

template <typename PutFn, typename GetFn, typename CloseFn>
void run_threads(int producers, int consumers, uint32_t per, PutFn put, GetFn get, CloseFn close) {
  std::vector<std::atomic<uint32_t>> seen(static_cast<size_t>(producers) * per);
  std::atomic<uint32_t> bad{0};
  std::vector<std::thread> cs, ps;
  for (int c = 0; c < consumers; ++c) {
    cs.emplace_back([&] {
      Item it;
      while (get(it)) {
        if (it.producer >= static_cast<uint32_t>(producers) || it.seq >= per || it.check != check_of(it.producer, it.seq)) {
          bad.fetch_add(1, std::memory_order_relaxed);
        } else {
          seen[it.producer * per + it.seq].fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (int p = 0; p < producers; ++p) {
    ps.emplace_back([&, p] {
      for (uint32_t s = 0; s < per; ++s) put(Item{static_cast<uint32_t>(p), s, check_of(p, s)});
    });
  }
  for (auto& t : ps) t.join();
  close();
  for (auto& t : cs) t.join();
  CHECK(bad.load(std::memory_order_relaxed) == 0);
  uint32_t wrong = 0;
  for (auto& s : seen) wrong += s.load(std::memory_order_relaxed) != 1;
  CHECK(wrong == 0);
  CHECK(g_put_failures.load(std::memory_order_relaxed) == 0);
}

}  // namespace

TEST_CASE("MPMC queue delivers exactly once between threads", "[queue][stress][threads]") {
  SharedMapping mem(ipc::Queue<Item>::bytes_needed(8));
  auto q = ipc::Queue<Item>::create_at(mem.base(), mem.bytes(), 8);
  run_threads(
      3, 3, 20000, [&](const Item& it) { expect_ok(q.put(it)); },
      [&](Item& it) { return q.get(it) == Outcome::kOk; }, [&] { q.close(); });
}

TEST_CASE("SPSC queue delivers exactly once between two threads", "[queue][stress][threads]") {
  SharedMapping mem(ipc::SpscQueue<Item>::bytes_needed(16));
  auto q = ipc::SpscQueue<Item>::create_at(mem.base(), mem.bytes(), 16);
  run_threads(
      1, 1, 100000, [&](const Item& it) { expect_ok(q.put(it)); },
      [&](Item& it) { return q.get(it) == Outcome::kOk; }, [&] { q.close(); });
}

TEST_CASE("message queue delivers exactly once between threads", "[queue][stress][threads][bytes]") {
  SharedMapping mem(ipc::MessageQueue::bytes_needed(4, 256));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 4, 256);
  run_threads(
      2, 2, 10000,
      [&](const Item& it) {
        std::byte m[200];
        std::memset(m, static_cast<int>(it.seq & 0xff), sizeof m);
        std::memcpy(m, &it, sizeof it);
        expect_ok(q.put(std::span<const std::byte>(m, sizeof it + it.seq % (sizeof m - sizeof it))));
      },
      [&](Item& it) {
        thread_local std::vector<std::byte> m;
        if (q.get(m) != Outcome::kOk) return false;
        std::memcpy(&it, m.data(), sizeof it);
        for (size_t i = sizeof it; i < m.size(); ++i) {
          if (m[i] != std::byte(static_cast<uint8_t>(it.seq & 0xff))) it.check = 0;
        }
        return true;
      },
      [&] { q.close(); });
}

TEST_CASE("join returns once every value put by several threads is task_done", "[queue][threads]") {
  SharedMapping mem(ipc::JoinableQueue<uint32_t>::bytes_needed(4));
  auto q = ipc::JoinableQueue<uint32_t>::create_at(mem.base(), mem.bytes(), 4);
  std::atomic<uint32_t> done{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&] {
      uint32_t v;
      while (q.get(v) == Outcome::kOk) {
        done.fetch_add(1, std::memory_order_relaxed);
        q.task_done();
      }
    });
  }
  for (uint32_t i = 0; i < 5000; ++i) REQUIRE(q.put(i) == Outcome::kOk);
  REQUIRE(q.join(30s) == Outcome::kOk);
  CHECK(done.load(std::memory_order_relaxed) == 5000);
  q.close();
  for (auto& t : workers) t.join();
}

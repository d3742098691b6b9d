// Multi-process stress: several producer and consumer processes, small rings (so that full, empty and
// wrap-around happen constantly), and a check that every message arrived exactly once and intact.
// Ledger counters are relaxed: they are read only after the processes or threads that wrote them have been
// reaped or joined, which orders every write before the read.
#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::SharedMapping;

namespace {

// A 64-bit FNV-1a checksum.
uint64_t checksum(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

struct Msg {
  uint32_t producer;
  uint32_t seq;
  uint64_t payload[2];
  uint64_t sum;
};

Msg make_msg(uint32_t p, uint32_t seq) {
  Msg m{p, seq, {uint64_t{p} * 0x9e3779b97f4a7c15ull + seq, ~uint64_t{seq}}, 0};
  m.sum = checksum(&m, offsetof(Msg, sum));
  return m;
}

// Variable-size messages: a header (producer, seq), then a pattern derived from both, of a length that sweeps
// 0..max over the sequence, and a trailing checksum.
std::vector<std::byte> make_bytes(uint32_t p, uint32_t seq, size_t max_bytes) {
  const size_t body = (seq * 7919u + p * 31u) % (max_bytes - 16 + 1);
  std::vector<std::byte> v(8 + body + 8);
  std::memcpy(v.data(), &p, 4);
  std::memcpy(v.data() + 4, &seq, 4);
  for (size_t i = 0; i < body; ++i) v[8 + i] = std::byte(static_cast<uint8_t>(i * 13 + seq + p));
  const uint64_t sum = checksum(v.data(), 8 + body);
  std::memcpy(v.data() + 8 + body, &sum, 8);
  return v;
}

// Where consumers record what they received: one counter per (producer, seq), plus a count of corrupt messages.
struct Ledger {
  Ledger(int producers, uint32_t per_producer)
      : producers(producers), per(per_producer),
        mem(sizeof(std::atomic<uint32_t>) * (producers * per_producer + 1)) {}
  std::atomic<uint32_t>& slot(uint32_t p, uint32_t seq) { return mem.as<std::atomic<uint32_t>>()[p * per + seq]; }
  std::atomic<uint32_t>& corrupt() { return mem.as<std::atomic<uint32_t>>()[producers * per]; }
  void record(uint32_t p, uint32_t seq) {
    if (p >= static_cast<uint32_t>(producers) || seq >= per) {
      corrupt().fetch_add(1, std::memory_order_relaxed);
    } else {
      slot(p, seq).fetch_add(1, std::memory_order_relaxed);
    }
  }
  void check_exactly_once() {
    CHECK(corrupt().load(std::memory_order_relaxed) == 0);
    uint64_t missing = 0, duplicated = 0;
    for (int p = 0; p < producers; ++p) {
      for (uint32_t s = 0; s < per; ++s) {
        const uint32_t n = slot(p, s).load(std::memory_order_relaxed);
        missing += n == 0;
        duplicated += n > 1;
      }
    }
    CHECK(missing == 0);
    CHECK(duplicated == 0);
  }
  int producers;
  uint32_t per;
  SharedMapping mem;
};

// Runs producers and consumers as processes; `produce(p)` and `consume()` are the children's bodies. Children are
// waited for as long as the test may still run (ipc::test::time_left(): on a loaded machine the work takes
// minutes); one that does not exit cleanly is named, with its pid and how long it was waited for.
template <typename Produce, typename Consume, typename Close>
void run_processes(int producers, int consumers, Produce produce, Consume consume, Close close) {
  using ipc::test::exit_problem;
  std::vector<ipc::test::ForkedChild> cons, prods;
  for (int c = 0; c < consumers; ++c) cons.emplace_back(consume);
  for (int p = 0; p < producers; ++p) prods.emplace_back([&, p] { produce(p); });
  for (int p = 0; p < producers; ++p) CHECK(exit_problem(prods[p], 0, "producer " + std::to_string(p)) == "");
  close();  // consumers drain what is left, then see kClosed
  for (int c = 0; c < consumers; ++c) CHECK(exit_problem(cons[c], 0, "consumer " + std::to_string(c)) == "");
}

template <typename Q>
void fixed_stress(int producers, int consumers, uint64_t capacity, uint32_t per_producer) {
  SharedMapping mem(Q::bytes_needed(capacity));
  auto q = Q::create_at(mem.base(), mem.bytes(), capacity);
  Ledger ledger(producers, per_producer);
  run_processes(
      producers, consumers,
      [&](int p) {
        for (uint32_t s = 0; s < per_producer; ++s) {
          // Mix blocking, timed and non-blocking puts.
          const Msg m = make_msg(p, s);
          if (s % 3 == 0) {
            while (q.try_put(m) == Outcome::kFull) {
            }
          } else if (s % 3 == 1) {
            while (q.put(m, 1ms) == Outcome::kTimeout) {
            }
          } else if (q.put(m) != Outcome::kOk) {
            throw ipc::Error("put failed");
          }
        }
      },
      [&] {
        Msg m;
        for (uint64_t i = 0;; ++i) {
          const Outcome r = i % 2 ? q.get(m) : q.get(m, 1ms);
          if (r == Outcome::kClosed) return;
          if (r != Outcome::kOk) continue;
          if (checksum(&m, offsetof(Msg, sum)) != m.sum) {
            ledger.corrupt().fetch_add(1, std::memory_order_relaxed);
          } else {
            ledger.record(m.producer, m.seq);
          }
        }
      },
      [&] { q.close(); });
  ledger.check_exactly_once();
}

}  // namespace

TEST_CASE("MPMC queue delivers every fixed-size message exactly once across 3 producer and 3 consumer processes",
          "[queue][stress]") {
  fixed_stress<ipc::Queue<Msg>>(3, 3, 8, 40000);
}

TEST_CASE("MPMC queue of capacity 1 delivers every message exactly once", "[queue][stress]") {
  fixed_stress<ipc::Queue<Msg>>(2, 2, 1, 5000);
}

TEST_CASE("SPSC queue delivers every fixed-size message exactly once between two processes", "[queue][stress]") {
  fixed_stress<ipc::SpscQueue<Msg>>(1, 1, 16, 300000);
}

TEST_CASE("message queue delivers every variable-size message exactly once and intact across processes",
          "[queue][stress][bytes]") {
  constexpr int kProducers = 2, kConsumers = 3;
  constexpr uint32_t kPer = 20000;
  constexpr size_t kMax = 700;
  SharedMapping mem(ipc::MessageQueue::bytes_needed(8, kMax));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 8, kMax);
  Ledger ledger(kProducers, kPer);
  run_processes(
      kProducers, kConsumers,
      [&](int p) {
        for (uint32_t s = 0; s < kPer; ++s) {
          const auto m = make_bytes(p, s, q.max_message_bytes());
          if (q.put(m) != Outcome::kOk) throw ipc::Error("put failed");
        }
      },
      [&] {
        std::vector<std::byte> m;
        std::vector<std::byte> buffer(q.max_message_bytes());
        for (uint64_t i = 0;; ++i) {
          size_t n = 0;
          Outcome r;
          if (i % 2) {
            r = q.get(m);
          } else {
            r = q.get(std::span<std::byte>(buffer), n);
            m.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
          }
          if (r == Outcome::kClosed) return;
          if (r != Outcome::kOk) throw ipc::Error("get failed");
          uint32_t p, s;
          uint64_t sum;
          if (m.size() < 16) {
            ledger.corrupt().fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          std::memcpy(&p, m.data(), 4);
          std::memcpy(&s, m.data() + 4, 4);
          std::memcpy(&sum, m.data() + m.size() - 8, 8);
          if (sum != checksum(m.data(), m.size() - 8) || m != make_bytes(p, s, q.max_message_bytes())) {
            ledger.corrupt().fetch_add(1, std::memory_order_relaxed);
          } else {
            ledger.record(p, s);
          }
        }
      },
      [&] { q.close(); });
  ledger.check_exactly_once();
  CHECK(q.abandoned_count() == 0);
}

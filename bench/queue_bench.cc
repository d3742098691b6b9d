// bench/queue_bench.cc: the "queue" group of //bench:all: ipc/queue figures beside their peers, same run.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "bench/peers.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"

namespace {

using ipc::Outcome;
using namespace std::chrono_literals;

constexpr int kReps = 3;

// Shared memory for one measurement, freed on scope exit.
struct Mem {
  explicit Mem(size_t n) : bytes(n), p(bench::map_shared(n)) {}
  ~Mem() { bench::free_shared(p, bytes); }
  size_t bytes;
  void* p;
};

// Starts `consumers` then `producers` children; times from the start signal to the last child's exit.
template <typename Produce, typename Consume>
double timed_processes(int producers, int consumers, Produce produce, Consume consume) {
  Mem start_mem(4096);
  auto* start = new (start_mem.p) std::atomic<int>(0);
  std::vector<ipc::Process> kids;
  for (int c = 0; c < consumers; ++c) kids.push_back(bench::fork_child([&, c] { consume(c); }));
  for (int p = 0; p < producers; ++p) {
    kids.push_back(bench::fork_child([&, p] {
      while (start->load(std::memory_order_acquire) == 0) {
      }
      produce(p);
    }));
  }
  const double t0 = bench::now_seconds();
  start->store(1, std::memory_order_release);
  bool ok = true;
  for (ipc::Process& k : kids) ok = bench::wait_child(k) && ok;
  const double t = bench::now_seconds() - t0;
  return ok ? t : -1;
}

double spsc_msgs_per_s(uint64_t n) {
  Mem mem(ipc::SpscQueue<uint64_t>::bytes_needed(4096));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.p, mem.bytes, 4096);
  const double t = timed_processes(
      1, 1,
      [&](int) {
        for (uint64_t i = 0; i < n; ++i) (void)q.put(i);
      },
      [&](int) {
        uint64_t v;
        for (uint64_t i = 0; i < n; ++i) (void)q.get(v);
      });
  return t > 0 ? static_cast<double>(n) / t : -1;
}

double mpmc_msgs_per_s(uint64_t n, int producers, int consumers) {
  Mem mem(ipc::Queue<uint64_t>::bytes_needed(1024));
  auto q = ipc::Queue<uint64_t>::create_at(mem.p, mem.bytes, 1024);
  const uint64_t per_p = n / producers, per_c = per_p * producers / consumers;
  const double t = timed_processes(
      producers, consumers,
      [&](int) {
        for (uint64_t i = 0; i < per_p; ++i) (void)q.put(i);
      },
      [&](int) {
        uint64_t v;
        for (uint64_t i = 0; i < per_c; ++i) (void)q.get(v);
      });
  return t > 0 ? static_cast<double>(per_c * consumers) / t : -1;
}

// Ping-pong through two SPSC queues; `idle_gap_us` > 0 pauses before each ping so that the echo side is asleep.
double queue_rtt_ns(uint64_t round_trips, unsigned idle_gap_us) {
  const size_t bytes = ipc::SpscQueue<uint64_t>::bytes_needed(64);
  Mem mem(2 * bytes + 64);
  auto ping = ipc::SpscQueue<uint64_t>::create_at(mem.p, bytes, 64);
  auto pong = ipc::SpscQueue<uint64_t>::create_at(static_cast<char*>(mem.p) + bytes, bytes, 64);
  ipc::Process child = bench::fork_child([&] {
    uint64_t v;
    while (ping.get(v) == Outcome::kOk) (void)pong.put(v);
  });
  uint64_t i = 0, v = 0;
  const double ns = bench::round_trip_ns(round_trips, idle_gap_us, [&] {
    return ping.put(i++) == Outcome::kOk && pong.get(v) == Outcome::kOk;
  });
  ping.close();
  return bench::wait_child(child) ? ns : -1;
}

double message_bytes_per_s(size_t message_bytes, size_t total_bytes) {
  const uint64_t capacity = message_bytes >= (1 << 20) ? 8 : message_bytes >= 4096 ? 64 : 1024;
  Mem mem(ipc::MessageQueue::bytes_needed(capacity, message_bytes));
  auto q = ipc::MessageQueue::create_at(mem.p, mem.bytes, capacity, message_bytes);
  const uint64_t n = total_bytes / message_bytes;
  const double t = timed_processes(
      1, 1,
      [&](int) {
        std::vector<std::byte> m(message_bytes, std::byte{7});
        for (uint64_t i = 0; i < n; ++i) (void)q.put(m);
      },
      [&](int) {
        std::vector<std::byte> buf(q.max_message_bytes());
        size_t got;
        for (uint64_t i = 0; i < n; ++i) (void)q.get(std::span<std::byte>(buf), got);
      });
  return t > 0 ? static_cast<double>(n * message_bytes) / t : -1;
}

double blocked_consumer_cpu_ms() {
  Mem mem(ipc::Queue<uint64_t>::bytes_needed(8));
  auto q = ipc::Queue<uint64_t>::create_at(mem.p, mem.bytes, 8);
  rusage before{}, after{};
  getrusage(RUSAGE_CHILDREN, &before);
  ipc::Process child = bench::fork_child([&] {
    uint64_t v;
    (void)q.get(v, 1s);
  });
  bench::wait_child(child);
  getrusage(RUSAGE_CHILDREN, &after);
  auto ms = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
  };
  return ms(after) - ms(before);
}

void run(bench::Report& r) {
  {
    const double ours = bench::median_of(kReps, [] { return spsc_msgs_per_s(20'000'000); });
    const double mq = bench::median_of(kReps, [] { return bench::boost_message_queue_msgs_per_s(2'000'000); });
    const double pipe = bench::median_of(kReps, [] { return bench::pipe_msgs_per_s(2'000'000); });
    r.add("queue: SPSC 8 B, 1 -> 1 process", ours, "msgs/s", "Boost message_queue", mq);
    r.add("queue: SPSC 8 B, 1 -> 1 process", ours, "msgs/s", "pipe(2), one write per message", pipe);
    const double py = bench::python_peer("queue");
    r.add("queue: SPSC 8 B, 1 -> 1 process", ours, "msgs/s", "Python mp.Queue", py);
    r.target("queue: SPSC vs Boost message_queue", mq > 0 ? ours / mq : 0, ">=", 20);
  }
  {
    const double ours = bench::median_of(kReps, [] { return mpmc_msgs_per_s(8'000'000, 2, 2); });
    const double mq = bench::median_of(kReps, [] { return bench::boost_message_queue_msgs_per_s(2'000'000, 2, 2); });
    r.add("queue: MPMC 8 B, 2 -> 2 processes", ours, "msgs/s", "Boost message_queue 2 -> 2", mq);
    r.target("queue: MPMC 2+2 vs Boost message_queue", mq > 0 ? ours / mq : 0, ">=", 5);
  }
  {
    const double ours = bench::median_of(kReps, [] { return queue_rtt_ns(200'000, 0); });
    const double floor = bench::median_of(kReps, [] { return bench::atomic_pingpong_rtt_ns(1'000'000); });
    r.add("queue: round trip via 2 queues, both active", ours, "ns", "atomic ping-pong, one cache line", floor);
    r.target("queue: active round trip vs atomic ping-pong (lower is better)", floor > 0 ? ours / floor : 0, "<=",
             3);
  }
  {
    const double ours = bench::median_of(kReps, [] { return queue_rtt_ns(2'000, 200); });
    const double sp = bench::median_of(kReps, [] { return bench::socketpair_rtt_ns(2'000, 200); });
    r.add("queue: round trip, receiver asleep (futex)", ours, "ns", "socketpair round trip, same idle gap", sp);
    r.target("queue: asleep round trip vs socketpair (lower is better)", sp > 0 ? ours / sp : 0, "<=", 1.5);
  }
  for (size_t size : {size_t{64}, size_t{4096}, size_t{1} << 20}) {
    const size_t total = size >= (1 << 20) ? (size_t{2} << 30) : size >= 4096 ? (size_t{1} << 30) : (size_t{256} << 20);
    const std::string name = "queue: " + std::string(size == 64 ? "64 B" : size == 4096 ? "4 KiB" : "1 MiB") +
                             " messages, 1 -> 1 process";
    const double ours = bench::median_of(kReps, [&] { return message_bytes_per_s(size, total); });
    const uint64_t pipe_msgs = total / size / 4;
    const double pipe = bench::median_of(kReps, [&] { return bench::pipe_msgs_per_s(pipe_msgs, size) * size; });
    const double mc = bench::median_of(kReps, [&] { return bench::memcpy_bytes_per_s(size, total / 4); });
    r.add(name, ours, "B/s", "pipe(2), one write per message", pipe);
    r.add(name, ours, "B/s", "memcpy bandwidth", mc);
    if (size == 64) r.target("queue: 64 B messages vs pipe(2)", pipe > 0 ? ours / pipe : 0, ">=", 10);
    if (size == (size_t{1} << 20)) r.target("queue: 1 MiB messages vs memcpy", mc > 0 ? ours / mc : 0, ">=", 0.5);
  }
  r.add("queue: CPU of a consumer blocked 1 s on an empty queue", blocked_consumer_cpu_ms(), "CPU ms");
}

static bench::Group g("queue", run);

}  // namespace

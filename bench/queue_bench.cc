// bench/queue_bench.cc: the "queue" group of //bench:all: ipc/queue figures beside their peers, same run.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "bench/peers.h"
#include "bench/pipe_one_way.h"
#include "bench/ring_peers.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"

namespace {

using ipc::Outcome;
using namespace std::chrono_literals;

constexpr int kReps = 5;

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

// `n` 8-byte values through a Q (SpscQueue or Queue) of `capacity`, `producers` -> `consumers` processes, with
// the blocking put/get or (`polling`) try_put/try_get in a spin loop: msgs/s. Each consumer adds up the values it
// takes, as the peers' consumers do (ring_peers.cc): a loop that dropped them would let the compiler drop the
// read of each value, and with it the cache line it sits on, which the peers pay for. The sums are checked.
template <template <typename> class Q>
double ours_msgs_per_s(uint64_t n, int producers, int consumers, uint64_t capacity, bool polling = false) {
  Mem mem(Q<uint64_t>::bytes_needed(capacity));
  auto q = Q<uint64_t>::create_at(mem.p, mem.bytes, capacity);
  const uint64_t per_p = n / producers, per_c = per_p * producers / consumers;
  if (per_c * consumers != per_p * producers) throw std::invalid_argument("ours_msgs_per_s: uneven split");
  Mem total_mem(sizeof(std::atomic<uint64_t>));
  auto* total = new (total_mem.p) std::atomic<uint64_t>(0);
  const double t = timed_processes(
      producers, consumers,
      [&](int) {
        // The choice outside the loop, so that the loop is the calls alone (as the peers' loops).
        if (polling) {
          for (uint64_t i = 0; i < per_p; ++i) {
            while (q.try_put(i) != Outcome::kOk) {
            }
          }
        } else {
          for (uint64_t i = 0; i < per_p; ++i) (void)q.put(i);
        }
      },
      [&](int) {
        uint64_t v = 0, sum = 0;
        if (polling) {
          for (uint64_t i = 0; i < per_c; ++i) {
            while (q.try_get(v) != Outcome::kOk) {
            }
            sum += v;
          }
        } else {
          for (uint64_t i = 0; i < per_c; ++i) {
            (void)q.get(v);
            sum += v;
          }
        }
        total->fetch_add(sum, std::memory_order_relaxed);  // relaxed: read after the child's exit is waited for
      });
  if (t > 0 && total->load(std::memory_order_relaxed) != producers * (per_p * (per_p - 1) / 2)) {
    throw std::runtime_error("queue lost or duplicated values");
  }
  return t > 0 ? static_cast<double>(per_c * consumers) / t : -1;
}

// `n` 8-byte values through an SpscQueue of 4096 slots, 1 -> 1 process, try_put/try_get in spin loops without a
// pause, exactly as the Boost.Lockfree and minimal-ring rows (bench::spinning_one_to_one): msgs/s, and how often
// each side found the ring full / empty.
double spsc_polling_msgs_per_s(uint64_t n, bench::SpinCounts* counts) {
  Mem mem(ipc::SpscQueue<uint64_t>::bytes_needed(4096));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.p, mem.bytes, 4096);
  return bench::spinning_one_to_one(
      n,
      [&] {
        uint64_t fulls = 0;
        for (uint64_t i = 0; i < n; ++i) {
          while (q.try_put(i) != Outcome::kOk) ++fulls;
        }
        return fulls;
      },
      [&] {
        uint64_t v = 0, sum = 0, empties = 0;
        for (uint64_t i = 0; i < n; ++i) {
          while (q.try_get(v) != Outcome::kOk) ++empties;
          sum += v;
        }
        if (sum != n * (n - 1) / 2) throw std::runtime_error("SpscQueue lost or reordered values");
        return empties;
      },
      counts);
}

// `n` 8-byte values through an SpscQueue in batches of `batch` (put_n / get_n), 1 -> 1 process: msgs/s.
double spsc_batched_msgs_per_s(uint64_t n, size_t batch) {
  Mem mem(ipc::SpscQueue<uint64_t>::bytes_needed(4096));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.p, mem.bytes, 4096);
  const double t = timed_processes(
      1, 1,
      [&](int) {
        std::vector<uint64_t> values(batch);
        size_t put = 0;
        for (uint64_t i = 0; i < n; i += batch) {
          for (size_t k = 0; k < batch; ++k) values[k] = i + k;
          (void)q.put_n(values, put);
        }
      },
      [&](int) {
        std::vector<uint64_t> out(batch);
        uint64_t expect = 0;
        size_t got = 0;
        while (expect < n && q.get_n(out, got) == Outcome::kOk) {
          for (size_t k = 0; k < got; ++k) {
            if (out[k] != expect++) throw std::runtime_error("SpscQueue batch out of order");
          }
        }
      });
  return t > 0 ? static_cast<double>(n) / t : -1;
}

// One try_put and one try_get in one process, the ring in L1: ns per pair. A put and a get walk the whole ring, so
// it has bench::kPairRingSlots slots (Queue's 32-byte slots: 8 KiB), as the peers in the same rows.
template <template <typename> class Q>
double ours_pair_ns(uint64_t n) {
  Mem mem(Q<uint64_t>::bytes_needed(bench::kPairRingSlots));
  auto q = Q<uint64_t>::create_at(mem.p, mem.bytes, bench::kPairRingSlots);
  uint64_t sum = 0, v = 0;
  const double t0 = bench::now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    (void)q.try_put(i);
    (void)q.try_get(v);
    sum += v;
  }
  const double t = bench::now_seconds() - t0;
  return sum == n * (n - 1) / 2 ? t * 1e9 / static_cast<double>(n) : -1;
}

// Ping-pong through two Qs with try_put/try_get in spin loops (both sides polling): ns per round trip.
template <template <typename> class Q>
double ours_polling_rtt_ns(uint64_t round_trips) {
  const size_t bytes = Q<uint64_t>::bytes_needed(64);
  Mem mem(2 * bytes + 64);
  auto ping = Q<uint64_t>::create_at(mem.p, bytes, 64);
  auto pong = Q<uint64_t>::create_at(static_cast<char*>(mem.p) + bytes, bytes, 64);
  auto send = [](Q<uint64_t>& q, uint64_t v) {
    while (q.try_put(v) != Outcome::kOk) {
    }
  };
  auto recv = [](Q<uint64_t>& q) {
    uint64_t v = 0;
    while (q.try_get(v) != Outcome::kOk) {
    }
    return v;
  };
  ipc::Process child = bench::fork_child([&] {
    for (uint64_t i = 0; i < round_trips; ++i) send(pong, recv(ping));
  });
  uint64_t i = 0;
  const double ns = bench::round_trip_ns(round_trips, 0, [&] {
    send(ping, i);
    return recv(pong) == i++;
  });
  return bench::wait_child(child) ? ns : -1;
}

// Ping-pong through two Qs with blocking put/get; `idle_gap_us` > 0 pauses before each ping so that the echo side
// is asleep.
template <template <typename> class Q>
double queue_rtt_ns(uint64_t round_trips, unsigned idle_gap_us) {
  const size_t bytes = Q<uint64_t>::bytes_needed(64);
  Mem mem(2 * bytes + 64);
  auto ping = Q<uint64_t>::create_at(mem.p, bytes, 64);
  auto pong = Q<uint64_t>::create_at(static_cast<char*>(mem.p) + bytes, bytes, 64);
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

// How a consumer takes a message from a MessageQueue with an arena.
enum class Take { kCopy, kInPlace };

// `n` messages of `size_of(i)` bytes, 1 -> 1 process, through a MessageQueue of `options`: bytes/s. kCopy:
// get(vector) (a copy in and a copy out, as the Pipe does); kInPlace: get_view(), reading one byte per cache line
// of the message where it lies (the copy out saved).
template <typename SizeOf>
double sized_messages_bytes_per_s(const ipc::MessageQueue::Options& options, uint64_t n, SizeOf size_of, Take take) {
  Mem mem(ipc::MessageQueue::bytes_needed(options));
  auto q = ipc::MessageQueue::create_at(mem.p, mem.bytes, options);
  uint64_t total = 0;
  for (uint64_t i = 0; i < n; ++i) total += size_of(i);
  const double t = timed_processes(
      1, 1,
      [&](int) {
        std::vector<std::byte> m(size_of(0), std::byte{7});
        for (uint64_t i = 0; i < n; ++i) {
          m.resize(size_of(i), std::byte{7});
          if (q.put(m) != Outcome::kOk) throw std::runtime_error("put failed");
        }
      },
      [&](int) {
        std::vector<std::byte> out;
        ipc::MessageView view;
        uint64_t seen = 0;
        for (uint64_t i = 0; i < n; ++i) {
          if (take == Take::kCopy) {
            if (q.get(out) != Outcome::kOk) throw std::runtime_error("get failed");
            seen += out.size();
          } else {
            if (q.get_view(view) != Outcome::kOk) throw std::runtime_error("get_view failed");
            uint8_t sum = 0;
            for (size_t k = 0; k < view.size(); k += 64) sum += static_cast<uint8_t>(view.bytes()[k]);
            seen += view.size() + (sum == 255 ? 1 : 0);  // the sum keeps the reads; 255 never happens with 7s
          }
        }
        if (seen != total) throw std::runtime_error("bytes lost");
      });
  return t > 0 ? static_cast<double>(total) / t : -1;
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

using bench::RingPeer;

// The MPMC Queue between processes: 1 -> 1 beside SpscQueue and the ticket ring, 2 -> 2 beside Boost's
// message_queue. Part of the "queue" group, and the "queue_mpmc" group on its own.
void run_mpmc(bench::Report& r) {
  constexpr uint64_t kSpscN = 4'000'000;
  // Queue, SpscQueue and the ticket ring in turns (bench::sample_in_turns), so that the ratios compare runs taken
  // under the same load; the SpscQueue figure here is its own, not the one of the SPSC rows.
  const std::vector<bench::Sample> turns = bench::sample_in_turns(
      kReps, {[] { return ours_msgs_per_s<ipc::Queue>(kSpscN, 1, 1, 4096); },
              [] { return ours_msgs_per_s<ipc::SpscQueue>(kSpscN, 1, 1, 4096); },
              [] { return bench::ring_peer_msgs_per_s(RingPeer::kTicketMpmc, kSpscN); }});
  const bench::Sample& spsc = turns[1];
  r.add("queue: Queue (MPMC) 8 B put/get, 1 -> 1 process", turns[0], "msgs/s", "SpscQueue put/get, 1 -> 1, in turns",
        spsc);
  r.target("queue: Queue 1 -> 1 vs SpscQueue 1 -> 1", turns[0].median / spsc.median, ">=", 0.5);
  r.add("queue: Queue (MPMC) 8 B put/get, 1 -> 1 process", turns[0], "msgs/s", "ticket MPMC ring (rigtorp design)",
        turns[2]);
  const auto [ours, mq] = bench::sample_alternately(
      kReps, [] { return ours_msgs_per_s<ipc::Queue>(2'000'000, 2, 2, 1024); },
      [] { return bench::boost_message_queue_msgs_per_s(500'000, 2, 2); });
  r.add("queue: Queue (MPMC) 8 B, 2 -> 2 processes", ours, "msgs/s", "Boost message_queue 2 -> 2", mq);
  r.add("queue: Queue (MPMC) 8 B, 2 -> 2 processes", ours, "msgs/s", "SpscQueue put/get, 1 -> 1, in turns", spsc);
  r.target("queue: MPMC 2+2 vs Boost message_queue", ours.median / mq.median, ">=", 4);
}

void run(bench::Report& r) {
  constexpr uint64_t kSpscN = 4'000'000;
  // The 1 -> 1 SPSC figures, their repetitions alternated (see bench::sample_in_turns), and the full/empty counts of
  // the spinning ones: near 0 per message the two sides streamed, far above 1 one of them was off its CPU.
  bench::SpinCounts boost_counts, bare_counts, polling_counts;
  std::vector<double> boost_full, boost_empty, bare_full, bare_empty, polling_full, polling_empty;
  const auto keep = [](const bench::SpinCounts& c, std::vector<double>& full, std::vector<double>& empty) {
    full.push_back(c.full_per_msg);
    empty.push_back(c.empty_per_msg);
  };
  const std::vector<bench::Sample> one_to_one = bench::sample_in_turns(
      kReps, {[] { return ours_msgs_per_s<ipc::SpscQueue>(kSpscN, 1, 1, 4096); },
              [&] {
                const double v = spsc_polling_msgs_per_s(kSpscN, &polling_counts);
                keep(polling_counts, polling_full, polling_empty);
                return v;
              },
              [&] {
                const double v = bench::ring_peer_msgs_per_s(RingPeer::kBoostSpsc, kSpscN, &boost_counts);
                keep(boost_counts, boost_full, boost_empty);
                return v;
              },
              [&] {
                const double v = bench::batched_ring_msgs_per_s(kSpscN, 1, &bare_counts);
                keep(bare_counts, bare_full, bare_empty);
                return v;
              }});
  const bench::Sample& spsc = one_to_one[0];
  {
    const bench::Sample& polling = one_to_one[1];
    const bench::Sample& lockfree = one_to_one[2];
    // The minimal ring publishing every message on both sides (rigtorp's design: cached indices, no roles, no
    // close, no sleeping, no kill-safe record): what a ring without our guarantees reaches in this run.
    const bench::Sample& bare = one_to_one[3];
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "Boost.Lockfree spsc_queue (shm)", lockfree);
    r.target("queue: SpscQueue 1 -> 1 vs Boost.Lockfree spsc_queue", spsc.median / lockfree.median, ">=", 1.5);
    r.add("queue: SpscQueue 8 B try_put/try_get, 1 -> 1 process", polling, "msgs/s", "Boost.Lockfree spsc_queue (shm)",
          lockfree);
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "minimal ring, index per msg", bare);
    r.add("queue: minimal ring, index per msg, 1 -> 1 process", bare, "msgs/s", "Boost.Lockfree spsc_queue (shm)",
          lockfree);
    r.add("queue: SpscQueue try_put/try_get: fulls per msg", bench::median(polling_full), "/msg",
          "Boost.Lockfree spsc_queue", bench::median(boost_full));
    r.add("queue: SpscQueue try_put/try_get: empties per msg", bench::median(polling_empty), "/msg",
          "Boost.Lockfree spsc_queue", bench::median(boost_empty));
    r.add("queue: minimal ring, index per msg: fulls per msg", bench::median(bare_full), "/msg",
          "Boost.Lockfree spsc_queue", bench::median(boost_full));
    r.add("queue: minimal ring, index per msg: empties per msg", bench::median(bare_empty), "/msg",
          "Boost.Lockfree spsc_queue", bench::median(boost_empty));
    const auto batched = bench::sample_of(kReps, [] { return bench::batched_ring_msgs_per_s(4 * kSpscN, 64); });
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "minimal ring, index per 64 msgs", batched);
    const auto ours_batched = bench::sample_of(kReps, [] { return spsc_batched_msgs_per_s(4 * kSpscN, 64); });
    r.add("queue: SpscQueue put_n/get_n, batches of 64, 1 -> 1", ours_batched, "msgs/s",
          "minimal ring, index per 64 msgs", batched);
    r.target("queue: SpscQueue batches vs the minimal batched ring", ours_batched.median / batched.median, ">=", 0.5);
    const auto mq = bench::sample_of(kReps, [] { return bench::boost_message_queue_msgs_per_s(500'000); });
    const auto pipe = bench::sample_of(kReps, [] { return bench::pipe_msgs_per_s(500'000); });
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "Boost message_queue", mq);
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "pipe(2), one write per message", pipe);
    r.add("queue: SpscQueue 8 B put/get, 1 -> 1 process", spsc, "msgs/s", "Python mp.Queue",
          bench::summarize({bench::python_peer("queue")}));
    r.target("queue: SPSC vs Boost message_queue", spsc.median / mq.median, ">=", 20);
  }
  run_mpmc(r);
  {
    constexpr uint64_t kPairs = 10'000'000;
    const auto ours = bench::sample_of(kReps, [] { return ours_pair_ns<ipc::SpscQueue>(kPairs); });
    const auto lockfree = bench::sample_of(kReps, [] { return bench::ring_peer_pair_ns(RingPeer::kBoostSpsc, kPairs); });
    r.add("queue: SpscQueue try_put+try_get, one process, in L1", ours, "ns", "Boost.Lockfree spsc_queue", lockfree);
    const auto [mpmc, ticket] =
        bench::sample_alternately(kReps, [] { return ours_pair_ns<ipc::Queue>(kPairs); },
                                  [] { return bench::ring_peer_pair_ns(RingPeer::kTicketMpmc, kPairs); });
    r.add("queue: Queue try_put+try_get, one process, in L1", mpmc, "ns", "ticket MPMC ring (rigtorp design)", ticket);
  }
  {
    const auto ours = bench::sample_of(kReps, [] { return queue_rtt_ns<ipc::SpscQueue>(50'000, 0); });
    const auto floor = bench::sample_of(kReps, [] { return bench::atomic_pingpong_rtt_ns(200'000); });
    r.add("queue: SpscQueue round trip put/get, both active", ours, "ns", "atomic ping-pong, one cache line", floor);
    r.target("queue: active round trip vs atomic ping-pong (lower is better)", ours.median / floor.median, "<=", 3);
    const auto mpmc = bench::sample_of(kReps, [] { return queue_rtt_ns<ipc::Queue>(50'000, 0); });
    r.add("queue: Queue round trip put/get, both active", mpmc, "ns", "SpscQueue put/get", ours);
    const auto spsc_poll = bench::sample_of(kReps, [] { return ours_polling_rtt_ns<ipc::SpscQueue>(50'000); });
    const auto lockfree = bench::sample_of(kReps, [] { return bench::ring_peer_rtt_ns(RingPeer::kBoostSpsc, 50'000); });
    r.add("queue: SpscQueue round trip try_put/try_get, polling", spsc_poll, "ns", "Boost.Lockfree spsc_queue", lockfree);
    const auto mpmc_poll = bench::sample_of(kReps, [] { return ours_polling_rtt_ns<ipc::Queue>(50'000); });
    r.add("queue: Queue round trip try_put/try_get, polling", mpmc_poll, "ns", "SpscQueue try_put/try_get", spsc_poll);
    r.target("queue: Queue try round trip vs SpscQueue's (lower is better)", mpmc_poll.median / spsc_poll.median, "<=",
             1.5);
  }
  {
    const auto ours = bench::sample_of(kReps, [] { return queue_rtt_ns<ipc::SpscQueue>(2'000, 200); });
    const auto sp = bench::sample_of(kReps, [] { return bench::socketpair_rtt_ns(2'000, 200); });
    r.add("queue: round trip, receiver asleep (futex)", ours, "ns", "socketpair round trip, same idle gap", sp);
    r.target("queue: asleep round trip vs socketpair (lower is better)", ours.median / sp.median, "<=", 1.5);
  }
}

// Variable-size messages and the idle consumer: the "queue_bytes" group.
void run_bytes(bench::Report& r) {
  for (size_t size : {size_t{64}, size_t{4096}, size_t{1} << 20}) {
    const size_t total = size >= (1 << 20) ? (size_t{2} << 30) : size >= 4096 ? (size_t{1} << 30) : (size_t{256} << 20);
    const std::string name = "queue: " + std::string(size == 64 ? "64 B" : size == 4096 ? "4 KiB" : "1 MiB") +
                             " messages, 1 -> 1 process";
    const auto ours = bench::sample_of(kReps, [&] { return message_bytes_per_s(size, total); });
    const uint64_t pipe_msgs = total / size / 4;
    const auto pipe = bench::sample_of(kReps, [&] { return bench::pipe_msgs_per_s(pipe_msgs, size) * size; });
    const auto mc = bench::sample_of(kReps, [&] { return bench::memcpy_bytes_per_s(size, total / 4); });
    r.add(name, ours, "B/s", "pipe(2), one write per message", pipe);
    r.add(name, ours, "B/s", "memcpy bandwidth", mc);
    if (size == 64) r.target("queue: 64 B messages vs pipe(2)", ours.median / pipe.median, ">=", 10);
    if (size == (size_t{1} << 20)) r.target("queue: 1 MiB messages vs memcpy", ours.median / mc.median, ">=", 0.5);
  }
  r.add("queue: CPU of a consumer blocked 1 s on an empty queue", blocked_consumer_cpu_ms(), "CPU ms");
}

// MessageQueue's arena: 1 MiB messages beside the Pipe and memcpy, and mixed sizes: the "queue_arena" group.
void run_arena(bench::Report& r) {
  // 1 MiB messages out of line (an 8 MiB arena, 256 B inline), beside the Pipe's 1 MiB row and memcpy, same run.
  constexpr uint64_t kBig = 400;
  constexpr ipc::MessageQueue::Options kArena8{.capacity = 64, .inline_bytes = 256, .arena_bytes = 8 << 20};
  constexpr ipc::MessageQueue::Options kArena4{.capacity = 64, .inline_bytes = 256, .arena_bytes = 4 << 20};
  constexpr size_t kMiB = size_t{1} << 20;
  const auto one_mib = [](uint64_t) { return kMiB; };
  const auto copy = bench::sample_of(kReps, [&] { return sized_messages_bytes_per_s(kArena8, kBig, one_mib, Take::kCopy); });
  const auto in_place =
      bench::sample_of(kReps, [&] { return sized_messages_bytes_per_s(kArena8, kBig, one_mib, Take::kInPlace); });
  const auto pipe = bench::sample_of(kReps, [&] { return bench::pipe_one_way(kBig, kMiB) * kMiB; });
  const auto mc = bench::sample_of(kReps, [&] { return bench::memcpy_bytes_per_s(kMiB, size_t{256} << 20); });
  r.add("queue: MessageQueue 1 MiB out of line, put + get(vector)", copy, "B/s", "Pipe 1 MiB send/recv_bytes", pipe);
  r.add("queue: MessageQueue 1 MiB out of line, put + get(vector)", copy, "B/s", "memcpy bandwidth", mc);
  r.add("queue: MessageQueue 1 MiB out of line, put + get_view (in place)", in_place, "B/s", "Pipe 1 MiB send/recv_bytes",
        pipe);
  r.add("queue: MessageQueue 1 MiB out of line, put + get_view (in place)", in_place, "B/s", "memcpy bandwidth", mc);
  r.target("queue: MessageQueue 1 MiB (get_view) vs memcpy", in_place.median / mc.median, ">=", 0.5);
  // Mixed sizes: 15 of 16 messages 64 B (inline), every 16th 256 KiB (out of line), against the inline-only
  // queue of today, whose every slot must then be 256 KiB.
  constexpr uint64_t kMixed = 20'000;
  const auto mixed_size = [](uint64_t i) { return i % 16 == 15 ? size_t{256} << 10 : size_t{64}; };
  const auto mixed = bench::sample_of(kReps, [&] { return sized_messages_bytes_per_s(kArena4, kMixed, mixed_size, Take::kCopy); });
  const ipc::MessageQueue::Options inline_only{.capacity = 64, .inline_bytes = size_t{256} << 10};
  const auto slots =
      bench::sample_of(kReps, [&] { return sized_messages_bytes_per_s(inline_only, kMixed, mixed_size, Take::kCopy); });
  r.add("queue: MessageQueue mixed 64 B + 1/16 256 KiB, arena (4 MiB + 64 x 256 B)", mixed, "B/s",
        "inline only, 64 slots of 256 KiB (16 MiB)", slots);
}

static bench::Group g("queue", run);
static bench::Group g_mpmc("queue_mpmc", run_mpmc);
static bench::Group g_bytes("queue_bytes", run_bytes);
static bench::Group g_arena("queue_arena", run_arena);

}  // namespace

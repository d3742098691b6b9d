// Pipe figures: 8-byte messages one way (vs SpscQueue, pipe(2) and Python's multiprocessing.Pipe), round trips with
// the receiver busy and asleep (vs a socketpair round trip), the round trips' tail (mean vs median, beside a
// socketpair's), and large messages (vs pipe(2) and memcpy bandwidth).
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "bench/peers.h"
#include "bench/pipe_echo.h"
#include "bench/pipe_one_way.h"
#include "ipc/pipe/connection.h"
#include "ipc/queue/spsc_queue.h"

namespace {

using bench::pipe_one_way;
using ipc::Connection;
using ipc::Outcome;

// The same 8-byte values through an SpscQueue<uint64_t> (4096 slots) in shared memory, timed the same way
// (pipe_one_way(), `warm` included): msgs/s. The fixed-size ring the Pipe's variable-size records are measured
// against.
double spsc_one_way(uint64_t n, uint64_t warm) {
  const size_t bytes = ipc::SpscQueue<uint64_t>::bytes_needed(4096);
  void* mem = bench::map_shared(bytes);
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem, bytes, 4096);
  std::optional<bench::StreamStart> started;  // as in pipe_one_way()
  if (warm > 0) started.emplace();
  ipc::Process child = bench::fork_child([&] {
    auto put = [&](uint64_t from, uint64_t to) {
      for (uint64_t i = from; i < to; ++i) {
        if (q.put(i) != Outcome::kOk) throw std::runtime_error("put failed");
      }
    };
    put(0, warm);
    if (started) started->stamp();
    put(warm, warm + n);
  });
  uint64_t v = 0;
  bool ok = true;
  for (uint64_t i = 0; i < warm && ok; ++i) ok = q.get(v) == Outcome::kOk && v == i;
  const double t0 = bench::now_seconds();
  for (uint64_t i = warm; i < warm + n && ok; ++i) ok = q.get(v) == Outcome::kOk && v == i;
  const double dt = started ? started->seconds_since() : bench::now_seconds() - t0;
  ok = bench::wait_child(child) && ok;
  bench::free_shared(mem, bytes);
  return ok ? n / dt : -1;
}

// Runs `measure(send_and_receive_one)` against a child echoing every message of a duplex pipe; its result, or
// `failed` when the child failed.
template <typename R, typename Measure>
R with_echo(Measure&& measure, R failed) {
  auto [a, b] = ipc::Pipe();
  ipc::Process child = bench::fork_child([&, &bb = b, &aa = a] {
    aa.close();
    bench::echo_until_closed(bb);
  });
  b.close();
  std::vector<std::byte> msg(8), got;
  const R result = measure([&] { return a.send_bytes(msg) == Outcome::kOk && a.recv_bytes(got) == Outcome::kOk; });
  a.close();
  return bench::wait_child(child) ? result : failed;
}

// Round trips through a duplex pipe: ns each. `idle_gap_us` > 0 lets the echoing child fall asleep first.
double pipe_round_trip_ns(uint64_t n, unsigned idle_gap_us) {
  return with_echo([&](auto rt) { return bench::round_trip_ns(n, idle_gap_us, rt); }, -1.0);
}

// Back-to-back round trips through a duplex pipe, each timed: the mean and the median.
bench::MeanMedian pipe_round_trip_each(uint64_t n) {
  return with_echo([&](auto rt) { return bench::round_trip_each_ns(n, rt); }, bench::MeanMedian{});
}

constexpr int kReps = 5;

bench::Group group("pipe", [](bench::Report& r) {
  constexpr uint64_t kSmall = 1'000'000;
  // Each target's two figures are taken in turns, so that both see the same load (a block of each swung the
  // SpscQueue ratio from x0.49 to x4.77 between runs).
  const auto [ours, os_pipe] = bench::sample_alternately(
      kReps, [] { return pipe_one_way(kSmall, 8); }, [] { return bench::pipe_msgs_per_s(kSmall / 4, 8); });
  r.add("Pipe 8 B messages, 1 process -> 1 process", ours, "msgs/s", "pipe(2)", os_pipe);
  r.target("Pipe 8 B msgs/s vs pipe(2)", ours.median / os_pipe.median, ">=", 10);
  // Against SpscQueue, per-message speed: a steady stream, timed from the producer's first timed message, after
  // kWarm untimed ones (past a lap of the Pipe's 1 MiB ring). A fresh channel's fixed costs (the child's start, the
  // first lap's page faults: the Pipe's ring has 257 pages to fault in each process, SpscQueue's 9) weigh on 1 M
  // messages; they are the next row's, which takes the same pair from a fresh channel.
  constexpr uint64_t kWarm = 200'000;
  const auto [steady, spsc] = bench::sample_alternately(
      kReps, [] { return pipe_one_way(kSmall, 8, ipc::PipeOptions().ring_bytes, kWarm); },
      [] { return spsc_one_way(kSmall, kWarm); });
  r.add("Pipe 8 B messages, steady stream (after 200 k)", steady, "msgs/s", "SpscQueue<uint64_t> put/get, the same",
        spsc);
  r.target("Pipe 8 B msgs/s vs SpscQueue", steady.median / spsc.median, ">=", 0.7);
  const auto [fresh, spsc_fresh] = bench::sample_alternately(
      kReps, [] { return pipe_one_way(kSmall, 8); }, [] { return spsc_one_way(kSmall, 0); });
  r.add("Pipe 8 B messages, fresh Pipe (fork and first lap timed)", fresh, "msgs/s", "SpscQueue<uint64_t>, fresh",
        spsc_fresh);
  r.add("Pipe 8 B messages, 1 process -> 1 process", ours, "msgs/s", "Python mp.Pipe send_bytes",
        bench::summarize({bench::python_peer("pipe", {"100000"})}));

  const auto rtt_busy = bench::sample_of(kReps, [] { return pipe_round_trip_ns(50'000, 0); });
  const auto rtt_floor = bench::sample_of(kReps, [] { return bench::atomic_pingpong_rtt_ns(100'000); });
  r.add("Pipe round trip, both sides active", rtt_busy, "ns", "atomic ping-pong floor", rtt_floor);
  const auto rtt_sock = bench::sample_of(kReps, [] { return bench::socketpair_rtt_ns(20'000); });
  r.add("Pipe round trip, both sides active", rtt_busy, "ns", "socketpair round trip", rtt_sock);
  // The tail: each round trip timed; the mean against the median of the same run.
  // A socketpair's tail, measured alternately with ours, shows how much of it the machine's scheduling makes.
  std::vector<double> means, medians, ratios, sock_means, sock_medians, sock_ratios;
  for (int i = 0; i < kReps; ++i) {
    const bench::MeanMedian mm = pipe_round_trip_each(50'000);
    means.push_back(mm.mean);
    medians.push_back(mm.median);
    ratios.push_back(mm.median > 0 ? mm.mean / mm.median : -1);
    const bench::MeanMedian sock = bench::socketpair_rtt_each_ns(20'000);
    sock_means.push_back(sock.mean);
    sock_medians.push_back(sock.median);
    sock_ratios.push_back(sock.median > 0 ? sock.mean / sock.median : -1);
  }
  const auto mean = bench::summarize(means), med = bench::summarize(medians);
  r.add("Pipe round trip mean, both sides active, each timed", mean, "ns", "its median", med);
  r.add("socketpair round trip mean, each timed", bench::summarize(sock_means), "ns", "its median",
        bench::summarize(sock_medians));
  const auto tail = bench::summarize(ratios), sock_tail = bench::summarize(sock_ratios);
  r.add("Pipe round trip mean / median, per repetition", tail, "x", "socketpair's mean / median", sock_tail);
  r.target("Pipe round trip mean vs its median (lower is better)", tail.median, "<=", 3);
  const auto rtt_asleep = bench::sample_of(kReps, [] { return pipe_round_trip_ns(2'000, 200); });
  const auto sock_asleep = bench::sample_of(kReps, [] { return bench::socketpair_rtt_ns(2'000, 200); });
  r.add("Pipe round trip, receiver asleep", rtt_asleep, "ns", "socketpair round trip, receiver asleep", sock_asleep);
});

// Large messages: the "pipe_bytes" group.
bench::Group bytes_group("pipe_bytes", [](bench::Report& r) {
  for (size_t size : {size_t{64}, size_t{4096}, size_t{1} << 20}) {
    const uint64_t n = size >= (1 << 20) ? 400 : size >= 4096 ? 200'000 : 1'000'000;
    const auto ours_bps = bench::sample_of(kReps, [&] { return pipe_one_way(n, size) * size; });
    const auto os_bps = bench::sample_of(kReps, [&] { return bench::pipe_msgs_per_s(n / 4, size) * size; });
    const std::string label = "Pipe " + (size >= (1 << 20) ? std::string("1 MiB") : std::to_string(size) + " B") +
                              " messages, bytes/s";
    r.add(label, ours_bps, "B/s", "pipe(2)", os_bps);
    if (size == 64) r.target("Pipe 64 B bytes/s vs pipe(2)", ours_bps.median / os_bps.median, ">=", 10);
    if (size == (size_t{1} << 20)) {
      const auto copy = bench::sample_of(kReps, [&] { return bench::memcpy_bytes_per_s(size, size_t{256} << 20); });
      r.add(label, ours_bps, "B/s", "memcpy bandwidth", copy);
      r.target("Pipe 1 MiB bytes/s vs memcpy (default 1 MiB rings)", ours_bps.median / copy.median, ">=", 0.5);
      // Bulk transfers can ask for bigger rings (PipeOptions::ring_bytes): parts of 1 MiB, fewer hand-offs.
      const auto big_ring = bench::sample_of(kReps, [&] { return pipe_one_way(n * 4, size, 4 << 20) * size; });
      r.add("Pipe 1 MiB messages, 4 MiB rings, bytes/s", big_ring, "B/s", "memcpy bandwidth", copy);
      r.target("Pipe 1 MiB bytes/s vs memcpy (4 MiB rings)", big_ring.median / copy.median, ">=", 0.5);
    }
  }
});

}  // namespace

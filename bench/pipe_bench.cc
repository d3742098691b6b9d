// Pipe figures: 8-byte messages one way (vs pipe(2) and Python's multiprocessing.Pipe), round trips with the
// receiver busy and asleep (vs a socketpair round trip), and large messages (vs pipe(2) and memcpy bandwidth).
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "bench/peers.h"
#include "ipc/pipe/connection.h"

namespace {

using ipc::Connection;
using ipc::Outcome;

// One producer process -> this process, `n` messages of `size` bytes through rings of `ring_bytes`: msgs/s.
double pipe_one_way(uint64_t n, size_t size, uint64_t ring_bytes = ipc::PipeOptions().ring_bytes) {
  ipc::PipeOptions options;
  options.duplex = false;
  options.ring_bytes = ring_bytes;
  auto [rx, tx] = ipc::Pipe(options);
  std::vector<std::byte> msg(size, std::byte{7});
  ipc::Process child = bench::fork_child([&, &t = tx, &r = rx] {
    r.close();
    for (uint64_t i = 0; i < n; ++i) {
      if (t.send_bytes(msg) != Outcome::kOk) throw std::runtime_error("send failed");
    }
  });
  tx.close();
  std::vector<std::byte> got;
  got.reserve(size);
  const double t0 = bench::now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    if (rx.recv_bytes(got) != Outcome::kOk) return -1;
  }
  const double dt = bench::now_seconds() - t0;
  return bench::wait_child(child) ? n / dt : -1;
}

// Round trips through a duplex pipe: ns each. `idle_gap_us` > 0 lets the echoing child fall asleep first.
double pipe_round_trip_ns(uint64_t n, unsigned idle_gap_us) {
  auto [a, b] = ipc::Pipe();
  ipc::Process child = bench::fork_child([&, &bb = b, &aa = a] {
    aa.close();
    std::vector<std::byte> m;
    while (bb.recv_bytes(m) == Outcome::kOk) {
      if (bb.send_bytes(m) != Outcome::kOk) return;
    }
  });
  b.close();
  std::vector<std::byte> msg(8), got;
  const double ns = bench::round_trip_ns(n, idle_gap_us, [&] {
    return a.send_bytes(msg) == Outcome::kOk && a.recv_bytes(got) == Outcome::kOk;
  });
  a.close();
  return bench::wait_child(child) ? ns : -1;
}

bench::Group group("pipe", [](bench::Report& r) {
  constexpr uint64_t kSmall = 2'000'000;
  const double ours = bench::median_of(3, [] { return pipe_one_way(kSmall, 8); });
  const double os_pipe = bench::median_of(3, [] { return bench::pipe_msgs_per_s(kSmall / 4, 8); });
  r.add("Pipe 8 B messages, 1 process -> 1 process", ours, "msgs/s", "pipe(2)", os_pipe);
  r.target("Pipe 8 B msgs/s vs pipe(2)", ours / os_pipe, ">=", 10);
  r.add("Pipe 8 B messages, 1 process -> 1 process", ours, "msgs/s", "Python mp.Pipe send_bytes",
        bench::python_peer("pipe", {"100000"}));

  const double rtt_busy = bench::median_of(3, [] { return pipe_round_trip_ns(200'000, 0); });
  const double rtt_floor = bench::median_of(3, [] { return bench::atomic_pingpong_rtt_ns(200'000); });
  r.add("Pipe round trip, both sides active", rtt_busy, "ns", "atomic ping-pong floor", rtt_floor);
  const double rtt_sock = bench::median_of(3, [] { return bench::socketpair_rtt_ns(20'000); });
  r.add("Pipe round trip, both sides active", rtt_busy, "ns", "socketpair round trip", rtt_sock);
  const double rtt_asleep = bench::median_of(3, [] { return pipe_round_trip_ns(2'000, 200); });
  const double sock_asleep = bench::median_of(3, [] { return bench::socketpair_rtt_ns(2'000, 200); });
  r.add("Pipe round trip, receiver asleep", rtt_asleep, "ns", "socketpair round trip, receiver asleep", sock_asleep);

  for (size_t size : {size_t{64}, size_t{4096}, size_t{1} << 20}) {
    const uint64_t n = size >= (1 << 20) ? 400 : size >= 4096 ? 200'000 : 1'000'000;
    const double ours_bps = bench::median_of(3, [&] { return pipe_one_way(n, size) * size; });
    const double os_bps = bench::median_of(3, [&] { return bench::pipe_msgs_per_s(n / 4, size) * size; });
    const std::string label = "Pipe " + (size >= (1 << 20) ? std::string("1 MiB") : std::to_string(size) + " B") +
                              " messages, bytes/s";
    r.add(label, ours_bps, "B/s", "pipe(2)", os_bps);
    if (size == 64) r.target("Pipe 64 B bytes/s vs pipe(2)", ours_bps / os_bps, ">=", 10);
    if (size == (size_t{1} << 20)) {
      const double copy = bench::median_of(3, [&] { return bench::memcpy_bytes_per_s(size, size_t{256} << 20); });
      r.add(label, ours_bps, "B/s", "memcpy bandwidth", copy);
      r.target("Pipe 1 MiB bytes/s vs memcpy (default 1 MiB rings)", ours_bps / copy, ">=", 0.5);
      // Bulk transfers can ask for bigger rings (PipeOptions::ring_bytes): parts of 1 MiB, fewer hand-offs.
      const double big_ring = bench::median_of(3, [&] { return pipe_one_way(n * 4, size, 4 << 20) * size; });
      r.add("Pipe 1 MiB messages, 4 MiB rings, bytes/s", big_ring, "B/s", "memcpy bandwidth", copy);
      r.target("Pipe 1 MiB bytes/s vs memcpy (4 MiB rings)", big_ring / copy, ">=", 0.5);
    }
  }
});

}  // namespace

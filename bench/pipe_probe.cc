// bench/pipe_probe.cc: the pipe group's rows alone, small enough to count what they cost without the rest of the
// bench around them: instructions (valgrind --tool=callgrind --toggle-collect='*_loop*'), system calls
// (strace -f -c), and the rows themselves in turns with their peers (ours, peer, peer, ours, ...).
//   pipe_probe count N           one process, N x (8 B send_bytes + recv_bytes), then N x SpscQueue put + get
//   pipe_probe one_way N REPS    Pipe 8 B one way vs SpscQueue<uint64_t>, in turns: msgs/s of each
//   pipe_probe tail N REPS       round trips each timed (both sides polling): mean / median, Pipe and socketpair
//   pipe_probe asleep N GAP_US   round trips after GAP_US of idleness: median ns, Pipe then socketpair
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/pipe_echo.h"
#include "ipc/base/process.h"
#include "ipc/pipe/connection.h"
#include "ipc/queue/spsc_queue.h"

namespace {

using ipc::Outcome;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1 : v[v.size() / 2];
}

bool join_ok(ipc::Process& p) { return p.join() == 0; }

// Counted by callgrind (--toggle-collect='*_loop*'): the loops alone, no setup.
[[gnu::noinline]] uint64_t pipe_count_loop(ipc::Connection& rx, ipc::Connection& tx, uint64_t n) {
  std::vector<std::byte> msg(8, std::byte{7}), got;
  got.reserve(8);
  uint64_t ok = 0;
  for (uint64_t i = 0; i < n; ++i) {
    ok += tx.send_bytes(msg) == Outcome::kOk;
    ok += rx.recv_bytes(got) == Outcome::kOk;
  }
  return ok;
}

[[gnu::noinline]] uint64_t spsc_count_loop(ipc::SpscQueue<uint64_t>& q, uint64_t n) {
  uint64_t ok = 0, v = 0;
  for (uint64_t i = 0; i < n; ++i) {
    ok += q.put(i) == Outcome::kOk;
    ok += q.get(v) == Outcome::kOk;
  }
  return ok + v;
}

double pipe_one_way(uint64_t n) {
  ipc::PipeOptions options;
  options.duplex = false;
  auto [rx, tx] = ipc::Pipe(options);
  ipc::Process child = ipc::Process::start([&, &t = tx, &r = rx] {
    r.close();
    std::vector<std::byte> msg(8, std::byte{7});
    for (uint64_t i = 0; i < n; ++i) {
      if (t.send_bytes(msg) != Outcome::kOk) throw std::runtime_error("send failed");
    }
  });
  tx.close();
  std::vector<std::byte> got;
  got.reserve(8);
  const double t0 = now_s();
  for (uint64_t i = 0; i < n; ++i) {
    if (rx.recv_bytes(got) != Outcome::kOk) return -1;
  }
  const double dt = now_s() - t0;
  return join_ok(child) ? n / dt : -1;
}

double spsc_one_way(uint64_t n) {
  const size_t bytes = ipc::SpscQueue<uint64_t>::bytes_needed(4096);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem, bytes, 4096);
  ipc::Process child = ipc::Process::start([&] {
    for (uint64_t i = 0; i < n; ++i) {
      if (q.put(i) != Outcome::kOk) throw std::runtime_error("put failed");
    }
  });
  uint64_t v = 0;
  bool ok = true;
  const double t0 = now_s();
  for (uint64_t i = 0; i < n && ok; ++i) ok = q.get(v) == Outcome::kOk && v == i;
  const double dt = now_s() - t0;
  ok = join_ok(child) && ok;
  munmap(mem, bytes);
  return ok ? n / dt : -1;
}

struct Times {
  double mean = -1, median = -1;
};

// n round trips, each timed after `gap_us` of idleness (0: back to back).
Times time_each(uint64_t n, unsigned gap_us, const std::function<bool()>& rt) {
  std::vector<double> s;
  s.reserve(n);
  double total = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (gap_us) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
    const double t0 = now_s();
    if (!rt()) return {};
    const double dt = now_s() - t0;
    total += dt;
    s.push_back(dt);
  }
  if (std::getenv("PIPE_PROBE_HISTOGRAM")) {  // where the time of the slow round trips goes
    const double edges_us[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1e9};
    int count[11] = {};
    double time[11] = {};
    for (double x : s) {
      int i = 0;
      while (x * 1e6 >= edges_us[i]) ++i;
      ++count[i];
      time[i] += x;
    }
    for (int i = 0; i < 11; ++i) {
      if (count[i]) std::printf("  < %6.0f us: %6d round trips, %5.1f%% of the time\n", edges_us[i], count[i],
                                100 * time[i] / total);
    }
  }
  return {total / n * 1e9, median(std::move(s)) * 1e9};
}

// PIPE_PROBE_PIN=same|apart: both processes on CPU 0, or the parent on CPU 0 and the child on CPU 1 (to tell where
// a woken child runs from what the wake-up costs); unset: wherever the scheduler puts them.
void pin(bool child) {
  const char* how = std::getenv("PIPE_PROBE_PIN");
  if (!how) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(child && std::string(how) == "apart" ? 1 : 0, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// Sleeps (voluntary context switches) of this process and of its reaped children so far.
long sleeps() {
  rusage self{}, children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  return self.ru_nvcsw + children.ru_nvcsw;
}

Times pipe_rtt(uint64_t n, unsigned gap_us) {
  const long sleeps_before = sleeps();
  auto [a, b] = ipc::Pipe();
  pin(false);
  ipc::Process child = ipc::Process::start([&, &bb = b, &aa = a] {
    pin(true);
    aa.close();
    bench::echo_until_closed(bb);
  });
  b.close();
  std::vector<std::byte> msg(8), got;
  const Times t =
      time_each(n, gap_us, [&] { return a.send_bytes(msg) == Outcome::kOk && a.recv_bytes(got) == Outcome::kOk; });
  a.close();
  const bool ok = join_ok(child);
  if (std::getenv("PIPE_PROBE_SLEEPS")) {
    std::printf("  sleeps (both processes) per round trip: %.4f\n", static_cast<double>(sleeps() - sleeps_before) / n);
  }
  return ok ? t : Times{};
}

Times socket_rtt(uint64_t n, unsigned gap_us) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return {};
  pin(false);
  ipc::Process child = ipc::Process::start([&] {
    pin(true);
    close(fds[0]);
    char buf[8];
    while (read(fds[1], buf, 8) == 8) {
      if (write(fds[1], buf, 8) != 8) return;
    }
  });
  close(fds[1]);
  char buf[8] = {};
  const Times t =
      time_each(n, gap_us, [&] { return write(fds[0], buf, 8) == 8 && read(fds[0], buf, 8) == 8; });
  close(fds[0]);
  return join_ok(child) ? t : Times{};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1'000'000;
  const int third = argc > 3 ? std::atoi(argv[3]) : 5;
  if (mode == "count") {
    ipc::PipeOptions options;
    options.duplex = false;
    auto [rx, tx] = ipc::Pipe(options);
    const size_t bytes = ipc::SpscQueue<uint64_t>::bytes_needed(4096);
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    auto q = ipc::SpscQueue<uint64_t>::create_at(mem, bytes, 4096);
    std::printf("%lu %lu\n", static_cast<unsigned long>(pipe_count_loop(rx, tx, n)),
                static_cast<unsigned long>(spsc_count_loop(q, n)));
  } else if (mode == "one_way") {
    std::vector<double> ours, peer;
    for (int i = 0; i < third; ++i) {
      if (i % 2 == 0) {
        ours.push_back(pipe_one_way(n));
        peer.push_back(spsc_one_way(n));
      } else {
        peer.push_back(spsc_one_way(n));
        ours.push_back(pipe_one_way(n));
      }
      std::printf("pipe %.1f M  spsc %.1f M  x%.2f\n", ours.back() / 1e6, peer.back() / 1e6, ours.back() / peer.back());
    }
    std::printf("median pipe %.1f M spsc %.1f M x%.2f\n", median(ours) / 1e6, median(peer) / 1e6,
                median(ours) / median(peer));
  } else if (mode == "tail") {
    std::vector<double> ratios, sock_ratios;
    for (int i = 0; i < third; ++i) {
      const Times p = pipe_rtt(n, 0), s = socket_rtt(n / 2, 0);
      ratios.push_back(p.mean / p.median);
      sock_ratios.push_back(s.mean / s.median);
      std::printf("pipe mean %.0f median %.0f x%.2f   socketpair mean %.0f median %.0f x%.2f\n", p.mean, p.median,
                  ratios.back(), s.mean, s.median, sock_ratios.back());
    }
    std::printf("median mean/median: pipe %.2f socketpair %.2f\n", median(ratios), median(sock_ratios));
  } else if (mode == "asleep") {
    const Times p = pipe_rtt(n, static_cast<unsigned>(third));
    const Times s = socket_rtt(n, static_cast<unsigned>(third));
    std::printf("asleep median: pipe %.0f ns  socketpair %.0f ns  x%.2f\n", p.median, s.median, p.median / s.median);
  } else if (mode == "asleep_pipe") {
    std::printf("asleep median: pipe %.0f ns\n", pipe_rtt(n, static_cast<unsigned>(third)).median);
  } else if (mode == "asleep_socket") {
    std::printf("asleep median: socketpair %.0f ns\n", socket_rtt(n, static_cast<unsigned>(third)).median);
  } else {
    std::fprintf(stderr, "usage: %s count|one_way|tail|asleep|asleep_pipe|asleep_socket N [REPS|GAP_US]\n", argv[0]);
    return 2;
  }
  return 0;
}

#include "bench/peers.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"

namespace bench {
namespace {

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
bool read_all(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

ipc::Process fork_child(const std::function<void()>& body) { return ipc::Process::start(body); }

bool wait_child(ipc::Process& child) {
  const bool ok = child.join() == 0;
  if (child.exception()) std::fprintf(stderr, "bench child: %s\n", child.exception()->message.c_str());
  return ok;
}

void* map_shared(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  check(p != MAP_FAILED, "mmap");
  return p;
}
void free_shared(void* p, size_t bytes) { munmap(p, bytes); }

StreamStart::StreamStart() : at_(new (map_shared(sizeof(std::atomic<double>))) std::atomic<double>(0)) {}
StreamStart::~StreamStart() { free_shared(at_, sizeof(std::atomic<double>)); }
// release: partner is the acquire load below (the producer's sends, which the consumer received, order it too).
void StreamStart::stamp() { at_->store(now_seconds(), std::memory_order_release); }
double StreamStart::seconds_since() const { return now_seconds() - at_->load(std::memory_order_acquire); }

double atomic_pingpong_rtt_ns(uint64_t round_trips) {
  auto* line = static_cast<std::atomic<uint64_t>*>(map_shared(4096));
  new (line) std::atomic<uint64_t>(0);
  ipc::Process child = fork_child([&] {
    for (uint64_t i = 1; i <= round_trips; ++i) {
      // acquire/release: a hand-off, like a queue's; partner is the parent's store of the odd value.
      while (line->load(std::memory_order_acquire) != 2 * i - 1) {
      }
      line->store(2 * i, std::memory_order_release);
    }
  });
  const double t0 = now_seconds();
  for (uint64_t i = 1; i <= round_trips; ++i) {
    line->store(2 * i - 1, std::memory_order_release);
    while (line->load(std::memory_order_acquire) != 2 * i) {
    }
  }
  const double t = now_seconds() - t0;
  const bool ok = wait_child(child);
  free_shared(line, 4096);
  return ok ? t * 1e9 / static_cast<double>(round_trips) : -1;
}

double pipe_msgs_per_s(uint64_t messages, size_t message_bytes) {
  int fds[2];
  check(pipe(fds) == 0, "pipe");
  ipc::Process child = fork_child([&] {
    close(fds[1]);
    std::vector<char> buf(message_bytes);
    for (uint64_t i = 0; i < messages; ++i) {
      if (!read_all(fds[0], buf.data(), message_bytes)) throw std::runtime_error("pipe read");
    }
  });
  close(fds[0]);
  std::vector<char> msg(message_bytes, 'x');
  const double t0 = now_seconds();
  for (uint64_t i = 0; i < messages; ++i) {
    if (!write_all(fds[1], msg.data(), message_bytes)) break;
  }
  const bool ok = wait_child(child);
  const double t = now_seconds() - t0;
  close(fds[1]);
  return ok ? static_cast<double>(messages) / t : -1;
}

namespace {

// Runs `measure(round_trip)` against a child echoing `round_trips` 8-byte messages through a socketpair; its
// result, or `failed` when a round trip or the child failed.
template <typename R, typename Measure>
R with_socketpair_echo(uint64_t round_trips, Measure&& measure, R failed) {
  int sv[2];
  check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  ipc::Process child = fork_child([&] {
    close(sv[0]);
    uint64_t v;
    for (uint64_t i = 0; i < round_trips; ++i) {
      if (!read_all(sv[1], &v, 8) || !write_all(sv[1], &v, 8)) throw std::runtime_error("socketpair");
    }
  });
  close(sv[1]);
  uint64_t v = 0;
  bool round_trips_ok = true;
  const R result = measure([&] {
    round_trips_ok = write_all(sv[0], &v, 8) && read_all(sv[0], &v, 8);
    return round_trips_ok;
  });
  if (!round_trips_ok) shutdown(sv[0], SHUT_RDWR);  // let the child see the end instead of waiting for the rest
  const bool ok = wait_child(child);
  close(sv[0]);
  return ok && round_trips_ok ? result : failed;
}

}  // namespace

double socketpair_rtt_ns(uint64_t round_trips, unsigned idle_gap_us) {
  return with_socketpair_echo(
      round_trips, [&](const std::function<bool()>& rt) { return round_trip_ns(round_trips, idle_gap_us, rt); }, -1.0);
}

MeanMedian socketpair_rtt_each_ns(uint64_t round_trips) {
  return with_socketpair_echo(
      round_trips, [&](const std::function<bool()>& rt) { return round_trip_each_ns(round_trips, rt); }, MeanMedian{});
}

double boost_message_queue_msgs_per_s(uint64_t messages, int producers, int consumers) {
  namespace bip = boost::interprocess;
  const std::string name = "numa_mp_bench_mq_" + std::to_string(getpid());
  bip::message_queue::remove(name.c_str());
  bip::message_queue mq(bip::create_only, name.c_str(), 1024, 8);
  const uint64_t per_producer = messages / static_cast<uint64_t>(producers);
  const uint64_t per_consumer = per_producer * static_cast<uint64_t>(producers) / static_cast<uint64_t>(consumers);
  auto* start = static_cast<std::atomic<int>*>(map_shared(4096));
  new (start) std::atomic<int>(0);
  std::vector<ipc::Process> kids;
  for (int c = 0; c < consumers; ++c) {
    kids.push_back(fork_child([&] {
      bip::message_queue q(bip::open_only, name.c_str());
      uint64_t v;
      size_t got;
      unsigned prio;
      for (uint64_t i = 0; i < per_consumer; ++i) q.receive(&v, sizeof v, got, prio);
    }));
  }
  for (int p = 0; p < producers; ++p) {
    kids.push_back(fork_child([&] {
      bip::message_queue q(bip::open_only, name.c_str());
      while (start->load(std::memory_order_acquire) == 0) {
      }
      for (uint64_t i = 0; i < per_producer; ++i) q.send(&i, sizeof i, 0);
    }));
  }
  const double t0 = now_seconds();
  start->store(1, std::memory_order_release);
  bool ok = true;
  for (ipc::Process& k : kids) ok = wait_child(k) && ok;
  const double t = now_seconds() - t0;
  bip::message_queue::remove(name.c_str());
  free_shared(start, 4096);
  return ok ? static_cast<double>(per_consumer * static_cast<uint64_t>(consumers)) / t : -1;
}

double memcpy_bytes_per_s(size_t block_bytes, size_t total_bytes) {
  std::vector<char> src(block_bytes, 'a'), dst(block_bytes);
  const uint64_t n = total_bytes / block_bytes + 1;
  const double t0 = now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    std::memcpy(dst.data(), src.data(), block_bytes);
    // Keep the copy from being optimised away.
    asm volatile("" : : "r"(dst.data()) : "memory");
  }
  const double t = now_seconds() - t0;
  return static_cast<double>(n * block_bytes) / t;
}

}  // namespace bench

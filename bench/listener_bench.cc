// Listener figures: an exec'd client program (bench/listener_client, not a fork) and this process, joined by
// ipc::Listener / ipc::connect, beside a plain Unix stream socket between the same two programs and Python's
// multiprocessing.connection Listener/Client (bench/python_peers_listener.py): 8-byte and 64 KiB messages one way,
// and 8-byte round trips.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "bench/fd_io.h"
#include "ipc/base/process.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"

namespace {

using ipc::Outcome;

const std::string kKey = "benchmark key, 32 bytes long....";
const std::string kClient = "bench/listener_client";

std::span<const std::uint8_t> key() { return {reinterpret_cast<const std::uint8_t*>(kKey.data()), kKey.size()}; }

std::string address() {
  static int n = 0;
  return "bench-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

bool finished(ipc::Process& p) {
  const auto code = p.join(std::chrono::seconds(60));
  if (code != 0) std::fprintf(stderr, "listener bench: %s exited with %d\n", kClient.c_str(), code.value_or(-999));
  return code == 0;
}

// The client program sends `n` messages of `size` bytes; msgs/s from the accept to the last message here.
double conn_one_way(uint64_t n, size_t size) {
  const std::string name = address();
  ipc::Listener listener(name, key());
  ipc::Process client =
      ipc::Process::exec(kClient, {kClient, "conn-send", name, kKey, std::to_string(n), std::to_string(size)});
  std::optional<ipc::Connection> c = listener.accept(std::chrono::seconds(60));
  if (!c) return -1;
  std::vector<std::byte> m;
  const double t0 = bench::now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    if (c->recv_bytes(m) != Outcome::kOk || m.size() != size) return -1;
  }
  const double dt = bench::now_seconds() - t0;
  c->close();
  return finished(client) ? n / dt : -1;
}

double conn_round_trip_ns(uint64_t n) {
  const std::string name = address();
  ipc::Listener listener(name, key());
  ipc::Process client = ipc::Process::exec(kClient, {kClient, "conn-echo", name, kKey});
  std::optional<ipc::Connection> c = listener.accept(std::chrono::seconds(60));
  if (!c) return -1;
  std::vector<std::byte> msg(8), got;
  const double ns = bench::round_trip_ns(n, 0, [&] {
    return c->send_bytes(msg) == Outcome::kOk && c->recv_bytes(got) == Outcome::kOk;
  });
  c->close();
  return finished(client) ? ns : -1;
}

// A listening Unix stream socket in a private directory, and its first accepted connection.
struct PlainSocket {
  std::string dir, path;
  int listen_fd = -1, fd = -1;
  PlainSocket() {
    char templ[] = "/tmp/numa_mp-bench-XXXXXX";
    dir = ::mkdtemp(templ);
    path = dir + "/s.sock";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::bind(listen_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd, 4) != 0) {
      throw std::runtime_error("bench: cannot listen on " + path);
    }
  }
  void accept() { fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC); }
  ~PlainSocket() {
    if (fd >= 0) ::close(fd);
    ::close(listen_fd);
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
};

double socket_one_way(uint64_t n, size_t size) {
  PlainSocket s;
  ipc::Process client =
      ipc::Process::exec(kClient, {kClient, "sock-send", s.path, std::to_string(n), std::to_string(size)});
  s.accept();
  std::vector<std::byte> m(size);
  const double t0 = bench::now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    if (!bench::read_exact(s.fd, m.data(), size)) return -1;
  }
  const double dt = bench::now_seconds() - t0;
  return finished(client) ? n / dt : -1;
}

double socket_round_trip_ns(uint64_t n) {
  PlainSocket s;
  ipc::Process client = ipc::Process::exec(kClient, {kClient, "sock-echo", s.path, "8"});
  s.accept();
  std::vector<std::byte> msg(8), got(8);
  const double ns = bench::round_trip_ns(n, 0, [&] {
    return ::write(s.fd, msg.data(), 8) == 8 && bench::read_exact(s.fd, got.data(), 8);
  });
  ::close(s.fd);
  s.fd = -1;
  return finished(client) ? ns : -1;
}

bench::Group group("listener", [](bench::Report& r) {
  constexpr int kReps = 5;
  struct Size {
    size_t bytes;
    uint64_t n;
    const char* label;
  };
  for (Size s : {Size{8, 1'000'000, "8 B"}, Size{64 * 1024, 20'000, "64 KiB"}}) {
    const bench::Sample ours = bench::sample_of(kReps, [&] { return conn_one_way(s.n, s.bytes); });
    const bench::Sample sock = bench::sample_of(kReps, [&] { return socket_one_way(s.n / 4, s.bytes); });
    const std::string row = std::string("Listener connection ") + s.label + " messages, unrelated processes";
    r.add(row, ours, "msgs/s", "Unix stream socket", sock);
    const uint64_t py_n = s.bytes == 8 ? 100'000 : 5'000;
    const bench::Sample py = bench::sample_of(kReps, [&] {
      return bench::python_peer("listener_one_way", {std::to_string(py_n), std::to_string(s.bytes)});
    });
    r.add(row, ours, "msgs/s", "Python mp.connection Listener/Client", py);
  }
  const bench::Sample rtt = bench::sample_of(kReps, [] { return conn_round_trip_ns(200'000); });
  const bench::Sample sock_rtt = bench::sample_of(kReps, [] { return socket_round_trip_ns(20'000); });
  r.add("Listener connection 8 B round trip, unrelated processes", rtt, "ns", "Unix stream socket", sock_rtt);
  const bench::Sample py_rtt =
      bench::sample_of(kReps, [] { return bench::python_peer("listener_round_trip", {"20000"}); });
  r.add("Listener connection 8 B round trip, unrelated processes", rtt, "ns", "Python mp.connection Listener/Client",
        py_rtt);
});

}  // namespace

// Manager figures for //bench:all: dict round trips against Python's Manager and a bare socketpair round trip (wall
// clock, and CPU time of both sides, which a busy machine disturbs less), pipelined calls per second, and
// throughput with several client processes; the pair with every byte on the Unix socket (Transport::kSocket) beside
// the default shared-memory rings; then the pair and the pipeline over TCP on 127.0.0.1, beside the same over the
// Unix socket address and Python's Manager over TCP.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "ipc/base/process.h"
#include "manager/client.h"
#include "manager/server.h"

namespace {

using ipc::manager::Client;

// CPU seconds this thread has used.
double thread_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// CPU seconds every thread of a live process `pid` has used (schedstat: nanosecond resolution).
double process_cpu_seconds(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  double total = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/schedstat");
    double ns = 0;
    if (in >> ns) total += ns * 1e-9;
  }
  ::closedir(d);
  return total;
}

double children_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_CHILDREN, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// Wall-clock and CPU seconds (both sides together) per round trip.
struct RoundTrip {
  double wall = 0;
  double cpu = 0;
};

// Per round trip of one byte over a Unix socketpair between two processes, blocking reads on both sides.
RoundTrip socketpair_round_trip_with_cpu(int n) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return {-1, -1};
  ipc::Process child = ipc::Process::start([&] {
    char c;
    for (int i = 0; i < n; ++i) {
      if (::read(sv[1], &c, 1) != 1 || ::write(sv[1], &c, 1) != 1) return 1;
    }
    return 0;
  });
  char c = 'x';
  double children = children_cpu_seconds();
  double cpu = thread_cpu_seconds();
  double t = bench::now_seconds();
  for (int i = 0; i < n; ++i) {
    if (::write(sv[0], &c, 1) != 1 || ::read(sv[0], &c, 1) != 1) break;
  }
  double elapsed = bench::now_seconds() - t;
  cpu = thread_cpu_seconds() - cpu;
  (void)child.join();
  cpu += children_cpu_seconds() - children;  // the child's whole life: a little more than its loop
  ::close(sv[0]);
  ::close(sv[1]);
  return {elapsed / n, cpu / n};
}

double socketpair_round_trip(int n) { return socketpair_round_trip_with_cpu(n).wall; }

// Seconds per dict set+get pair from one client.
double dict_pair(Client& client, int n) {
  auto d = client.dict("bench");
  double t = bench::now_seconds();
  for (int i = 0; i < n; ++i) {
    d.set("key", i);
    (void)d.get("key");
  }
  return (bench::now_seconds() - t) / n;
}

// Seconds per single call (one RPC round trip: dict get).
double dict_get(Client& client, int n) {
  auto d = client.dict("bench");
  d.set("key", 1);
  double t = bench::now_seconds();
  for (int i = 0; i < n; ++i) (void)d.get("key");
  return (bench::now_seconds() - t) / n;
}

// CPU seconds per dict get, this client thread and the whole server process together. Unlike wall-clock time it
// does not depend on how the scheduler places the two processes on a busy machine.
double dict_get_cpu(Client& client, pid_t server, int n) {
  auto d = client.dict("bench");
  d.set("key", 1);
  double cpu = thread_cpu_seconds() + process_cpu_seconds(server);
  for (int i = 0; i < n; ++i) (void)d.get("key");
  return (thread_cpu_seconds() + process_cpu_seconds(server) - cpu) / n;
}

// Calls per second with up to `window` dict sets in flight.
double pipelined(Client& client, int n, int window) {
  auto d = client.dict("bench");
  std::vector<ipc::manager::Future<void>> in_flight;
  in_flight.reserve(static_cast<std::size_t>(window));
  double t = bench::now_seconds();
  for (int done = 0; done < n; done += window) {
    for (int i = 0; i < window; ++i) in_flight.push_back(d.set_async("key", done + i));
    for (auto& f : in_flight) f.get();
    in_flight.clear();
  }
  return n / (bench::now_seconds() - t);
}

// Total set+get calls per second of `clients` processes, each doing `n` pairs on the same dict.
double multi_client(const ipc::manager::ServerProcess& server, int clients, int n) {
  int ready[2], go[2];
  if (::pipe(ready) != 0 || ::pipe(go) != 0) return -1;
  std::vector<ipc::Process> children;
  for (int c = 0; c < clients; ++c) {
    children.push_back(ipc::Process::start([&, c] {
      // A fresh thread: this process's main thread may carry the parent's KJ event loop.
      int rc = 0;
      std::thread t([&] {
        Client client(server.address(), server.key());
        auto d = client.dict("bench");
        std::string key = "client" + std::to_string(c);
        char b = 1;
        if (::write(ready[1], &b, 1) != 1 || ::read(go[0], &b, 1) != 1) rc = 1;
        for (int i = 0; i < n; ++i) {
          d.set(key, i);
          (void)d.get(key);
        }
      });
      t.join();
      return rc;
    }));
  }
  char b;
  for (int c = 0; c < clients; ++c) {
    if (::read(ready[0], &b, 1) != 1) return -1;
  }
  double t = bench::now_seconds();
  std::vector<char> release(static_cast<std::size_t>(clients), 1);
  if (::write(go[1], release.data(), release.size()) != clients) return -1;
  for (ipc::Process& child : children) (void)child.join();
  double elapsed = bench::now_seconds() - t;
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  return 2.0 * clients * n / elapsed;
}

static bench::Group g("manager", [](bench::Report& r) {
  constexpr int kReps = 5;
  auto server = ipc::manager::start_server();
  double one_client_calls_per_s = 0;
  bench::Sample unix_pair_us, unix_piped;  // for the TCP rows
  {
    Client client(server.address(), server.key());
    dict_pair(client, 500);  // warm-up

    const bench::Sample pair_us = bench::sample_of(kReps, [&] { return dict_pair(client, 5000) * 1e6; });
    unix_pair_us = pair_us;
    double pair_s = pair_us.median * 1e-6;
    double py_pair_s = bench::python_peer("manager_dict", {"20000"});
    r.add("Manager dict set+get pair, 1 client", pair_s * 1e6, "us", "Python Manager().dict()",
          py_pair_s > 0 ? py_pair_s * 1e6 : 0);
    if (py_pair_s > 0) r.target("Manager dict set+get vs Python Manager (speed-up)", py_pair_s / pair_s, ">=", 3);

    double call_s = bench::median_of(kReps, [&] { return dict_get(client, 5000); });
    double sp_s = bench::median_of(kReps, [] { return socketpair_round_trip(20000); });
    r.add("Manager dict call round trip (get)", call_s * 1e6, "us", "socketpair round trip", sp_s * 1e6);
    r.target("Manager call round trip vs socketpair round trip", call_s / sp_s, "<=", 2);

    double call_cpu_s = bench::median_of(kReps, [&] { return dict_get_cpu(client, server.pid(), 5000); });
    double sp_cpu_s = bench::median_of(kReps, [] { return socketpair_round_trip_with_cpu(20000).cpu; });
    r.add("Manager dict call CPU, client + server (get)", call_cpu_s * 1e6, "us", "socketpair round trip CPU",
          sp_cpu_s * 1e6);

    double blocking_calls = 1.0 / call_s;
    unix_piped = bench::sample_of(kReps, [&] { return pipelined(client, 200000, 1000); });
    double piped = unix_piped.median;
    r.add("Manager calls pipelined (1000 in flight)", piped, "calls/s", "blocking calls", blocking_calls);
    r.target("Manager pipelined calls vs 500 k calls/s", piped / 500e3, ">=", 1);
    one_client_calls_per_s = 2.0 / pair_s;
  }
  {
    // The same client with every byte on the socket: what the shared-memory transport saves.
    ipc::manager::ClientOptions on_socket;
    on_socket.transport = ipc::manager::ClientOptions::Transport::kSocket;
    Client client(server.address(), server.key(), on_socket);
    dict_pair(client, 500);  // warm-up
    const bench::Sample socket_pair_us = bench::sample_of(kReps, [&] { return dict_pair(client, 5000) * 1e6; });
    r.add("Manager dict set+get pair, shared-memory rings", unix_pair_us, "us", "every byte on the socket",
          socket_pair_us);
  }
  for (int clients : {2, 4}) {
    double total = bench::median_of(3, [&] { return multi_client(server, clients, 5000); });
    r.add("Manager dict set+get, " + std::to_string(clients) + " client processes", total, "calls/s",
          "1 client process", one_client_calls_per_s);
  }
  // Over TCP on loopback: what the TCP stack adds to a call, without a network's latency.
  ipc::manager::ServerProcessOptions tcp_options;
  tcp_options.address = "tcp:127.0.0.1:0";
  auto tcp_server = ipc::manager::start_server(tcp_options);
  Client tcp(tcp_server.address(), tcp_server.key());
  dict_pair(tcp, 500);  // warm-up
  const bench::Sample tcp_pair_us = bench::sample_of(kReps, [&] { return dict_pair(tcp, 5000) * 1e6; });
  const bench::Sample py_tcp_pair_us = bench::sample_of(3, [] {
    const double s = bench::python_peer("manager_dict_tcp", {"20000"});
    return s > 0 ? s * 1e6 : -1;
  });
  r.add("Manager dict set+get pair, 1 client, TCP 127.0.0.1", tcp_pair_us, "us", "Python Manager over TCP",
        py_tcp_pair_us);
  if (py_tcp_pair_us.median > 0) {
    r.target("Manager dict set+get over TCP vs Python Manager over TCP (speed-up)",
             py_tcp_pair_us.median / tcp_pair_us.median, ">=", 3);
  }
  r.add("Manager dict set+get pair, TCP 127.0.0.1 vs Unix socket", tcp_pair_us, "us", "the same, Unix socket + rings",
        unix_pair_us);
  const bench::Sample tcp_piped = bench::sample_of(kReps, [&] { return pipelined(tcp, 200000, 1000); });
  r.add("Manager calls pipelined (1000 in flight), TCP 127.0.0.1", tcp_piped, "calls/s",
        "the same, Unix socket + rings", unix_piped);
});

}  // namespace

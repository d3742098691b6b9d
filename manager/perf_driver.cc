// manager/perf_driver.cc: a small program to profile the Manager with strace / perf / callgrind (not a test, not a
// benchmark: bench/manager_bench.cc prints the figures). Forks a server, then runs one kind of call N times.
//   perf_driver get N          blocking dict get round trips
//   perf_driver pair N         blocking dict set + get pairs
//   perf_driver pipe N WINDOW  dict set_async with WINDOW calls in flight
// Prints the time per call. The client runs on the main thread (PERF_DRIVER_THREAD=1: on a second thread).
// PERF_DRIVER_ADDRESS=ADDR PERF_DRIVER_KEY_FILE=FILE: use a server started apart (`ipc-manager --listen ADDR
// --key-file FILE`) instead of forking one, so that the server can run under a valgrind of its own (under the
// driver's valgrind, which does not know pidfd_open, the driver watches the server it starts through a life pipe).
// Examples: strace -c -f perf_driver get 10000; valgrind --tool=callgrind perf_driver pipe 20000 1000 with the
// server under its own valgrind --tool=callgrind ipc-manager ...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "manager/client.h"
#include "manager/key_file.h"
#include "manager/server.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void run(const std::string& address, std::span<const std::uint8_t> key, const std::string& mode, int n, int window) {
  ipc::manager::Client client(address, key);
  auto d = client.dict("bench");
  d.set("key", 1);
  double t = now();
  if (mode == "get") {
    for (int i = 0; i < n; ++i) (void)d.get("key");
  } else if (mode == "pair") {
    for (int i = 0; i < n; ++i) {
      d.set("key", i);
      (void)d.get("key");
    }
  } else if (mode == "pipe") {
    std::vector<ipc::manager::Future<void>> in_flight;
    for (int done = 0; done < n; done += window) {
      for (int i = 0; i < window; ++i) in_flight.push_back(d.set_async("key", done + i));
      for (auto& f : in_flight) f.get();
      in_flight.clear();
    }
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    std::exit(2);
  }
  double e = now() - t;
  std::printf("%s: %d calls, %.2f us per call, %.0f calls/s\n", mode.c_str(), n, e / n * 1e6, n / e);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: perf_driver get|pair|pipe N [WINDOW]\n");
    return 2;
  }
  std::string mode = argv[1];
  int n = std::atoi(argv[2]);
  int window = argc > 3 ? std::atoi(argv[3]) : 1000;
  std::optional<ipc::manager::ServerProcess> server;
  std::string address;
  std::vector<std::uint8_t> key;
  const char* given_address = std::getenv("PERF_DRIVER_ADDRESS");
  const char* given_key_file = std::getenv("PERF_DRIVER_KEY_FILE");
  if (given_address != nullptr && given_key_file != nullptr) {
    address = given_address;
    key = ipc::manager::load_key(given_key_file);
  } else {
    server.emplace(ipc::manager::start_server());
    address = server->address();
    key.assign(server->key().begin(), server->key().end());
  }
  // PERF_DRIVER_THREAD=1: run the client on a second thread (another malloc arena) instead of the main thread.
  const char* on_thread = std::getenv("PERF_DRIVER_THREAD");
  if (on_thread != nullptr && std::strcmp(on_thread, "1") == 0) {
    std::thread([&] { run(address, key, mode, n, window); }).join();
  } else {
    run(address, key, mode, n, window);
  }
  return 0;
}

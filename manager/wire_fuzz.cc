// Fuzz target (tests/fuzz.bzl, docs/fuzzing.md): the Manager server's wire input. A Server runs in this process on
// its own thread (so that libFuzzer sees the coverage of the server's code). Each input goes to the server on a
// fresh connection: the first byte picks whether the rest is written before authentication, or after a real
// authentication with hand-written RPC messages (manager/detail/raw_wire.h); then our side ends its writes.
// Property (server.h: "Nothing a client sends stops the server"): the server ends that connection within 10 s,
// and a real authenticated Client's call succeeds afterwards; no crash, sanitizer report or leak.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "manager/client.h"
#include "manager/detail/raw_wire.h"
#include "manager/server.h"

namespace {

using namespace std::chrono_literals;
namespace testing = ipc::manager::testing;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "manager wire fuzz: %s\n", what.c_str());
  std::abort();
}

// The server on its thread, and a client that checks it still serves. Made once for the whole run, and stopped at
// exit (libFuzzer and the replay test both end with exit()), so that the server removes its socket directory.
struct Fixture {
  std::vector<std::uint8_t> key = ipc::manager::random_bytes(32);
  std::string address;  // where the server listens (a Unix socket)
  ipc::manager::Server* server = nullptr;  // lives on `thread`, inside its run()
  std::thread thread;
  std::unique_ptr<ipc::manager::Client> client;
  std::int64_t calls = 0;

  Fixture() {
    std::promise<ipc::manager::Server*> started;
    thread = std::thread([this, &started] {
      ipc::manager::ServerOptions options;
      options.key = key;
      options.max_message_bytes = 1 << 20;
      // A connection that stalls mid-authentication is dropped well within the 10 s this target waits.
      options.authentication_timeout = 2s;
      ipc::manager::Server s(options);
      started.set_value(&s);
      s.run();
    });
    server = started.get_future().get();
    address = server->address();
    client = std::make_unique<ipc::manager::Client>(address, key);
  }

  void stop() {
    client.reset();
    server->stop();
    thread.join();
  }

  void check_still_serving() {
    auto dict = client->dict("fuzz");
    dict.set("calls", ++calls);
    if (dict.get("calls") != ipc::manager::Value(calls)) fail("the server answered a real client's call wrongly");
  }
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* made = new Fixture();
    std::atexit([] { fixture().stop(); });
    return made;
  }();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Fixture& f = fixture();
  const bool authenticated = data[0] % 2 == 1;
  const int fd = authenticated ? testing::authenticated_raw_connection(f.address, f.key)
                               : testing::raw_connect(f.address);
  testing::send_all(fd, std::span(data + 1, size - 1));
  ::shutdown(fd, SHUT_WR);
  const bool closed = testing::closed_by_server(fd, 10s);
  ::close(fd);
  if (!closed) fail("the server kept a connection open 10 s after its client ended its writes");
  f.check_still_serving();
  return 0;
}

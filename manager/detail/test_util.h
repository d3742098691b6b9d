// manager/detail/test_util.h: helpers for the Manager's multi-process tests. Test-only.
//
// Threads: call from the test's thread. Processes: run_child forks; the child runs `body` on a fresh thread (a
//   thread of the parent with a KJ event loop cannot start another in the child) and _exits with its result.
// Lifetime: the Process run_child returns kills and reaps its child if the test ends early. Signal is a pipe; each
//   end is closed by its destructor.
// Errors: setup failures throw ipc::SystemError; a child's exception is printed, reaches the parent
//   (Process::exception()) and becomes exit status 1.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>

#include "ipc/base/error.h"
#include "ipc/base/process.h"
#include "manager/detail/fresh_thread.h"
#include "manager/server.h"

namespace ipc::manager::testing {

// The transports that tests of what crosses the connection run over: a Unix socket in a private directory, and
// TCP on loopback with a port the kernel picks. Use with GENERATE(kUnixSocket, kTcpLoopback) and server_on().
inline constexpr const char* kUnixSocket = "";
inline constexpr const char* kTcpLoopback = "tcp:127.0.0.1:0";

// A Manager server process listening on `address` (ServerProcessOptions::address), with `options` otherwise.
inline ServerProcess server_on(const std::string& address, ServerProcessOptions options = {}) {
  options.address = address;
  return start_server(std::move(options));
}

// A one-way notification from one process to another: notify() writes a byte, wait_for() waits for one.
class Signal {
 public:
  Signal() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) throw_errno("pipe2");
  }
  ~Signal() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  void notify() {
    char c = 1;
    if (retry_on_eintr([&] { return ::write(fds_[1], &c, 1); }) != 1) throw_errno("Signal::notify");
  }
  // true when a notification arrived within `timeout`.
  [[nodiscard]] bool wait_for(std::chrono::milliseconds timeout) {
    pollfd p{fds_[0], POLLIN, 0};
    if (retry_on_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); }) != 1) return false;
    char c;
    return retry_on_eintr([&] { return ::read(fds_[0], &c, 1); }) == 1;
  }

 private:
  int fds_[2];
};

// Starts a child (an ipc::Process) that runs `body` on a fresh thread and leaves with its result as exit code; an
// exception escaping `body` is printed, reported to the parent (Process::exception()) and makes the exit code 1.
inline Process run_child(std::function<int()> body) {
  return Process::start([body = std::move(body)] {
    return detail::on_fresh_thread([&] {
      try {
        return body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());  // in the test's log beside the failed CHECK
        throw;
      }
    });
  });
}

}  // namespace ipc::manager::testing

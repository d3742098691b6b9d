// manager/detail/test_util.h: helpers for the Manager's multi-process tests. Test-only.
//
// Threads: call from the test's thread. Processes: run_child forks; the child runs `body` on a fresh thread (a
//   thread of the parent with a KJ event loop cannot start another in the child) and _exits with its result.
// Lifetime: ChildProcess kills and reaps its child if the test ends early. Signal is a pipe; each end is closed
//   by its destructor.
// Errors: setup failures throw ipc::SystemError; a child's exception is printed and becomes exit status 1.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <thread>

#include "ipc/base/error.h"

namespace ipc::manager::testing {

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

class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ChildProcess(ChildProcess&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  void kill(int sig = SIGKILL) { ::kill(pid_, sig); }

  // Waits for the child to exit and returns its exit code, or 128 + signal if a signal ended it.
  int join() {
    int status = 0;
    if (retry_on_eintr([&] { return ::waitpid(pid_, &status, 0); }) < 0) throw_errno("waitpid");
    pid_ = -1;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
  }

 private:
  pid_t pid_;
};

// Forks a child that runs `body` (returning its exit code) and then _exits.
inline ChildProcess run_child(std::function<int()> body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    int rc = 1;
    std::thread t([&] {
      try {
        rc = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());
        rc = 1;
      }
    });
    t.join();
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return ChildProcess(pid);
}

}  // namespace ipc::manager::testing

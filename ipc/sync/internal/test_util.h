// ipc/sync/internal/test_util.h: helpers for multi-process tests: an anonymous shared mapping inherited by
// fork()ed children, children that run a function and _exit with its status, and one-byte pipe signals.
//
// Threads: single-threaded test code. Processes: the mapping is MAP_SHARED, so children see the parent's writes.
// Lifetime: RAII (the mapping is unmapped, pipes closed). Errors: failing system calls throw ipc::SystemError.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <poll.h>
#include <string>
#include <utility>

#include "ipc/base/error.h"

namespace ipc::testing {

// An anonymous MAP_SHARED mapping: the simplest memory a parent and its fork()ed children share.
class SharedMapping {
 public:
  explicit SharedMapping(size_t bytes) : bytes_(bytes) {
    base_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) throw_errno("mmap shared anonymous");
  }
  ~SharedMapping() { munmap(base_, bytes_); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  void* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  // Constructs a T at byte `offset`.
  template <typename T, typename... Args>
  T& make(size_t offset, Args&&... args) {
    return *new (static_cast<char*>(base_) + offset) T(std::forward<Args>(args)...);
  }

 private:
  void* base_;
  size_t bytes_;
};

// Forks a child that runs `body` and _exits with its return value (exceptions: 100). _exit, so that the child
// never runs the test framework's exit path.
inline pid_t fork_child(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    int rc = 100;
    try {
      rc = body();
    } catch (const std::exception&) {
      rc = 100;
    }
    _exit(rc);
  }
  return pid;
}

// Waits for `pid`; returns its exit code, or -signal when a signal killed it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  if (retry_on_eintr([&] { return static_cast<int>(waitpid(pid, &status, 0)); }) < 0) throw_errno("waitpid");
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

inline int kill_and_wait(pid_t pid) {
  kill(pid, SIGKILL);
  return wait_exit(pid);
}

// A one-way, one-byte signal between processes, for "I am ready" without sleeping for a guessed time.
class Signal {
 public:
  Signal() {
    if (pipe(fds_) != 0) throw_errno("pipe");
  }
  ~Signal() {
    close(fds_[0]);
    close(fds_[1]);
  }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  void notify(char byte = 1) {
    if (retry_on_eintr([&] { return static_cast<int>(write(fds_[1], &byte, 1)); }) != 1) throw_errno("write");
  }
  // The next byte, or -1 when none arrives within `timeout_ms` (generous by default: a test that fails must not
  // hang forever either).
  int wait(int timeout_ms = 30000) {
    pollfd p{fds_[0], POLLIN, 0};
    int n = retry_on_eintr([&] { return poll(&p, 1, timeout_ms); });
    if (n < 0) throw_errno("poll");
    if (n == 0) return -1;
    unsigned char b;
    if (retry_on_eintr([&] { return static_cast<int>(read(fds_[0], &b, 1)); }) != 1) return -1;
    return b;
  }

 private:
  int fds_[2];
};

// A name unique to this process and call, for segments in tests that run in parallel.
inline std::string unique_name(const std::string& prefix) {
  static int counter = 0;
  return prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
}

}  // namespace ipc::testing

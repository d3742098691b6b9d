// ipc/queue/test_util.h: helpers for the queue tests: shared anonymous memory inherited by fork()ed children,
// children that report failure through their exit status, and unique names for tests that run in parallel.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <thread>

#include "ipc/base/error.h"

namespace ipc::testing {

// A MAP_SHARED anonymous mapping: children forked after construction share it with the parent.
class SharedMemory {
 public:
  explicit SharedMemory(size_t bytes) : bytes_(bytes) {
    p_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p_ == MAP_FAILED) throw_errno("mmap");
  }
  ~SharedMemory() { munmap(p_, bytes_); }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  void* get() const { return p_; }
  size_t size() const { return bytes_; }
  template <typename T>
  T* as(size_t offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + offset);
  }

 private:
  void* p_;
  size_t bytes_;
};

// Runs `body` in a forked child; the child exits 0 when it returns normally, 1 on an exception (printed).
inline pid_t fork_child(const std::function<void()>& body) {
  pid_t pid = fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    int code = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", getpid(), e.what());
      code = 1;
    }
    std::fflush(stderr);
    _exit(code);
  }
  return pid;
}

// Waits for `pid` up to `timeout`; returns its wait status, or -1 after killing it when the timeout passed.
inline int wait_child(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) throw_errno("waitpid");
    if (std::chrono::steady_clock::now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

inline bool exited_ok(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// A name unique to this process and call, for segments shared by tests running in parallel.
inline std::string unique_name(const std::string& base) {
  static int counter = 0;
  return base + "_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
}

// CPU time (user + system) this process's reaped children used so far.
inline std::chrono::microseconds children_cpu_time() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// A 64-bit FNV-1a checksum.
inline uint64_t checksum(const void* data, size_t n, uint64_t seed = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace ipc::testing

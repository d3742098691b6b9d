// tests/support/test_support.h: helpers for tests that cross processes.
//
// Threads/Processes: ForkedChild runs a function in a forked child and reports how it ended; a child never
//   returns into the test framework (it leaves with _exit), so a failure in it shows up as its exit code.
// Lifetime: a ForkedChild that is destroyed while its child still runs kills and reaps the child.
// Errors: fork/wait failures throw ipc::SystemError; timeouts are return values.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace ipc::test {

// A name no other test process uses at the same time: "<prefix>-<pid>-<counter>".
std::string unique_name(const std::string& prefix);

class ForkedChild {
 public:
  // Forks; the child runs `body` and exits with its return value (1 if it throws).
  explicit ForkedChild(std::function<int()> body);
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;
  ~ForkedChild();

  pid_t pid() const { return pid_; }
  // Waits for the child to end; returns its exit code (>= 0) or minus the signal that killed it, or nullopt
  // after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  void kill(int signal);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// A one-shot cross-process signal through a pipe: the child calls notify(), the parent waits with a timeout.
// Create it before forking.
class PipeSignal {
 public:
  PipeSignal();
  ~PipeSignal();
  void notify();
  // True when notified within `timeout`.
  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  int fds_[2];
};

}  // namespace ipc::test

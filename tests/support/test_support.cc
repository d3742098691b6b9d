#include "tests/support/test_support.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>

#include "ipc/base/error.h"

namespace ipc::test {

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

ForkedChild::ForkedChild(std::function<int()> body) {
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw_errno("fork");
  if (pid_ == 0) {
    int code = 1;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", getpid(), e.what());
    }
    _exit(code);
  }
}

ForkedChild::~ForkedChild() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st;
    retry_on_eintr([&] { return waitpid(pid_, &st, 0); });
  }
}

std::optional<int> ForkedChild::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  // A pidfd becomes readable when the child exits, so the wait sleeps on the event itself.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd < 0) throw_errno("pidfd_open");
  pollfd p{pidfd, POLLIN, 0};
  int r = retry_on_eintr([&] { return poll(&p, 1, static_cast<int>(timeout.count())); });
  close(pidfd);
  if (r < 0) throw_errno("poll(pidfd)");
  if (r == 0) return std::nullopt;
  int st;
  if (retry_on_eintr([&] { return waitpid(pid_, &st, 0); }) != pid_) throw_errno("waitpid");
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  return status_;
}

void ForkedChild::kill(int signal) {
  if (pid_ > 0 && !status_) ::kill(pid_, signal);
}

PipeSignal::PipeSignal() {
  if (pipe(fds_) != 0) throw_errno("pipe");
}

PipeSignal::~PipeSignal() {
  close(fds_[0]);
  close(fds_[1]);
}

void PipeSignal::notify() {
  char c = 1;
  retry_on_eintr([&] { return write(fds_[1], &c, 1); });
}

bool PipeSignal::wait(std::chrono::milliseconds timeout) {
  pollfd p{fds_[0], POLLIN, 0};
  int r = retry_on_eintr([&] { return poll(&p, 1, static_cast<int>(timeout.count())); });
  if (r <= 0) return false;
  char c;
  return read(fds_[0], &c, 1) == 1;
}

}  // namespace ipc::test

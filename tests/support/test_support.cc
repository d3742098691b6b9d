#include "tests/support/test_support.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>

#include "ipc/base/error.h"

namespace ipc::test {

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

std::chrono::microseconds children_cpu_time() {
  rusage ru{};
  if (getrusage(RUSAGE_CHILDREN, &ru) != 0) throw_errno("getrusage(RUSAGE_CHILDREN)");
  return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

SharedMapping::SharedMapping(size_t bytes) : bytes_(bytes) {
  base_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) throw_errno("mmap shared anonymous");
}

SharedMapping::~SharedMapping() { munmap(base_, bytes_); }

void ForkedChild::start(const std::function<int()>& body) {
  // Flushed so that the child does not inherit, and print a second time, output the parent has buffered.
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
    // _exit skips the stdio flush that exit() would do; the child's own diagnostics must not be lost.
    std::fflush(nullptr);
    _exit(code);
  }
}

ForkedChild::ForkedChild(ForkedChild&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(std::exchange(other.status_, std::nullopt)) {}

ForkedChild& ForkedChild::operator=(ForkedChild&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ForkedChild::~ForkedChild() { kill_and_reap(); }

void ForkedChild::kill_and_reap() noexcept {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st;
    retry_on_eintr([&] { return waitpid(pid_, &st, 0); });
  }
}

std::optional<int> ForkedChild::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  // A pidfd becomes readable when the child exits, so the wait sleeps on the event itself instead of polling.
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

std::string exit_problem(ForkedChild& child, int expected, const std::string& label,
                         std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::optional<int> status = child.wait(timeout);
  if (status == expected) return "";
  const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", waited.count());
  std::string what = label + " (pid " + std::to_string(child.pid()) + ") ";
  if (!status) {
    what += "is still running after " + std::string(seconds);
  } else if (*status >= 0) {
    what += "exited with " + std::to_string(*status);
  } else {
    what += "was killed by signal " + std::to_string(-*status) + " (" + strsignal(-*status) + ")";
  }
  return what + " (expected: exit " + std::to_string(expected) + ")";
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
  if (retry_on_eintr([&] { return write(fds_[1], &c, 1); }) != 1) throw_errno("write(pipe signal)");
}

bool PipeSignal::wait(std::chrono::milliseconds timeout) {
  pollfd p{fds_[0], POLLIN, 0};
  int r = retry_on_eintr([&] { return poll(&p, 1, static_cast<int>(timeout.count())); });
  if (r < 0) throw_errno("poll(pipe signal)");
  if (r == 0) return false;
  char c;
  const ssize_t n = retry_on_eintr([&] { return read(fds_[0], &c, 1); });
  if (n < 0) throw_errno("read(pipe signal)");
  return n == 1;
}

}  // namespace ipc::test

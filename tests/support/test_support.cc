#include "tests/support/test_support.h"

#include <signal.h>

#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>

#include "ipc/base/error.h"
#include "ipc/base/wait.h"

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

namespace {
// When this process started, near enough: when the test binary's static objects were built.
const std::chrono::steady_clock::time_point g_process_start = std::chrono::steady_clock::now();
}  // namespace

std::chrono::milliseconds time_left() {
  using std::chrono::milliseconds;
  const char* timeout_s = std::getenv("TEST_TIMEOUT");  // set by `bazel test`, in seconds
  if (timeout_s == nullptr || std::atoi(timeout_s) <= 0) return patience(std::chrono::seconds(300));
  const auto budget = std::chrono::seconds(std::atoi(timeout_s)) * 9 / 10;
  const auto left = std::chrono::duration_cast<milliseconds>(budget - (std::chrono::steady_clock::now() - g_process_start));
  return std::max(left, milliseconds(1000));
}

namespace {
// The state letter of /proc/PID/stat, or 0 when there is no such process.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto name_end = stat.rfind(')');  // "pid (comm) state ...": comm may hold spaces and parentheses
  return name_end != std::string::npos && name_end + 2 < stat.size() ? stat[name_end + 2] : 0;
}
}  // namespace

bool sleeping(pid_t pid) { return process_state(pid) == 'S'; }

bool stopped(pid_t pid) {
  const char state = process_state(pid);
  return state == 'T' || state == 't';
}

// 100 times kWakeDeadline: a missed wake-up is never saved by a re-check during a test.
StretchedRechecks::StretchedRechecks() {
  ipc::detail::stretch_rechecks_for_testing(static_cast<uint32_t>(100 * kWakeDeadline / ipc::detail::kMaxSleep));
}
StretchedRechecks::~StretchedRechecks() { ipc::detail::stretch_rechecks_for_testing(1); }

SharedMapping::SharedMapping(size_t bytes) : bytes_(bytes) {
  base_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) throw_errno("mmap shared anonymous");
}

SharedMapping::~SharedMapping() { munmap(base_, bytes_); }

std::optional<int> ForkedChild::wait(std::chrono::milliseconds timeout) {
  const bool reported = process_.exitcode().has_value();
  const std::optional<int> code = process_.join(timeout);
  if (code && !reported && process_.exception()) {
    std::fprintf(stderr, "child %d: %s: %s\n", process_.pid(), process_.exception()->type_name.c_str(),
                 process_.exception()->message.c_str());
  }
  return code;
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

OtherUserServer::~OtherUserServer() {
  child_.kill(SIGKILL);
  (void)child_.wait();
  ::unlink(socket_path_.c_str());
  ::rmdir(socket_path_.substr(0, socket_path_.rfind('/')).c_str());
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  int fd = -1;
  try {
    fd = process_sentinel(pid);
  } catch (const Unsupported&) {
    return wait_until([pid] { return process_dead(static_cast<uint32_t>(pid)); }, timeout);
  } catch (const SystemError& e) {
    if (e.code() == ESRCH) return true;  // gone (and reaped) already
    throw;
  }
  const bool ended = ipc::wait(std::span<const int>(&fd, 1), timeout).size() == 1;
  ::close(fd);
  return ended;
}

}  // namespace ipc::test

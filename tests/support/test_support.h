// tests/support/test_support.h: the one set of helpers for tests that cross processes: unique names, memory a
// parent shares with its forked children, forked children (ipc::Process) with a timed wait, pipe signals between
// processes, and waiting for a condition (another process asleep, a word in shared memory) without a guessed sleep.
//
// Threads: unique_name and children_cpu_time may be called from any thread; the other types are used by one thread
//   of the test (each process has its own copy after fork).
// Processes: SharedMapping and PipeSignal are created before forking and are inherited by the children, which
//   share the mapping's pages and the pipe with the parent. A ForkedChild never returns into the test framework
//   (the child leaves with _exit), so a failure in it shows up as its exit code.
// Lifetime: every type is RAII. A ForkedChild destroyed while its child still runs kills (SIGKILL) and reaps the
//   child (as ipc::Process does), so a failed REQUIRE leaves no process behind; a SharedMapping is unmapped in
//   the process that destroys it (the pages live while any process maps them); a PipeSignal closes its process's
//   ends of the pipe.
// Errors: failing system calls (fork, mmap, pipe, poll, ...) throw ipc::SystemError; timeouts are return values
//   (nullopt, false).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/base/process.h"
#include "ipc/base/wait.h"

namespace ipc::test {

// A name no other test process uses at the same time: "<prefix>-<pid>-<counter>". Any thread.
std::string unique_name(const std::string& prefix);

// CPU time (user + system) used so far by the children this process has reaped. Any thread.
std::chrono::microseconds children_cpu_time();

// The one scale factor for timeouts in tests. A test's timeout bounds work that normally takes a fraction of it; a
// sanitizer build does that work several times slower (TSan most), on CI beside other builds on two cores. The
// sanitizer configs in .bazelrc scale Bazel's test timeouts by the same factor.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kPatienceFactor = 4;  // g++
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr int kPatienceFactor = 4;  // clang
#else
inline constexpr int kPatienceFactor = 1;
#endif
#else
inline constexpr int kPatienceFactor = 1;
#endif

// How long a test should wait for something that takes at most `base` in a plain build: `base` times
// kPatienceFactor. Any thread.
constexpr std::chrono::milliseconds patience(std::chrono::milliseconds base) { return base * kPatienceFactor; }

// How long this test process may still wait for another process before Bazel's timeout for the test would kill
// it: Bazel's TEST_TIMEOUT (already scaled for sanitizer builds, .bazelrc) less a tenth kept for reporting, minus
// the time since the process started; patience(300 s) when run outside Bazel; at least 1 s. The default timeout of
// the waits below, so that a child slowed down by a busy machine is waited for as long as the test may run, and
// one that never finishes is still named before Bazel ends the test. Any thread.
std::chrono::milliseconds time_left();

// Whether process `pid` sleeps in the kernel now (state 'S' in /proc/PID/stat: a futex wait, a poll), for a test
// that must act while another process is asleep. False when there is no such process. Any thread.
bool sleeping(pid_t pid);
// Whether process `pid` is stopped by a signal now (state 'T' or 't'): kill(pid, SIGSTOP) returns before the
// target stops, so a test that needs it stopped waits for this. False when there is no such process. Any thread.
bool stopped(pid_t pid);

// Makes every wait of this process (and of children it forks meanwhile) spin first (true, as on an idle machine) or
// sleep at once (false, a busy one) for as long as it lives, whatever the machine's load
// (ipc::detail::set_spinning_verdict_for_testing), so that a test covers a waiting path it chose.
struct ForcedSpinningVerdict {
  explicit ForcedSpinningVerdict(bool spinning_pays) { ipc::detail::set_spinning_verdict_for_testing(spinning_pays); }
  ~ForcedSpinningVerdict() { ipc::detail::set_spinning_verdict_for_testing(std::nullopt); }
  ForcedSpinningVerdict(const ForcedSpinningVerdict&) = delete;
  ForcedSpinningVerdict& operator=(const ForcedSpinningVerdict&) = delete;
};

// Calls `condition` (yielding the CPU in between) until it returns true or `timeout` passes; returns whether it
// did. For events another process makes visible in shared memory or /proc, without guessing a sleep.
template <typename F>
  requires std::predicate<F&>
bool wait_until(F condition, std::chrono::milliseconds timeout = time_left()) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

// Waits until process `pid` no longer runs (ended, or a zombie not yet reaped): true, or false once `timeout`
// passed. Through a pidfd where the kernel has them (no CPU while waiting); else, as a kernel older than 5.3
// gives no descriptor for a process that is not our child, by asking process_dead() in a wait_until() loop.
bool wait_gone(pid_t pid, std::chrono::milliseconds timeout = time_left());

// An anonymous MAP_SHARED mapping: the simplest memory a parent and the children it forks afterwards share. The
// pages start zeroed.
class SharedMapping {
 public:
  explicit SharedMapping(size_t bytes);
  ~SharedMapping();
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  void* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  // The memory at byte `offset` seen as a T (no object is constructed: for arrays of atomics in zeroed pages).
  template <typename T>
  T* as(size_t offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(base_) + offset);
  }
  // Constructs a T at byte `offset`. REQUIRES: offset + sizeof(T) <= bytes(), offset suitably aligned for T.
  template <typename T, typename... Args>
  T& make(size_t offset, Args&&... args) {
    return *new (static_cast<char*>(base_) + offset) T(std::forward<Args>(args)...);
  }

 private:
  void* base_;
  size_t bytes_;
};

// A forked child for a test: an ipc::Process with a default timeout on wait() and the child's exception printed.
class ForkedChild {
 public:
  // Forks; the child runs `body` and _exits with its return value (0 when `body` returns void; 1 when it throws,
  // and wait() prints the exception it reported).
  template <typename F>
    requires std::invocable<F&>
  explicit ForkedChild(F body) : process_(Process::start(body)) {}

  pid_t pid() const { return process_.pid(); }
  // Waits for the child to end and reaps it; returns its exit code (>= 0) or minus the signal that killed it, or
  // nullopt after `timeout` (the child keeps running). Once reaped, returns the same value again at once.
  std::optional<int> wait(std::chrono::milliseconds timeout = time_left());
  // Sends `signal` to the child unless it has been reaped.
  void kill(int signal) { process_.send_signal(signal); }
  Process& process() { return process_; }

 private:
  Process process_;
};

// Waits for `child` as child.wait(timeout) does and says what was not as expected, naming the child by `label` and
// pid: empty when it exited with `expected`, otherwise e.g. "producer 1 (pid 4711) is still running after 240.0 s
// (expected: exit 0)", "... exited with 1 ..." or "... was killed by signal 6 (Aborted) ...". For a check that
// prints the reason when it fails: CHECK(exit_problem(child, 0, "producer 1") == "").
std::string exit_problem(ForkedChild& child, int expected, const std::string& label,
                         std::chrono::milliseconds timeout = time_left());

// How long a blocked call in a wake-up test may wait for the wake-up: it normally takes microseconds; a second
// when the machine is busy.
inline constexpr std::chrono::milliseconds kWakeDeadline = patience(std::chrono::seconds(10));

// While one lives, the library's periodic re-checks (every sleep through ipc/base/wait.h's sleep_slice: queues,
// semaphores, barriers) last far longer than kWakeDeadline, in this process and in the children it forks
// meanwhile, so that only a wake-up ends a sleep within a test's deadline. Restores the normal period when
// destroyed. One at a time, in one thread of the test.
class StretchedRechecks {
 public:
  StretchedRechecks();
  ~StretchedRechecks();
  StretchedRechecks(const StretchedRechecks&) = delete;
  StretchedRechecks& operator=(const StretchedRechecks&) = delete;
};

// For a test that a wake-up reaches a sleeping process: forks a child that runs `blocked` (a call that sleeps
// until `wake` happens, bounded by kWakeDeadline, and returns true when it succeeded, e.g. a get that returned
// kOk), waits until the child sleeps in the kernel, runs `wake` here, and says what was not as expected as
// exit_problem() does: empty when `blocked` returned true within kWakeDeadline; the child exits with 1 when it
// returned false, with 2 when it returned true only after kWakeDeadline (a re-check found the change, nobody woke
// the child). Under StretchedRechecks a missing wake-up thus fails the test instead of being saved by a re-check.
template <typename Blocked, typename Wake>
  requires std::predicate<Blocked&> && std::invocable<Wake&>
std::string wake_problem(const std::string& label, Blocked blocked, Wake wake) {
  ForkedChild child([&] {
    const auto start = std::chrono::steady_clock::now();
    if (!blocked()) return 1;
    return std::chrono::steady_clock::now() - start < kWakeDeadline ? 0 : 2;
  });
  if (!wait_until([&] { return sleeping(child.pid()); })) {
    return label + " (pid " + std::to_string(child.pid()) + ") never went to sleep";
  }
  wake();
  return exit_problem(child, 0, label + " (exit 1: its call failed, 2: it returned only after kWakeDeadline)");
}

// A cross-process signal through a pipe: "I am ready" without sleeping for a guessed time. Each notify() writes
// one byte and each wait() consumes one, so N children may each notify once and the parent waits N times.
class PipeSignal {
 public:
  PipeSignal();
  ~PipeSignal();
  PipeSignal(const PipeSignal&) = delete;
  PipeSignal& operator=(const PipeSignal&) = delete;

  void notify();
  // True when a notification arrived within `timeout`.
  bool wait(std::chrono::milliseconds timeout = time_left());

 private:
  int fds_[2];
};

// The uid and gid a test switches a child to when it needs another user (nobody). Only root may switch.
inline constexpr uid_t kOtherUser = 65534;

// For a test that a service another user runs is refused: a child that switched to kOtherUser, made a private
// directory under /tmp and serves on "<dir>/<file>" by calling `serve(path, ready)`, which must call `ready()` once
// the socket listens and then serve until killed. The constructor returns once it is ready (or throws
// ipc::Error when it exited first); the destructor kills the child and removes the socket and the directory.
// REQUIRES: geteuid() == 0.
class OtherUserServer {
 public:
  template <typename Serve>
    requires std::invocable<Serve&, const std::string&, const std::function<void()>&>
  OtherUserServer(const std::string& file, Serve serve)
      : shared_(4096), child_([&]() -> int {
          if (::setgid(kOtherUser) != 0 || ::setuid(kOtherUser) != 0) return 2;
          char dir[] = "/tmp/numa_mp-other-XXXXXX";
          if (::mkdtemp(dir) == nullptr) return 3;
          const std::string path = std::string(dir) + "/" + file;
          serve(path, std::function<void()>([&] {
                  path.copy(shared_.as<char>(), 4095);
                  ready_.notify();
                }));
          return 0;
        }) {
    if (!ready_.wait()) throw Error("the server of uid " + std::to_string(kOtherUser) + " never became ready");
    socket_path_ = shared_.as<char>();
  }
  ~OtherUserServer();
  OtherUserServer(const OtherUserServer&) = delete;
  OtherUserServer& operator=(const OtherUserServer&) = delete;

  const std::string& socket_path() const { return socket_path_; }

 private:
  SharedMapping shared_;
  PipeSignal ready_;
  ForkedChild child_;
  std::string socket_path_;
};

}  // namespace ipc::test

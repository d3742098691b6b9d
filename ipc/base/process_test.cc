// Process: start/exec, join with timeouts, exit codes and signals, exceptions reported to the parent, sentinels
// in wait(), daemon and non-daemon children when their parent dies, active_children(), current_process(),
// cpu_count() with cgroup quotas, the destructor's kill-and-reap, and process_dead() on a reaped child.
#include "ipc/base/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <csignal>
#include <fstream>
#include <future>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ipc/base/detail/proc_files.h"
#include "ipc/base/error.h"
#include "tests/support/older_kernel.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Process;
using ipc::ProcessOptions;
using ipc::test::PipeSignal;

namespace proc_test {
struct Overheated : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace proc_test

namespace {

// A pipe whose ends close with the object; for passing a pid or a byte between processes.
struct RawPipe {
  int fds[2];
  RawPipe() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
  ~RawPipe() {
    close_read_end();
    close_write_end();
  }
  int read_end() const { return fds[0]; }
  int write_end() const { return fds[1]; }
  void close_read_end() {
    if (fds[0] >= 0) ::close(std::exchange(fds[0], -1));
  }
  void close_write_end() {
    if (fds[1] >= 0) ::close(std::exchange(fds[1], -1));
  }
};

std::vector<int> wait_one(int fd, std::chrono::nanoseconds timeout) {
  return ipc::wait(std::array{fd}, timeout);
}

// Starts an intermediate process that starts a grandchild (daemon or not) blocked forever (a forked callable, or
// with `exec` a program), reports the grandchild's pid and then blocks forever itself; returns the intermediate
// and a pidfd of the grandchild, opened while the intermediate still lives (so the pid cannot have been reused).
std::pair<Process, int> parent_with_blocked_grandchild(bool daemon, bool exec = false) {
  RawPipe pid_pipe;
  Process middle = Process::start([&] {
    Process grandchild = exec ? Process::exec("/bin/sh", {"sh", "-c", "while :; do sleep 1; done"},
                                              ProcessOptions{.daemon = daemon})
                              : Process::start([] {
                                  for (;;) ::pause();
                                }, ProcessOptions{.daemon = daemon});
    const pid_t pid = grandchild.pid();
    if (::write(pid_pipe.write_end(), &pid, sizeof pid) != sizeof pid) return 2;
    for (;;) ::pause();  // never leaves this scope: `grandchild`'s destructor does not run
  });
  REQUIRE(wait_one(pid_pipe.read_end(), 30s).size() == 1);
  pid_t grandchild = 0;
  REQUIRE(::read(pid_pipe.read_end(), &grandchild, sizeof grandchild) == sizeof grandchild);
  return {std::move(middle), ipc::process_sentinel(grandchild)};
}
}  // namespace

TEST_CASE("join returns the child's exit code: the int it returned, 0 for a void callable", "[process]") {
  Process zero = Process::start([] { return 0; });
  Process three = Process::start([] { return 3; });
  bool ran = false;
  Process void_child = Process::start([&] { ran = true; });  // the child's copy of `ran`
  CHECK(three.exitcode() == std::nullopt);  // not joined yet
  CHECK(zero.join() == 0);
  CHECK(three.join(30s) == 3);
  CHECK(void_child.join() == 0);
  CHECK(three.exitcode() == 3);
  CHECK(three.join() == 3);  // again, at once
  CHECK_FALSE(three.is_alive());
  CHECK_FALSE(ran);
  CHECK(zero.exception() == std::nullopt);
}

TEST_CASE("kill() ends a child with -SIGKILL and terminate() with -SIGTERM", "[process]") {
  PipeSignal ready, release;
  auto blocked = [&] {
    std::signal(SIGTERM, SIG_DFL);  // the test framework's handler is the parent's business
    ready.notify();
    return release.wait() ? 0 : 2;
  };
  Process killed = Process::start(blocked);
  REQUIRE(ready.wait());
  CHECK(killed.is_alive());
  killed.kill();
  CHECK(killed.join(30s) == -SIGKILL);
  CHECK(killed.exitcode() == -SIGKILL);
  CHECK_FALSE(killed.is_alive());
  killed.kill();  // reaped: nothing to signal, no error

  Process terminated = Process::start(blocked);
  REQUIRE(ready.wait());
  terminated.terminate();
  CHECK(terminated.join(30s) == -SIGTERM);
}

TEST_CASE("join with a timeout returns nullopt while the child runs, then its exit code", "[process]") {
  PipeSignal release;
  Process p = Process::start([&] { return release.wait() ? 5 : 2; });
  CHECK(p.join(20ms) == std::nullopt);
  CHECK(p.join(0ms) == std::nullopt);
  CHECK(p.is_alive());
  CHECK(p.exitcode() == std::nullopt);
  release.notify();
  CHECK(p.join(30s) == 5);
}

TEST_CASE("an exception escaping the child reaches the parent with its type and message", "[process]") {
  Process p = Process::start([]() -> int { throw proc_test::Overheated("disk 3 at 95 C"); });
  CHECK(p.join() == 1);
  REQUIRE(p.exception());
  CHECK(p.exception()->type_name == "proc_test::Overheated");
  CHECK(p.exception()->message == "disk 3 at 95 C");

  Process std_error = Process::start([] { throw std::out_of_range("index 7"); });
  CHECK(std_error.join() == 1);
  REQUIRE(std_error.exception());
  CHECK(std_error.exception()->type_name == "std::out_of_range");
  CHECK(std_error.exception()->message == "index 7");

  Process not_std = Process::start([] { throw 42; });
  CHECK(not_std.join() == 1);
  REQUIRE(not_std.exception());
  CHECK(not_std.exception()->type_name == "int");
  CHECK(not_std.exception()->message.empty());

  const std::string long_message(100000, 'x');
  Process long_one = Process::start([&] { throw std::runtime_error(long_message); });
  CHECK(long_one.join(30s) == 1);  // the child did not block on a full pipe
  REQUIRE(long_one.exception());
  CHECK(long_one.exception()->message.size() > 3000);
  CHECK(long_one.exception()->message.size() < 4096);
}

TEST_CASE("exec runs a program and reports its exit code; a missing program throws ENOENT", "[process]") {
  CHECK(Process::exec("/bin/true", {"true"}).join(30s) == 0);
  CHECK(Process::exec("/bin/sh", {"sh", "-c", "exit 7"}).join(30s) == 7);
  CHECK(Process::exec("true", {}).join(30s) == 0);  // PATH search, argv {"true"}
  try {
    (void)Process::exec("/nonexistent/numa_mp-no-such-program", {"x"});
    FAIL("exec of a missing program did not throw");
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == ENOENT);
    CHECK(std::string(e.what()).find("numa_mp-no-such-program") != std::string::npos);
  }
  CHECK(ipc::active_children().empty());  // the failed child was reaped
  CHECK_THROWS_AS(Process::exec("", {}), ipc::InvalidArgument);
}

TEST_CASE("exec keeps pass_fds open in the program and closes the others", "[process]") {
  int kept[2], closed_on_exec[2];
  REQUIRE(pipe2(kept, O_CLOEXEC) == 0);
  REQUIRE(pipe2(closed_on_exec, O_CLOEXEC) == 0);
  ipc::ProcessOptions o;
  o.pass_fds = {kept[1]};
  // The shell writes to both descriptors; only the passed one is open in it.
  const std::string script = "echo kept >&" + std::to_string(kept[1]) + "; echo leaked >&" +
                             std::to_string(closed_on_exec[1]) + " 2>/dev/null; exit 0";
  Process p = Process::exec("/bin/sh", {"sh", "-c", script}, o);
  CHECK(p.join(30s) == 0);
  CHECK((fcntl(kept[1], F_GETFD) & FD_CLOEXEC) != 0);  // cleared in the child only
  close(kept[1]);
  close(closed_on_exec[1]);
  char buf[16] = {};
  CHECK(read(kept[0], buf, sizeof buf) == 5);
  CHECK(std::string(buf) == "kept\n");
  CHECK(read(closed_on_exec[0], buf, sizeof buf) == 0);  // end of file: the program never had it
  close(kept[0]);
  close(closed_on_exec[0]);
}

TEST_CASE("an exec'd program gets the caller's signal mask and ignored signals, and no other blocked signal",
          "[process]") {
  // exec() blocks every signal around its vfork() (a handler must not run in the child, which borrows this
  // process's memory): the program must still start with the caller thread's own mask.
  sigset_t usr2, before;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  REQUIRE(pthread_sigmask(SIG_BLOCK, &usr2, &before) == 0);
  struct sigaction ignore {}, old_usr1 {};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(sigaction(SIGUSR1, &ignore, &old_usr1) == 0);
  int out[2];
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  ipc::ProcessOptions o;
  o.pass_fds = {out[1]};
  const std::string script = "exec grep -E '^Sig(Blk|Ign):' /proc/self/status >&" + std::to_string(out[1]);
  Process p = Process::exec("/bin/sh", {"sh", "-c", script}, o);
  REQUIRE(pthread_sigmask(SIG_SETMASK, &before, nullptr) == 0);
  REQUIRE(sigaction(SIGUSR1, &old_usr1, nullptr) == 0);
  CHECK(p.join(30s) == 0);
  close(out[1]);
  std::string status;
  char buf[256];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) status.append(buf, static_cast<size_t>(n));
  close(out[0]);
  INFO(status);
  // Bit n-1 of the hexadecimal masks is signal n.
  auto mask_of = [&](const std::string& field) {
    const size_t at = status.find(field + ":\t");
    REQUIRE(at != std::string::npos);
    return std::stoull(status.substr(at + field.size() + 2, 16), nullptr, 16);
  };
  uint64_t expected_blocked = uint64_t{1} << (SIGUSR2 - 1);
  for (int sig = 1; sig <= 64; ++sig) {
    if (sigismember(&before, sig) == 1) expected_blocked |= uint64_t{1} << (sig - 1);
  }
  CHECK(mask_of("SigBlk") == expected_blocked);
  CHECK((mask_of("SigIgn") & (uint64_t{1} << (SIGUSR1 - 1))) != 0);
}

TEST_CASE("a daemon program started by exec dies when its parent is SIGKILLed", "[pidfd][process][kill]") {
  auto [middle, program] = parent_with_blocked_grandchild(true, true);
  CHECK(wait_one(program, 0ms).empty());
  middle.kill();
  REQUIRE(middle.join(30s) == -SIGKILL);
  CHECK(wait_one(program, 30s) == std::vector<int>{program});
  ::close(program);
}

TEST_CASE("exec returns while another thread forks long-lived children", "[process][threads]") {
  // A child forked by another thread while exec() has its report pipe open must not keep the pipe's write end:
  // exec() would wait for that child's end instead of the program's start. (The window is a few microseconds
  // wide, so this checks that start and exec work from two threads at once more than it hits the window.)
  std::vector<Process> sleepers;  // touched by `forker` only until it is joined
  std::thread forker([&] {
    for (int i = 0; i < 20; ++i) sleepers.push_back(Process::start([] {
      for (;;) ::pause();
    }));
  });
  auto execs = std::async(std::launch::async, [] {
    for (int i = 0; i < 40; ++i) {
      if (Process::exec("/bin/true", {"true"}).join(30s) != 0) return false;
    }
    return true;
  });
  const bool finished = execs.wait_for(60s) == std::future_status::ready;
  forker.join();
  sleepers.clear();  // kills them, which also frees a stuck exec()
  CHECK(finished);
  CHECK(execs.get());
}

TEST_CASE("a sentinel works in wait() beside a pipe, which reports the one that became ready", "[process]") {
  PipeSignal release;
  RawPipe other;
  Process p = Process::start([&] { return release.wait() ? 0 : 2; });
  const std::array<int, 2> fds{p.sentinel(), other.read_end()};
  CHECK(ipc::wait(fds, 20ms).empty());
  REQUIRE(::write(other.write_end(), "x", 1) == 1);
  CHECK(ipc::wait(fds, 30s) == std::vector<int>{other.read_end()});
  char c;
  REQUIRE(::read(other.read_end(), &c, 1) == 1);
  release.notify();
  CHECK(ipc::wait(fds, 30s) == std::vector<int>{p.sentinel()});
  CHECK(p.join(0ms) == 0);
  CHECK_THROWS_AS(ipc::wait(std::array<int, 0>{}), ipc::InvalidArgument);
}

TEST_CASE("a daemon child dies when its parent is SIGKILLed", "[pidfd][process][kill]") {
  auto [middle, grandchild] = parent_with_blocked_grandchild(true);
  CHECK(wait_one(grandchild, 0ms).empty());
  middle.kill();
  REQUIRE(middle.join(30s) == -SIGKILL);
  CHECK(wait_one(grandchild, 30s) == std::vector<int>{grandchild});
  ::close(grandchild);
}

TEST_CASE("a non-daemon child survives its parent's death", "[pidfd][process][kill]") {
  auto [middle, grandchild] = parent_with_blocked_grandchild(false);
  middle.kill();
  REQUIRE(middle.join(30s) == -SIGKILL);
  // A daemon would have been signalled as its parent exited; this one still runs.
  CHECK(wait_one(grandchild, 200ms).empty());
  REQUIRE(::syscall(SYS_pidfd_send_signal, grandchild, SIGKILL, nullptr, 0) == 0);
  CHECK(wait_one(grandchild, 30s) == std::vector<int>{grandchild});
  ::close(grandchild);
}

TEST_CASE("active_children lists the children that still run, and none in a child", "[process]") {
  PipeSignal a_go, b_go;
  Process a = Process::start([&] { return a_go.wait() ? 0 : 2; });
  Process b = Process::start([&] { return b_go.wait() ? 0 : 2; });
  Process quick = Process::start([] { return 0; });
  REQUIRE(wait_one(quick.sentinel(), 30s).size() == 1);  // ended, not yet reaped
  auto live = ipc::active_children();
  std::sort(live.begin(), live.end());
  std::vector<pid_t> expected{a.pid(), b.pid()};
  std::sort(expected.begin(), expected.end());
  CHECK(live == expected);

  Process probe = Process::start([] { return ipc::active_children().empty() ? 0 : 1; });
  CHECK(probe.join(30s) == 0);

  a_go.notify();
  CHECK(a.join(30s) == 0);
  CHECK(ipc::active_children() == std::vector<pid_t>{b.pid()});
  b_go.notify();
  CHECK(b.join(30s) == 0);
  CHECK(quick.join() == 0);
  CHECK(ipc::active_children().empty());
}

TEST_CASE("current_process names the main process and each child", "[process]") {
  CHECK(ipc::current_process().name == "MainProcess");
  CHECK(ipc::current_process().pid == ::getpid());
  Process named = Process::start([] {
    const ipc::ProcessInfo me = ipc::current_process();
    return me.name == "worker-7" && me.pid == ::getpid() ? 0 : 1;
  }, ProcessOptions{.name = "worker-7"});
  CHECK(named.name() == "worker-7");
  CHECK_FALSE(named.daemon());
  CHECK(named.join(30s) == 0);

  Process nested = Process::start([] {
    Process inner = Process::start([] { return 0; });
    return inner.name() == ipc::current_process().name + ":1" && inner.join() == 0 ? 0 : 1;
  });
  CHECK(nested.name().rfind("Process-", 0) == 0);
  CHECK(nested.join(30s) == 0);
}

// Whether `fd` is readable now (0 ms) or within `timeout`.
bool readable(int fd, std::chrono::milliseconds timeout = 0ms) {
  return ipc::wait(std::array<int, 1>{fd}, timeout).size() == 1;
}

TEST_CASE("parent_process: none in the main process; a child's names its parent, which runs", "[pidfd][process]") {
  CHECK_FALSE(ipc::parent_process().has_value());
  const pid_t test_pid = ::getpid();
  const std::string test_name = ipc::current_process().name;
  Process child = Process::start([&] {
    const auto parent = ipc::parent_process();
    if (!parent) return 2;
    if (parent->pid != test_pid || parent->name != test_name || !parent->direct || !parent->is_alive()) return 3;
    const int sentinel = parent->sentinel();
    const bool quiet = !readable(sentinel);  // not readable while the parent runs
    ::close(sentinel);
    if (!quiet) return 4;
    // A child of this child names this one.
    const pid_t me = ::getpid();
    const std::string my_name = ipc::current_process().name;
    Process grandchild = Process::start([&] {
      const auto p = ipc::parent_process();
      return p && p->pid == me && p->name == my_name && p->is_alive() ? 0 : 1;
    });
    if (grandchild.join() != 0) return 5;
    // A child forked by other means has none: the parent it would inherit is this process's own.
    const pid_t raw = ::fork();
    if (raw == 0) ::_exit(ipc::parent_process() ? 1 : 0);
    int status = 0;
    if (raw < 0 || ::waitpid(raw, &status, 0) != raw || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 6;
    return 0;
  });
  CHECK(child.join(30s) == 0);  // 2: no parent; 3: wrong pid, name or liveness; 4: sentinel readable; 5, 6: nested
}

// A child whose parent ended: is_alive() turns false and the sentinel it holds becomes readable; one asked for
// afterwards is readable at once. The test is the subreaper of its grandchild, so that the orphan is reaped here.
TEST_CASE("parent_process: the end of the parent is seen by is_alive and by its sentinel", "[pidfd][process][kill]") {
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  struct NotSubreaperAfter {
    ~NotSubreaperAfter() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } not_subreaper_after;
  RawPipe report;  // the grandchild's pid, then its verdict
  PipeSignal waiting;
  Process middle = Process::start([&] {
    Process orphan = Process::start([&] {
      const pid_t me = ::getpid();
      if (::write(report.write_end(), &me, sizeof me) != sizeof me) return 1;
      const auto parent = ipc::parent_process();
      if (!parent) return 3;
      const int sentinel = parent->sentinel();
      waiting.notify();
      char verdict = 'T';  // the sentinel did not become readable in time
      if (readable(sentinel, 60s)) {
        verdict = parent->is_alive() ? 'A' : 'E';  // 'A': readable, yet the parent looks alive
        const int late = parent->sentinel();
        if (verdict == 'E' && !readable(late)) verdict = 'L';  // asked for after the end, yet not readable
        ::close(late);
      }
      ::close(sentinel);
      return ::write(report.write_end(), &verdict, 1) == 1 ? 0 : 1;
    });
    if (!waiting.wait()) return 2;
    ::_exit(0);  // leaves the grandchild running (~Process would kill it)
  });
  CHECK(middle.join(30s) == 0);
  pid_t orphan = -1;
  char verdict = '?';
  REQUIRE(readable(report.read_end(), 60s));
  REQUIRE(::read(report.read_end(), &orphan, sizeof orphan) == sizeof orphan);
  if (readable(report.read_end(), 90s)) {
    CHECK(::read(report.read_end(), &verdict, 1) == 1);
  } else {
    ::kill(orphan, SIGKILL);  // it did not report in time
  }
  CHECK(verdict == 'E');  // T: sentinel never readable; A: parent alive after it; L: late sentinel not readable
  int status = 0;
  CHECK(::waitpid(orphan, &status, 0) == orphan);  // ours to reap, as its subreaper
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

namespace {

constexpr int kNoSeccomp = 77;

// Runs `check` in a child acting as `kernel` (older_kernel.h): its exit code (kNoSeccomp when no filter can be
// installed), or FAILs naming the child when it does not finish.
template <typename Check>
int under_older_kernel(ipc::test::OlderKernel kernel, Check check) {
  Process child = Process::start([&] { return ipc::test::act_as_older_kernel(kernel) ? check() : kNoSeccomp; });
  const std::optional<int> code = child.join(ipc::test::time_left());
  if (!code) FAIL("child " << child.pid() << " did not finish");
  return *code;
}

// 0 when `call` throws Unsupported whose message holds every one of `says`; else 1 (printed).
template <typename Call>
int unsupported_saying(Call call, std::initializer_list<std::string> says) {
  try {
    call();
    std::fprintf(stderr, "no exception\n");
    return 1;
  } catch (const ipc::Unsupported& e) {
    for (const std::string& s : says) {
      if (std::string(e.what()).find(s) == std::string::npos) {
        std::fprintf(stderr, "'%s' does not say '%s'\n", e.what(), s.c_str());
        return 1;
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "not Unsupported: %s\n", e.what());
    return 1;
  }
}

// start(), exec(), join(), is_alive() and kill() of children, checked where the kernel acts older: 0, or the
// number of the check that failed (printed).
int children_work() {
  Process seven = Process::start([] { return 7; });
  if (seven.join(60s) != 7) return 11;
  Process program = Process::exec("/bin/sh", {"sh", "-c", "exit 5"});
  if (program.join(60s) != 5) return 12;
  // The program is told its life pipe's write end, and holds it.
  Process told = Process::exec("/bin/sh", {"sh", "-c", "test -p \"/proc/self/fd/$IPC_PROCESS_LIFE_FD\""});
  if (told.join(60s) != 0) return 17;
  PipeSignal never;
  Process blocked = Process::start([&] { return never.wait() ? 0 : 2; });
  if (!blocked.is_alive() || blocked.join(10ms) != std::nullopt) return 13;
  blocked.kill();
  if (blocked.join(60s) != -SIGKILL) return 14;
  // Nothing left behind: every child reaped.
  if (!ipc::active_children().empty()) return 15;
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD ? 0 : 16;
}

}  // namespace

TEST_CASE("where pidfd_open is refused children are watched through a pipe, and process_sentinel is Unsupported",
          "[process]") {
  const int code = under_older_kernel(ipc::test::OlderKernel::kWithoutPidfdOpen, [] {
    if (const int failed = children_work()) return failed;
    utsname u{};
    ::uname(&u);
    // This kernel has the call (the other tests need it), so the message blames the filter, naming the release.
    if (unsupported_saying([] { ipc::process_sentinel(::getppid()); },
                           {"pidfd_open(2) (Linux >= 5.3)", u.release, "has it", "seccomp filter"})) {
      return 1;
    }
    // A child of Process::start(): parent_process() is this test's process; its sentinel needs a pidfd too.
    if (unsupported_saying([] { (void)ipc::parent_process().value().sentinel(); }, {"pidfd_open(2)"})) return 2;
    return 0;
  });
  if (code == kNoSeccomp) {
    WARN("skipped: this kernel takes no seccomp filter here");
    return;
  }
  CHECK(code == 0);  // 1, 2: not Unsupported as said; 11-17: children_work()
}

TEST_CASE("where waitid(P_PIDFD) is refused (Linux 5.3) children are watched through a pipe", "[process]") {
  const int code = under_older_kernel(ipc::test::OlderKernel::kLinux5_3, children_work);
  if (code == kNoSeccomp) {
    WARN("skipped: this kernel takes no seccomp filter here");
    return;
  }
  CHECK(code == 0);  // 11-17: children_work()
}

TEST_CASE("a child's own children do not hold back its end: join returns while its grandchildren run",
          "[process]") {
  // The grandchildren (one from Process::start, whose handle is never destroyed, one from a raw fork()) read
  // `release` until the test closes it; the child returns 4 at once. On a kernel without pidfds the child's end
  // is its life pipe hanging up, which a grandchild holding a copy of the write end would delay.
  RawPipe release;
  Process child = Process::start([&] {
    release.close_write_end();
    auto wait_for_release = [&] {
      char c;
      return ::read(release.read_end(), &c, 1) == 0 ? 0 : 1;
    };
    new Process(Process::start(wait_for_release));  // leaked: its destructor would kill it
    const pid_t raw = ::fork();
    if (raw == 0) ::_exit(wait_for_release());
    return raw > 0 ? 4 : 5;
  });
  const std::optional<int> code = child.join(ipc::test::time_left());
  release.close_write_end();  // the grandchildren end now (reaped by init)
  INFO("child " << child.pid() << (code ? " ended" : " still not joined: its grandchildren hold back its end"));
  CHECK(code == 4);
}

TEST_CASE("a child that closes its descriptors is joined at its end, not when its descriptors close",
          "[process]") {
  // Where there are no pidfds, the sentinel is a pipe the child holds; a program that closes every descriptor
  // hangs it up early, and join() must still wait for the child's end (and is_alive() say it runs).
  RawPipe gate, closed;
  Process child = Process::start([&] {
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != gate.read_end() && fd != closed.write_end()) ::close(fd);
    }
    ::close(closed.write_end());  // tells the test its descriptors are closed
    char c;
    return ::read(gate.read_end(), &c, 1) == 1 ? 3 : 2;
  });
  closed.close_write_end();
  gate.close_read_end();
  char c;
  REQUIRE(::read(closed.read_end(), &c, 1) == 0);  // end of file: the child closed everything
  CHECK(child.is_alive());
  CHECK(child.join(20ms) == std::nullopt);
  REQUIRE(::write(gate.write_end(), "g", 1) == 1);
  CHECK(child.join(60s) == 3);
}

TEST_CASE("the destructor of a running Process kills and reaps it", "[process]") {
  PipeSignal never;
  pid_t pid = 0;
  {
    Process p = Process::start([&] { return never.wait() ? 0 : 2; });
    pid = p.pid();
    REQUIRE(p.is_alive());
  }
  errno = 0;
  CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
  CHECK(::kill(pid, 0) == -1);  // no zombie left either
  CHECK(errno == ESRCH);

  // Move assignment does the same to the child the target held.
  Process first = Process::start([&] { return never.wait() ? 0 : 2; });
  const pid_t first_pid = first.pid();
  first = Process::start([] { return 4; });
  CHECK(::kill(first_pid, 0) == -1);
  CHECK(first.join(30s) == 4);
}

TEST_CASE("a handle is inert in a forked copy and unusable once moved from", "[process]") {
  PipeSignal release;
  Process sibling = Process::start([&] { return release.wait() ? 0 : 2; });
  Process tries = Process::start([&]() -> int {
    try {
      sibling.kill();
      return 1;
    } catch (const ipc::StateError&) {
      return 0;
    }
  });
  CHECK(tries.join(30s) == 0);
  CHECK(sibling.is_alive());
  release.notify();
  CHECK(sibling.join(30s) == 0);

  Process moved = std::move(sibling);
  CHECK_THROWS_AS(sibling.join(), ipc::StateError);  // NOLINT(bugprone-use-after-move): on purpose
  CHECK(moved.join() == 0);
}

TEST_CASE("a refused call names the kernel's release and who refuses it", "[process]") {
  using Catch::Contains;
  using ipc::detail::refused_call_reason;
  CHECK_THAT(refused_call_reason("4.18.0-553.el8_10.x86_64", 5, 3),
             Contains("this kernel (4.18.0-553.el8_10.x86_64) is older than Linux 5.3"));
  CHECK_THAT(refused_call_reason("5.3.0-64-generic", 5, 4), Contains("is older than Linux 5.4"));
  CHECK_THAT(refused_call_reason("5.3.0-64-generic", 5, 3), Contains("has it") && Contains("seccomp filter"));
  CHECK_THAT(refused_call_reason("6.18.44-fc", 5, 4), Contains("has it") && Contains("valgrind"));
  CHECK_THAT(refused_call_reason("5.10", 5, 4), Contains("has it"));
  for (const char* unreadable : {"", "6", "x.y", "6-rc1"}) {
    INFO(unreadable);
    CHECK_THAT(refused_call_reason(unreadable, 5, 3), Contains("older than Linux 5.3, or a seccomp filter"));
  }
}

TEST_CASE("stat_state reads the state letter and refuses empty or cut-short text", "[process][process_dead]") {
  using ipc::detail::stat_state;
  CHECK(stat_state("42 (cat) S 1 42 42 0") == 'S');
  CHECK(stat_state("42 (a) b) Z 1 42") == 'Z');
  CHECK(stat_state("") == std::nullopt);
  CHECK(stat_state("42 (cat") == std::nullopt);
  CHECK(stat_state("42 (cat)") == std::nullopt);
  CHECK(stat_state("42 (cat) ") == std::nullopt);
}

TEST_CASE("process_dead: a process whose main thread ended while another runs is alive", "[process][process_dead]") {
  RawPipe release;
  Process p = Process::start([&] {
    release.close_write_end();
    std::thread([&] {
      char c;
      (void)::read(release.read_end(), &c, 1);  // end of file: the test closed its end
      std::_Exit(6);  // no exit handlers: a sanitizer's leak check would change the status
    }).detach();
    ::pthread_exit(nullptr);  // the main thread ends; the process lives on in the other one
  });
  release.close_read_end();
  auto main_thread_state = [pid = p.pid()] {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return ipc::detail::stat_state(line);
  };
  INFO("child " << p.pid());
  REQUIRE(ipc::test::wait_until([&] { return main_thread_state() == 'Z'; }));
  CHECK_FALSE(ipc::process_dead(static_cast<uint32_t>(p.pid())));
  CHECK(p.is_alive());
  release.close_write_end();
  const std::optional<int> code = p.join(ipc::test::time_left());
  INFO("exit code " << (code ? std::to_string(*code) : "none: still runs"));
  CHECK(code == 6);
}

TEST_CASE("stat_flags reads the kernel's flags word (PF_EXITING as a process exits)", "[process]") {
  using ipc::detail::stat_flags;
  CHECK(stat_flags("42 (cat) S 1 42 42 0 -1 4194560 120 0") == 4194560ul);
  CHECK(stat_flags("42 (a) b) R 1 42 42 0 -1 4194564 120") == 4194564ul);  // comm with ") ", PF_EXITING set
  CHECK(stat_flags("42 (cat) S 1 42 42 0 -1") == std::nullopt);          // cut short
  CHECK(stat_flags("42 (cat) S 1 42 42 0 -1 x") == std::nullopt);
  CHECK(stat_flags("") == std::nullopt);
}

TEST_CASE("process_dead: a reaped child is dead even when its stat file read came back empty",
          "[process][process_dead]") {
  Process p = Process::start([] { return 0; });
  const pid_t pid = p.pid();
  REQUIRE(wait_one(p.sentinel(), 30s).size() == 1);
  // A zombie counts as dead. (A life pipe, on a kernel without pidfds, hangs up as the child exits, a few
  // microseconds before it is a zombie.)
  CHECK(ipc::test::wait_until([pid] { return ipc::process_dead(static_cast<uint32_t>(pid)); }, 30s));
  REQUIRE(p.join() == 0);
  // The read raced with the reaping: empty, cut short, or no file at all.
  CHECK(ipc::detail::dead_from_stat(pid, ""));
  CHECK(ipc::detail::dead_from_stat(pid, "4242 (worker"));
  CHECK(ipc::detail::dead_from_stat(pid, std::nullopt));
  CHECK(ipc::process_dead(static_cast<uint32_t>(pid)));
  // A live process is never declared dead for want of a readable stat file.
  CHECK_FALSE(ipc::detail::dead_from_stat(::getpid(), ""));
  CHECK_FALSE(ipc::detail::dead_from_stat(::getpid(), std::nullopt));
  CHECK(ipc::detail::dead_from_stat(::getpid(), "1 (x) Z 0"));
  // A zombie main thread with other threads left (num_threads, field 20) is not dead yet; with none it is.
  const std::string zombie = "1 (x) Z 0 1 1 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 ";
  CHECK_FALSE(ipc::detail::dead_from_stat(::getpid(), zombie + "3 0 100"));
  CHECK(ipc::detail::dead_from_stat(::getpid(), zombie + "1 0 100"));
  CHECK_FALSE(ipc::process_dead(static_cast<uint32_t>(::getpid())));
  CHECK_FALSE(ipc::process_dead(0));
}

TEST_CASE("cgroup CPU quotas are read from cpu.max and from the v1 cfs files", "[process][cpu_count]") {
  using ipc::detail::cpus_from_cfs;
  using ipc::detail::cpus_from_cpu_max;
  CHECK(cpus_from_cpu_max("max 100000") == std::nullopt);
  CHECK(cpus_from_cpu_max("150000 100000\n") == 2u);
  CHECK(cpus_from_cpu_max("50000 100000") == 1u);
  CHECK(cpus_from_cpu_max("400000 100000") == 4u);
  CHECK(cpus_from_cpu_max("") == std::nullopt);
  CHECK(cpus_from_cpu_max("100 0") == std::nullopt);
  CHECK(cpus_from_cfs("-1\n", "100000\n") == std::nullopt);
  CHECK(cpus_from_cfs("250000\n", "100000\n") == 3u);
}

TEST_CASE("the cgroup CPU limit is the smallest up the tree, over v2 and v1", "[process][cpu_count]") {
  std::map<std::string, std::string> files;
  auto read = [&](const std::string& path) -> std::optional<std::string> {
    auto it = files.find(path);
    return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  const std::string v2_mount = "30 22 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
  const std::string v1_mount =
      "31 30 0:28 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n";

  files["/sys/fs/cgroup/user.slice/job/cpu.max"] = "max 100000\n";
  files["/sys/fs/cgroup/user.slice/cpu.max"] = "150000 100000\n";
  CHECK(ipc::detail::cgroup_cpu_limit("0::/user.slice/job\n", v2_mount, read) == 2u);
  files["/sys/fs/cgroup/cpu.max"] = "50000 100000\n";
  CHECK(ipc::detail::cgroup_cpu_limit("0::/user.slice/job\n", v2_mount, read) == 1u);
  CHECK(ipc::detail::cgroup_cpu_limit("0::/\n", v2_mount + v1_mount, read) == 1u);
  files.clear();
  CHECK(ipc::detail::cgroup_cpu_limit("0::/user.slice/job\n", v2_mount, read) == std::nullopt);

  // v1: the mount's root is this process's cgroup (a container without a cgroup namespace).
  const std::string v1_cgroup = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";
  files["/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"] = "-1\n";
  files["/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"] = "100000\n";
  CHECK(ipc::detail::cgroup_cpu_limit(v1_cgroup, v2_mount + v1_mount, read) == std::nullopt);
  files["/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"] = "300000\n";
  CHECK(ipc::detail::cgroup_cpu_limit(v1_cgroup, v2_mount + v1_mount, read) == 3u);
  files["/sys/fs/cgroup/cpu.max"] = "200000 100000\n";  // v2 root, tighter
  CHECK(ipc::detail::cgroup_cpu_limit(v1_cgroup, v2_mount + v1_mount, read) == 2u);
}

TEST_CASE("cpu_count is the affinity count, capped by the cgroup quota", "[process][cpu_count]") {
  cpu_set_t set;
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  const unsigned affinity = static_cast<unsigned>(CPU_COUNT(&set));
  if (const auto quota = ipc::detail::cgroup_cpu_limit()) {
    CHECK(ipc::cpu_count() == std::max(1u, std::min(affinity, *quota)));
  } else {
    CHECK(ipc::cpu_count() == affinity);
  }
  // A child pinned to one CPU may use one.
  Process pinned = Process::start([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    if (::sched_getaffinity(0, sizeof one, &one) != 0) return 3;
    int first = 0;
    while (!CPU_ISSET(first, &one)) ++first;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (::sched_setaffinity(0, sizeof one, &one) != 0) return 2;
    return ipc::cpu_count() == 1 ? 0 : 1;
  });
  CHECK(pinned.join(30s) == 0);
}

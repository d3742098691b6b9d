// ipc/base/process.h: child processes, Python's multiprocessing.Process for C++.
//
//   ipc::Process p = ipc::Process::start([&] { return work(); });   // forks; int -> exit code, void -> 0
//   std::optional<int> code = p.join(std::chrono::seconds(5));        // nullopt: still running after 5 s
//   ipc::Process sh = ipc::Process::exec("/bin/sh", {"sh", "-c", "exit 7"});
//   auto ready = ipc::wait(std::array{p.sentinel(), sh.sentinel()}, std::chrono::seconds(1));  // poll.h
//
// Threads: a Process handle is used by one thread at a time (move it to hand it over); separate handles may be
//   used by separate threads at once. current_process(), parent_process(), active_children(), cpu_count(),
//   process_dead() and wait() are thread-safe. Everything the child did before it ended happens before the
//   join() or is_alive() that reports its end.
// Processes: start() forks. In a program with several threads the child holds only the thread that called
//   start(), and a lock another thread held at that moment stays locked in the child: the usual fork hazard (see
//   docs/process.md). A handle belongs to the process that started the child; a copy inherited by a forked child
//   is inert (its destructor only closes descriptors, other calls throw StateError).
// Lifetime: the child leaves with _exit: it never returns into the caller's code and never runs the parent's
//   atexit handlers or static destructors. ~Process() of a child that still runs kills it (SIGKILL) and reaps it,
//   so no child outlives its handle unnoticed and none is left a zombie: join() first to let it finish. A daemon
//   child also dies with its parent, even when the parent is SIGKILLed. Reaping is this handle's job: a
//   waitpid(-1) elsewhere or SIGCHLD set to SIG_IGN steals the exit status (join then throws SystemError ECHILD).
// Kernels: children are watched through pidfds where the kernel has pidfd_open(2) and waitid(P_PIDFD) (Linux
//   >= 5.4). Where it refuses either (an older kernel, a seccomp filter, valgrind 3.19), start() and exec() watch
//   the child through a pipe whose only write end the child holds, as Python's multiprocessing does: the sentinel
//   hangs up when the child ends, signals and waitid() go by pid (still the child's until this handle reaps it).
//   A program run by exec() gets the write end's number in its environment (IPC_PROCESS_LIFE_FD), which
//   ipc::init() takes; another program that starts children of its own hands them that write end, so its end is
//   seen once theirs is too (docs/process.md). process_sentinel() and ParentProcess::sentinel() need pidfd_open(2)
//   (Linux >= 5.3) and throw Unsupported naming the release without it.
// Errors: fork, pidfd and wait failures throw SystemError, exec failures too (with the child's errno); bad
//   arguments throw InvalidArgument; a join that times out returns nullopt.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "ipc/base/poll.h"

namespace ipc {

struct ProcessOptions {
  // Empty: "Process-<n>", n counting the children this process started ("Process-2:1" for the first child of
  // Process-2, as in Python).
  std::string name{};
  // true: the child is killed (SIGKILL) when its parent exits, also when the parent is SIGKILLed (the kernel's
  // parent-death signal, armed before the child runs anything). The parent-death signal follows the *thread*
  // that called start(): start daemons from a thread that lives as long as they should.
  bool daemon = false;
  // exec() only: descriptors that stay open in the program (their close-on-exec flag is cleared in the child
  // only), as Python's subprocess pass_fds. A fork (start()) inherits every descriptor anyway.
  std::vector<int> pass_fds{};
};

// What escaped the child's callable, as reported to the parent.
struct ChildException {
  std::string type_name;  // demangled dynamic type: "std::runtime_error"
  std::string message;    // what(), empty for a type not derived from std::exception; cut at about 3.5 KiB
};

class Process {
 public:
  // Forks; the child runs fn() and leaves with _exit: exit code 0 when fn returns void, its result when it
  // returns an int (the kernel keeps the low 8 bits), 1 when it throws, after sending the exception's type and
  // message to the parent (exception()). The child flushes stdio before it leaves. Any thread.
  template <typename F>
    requires std::invocable<F&>
  static Process start(F&& fn, ProcessOptions options = {}) {
    using R = std::invoke_result_t<F&>;
    static_assert(std::is_void_v<R> || std::is_convertible_v<R, int>, "the child's callable returns void or an int");
    ChildBody body = [](void* f) -> int {
      auto& callable = *static_cast<std::remove_reference_t<F>*>(f);
      if constexpr (std::is_void_v<R>) {
        std::invoke(callable);
        return 0;
      } else {
        return static_cast<int>(std::invoke(callable));
      }
    };
    return start_child(body, const_cast<void*>(static_cast<const void*>(std::addressof(fn))), std::move(options));
  }

  // Starts `program` (searched in PATH like execvp) in a child made by vfork(), which copies nothing of this
  // process, with argument vector `args`: args[0] is the program's name for itself ("sh"); empty args means
  // {program}. The program gets the calling thread's signal mask and ignored signals. Returns once it runs. Throws InvalidArgument for
  // an empty program, SystemError with the child's errno when exec fails (ENOENT: no such program), never a
  // silent exit status 127. Any thread.
  static Process exec(const std::string& program, const std::vector<std::string>& args, ProcessOptions options = {});

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;  // kills and reaps the child it held, like the destructor
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Kills (SIGKILL) and reaps a child that still runs; closes the sentinel.
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  bool daemon() const { return daemon_; }

  // Whether the child still runs; reaps it if it ended.
  bool is_alive();
  // Waits for the child to end and reaps it; returns exitcode(), or nullopt when the timeout passed first (the
  // child keeps running). Returns at once once reaped. No CPU while waiting (poll on the sentinel).
  [[nodiscard]] std::optional<int> join(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // The exit status, or minus the signal that killed it (-9 after kill()); nullopt until join() or is_alive()
  // saw the end.
  std::optional<int> exitcode() const { return exitcode_; }
  // SIGTERM, SIGKILL, or any signal. Nothing once the child is reaped. Signals go through the pidfd, or by pid
  // before the child is reaped, so they cannot reach another process that reused the pid.
  void terminate();
  void kill();
  void send_signal(int signal);
  // Ready once the child ended, for wait() beside other descriptors: a pidfd (readable), or where the kernel has
  // none the read end of the child's life pipe (hung up, POLLHUP). Valid while the handle lives; do not close it.
  int sentinel() const { return sentinel_; }
  // What escaped the child's callable; set once join() or is_alive() saw the end of a child that threw.
  const std::optional<ChildException>& exception() const { return exception_; }

 private:
  using ChildBody = int (*)(void*);
  static Process start_child(ChildBody body, void* fn, ProcessOptions options);
  // Takes a child just forked: watches it through `life_read_end`, or through a pidfd it opens when that is -1,
  // and lists it in active_children().
  Process(pid_t pid, int life_read_end, ProcessOptions options);
  void check_usable(const char* what) const;
  int wait_for_child(siginfo_t& info, int flags) const;  // waitid() through the pidfd or by pid
  // Collects the exit status (waits for it when `block`); false when the child still runs.
  bool reap(bool block);
  bool reap_after_hang_up();
  std::optional<int> join_after_hang_up(const Deadline& deadline);
  void read_report();
  void release() noexcept;

  pid_t pid_ = -1;
  pid_t owner_ = -1;    // the process that started the child; the handle is inert elsewhere
  int sentinel_ = -1;    // a pidfd, or the life pipe's read end
  bool by_pidfd_ = true;
  int report_fd_ = -1;  // read end of the child's exception report pipe (start() only)
  std::string name_;
  bool daemon_ = false;
  std::optional<int> exitcode_;
  std::optional<ChildException> exception_;
};

struct ProcessInfo {
  pid_t pid;
  std::string name{};  // "MainProcess", or in a child started by Process its name
};
// This process. Any thread.
ProcessInfo current_process();

// The process that started this one, as Python's multiprocessing.parent_process() gives it.
struct ParentProcess {
  pid_t pid = 0;
  std::string name{};  // its current_process().name when it started this one
  // Whether it still runs: false from the moment it ends, before anyone reaps it. Never throws.
  bool is_alive() const noexcept;
  // A descriptor that becomes readable when it ends (at once if it has ended), for wait() (poll.h): a worker can
  // wait for its work and for its parent's end together. The caller closes it. Throws SystemError, and Unsupported
  // as process_sentinel() does.
  int sentinel() const;

  // The parent in the kernel's process tree (getppid() tells whether it still runs); false for a fork-server
  // worker, whose parent_process() is the program that made its pool, two generations up.
  bool direct = true;
};
// Who started this process:
//   - in a child of Process::start(), the process that called it;
//   - in a Pool's worker, the process that made the pool's workers, for every start method (for
//     StartMethod::kForkServer the program, not the fork server in between; for kExec the process that exec'd it);
//   - nullopt in the main process, in a program run by Process::exec() (it starts afresh), and in a child forked
//     by other means than these.
// Any thread.
std::optional<ParentProcess> parent_process();

// The children started through Process by this process that still run (ended ones are left out even before they
// are reaped). Empty in a freshly forked child: its parent's children are not its own. Any thread.
std::vector<pid_t> active_children();

// CPUs this process may use: its affinity mask (sched_getaffinity), capped by the CPU quota of its cgroups (v2
// cpu.max, v1 cfs quota: ceil(quota / period)), at least 1. Any thread. Throws SystemError.
unsigned cpu_count();

// A pidfd for any process `pid`: readable once it ends, for wait(). The caller closes it. Throws SystemError
// (ESRCH: no such process), Unsupported on a kernel without pidfd_open(2).
int process_sentinel(pid_t pid);

// True only when `pid` certainly no longer runs: no such process, or a zombie waiting to be reaped with no thread left
// (a killed process stays a zombie until its parent reaps it, and it will never finish what it started; a main thread
// that called pthread_exit() is a zombie too, but while other threads of it run it is alive). pid 0 is "nobody yet" and
// counts as alive. A pid reused by a new process looks alive until that process ends. When liveness cannot be decided
// the process counts as alive (the safe answer: nobody reclaims what a live process may still hold); an unreadable or
// cut-short /proc entry is decided by asking the kernel again. Any thread; never throws.
bool process_dead(uint32_t pid) noexcept;

}  // namespace ipc

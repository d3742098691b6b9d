#include "ipc/base/process.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>

#include "ipc/base/detail/proc_files.h"
#include "ipc/base/error.h"
#include "ipc/base/process_identity.h"

namespace ipc {

namespace {

// ---- process-wide state -------------------------------------------------------------------------------------

// How this process watches a child: by pidfd (Linux >= 5.4), signalled and reaped through it, so nothing can
// reach a process that reused the pid; or, where pidfd_open(2) or waitid(P_PIDFD) is refused (older kernels),
// through its life pipe: the read end of a pipe whose only write end the child holds, which hangs up when the
// child ends, as Python's multiprocessing sentinels do; signals and waitid() then go by pid, which stays the
// child's until this process reaps it.
struct Child {
  pid_t pid;
  int sentinel;  // a pidfd, or the life pipe's read end
  bool by_pidfd;
  bool daemon;
};

// The children this process started and has not reaped, and the write ends of report pipes between their
// creation and the parent's close after fork(). One mutex guards both; the fork handlers below hold it across
// every fork() of the process, so a child never inherits it locked or the lists half-changed.
struct Registry {
  std::mutex mu;
  std::vector<Child> children;
  std::vector<int> open_write_ends;
};

// Never destroyed: the atexit handler and forks late in exit() still use it.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

// The pipe write ends (report, life) this thread is forking for: that child keeps them, every other child closes
// them.
thread_local int t_forking_for[2] = {-1, -1};
// In a child started by start(): the write end its exception report goes to, and where there are no pidfds the
// write end of its life pipe (its children close both).
int g_report_fd = -1;
int g_life_fd = -1;
// This process's name and identity ("" in the main process, "2:1" in the first child of Process-2), and how many
// children it started. Written only in a freshly forked child before it runs anything else.
std::string g_name;
std::string g_identity;
std::atomic<unsigned> g_started{0};
// parent_process(): set in a child of start() (fork_child) or by a pool worker's start; reset in every other fork.
std::optional<ParentProcess> g_parent;

void before_fork() { registry().mu.lock(); }
void after_fork_in_parent() { registry().mu.unlock(); }
// Runs in every child forked by this process (through Process or not): the parent's children are not its own, and
// the report pipes of other children being started at the same moment must not stay open in it (an exec()
// waiting for its pipe's end of file would wait for this child too).
void after_fork_in_child() {
  Registry& r = registry();
  for (int fd : r.open_write_ends) {
    if (fd != t_forking_for[0] && fd != t_forking_for[1]) ::close(fd);
  }
  r.open_write_ends.clear();
  r.children.clear();
  for (int* fd : {&g_report_fd, &g_life_fd}) {
    if (*fd >= 0) ::close(std::exchange(*fd, -1));
  }
  g_started.store(0, std::memory_order_relaxed);  // relaxed: this is the child's only thread
  g_parent.reset();  // fork_child() sets it again in a child of start(): a child forked otherwise has none
  r.mu.unlock();
}

void install_fork_handlers() {
  static const int rc = pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
  if (rc != 0) throw SystemError(rc, "pthread_atfork");
}

// Sends `signal` to child `pid` watched through `sentinel`: 0, or -1 with errno set.
int signal_child(bool by_pidfd, int sentinel, pid_t pid, int signal) noexcept {
  if (by_pidfd) return static_cast<int>(::syscall(SYS_pidfd_send_signal, sentinel, signal, nullptr, 0));
  return ::kill(pid, signal);  // not reaped yet, so the pid is still the child's
}

// Normal exit of the parent: daemon children go first, before static destructors run. (A parent that dies
// otherwise takes them with it through the parent-death signal.)
void kill_daemon_children() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (const Child& c : r.children) {
    if (c.daemon) signal_child(c.by_pidfd, c.sentinel, c.pid, SIGKILL);
  }
}

void install_daemon_exit_handler() {
  static const int rc = std::atexit(kill_daemon_children);
  if (rc != 0) throw Error("atexit: cannot register the handler that kills daemon children");
}

void add_child(const Child& c) {
  std::lock_guard lock(registry().mu);
  registry().children.push_back(c);
}

void remove_child(pid_t pid) noexcept {
  std::lock_guard lock(registry().mu);
  std::erase_if(registry().children, [pid](const Child& c) { return c.pid == pid; });
}

// A report pipe (read end, write end) whose write end every other fork of this process closes in its child. Made
// and closed under the registry's mutex, which every fork() holds: no fork sees the pipe half-registered.
struct ReportPipe {
  int read_end = -1;
  int write_end = -1;

  explicit ReportPipe(int flags) {
    install_fork_handlers();  // before the pipe exists: every fork from now on closes it in its child
    int fds[2];
    std::lock_guard lock(registry().mu);
    if (::pipe2(fds, O_CLOEXEC | flags) != 0) throw_errno("pipe2 (child report)");
    read_end = fds[0];
    write_end = fds[1];
    registry().open_write_ends.push_back(write_end);
  }
  // Parent, after fork: closes its copy of the write end (the child's copy is the only one left).
  void close_write_end() noexcept {
    if (write_end < 0) return;
    std::lock_guard lock(registry().mu);
    std::erase(registry().open_write_ends, write_end);
    ::close(write_end);
    write_end = -1;
  }
  int take_read_end() noexcept { return std::exchange(read_end, -1); }
  ~ReportPipe() {
    close_write_end();
    if (read_end >= 0) ::close(read_end);
  }
};

// Marks the write ends this thread's next fork (or a fork()ing vfork) keeps in its child; forget_forking_for()
// after it.
void keep_in_next_fork(const ReportPipe& report, const std::optional<ReportPipe>& life) {
  t_forking_for[0] = report.write_end;
  t_forking_for[1] = life ? life->write_end : -1;
}
void forget_forking_for() { t_forking_for[0] = t_forking_for[1] = -1; }

// fork() with the pipes' write ends kept only in this child. Flushes stdio first so that the child does not
// inherit, and print a second time, output the parent has buffered.
pid_t fork_keeping(const ReportPipe& report, const std::optional<ReportPipe>& life) {
  std::fflush(nullptr);
  keep_in_next_fork(report, life);
  const pid_t pid = ::fork();
  forget_forking_for();
  return pid;
}

// Child, first thing for a daemon: die with the parent. The signal is armed only now, so the parent may already
// be gone: then the child was reparented and dies at once, as if the signal had come.
void arm_parent_death(pid_t parent) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::raise(SIGKILL);
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

// The exception report: [type length: 2 bytes][type][message], in one write of at most PIPE_BUF bytes, which
// neither blocks on the empty pipe (whatever its capacity) nor arrives in pieces.
constexpr size_t kReportBytes = PIPE_BUF;
constexpr size_t kMaxTypeBytes = 512;

void report_exception(const std::string& type, const char* message) noexcept {
  if (g_report_fd < 0) return;
  char buf[kReportBytes];
  const uint16_t type_len = static_cast<uint16_t>(std::min(type.size(), kMaxTypeBytes));
  std::memcpy(buf, &type_len, sizeof type_len);
  std::memcpy(buf + sizeof type_len, type.data(), type_len);
  const size_t head = sizeof type_len + type_len;
  const size_t message_len = std::min(std::strlen(message), kReportBytes - head);
  std::memcpy(buf + head, message, message_len);
  [[maybe_unused]] ssize_t n = retry_on_eintr([&] { return ::write(g_report_fd, buf, head + message_len); });
}

// no_sanitize("undefined"): pthread_exit()'s forced unwinding carries no C++ object, so the reference its handler
// binds is null (UBSan reports the binding); the handler only stops the unwinding, never reading it.
[[noreturn]] __attribute__((no_sanitize("undefined"))) void run_child(int (*body)(void*), void* fn, int report_fd,
                                                                     int life_fd, const std::string& name,
                                                                     const std::string& identity) {
  g_report_fd = report_fd;
  g_life_fd = life_fd;
  g_name = name;
  g_identity = identity;
  int code = 1;
  try {
    code = body(fn);
  } catch (const abi::__forced_unwind&) {
    // pthread_exit() in the callable. The unwinding stops here, so that it never runs the caller's frames this
    // child copied; only this thread ends (exit(2), not exit_group): the process lives on in its other threads,
    // and ends with the last of them, as after pthread_exit() in main().
    std::fflush(nullptr);
    ::syscall(SYS_exit, 0);
  } catch (const std::exception& e) {
    report_exception(demangle(typeid(e).name()), e.what());
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    report_exception(t ? demangle(t->name()) : std::string("unknown"), "");
  }
  // _exit skips the stdio flush exit() would do; the child's own output must not be lost.
  std::fflush(nullptr);
  ::_exit(code);
}

// refused_call_reason() for the running kernel's release.
std::string refused_because(int major, int minor) {
  utsname u{};
  return detail::refused_call_reason(::uname(&u) == 0 ? u.release : "", major, minor);
}

// Whether a failed call's errno means the kernel refused it: ENOSYS from a kernel that lacks it, or from a seccomp
// filter; EPERM from a container runtime's filter that does not know the call (Docker before 20.10).
bool refused(int err) { return err == ENOSYS || err == EPERM; }

// A failed pidfd_open(2) (`err`) of `what`: Unsupported when the call is refused, as for every missing kernel
// feature; else SystemError.
[[noreturn]] void throw_pidfd_open_failed(int err, const std::string& what) {
  if (refused(err)) {
    throw Unsupported(what + ": processes are watched through pidfds, which need pidfd_open(2) (Linux >= 5.3); " +
                      refused_because(5, 3));
  }
  throw SystemError(err, what);
}

// Whether this process watches its children by pidfd (else through life pipes: see Child): asked of the kernel
// once per process (a fork()ed child asks again, since a seccomp filter may refuse in it what its parent had).
// Throws SystemError when the question cannot be put.
bool children_have_pidfds() {
  static std::atomic<pid_t> asked_in{0};
  static std::atomic<bool> answer{true};
  const pid_t self = ::getpid();
  if (asked_in.load(std::memory_order_acquire) == self) return answer.load(std::memory_order_relaxed);
  bool pidfds = false;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, self, 0));
  if (fd < 0 && !refused(errno)) throw_errno("pidfd_open (of this process, to learn whether the kernel has it)");
  if (fd >= 0) {
    // This process is not its own child: ECHILD where waitid(P_PIDFD) exists (Linux 5.4), EINVAL before.
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(fd), &info, WEXITED | WNOHANG) != 0 && errno == ECHILD) {
      pidfds = true;
    }
    ::close(fd);
  }
  answer.store(pidfds, std::memory_order_relaxed);
  asked_in.store(self, std::memory_order_release);  // pairs with the acquire above: `answer` is read after it
  return pidfds;
}

// The start of /proc/PID/stat read into `buf` (its first 512 bytes reach past num_threads), or nullopt when it
// cannot be opened or read.
std::optional<std::string_view> read_proc_stat(uint32_t pid, std::array<char, 512>& buf) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  const ssize_t n = retry_on_eintr([&] { return ::read(fd, buf.data(), buf.size()); });
  ::close(fd);
  if (n < 0) return std::nullopt;
  return std::string_view(buf.data(), static_cast<size_t>(n));
}

// Whether child `pid` has begun to exit (PF_EXITING in its /proc/PID/stat flags: set before its descriptors close,
// a few microseconds before it can be reaped). False when that cannot be read.
bool begun_to_exit(pid_t pid) {
  constexpr unsigned long kPfExiting = 0x4;
  std::array<char, 512> buf;
  const std::optional<std::string_view> stat = read_proc_stat(static_cast<uint32_t>(pid), buf);
  const std::optional<unsigned long> flags = stat ? detail::stat_flags(*stat) : std::nullopt;
  return flags && (*flags & kPfExiting) != 0;
}

// pidfd_open for a child just forked; on failure the child is killed and reaped before the error is thrown.
int open_child_pidfd(pid_t pid, const std::string& name) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) return fd;
  const int err = errno;
  ::kill(pid, SIGKILL);
  retry_on_eintr([&] { return ::waitpid(pid, nullptr, 0); });
  throw_pidfd_open_failed(err, "pidfd_open " + name);
}

// Names the child (options.name, when empty) and arms the exit handler of daemon children; returns the child's
// identity ("2:1").
std::string prepare_child(ProcessOptions& options) {
  if (options.daemon) install_daemon_exit_handler();
  const unsigned n = g_started.fetch_add(1, std::memory_order_relaxed) + 1;  // relaxed: only a counter
  const std::string identity = (g_identity.empty() ? "" : g_identity + ":") + std::to_string(n);
  if (options.name.empty()) options.name = "Process-" + identity;
  return identity;
}

// Forks, and in the child arms the parent-death signal of a daemon and runs `in_child(identity)`, which never
// returns. Returns the child's pid in the parent.
template <typename InChild>
pid_t fork_child(ProcessOptions& options, ReportPipe& report, std::optional<ReportPipe>& life, InChild&& in_child) {
  const std::string identity = prepare_child(options);
  const pid_t parent = ::getpid();
  std::string parent_name = current_process().name;
  const pid_t pid = fork_keeping(report, life);
  if (pid == 0) {
    ::close(report.read_end);
    if (life) ::close(life->read_end);
    if (options.daemon) arm_parent_death(parent);
    g_parent = ParentProcess{parent, std::move(parent_name), true};
    in_child(identity);
  }
  const int fork_errno = errno;
  report.close_write_end();
  if (life) life->close_write_end();
  if (pid < 0) throw SystemError(fork_errno, "fork " + options.name);
  return pid;
}

// Everything an exec'd child needs, made before vfork(): the child only makes system calls.
struct ExecPlan {
  const char* program;
  char* const* argv;
  const int* pass_fds;
  size_t pass_fd_count;
  bool daemon;
  pid_t parent;
  const sigset_t* mask;  // the parent thread's signal mask, for the program
  int report_fd;         // gets the child's errno when it cannot exec
  int life_fd;           // without pidfds: the life pipe's write end, which the program keeps; else -1
  char* const* envp;     // with life_fd: the environment naming it (kLifeFdVariable); else nullptr (environ)
};

// The environment variable through which exec() tells the program the number of its life pipe's write end, so
// that a program of this library can keep it from its own children (adopt_life_pipe()).
constexpr char kLifeFdVariable[] = "IPC_PROCESS_LIFE_FD";

// This process's environment without kLifeFdVariable, plus kLifeFdVariable=`fd`: the strings in `storage`.
std::vector<char*> environment_naming_life_fd(int fd, std::vector<std::string>& storage) {
  const std::string prefix = std::string(kLifeFdVariable) + "=";
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) storage.emplace_back(*e);
  }
  storage.push_back(prefix + std::to_string(fd));
  std::vector<char*> envp;
  for (std::string& v : storage) envp.push_back(v.data());
  envp.push_back(nullptr);
  return envp;
}

// The child of exec()'s vfork(): it borrows the parent's memory (and stack, below the parent's frame) until its
// execvp() or _exit(), so it calls only functions that make system calls, and nothing that locks or allocates.
// The parent's signal handlers would run here on the parent's memory: they are reset to the default first (this
// child has its own copy of the table), while every signal is still blocked.
[[noreturn]] __attribute__((noinline)) void exec_in_child(const ExecPlan& plan) {
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action;
    if (::sigaction(sig, nullptr, &action) != 0) continue;  // EINVAL: a number glibc keeps for itself
    if (action.sa_handler == SIG_IGN || action.sa_handler == SIG_DFL) continue;
    action.sa_handler = SIG_DFL;
    action.sa_flags = 0;
    ::sigemptyset(&action.sa_mask);
    ::sigaction(sig, &action, nullptr);
  }
  if (plan.daemon) arm_parent_death(plan.parent);
  int err = 0;
  for (size_t i = 0; i < plan.pass_fd_count && err == 0; ++i) {
    if (::fcntl(plan.pass_fds[i], F_SETFD, 0) != 0) err = errno;
  }
  if (err == 0 && plan.life_fd >= 0 && ::fcntl(plan.life_fd, F_SETFD, 0) != 0) err = errno;
  if (err == 0) {
    ::pthread_sigmask(SIG_SETMASK, plan.mask, nullptr);
    if (plan.envp) {
      ::execvpe(plan.program, plan.argv, plan.envp);
    } else {
      ::execvp(plan.program, plan.argv);
    }
    err = errno;
  }
  [[maybe_unused]] ssize_t w = ::write(plan.report_fd, &err, sizeof err);
  ::_exit(127);
}

}  // namespace

// ---- Process --------------------------------------------------------------------------------------------------

Process::Process(pid_t pid, int life_read_end, ProcessOptions options)
    : pid_(pid),
      owner_(::getpid()),
      sentinel_(life_read_end >= 0 ? life_read_end : open_child_pidfd(pid, options.name)),
      by_pidfd_(life_read_end < 0),
      name_(std::move(options.name)),
      daemon_(options.daemon) {
  add_child({pid_, sentinel_, by_pidfd_, daemon_});
}

Process Process::start_child(ChildBody body, void* fn, ProcessOptions options) {
  ReportPipe report(O_NONBLOCK);
  std::optional<ReportPipe> life;
  if (!children_have_pidfds()) life.emplace(0);
  const pid_t pid = fork_child(options, report, life, [&](const std::string& identity) {
    run_child(body, fn, report.write_end, life ? life->write_end : -1, options.name, identity);
  });
  Process p(pid, life ? life->take_read_end() : -1, std::move(options));
  p.report_fd_ = report.take_read_end();
  return p;
}

Process Process::exec(const std::string& program, const std::vector<std::string>& args, ProcessOptions options) {
  if (program.empty()) throw InvalidArgument("Process::exec: empty program name");
  std::vector<std::string> argv_strings = args.empty() ? std::vector<std::string>{program} : args;
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  prepare_child(options);

  // vfork(): the child shares this process's memory until it execs, so starting it copies no page tables and
  // takes no copy-on-write faults, however large this process is (a fork of a big program costs milliseconds).
  // This thread waits meanwhile. Blocking: the report pipe is read until end of file, which the exec closes
  // (O_CLOEXEC), or the child's errno. (Under ThreadSanitizer vfork() is a fork(), which the pipe also covers.)
  ReportPipe report(0);
  std::optional<ReportPipe> life;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  if (!children_have_pidfds()) {
    life.emplace(0);
    envp = environment_naming_life_fd(life->write_end, env_storage);
  }
  sigset_t all, mask;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &mask);
  const ExecPlan plan{program.c_str(), argv.data(), options.pass_fds.data(), options.pass_fds.size(),
                      options.daemon,    ::getpid(),  &mask,                   report.write_end,
                      life ? life->write_end : -1,  life ? envp.data() : nullptr};
  keep_in_next_fork(report, life);  // a fork()ing vfork (above) keeps these pipes in the child
  const pid_t pid = ::vfork();
  if (pid == 0) exec_in_child(plan);
  const int fork_errno = errno;
  forget_forking_for();
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  report.close_write_end();
  if (life) life->close_write_end();
  if (pid < 0) throw SystemError(fork_errno, "vfork " + options.name);
  Process p(pid, life ? life->take_read_end() : -1, std::move(options));
  int child_errno = 0;
  const ssize_t got = retry_on_eintr([&] { return ::read(report.read_end, &child_errno, sizeof child_errno); });
  if (got < 0) throw_errno("read exec report of " + p.name_);  // ~Process kills and reaps the child
  if (got == sizeof child_errno) {
    (void)p.join();  // the child leaves with 127 right after its report
    throw SystemError(child_errno, "exec " + program);
  }
  return p;
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      owner_(std::exchange(other.owner_, -1)),
      sentinel_(std::exchange(other.sentinel_, -1)),
      by_pidfd_(other.by_pidfd_),
      report_fd_(std::exchange(other.report_fd_, -1)),
      name_(std::move(other.name_)),
      daemon_(other.daemon_),
      exitcode_(std::exchange(other.exitcode_, std::nullopt)),
      exception_(std::exchange(other.exception_, std::nullopt)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    owner_ = std::exchange(other.owner_, -1);
    sentinel_ = std::exchange(other.sentinel_, -1);
    by_pidfd_ = other.by_pidfd_;
    report_fd_ = std::exchange(other.report_fd_, -1);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    exitcode_ = std::exchange(other.exitcode_, std::nullopt);
    exception_ = std::exchange(other.exception_, std::nullopt);
  }
  return *this;
}

Process::~Process() { release(); }

void Process::release() noexcept {
  if (pid_ > 0 && owner_ == ::getpid() && !exitcode_) {
    signal_child(by_pidfd_, sentinel_, pid_, SIGKILL);
    siginfo_t info{};
    retry_on_eintr([&] { return wait_for_child(info, WEXITED); });
    remove_child(pid_);
  }
  if (sentinel_ >= 0) ::close(sentinel_);
  if (report_fd_ >= 0) ::close(report_fd_);
  pid_ = -1;
  sentinel_ = -1;
  report_fd_ = -1;
}

int Process::wait_for_child(siginfo_t& info, int flags) const {
  if (by_pidfd_) return ::waitid(P_PIDFD, static_cast<id_t>(sentinel_), &info, flags);
  return ::waitid(P_PID, static_cast<id_t>(pid_), &info, flags);
}

void Process::check_usable(const char* what) const {
  if (pid_ <= 0) throw StateError(std::string("Process::") + what + ": no child (moved from)");
  if (owner_ != ::getpid()) {
    throw StateError(std::string("Process::") + what + ": " + name_ + " belongs to process " + std::to_string(owner_) +
                     ", not to this one");
  }
}

bool Process::reap(bool block) {
  siginfo_t info{};  // si_pid stays 0 when WNOHANG finds the child still running
  if (retry_on_eintr([&] { return wait_for_child(info, WEXITED | (block ? 0 : WNOHANG)); }) != 0) {
    const int err = errno;
    if (err == ECHILD) remove_child(pid_);
    if (err == EINVAL) {
      // waitid(P_PIDFD) refused after children_have_pidfds() found it (a seccomp filter installed since). The
      // child stays a zombie until this process exits.
      throw Unsupported("waitid " + name_ + ": reaping through a pidfd needs waitid(P_PIDFD) (Linux >= 5.4); " +
                        refused_because(5, 4));
    }
    throw SystemError(err, "waitid " + name_ +
                               (err == ECHILD ? " (reaped elsewhere: waitpid(-1) or SIGCHLD ignored?)" : ""));
  }
  if (info.si_pid == 0) return false;
  exitcode_ = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
  remove_child(pid_);
  read_report();
  return true;
}

// A life pipe hangs up when the last copy of its write end closes: as the child exits, a few microseconds before it
// can be reaped, or earlier when the child closed the descriptor itself (a program that closes every descriptor it
// did not open). Reaps the child, waiting through the first case (bounded, in case the main thread alone exited);
// false in the second.
bool Process::reap_after_hang_up() {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  while (!reap(false)) {
    if (!begun_to_exit(pid_) || std::chrono::steady_clock::now() > until) return false;
    ::sched_yield();
  }
  return true;
}

// join() after the life pipe hung up: when the child closed it before its end, waitid() is asked again after
// pauses that grow from 100 us to 10 ms, until the end or the deadline.
std::optional<int> Process::join_after_hang_up(const Deadline& deadline) {
  if (reap_after_hang_up()) return exitcode_;
  std::chrono::microseconds pause{100};
  while (!reap(false)) {
    const std::optional<Deadline::Clock::duration> left = deadline.remaining();
    if (left && *left <= Deadline::Clock::duration::zero()) return std::nullopt;
    std::this_thread::sleep_for(left ? std::min<Deadline::Clock::duration>(pause, *left) : pause);
    pause = std::min(pause * 2, std::chrono::microseconds{10'000});
  }
  return exitcode_;
}

void Process::read_report() {
  if (report_fd_ < 0) return;
  char buf[kReportBytes];
  // The child wrote its report in one write before it ended; the read end is non-blocking (a grandchild may
  // still hold a copy of the write end, so end of file is not awaited).
  const ssize_t n = retry_on_eintr([&] { return ::read(report_fd_, buf, sizeof buf); });
  ::close(report_fd_);
  report_fd_ = -1;
  uint16_t type_len = 0;
  if (n < static_cast<ssize_t>(sizeof type_len)) return;
  std::memcpy(&type_len, buf, sizeof type_len);
  const size_t head = sizeof type_len + type_len;
  if (static_cast<size_t>(n) < head) return;
  exception_ = ChildException{std::string(buf + sizeof type_len, type_len), std::string(buf + head, n - head)};
}

bool Process::is_alive() {
  if (exitcode_) return false;
  check_usable("is_alive");
  pollfd p{sentinel_, POLLIN, 0};
  if (retry_on_eintr([&] { return ::poll(&p, 1, 0); }) < 0) throw_errno("poll " + name_);
  if (p.revents == 0) return true;
  // A pidfd is readable once the child ended; a life pipe may hang up before (reap_after_hang_up()).
  return by_pidfd_ ? !reap(true) : !reap_after_hang_up();
}

std::optional<int> Process::join(std::optional<std::chrono::nanoseconds> timeout) {
  if (exitcode_) return exitcode_;
  check_usable("join");
  const Deadline deadline = Deadline::from(timeout);
  pollfd p{sentinel_, POLLIN, 0};
  while (poll_until(&p, 1, deadline) == 0) {
    if (deadline.expired()) return std::nullopt;
  }
  if (!by_pidfd_) return join_after_hang_up(deadline);
  reap(true);
  return exitcode_;
}

void Process::terminate() { send_signal(SIGTERM); }
void Process::kill() { send_signal(SIGKILL); }

void Process::send_signal(int signal) {
  check_usable("send_signal");
  if (exitcode_) return;
  // ESRCH: it ended meanwhile (a zombie still takes signals, so this is rare); the next join() sees the end.
  if (signal_child(by_pidfd_, sentinel_, pid_, signal) != 0 && errno != ESRCH) {
    throw_errno((by_pidfd_ ? "pidfd_send_signal " : "kill ") + std::to_string(signal) + " to " + name_);
  }
}

// ---- free functions ---------------------------------------------------------------------------------------------

ProcessInfo current_process() { return {::getpid(), g_name.empty() ? std::string("MainProcess") : g_name}; }

std::optional<ParentProcess> parent_process() { return g_parent; }

bool ParentProcess::is_alive() const noexcept {
  // A process that ends hands its children to init (or a subreaper) at once, before it is reaped.
  if (direct) return ::getppid() == pid;
  return !process_dead(static_cast<uint32_t>(pid));
}

int ParentProcess::sentinel() const {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0 && errno != ESRCH) throw_pidfd_open_failed(errno, "pidfd_open of the parent " + name);
  // Opened after the parent's end, the pid could name a newer process: the descriptor counts only while the
  // parent is still alive after it was opened.
  if (fd >= 0 && is_alive()) return fd;
  if (fd >= 0) ::close(fd);
  const int ended = ::eventfd(1, EFD_CLOEXEC);  // readable at once: the parent has ended
  if (ended < 0) throw_errno("eventfd (sentinel of an ended parent)");
  return ended;
}

namespace detail {

void set_process_name(std::string name) { g_name = std::move(name); }
void set_parent_process(ParentProcess parent) { g_parent = std::move(parent); }

void adopt_life_pipe() {
  const char* value = std::getenv(kLifeFdVariable);
  if (!value) return;
  char* end = nullptr;
  const long fd = std::strtol(value, &end, 10);
  ::unsetenv(kLifeFdVariable);  // this process's children are not its parent's to watch
  struct stat st{};
  // Only a pipe this process holds open is taken (a variable copied by hand, or one a parent left for a program
  // in between that did not take it, is dropped).
  if (end == value || *end != '\0' || fd < 0 || fd > INT_MAX || ::fstat(static_cast<int>(fd), &st) != 0 ||
      !S_ISFIFO(st.st_mode) || (::fcntl(static_cast<int>(fd), F_GETFL) & O_ACCMODE) != O_WRONLY) {
    return;
  }
  install_fork_handlers();
  ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);  // programs this one execs do not hold it either
  g_life_fd = static_cast<int>(fd);
}

}  // namespace detail

std::vector<pid_t> active_children() {
  std::lock_guard lock(registry().mu);
  std::vector<pid_t> live;
  for (const Child& c : registry().children) {
    pollfd p{c.sentinel, POLLIN, 0};
    if (retry_on_eintr([&] { return ::poll(&p, 1, 0); }) == 0) live.push_back(c.pid);
  }
  return live;
}

int process_sentinel(pid_t pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) throw_pidfd_open_failed(errno, "pidfd_open(" + std::to_string(pid) + ")");
  return fd;
}

unsigned cpu_count() {
  const unsigned allowed = detail::affinity_cpu_count();
  const std::optional<unsigned> quota = detail::cgroup_cpu_limit();
  return std::max(1u, quota ? std::min(allowed, *quota) : allowed);
}

bool process_dead(uint32_t pid) noexcept {
  if (pid == 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::array<char, 512> buf;
  return detail::dead_from_stat(static_cast<pid_t>(pid), read_proc_stat(pid, buf));
}

}  // namespace ipc

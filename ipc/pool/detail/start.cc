#include "ipc/pool/detail/start.h"

#include <cxxabi.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <tuple>
#include <typeinfo>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/base/process_identity.h"
#include "ipc/base/unix_socket.h"
#include "ipc/numa/scratch_arena.h"
#include "ipc/pool/worker.h"
#include "ipc/pool/detail/pool_core.h"
#include "ipc/shared/codec.h"

namespace ipc {
namespace detail {
namespace {

template <typename T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out(Codec<T>::encoded_size(value));
  Codec<T>::encode(value, out);
  return out;
}

// The type name and message of the exception being handled (inside a catch block).
std::pair<std::string, std::string> describe_current_exception() {
  std::string type = "unknown exception";
  if (const std::type_info* t = abi::__cxa_current_exception_type()) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
    type = status == 0 && demangled ? demangled : t->name();
    std::free(demangled);
  }
  std::string what;
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    // Not derived from std::exception: only the type name is known.
  }
  return {type, what};
}

// ---- descriptors over a SOCK_SEQPACKET socket ---------------------------------------------------------------

constexpr size_t kMaxPacketBytes = 64 * 1024;  // requests and reports are a few hundred bytes (messages cut at 3.5 KiB)

// Sends one packet with `fds` attached (the receiver gets its own copies). Throws SystemError (EPIPE: the peer is
// gone).
void send_packet(int sock, std::span<const std::byte> bytes, std::span<const int> fds = {}) {
  if (send_with_fds(sock, bytes, fds) < 0) throw_errno("sendmsg (pool worker start)");
}

// Receives one packet and the descriptors attached (close-on-exec). false: end of stream.
bool recv_packet(int sock, std::vector<std::byte>& bytes, std::vector<int>& fds) {
  bytes.resize(kMaxPacketBytes);
  fds.clear();
  bool truncated = false;
  const ssize_t n = recv_with_fds(sock, bytes, fds, truncated);
  if (n < 0) throw_errno("recvmsg (pool worker start)");
  bytes.resize(static_cast<size_t>(n));
  if (truncated) {
    for (int fd : fds) ::close(fd);
    throw StateError("pool worker start: a packet cut short");
  }
  return n > 0 || !fds.empty();
}

// ---- the worker side of the remote methods ------------------------------------------------------------------

using Setup = std::tuple<std::vector<std::string>, std::vector<int>, uint64_t, uint32_t, uint64_t, int32_t>;

// A worker started by the fork server or by exec: adopts its end of the pipe, reads its setup, runs the loop.
int remote_worker_main(const ConnectionHandoff& end) {
  Connection conn = Connection::adopt(end);
  std::vector<std::byte> in;
  if (conn.recv_bytes(in) != Outcome::kOk) return 0;  // the pool went away before it sent the setup
  auto [objects, cpus, initializer, max_tasks, scratch_bytes, scratch_node] = Codec<Setup>::decode(in);
  const CodeMap code(objects);
  WorkerSetup setup;
  setup.cpus = std::move(cpus);
  setup.max_tasks_per_child = max_tasks;
  setup.scratch_bytes = scratch_bytes;
  setup.scratch_node = scratch_node;
  if (initializer != 0) setup.initializer = reinterpret_cast<void (*)()>(code.address(initializer));
  return run_worker(conn, setup, &code);
}

// ---- handles --------------------------------------------------------------------------------------------------

class ProcessWorker : public WorkerHandle {
 public:
  explicit ProcessWorker(Process p) : p_(std::move(p)) {}
  int pid() const override { return p_.pid(); }
  int sentinel() const override { return p_.sentinel(); }
  void kill() override { p_.kill(); }
  int join() override { return p_.join().value_or(0); }
  std::optional<ChildException> exception() const override { return p_.exception(); }

 private:
  Process p_;  // its destructor kills and reaps
};

// A child of the fork server: signalled through the pidfd the server sent, its end reported on `status_fd`. Where
// the kernel has no pidfds the server sent the worker's life pipe (ipc/base/process.h), and a kill is asked of the
// server (a packet on `status_fd`): the server is the worker's parent and signals it before it reaps it, so the
// signal cannot reach another process that took the pid over, as a kill(2) by pid from here could.
class ServedWorker : public WorkerHandle {
 public:
  ServedWorker(pid_t pid, int exit_fd, int status_fd) : pid_(pid), exit_fd_(exit_fd), status_fd_(status_fd) {}
  ~ServedWorker() override {
    if (!code_) {
      kill();
      try {
        (void)join();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "ipc::Pool: worker %d: %s\n", pid_, e.what());
      }
    }
    ::close(exit_fd_);
    ::close(status_fd_);
  }
  int pid() const override { return pid_; }
  int sentinel() const override { return status_fd_; }
  int exit_fd() const override { return exit_fd_; }
  void kill() override {
    if (code_) return;
    if (::syscall(SYS_pidfd_send_signal, exit_fd_, SIGKILL, nullptr, 0) == 0 || errno == ESRCH) return;  // ESRCH: gone
    // Not a pidfd: the life pipe. The request fails (EPIPE, ECONNRESET) only once the server closed its end, after
    // it reported the worker's end: nothing left to kill.
    (void)::send(status_fd_, &kKillRequest, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  // What kill() sends the fork server on a kernel without pidfds (any one-byte packet would do).
  static constexpr char kKillRequest = 'k';
  int join() override {
    if (code_) return *code_;
    std::vector<std::byte> bytes;
    std::vector<int> fds;
    bool reported;
    try {
      reported = recv_packet(status_fd_, bytes, fds);
    } catch (const Error& e) {
      // The report cannot be read: the worker's end is not known, and nobody can tell any more. Called on the pool's
      // supervisor thread, which must go on: the worker counts as lost.
      code_ = -SIGKILL;
      exception_ = ChildException{"ipc::StateError", std::string("the fork server's report of this worker's end "
                                                                  "could not be read: ") + e.what()};
      return *code_;
    }
    if (!reported) {
      // The server died (and with it, by its parent-death signal, the worker).
      code_ = -SIGKILL;
      exception_ = ChildException{"ipc::StateError", "the fork server ended before it reported this worker's end"};
      return *code_;
    }
    for (int fd : fds) ::close(fd);
    auto [code, type, message] = Codec<std::tuple<int32_t, std::string, std::string>>::decode(bytes);
    code_ = code;
    if (!type.empty()) exception_ = ChildException{std::move(type), std::move(message)};
    return *code_;
  }
  std::optional<ChildException> exception() const override { return exception_; }

 private:
  pid_t pid_;
  int exit_fd_, status_fd_;  // exit_fd_: a pidfd, or the life pipe
  std::optional<int> code_;
  std::optional<ChildException> exception_;
};

// ---- the fork server ------------------------------------------------------------------------------------------

using Request = std::tuple<uint64_t, uint64_t, uint64_t, std::string>;  // memory bytes, in/out offsets, name
using Reply = std::tuple<int32_t, std::string>;                         // pid (-1: failed), error

struct ForkServerClient {
  pid_t owner = -1;  // the process that started the server; in its forks the server is not theirs
  int request_fd = -1;
  std::optional<Process> server;
};
std::mutex g_server_mu;
ForkServerClient& server_client() {
  static auto* client = new ForkServerClient();  // leaked: pools may run while static destructors do
  return *client;
}

// The server: single-threaded; requests and its children's ends, until the program closes its socket.
int serve(int requests) {
  struct Child {
    Process process;  // a daemon: it dies with the server
    int status_fd;
  };
  std::vector<Child> children;
  std::vector<std::byte> bytes;
  std::vector<int> fds;
  // The program that started this server: the parent its workers report (parent_process()), as the process that
  // asked for them, rather than this server in between.
  std::optional<ParentProcess> program = parent_process();
  if (program) program->direct = false;
  auto report = [](int status_fd, std::span<const std::byte> packet) {
    try {
      send_packet(status_fd, packet);
    } catch (const SystemError&) {
      // The pool is gone (its process ended): nobody to tell.
    }
  };
  for (;;) {
    // The requests, each child's end (its sentinel), and each child's status socket: a packet there from the pool
    // asks for the child's death (ServedWorker::kill() on a kernel without pidfds).
    std::vector<pollfd> polled{{requests, POLLIN, 0}};
    for (auto& c : children) polled.push_back({c.process.sentinel(), POLLIN, 0});
    for (auto& c : children) polled.push_back({c.status_fd, POLLIN, 0});
    if (retry_on_eintr([&] { return ::poll(polled.data(), polled.size(), -1); }) < 0) throw_errno("fork server: poll");
    const size_t kill_requests = 1 + children.size();
    for (size_t i = 0; i < children.size(); ++i) {
      if (polled[kill_requests + i].revents == 0) continue;
      std::byte request[1];
      // A packet, or the pool's end closed (its handle gone without a kill: the worker must not outlive it). Not
      // yet reaped, so the pid is still the child's.
      if (::recv(children[i].status_fd, request, sizeof request, MSG_DONTWAIT) >= 0 || errno != EAGAIN) {
        children[i].process.kill();
      }
    }
    for (size_t i = children.size(); i-- > 0;) {
      if (polled[i + 1].revents == 0) continue;
      Child& c = children[i];
      const int code = c.process.join().value_or(0);
      const auto& e = c.process.exception();
      report(c.status_fd, encode(std::tuple<int32_t, std::string, std::string>(code, e ? e->type_name : "",
                                                                              e ? e->message : "")));
      ::close(c.status_fd);
      children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (polled[0].revents == 0) continue;
    if (!recv_packet(requests, bytes, fds)) return 0;  // the program is gone or exiting; ~Process kills the workers
    if (fds.size() != 4) {
      for (int fd : fds) ::close(fd);
      continue;
    }
    const int status_fd = fds[3];
    try {
      auto [memory_bytes, in_offset, out_offset, name] = Codec<Request>::decode(bytes);
      const ConnectionHandoff end{fds[0], memory_bytes, fds[1], in_offset, fds[2], out_offset};
      ProcessOptions o;
      o.name = name;
      o.daemon = true;
      Process p = Process::start(
          [&] {
            ::close(requests);
            for (auto& c : children) ::close(c.status_fd);
            ::close(status_fd);
            if (program) detail::set_parent_process(*program);
            return remote_worker_main(end);
          },
          o);
      const int exit_fd = p.sentinel();  // a pidfd, or the life pipe (process.h)
      send_packet(status_fd, encode(Reply(p.pid(), "")), std::span<const int>(&exit_fd, 1));
      children.push_back({std::move(p), status_fd});
    } catch (const std::exception& e) {
      report(status_fd, encode(Reply(-1, e.what())));
      ::close(status_fd);
    }
    for (int i = 0; i < 3; ++i) ::close(fds[i]);  // the worker has its copies
  }
}

std::unique_ptr<WorkerHandle> start_served(const ConnectionHandoff& end, const std::string& name) {
  int status[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, status) != 0) throw_errno("socketpair (pool worker)");
  const int sent[4] = {end.memory_fd, end.in_fd, end.out_fd, status[1]};
  try {
    std::lock_guard lock(g_server_mu);
    send_packet(server_client().request_fd, encode(Request(end.memory_bytes, end.in_offset, end.out_offset, name)),
                sent);
  } catch (const SystemError& e) {
    ::close(status[0]);
    ::close(status[1]);
    throw SystemError(e.code(), "Pool: the fork server is gone (" + std::string(e.what()) + ")");
  }
  ::close(status[1]);
  std::vector<std::byte> bytes;
  std::vector<int> fds;
  try {
    if (!recv_packet(status[0], bytes, fds)) throw SystemError(EPIPE, "Pool: the fork server ended");
    auto [pid, error] = Codec<Reply>::decode(bytes);
    if (pid < 0 || fds.size() != 1) {
      throw SystemError(EAGAIN, "Pool: the fork server could not start a worker: " + error);
    }
    return std::make_unique<ServedWorker>(pid, fds[0], status[0]);
  } catch (...) {
    for (int fd : fds) ::close(fd);
    ::close(status[0]);
    throw;
  }
}

// ---- exec -----------------------------------------------------------------------------------------------------

// The running worker's scratch arena, for worker_scratch(): reserved by the first call, not at the worker's start,
// because most tasks never ask for one, and the reservation (a sysfs read for huge pages, an mmap and an madvise of
// 64 MiB, their unmapping at exit) would be paid by every worker of every pool.
struct WorkerScratch {
  uint64_t capacity = 0;  // 0: the pool has no arenas
  int node = -1;          // bind its pages to this node; -1: the process's policy
  std::optional<numa::ScratchArena> arena;
  bool announced = false;  // the pool was told where it lies (a Hello)
};
WorkerScratch* g_worker_scratch = nullptr;  // null outside workers
bool g_in_worker = false;

constexpr const char* kExecMarker = "--ipc-pool-worker";
std::atomic<bool> g_initialised{false};
std::string g_argv0 = "ipc-pool-worker";  // written by init() before any thread

std::string describe(const ConnectionHandoff& h) {
  std::ostringstream s;
  s << h.memory_fd << ':' << h.memory_bytes << ':' << h.in_fd << ':' << h.in_offset << ':' << h.out_fd << ':'
    << h.out_offset;
  return s.str();
}
ConnectionHandoff parse_handoff(const char* text) {
  ConnectionHandoff h;
  char tail = 0;
  if (std::sscanf(text, "%d:%" SCNu64 ":%d:%" SCNu64 ":%d:%" SCNu64 "%c", &h.memory_fd, &h.memory_bytes, &h.in_fd,
                  &h.in_offset, &h.out_fd, &h.out_offset, &tail) != 6) {
    throw InvalidArgument(std::string("pool worker: a malformed start argument \"") + text + "\"");
  }
  return h;
}

// The worker's arguments: the marker, its ends (describe()), then its name, and its parent's pid and name (for
// current_process() and parent_process() in the worker; init() reads them).
std::unique_ptr<WorkerHandle> start_exec(const ConnectionHandoff& end, const std::string& name) {
  ProcessOptions o;
  o.name = name;
  o.daemon = true;
  o.pass_fds = {end.memory_fd, end.in_fd, end.out_fd};
  const ProcessInfo self = current_process();
  return process_worker(Process::exec(
      "/proc/self/exe", {g_argv0, kExecMarker, describe(end), name, std::to_string(self.pid), self.name}, o));
}

}  // namespace

int run_worker(Connection& conn, const WorkerSetup& setup, const CodeMap* code) {
  if (!setup.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : setup.cpus) CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) throw_errno("pool worker: sched_setaffinity");
  }
  // The arena is reserved by the first worker_scratch() call, after the pinning above: even unbound pages are
  // first touched from the worker's node. Set even without one: a worker forked from a process that was itself a
  // worker must not see that one's arena.
  WorkerScratch scratch{setup.scratch_bytes, setup.scratch_node, std::nullopt, false};
  g_worker_scratch = &scratch;
  g_in_worker = true;
  struct Unset {
    ~Unset() { g_worker_scratch = nullptr; }
  } unset;
  // Where the arena lies, once it exists (a result header for kReadyId), so that the pool can report its pages.
  auto send_hello = [&] {
    const Hello hello =
        scratch.arena ? Hello{reinterpret_cast<uintptr_t>(scratch.arena->base()), scratch.arena->capacity()} : Hello{};
    std::vector<std::byte> ready(kResultHeaderBytes + Codec<Hello>::encoded_size(hello), std::byte{0});
    store_field(ready.data(), kReadyId);
    Codec<Hello>::encode(hello, std::span<std::byte>(ready).subspan(kResultHeaderBytes));
    return conn.send_bytes(ready) == Outcome::kOk;
  };
  // A worker the pool forked is ready as soon as it runs; the others say so (their first Hello, without an arena).
  if (code && !send_hello()) return 0;
  if (setup.initializer) setup.initializer();
  std::vector<std::byte> in, out;
  unsigned done = 0;
  // Runs one task and sends its result; false when the worker is to end (the pool is gone, or its quota is met).
  auto run_task = [&](std::span<const std::byte> task) {
    if (task.size() < kTaskHeaderBytes) {
      throw StateError("pool worker: a task message of " + std::to_string(task.size()) + " bytes");
    }
    const auto id = load_field<uint64_t>(task.data());
    out.assign(kResultHeaderBytes, std::byte{0});
    store_field(out.data(), id);
    try {
      uintptr_t invoker = load_field<uintptr_t>(task.data() + 8);
      uintptr_t callable = load_field<uintptr_t>(task.data() + 16);
      if (code) invoker = code->address(invoker), callable = code->address(callable);
      reinterpret_cast<Invoker>(invoker)(callable, task.subspan(kTaskHeaderBytes), out);
    } catch (...) {
      const auto failure = describe_current_exception();
      out.resize(kResultHeaderBytes + Codec<std::pair<std::string, std::string>>::encoded_size(failure));
      out[8] = std::byte{1};
      Codec<std::pair<std::string, std::string>>::encode(failure,
                                                          std::span<std::byte>(out).subspan(kResultHeaderBytes));
    }
    if (scratch.arena) {
      scratch.arena->reset();  // everything the task allocated there is gone; the pages stay on the node
      // The task made it: the pool hears where it is before the task's result.
      if (!scratch.announced && !send_hello()) return false;
      scratch.announced = true;
    }
    if (conn.send_bytes(out) != Outcome::kOk) return false;
    return setup.max_tasks_per_child == 0 || ++done < setup.max_tasks_per_child;
  };
  for (;;) {
    if (conn.recv_bytes(in) != Outcome::kOk) return 0;  // end of stream: the pool closed or died
    const std::span<const std::byte> message(in);
    if (message.size() < kBatchHeaderBytes || load_field<uint64_t>(message.data()) != kBatchId) {
      if (!run_task(message)) return 0;
      continue;
    }
    // A batch: its tasks in order, each answered before the next runs (a kill fails the one it interrupts).
    for (size_t at = kBatchHeaderBytes; at < message.size();) {
      const size_t left = message.size() - at;
      const uint64_t bytes = left >= 8 ? load_field<uint64_t>(message.data() + at) : 0;
      if (left < 8 || bytes > left - 8 || batch_entry_bytes(bytes) > left) {
        throw StateError("pool worker: a batch of tasks cut short at byte " + std::to_string(at) + " of " +
                         std::to_string(message.size()));
      }
      if (!run_task(message.subspan(at + 8, bytes))) return 0;
      at += batch_entry_bytes(bytes);
    }
  }
}

std::unique_ptr<WorkerHandle> process_worker(Process process) {
  return std::make_unique<ProcessWorker>(std::move(process));
}

std::unique_ptr<WorkerHandle> start_remote_worker(StartMethod method, const ConnectionHandoff& worker_end,
                                                  const std::string& name) {
  check_start_method(method);
  return method == StartMethod::kExec ? start_exec(worker_end, name) : start_served(worker_end, name);
}

std::vector<std::byte> setup_message(const WorkerSetup& setup) {
  return encode(Setup(setup.objects, setup.cpus, setup.initializer_address, setup.max_tasks_per_child,
                      setup.scratch_bytes, setup.scratch_node));
}

void check_start_method(StartMethod method) {
  if (method == StartMethod::kForkServer) {
    std::lock_guard lock(g_server_mu);
    if (server_client().owner != ::getpid()) {
      throw StateError(
          "Pool: StartMethod::kForkServer needs ipc::start_fork_server() at the top of main, in this process");
    }
  }
  // acquire: partner is init()'s release store, after g_argv0 was written.
  if (method == StartMethod::kExec && !g_initialised.load(std::memory_order_acquire)) {
    throw StateError("Pool: StartMethod::kExec needs ipc::init(argc, argv) as the first line of main (an exec'd "
                     "worker runs it)");
  }
}

}  // namespace detail

numa::ScratchArena& worker_scratch() {
  detail::WorkerScratch* scratch = detail::g_worker_scratch;
  if (scratch && scratch->capacity != 0) {
    if (!scratch->arena) {
      numa::ScratchArena::Options o;
      o.capacity = scratch->capacity;
      if (scratch->node >= 0) o.node = scratch->node;
      scratch->arena.emplace(o);
    }
    return *scratch->arena;
  }
  if (detail::g_in_worker) {
    throw StateError("ipc::worker_scratch: this pool was made with PoolOptions::scratch_bytes = 0 (no arena)");
  }
  throw StateError("ipc::worker_scratch: not in a pool worker (call it from a task)");
}

void init(int argc, char** argv) {
  detail::adopt_life_pipe();  // a program exec'd by Process::exec on a kernel without pidfds
  if (argc >= 3 && std::strcmp(argv[1], detail::kExecMarker) == 0) {
    int code = 1;
    try {
      if (argc >= 6) {  // see start_exec()
        detail::set_process_name(argv[3]);
        detail::set_parent_process(ParentProcess{static_cast<pid_t>(std::atoll(argv[4])), argv[5], true});
      }
      code = detail::remote_worker_main(detail::parse_handoff(argv[2]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ipc pool worker %d: %s\n", static_cast<int>(::getpid()), e.what());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  if (argc > 0 && argv[0]) detail::g_argv0 = argv[0];
  // release: partner is check_start_method()'s acquire load.
  detail::g_initialised.store(true, std::memory_order_release);
}

void start_fork_server() {
  using detail::server_client;
  std::lock_guard lock(detail::g_server_mu);
  auto& client = server_client();
  if (client.owner == ::getpid()) return;
  // Inherited from the process that forked this one: its server, not ours.
  if (client.request_fd >= 0) ::close(client.request_fd);
  client.server.reset();
  client.request_fd = -1;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) throw_errno("socketpair (fork server)");
  ProcessOptions o;
  o.name = "ipc-fork-server";
  o.daemon = true;
  try {
    client.server = Process::start(
        [&] {
          ::close(sv[0]);
          return detail::serve(sv[1]);
        },
        o);
  } catch (...) {
    ::close(sv[0]);
    ::close(sv[1]);
    throw;
  }
  ::close(sv[1]);
  client.request_fd = sv[0];
  client.owner = ::getpid();
}

}  // namespace ipc

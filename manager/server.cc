#include "manager/server.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <poll.h>

#include <chrono>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <optional>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/base/poll.h"
#include "ipc/base/process.h"
#include "ipc/base/unix_socket.h"
#include "ipc/base/wait.h"
#include "manager/detail/address.h"
#include "manager/detail/auth.h"
#include "manager/detail/fresh_thread.h"
#include "manager/detail/objects.h"
#include "manager/detail/socket_network.h"
#include "manager/detail/wire_errors.h"
#include "manager/manager.capnp.h"

namespace ipc::manager {

using detail::fail;
using detail::Tag;

std::vector<std::uint8_t> random_bytes(std::size_t n) { return detail::random_bytes(n); }

namespace {

std::span<const std::uint8_t> span_of(capnp::Data::Reader d) { return {d.begin(), d.size()}; }

// The open connections, for Manager.status. Lives in run() beside the registry, on the server's thread: each
// Connection joins on construction and leaves when it is dropped.
class ClientTable {
 public:
  struct Entry {
    ucred peer;           // pid 0 when the kernel could not say (and for TCP peers)
    std::string address;  // a TCP peer's "tcp:HOST:PORT"; empty for a Unix socket peer
    std::chrono::steady_clock::time_point since;
    const detail::SocketVatNetwork* network;  // still in the handshake: not authenticated
  };
  class Member {
   public:
    Member(ClientTable& table, Entry entry) : table_(table), it_(table.entries_.insert(table.entries_.end(), entry)) {}
    ~Member() { table_.entries_.erase(it_); }
    Member(const Member&) = delete;
    Member& operator=(const Member&) = delete;

   private:
    ClientTable& table_;
    std::list<Entry>::iterator it_;
  };

  // `caller`: the connection that asked (marked in the reply).
  void fill(capnp::List<wire::ConnectedClient>::Builder out, const detail::SocketVatNetwork* caller) const {
    const auto now = std::chrono::steady_clock::now();
    unsigned i = 0;
    for (const Entry& e : entries_) {
      out[i].setPid(e.peer.pid);
      out[i].setUid(e.peer.uid);
      out[i].setAddress(capnp::Text::Reader(e.address.data(), e.address.size()));
      out[i].setCaller(e.network == caller);
      out[i].setSharedMemory(e.network->on_ring());
      out[i].setAuthenticated(!e.network->in_handshake());
      out[i].setConnectedMs(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now - e.since).count()));
      ++i;
    }
  }
  unsigned size() const { return static_cast<unsigned>(entries_.size()); }

 private:
  std::list<Entry> entries_;
};

// The peer of a Unix socket; pid 0 (unknown) when the kernel cannot say, and for a TCP socket (whose peer may be on
// another host: the kernel would report an unmapped uid).
ucred peer_of(int fd, bool tcp) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (tcp || ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) cred = ucred{};
  return cred;
}

void fill_refs(capnp::List<wire::ObjectRef>::Builder out, const std::vector<ObjectRef>& refs) {
  for (unsigned i = 0; i < refs.size(); ++i) {
    out[i].setName(capnp::Text::Reader(refs[i].name.data(), refs[i].name.size()));
    out[i].setKind(to_wire(refs[i].kind));
  }
}

class ManagerImpl final : public wire::Manager::Server {
 public:
  // `link`: the connection this Manager was handed to (objects opened through it may follow their replies there).
  ManagerImpl(detail::Registry& registry, const ClientTable& clients, kj::Own<detail::NetworkRef> link)
      : registry_(registry), clients_(clients), link_(kj::mv(link)) {}

  kj::Promise<void> open(OpenContext c) override {
    auto p = c.getParams();
    Kind kind = detail::translate_to_wire([&] { return from_wire(p.getKind()); });
    detail::SocketVatNetwork* network = link_->network;
    // The Return is made by the first getResults(): the network can then follow it (offer_plain_export).
    const std::uint64_t created_before = network != nullptr ? network->messages_created() : 0;
    auto results = c.getResults();
    KJ_IF_MAYBE(plain, registry_.open(p.getName(), kind, p.getCreate(), p.getMaxSize(), results.initObject(), *link_)) {
      if (network != nullptr) network->offer_plain_export(created_before, kj::mv(plain->cap), plain->server, plain->interface_id,
                                    plain->method_count);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> remove(RemoveContext c) override {
    c.getResults().setRemoved(registry_.remove(c.getParams().getName()));
    return kj::READY_NOW;
  }
  kj::Promise<void> list(ListContext c) override {
    auto refs = registry_.list();
    fill_refs(c.getResults().initObjects(static_cast<unsigned>(refs.size())), refs);
    return kj::READY_NOW;
  }
  kj::Promise<void> status(StatusContext c) override {
    auto refs = registry_.list();
    auto r = c.getResults();
    fill_refs(r.initObjects(static_cast<unsigned>(refs.size())), refs);
    clients_.fill(r.initClients(clients_.size()), link_->network);
    return kj::READY_NOW;
  }
  kj::Promise<void> getService(GetServiceContext c) override {
    c.getResults().setService(registry_.service(c.getParams().getName()));
    return kj::READY_NOW;
  }

 private:
  detail::Registry& registry_;
  const ClientTable& clients_;
  kj::Own<detail::NetworkRef> link_;
};

// The bootstrap capability of one connection. Nothing but challenge/respond is reachable through it, and one wrong
// proof ends authentication on this connection (a guesser must reconnect for every guess). A successful proof
// lifts the network's handshake limit on message sizes. Only this connection's RPC system holds it, so `network`
// (declared before that RPC system) outlives it.
class AuthenticatorImpl final : public wire::Authenticator::Server {
 public:
  AuthenticatorImpl(const std::vector<std::uint8_t>& key, detail::Registry& registry, const ClientTable& clients,
                    std::uint64_t max_message_bytes, detail::SocketVatNetwork& network)
      : key_(key), registry_(registry), clients_(clients), max_message_bytes_(max_message_bytes), network_(network) {}

  kj::Promise<void> challenge(ChallengeContext c) override {
    check_not_done();
    nonce_ = random_bytes(detail::kNonceBytes);
    state_ = State::kChallenged;
    c.getResults().setServerNonce(capnp::Data::Reader(nonce_.data(), nonce_.size()));
    return kj::READY_NOW;
  }

  kj::Promise<void> respond(RespondContext c) override {
    check_not_done();
    if (state_ != State::kChallenged) fail(Tag::kStateError, "respond() before challenge()");
    // Whatever happens next, this nonce is spent.
    state_ = State::kFailed;
    auto p = c.getParams();
    auto client_nonce = span_of(p.getClientNonce());
    if (client_nonce.size() != detail::kNonceBytes) {
      fail(Tag::kAuthenticationFailed, "client nonce must be " + std::to_string(detail::kNonceBytes) + " bytes");
    }
    detail::Digest expected = detail::client_proof(key_, nonce_, client_nonce);
    if (!detail::equal_constant_time(expected, span_of(p.getProof()))) {
      fail(Tag::kAuthenticationFailed, "wrong key (the proof does not match); reconnect to try again");
    }
    state_ = State::kDone;
    network_.end_handshake();
    detail::Digest proof = detail::server_proof(key_, nonce_, client_nonce);
    auto r = c.getResults();
    r.setManager(kj::heap<ManagerImpl>(registry_, clients_, network_.ref()));
    r.setServerProof(capnp::Data::Reader(proof.data(), proof.size()));
    r.setMaxMessageBytes(max_message_bytes_);
    return kj::READY_NOW;
  }

 private:
  enum class State { kNew, kChallenged, kFailed, kDone };
  void check_not_done() const {
    if (state_ == State::kFailed) fail(Tag::kAuthenticationFailed, "authentication already failed on this connection");
    if (state_ == State::kDone) fail(Tag::kStateError, "already authenticated");
  }

  const std::vector<std::uint8_t>& key_;
  detail::Registry& registry_;
  const ClientTable& clients_;
  std::uint64_t max_message_bytes_;
  detail::SocketVatNetwork& network_;
  State state_ = State::kNew;
  std::vector<std::uint8_t> nonce_;
};

// One client connection: its socket and two-party network, and its own RPC system (so its capabilities, questions
// and answers are its own, and dropping it releases exactly what this client held).
// Until the client authenticates, its messages are limited to what the handshake needs.
struct Connection {
  Connection(kj::UnixEventPort& port, kj::AutoCloseFd fd, bool tcp, capnp::ReaderOptions options,
             const ServerOptions& server, detail::Registry& registry, ClientTable& clients)
      : peer(peer_of(fd.get(), tcp)),
        address(tcp ? detail::peer_address(fd.get()) : std::string()),
        network(port, kj::mv(fd), capnp::rpc::twoparty::Side::SERVER, options, detail::kHandshakeMessageBytes),
        rpc(capnp::makeRpcServer(
            network, kj::heap<AuthenticatorImpl>(server.key, registry, clients, server.max_message_bytes, network))),
        member(clients, ClientTable::Entry{peer, address, std::chrono::steady_clock::now(), &network}) {
    // A local client may ask for the shared-memory transport (ring_stream.h); over TCP there is no shared memory.
    if (!tcp) network.offer_ring();
  }
  ucred peer;
  std::string address;
  detail::SocketVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  ClientTable::Member member;  // declared last: leaves the table before the network it points to goes
};

// A connection that fails (malformed bytes, oversized message, protocol error, no authentication in time) ends
// alone; the server only notes it.
class ConnectionErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;  // a client went away: normal
    std::fprintf(stderr, "ipc-manager: dropped a connection: %s\n", e.getDescription().cStr());
  }
};

}  // namespace

struct Server::Impl {
  ServerOptions options;  // options.address: what the server listens on (for TCP with the port it got)
  bool tcp = false;
  ipc::detail::BoundSocket bound;  // for TCP only `fd` is used
  int stop_fd = -1;
  std::string created_directory;  // removed by the destructor when this server made it
  std::vector<std::pair<std::string, kj::Own<capnp::Capability::Server>>> pending_services;
  detail::Registry* registry = nullptr;  // set while run() executes
  ClientTable* clients = nullptr;        // set while run() executes

  // Accepts every pending connection, then waits for the listening socket's next readable edge. (Accepted by hand
  // rather than through KJ's listener because the connection's socket goes to SocketVatNetwork as a bare fd.)
  kj::Promise<void> accept_loop(kj::UnixEventPort& port, kj::UnixEventPort::FdObserver& listening,
                                kj::TaskSet& connections, kj::Timer& timer) {
    for (;;) {
      int fd = ::accept4(bound.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        // A connection that cannot be set up is closed; the server keeps accepting.
        kj::AutoCloseFd socket(fd);
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
          if (tcp) detail::configure_tcp(socket.get());
          capnp::ReaderOptions limits;
          limits.traversalLimitInWords = options.max_message_bytes / sizeof(capnp::word);
          limits.nestingLimit = 64;
          auto conn = kj::heap<Connection>(port, kj::mv(socket), tcp, limits, options, *registry, *clients);
          // Dropping the Connection closes it; the deadline is harmless once the client has authenticated.
          auto& network = conn->network;
          auto deadline = timer.afterDelay(options.authentication_timeout.count() * kj::MILLISECONDS)
                              .then([&network, timeout = options.authentication_timeout]() -> kj::Promise<void> {
                                if (!network.in_handshake()) return kj::NEVER_DONE;
                                return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                                     kj::str("the client did not authenticate within ",
                                                             timeout.count(), " ms"));
                              });
          connections.add(network.onDisconnect().exclusiveJoin(kj::mv(deadline)).attach(kj::mv(conn)));
        })) {
          std::fprintf(stderr, "ipc-manager: could not set up a connection: %s\n", e->getDescription().cStr());
        }
        continue;
      }
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        return listening.whenBecomesReadable().then([this, &port, &listening, &connections, &timer] {
          return accept_loop(port, listening, connections, timer);
        });
      }
      // accept() fails for lack of resources (EMFILE, ENOMEM): report it and keep serving the others; the
      // connection stays in the backlog for the next try.
      std::fprintf(stderr, "ipc-manager: accept failed: %s\n", std::strerror(err));
      return timer.afterDelay(100 * kj::MILLISECONDS).then([this, &port, &listening, &connections, &timer] {
        return accept_loop(port, listening, connections, timer);
      });
    }
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.key.size() < detail::kMinKeyBytes) {
    throw InvalidArgument("manager key must be at least " + std::to_string(detail::kMinKeyBytes) + " bytes (got " +
                          std::to_string(options.key.size()) + ")");
  }
  if (options.max_message_bytes < 4096) throw InvalidArgument("max_message_bytes must be at least 4096");
  if (options.authentication_timeout <= std::chrono::milliseconds::zero()) {
    throw InvalidArgument("authentication_timeout must be positive");
  }
  detail::Address address;
  if (options.address.empty()) {
    impl_->created_directory = ipc::detail::make_private_directory("numa_mp-manager");
    address = detail::parse_address(impl_->created_directory + "/manager.sock");
  } else {
    address = detail::parse_address(options.address);
    if (!address.tcp) {
      // A path too long or holding a NUL is refused before its directory is made.
      (void)ipc::detail::unix_address(address.path);
      ipc::detail::ensure_private_directory(ipc::detail::directory_of(address.path), "manager");
    }
  }
  impl_->tcp = address.tcp;
  impl_->options = std::move(options);
  try {
    if (address.tcp) {
      impl_->bound.fd = detail::listen_tcp(address, impl_->options.address);
    } else {
      impl_->options.address = address.path;
      impl_->bound = ipc::detail::listen_unix(address.path, "manager");
    }
    impl_->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (impl_->stop_fd < 0) throw_errno("eventfd");
  } catch (...) {
    if (impl_->bound.fd >= 0) ::close(impl_->bound.fd);
    if (!impl_->created_directory.empty()) ::rmdir(impl_->created_directory.c_str());
    throw;
  }
}

Server::~Server() {
  ::close(impl_->bound.fd);
  ::close(impl_->stop_fd);
  // Unlinks only the socket this server bound: a later server may already have replaced the file.
  if (!impl_->tcp) ipc::detail::unlink_if_bound(impl_->options.address, impl_->bound);
  if (!impl_->created_directory.empty()) ::rmdir(impl_->created_directory.c_str());
}

const std::string& Server::address() const { return impl_->options.address; }

void Server::serve(std::string name, kj::Own<capnp::Capability::Server> service) {
  detail::validate_name(name);
  if (impl_->registry != nullptr) {
    impl_->registry->serve(std::move(name), capnp::Capability::Client(kj::mv(service)));
  } else {
    impl_->pending_services.emplace_back(std::move(name), kj::mv(service));
  }
}

void Server::stop() noexcept {
  std::uint64_t one = 1;
  // eventfd writes of 8 bytes are atomic; the only possible failure (counter overflow) still leaves it readable.
  [[maybe_unused]] ssize_t r = ::write(impl_->stop_fd, &one, sizeof one);
}

void Server::run() {
  // The loop itself (not kj::setupAsyncIo()): the spin below runs it turn by turn (EventLoop::run) when a shared
  // ring has bytes, without polling the event port.
  kj::UnixEventPort port;
  kj::EventLoop loop(port);
  kj::WaitScope wait_scope(loop);
  kj::Timer& timer = port.getTimer();
  detail::Registry registry(timer);
  for (auto& [name, service] : impl_->pending_services) {
    registry.serve(name, capnp::Capability::Client(kj::mv(service)));
  }
  impl_->pending_services.clear();
  impl_->registry = &registry;
  KJ_DEFER(impl_->registry = nullptr);
  ClientTable clients;  // before the connections, which leave it as they go
  impl_->clients = &clients;
  KJ_DEFER(impl_->clients = nullptr);

  ConnectionErrors errors;
  // Declared after the registry so that connections (and the capabilities they hold) go first.
  kj::TaskSet connections(errors);
  kj::UnixEventPort::FdObserver listening(port, impl_->bound.fd,
                                          kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto accepting = impl_->accept_loop(port, listening, connections, timer).eagerlyEvaluate(nullptr);

  kj::UnixEventPort::FdObserver stop_observer(port, impl_->stop_fd,
                                              kj::UnixEventPort::FdObserver::OBSERVE_READ);
  for (;;) {
    std::uint64_t count = 0;
    if (::read(impl_->stop_fd, &count, sizeof count) == sizeof count) break;
    if (errno != EAGAIN && errno != EINTR) throw_errno("read stop eventfd");
    auto stopping = stop_observer.whenBecomesReadable();
    // While requests keep arriving, stay awake: poll the event loop (non-blocking epoll) instead of sleeping, so a
    // client's next call is picked up without a wake-up, which costs tens of microseconds on a virtual machine.
    // The spin is bounded (an idle server sleeps and costs no CPU), and happens only while every runnable task
    // has a CPU: on a busy machine the spin would take the CPU a client or another process needs. There the server
    // gives its CPU away and looks again, kYieldsBeforeSleep times after the last request, before it sleeps: a
    // client about to send may be what waits for this CPU.
    // Clients on shared rings are looked at every turn without a system call (detail::poll_rings: one load per
    // ring), and their requests run at once (EventLoop::run, without polling the port). The event port (sockets,
    // new connections, the stop request) is polled at the start and then every kPortPollInterval, or every turn
    // when no ring waits: the poll is also what moves the loop's timer on (kj::Timer reads the clock only when the
    // port is polled), so a request is never timed from a clock read longer ago than that (a queue get's timeout).
    constexpr auto kPortPollInterval = std::chrono::microseconds(20);
    constexpr unsigned kTurnsPerRun = 256;  // a client that keeps its ring full cannot keep the port unpolled
    auto now = std::chrono::steady_clock::now();
    auto spin_end = now + detail::kPollWindow;
    auto port_polled = now - kPortPollInterval;  // poll at once
    std::uint64_t seen = detail::received_reads();
    bool stop_requested = false;
    detail::RingSpin ring_spin;
    unsigned yields = 0;  // since the last request, where spinning does not pay
    for (;;) {
      if (now - port_polled >= kPortPollInterval || !detail::rings_waiting()) {
        if ((stop_requested = stopping.poll(wait_scope))) break;
        port_polled = now;
      }
      if (detail::poll_rings() || loop.isRunnable()) loop.run(kTurnsPerRun);
      now = std::chrono::steady_clock::now();
      if (detail::received_reads() != seen) {
        seen = detail::received_reads();
        spin_end = now + detail::kPollWindow;
        yields = 0;
      } else if (now >= spin_end) {
        break;
      } else if (!ipc::detail::spinning_pays()) {
        if (yields == detail::kYieldsBeforeSleep) break;
        ++yields;
        ipc::detail::yield_cpu();
      }
    }
    if (stop_requested) continue;  // the read at the top takes the stop request
    // Readers on rings ask for doorbells again before the loop may sleep. Bytes that came meanwhile are run by the
    // next spin, which polls the port first (no request is run on a stale timer).
    if (ring_spin.end()) continue;
    // Sleep until a request arrives or a stop is requested (connections are served meanwhile).
    stopping.exclusiveJoin(detail::next_received_read()).wait(wait_scope);
  }
}

// ---- start_server ----

namespace {

Server* g_child_server = nullptr;

extern "C" void stop_child_server(int) {
  if (g_child_server != nullptr) g_child_server->stop();
}

// Body of the server child, run on a fresh thread (detail::on_fresh_thread). Once the server listens, writes the
// address it listens on and a newline to `ready_fd` (one write: atomic, being far shorter than PIPE_BUF); an
// exception reaches the parent through the Process.
int child_main(ServerProcessOptions& options, const std::string& address, int ready_fd) {
  Server server(ServerOptions{address, options.key, options.max_message_bytes, options.authentication_timeout});
  if (options.setup) options.setup(server);
  g_child_server = &server;
  struct sigaction sa {};
  sa.sa_handler = stop_child_server;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGTERM);
  sigaddset(&unblock, SIGINT);
  ::pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
  const std::string ready = server.address() + "\n";
  if (retry_on_eintr([&] { return ::write(ready_fd, ready.data(), ready.size()); }) !=
      static_cast<ssize_t>(ready.size())) {
    throw_errno("write manager ready");
  }
  ::close(ready_fd);
  server.run();
  g_child_server = nullptr;
  return 0;
}

}  // namespace

ServerProcess start_server(ServerProcessOptions options) {
  if (options.key.empty()) options.key = random_bytes(32);
  ServerProcess handle;
  handle.key_ = options.key;
  if (options.address.empty()) {
    handle.address_ = ipc::detail::make_private_directory("numa_mp-manager") + "/manager.sock";
    handle.owns_directory_ = true;
  } else {
    handle.address_ = detail::parse_address(options.address).text;  // a malformed address fails here, in the caller
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    handle.cleanup_files();
    throw_errno("pipe2");
  }
  try {
    handle.process_ = Process::start([&] {
      ::close(fds[0]);
      return detail::on_fresh_thread([&] { return child_main(options, handle.address_, fds[1]); });
    }, ProcessOptions{.name = "manager-server", .daemon = true});
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    handle.cleanup_files();
    throw;
  }
  ::close(fds[1]);
  // Started once the child says where it listens (for TCP port 0, the port it got); failed if it ends first (its
  // exception says why).
  const std::array<int, 2> watched{fds[0], handle.process_->sentinel()};
  const std::vector<int> ready = ipc::wait(watched, std::chrono::seconds(30));
  std::string bound;
  if (!ready.empty() && ready.front() == fds[0]) {
    char buffer[512];
    ssize_t n;
    while (bound.find('\n') == std::string::npos &&
           (n = retry_on_eintr([&] { return ::read(fds[0], buffer, sizeof buffer); })) > 0) {
      bound.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fds[0]);
  const bool started = !bound.empty() && bound.back() == '\n';
  if (started) {
    bound.pop_back();
    handle.address_ = bound;
  }
  if (!started) {
    handle.stop(std::chrono::seconds(1));
    const std::optional<ChildException>& e = handle.process_->exception();
    throw StateError("manager server process failed to start: " +
                     (e ? e->message : ready.empty() ? "timed out waiting for the server to listen" : "it exited"));
  }
  return handle;
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : process_(std::exchange(other.process_, std::nullopt)),
      owns_directory_(std::exchange(other.owns_directory_, false)),
      address_(std::move(other.address_)),
      key_(std::move(other.key_)) {}

ServerProcess& ServerProcess::operator=(ServerProcess&& other) noexcept {
  if (this != &other) {
    stop();
    process_ = std::exchange(other.process_, std::nullopt);
    owns_directory_ = std::exchange(other.owns_directory_, false);
    address_ = std::move(other.address_);
    key_ = std::move(other.key_);
  }
  return *this;
}

ServerProcess::~ServerProcess() { stop(); }

int ServerProcess::stop(std::chrono::milliseconds timeout) {
  if (!process_) return 0;
  if (const std::optional<int> code = process_->exitcode()) return *code;
  process_->terminate();
  std::optional<int> code = process_->join(timeout);
  if (!code) {
    process_->kill();
    code = process_->join();
  }
  cleanup_files();
  return *code;
}

void ServerProcess::cleanup_files() noexcept {
  if (!owns_directory_) return;
  // A server that was killed could not remove its socket; the directory is ours either way.
  ::unlink(address_.c_str());
  ::rmdir(ipc::detail::directory_of(address_).c_str());
  owns_directory_ = false;
}

}  // namespace ipc::manager

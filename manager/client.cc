#include "manager/client.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/time.h>
#include <kj/async-unix.h>
#include <kj/common.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "ipc/base/poll.h"
#include "ipc/base/unix_socket.h"
#include "ipc/base/wait.h"
#include "manager/detail/address.h"
#include "manager/detail/auth.h"
#include "manager/detail/socket_network.h"
#include "manager/detail/wire_errors.h"

namespace ipc::manager {
namespace detail {
using Transport = ClientOptions::Transport;
namespace {

// What fork() must find consistent, and so is locked across every fork() of the process (the handlers in
// fork_state()): the sockets of this process's connections, and what forked children keep of their parents'.
struct ForkState {
  std::mutex mu;
  std::vector<int> sockets;  // this process's connections: a forked child drops its copies of them at once
  std::vector<void*> kept;   // never destroyed (see keep_forever); listed so that leak checkers see them reachable
};

// Counts the fork()s this process descends from (since its first Client): a cheap "am I a child of the process
// that made this?" test for every call (getpid() is a system call). Relaxed: the child handler runs in the child's
// only thread before fork() returns there, so no other thread can observe the change.
std::atomic<unsigned> g_fork_generation{0};

ForkState& fork_state();

// In the child, before fork() returns: the parent's connections are the parent's. The child's copy of each socket
// is replaced by /dev/null (dup3 keeps the descriptor number taken, so nothing else lands on it), which closes the
// child's share of the connection, so that the server sees the parent's end when the parent ends, whatever its
// children do; and anything that would still send on it goes nowhere. Only async-signal-safe calls here.
void drop_parent_connections() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  ForkState& state = fork_state();
  if (!state.sockets.empty()) {
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd : state.sockets) {
      if (null_fd < 0 || ::dup3(null_fd, fd, O_CLOEXEC) < 0) ::close(fd);
    }
    if (null_fd >= 0) ::close(null_fd);
    state.sockets.clear();  // keeps its memory: no allocation in the child
  }
  state.mu.unlock();
}

ForkState& fork_state() {
  static ForkState* const state = [] {
    auto* s = new ForkState;  // never destroyed: forks late in exit() still use it
    const int rc = ::pthread_atfork([] { fork_state().mu.lock(); }, [] { fork_state().mu.unlock(); },
                                    drop_parent_connections);
    if (rc != 0) throw SystemError(rc, "pthread_atfork");
    return s;
  }();
  return *state;
}

unsigned fork_generation() {
  fork_state();  // forks are counted from the first use on
  return g_fork_generation.load(std::memory_order_relaxed);
}

// Deletes what this process made; keeps what it inherited through fork() (see keep_forever).
template <typename T>
struct DeleteIfMadeHere {
  void operator()(T* p) const {
    if (p->generation == fork_generation()) {
      delete p;
    } else {
      keep_pointer_forever(p);
    }
  }
};

// The KJ event loop of one thread, shared by that thread's Clients (KJ allows one loop per thread: the WaitScope
// registers it as the thread's loop, in a thread-local variable).
struct ThreadLoop {
  kj::UnixEventPort port;
  kj::EventLoop loop{port};
  std::optional<kj::WaitScope> scope{std::in_place, loop};
  unsigned generation = fork_generation();
  std::thread::id thread = std::this_thread::get_id();
};

std::shared_ptr<ThreadLoop> thread_loop() {
  thread_local std::weak_ptr<ThreadLoop> current;
  if (auto loop = current.lock()) {
    if (loop->generation == fork_generation()) return loop;
    // A forked child's copy of the loop its parent ran on this thread. Its descriptors and epoll registrations are
    // shared with the parent, so it is never run or destroyed here; ending its WaitScope only tells KJ that this
    // thread has no loop any more (the thread-local pointer the parent's loop left behind), so a new one can start.
    loop->scope.reset();
  }
  std::shared_ptr<ThreadLoop> loop(new ThreadLoop, DeleteIfMadeHere<ThreadLoop>());
  current = loop;
  return loop;
}

// Removes a connection's socket from the list. REQUIRES: the fork lock held, and kept until the socket is closed:
// a fork in between would leave the child a copy of it (unlisted first) or have the child replace whatever reused
// the number (closed first).
void unlist_socket(int fd) {
  auto& v = fork_state().sockets;
  v.erase(std::remove(v.begin(), v.end(), fd), v.end());
}

using ConnectClock = std::chrono::steady_clock;

// Milliseconds from now to `deadline`, rounded up (a wait of 0 would not wait at all), 0 once it has passed, at
// most what poll(2) takes.
int ms_until(ConnectClock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ConnectClock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(left, 0, std::numeric_limits<int>::max()));
}

// Connects `fd` to `target` before `deadline`: 0, or the errno of the failure (ETIMEDOUT once the deadline passed).
// A TCP socket connects non-blocking and polls for the handshake, so that neither a host that drops the SYN (the
// kernel's own timeout is minutes) nor a signal mid-way (a blocking connect interrupted by one goes on in the
// kernel, and a second connect() only says EALREADY) gets in the way. A Unix socket connects at once unless the
// server's backlog is full; then a blocking connect waits for room, bounded by SO_SNDTIMEO, and may be repeated
// after a signal (a non-blocking one would fail with EAGAIN, with nothing to wait on).
int connect_before(int fd, const SocketTarget& target, bool tcp, ConnectClock::time_point deadline) {
  if (tcp) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return errno;
    if (::connect(fd, target.address(), target.size) == 0) return 0;
    if (errno != EINPROGRESS && errno != EINTR) return errno;
    for (;;) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, ms_until(deadline));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return errno;
      if (ready == 0) return ETIMEDOUT;
      int err = 0;
      socklen_t size = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) != 0) return errno;
      return err;
    }
  }
  for (;;) {
    const int ms = ms_until(deadline);
    if (ms == 0) return ETIMEDOUT;
    const timeval limit{ms / 1000, (ms % 1000) * 1000};
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) != 0) return errno;
    if (::connect(fd, target.address(), target.size) == 0) {
      const timeval none{};  // the connection's sends are the event loop's, non-blocking
      return ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none) == 0 ? 0 : errno;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN ? ETIMEDOUT : errno;
  }
}

// A stream socket connected to the Manager at `address` (the first of a host name's addresses that accepts) before
// `deadline`, listed in fork_state().sockets from its creation on. TCP sockets are configured as the server's
// (configure_tcp). `timeout`: what the deadline was made from, for the error.
int connect_manager(const Address& address, ConnectClock::time_point deadline, std::chrono::milliseconds timeout) {
  int err = 0;
  for (const SocketTarget& target : resolve(address, /*passive=*/false)) {
    int fd;
    {
      ForkState& state = fork_state();
      std::lock_guard lock(state.mu);
      state.sockets.reserve(state.sockets.size() + 1);
      fd = ::socket(target.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw_errno("socket");
      state.sockets.push_back(fd);
    }
    err = connect_before(fd, target, address.tcp, deadline);
    if (err == 0) {
      try {
        if (address.tcp) {
          configure_tcp(fd);
        } else {
          // A server of another user is refused before a byte is sent (over TCP only the key can tell).
          ipc::detail::check_peer_is_this_user(fd, address.path, "manager");
        }
        return fd;
      } catch (const SystemError& e) {
        if (!address.tcp) {
          std::lock_guard lock(fork_state().mu);
          unlist_socket(fd);
          ::close(fd);
          throw;
        }
        err = e.code();
      }
    }
    std::lock_guard lock(fork_state().mu);
    unlist_socket(fd);
    ::close(fd);
    if (ms_until(deadline) == 0) break;  // the time is spent: the next address would fail at once
  }
  if (err == ETIMEDOUT && ms_until(deadline) == 0) {
    throw SystemError(err, "connect to manager at " + address.text + ": no connection within " +
                               std::to_string(timeout.count()) + " ms (ClientOptions::connect_timeout)");
  }
  throw SystemError(err, "connect to manager at " + address.text);
}

// Asks the server for the shared-memory transport on a fresh Unix connection (ring_stream.h), before `deadline`:
// the rings, or none when the server keeps the connection on its socket. `fd` is still blocking here.
RingStream ask_for_ring(int fd, ConnectClock::time_point deadline, std::chrono::milliseconds timeout,
                        const std::string& context) {
  ssize_t sent;
  do {
    sent = ::send(fd, kRingRequest, sizeof kRingRequest, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(sizeof kRingRequest)) {
    if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      throw Disconnected(context + ": the server closed the connection before the handshake");
    }
    throw SystemError(sent < 0 ? errno : EIO, context + ": send the transport request");
  }
  const int answering[] = {fd};
  if (ipc::wait(answering, std::chrono::milliseconds(ms_until(deadline))).empty()) {
    throw SystemError(ETIMEDOUT, context + ": the peer accepted the connection but did not complete the handshake "
                                           "within " + std::to_string(timeout.count()) +
                                     " ms (ClientOptions::connect_timeout)");
  }
  std::byte answer{};
  std::vector<int> fds;
  bool truncated = false;
  const ssize_t n = ipc::detail::recv_with_fds(fd, std::span<std::byte>(&answer, 1), fds, truncated, MSG_DONTWAIT);
  const int err = errno;
  std::vector<kj::AutoCloseFd> received;
  for (int f : fds) received.emplace_back(f);
  if (n == 0 || (n < 0 && err == ECONNRESET)) {
    throw Disconnected(context + ": the server closed the connection during the handshake");
  }
  if (n < 0) throw SystemError(err, context + ": receive the answer to the transport request");
  const auto byte = static_cast<unsigned char>(answer);
  if (byte == kRingRefused && received.empty()) return {};
  if (byte != kRingGranted || received.size() != 1 || truncated) {
    throw SystemError(EPROTO, context + ": the peer is not a Manager (it did not answer the shared-memory transport "
                                        "request as one; ClientOptions::transport = Transport::kSocket speaks plain "
                                        "Cap'n Proto)");
  }
  try {
    return RingStream::open(std::move(received[0]));
  } catch (const kj::Exception& e) {
    throw SystemError(EPROTO, context + ": " + e.getDescription().cStr());
  }
}

}  // namespace

void keep_pointer_forever(void* object) {
  ForkState& state = fork_state();
  std::lock_guard lock(state.mu);
  state.kept.push_back(object);
}

// The direct path of the hot calls (dict and namespace set and get, counter add, get and set): each is one Call
// message, encoded into a reused buffer and appended to the connection's output (one write per event-loop turn, as
// everything else), and its Return is matched by question id to a slot of this table, decoded there, and answered
// with a Finish. The wire is the same Cap'n Proto RPC the server already serves (Call to the imported object,
// Return, Finish); what it saves is the client's RPC machinery per call: the request and response objects, the
// question table entry, the pipeline and its promise nodes (measured: 20.3 k -> 3.8 k instructions and 34 -> 0.07
// allocations per pipelined call).
// Question ids start at DirectReturns::kFirstQuestionId, so they never meet the RPC system's own.
// Calls through the RPC system and direct calls on one connection reach the server in the order they were made.
// When the connection ends, every call still waiting fails with DISCONNECTED (the Client maps it to
// Disconnected, naming the address), as the RPC system fails its own.
class DirectCalls final : public DirectReturns {
 public:
  // Reads a call's results into its slot (runs when the Return arrives; an exception fails the call).
  struct Slot;
  using Decode = void (*)(capnp::AnyPointer::Reader results, Slot& slot);
  struct Slot {
    enum class State : std::uint8_t { kFree, kWaiting, kDone, kDropped };
    State state = State::kFree;
    Decode decode = nullptr;
    kj::Maybe<kj::Exception> failure;
    std::optional<Value> value;  // Dict.get's, Namespace.getAttr's
    std::int64_t number = 0;     // Counter.add's and get's
  };

  DirectCalls(SocketVatNetwork& network, const std::string& context) : network_(network), context_(context) {}

  // Sends `Interface`'s method `method_id` to the object imported as `import_id`, its parameters filled by `fill`
  // (a Params builder); returns the call's slot. On a connection that already ended, the call fails at once.
  template <typename Params, typename Fill>
  DirectCall call(std::uint32_t import_id, std::uint64_t interface_id, std::uint16_t method_id,
                  capnp::MessageSize size, Fill&& fill, Decode decode) {
    const std::uint32_t index = take_slot(decode);
    Slot& slot = slots_[index];
    if (ended_ != nullptr || !network_.can_send()) {
      complete(slot, failure_of_end());
      return DirectCall{index};
    }
    // The RPC envelope (Message, Call, target, payload) adds a few words to the parameters.
    constexpr std::uint64_t kEnvelopeWords = 12;
    const std::uint64_t words = size.wordCount + kEnvelopeWords;
    auto build = [&](capnp::MessageBuilder& message) {
      auto call = message.initRoot<capnp::rpc::Message>().initCall();
      call.setQuestionId(DirectReturns::kFirstQuestionId + index);
      call.initTarget().setImportedCap(import_id);
      call.setInterfaceId(interface_id);
      call.setMethodId(method_id);
      fill(call.initParams().getContent().template initAs<Params>());
      network_.send_direct(message);
    };
    if (words <= kScratchWords) {
      // The builder zeroes what it used of a first segment it was given when it goes: ready for the next call.
      capnp::MallocMessageBuilder message(kj::arrayPtr(scratch_.get(), kScratchWords));
      build(message);
    } else {
      capnp::MallocMessageBuilder message(static_cast<unsigned>(words));
      build(message);
    }
    return DirectCall{index};
  }

  bool done(DirectCall call) const { return slots_[call.slot].state == Slot::State::kDone; }
  Slot& slot(DirectCall call) { return slots_[call.slot]; }
  void release(DirectCall call) {
    Slot& s = slots_[call.slot];
    if (s.state == Slot::State::kWaiting) {
      s.state = Slot::State::kDropped;  // freed when its Return arrives
      return;
    }
    free_slot(call.slot);
  }
  // Resolves at the next reply to a direct call, or the connection's end (one waiter at a time: the owner thread).
  kj::Promise<void> next_completion() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiter_ = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }

  // DirectReturns
  void returned(capnp::rpc::Return::Reader ret) override {
    const std::uint32_t index = ret.getAnswerId() - DirectReturns::kFirstQuestionId;
    // A Return for a question not in flight is the server's protocol error; there is nothing to complete.
    if (index >= slots_.size()) return;
    Slot& slot = slots_[index];
    if (slot.state != Slot::State::kWaiting && slot.state != Slot::State::kDropped) return;
    send_finish(ret.getAnswerId());
    if (slot.state == Slot::State::kDropped) {
      free_slot(index);
      return;
    }
    kj::Maybe<kj::Exception> failure;
    switch (ret.which()) {
      case capnp::rpc::Return::RESULTS: {
        auto content = ret.getResults().getContent();
        failure = kj::runCatchingExceptions([&] { slot.decode(content, slot); });
        break;
      }
      case capnp::rpc::Return::EXCEPTION: {
        // As Cap'n Proto's RPC system turns a remote exception into a local one.
        auto e = ret.getException();
        failure = kj::Exception(static_cast<kj::Exception::Type>(e.getType()), "(remote)", 0,
                                kj::str("remote exception: ", e.getReason()));
        break;
      }
      default:
        failure = kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                kj::str("the manager answered a call with a kind of Return this client never asks "
                                        "for (", static_cast<unsigned>(ret.which()), ")"));
    }
    complete(slot, kj::mv(failure));
  }

  void ended(const kj::Exception& why) override {
    if (ended_ != nullptr) return;
    ended_ = kj::cp(why);
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == Slot::State::kWaiting) {
        complete(slots_[i], kj::cp(why));
      } else if (slots_[i].state == Slot::State::kDropped) {
        free_slot(i);
      }
    }
  }

 private:
  static constexpr std::size_t kScratchWords = 256;  // 2 KiB: any small call

  std::uint32_t take_slot(Decode decode) {
    std::uint32_t index;
    if (free_.empty()) {
      index = static_cast<std::uint32_t>(slots_.size());
      if (index >= std::numeric_limits<std::uint32_t>::max() - DirectReturns::kFirstQuestionId) {
        throw StateError(context_ + ": too many direct calls in flight");
      }
      slots_.emplace_back();
    } else {
      index = free_.back();
      free_.pop_back();
    }
    Slot& slot = slots_[index];
    slot.state = Slot::State::kWaiting;
    slot.decode = decode;
    return index;
  }
  void free_slot(std::uint32_t index) {
    Slot& slot = slots_[index];
    slot.state = Slot::State::kFree;
    slot.failure = nullptr;
    slot.value.reset();
    free_.push_back(index);
  }
  void complete(Slot& slot, kj::Maybe<kj::Exception> failure) {
    slot.failure = kj::mv(failure);
    slot.state = Slot::State::kDone;
    if (waiter_.get() != nullptr) {
      waiter_->fulfill();
      waiter_ = nullptr;
    }
  }
  kj::Exception failure_of_end() const {
    KJ_IF_MAYBE(e, ended_) { return kj::cp(*e); }
    return KJ_EXCEPTION(DISCONNECTED, "Peer disconnected.");
  }
  // The server keeps a question's answer until the caller says it is done with it: at once, here.
  void send_finish(std::uint32_t question_id) {
    capnp::word buffer[8] = {};
    capnp::MallocMessageBuilder message(kj::arrayPtr(buffer, 8));
    message.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(question_id);
    network_.send_direct(message);
  }

  SocketVatNetwork& network_;
  const std::string& context_;
  std::vector<Slot> slots_;  // index = question id - kFirstQuestionId
  std::vector<std::uint32_t> free_;
  std::unique_ptr<capnp::word[]> scratch_{new capnp::word[kScratchWords]()};  // all zero between calls
  kj::Own<kj::PromiseFulfiller<void>> waiter_;
  kj::Maybe<kj::Exception> ended_;  // set once the connection ended
};

// One authenticated connection, used by the thread that made it, in the process that made it.
class Session {
 public:
  // Connects and authenticates within `timeout` (ClientOptions::connect_timeout).
  Session(const Address& address, std::span<const std::uint8_t> key, std::chrono::milliseconds timeout,
          Transport transport)
      : loop_(thread_loop()), context_("manager at " + address.text) {
    if (key.size() < kMinKeyBytes) {
      throw InvalidArgument("manager key must be at least " + std::to_string(kMinKeyBytes) + " bytes");
    }
    const auto deadline = ConnectClock::now() + timeout;
    // The server is trusted once it proved it knows the key, so replies may be as large as memory allows.
    capnp::ReaderOptions options;
    options.traversalLimitInWords = std::uint64_t{1} << 40;
    socket_ = connect_manager(address, deadline, timeout);
    RingStream ring;
    if (!address.tcp && transport == Transport::kSharedMemory) {
      try {
        ring = ask_for_ring(socket_, deadline, timeout, context_);
      } catch (...) {
        std::lock_guard lock(fork_state().mu);
        unlist_socket(socket_);
        ::close(socket_);
        throw;
      }
    }
    {
      // Under the fork lock: if this throws, the network has closed the socket, which must leave the list at once.
      std::lock_guard lock(fork_state().mu);
      try {
        network_ = kj::heap<SocketVatNetwork>(loop_->port, kj::AutoCloseFd(socket_),
                                              capnp::rpc::twoparty::Side::CLIENT, options, 0, std::move(ring));
        network_->set_direct_returns(&direct_calls_.emplace(*network_, context_));
      } catch (...) {
        unlist_socket(socket_);
        throw;
      }
    }
    try {
      authenticate(key, deadline, timeout);
    } catch (...) {
      close();
      throw;
    }
  }

  // Runs only in the process that made the session (DeleteIfMadeHere).
  ~Session() noexcept(false) { close(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  template <typename T>
  T wait(kj::Promise<T>&& p) {
    return wait_for(*this, p);
  }

  void check_usable() const {
    if (generation != fork_generation()) {
      throw StateError(context_ +
                       ": this was made by the parent process before fork(); futures, lock holders, raw capabilities "
                       "and promises stay with the process that made them (Clients and proxies connect anew)");
    }
    if (loop_->thread != std::this_thread::get_id()) {
      throw StateError(context_ + ": a Client may only be used by the thread that created it");
    }
  }

  // Refuses a request the server would drop the connection for, with an error that says why.
  // REQUIRES: `size` from the request's totalSize(); the RPC envelope adds well under 1 KiB.
  void check_size(capnp::MessageSize size) const {
    std::uint64_t bytes = size.wordCount * sizeof(capnp::word) + 1024;
    if (bytes > max_message_bytes_) {
      throw InvalidArgument(context_ + ": request of about " + std::to_string(bytes) +
                            " bytes exceeds the server's limit of " + std::to_string(max_message_bytes_) + " bytes");
    }
  }

  kj::WaitScope& wait_scope() { return *loop_->scope; }
  // Runs what is ready on the event loop, without polling its port (no system call).
  void run_ready() { loop_->loop.run(); }
  wire::Manager::Client& manager() { return *manager_; }
  SocketVatNetwork& network() { return *network_; }
  DirectCalls& direct_calls() { return *direct_calls_; }
  const std::string& context() const { return context_; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }

  const unsigned generation = fork_generation();

 private:
  // Waits for a reply of the authentication handshake until `deadline`. A peer that accepted the connection but
  // does not answer (not a Manager, or one that hangs) is given up on: SystemError (ETIMEDOUT).
  template <typename T>
  T wait_handshake(kj::Promise<T>&& reply, ConnectClock::time_point deadline, std::chrono::milliseconds timeout) {
    kj::Promise<kj::Maybe<T>> answered = reply.then([](T&& r) { return kj::Maybe<T>(kj::mv(r)); });
    // KJ's timer reads the clock only when the loop polls for I/O, which a thread whose loop was idle (or whose
    // calls all went through shared rings) has not done for a while: one poll first, so that the deadline is
    // counted from now and not from the loop's last poll.
    loop_->scope->poll();
    kj::Promise<kj::Maybe<T>> expired = loop_->port.getTimer()
                                            .afterDelay(ms_until(deadline) * kj::MILLISECONDS)
                                            .then([]() -> kj::Maybe<T> { return nullptr; });
    KJ_IF_MAYBE(r, wait(answered.exclusiveJoin(kj::mv(expired)))) {
      return kj::mv(*r);
    }
    throw SystemError(ETIMEDOUT, context_ + ": the peer accepted the connection but did not complete the handshake "
                                            "within " + std::to_string(timeout.count()) +
                                     " ms (ClientOptions::connect_timeout)");
  }

  void authenticate(std::span<const std::uint8_t> key, ConnectClock::time_point deadline,
                    std::chrono::milliseconds timeout) {
    rpc_ = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network_));
    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder vat_message(scratch);
    auto vat = vat_message.getRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    auto auth = rpc_->bootstrap(vat).castAs<wire::Authenticator>();

    auto challenge = wait_handshake(auth.challengeRequest().send(), deadline, timeout);
    auto server_nonce = challenge.getServerNonce();
    auto client_nonce = random_bytes(kNonceBytes);
    auto proof = client_proof(key, {server_nonce.begin(), server_nonce.size()}, client_nonce);
    auto request = auth.respondRequest();
    request.setProof(capnp::Data::Reader(proof.data(), proof.size()));
    request.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
    auto response = wait_handshake(request.send(), deadline, timeout);
    auto expected = server_proof(key, {server_nonce.begin(), server_nonce.size()}, client_nonce);
    auto got = response.getServerProof();
    if (!equal_constant_time(expected, {got.begin(), got.size()})) {
      throw AuthenticationFailed(context_ + ": the server could not prove it knows the key");
    }
    manager_ = response.getManager();
    max_message_bytes_ = response.getMaxMessageBytes();
  }

  // The Manager capability, then the RPC system, then the network, which closes the socket under the fork lock as
  // it leaves the list. The thread's event loop goes with loop_ (if this was its last user).
  void close() {
    manager_.reset();
    rpc_ = nullptr;
    std::lock_guard lock(fork_state().mu);
    unlist_socket(socket_);
    network_ = nullptr;
  }

  std::shared_ptr<ThreadLoop> loop_;
  std::string context_;
  int socket_ = -1;
  std::optional<DirectCalls> direct_calls_;  // before network_: the network tells it of the connection's end
  kj::Own<SocketVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  std::optional<wire::Manager::Client> manager_;
  std::uint64_t max_message_bytes_ = 0;
};

namespace {

std::shared_ptr<Session> make_session(const Address& address, std::span<const std::uint8_t> key,
                                      std::chrono::milliseconds timeout, Transport transport) {
  return std::shared_ptr<Session>(new Session(address, key, timeout, transport), DeleteIfMadeHere<Session>());
}

// ClientOptions::connect_timeout, checked, and at most what poll(2) and the deadline arithmetic take (24.8 days).
std::chrono::milliseconds checked_connect_timeout(std::chrono::milliseconds timeout) {
  if (timeout <= std::chrono::milliseconds::zero()) {
    throw InvalidArgument("ClientOptions::connect_timeout must be positive (got " + std::to_string(timeout.count()) +
                          " ms)");
  }
  return std::min(timeout, std::chrono::milliseconds(std::numeric_limits<int>::max()));
}

// A Client's address: a server's only (port 0 means "any free port" to a server; a client must name one).
Address client_address(const std::string& text) {
  Address a = parse_address(text);
  if (a.tcp && a.port == 0) {
    throw InvalidArgument("manager address '" + text + "': port 0 lets a server pick a port; a client needs the "
                          "port the server got (Server::address(), or what `ipc-manager` prints)");
  }
  return a;
}

}  // namespace

// A Client's identity (address and key) and this process's connection for it. In the parent the connection
// never changes; a forked child replaces it on its first call (the parent's is kept by DeleteIfMadeHere).
class Endpoint {
 public:
  Endpoint(const std::string& address, std::span<const std::uint8_t> key, const ClientOptions& options)
      : address_(client_address(address)),
        key_(key.begin(), key.end()),
        connect_timeout_(checked_connect_timeout(options.connect_timeout)),
        transport_(options.transport),
        session_(make_session(address_, key, connect_timeout_, transport_)) {}
  ~Endpoint() { ::explicit_bzero(key_.data(), key_.size()); }

  const std::shared_ptr<Session>& session() {
    // Acquire: partner of the release below; session_ is the one made in this generation.
    if (generation_.load(std::memory_order_acquire) == fork_generation()) return session_;
    return reconnect();
  }

  const std::string& address() const { return address_.text; }
  // The server's limit as this process's connection (or, before it reconnected, its parent's) learnt it.
  std::uint64_t max_message_bytes() const { return session_->max_message_bytes(); }

 private:
  const std::shared_ptr<Session>& reconnect() {
    // try_lock: only a second thread can find the lock taken, and a Client belongs to one thread.
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) {
      throw StateError("manager at " + address_.text +
                       ": another thread is connecting this Client anew after fork(); a Client and its proxies belong "
                       "to one thread");
    }
    if (generation_.load(std::memory_order_relaxed) != fork_generation()) {
      session_ = make_session(address_, key_, connect_timeout_, transport_);
      // Release: partner of the acquire in session(): the new session_ is visible to whoever sees the generation.
      generation_.store(fork_generation(), std::memory_order_release);
    }
    return session_;
  }

  const Address address_;
  std::vector<std::uint8_t> key_;  // kept to connect anew after fork(); zeroed when the Client goes
  const std::chrono::milliseconds connect_timeout_;  // ClientOptions'; each connection (anew after fork()) has it
  const Transport transport_;                       // likewise
  std::mutex mu_;                  // taken only to replace session_ after fork()
  std::shared_ptr<Session> session_;
  std::atomic<unsigned> generation_{fork_generation()};  // of session_
};

void check_usable(Session& s) { s.check_usable(); }
void poll_briefly(kj::FunctionParam<bool(bool poll_port)> ready) {
  // As the queues do; the server polls likewise while requests flow. Bounded: a long call (a lock, a queue get)
  // sleeps after the spin. Spinning only while every runnable task has a CPU: on a busy machine a spinning client
  // takes the CPU its server needs to answer (measured: 2-7x slower pairs at load ~10). There it gives its CPU away
  // and looks again, kYieldsBeforeSleep times, before it sleeps: the server may be what waits for this CPU. The first
  // look comes before the first yield: it runs the event loop, which may still have this call's own request to write.
  // A connection on shared rings is looked at every turn with one load (poll_rings), the event port (its socket,
  // other connections) every kTurnsBetweenPolls turns; a connection on its socket alone, every turn.
  const bool spin = ipc::detail::spinning_pays();
  constexpr unsigned kTurnsBetweenPolls = 32;
  RingSpin ring_spin;
  const auto spin_end = std::chrono::steady_clock::now() + detail::kPollWindow;
  for (unsigned turn = 0;; ++turn) {
    if (!spin && turn > 0) {
      if (turn > detail::kYieldsBeforeSleep) return;
      ipc::detail::yield_cpu();
    }
    const bool ring_bytes = poll_rings();
    const bool poll_port = !ring_bytes && (turn % kTurnsBetweenPolls == kTurnsBetweenPolls - 1 || !rings_waiting());
    if ((ring_bytes || poll_port || turn == 0) && ready(poll_port)) return;
    if (spin && std::chrono::steady_clock::now() >= spin_end) return;
  }
}
kj::WaitScope& wait_scope(Session& s) { return s.wait_scope(); }
void rethrow(Session& s, const kj::Exception& e) { rethrow_as_ipc_error(e, s.context()); }
bool made_here(const Session& s) noexcept { return s.generation == fork_generation(); }

namespace {
// Waits until `call` has its reply: polls briefly, then sleeps until the next reply or the connection's end.
DirectCalls::Slot& await_direct(Session& s, DirectCall call) {
  s.check_usable();
  DirectCalls& calls = s.direct_calls();
  if (!calls.done(call)) {
    try {
      kj::WaitScope& scope = s.wait_scope();
      poll_briefly([&](bool poll_port) {
        if (poll_port) {
          scope.poll();
        } else {
          s.run_ready();  // bytes on a ring, or (first turn) the call's own write: no epoll_wait needed
        }
        return calls.done(call);
      });
      while (!calls.done(call)) calls.next_completion().wait(scope);
    } catch (const kj::Exception& e) {
      calls.release(call);  // the Future is spent: its slot goes when the reply is in
      rethrow_as_ipc_error(e, s.context());
    }
  }
  DirectCalls::Slot& slot = calls.slot(call);
  KJ_IF_MAYBE(failure, slot.failure) {
    kj::Exception e = kj::mv(*failure);
    calls.release(call);
    rethrow_as_ipc_error(e, s.context());
  }
  return slot;
}
}  // namespace

template <typename T>
  requires kDirectResult<T>
T take_direct(Session& s, DirectCall call) {
  DirectCalls::Slot& slot = await_direct(s, call);
  if constexpr (std::is_same_v<T, void>) {
    s.direct_calls().release(call);
  } else {
    T out;
    if constexpr (std::is_same_v<T, std::int64_t>) {
      out = slot.number;
    } else {
      out = std::move(slot.value);
    }
    s.direct_calls().release(call);
    return out;
  }
}
template void take_direct<void>(Session&, DirectCall);
template std::optional<Value> take_direct<std::optional<Value>>(Session&, DirectCall);
template std::int64_t take_direct<std::int64_t>(Session&, DirectCall);
void drop_direct(Session& s, DirectCall call) noexcept { s.direct_calls().release(call); }
const std::shared_ptr<Session>& current_session(Endpoint& e) { return e.session(); }

}  // namespace detail

namespace {

capnp::Text::Reader text(std::string_view s) { return capnp::Text::Reader(s.data(), s.size()); }

// The wire's encoding (manager.capnp): -1 waits forever. A negative duration has already passed: do not wait.
std::int64_t timeout_ns(std::optional<std::chrono::nanoseconds> t) {
  if (!t) return -1;
  return std::max<std::int64_t>(t->count(), 0);
}

// Every request goes out through here: the owner-thread check must come before the request touches the event
// loop, and the size check before anything is sent.
template <typename Request>
auto send(detail::Session& s, Request&& request) {
  s.check_usable();
  s.check_size(request.totalSize());
  return request.send();
}

// A hot call on the direct path (detail::DirectCalls), with the checks every request gets (send above).
template <typename Params, typename Fill>
detail::DirectCall direct(detail::Session& s, std::uint32_t import_id, std::uint64_t interface_id,
                          std::uint16_t method_id, capnp::MessageSize size, Fill&& fill,
                          detail::DirectCalls::Decode decode) {
  s.check_usable();
  s.check_size(size);
  return s.direct_calls().call<Params>(import_id, interface_id, method_id, size, std::forward<Fill>(fill), decode);
}

// Size hints for requests. Without one, Cap'n Proto allocates and zeroes an 8 KiB first segment for every request,
// which dominated the cost of small calls; a hint that is too small only costs a second segment.
constexpr capnp::MessageSize kSmallRequest{4, 0};  // scalar parameters only
std::uint64_t text_words(std::string_view s) { return (s.size() + 8) / 8; }
capnp::MessageSize words(std::string_view key) { return {4 + text_words(key), 0}; }
capnp::MessageSize words(std::string_view key, const Value& value) {
  return {4 + text_words(key) + wire_size_words(value), 0};
}
capnp::MessageSize value_words(const Value& value) { return {4 + wire_size_words(value), 0}; }
capnp::MessageSize words(const Value& a, const Value& b) { return {4 + wire_size_words(a) + wire_size_words(b), 0}; }
capnp::MessageSize words(const Value::List& values) {
  std::uint64_t n = 4;
  for (const auto& v : values) n += wire_size_words(v);
  return {n, 0};
}
capnp::MessageSize words(const Value::Map& entries) {
  std::uint64_t n = 4;
  for (const auto& [k, v] : entries) n += 2 + text_words(k) + wire_size_words(v);
  return {n, 0};
}

std::string str(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }

// Dict and Namespace make the same calls under other names; these fill and read them whatever the wire calls the
// key (`key` in Dict, `name` in Namespace).
template <typename Params>
Params keyed(Params params, std::string_view key) {
  if constexpr (requires { params.setKey(text(key)); }) {
    params.setKey(text(key));
  } else {
    params.setName(text(key));
  }
  return params;
}
template <typename Params>
Params keyed(Params params, std::string_view key, const Value& value) {
  Params out = keyed(std::move(params), key);
  to_wire(value, out.initValue());
  return out;
}
// A lookup's reply (Dict.get, Namespace.getAttr): nullopt when the key is absent.
template <typename Results>
std::optional<Value> found_value(const Results& r) {
  if (!r.getFound()) return std::nullopt;
  return from_wire(r.getValue());
}

// The direct path's methods (ordinals in manager.capnp) and how their results are read into a call's slot.
constexpr std::uint16_t kDictSet = 0;
constexpr std::uint16_t kDictGet = 1;
constexpr std::uint16_t kNamespaceSetAttr = 0;
constexpr std::uint16_t kNamespaceGetAttr = 1;
constexpr std::uint16_t kCounterAdd = 0;
constexpr std::uint16_t kCounterGet = 1;
constexpr std::uint16_t kCounterSet = 2;
void decode_nothing(capnp::AnyPointer::Reader, detail::DirectCalls::Slot&) {}
void decode_dict_get(capnp::AnyPointer::Reader results, detail::DirectCalls::Slot& slot) {
  slot.value = found_value(results.getAs<wire::Dict::GetResults>());
}
void decode_namespace_get(capnp::AnyPointer::Reader results, detail::DirectCalls::Slot& slot) {
  slot.value = found_value(results.getAs<wire::Namespace::GetAttrResults>());
}
void decode_counter_add(capnp::AnyPointer::Reader results, detail::DirectCalls::Slot& slot) {
  slot.number = results.getAs<wire::Counter::AddResults>().getValue();
}
void decode_counter_get(capnp::AnyPointer::Reader results, detail::DirectCalls::Slot& slot) {
  slot.number = results.getAs<wire::Counter::GetResults>().getValue();
}

Value::Map to_map(capnp::List<wire::Entry>::Reader entries) {
  Value::Map out;
  for (auto e : entries) out.insert_or_assign(str(e.getKey()), from_wire(e.getValue()));
  return out;
}

void fill_entries(const Value::Map& map, capnp::List<wire::Entry>::Builder out) {
  unsigned i = 0;
  for (const auto& [k, v] : map) {
    out[i].setKey(text(k));
    to_wire(v, out[i].initValue());
    ++i;
  }
}

}  // namespace

// ---- Client ----

detail::OpenedObject detail::open_object(Session& s, std::string_view name, Kind kind, Open mode,
                                         std::uint64_t max_size) {
  auto request = s.manager().openRequest(words(name));
  request.setName(text(name));
  request.setKind(to_wire(kind));
  request.setCreate(mode == Open::kCreate);
  request.setMaxSize(max_size);
  const std::uint64_t calls_before = s.network().calls_sent();
  auto promise = send(s, request);
  // Manager.open is method 0 of Manager (manager.capnp).
  s.network().watch_last_call(calls_before, capnp::typeId<wire::Manager>(), 0);
  auto response = s.wait(kj::mv(promise));
  std::optional<std::uint32_t> import_id;
  KJ_IF_MAYBE(id, s.network().take_opened_import()) { import_id = *id; }
  auto object = response.getObject();
  switch (object.which()) {
    case wire::Object::DICT: return {object.getDict(), import_id};
    case wire::Object::LIST: return {object.getList(), import_id};
    case wire::Object::NAMESPACE: return {object.getNamespace(), import_id};
    case wire::Object::QUEUE: return {object.getQueue(), import_id};
    case wire::Object::LOCK: return {object.getLock(), import_id};
    case wire::Object::EVENT: return {object.getEvent(), import_id};
    case wire::Object::VALUE: return {object.getValue(), import_id};
    case wire::Object::COUNTER: return {object.getCounter(), import_id};
  }
  throw Unsupported(s.context() + ": the server returned an object kind this client does not know");
}

Client::Client(const std::string& address, std::span<const std::uint8_t> key, ClientOptions options)
    : endpoint_(std::make_shared<detail::Endpoint>(address, key, options)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

std::size_t Client::max_message_bytes() const { return endpoint_->max_message_bytes(); }
const std::string& Client::address() const { return endpoint_->address(); }

DictProxy Client::dict(std::string_view name, Open mode) {
  return DictProxy(handle<wire::Dict>(name, Kind::kDict, mode, 0));
}
ListProxy Client::list(std::string_view name, Open mode) {
  return ListProxy(handle<wire::SharedList>(name, Kind::kList, mode, 0));
}
NamespaceProxy Client::namespace_(std::string_view name, Open mode) {
  return NamespaceProxy(handle<wire::Namespace>(name, Kind::kNamespace, mode, 0));
}
QueueProxy Client::queue(std::string_view name, std::size_t max_size, Open mode) {
  return QueueProxy(handle<wire::Queue>(name, Kind::kQueue, mode, max_size));
}
LockProxy Client::lock(std::string_view name, Open mode) {
  return LockProxy(handle<wire::Lock>(name, Kind::kLock, mode, 0));
}
EventProxy Client::event(std::string_view name, Open mode) {
  return EventProxy(handle<wire::Event>(name, Kind::kEvent, mode, 0));
}
ValueProxy Client::value(std::string_view name, Open mode) {
  return ValueProxy(handle<wire::SharedValue>(name, Kind::kValue, mode, 0));
}
CounterProxy Client::counter(std::string_view name, Open mode) {
  return CounterProxy(handle<wire::Counter>(name, Kind::kCounter, mode, 0));
}

bool Client::remove(std::string_view name) {
  auto& s = session();
  auto request = s.manager().removeRequest(words(name));
  request.setName(text(name));
  return s.wait(send(s, request)).getRemoved();
}

std::vector<ObjectRef> Client::objects() {
  auto& s = session();
  auto response = s.wait(send(s, s.manager().listRequest(kSmallRequest)));
  std::vector<ObjectRef> out;
  for (auto r : response.getObjects()) out.push_back(ObjectRef{str(r.getName()), from_wire(r.getKind())});
  return out;
}

ManagerStatus Client::status() {
  auto& s = session();
  auto response = s.wait(send(s, s.manager().statusRequest(kSmallRequest)));
  ManagerStatus out;
  for (auto r : response.getObjects()) out.objects.push_back(ObjectRef{str(r.getName()), from_wire(r.getKind())});
  for (auto c : response.getClients()) {
    out.clients.push_back(ConnectedClient{c.getPid(), c.getUid(), c.getAuthenticated(),
                                          std::chrono::milliseconds(c.getConnectedMs()), str(c.getAddress()),
                                          c.getCaller(), c.getSharedMemory()});
  }
  return out;
}

capnp::Capability::Client Client::service(std::string_view name) {
  auto& s = session();
  auto request = s.manager().getServiceRequest(words(name));
  request.setName(text(name));
  return s.wait(send(s, request)).getService();
}

// ---- DictProxy ----

Future<void> DictProxy::set_async(std::string_view key, const Value& value) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Dict::SetParams::Builder params) { keyed(params, key, value); };
    return Future<void>(h_.session(), direct<wire::Dict::SetParams>(s, *id, capnp::typeId<wire::Dict>(), kDictSet,
                                                                     words(key, value), fill, decode_nothing));
  }
  auto request = keyed(h_.cap().setRequest(words(key, value)), key, value);
  return Future<void>(h_.session(), send(s, request).ignoreResult());
}

Future<std::optional<Value>> DictProxy::get_async(std::string_view key) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Dict::GetParams::Builder params) { keyed(params, key); };
    return Future<std::optional<Value>>(
        h_.session(), direct<wire::Dict::GetParams>(s, *id, capnp::typeId<wire::Dict>(), kDictGet, words(key), fill,
                                                    decode_dict_get));
  }
  return Future<std::optional<Value>>(
      h_.session(), send(s, keyed(h_.cap().getRequest(words(key)), key))
                        .then([](capnp::Response<wire::Dict::GetResults> r) { return found_value(r); }));
}

bool DictProxy::erase(std::string_view key) {
  auto& s = h_.use();
  return s.wait(send(s, keyed(h_.cap().eraseRequest(words(key)), key))).getErased();
}

std::size_t DictProxy::size() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().sizeRequest(kSmallRequest))).getSize();
}

std::vector<std::string> DictProxy::keys() {
  auto& s = h_.use();
  auto response = s.wait(send(s, h_.cap().keysRequest(kSmallRequest)));
  std::vector<std::string> out;
  for (auto k : response.getKeys()) out.push_back(str(k));
  return out;
}

Value::Map DictProxy::items() {
  auto& s = h_.use();
  return to_map(s.wait(send(s, h_.cap().itemsRequest(kSmallRequest))).getEntries());
}

void DictProxy::update(const Value::Map& entries) {
  auto& s = h_.use();
  auto request = h_.cap().updateRequest(words(entries));
  fill_entries(entries, request.initEntries(static_cast<unsigned>(entries.size())));
  s.wait(send(s, request));
}

void DictProxy::clear() {
  auto& s = h_.use();
  s.wait(send(s, h_.cap().clearRequest(kSmallRequest)));
}

// ---- ListProxy ----

void ListProxy::append(const Value& value) {
  auto& s = h_.use();
  auto request = h_.cap().appendRequest(value_words(value));
  to_wire(value, request.initValue());
  s.wait(send(s, request));
}

Value ListProxy::get(std::int64_t index) {
  auto& s = h_.use();
  auto request = h_.cap().getRequest(kSmallRequest);
  request.setIndex(index);
  return from_wire(s.wait(send(s, request)).getValue());
}

void ListProxy::set(std::int64_t index, const Value& value) {
  auto& s = h_.use();
  auto request = h_.cap().setRequest(value_words(value));
  request.setIndex(index);
  to_wire(value, request.initValue());
  s.wait(send(s, request));
}

Value ListProxy::pop(std::int64_t index) {
  auto& s = h_.use();
  auto request = h_.cap().popRequest(kSmallRequest);
  request.setIndex(index);
  return from_wire(s.wait(send(s, request)).getValue());
}

std::size_t ListProxy::size() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().sizeRequest(kSmallRequest))).getSize();
}

Value::List ListProxy::items() {
  auto& s = h_.use();
  auto response = s.wait(send(s, h_.cap().itemsRequest(kSmallRequest)));
  Value::List out;
  for (auto v : response.getValues()) out.push_back(from_wire(v));
  return out;
}

void ListProxy::extend(const Value::List& values) {
  auto& s = h_.use();
  auto request = h_.cap().extendRequest(words(values));
  auto out = request.initValues(static_cast<unsigned>(values.size()));
  for (unsigned i = 0; i < values.size(); ++i) to_wire(values[i], out[i]);
  s.wait(send(s, request));
}

void ListProxy::clear() {
  auto& s = h_.use();
  s.wait(send(s, h_.cap().clearRequest(kSmallRequest)));
}

// ---- NamespaceProxy ----

void NamespaceProxy::set(std::string_view attr, const Value& value) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Namespace::SetAttrParams::Builder params) { keyed(params, attr, value); };
    return detail::take_direct<void>(
        s, direct<wire::Namespace::SetAttrParams>(s, *id, capnp::typeId<wire::Namespace>(), kNamespaceSetAttr,
                                                  words(attr, value), fill, decode_nothing));
  }
  s.wait(send(s, keyed(h_.cap().setAttrRequest(words(attr, value)), attr, value)));
}

std::optional<Value> NamespaceProxy::get(std::string_view attr) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Namespace::GetAttrParams::Builder params) { keyed(params, attr); };
    return detail::take_direct<std::optional<Value>>(
        s, direct<wire::Namespace::GetAttrParams>(s, *id, capnp::typeId<wire::Namespace>(), kNamespaceGetAttr,
                                                  words(attr), fill, decode_namespace_get));
  }
  return found_value(s.wait(send(s, keyed(h_.cap().getAttrRequest(words(attr)), attr))));
}

bool NamespaceProxy::erase(std::string_view attr) {
  auto& s = h_.use();
  return s.wait(send(s, keyed(h_.cap().delAttrRequest(words(attr)), attr))).getDeleted();
}

Value::Map NamespaceProxy::items() {
  auto& s = h_.use();
  return to_map(s.wait(send(s, h_.cap().attrsRequest(kSmallRequest))).getEntries());
}

// ---- QueueProxy ----

Future<Outcome> QueueProxy::put_async(const Value& value, std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = h_.use();
  auto request = h_.cap().putRequest(value_words(value));
  to_wire(value, request.initValue());
  request.setTimeoutNs(timeout_ns(timeout));
  return Future<Outcome>(h_.session(), send(s, request).then([](capnp::Response<wire::Queue::PutResults> r) {
    if (r.getOk()) return Outcome::kOk;
    return r.getClosed() ? Outcome::kClosed : Outcome::kTimeout;
  }));
}

QueueItem QueueProxy::get(std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = h_.use();
  auto request = h_.cap().getRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  // The server learns that this process took the item (and not only read its reply) from the count below, in the
  // shared rings' header page or as a frame on the socket: killed in between, the item is counted as abandoned
  // (docs/manager.md).
  const bool counts_taken = s.network().counts_taken_items();
  request.setCountsTaken(counts_taken);
  auto r = s.wait(send(s, request));
  if (!r.getOk()) return QueueItem{r.getClosed() ? Outcome::kClosed : Outcome::kTimeout, Value()};
  // The last step, once the item is decoded into the value returned, and also when decoding throws: the server
  // numbers the items this connection takes in the order it sent them, and a count that fell behind would mark
  // every later one as abandoned (an item that fails in a live process is told by the exception).
  KJ_DEFER(if (counts_taken) s.network().count_item_taken());
  return QueueItem{Outcome::kOk, from_wire(r.getValue())};
}

std::size_t QueueProxy::size_approx() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().sizeRequest(kSmallRequest))).getSize();
}

std::uint64_t QueueProxy::abandoned_count() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().abandonedRequest(kSmallRequest))).getCount();
}

void QueueProxy::close() {
  auto& s = h_.use();
  s.wait(send(s, h_.cap().closeRequest(kSmallRequest)));
}

// ---- Lock ----

LockHolder LockProxy::acquire() {
  auto holder = acquire_within(std::nullopt);
  // With no timeout the server answers only once the lock is ours (or fails the call).
  if (!holder) throw RemoteError(h_.use().context() + ": the server refused a lock acquire without a timeout");
  return std::move(*holder);
}

std::optional<LockHolder> LockProxy::acquire_within(std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = h_.use();
  auto request = h_.cap().acquireRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  auto r = s.wait(send(s, request));
  if (!r.getAcquired()) return std::nullopt;
  return LockHolder(h_.session(), r.getHolder());
}

bool LockProxy::locked() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().lockedRequest(kSmallRequest))).getLocked();
}

LockHolder& LockHolder::operator=(LockHolder&& other) noexcept {
  if (this != &other) {
    release_quietly();
    s_ = std::move(other.s_);
    cap_ = std::move(other.cap_);
    other.cap_.reset();
  }
  return *this;
}

LockHolder::~LockHolder() { release_quietly(); }

void LockHolder::release() {
  if (!cap_) throw StateError("LockHolder::release: the lock was already released");
  s_->check_usable();  // before the capability leaves cap_: a forked child's copy stays its parent's
  auto cap = std::move(*cap_);
  cap_.reset();
  s_->wait(send(*s_, cap.releaseRequest(kSmallRequest)));
}

void LockHolder::release_quietly() noexcept {
  if (!cap_ || !s_) return;
  if (!detail::made_here(*s_)) {
    // A forked child's copy: the lock is its parent's, and stays held.
    detail::keep_forever(std::move(*cap_));
    cap_.reset();
    return;
  }
  try {
    release();
  } catch (const Disconnected&) {
    // The server is gone, and the lock with it: there is nothing left to release.
  } catch (const Error& e) {
    // A destructor cannot throw; say what went wrong. Dropping the capability still releases it on the server.
    std::fprintf(stderr, "ipc::manager::LockHolder: release failed: %s\n", e.what());
  }
}

// ---- Event, Value, Counter ----

void EventProxy::set() {
  auto& s = h_.use();
  s.wait(send(s, h_.cap().setRequest(kSmallRequest)));
}

void EventProxy::clear() {
  auto& s = h_.use();
  s.wait(send(s, h_.cap().clearRequest(kSmallRequest)));
}

bool EventProxy::is_set() {
  auto& s = h_.use();
  return s.wait(send(s, h_.cap().isSetRequest(kSmallRequest))).getSet();
}

Outcome EventProxy::wait(std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = h_.use();
  auto request = h_.cap().waitRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  return s.wait(send(s, request)).getSet() ? Outcome::kOk : Outcome::kTimeout;
}

Value ValueProxy::get() {
  auto& s = h_.use();
  return from_wire(s.wait(send(s, h_.cap().getRequest(kSmallRequest))).getValue());
}

void ValueProxy::set(const Value& value) {
  auto& s = h_.use();
  auto request = h_.cap().setRequest(value_words(value));
  to_wire(value, request.initValue());
  s.wait(send(s, request));
}

CompareExchangeResult ValueProxy::compare_exchange(const Value& expected, const Value& desired) {
  auto& s = h_.use();
  auto request = h_.cap().compareExchangeRequest(words(expected, desired));
  to_wire(expected, request.initExpected());
  to_wire(desired, request.initDesired());
  auto r = s.wait(send(s, request));
  return CompareExchangeResult{r.getExchanged(), from_wire(r.getPrevious())};
}

Future<std::int64_t> CounterProxy::add_async(std::int64_t delta) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Counter::AddParams::Builder params) { params.setDelta(delta); };
    return Future<std::int64_t>(h_.session(), direct<wire::Counter::AddParams>(s, *id, capnp::typeId<wire::Counter>(),
                                                                               kCounterAdd, kSmallRequest, fill,
                                                                               decode_counter_add));
  }
  auto request = h_.cap().addRequest(kSmallRequest);
  request.setDelta(delta);
  return Future<std::int64_t>(
      h_.session(), send(s, request).then([](capnp::Response<wire::Counter::AddResults> r) { return r.getValue(); }));
}

std::int64_t CounterProxy::get() {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [](wire::Counter::GetParams::Builder) {};
    return detail::take_direct<std::int64_t>(
        s, direct<wire::Counter::GetParams>(s, *id, capnp::typeId<wire::Counter>(), kCounterGet, kSmallRequest, fill,
                                            decode_counter_get));
  }
  return s.wait(send(s, h_.cap().getRequest(kSmallRequest))).getValue();
}

void CounterProxy::set(std::int64_t value) {
  auto& s = h_.use();
  if (auto id = h_.import_id()) {
    auto fill = [&](wire::Counter::SetParams::Builder params) { params.setValue(value); };
    return detail::take_direct<void>(s, direct<wire::Counter::SetParams>(s, *id, capnp::typeId<wire::Counter>(),
                                                                         kCounterSet, kSmallRequest, fill,
                                                                         decode_nothing));
  }
  auto request = h_.cap().setRequest(kSmallRequest);
  request.setValue(value);
  s.wait(send(s, request));
}

}  // namespace ipc::manager

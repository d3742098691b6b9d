#include "manager/client.h"

#include <chrono>
#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "manager/detail/auth.h"
#include "manager/detail/socket_network.h"
#include "manager/detail/wire_errors.h"

namespace ipc::manager {
namespace detail {
namespace {

// Counts the fork()s this process descends from: a cheap "am I a child of the process that made this?" test for
// every call (getpid() is a system call). Relaxed: the child handler runs in the child's only thread before fork()
// returns there, so no other thread can observe the change.
std::atomic<unsigned> g_fork_generation{0};
[[maybe_unused]] const int g_fork_handler_registered = ::pthread_atfork(nullptr, nullptr, [] {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
});

// The KJ event loop of one thread, shared by that thread's Clients (KJ allows one loop per thread).
struct ThreadLoop {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  unsigned fork_generation = g_fork_generation.load(std::memory_order_relaxed);
  std::thread::id thread = std::this_thread::get_id();
};

std::shared_ptr<ThreadLoop> thread_loop() {
  thread_local std::weak_ptr<ThreadLoop> current;
  if (auto loop = current.lock()) {
    if (loop->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
      throw StateError(
          "this thread's Manager connection was made before fork(); in the child, connect from a new thread");
    }
    return loop;
  }
  auto loop = std::make_shared<ThreadLoop>();
  current = loop;
  return loop;
}

std::vector<std::uint8_t> nonce() {
  std::vector<std::uint8_t> out(kNonceBytes);
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t r = retry_on_eintr([&] { return ::getrandom(out.data() + done, out.size() - done, 0); });
    if (r < 0) throw_errno("getrandom");
    done += static_cast<std::size_t>(r);
  }
  return out;
}

int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    throw InvalidArgument("socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) + " bytes: '" +
                          path + "'");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  if (retry_on_eintr([&] { return ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr); }) != 0) {
    int err = errno;
    ::close(fd);
    throw SystemError(err, "connect to manager at " + path);
  }
  return fd;
}

}  // namespace

// One authenticated connection. Members are destroyed in reverse order: the Manager capability, then the RPC
// system, the network (which owns the socket), and the thread's event loop last (if this was its last user).
class Session {
 public:
  Session(const std::string& path, std::span<const std::uint8_t> key)
      : loop_(thread_loop()), path_(path), context_("manager at " + path) {
    if (key.size() < kMinKeyBytes) {
      throw InvalidArgument("manager key must be at least " + std::to_string(kMinKeyBytes) + " bytes");
    }
    // The server is trusted once it proved it knows the key, so replies may be as large as memory allows.
    capnp::ReaderOptions options;
    options.traversalLimitInWords = std::uint64_t{1} << 40;
    network_ = kj::heap<SocketVatNetwork>(loop_->io.unixEventPort, kj::AutoCloseFd(connect_unix(path)),
                                          capnp::rpc::twoparty::Side::CLIENT, options);
    rpc_ = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network_));

    capnp::word scratch[4] = {};
    capnp::MallocMessageBuilder vat_message(scratch);
    auto vat = vat_message.getRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    auto auth = rpc_->bootstrap(vat).castAs<wire::Authenticator>();

    auto challenge = wait(auth.challengeRequest().send());
    auto server_nonce = challenge.getServerNonce();
    auto client_nonce = nonce();
    auto proof = client_proof(key, {server_nonce.begin(), server_nonce.size()}, client_nonce);
    auto request = auth.respondRequest();
    request.setProof(capnp::Data::Reader(proof.data(), proof.size()));
    request.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
    auto response = wait(request.send());
    auto expected = server_proof(key, {server_nonce.begin(), server_nonce.size()}, client_nonce);
    auto got = response.getServerProof();
    if (!equal_constant_time(expected, {got.begin(), got.size()})) {
      throw AuthenticationFailed(context_ + ": the server could not prove it knows the key");
    }
    manager_ = response.getManager();
    max_message_bytes_ = response.getMaxMessageBytes();
  }

  template <typename T>
  T wait(kj::Promise<T>&& p) {
    check_usable();
    try {
      // Poll briefly before sleeping, as the queues do: a server that is awake (it polls while requests flow)
      // answers a small call within microseconds, while a sleep and a wake-up through epoll cost as much again or
      // far more on a virtual machine. Each poll is one non-blocking epoll_wait; the spin is bounded.
      const auto spin_end = std::chrono::steady_clock::now() + kReplySpin;
      while (!p.poll(loop_->io.waitScope) && std::chrono::steady_clock::now() < spin_end) {
      }
      return p.wait(loop_->io.waitScope);
    } catch (const kj::Exception& e) {
      rethrow_as_ipc_error(e, context_);
    }
  }

  static constexpr auto kReplySpin = std::chrono::microseconds(50);

  void check_usable() const {
    if (loop_->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
      throw StateError(context_ + ": this Client was created before fork(); connect a new one in the child");
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

  kj::WaitScope& wait_scope() { return loop_->io.waitScope; }
  wire::Manager::Client& manager() { return *manager_; }
  const std::string& context() const { return context_; }
  const std::string& path() const { return path_; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }

 private:
  std::shared_ptr<ThreadLoop> loop_;
  std::string path_;
  std::string context_;
  kj::Own<SocketVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  std::optional<wire::Manager::Client> manager_;
  std::uint64_t max_message_bytes_ = 0;
};

void check_usable(Session& s) { s.check_usable(); }
kj::WaitScope& wait_scope(Session& s) { return s.wait_scope(); }
void rethrow(Session& s, const kj::Exception& e) { rethrow_as_ipc_error(e, s.context()); }

}  // namespace detail

namespace {

capnp::Text::Reader text(std::string_view s) { return capnp::Text::Reader(s.data(), s.size()); }

std::int64_t timeout_ns(std::chrono::nanoseconds t) { return t.count() < 0 ? -1 : t.count(); }

// Every request goes out through here: the owner-thread check must come before the request touches the event
// loop, and the size check before anything is sent.
template <typename Request>
auto send(detail::Session& s, Request&& request) {
  s.check_usable();
  s.check_size(request.totalSize());
  return request.send();
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

Client::Client(const std::string& socket_path, std::span<const std::uint8_t> key)
    : s_(std::make_shared<detail::Session>(socket_path, key)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

std::size_t Client::max_message_bytes() const { return s_->max_message_bytes(); }
const std::string& Client::socket_path() const { return s_->path(); }

capnp::Capability::Client Client::open_object(std::string_view name, Kind kind, Open mode, std::uint64_t max_size) {
  auto request = s_->manager().openRequest(words(name));
  request.setName(text(name));
  request.setKind(to_wire(kind));
  request.setCreate(mode == Open::kCreate);
  request.setMaxSize(max_size);
  auto response = s_->wait(send(*s_, request));
  auto object = response.getObject();
  switch (object.which()) {
    case wire::Object::DICT: return object.getDict();
    case wire::Object::LIST: return object.getList();
    case wire::Object::NAMESPACE: return object.getNamespace();
    case wire::Object::QUEUE: return object.getQueue();
    case wire::Object::LOCK: return object.getLock();
    case wire::Object::EVENT: return object.getEvent();
    case wire::Object::VALUE: return object.getValue();
    case wire::Object::COUNTER: return object.getCounter();
  }
  throw Unsupported(s_->context() + ": the server returned an object kind this client does not know");
}

DictProxy Client::dict(std::string_view name, Open mode) {
  return DictProxy(s_, open_object(name, Kind::kDict, mode, 0).castAs<wire::Dict>());
}
ListProxy Client::list(std::string_view name, Open mode) {
  return ListProxy(s_, open_object(name, Kind::kList, mode, 0).castAs<wire::SharedList>());
}
NamespaceProxy Client::namespace_(std::string_view name, Open mode) {
  return NamespaceProxy(s_, open_object(name, Kind::kNamespace, mode, 0).castAs<wire::Namespace>());
}
QueueProxy Client::queue(std::string_view name, std::size_t max_size, Open mode) {
  return QueueProxy(s_, open_object(name, Kind::kQueue, mode, max_size).castAs<wire::Queue>());
}
LockProxy Client::lock(std::string_view name, Open mode) {
  return LockProxy(s_, open_object(name, Kind::kLock, mode, 0).castAs<wire::Lock>());
}
EventProxy Client::event(std::string_view name, Open mode) {
  return EventProxy(s_, open_object(name, Kind::kEvent, mode, 0).castAs<wire::Event>());
}
ValueProxy Client::value(std::string_view name, Open mode) {
  return ValueProxy(s_, open_object(name, Kind::kValue, mode, 0).castAs<wire::SharedValue>());
}
CounterProxy Client::counter(std::string_view name, Open mode) {
  return CounterProxy(s_, open_object(name, Kind::kCounter, mode, 0).castAs<wire::Counter>());
}

bool Client::remove(std::string_view name) {
  auto request = s_->manager().removeRequest(words(name));
  request.setName(text(name));
  return s_->wait(send(*s_, request)).getRemoved();
}

std::vector<ObjectRef> Client::objects() {
  auto response = s_->wait(send(*s_, s_->manager().listRequest(kSmallRequest)));
  std::vector<ObjectRef> out;
  for (auto r : response.getObjects()) out.push_back(ObjectRef{str(r.getName()), from_wire(r.getKind())});
  return out;
}

capnp::Capability::Client Client::service(std::string_view name) {
  auto request = s_->manager().getServiceRequest(words(name));
  request.setName(text(name));
  return s_->wait(send(*s_, request)).getService();
}

// ---- DictProxy ----

Future<void> DictProxy::set_async(std::string_view key, const Value& value) {
  auto request = cap_.setRequest(words(key, value));
  request.setKey(text(key));
  to_wire(value, request.initValue());
  return Future<void>(s_, send(*s_, request).ignoreResult());
}

Future<std::optional<Value>> DictProxy::get_async(std::string_view key) {
  auto request = cap_.getRequest(words(key));
  request.setKey(text(key));
  return Future<std::optional<Value>>(
      s_, send(*s_, request).then([](capnp::Response<wire::Dict::GetResults> r) -> std::optional<Value> {
        if (!r.getFound()) return std::nullopt;
        return from_wire(r.getValue());
      }));
}

bool DictProxy::erase(std::string_view key) {
  auto request = cap_.eraseRequest(words(key));
  request.setKey(text(key));
  return s_->wait(send(*s_, request)).getErased();
}

std::size_t DictProxy::size() { return s_->wait(send(*s_, cap_.sizeRequest(kSmallRequest))).getSize(); }

std::vector<std::string> DictProxy::keys() {
  auto response = s_->wait(send(*s_, cap_.keysRequest(kSmallRequest)));
  std::vector<std::string> out;
  for (auto k : response.getKeys()) out.push_back(str(k));
  return out;
}

Value::Map DictProxy::items() {
  return to_map(s_->wait(send(*s_, cap_.itemsRequest(kSmallRequest))).getEntries());
}

void DictProxy::update(const Value::Map& entries) {
  auto request = cap_.updateRequest(words(entries));
  fill_entries(entries, request.initEntries(static_cast<unsigned>(entries.size())));
  s_->wait(send(*s_, request));
}

void DictProxy::clear() { s_->wait(send(*s_, cap_.clearRequest(kSmallRequest))); }

// ---- ListProxy ----

void ListProxy::append(const Value& value) {
  auto request = cap_.appendRequest(value_words(value));
  to_wire(value, request.initValue());
  s_->wait(send(*s_, request));
}

Value ListProxy::get(std::int64_t index) {
  auto request = cap_.getRequest(kSmallRequest);
  request.setIndex(index);
  return from_wire(s_->wait(send(*s_, request)).getValue());
}

void ListProxy::set(std::int64_t index, const Value& value) {
  auto request = cap_.setRequest(value_words(value));
  request.setIndex(index);
  to_wire(value, request.initValue());
  s_->wait(send(*s_, request));
}

Value ListProxy::pop(std::int64_t index) {
  auto request = cap_.popRequest(kSmallRequest);
  request.setIndex(index);
  return from_wire(s_->wait(send(*s_, request)).getValue());
}

std::size_t ListProxy::size() { return s_->wait(send(*s_, cap_.sizeRequest(kSmallRequest))).getSize(); }

Value::List ListProxy::items() {
  auto response = s_->wait(send(*s_, cap_.itemsRequest(kSmallRequest)));
  Value::List out;
  for (auto v : response.getValues()) out.push_back(from_wire(v));
  return out;
}

void ListProxy::extend(const Value::List& values) {
  auto request = cap_.extendRequest(words(values));
  auto out = request.initValues(static_cast<unsigned>(values.size()));
  for (unsigned i = 0; i < values.size(); ++i) to_wire(values[i], out[i]);
  s_->wait(send(*s_, request));
}

void ListProxy::clear() { s_->wait(send(*s_, cap_.clearRequest(kSmallRequest))); }

// ---- NamespaceProxy ----

void NamespaceProxy::set(std::string_view attr, const Value& value) {
  auto request = cap_.setAttrRequest(words(attr, value));
  request.setName(text(attr));
  to_wire(value, request.initValue());
  s_->wait(send(*s_, request));
}

std::optional<Value> NamespaceProxy::get(std::string_view attr) {
  auto request = cap_.getAttrRequest(words(attr));
  request.setName(text(attr));
  auto response = s_->wait(send(*s_, request));
  if (!response.getFound()) return std::nullopt;
  return from_wire(response.getValue());
}

bool NamespaceProxy::erase(std::string_view attr) {
  auto request = cap_.delAttrRequest(words(attr));
  request.setName(text(attr));
  return s_->wait(send(*s_, request)).getDeleted();
}

Value::Map NamespaceProxy::items() {
  return to_map(s_->wait(send(*s_, cap_.attrsRequest(kSmallRequest))).getEntries());
}

// ---- QueueProxy ----

Future<QueueStatus> QueueProxy::put_async(const Value& value, std::chrono::nanoseconds timeout) {
  auto request = cap_.putRequest(value_words(value));
  to_wire(value, request.initValue());
  request.setTimeoutNs(timeout_ns(timeout));
  return Future<QueueStatus>(s_, send(*s_, request).then([](capnp::Response<wire::Queue::PutResults> r) {
    if (r.getOk()) return QueueStatus::kOk;
    return r.getClosed() ? QueueStatus::kClosed : QueueStatus::kTimeout;
  }));
}

QueueItem QueueProxy::get(std::chrono::nanoseconds timeout) {
  auto request = cap_.getRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  auto r = s_->wait(send(*s_, request));
  if (r.getOk()) return QueueItem{QueueStatus::kOk, from_wire(r.getValue())};
  return QueueItem{r.getClosed() ? QueueStatus::kClosed : QueueStatus::kTimeout, Value()};
}

std::size_t QueueProxy::size_approx() { return s_->wait(send(*s_, cap_.sizeRequest(kSmallRequest))).getSize(); }

std::uint64_t QueueProxy::abandoned_count() {
  return s_->wait(send(*s_, cap_.abandonedRequest(kSmallRequest))).getCount();
}

void QueueProxy::close() { s_->wait(send(*s_, cap_.closeRequest(kSmallRequest))); }

// ---- Lock ----

LockHolder LockProxy::acquire() {
  auto holder = try_acquire(kWaitForever);
  // With no timeout the server answers only once the lock is ours (or fails the call).
  if (!holder) throw RemoteError(s_->context() + ": the server refused a lock acquire without a timeout");
  return std::move(*holder);
}

std::optional<LockHolder> LockProxy::try_acquire(std::chrono::nanoseconds timeout) {
  auto request = cap_.acquireRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  auto r = s_->wait(send(*s_, request));
  if (!r.getAcquired()) return std::nullopt;
  return LockHolder(s_, r.getHolder());
}

bool LockProxy::locked() { return s_->wait(send(*s_, cap_.lockedRequest(kSmallRequest))).getLocked(); }

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
  auto cap = std::move(*cap_);
  cap_.reset();
  s_->wait(send(*s_, cap.releaseRequest(kSmallRequest)));
}

void LockHolder::release_quietly() noexcept {
  if (!cap_ || !s_) return;
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

void EventProxy::set() { s_->wait(send(*s_, cap_.setRequest(kSmallRequest))); }
void EventProxy::clear() { s_->wait(send(*s_, cap_.clearRequest(kSmallRequest))); }
bool EventProxy::is_set() { return s_->wait(send(*s_, cap_.isSetRequest(kSmallRequest))).getSet(); }
bool EventProxy::wait(std::chrono::nanoseconds timeout) {
  auto request = cap_.waitRequest(kSmallRequest);
  request.setTimeoutNs(timeout_ns(timeout));
  return s_->wait(send(*s_, request)).getSet();
}

Value ValueProxy::get() { return from_wire(s_->wait(send(*s_, cap_.getRequest(kSmallRequest))).getValue()); }

void ValueProxy::set(const Value& value) {
  auto request = cap_.setRequest(value_words(value));
  to_wire(value, request.initValue());
  s_->wait(send(*s_, request));
}

CompareExchangeResult ValueProxy::compare_exchange(const Value& expected, const Value& desired) {
  auto request = cap_.compareExchangeRequest(words(expected, desired));
  to_wire(expected, request.initExpected());
  to_wire(desired, request.initDesired());
  auto r = s_->wait(send(*s_, request));
  return CompareExchangeResult{r.getExchanged(), from_wire(r.getPrevious())};
}

Future<std::int64_t> CounterProxy::add_async(std::int64_t delta) {
  auto request = cap_.addRequest(kSmallRequest);
  request.setDelta(delta);
  return Future<std::int64_t>(
      s_, send(*s_, request).then([](capnp::Response<wire::Counter::AddResults> r) { return r.getValue(); }));
}

std::int64_t CounterProxy::get() { return s_->wait(send(*s_, cap_.getRequest(kSmallRequest))).getValue(); }

void CounterProxy::set(std::int64_t value) {
  auto request = cap_.setRequest(kSmallRequest);
  request.setValue(value);
  s_->wait(send(*s_, request));
}

}  // namespace ipc::manager

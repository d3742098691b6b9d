// manager/client.h: connecting to a Manager and using its shared objects through typed proxies.
//
//   auto server = ipc::manager::start_server();                      // server.h
//   ipc::manager::Client client(server.address(), server.key());   // a socket path, or "tcp:HOST:PORT"
//   auto d = client.dict("config");
//   d.set("threads", 8);
//   std::optional<Value> v = d.get("threads");                       // nullopt when absent
//
// Every proxy call is one Cap'n Proto RPC; the blocking forms wait for its reply. The `_async` forms return a
// Future at once, so many calls can be in flight on the connection (pipelining); get() on a Future waits for that
// one. Capabilities (`capability()`) and Client::wait() give full access to the raw Cap'n Proto API.
//
// Threads: a Client, its proxies, holders and futures belong to the thread that created the Client: KJ runs one
//   event loop per thread, and every call runs that loop while it waits. Several Clients on one thread share the
//   thread's loop. Use one Client per thread. A call from another thread throws ipc::StateError.
// Processes: Clients and proxies follow fork() as Python's proxies do. In a forked child (ipc::Process, a Pool
//   worker, plain fork()) the first call of an inherited Client or proxy connects anew (same path and key) on the
//   calling thread, the child's main thread included, and a proxy reopens its object by name; a new Client works
//   there too. The child drops its copies of the parent's connections at fork() and never sends on them, so the
//   parent's calls, locks and waits carry on. Futures, LockHolders, raw capabilities and promises stay with the
//   process that made them (ipc::StateError in a child). Unrelated processes connect by path, and processes on
//   other hosts by "tcp:HOST:PORT" (the same calls and guarantees). (docs/manager.md)
// Lifetime: proxies, holders and futures keep the connection alive; the connection closes when the Client and all
//   of them are gone. Closing the connection releases every lock it holds and cancels its pending waits on the
//   server. Objects themselves live in the server until removed or the server stops.
// Errors: see errors.h. Expected outcomes are return values: a missing key (nullopt), a timeout or a closed queue
//   (ipc::Outcome kTimeout / kClosed, ipc/base/error.h). Timeouts are std::chrono durations; std::nullopt (the
//   default) waits forever. Opening a missing object with Open::kExisting throws ipc::NotFound.
//   A dead or stopped server makes every pending and later call throw Disconnected, never hang. A request larger
//   than the server accepts throws ipc::InvalidArgument before anything is sent. Connecting is bounded too
//   (ClientOptions::connect_timeout): a host that does not answer, or a peer that accepts the connection but
//   never completes the handshake, is an ipc::SystemError (ETIMEDOUT) naming the address.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <kj/async.h>
#include <kj/function.h>

#include "manager/errors.h"
#include "manager/key_file.h"
#include "manager/manager.capnp.h"
#include "manager/value.h"

namespace ipc::manager {

// One open connection to a Manager, as Client::status() reports it.
struct ConnectedClient {
  std::int32_t pid = 0;  // the peer process when it connected (SO_PEERCRED); 0 when unknown (always over TCP)
  std::uint32_t uid = 0;  // meaningful for a Unix socket peer only (0 over TCP)
  bool authenticated = false;  // false: still in the challenge-response handshake
  std::chrono::milliseconds connected_for{0};
  std::string address;  // a TCP peer's "tcp:HOST:PORT"; empty for a Unix socket peer
  bool caller = false;  // the connection that asked for this status (Client::status())
  bool shared_memory = false;  // its bytes go through rings in shared memory (ClientOptions::Transport), not the socket
};

// What a Manager holds: its objects (sorted by name) and its open connections.
struct ManagerStatus {
  std::vector<ObjectRef> objects;
  std::vector<ConnectedClient> clients;
};

// How Client::dict() and friends treat a missing object.
enum class Open {
  kCreate,    // create it when absent (the usual)
  kExisting,  // a missing object is an ipc::NotFound
};

namespace detail {
class Session;
class Endpoint;
// Runs the session's event loop until `p` resolves; maps kj exceptions to errors.h. Defined in client.cc for the
// two result kinds the proxies use; Client::wait covers the rest.
void check_usable(Session& s);
kj::WaitScope& wait_scope(Session& s);
[[noreturn]] void rethrow(Session& s, const kj::Exception& e);
// Calls `ready` until it returns true or a short spin (50 us) ends, and only while spinning pays (every runnable task
// has a CPU): a server that is awake answers a small call within microseconds, while a sleep and a wake-up through
// epoll cost as much again or far more on a virtual machine. `ready(poll_port)` runs the event loop: with a
// non-blocking epoll_wait when `poll_port`, else only what is ready (bytes a shared ring brought: no system call).
void poll_briefly(kj::FunctionParam<bool(bool poll_port)> ready);

// Every wait of a Client for a reply: polls briefly, then sleeps until `p` resolves; maps kj exceptions to
// errors.h. REQUIRES: `p` was made on `s`.
template <typename T>
T wait_for(Session& s, kj::Promise<T>& p) {
  check_usable(s);
  try {
    kj::WaitScope& scope = wait_scope(s);
    poll_briefly([&](bool) { return p.poll(scope); });
    return p.wait(scope);
  } catch (const kj::Exception& e) {
    rethrow(s, e);
  }
}

// This process's connection of a Client: after fork() the first call in the child connects anew (and the
// parent's connection is left alone for good). Throws what connecting throws.
const std::shared_ptr<Session>& current_session(Endpoint& e);
// An opened object's capability, and the id under which this connection imports it when the server hosts it
// (what the direct path of the hot calls addresses; client.cc, DirectCalls).
struct OpenedObject {
  capnp::Capability::Client cap;
  std::optional<std::uint32_t> import_id;
};
OpenedObject open_object(Session& s, std::string_view name, Kind kind, Open mode, std::uint64_t max_size);

// A call sent on the direct path: its place in its session's table of calls in flight.
struct DirectCall {
  std::uint32_t slot;
};
// The result types of the direct calls.
template <typename T>
inline constexpr bool kDirectResult =
    std::is_same_v<T, void> || std::is_same_v<T, std::optional<Value>> || std::is_same_v<T, std::int64_t>;
// Waits for a direct call's reply (owner thread; polls briefly, as wait_for) and returns it, or throws what the
// call failed with, mapped as wait_for maps it. Defined in client.cc.
template <typename T>
  requires kDirectResult<T>
T take_direct(Session& s, DirectCall call);
// The Future of a direct call was dropped unread: its slot is freed once the reply is in.
void drop_direct(Session& s, DirectCall call) noexcept;
// False in a process forked after `s` was made: there `s` is a copy of the parent's connection.
bool made_here(const Session& s) noexcept;
// Keeps `object` (heap) alive, and never destroys it: what a child inherited of its parent's connection must not
// run its destructors there (they would release the parent's capabilities or cancel its calls).
void keep_pointer_forever(void* object);
template <typename T>
void keep_forever(T&& object) {
  keep_pointer_forever(new std::decay_t<T>(std::forward<T>(object)));
}

// A proxy's object: its name, and its capability on the connection it was opened on. In a forked child the first
// use() reopens the object by name on the child's own connection; the parent's capability is kept, not released.
template <typename Interface>
class ObjectHandle {
 public:
  using Cap = typename Interface::Client;

  ObjectHandle(std::shared_ptr<Endpoint> endpoint, std::shared_ptr<Session> session, OpenedObject opened,
               ObjectRef ref)
      : endpoint_(std::move(endpoint)),
        session_(std::move(session)),
        cap_(opened.cap.template castAs<Interface>()),
        import_id_(opened.import_id),
        ref_(std::move(ref)) {}
  ObjectHandle(ObjectHandle& other)  // capnp clients copy from non-const (a reference count)
      : endpoint_(other.endpoint_),
        session_(other.session_),
        cap_(other.cap_),
        import_id_(other.import_id_),
        ref_(other.ref_) {}
  ObjectHandle(ObjectHandle&&) noexcept = default;
  ObjectHandle& operator=(ObjectHandle& other) {
    if (this != &other) {
      keep_if_inherited();
      endpoint_ = other.endpoint_;
      session_ = other.session_;
      cap_ = other.cap_;
      import_id_ = other.import_id_;
      ref_ = other.ref_;
    }
    return *this;
  }
  ObjectHandle& operator=(ObjectHandle&& other) noexcept {
    if (this != &other) {
      keep_if_inherited();
      endpoint_ = std::move(other.endpoint_);
      session_ = std::move(other.session_);
      cap_ = kj::mv(other.cap_);
      import_id_ = other.import_id_;
      ref_ = std::move(other.ref_);
    }
    return *this;
  }
  ~ObjectHandle() { keep_if_inherited(); }

  // The session to call on; cap() is the object's capability on it.
  Session& use() {
    const auto& current = current_session(*endpoint_);
    if (current != session_) reopen(current);
    return *current;
  }
  Cap& cap() { return cap_; }
  // The id the direct path addresses the object by on session(); nullopt: use cap() (the server did not host it
  // plainly, or the open could not be matched with its reply). Valid while cap_ holds the import.
  std::optional<std::uint32_t> import_id() const { return import_id_; }
  const std::shared_ptr<Session>& session() const { return session_; }

 private:
  // Only in a forked child: the object as this process's connection sees it.
  void reopen(const std::shared_ptr<Session>& current) {
    check_usable(*current);
    OpenedObject fresh = open_object(*current, ref_.name, ref_.kind, Open::kExisting, 0);
    keep_if_inherited();
    cap_ = fresh.cap.template castAs<Interface>();
    import_id_ = fresh.import_id;
    session_ = current;
  }
  void keep_if_inherited() {
    if (session_ && !made_here(*session_)) keep_forever(kj::mv(cap_));
  }

  std::shared_ptr<Endpoint> endpoint_;
  std::shared_ptr<Session> session_;  // the connection cap_ belongs to
  Cap cap_;
  std::optional<std::uint32_t> import_id_;
  ObjectRef ref_;
};
}  // namespace detail

// The reply of an `_async` call. Single use: get() once (a second get() throws ipc::StateError). Dropping it
// without get() does not cancel a call that already reached the server. It belongs to the process that made it:
// in a forked child get() throws ipc::StateError, and dropping it there leaves the parent's call alone.
// Inside, a call is either a Cap'n Proto promise or, for the hot calls, a slot of the connection's direct path.
template <typename T>
class [[nodiscard]] Future {
 public:
  Future(std::shared_ptr<detail::Session> session, kj::Promise<T> promise)
      : session_(std::move(session)), promise_(kj::mv(promise)), has_promise_(true) {}
  Future(std::shared_ptr<detail::Session> session, detail::DirectCall call)
      : session_(std::move(session)), promise_(nullptr), direct_(call) {}
  Future(Future&& other) noexcept
      : session_(std::move(other.session_)),
        promise_(kj::mv(other.promise_)),
        has_promise_(std::exchange(other.has_promise_, false)),
        direct_(std::exchange(other.direct_, std::nullopt)) {}
  Future& operator=(Future&& other) noexcept {
    if (this != &other) {
      let_go();
      promise_ = kj::mv(other.promise_);
      has_promise_ = std::exchange(other.has_promise_, false);
      direct_ = std::exchange(other.direct_, std::nullopt);
      session_ = std::move(other.session_);
    }
    return *this;
  }
  ~Future() { let_go(); }

  // Waits for the reply (owner thread). Throws what the blocking form would.
  T get() {
    if constexpr (detail::kDirectResult<T>) {
      if (direct_) {
        detail::DirectCall call = *direct_;
        detail::check_usable(*session_);  // a refused get() (another thread, a forked child) leaves the call here
        direct_.reset();
        return detail::take_direct<T>(*session_, call);
      }
    }
    if (!has_promise_) throw StateError("Future::get: the reply was already taken");
    has_promise_ = false;
    return detail::wait_for(*session_, promise_);
  }

 private:
  // A forked child keeps the parent's promise and leaves the parent's direct call alone (never destroys either).
  void let_go() {
    if (!session_) return;
    if (!detail::made_here(*session_)) {
      if (has_promise_) detail::keep_forever(kj::mv(promise_));
      has_promise_ = false;
      return;
    }
    if (direct_) detail::drop_direct(*session_, *direct_);
    direct_.reset();
  }

  std::shared_ptr<detail::Session> session_;  // declared first: destroyed after the promise
  kj::Promise<T> promise_;
  bool has_promise_ = false;  // promise_ holds a call not yet taken
  std::optional<detail::DirectCall> direct_;
};

class DictProxy {
 public:
  static constexpr Kind kKind = Kind::kDict;

  void set(std::string_view key, const Value& value) { set_async(key, value).get(); }
  // nullopt when the key is absent.
  [[nodiscard]] std::optional<Value> get(std::string_view key) { return get_async(key).get(); }
  // false when the key was absent.
  bool erase(std::string_view key);
  [[nodiscard]] std::size_t size();
  [[nodiscard]] std::vector<std::string> keys();  // sorted
  [[nodiscard]] Value::Map items();
  void update(const Value::Map& entries);  // all or nothing
  void clear();

  Future<void> set_async(std::string_view key, const Value& value);
  Future<std::optional<Value>> get_async(std::string_view key);

  wire::Dict::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit DictProxy(detail::ObjectHandle<wire::Dict> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::Dict> h_;
};

class ListProxy {
 public:
  static constexpr Kind kKind = Kind::kList;

  // Indices follow Python (-1 is the last); out of range throws ipc::InvalidArgument.
  void append(const Value& value);
  [[nodiscard]] Value get(std::int64_t index);
  void set(std::int64_t index, const Value& value);
  Value pop(std::int64_t index = -1);
  [[nodiscard]] std::size_t size();
  [[nodiscard]] Value::List items();
  void extend(const Value::List& values);
  void clear();

  wire::SharedList::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit ListProxy(detail::ObjectHandle<wire::SharedList> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::SharedList> h_;
};

// An attribute bag (Python's Namespace).
class NamespaceProxy {
 public:
  static constexpr Kind kKind = Kind::kNamespace;

  void set(std::string_view attr, const Value& value);
  [[nodiscard]] std::optional<Value> get(std::string_view attr);
  bool erase(std::string_view attr);
  [[nodiscard]] Value::Map items();

  wire::Namespace::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit NamespaceProxy(detail::ObjectHandle<wire::Namespace> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::Namespace> h_;
};

struct QueueItem {
  // kOk; kTimeout: empty for the whole timeout; kClosed: close() was called and nothing is left.
  Outcome status = Outcome::kTimeout;
  Value value;  // null unless status == kOk
  explicit operator bool() const { return status == Outcome::kOk; }
};

// A FIFO queue, optionally bounded (Client::queue's max_size). Many producers and consumers, any processes.
class QueueProxy {
 public:
  static constexpr Kind kKind = Kind::kQueue;

  // Waits up to `timeout` (nullopt: forever; zero: do not wait) while the queue is full: kOk, kTimeout, or kClosed
  // (close() was called).
  [[nodiscard]] Outcome put(const Value& value, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return put_async(value, timeout).get();
  }
  // Waits up to `timeout` (nullopt: forever) while the queue is empty: status kOk, kTimeout or kClosed (closed
  // and drained). Items come out in the order the server received them. An item whose reply did not reach this
  // process (it died first) goes back to the front of the queue for the next get; on the shared-memory transport,
  // one whose reply this process read but that get() never returned (it died in between) is counted in
  // abandoned_count().
  [[nodiscard]] QueueItem get(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  [[nodiscard]] std::size_t size_approx();
  // Items lost to consumers that died: handed to a consumer that read them but died inside get(), or whose
  // connection ended without the server knowing whether the consumer received them (see docs/manager.md, "Queue
  // items and dying consumers"). Any process.
  [[nodiscard]] std::uint64_t abandoned_count();
  // Wakes every waiter: later puts return kClosed; gets drain what is left, then return kClosed.
  void close();

  Future<Outcome> put_async(const Value& value, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  wire::Queue::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit QueueProxy(detail::ObjectHandle<wire::Queue> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::Queue> h_;
};

// Proof of holding a Manager lock. Releases on release() or destruction; a process that dies holding one has its
// connection closed by the kernel, and the server then releases the lock for the next waiter. The lock stays with
// the process that acquired it: a forked child's copy cannot release() it (ipc::StateError) and leaves it alone.
class [[nodiscard]] LockHolder {
 public:
  LockHolder(LockHolder&&) noexcept = default;
  LockHolder& operator=(LockHolder&& other) noexcept;
  ~LockHolder();

  // Releases now and waits for the server to confirm. Throws ipc::StateError if already released.
  void release();

 private:
  friend class LockProxy;
  LockHolder(std::shared_ptr<detail::Session> s, wire::Lock::Holder::Client cap)
      : s_(std::move(s)), cap_(kj::mv(cap)) {}
  void release_quietly() noexcept;
  std::shared_ptr<detail::Session> s_;
  std::optional<wire::Lock::Holder::Client> cap_;  // empty once released
};

// A mutual-exclusion lock (not reentrant: a second acquire by the same holder waits like anyone else's).
// Happens-before: everything a holder did before release() happens before what the next holder does after
// acquiring (the server orders both calls).
class LockProxy {
 public:
  static constexpr Kind kKind = Kind::kLock;

  LockHolder acquire();
  // nullopt when the lock stayed held for the whole timeout (zero: do not wait).
  [[nodiscard]] std::optional<LockHolder> try_acquire(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0)) {
    return acquire_within(timeout);
  }
  [[nodiscard]] bool locked();

  wire::Lock::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit LockProxy(detail::ObjectHandle<wire::Lock> h) : h_(std::move(h)) {}
  std::optional<LockHolder> acquire_within(std::optional<std::chrono::nanoseconds> timeout);
  detail::ObjectHandle<wire::Lock> h_;
};

// A flag that waiters block on. Happens-before: set() happens before every wait() that returns kOk because of it.
class EventProxy {
 public:
  static constexpr Kind kKind = Kind::kEvent;

  void set();
  void clear();
  [[nodiscard]] bool is_set();
  // kOk once set; kTimeout when `timeout` (nullopt: forever) passed first.
  [[nodiscard]] Outcome wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  wire::Event::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit EventProxy(detail::ObjectHandle<wire::Event> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::Event> h_;
};

struct CompareExchangeResult {
  bool exchanged = false;
  Value previous;
};

// One shared Value (initially null).
class ValueProxy {
 public:
  static constexpr Kind kKind = Kind::kValue;

  [[nodiscard]] Value get();
  void set(const Value& value);
  // Stores `desired` when the value equals `expected`; atomic with respect to every other call.
  CompareExchangeResult compare_exchange(const Value& expected, const Value& desired);

  wire::SharedValue::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit ValueProxy(detail::ObjectHandle<wire::SharedValue> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::SharedValue> h_;
};

// A shared int64 counter (initially 0). add() is atomic; overflow is an ipc::InvalidArgument.
class CounterProxy {
 public:
  static constexpr Kind kKind = Kind::kCounter;

  // Returns the value after adding.
  std::int64_t add(std::int64_t delta = 1) { return add_async(delta).get(); }
  [[nodiscard]] std::int64_t get();
  void set(std::int64_t value);

  Future<std::int64_t> add_async(std::int64_t delta = 1);

  wire::Counter::Client& capability() {
    h_.use();
    return h_.cap();
  }

 private:
  friend class Client;
  explicit CounterProxy(detail::ObjectHandle<wire::Counter> h) : h_(std::move(h)) {}
  detail::ObjectHandle<wire::Counter> h_;
};

// How a Client connects.
struct ClientOptions {
  // How long connecting may take: reaching the server (TCP's handshake with a host that may be down or behind a
  // firewall that drops packets, or a Unix socket whose server is too busy to accept) and the authentication
  // handshake with it. Past it the Client's constructor, or the first call in a forked child that connects anew,
  // throws ipc::SystemError with ETIMEDOUT, naming the address. Resolving a host name is not bounded by it (the
  // system resolver has its own timeouts). Must be positive; more than 24.8 days (2^31 ms) counts as that much.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(30);
  // How the calls of a client of a Unix socket address travel (over TCP always through the socket):
  //   kSharedMemory: right after connecting, the client asks the server for a pair of rings in shared memory, one per
  //     direction, and the connection's bytes go through them; the socket only wakes a side that sleeps and tells
  //     each side when the other is gone. While both sides are busy, a call and its reply take no system call.
  //     A server that cannot make the rings keeps the connection on its socket.
  //   kSocket: every byte through the socket, as Cap'n Proto's own two-party transport (what another Cap'n Proto
  //     implementation serving the same schema understands).
  // Either way the messages, the guarantees and the errors are the same (docs/manager.md).
  enum class Transport { kSharedMemory, kSocket };
  Transport transport = Transport::kSharedMemory;
};

class Client {
 public:
  // Connects to the Manager at `address` (a Unix socket path, or "tcp:HOST:PORT" as ServerOptions::address says,
  // with a port other than 0) and authenticates with `key` (mutually: the server must prove it knows the key too),
  // within options.connect_timeout.
  // Throws ipc::InvalidArgument for a malformed address or a connect_timeout that is not positive, ipc::NotFound for
  // a host name that does not resolve, ipc::SystemError when the server cannot be reached or does not answer in
  // time (naming the address), AuthenticationFailed for a wrong key, Disconnected when the server goes away
  // meanwhile.
  Client(const std::string& address, std::span<const std::uint8_t> key, ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Open (by default: create when absent) the named object. An object of another kind under that name throws
  // ipc::InvalidArgument. Names are 1 to 255 bytes.
  DictProxy dict(std::string_view name, Open mode = Open::kCreate);
  ListProxy list(std::string_view name, Open mode = Open::kCreate);
  NamespaceProxy namespace_(std::string_view name, Open mode = Open::kCreate);
  // `max_size` bounds a queue this call creates (0: unbounded); an existing queue keeps its bound.
  QueueProxy queue(std::string_view name, std::size_t max_size = 0, Open mode = Open::kCreate);
  LockProxy lock(std::string_view name, Open mode = Open::kCreate);
  EventProxy event(std::string_view name, Open mode = Open::kCreate);
  ValueProxy value(std::string_view name, Open mode = Open::kCreate);
  CounterProxy counter(std::string_view name, Open mode = Open::kCreate);

  // Opens the object a Value refers to (a nested object): `client.open<DictProxy>(v.as_ref())`.
  // Throws ipc::InvalidArgument when `ref` is of another kind than Proxy.
  template <typename Proxy>
  Proxy open(const ObjectRef& ref);

  // Removes an object; holders of its proxies get ipc::StateError from then on. false when absent.
  bool remove(std::string_view name);
  // Every object, sorted by name.
  [[nodiscard]] std::vector<ObjectRef> objects();
  // Every object and every open connection (this one included), in one snapshot; `numa_mp manager status`.
  [[nodiscard]] ManagerStatus status();

  // A user capability the server registered with Server::serve(). ipc::NotFound when there is none by that name.
  // The interface is not checked here; calling a method it lacks fails with ipc::Unsupported.
  template <typename Interface>
  typename Interface::Client get_service(std::string_view name) {
    return service(name).template castAs<Interface>();
  }

  // Waits for any promise of this connection (raw Cap'n Proto calls), with errors.h's error mapping.
  // REQUIRES: `promise` was made in this process (a forked child cannot wait for its parent's calls).
  template <typename T>
  T wait(kj::Promise<T>&& promise) {
    return detail::wait_for(session(), promise);
  }

  // The largest request the server accepts (it said so when we authenticated).
  [[nodiscard]] std::size_t max_message_bytes() const;
  // The server's address as given (a TCP address in its canonical form: "tcp:HOST:PORT", IPv6 in brackets).
  const std::string& address() const;

 private:
  // This process's connection (connected anew on the first call after fork()).
  detail::Session& session() { return *detail::current_session(*endpoint_); }
  template <typename Interface>
  detail::ObjectHandle<Interface> handle(std::string_view name, Kind kind, Open mode, std::uint64_t max_size) {
    const auto& s = detail::current_session(*endpoint_);
    return detail::ObjectHandle<Interface>(endpoint_, s, detail::open_object(*s, name, kind, mode, max_size),
                                           ObjectRef{std::string(name), kind});
  }
  capnp::Capability::Client service(std::string_view name);

  std::shared_ptr<detail::Endpoint> endpoint_;
};

template <typename Proxy>
Proxy Client::open(const ObjectRef& ref) {
  if (ref.kind != Proxy::kKind) {
    throw InvalidArgument("object '" + ref.name + "' is a " + kind_name(ref.kind) + ", not a " +
                          kind_name(Proxy::kKind));
  }
  using Interface = typename std::remove_reference_t<decltype(std::declval<Proxy&>().capability())>::Calls;
  return Proxy(handle<Interface>(ref.name, ref.kind, Open::kExisting, 0));
}

}  // namespace ipc::manager

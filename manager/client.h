// manager/client.h: connecting to a Manager and using its shared objects through typed proxies.
//
//   auto server = ipc::manager::start_server();                      // server.h
//   ipc::manager::Client client(server.socket_path(), server.key());
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
// Processes: a Client does not survive fork(): in a child process, connect a new Client from a thread that has
//   none (a child's copy of its parent's thread throws ipc::StateError). Unrelated processes connect by path.
// Lifetime: proxies, holders and futures keep the connection alive; the connection closes when the Client and all
//   of them are gone. Closing the connection releases every lock it holds and cancels its pending waits on the
//   server. Objects themselves live in the server until removed or the server stops.
// Errors: see errors.h. Expected outcomes are return values: a missing key (nullopt), a timeout, a closed queue.
//   A dead or stopped server makes every pending and later call throw Disconnected, never hang. A request larger
//   than the server accepts throws ipc::InvalidArgument before anything is sent.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <kj/async.h>

#include "manager/errors.h"
#include "manager/manager.capnp.h"
#include "manager/value.h"

namespace ipc::manager {

namespace detail {
class Session;
// Runs the session's event loop until `p` resolves; maps kj exceptions to errors.h. Defined in client.cc for the
// two result kinds the proxies use; Client::wait covers the rest.
void check_usable(Session& s);
kj::WaitScope& wait_scope(Session& s);
[[noreturn]] void rethrow(Session& s, const kj::Exception& e);
}  // namespace detail

inline constexpr std::chrono::nanoseconds kWaitForever{-1};

// How Client::dict() and friends treat a missing object.
enum class Open {
  kCreate,    // create it when absent (the usual)
  kExisting,  // a missing object is an ipc::StateError
};

// The reply of an `_async` call. Single use: get() once. Dropping it without get() does not cancel a call that
// already reached the server.
template <typename T>
class [[nodiscard]] Future {
 public:
  Future(std::shared_ptr<detail::Session> session, kj::Promise<T> promise)
      : session_(std::move(session)), promise_(kj::mv(promise)) {}

  // Waits for the reply (owner thread). Throws what the blocking form would.
  T get() {
    detail::check_usable(*session_);
    try {
      return promise_.wait(detail::wait_scope(*session_));
    } catch (const kj::Exception& e) {
      detail::rethrow(*session_, e);
    }
  }

  // The underlying promise, for KJ combinators (the Future is spent).
  kj::Promise<T> release() && { return kj::mv(promise_); }

 private:
  std::shared_ptr<detail::Session> session_;  // declared first: destroyed after the promise
  kj::Promise<T> promise_;
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

  wire::Dict::Client& capability() { return cap_; }

 private:
  friend class Client;
  DictProxy(std::shared_ptr<detail::Session> s, wire::Dict::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Dict::Client cap_;
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

  wire::SharedList::Client& capability() { return cap_; }

 private:
  friend class Client;
  ListProxy(std::shared_ptr<detail::Session> s, wire::SharedList::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::SharedList::Client cap_;
};

// An attribute bag (Python's Namespace).
class NamespaceProxy {
 public:
  static constexpr Kind kKind = Kind::kNamespace;

  void set(std::string_view attr, const Value& value);
  [[nodiscard]] std::optional<Value> get(std::string_view attr);
  bool erase(std::string_view attr);
  [[nodiscard]] Value::Map items();

  wire::Namespace::Client& capability() { return cap_; }

 private:
  friend class Client;
  NamespaceProxy(std::shared_ptr<detail::Session> s, wire::Namespace::Client cap)
      : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Namespace::Client cap_;
};

enum class QueueStatus {
  kOk,
  kTimeout,  // full (put) or empty (get) for the whole timeout
  kClosed,   // close() was called (get: and nothing is left)
};

struct QueueItem {
  QueueStatus status = QueueStatus::kTimeout;
  Value value;  // null unless status == kOk
  explicit operator bool() const { return status == QueueStatus::kOk; }
};

// A FIFO queue, optionally bounded (Client::queue's max_size). Many producers and consumers, any processes.
class QueueProxy {
 public:
  static constexpr Kind kKind = Kind::kQueue;

  // Waits up to `timeout` while the queue is full (zero: do not wait).
  [[nodiscard]] QueueStatus put(const Value& value, std::chrono::nanoseconds timeout = kWaitForever) {
    return put_async(value, timeout).get();
  }
  // Waits up to `timeout` while the queue is empty. Items come out in the order the server received them. An item
  // whose reply did not reach this process (it died first) goes back to the front of the queue for the next get.
  [[nodiscard]] QueueItem get(std::chrono::nanoseconds timeout = kWaitForever);
  [[nodiscard]] std::size_t size_approx();
  // Items lost to consumers that died: handed to a consumer whose connection then ended without the server
  // knowing whether the consumer received them (see docs/manager.md, "Failure semantics"). Any process.
  [[nodiscard]] std::uint64_t abandoned_count();
  // Wakes every waiter: later puts return kClosed; gets drain what is left, then return kClosed.
  void close();

  Future<QueueStatus> put_async(const Value& value, std::chrono::nanoseconds timeout = kWaitForever);

  wire::Queue::Client& capability() { return cap_; }

 private:
  friend class Client;
  QueueProxy(std::shared_ptr<detail::Session> s, wire::Queue::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Queue::Client cap_;
};

// Proof of holding a Manager lock. Releases on release() or destruction; a process that dies holding one has its
// connection closed by the kernel, and the server then releases the lock for the next waiter.
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
  [[nodiscard]] std::optional<LockHolder> try_acquire(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(0));
  [[nodiscard]] bool locked();

  wire::Lock::Client& capability() { return cap_; }

 private:
  friend class Client;
  LockProxy(std::shared_ptr<detail::Session> s, wire::Lock::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Lock::Client cap_;
};

// A flag that waiters block on. Happens-before: set() happens before every wait() that returns true because of it.
class EventProxy {
 public:
  static constexpr Kind kKind = Kind::kEvent;

  void set();
  void clear();
  [[nodiscard]] bool is_set();
  // true once set; false when the timeout passed first.
  [[nodiscard]] bool wait(std::chrono::nanoseconds timeout = kWaitForever);

  wire::Event::Client& capability() { return cap_; }

 private:
  friend class Client;
  EventProxy(std::shared_ptr<detail::Session> s, wire::Event::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Event::Client cap_;
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

  wire::SharedValue::Client& capability() { return cap_; }

 private:
  friend class Client;
  ValueProxy(std::shared_ptr<detail::Session> s, wire::SharedValue::Client cap)
      : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::SharedValue::Client cap_;
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

  wire::Counter::Client& capability() { return cap_; }

 private:
  friend class Client;
  CounterProxy(std::shared_ptr<detail::Session> s, wire::Counter::Client cap) : s_(std::move(s)), cap_(kj::mv(cap)) {}
  std::shared_ptr<detail::Session> s_;
  wire::Counter::Client cap_;
};

class Client {
 public:
  // Connects to the Manager at `socket_path` and authenticates with `key` (mutually: the server must prove it
  // knows the key too). Throws ipc::SystemError when the socket cannot be reached, AuthenticationFailed for a
  // wrong key, Disconnected when the server goes away meanwhile.
  Client(const std::string& socket_path, std::span<const std::uint8_t> key);
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

  // A user capability the server registered with Server::serve(). ipc::StateError when there is none by that name.
  // The interface is not checked here; calling a method it lacks fails with ipc::Unsupported.
  template <typename Interface>
  typename Interface::Client get_service(std::string_view name) {
    return service(name).template castAs<Interface>();
  }

  // Waits for any promise of this connection (raw Cap'n Proto calls), with errors.h's error mapping.
  template <typename T>
  T wait(kj::Promise<T>&& promise) {
    detail::check_usable(*s_);
    try {
      return promise.wait(detail::wait_scope(*s_));
    } catch (const kj::Exception& e) {
      detail::rethrow(*s_, e);
    }
  }

  // The largest request the server accepts (it said so when we authenticated).
  [[nodiscard]] std::size_t max_message_bytes() const;
  const std::string& socket_path() const;

 private:
  capnp::Capability::Client open_object(std::string_view name, Kind kind, Open mode, std::uint64_t max_size);
  capnp::Capability::Client service(std::string_view name);

  std::shared_ptr<detail::Session> s_;
};

template <typename Proxy>
Proxy Client::open(const ObjectRef& ref) {
  if (ref.kind != Proxy::kKind) {
    throw InvalidArgument("object '" + ref.name + "' is a " + kind_name(ref.kind) + ", not a " +
                          kind_name(Proxy::kKind));
  }
  using Interface = typename std::remove_reference_t<decltype(std::declval<Proxy&>().capability())>::Calls;
  return Proxy(s_, open_object(ref.name, ref.kind, Open::kExisting, 0).template castAs<Interface>());
}

}  // namespace ipc::manager

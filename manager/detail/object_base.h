// manager/detail/object_base.h: what every server-side shared object shares: its name and removal (ObjectBase),
// reply size hints, and the long-poll helpers of the objects that wait. Internal to the objects target.
//
// Threads: the server's one event-loop thread, as everything in objects.h. Processes: server process only.
// Lifetime: objects are reference counted by the capabilities that point at them (see objects.h).
// Errors: calls fail with tagged kj exceptions (wire_errors.h).
#pragma once

#include <capnp/capability.h>
#include <capnp/schema.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "manager/detail/direct_client.h"
#include "manager/detail/wire_errors.h"
#include "manager/manager.capnp.h"
#include "manager/value.h"

namespace ipc::manager::detail {

// Base of every shared object: its name, and whether it was removed from the registry.
class ObjectBase {
 public:
  ObjectBase(std::string name, Kind kind) : name_(std::move(name)), kind_(kind) {}
  virtual ~ObjectBase() = default;

  void mark_removed() {
    removed_ = true;
    on_removed();
  }
  bool removed() const { return removed_; }

 protected:
  void check_alive() const {
    if (removed_) fail(Tag::kStateError, what() + " was removed");
  }
  kj::Exception removed_error() const {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                         kj::str("[StateError] ", what().c_str(), " was removed while the call waited"));
  }
  std::string what() const { return std::string(kind_name(kind_)) + " '" + name_ + "'"; }
  // Waiters of blocking calls fail when their object is removed, rather than waiting for nothing.
  virtual void on_removed() {}

 private:
  std::string name_;
  Kind kind_;
  bool removed_ = false;
};

// A new object: the capability that owns it, and the object itself (owned through `cap`). `plain`: the object as a
// Cap'n Proto server whose calls the server's direct path may answer straight from the socket (make_plain_object),
// or null.
struct MadeObject {
  capnp::Capability::Client cap;
  ObjectBase* object;
  capnp::Capability::Server* plain = nullptr;
  // The one interface `plain` serves and its number of methods: a call outside them is left to the RPC system
  // (dispatchCall reports it with a rejected promise, not a throw, which the direct path could not see).
  std::uint64_t plain_interface = 0;
  std::uint16_t plain_methods = 0;
};

template <typename Impl, typename... Args>
MadeObject make_object(Args&&... args) {
  auto own = kj::heap<Impl>(std::forward<Args>(args)...);
  ObjectBase* raw = own.get();
  typename Impl::Serves::Client cap = kj::mv(own);
  return {kj::mv(cap), raw};
}

// The same for an object whose calls run at once when they arrive (direct_client.h). REQUIRES: no method of its
// interface returns a capability, and it does not use thisCap().
template <typename Impl, typename... Args>
MadeObject make_direct_object(Args&&... args) {
  auto own = kj::heap<Impl>(std::forward<Args>(args)...);
  ObjectBase* raw = own.get();
  return {direct_client(kj::mv(own)), raw};
}

// The same for an object whose every call is plain: answered or thrown before the method returns (never a promise
// left pending or rejected), no capability taken or returned. The server's direct path answers such calls straight
// from the socket (SocketVatNetwork::offer_plain_export); the RPC system's path stays for everything else.
template <typename Impl, typename... Args>
MadeObject make_plain_object(Args&&... args) {
  auto own = kj::heap<Impl>(std::forward<Args>(args)...);
  ObjectBase* raw = own.get();
  capnp::Capability::Server* server = own.get();
  using Interface = typename Impl::Serves;
  const auto methods = capnp::Schema::from<Interface>().getMethods().size();
  return {direct_client(kj::mv(own)), raw, server, capnp::typeId<Interface>(), static_cast<std::uint16_t>(methods)};
}

inline std::string str(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }
inline capnp::Text::Reader text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

// Size hints for replies. Cap'n Proto sizes a reply's first segment by the hint of the first getResults() call and,
// without one, allocates and zeroes 8 KiB per reply, which dominated the cost of small calls. A hint that is too
// small only costs a second segment.
inline constexpr capnp::MessageSize kScalarResults{4, 0};  // a few scalars or one capability
inline capnp::MessageSize value_results(const Value& v) { return {4 + wire_size_words(v), 0}; }

// Runs a long-poll: `p` if it resolves within `timeout_ns` (negative: no limit), else `on_timeout()`.
// Losing the race destroys the other branch, which is how a waiter notices a timeout (isWaiting() turns false).
template <typename T, typename F>
kj::Promise<T> with_timeout(kj::Timer& timer, kj::Promise<T> p, std::int64_t timeout_ns, F on_timeout) {
  if (timeout_ns < 0) return p;
  // Clamped so that now + timeout cannot overflow the timer's int64 nanoseconds (1e18 ns is 31 years).
  std::int64_t ns = std::min<std::int64_t>(timeout_ns, 1'000'000'000'000'000'000);
  return p.exclusiveJoin(timer.afterDelay(ns * kj::NANOSECONDS).then(kj::mv(on_timeout)));
}

// Adds a waiter, first dropping the ones whose call already ended (timed out or cancelled by a disconnect) so that
// clients polling with short timeouts cannot grow the list without bound.
template <typename W, typename IsGone>
void push_waiter(std::deque<W>& waiters, W w, IsGone is_gone) {
  if (waiters.size() >= 64) std::erase_if(waiters, is_gone);
  waiters.push_back(kj::mv(w));
}

// Long polls must end when their caller goes away (disconnect, or a dropped promise): Cap'n Proto 0.9 keeps a
// call running after its caller left unless the method allows cancellation, and a waiter nobody cancels would be
// handed the next item or lock.
template <typename Context>
void wait_cancellably(Context& c) {
  c.allowCancellation();
}

template <typename T>
bool fulfiller_gone(kj::Own<kj::PromiseFulfiller<T>>& f) {
  return !f->isWaiting();
}

// Fails every waiter still waiting with `error` and forgets them all (an object removed while calls wait on it).
template <typename T>
void reject_waiters(std::deque<kj::Own<kj::PromiseFulfiller<T>>>& waiters, const kj::Exception& error) {
  for (auto& w : waiters) {
    if (w->isWaiting()) w->reject(kj::cp(error));
  }
  waiters.clear();
}

}  // namespace ipc::manager::detail

#include "manager/detail/objects.h"

#include <kj/async.h>

#include <algorithm>
#include <deque>

#include "ipc/base/error.h"
#include "manager/detail/socket_network.h"
#include "manager/detail/wire_errors.h"

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

namespace {

std::string str(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }
capnp::Text::Reader text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

// Size hints for replies. Cap'n Proto sizes a reply's first segment by the hint of the first getResults() call and,
// without one, allocates and zeroes 8 KiB per reply, which dominated the cost of small calls. A hint that is too
// small only costs a second segment.
constexpr capnp::MessageSize kScalarResults{4, 0};  // a few scalars or one capability
capnp::MessageSize value_results(const Value& v) { return {4 + wire_size_words(v), 0}; }
template <typename Map>
capnp::MessageSize map_results(const Map& map) {
  std::uint64_t words = 2;
  for (const auto& [k, v] : map) words += 2 + (k.size() + 8) / 8 + wire_size_words(v);
  return {words, 0};
}

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

// Map storage shared by Dict and Namespace (both are text -> Value maps, with different method names).
struct MapStore {
  Value::Map map;

  void set(capnp::Text::Reader key, wire::Value::Reader value) {
    Value v = from_wire(value);  // first: a bad value leaves the map unchanged
    // Looked up by view: replacing an existing key (the common case) allocates no key string.
    auto it = map.find(std::string_view(key.begin(), key.size()));
    if (it != map.end()) {
      it->second = std::move(v);
    } else {
      map.emplace(str(key), std::move(v));
    }
  }
  template <typename Context>
  void get(capnp::Text::Reader key, Context& c) const {
    auto it = map.find(std::string_view(key.begin(), key.size()));
    if (it == map.end()) return;  // found = false: the default reply
    auto results = c.getResults(value_results(it->second));
    results.setFound(true);
    to_wire(it->second, results.initValue());
  }
  bool erase(capnp::Text::Reader key) {
    auto it = map.find(std::string_view(key.begin(), key.size()));
    if (it == map.end()) return false;
    map.erase(it);
    return true;
  }
  void items(capnp::List<wire::Entry>::Builder out) const {
    unsigned i = 0;
    for (const auto& [k, v] : map) {
      out[i].setKey(text(k));
      to_wire(v, out[i].initValue());
      ++i;
    }
  }
  void update(capnp::List<wire::Entry>::Reader entries) {
    // Converted first so that a bad entry leaves the map unchanged.
    std::vector<std::pair<std::string, Value>> converted;
    converted.reserve(entries.size());
    for (auto e : entries) converted.emplace_back(str(e.getKey()), from_wire(e.getValue()));
    for (auto& [k, v] : converted) map.insert_or_assign(std::move(k), std::move(v));
  }
};

class DictImpl final : public wire::Dict::Server, public ObjectBase {
 public:
  explicit DictImpl(std::string name) : ObjectBase(std::move(name), Kind::kDict) {}

  kj::Promise<void> set(SetContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      store_.set(p.getKey(), p.getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> get(GetContext c) override {
    check_alive();
    store_.get(c.getParams().getKey(), c);
    return kj::READY_NOW;
  }
  kj::Promise<void> erase(EraseContext c) override {
    check_alive();
    c.getResults(kScalarResults).setErased(store_.erase(c.getParams().getKey()));
    return kj::READY_NOW;
  }
  kj::Promise<void> size(SizeContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSize(store_.map.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> keys(KeysContext c) override {
    check_alive();
    std::uint64_t words = 2;
    for (const auto& entry : store_.map) words += 1 + (entry.first.size() + 8) / 8;
    auto out = c.getResults(capnp::MessageSize{words, 0}).initKeys(static_cast<unsigned>(store_.map.size()));
    unsigned i = 0;
    for (const auto& entry : store_.map) out.set(i++, text(entry.first));
    return kj::READY_NOW;
  }
  kj::Promise<void> items(ItemsContext c) override {
    check_alive();
    store_.items(c.getResults(map_results(store_.map)).initEntries(static_cast<unsigned>(store_.map.size())));
    return kj::READY_NOW;
  }
  kj::Promise<void> update(UpdateContext c) override {
    return translate_to_wire([&] {
      check_alive();
      store_.update(c.getParams().getEntries());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> clear(ClearContext) override {
    check_alive();
    store_.map.clear();
    return kj::READY_NOW;
  }

 private:
  MapStore store_;
};

class NamespaceImpl final : public wire::Namespace::Server, public ObjectBase {
 public:
  explicit NamespaceImpl(std::string name) : ObjectBase(std::move(name), Kind::kNamespace) {}

  kj::Promise<void> setAttr(SetAttrContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      store_.set(p.getName(), p.getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> getAttr(GetAttrContext c) override {
    check_alive();
    store_.get(c.getParams().getName(), c);
    return kj::READY_NOW;
  }
  kj::Promise<void> delAttr(DelAttrContext c) override {
    check_alive();
    c.getResults(kScalarResults).setDeleted(store_.erase(c.getParams().getName()));
    return kj::READY_NOW;
  }
  kj::Promise<void> attrs(AttrsContext c) override {
    check_alive();
    store_.items(c.getResults(map_results(store_.map)).initEntries(static_cast<unsigned>(store_.map.size())));
    return kj::READY_NOW;
  }

 private:
  MapStore store_;
};

class ListImpl final : public wire::SharedList::Server, public ObjectBase {
 public:
  explicit ListImpl(std::string name) : ObjectBase(std::move(name), Kind::kList) {}

  kj::Promise<void> append(AppendContext c) override {
    return translate_to_wire([&] {
      check_alive();
      items_.push_back(from_wire(c.getParams().getValue()));
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> get(GetContext c) override {
    check_alive();
    const Value& v = items_[index(c.getParams().getIndex())];
    to_wire(v, c.getResults(value_results(v)).initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      std::size_t i = index(p.getIndex());
      items_[i] = from_wire(p.getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> pop(PopContext c) override {
    check_alive();
    std::size_t i = index(c.getParams().getIndex());
    to_wire(items_[i], c.getResults(value_results(items_[i])).initValue());
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i));
    return kj::READY_NOW;
  }
  kj::Promise<void> size(SizeContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSize(items_.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> items(ItemsContext c) override {
    check_alive();
    std::uint64_t words = 2;
    for (const auto& v : items_) words += wire_size_words(v);
    auto out = c.getResults(capnp::MessageSize{words, 0}).initValues(static_cast<unsigned>(items_.size()));
    for (unsigned i = 0; i < items_.size(); ++i) to_wire(items_[i], out[i]);
    return kj::READY_NOW;
  }
  kj::Promise<void> extend(ExtendContext c) override {
    return translate_to_wire([&] {
      check_alive();
      std::vector<Value> converted;
      for (auto v : c.getParams().getValues()) converted.push_back(from_wire(v));
      for (auto& v : converted) items_.push_back(std::move(v));
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> clear(ClearContext) override {
    check_alive();
    items_.clear();
    return kj::READY_NOW;
  }

 private:
  // Python indexing: -1 is the last item.
  std::size_t index(std::int64_t i) const {
    auto n = static_cast<std::int64_t>(items_.size());
    std::int64_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) {
      fail(Tag::kInvalidArgument, "list index " + std::to_string(i) + " out of range (size " + std::to_string(n) + ")");
    }
    return static_cast<std::size_t>(j);
  }

  std::vector<Value> items_;
};

class QueueImpl;

// A queue item on its way to a consumer. Until the network that carries the reply says the consumer read it, the
// item is not considered delivered: a Delivery destroyed without a verdict (the reply was never sent or never
// completely written, or the call was cancelled first) gives the item back to the front of its queue, and one
// whose fate is unknown counts it as abandoned.
class Delivery final : public Receipt {
 public:
  Delivery(QueueImpl& queue, wire::Queue::Client keep_alive, Value value)
      : queue_(queue), keep_alive_(kj::mv(keep_alive)), value_(std::move(value)) {}
  ~Delivery() noexcept(false) override;
  const Value& value() const { return value_; }
  void delivered() override { settled_ = true; }
  void fate_unknown() override;

 private:
  QueueImpl& queue_;
  wire::Queue::Client keep_alive_;  // the queue outlives its items in flight
  Value value_;
  bool settled_ = false;
};

class QueueImpl final : public wire::Queue::Server, public ObjectBase {
 public:
  QueueImpl(std::string name, kj::Timer& timer, std::uint64_t max_size)
      : ObjectBase(std::move(name), Kind::kQueue), timer_(timer), max_size_(max_size) {}

  kj::Promise<void> put(PutContext c) override {
    return translate_to_wire([&]() -> kj::Promise<void> {
      check_alive();
      auto p = c.getParams();
      auto r = c.getResults(kScalarResults);
      if (closed_) {
        r.setClosed(true);
        return kj::READY_NOW;
      }
      Value v = from_wire(p.getValue());
      if (items_.empty() && hand_to_getter(v)) {
        r.setOk(true);
        return kj::READY_NOW;
      }
      if (max_size_ == 0 || items_.size() < max_size_) {
        items_.push_back(std::move(v));
        r.setOk(true);
        return kj::READY_NOW;
      }
      if (p.getTimeoutNs() == 0) return kj::READY_NOW;
      wait_cancellably(c);
      auto paf = kj::newPromiseAndFulfiller<PutOutcome>();
      push_waiter(putters_, Putter{std::move(v), kj::mv(paf.fulfiller)},
                  [](Putter& w) { return !w.fulfiller->isWaiting(); });
      return with_timeout(timer_, kj::mv(paf.promise), p.getTimeoutNs(), [] { return PutOutcome{}; })
          .then([c](PutOutcome o) mutable {
            c.getResults(kScalarResults).setOk(o.ok);
            c.getResults(kScalarResults).setClosed(o.closed);
          });
    });
  }

  // A get from the connection `link` refers to (see QueueEndpoint).
  kj::Promise<void> get_from(GetContext c, NetworkRef& link) {
    check_alive();
    if (!items_.empty()) {
      auto delivery = kj::heap<Delivery>(*this, thisCap(), std::move(items_.front()));
      items_.pop_front();
      reply_with(c, kj::mv(delivery), link);
      admit_putter();
      return kj::READY_NOW;
    }
    // No getResults() before an item is known: reply_with() relies on the reply's message being made there.
    if (closed_) {
      c.getResults(kScalarResults).setClosed(true);
      return kj::READY_NOW;
    }
    std::int64_t timeout = c.getParams().getTimeoutNs();
    if (timeout == 0) return kj::READY_NOW;
    wait_cancellably(c);
    auto paf = kj::newPromiseAndFulfiller<GetOutcome>();
    push_waiter(getters_, kj::mv(paf.fulfiller), fulfiller_gone<GetOutcome>);
    return with_timeout(timer_, kj::mv(paf.promise), timeout, [] { return GetOutcome{}; })
        .then([c, link = kj::addRef(link)](GetOutcome o) mutable {
          if (o.state == GetOutcome::kValue) return reply_with(c, kj::mv(o.delivery), *link);
          c.getResults(kScalarResults).setClosed(o.state == GetOutcome::kClosed);
        });
  }

  kj::Promise<void> size(SizeContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSize(items_.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> abandoned(AbandonedContext c) override {
    check_alive();
    c.getResults(kScalarResults).setCount(abandoned_);
    return kj::READY_NOW;
  }

  kj::Promise<void> close(CloseContext) override {
    check_alive();
    closed_ = true;
    for (auto& g : getters_) {
      if (g->isWaiting()) g->fulfill(GetOutcome{GetOutcome::kClosed, {}});
    }
    for (auto& p : putters_) {
      if (p.fulfiller->isWaiting()) p.fulfiller->fulfill(PutOutcome{false, true});
    }
    getters_.clear();
    putters_.clear();
    return kj::READY_NOW;
  }

  // An item that did not reach its consumer goes back to the front, where it came from; in a bounded queue it may
  // take the size one over the bound for a while. A removed queue's items go with it.
  void give_back(Value v) {
    if (removed()) return;
    if (items_.empty() && hand_to_getter(v)) return;
    items_.push_front(std::move(v));
  }
  void count_abandoned() { ++abandoned_; }

 private:
  struct GetOutcome {
    enum State { kTimeout, kValue, kClosed } state = kTimeout;
    kj::Own<Delivery> delivery;  // with kValue
  };
  struct PutOutcome {
    bool ok = false;
    bool closed = false;
  };
  struct Putter {
    Value value;
    kj::Own<kj::PromiseFulfiller<PutOutcome>> fulfiller;
  };

  // Fills a get's reply with the item and ties the item to the message that carries it to the consumer.
  // REQUIRES: the call's results were not asked for yet (so that this makes the reply's message).
  static void reply_with(GetContext& c, kj::Own<Delivery> delivery, NetworkRef& link) {
    SocketVatNetwork* network = link.network;
    // The connection is gone or going: the reply would reach no one, and `delivery` gives the item back.
    if (network == nullptr || !network->can_send()) return;
    const std::uint64_t created = network->messages_created();
    auto r = c.getResults(value_results(delivery->value()));
    r.setOk(true);
    to_wire(delivery->value(), r.initValue());
    if (network->messages_created() == created) {
      // No message for the connection: the caller is in this process (a capability a user service holds), and the
      // results go straight to it.
      delivery->delivered();
    } else {
      network->track_last_message(created, kj::mv(delivery));
    }
  }

  void on_removed() override {
    for (auto& g : getters_) {
      if (g->isWaiting()) g->reject(removed_error());
    }
    for (auto& p : putters_) {
      if (p.fulfiller->isWaiting()) p.fulfiller->reject(removed_error());
    }
    getters_.clear();
    putters_.clear();
  }

  // A put into an empty queue goes straight to the oldest getter still waiting.
  bool hand_to_getter(Value& v) {
    while (!getters_.empty()) {
      auto g = kj::mv(getters_.front());
      getters_.pop_front();
      if (g->isWaiting()) {
        g->fulfill(GetOutcome{GetOutcome::kValue, kj::heap<Delivery>(*this, thisCap(), std::move(v))});
        return true;
      }
    }
    return false;
  }

  // A get made room in a bounded queue: the oldest putter still waiting gets in.
  void admit_putter() {
    while (!putters_.empty()) {
      Putter p = kj::mv(putters_.front());
      putters_.pop_front();
      if (p.fulfiller->isWaiting()) {
        items_.push_back(std::move(p.value));
        p.fulfiller->fulfill(PutOutcome{true, false});
        return;
      }
    }
  }

  kj::Timer& timer_;
  std::uint64_t max_size_;
  std::uint64_t abandoned_ = 0;
  bool closed_ = false;
  std::deque<Value> items_;
  std::deque<kj::Own<kj::PromiseFulfiller<GetOutcome>>> getters_;
  std::deque<Putter> putters_;
};

Delivery::~Delivery() noexcept(false) {
  if (!settled_) queue_.give_back(std::move(value_));
}

void Delivery::fate_unknown() {
  settled_ = true;
  queue_.count_abandoned();
}

// The queue as one connection sees it. Gets need to know which connection they answer, to follow their item to
// that client (QueueImpl::get_from); everything else goes straight to the shared queue.
class QueueEndpoint final : public wire::Queue::Server {
 public:
  QueueEndpoint(QueueImpl& queue, wire::Queue::Client keep_alive, kj::Own<NetworkRef> link)
      : queue_(queue), keep_alive_(kj::mv(keep_alive)), link_(kj::mv(link)) {}

  kj::Promise<void> put(PutContext c) override { return queue_.put(c); }
  kj::Promise<void> get(GetContext c) override { return queue_.get_from(c, *link_); }
  kj::Promise<void> size(SizeContext c) override { return queue_.size(c); }
  kj::Promise<void> abandoned(AbandonedContext c) override { return queue_.abandoned(c); }
  kj::Promise<void> close(CloseContext c) override { return queue_.close(c); }

 private:
  QueueImpl& queue_;
  wire::Queue::Client keep_alive_;
  kj::Own<NetworkRef> link_;
};

class LockImpl;

// Holding a Holder capability is holding the lock. Its destructor releases, so a client that drops the
// capability, disconnects or dies releases the lock; so does a waiter whose call was cancelled after it was handed
// the lock but before the reply went out (the Holder then dies inside the cancelled promise).
class HolderImpl final : public wire::Lock::Holder::Server {
 public:
  HolderImpl(LockImpl& lock, wire::Lock::Client keep_alive) : lock_(lock), keep_alive_(kj::mv(keep_alive)) {}
  ~HolderImpl();
  kj::Promise<void> release(ReleaseContext) override;

 private:
  LockImpl& lock_;
  wire::Lock::Client keep_alive_;  // the lock outlives every holder
  bool released_ = false;
};

class LockImpl final : public wire::Lock::Server, public ObjectBase {
 public:
  LockImpl(std::string name, kj::Timer& timer) : ObjectBase(std::move(name), Kind::kLock), timer_(timer) {}

  kj::Promise<void> acquire(AcquireContext c) override {
    check_alive();
    if (!held_) {
      held_ = true;
      c.getResults(kScalarResults).setAcquired(true);
      c.getResults(kScalarResults).setHolder(kj::heap<HolderImpl>(*this, thisCap()));
      return kj::READY_NOW;
    }
    std::int64_t timeout = c.getParams().getTimeoutNs();
    if (timeout == 0) return kj::READY_NOW;
    wait_cancellably(c);
    auto paf = kj::newPromiseAndFulfiller<kj::Own<HolderImpl>>();
    push_waiter(waiters_, kj::mv(paf.fulfiller), fulfiller_gone<kj::Own<HolderImpl>>);
    auto granted = paf.promise.then([](kj::Own<HolderImpl> h) { return kj::Maybe<kj::Own<HolderImpl>>(kj::mv(h)); });
    return with_timeout(timer_, kj::mv(granted), timeout, [] { return kj::Maybe<kj::Own<HolderImpl>>(nullptr); })
        .then([c](kj::Maybe<kj::Own<HolderImpl>> holder) mutable {
          KJ_IF_MAYBE(h, holder) {
            c.getResults(kScalarResults).setAcquired(true);
            c.getResults(kScalarResults).setHolder(kj::mv(*h));
          }
        });
  }

  kj::Promise<void> locked(LockedContext c) override {
    check_alive();
    c.getResults(kScalarResults).setLocked(held_);
    return kj::READY_NOW;
  }

  // Passes the lock to the oldest waiter still waiting, or unlocks.
  void release_one() {
    while (!waiters_.empty()) {
      auto w = kj::mv(waiters_.front());
      waiters_.pop_front();
      if (w->isWaiting()) {
        w->fulfill(kj::heap<HolderImpl>(*this, thisCap()));
        return;
      }
    }
    held_ = false;
  }

 private:
  void on_removed() override {
    for (auto& w : waiters_) {
      if (w->isWaiting()) w->reject(removed_error());
    }
    waiters_.clear();
  }

  kj::Timer& timer_;
  bool held_ = false;
  std::deque<kj::Own<kj::PromiseFulfiller<kj::Own<HolderImpl>>>> waiters_;
};

HolderImpl::~HolderImpl() {
  if (!released_) lock_.release_one();
}

kj::Promise<void> HolderImpl::release(ReleaseContext) {
  if (released_) fail(Tag::kStateError, "lock already released through this holder");
  released_ = true;
  lock_.release_one();
  return kj::READY_NOW;
}

class EventImpl final : public wire::Event::Server, public ObjectBase {
 public:
  EventImpl(std::string name, kj::Timer& timer) : ObjectBase(std::move(name), Kind::kEvent), timer_(timer) {}

  kj::Promise<void> set(SetContext) override {
    check_alive();
    flag_ = true;
    for (auto& w : waiters_) {
      if (w->isWaiting()) w->fulfill(true);
    }
    waiters_.clear();
    return kj::READY_NOW;
  }
  kj::Promise<void> clear(ClearContext) override {
    check_alive();
    flag_ = false;
    return kj::READY_NOW;
  }
  kj::Promise<void> isSet(IsSetContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSet(flag_);
    return kj::READY_NOW;
  }
  kj::Promise<void> wait(WaitContext c) override {
    check_alive();
    std::int64_t timeout = c.getParams().getTimeoutNs();
    if (flag_ || timeout == 0) {
      c.getResults(kScalarResults).setSet(flag_);
      return kj::READY_NOW;
    }
    wait_cancellably(c);
    auto paf = kj::newPromiseAndFulfiller<bool>();
    push_waiter(waiters_, kj::mv(paf.fulfiller), fulfiller_gone<bool>);
    return with_timeout(timer_, kj::mv(paf.promise), timeout, [] { return false; }).then([c](bool set) mutable {
      c.getResults(kScalarResults).setSet(set);
    });
  }

 private:
  void on_removed() override {
    for (auto& w : waiters_) {
      if (w->isWaiting()) w->reject(removed_error());
    }
    waiters_.clear();
  }

  kj::Timer& timer_;
  bool flag_ = false;
  std::deque<kj::Own<kj::PromiseFulfiller<bool>>> waiters_;
};

class ValueImpl final : public wire::SharedValue::Server, public ObjectBase {
 public:
  explicit ValueImpl(std::string name) : ObjectBase(std::move(name), Kind::kValue) {}

  kj::Promise<void> get(GetContext c) override {
    check_alive();
    to_wire(value_, c.getResults(value_results(value_)).initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    return translate_to_wire([&] {
      check_alive();
      value_ = from_wire(c.getParams().getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> compareExchange(CompareExchangeContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      Value expected = from_wire(p.getExpected());
      Value desired = from_wire(p.getDesired());
      auto r = c.getResults(value_results(value_));
      to_wire(value_, r.initPrevious());
      if (value_ == expected) {
        value_ = std::move(desired);
        r.setExchanged(true);
      }
      return kj::READY_NOW;
    });
  }

 private:
  Value value_;
};

class CounterImpl final : public wire::Counter::Server, public ObjectBase {
 public:
  explicit CounterImpl(std::string name) : ObjectBase(std::move(name), Kind::kCounter) {}

  kj::Promise<void> add(AddContext c) override {
    check_alive();
    std::int64_t delta = c.getParams().getDelta();
    std::int64_t result;
    if (__builtin_add_overflow(value_, delta, &result)) {
      fail(Tag::kInvalidArgument, "counter overflow: " + std::to_string(value_) + " + " + std::to_string(delta));
    }
    value_ = result;
    c.getResults(kScalarResults).setValue(value_);
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext c) override {
    check_alive();
    c.getResults(kScalarResults).setValue(value_);
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    check_alive();
    value_ = c.getParams().getValue();
    return kj::READY_NOW;
  }

 private:
  std::int64_t value_ = 0;
};

template <typename Impl, typename... Args>
std::pair<capnp::Capability::Client, ObjectBase*> make(Args&&... args) {
  auto own = kj::heap<Impl>(std::forward<Args>(args)...);
  ObjectBase* raw = own.get();
  typename Impl::Serves::Client cap = kj::mv(own);
  return {kj::mv(cap), raw};
}

}  // namespace

void validate_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.find('\0') != std::string_view::npos) {
    throw InvalidArgument("object names are 1 to 255 bytes without NUL (got " + std::to_string(name.size()) +
                          " bytes)");
  }
}

Registry::~Registry() = default;

void Registry::open(kj::StringPtr name_text, Kind kind, bool create, std::uint64_t max_size,
                    wire::Object::Builder out, NetworkRef& link) {
  std::string_view name(name_text.begin(), name_text.size());
  translate_to_wire([&] { validate_name(name); });
  auto it = objects_.find(name);
  if (it != objects_.end()) {
    if (it->second.kind != kind) {
      fail(Tag::kInvalidArgument, "object '" + std::string(name) + "' is a " + kind_name(it->second.kind) +
                                      ", not a " + kind_name(kind));
    }
  } else {
    if (!create) fail(Tag::kNotFound, "no object named '" + std::string(name) + "'");
    std::string n(name);
    std::pair<capnp::Capability::Client, ObjectBase*> made = [&] {
      switch (kind) {
        case Kind::kDict: return make<DictImpl>(n);
        case Kind::kList: return make<ListImpl>(n);
        case Kind::kNamespace: return make<NamespaceImpl>(n);
        case Kind::kQueue: return make<QueueImpl>(n, timer_, max_size);
        case Kind::kLock: return make<LockImpl>(n, timer_);
        case Kind::kEvent: return make<EventImpl>(n, timer_);
        case Kind::kValue: return make<ValueImpl>(n);
        case Kind::kCounter: return make<CounterImpl>(n);
      }
      fail(Tag::kInvalidArgument, "unknown object kind");
    }();
    it = objects_.emplace(n, Entry{kind, kj::mv(made.first), made.second}).first;
  }
  auto& cap = it->second.cap;
  switch (kind) {
    case Kind::kDict: out.setDict(cap.castAs<wire::Dict>()); break;
    case Kind::kList: out.setList(cap.castAs<wire::SharedList>()); break;
    case Kind::kNamespace: out.setNamespace(cap.castAs<wire::Namespace>()); break;
    case Kind::kQueue:
      out.setQueue(kj::heap<QueueEndpoint>(static_cast<QueueImpl&>(*it->second.object), cap.castAs<wire::Queue>(),
                                           kj::addRef(link)));
      break;
    case Kind::kLock: out.setLock(cap.castAs<wire::Lock>()); break;
    case Kind::kEvent: out.setEvent(cap.castAs<wire::Event>()); break;
    case Kind::kValue: out.setValue(cap.castAs<wire::SharedValue>()); break;
    case Kind::kCounter: out.setCounter(cap.castAs<wire::Counter>()); break;
  }
}

bool Registry::remove(kj::StringPtr name) {
  auto it = objects_.find(std::string_view(name.begin(), name.size()));
  if (it == objects_.end()) return false;
  it->second.object->mark_removed();
  objects_.erase(it);
  return true;
}

std::vector<ObjectRef> Registry::list() const {
  std::vector<ObjectRef> out;
  out.reserve(objects_.size());
  for (const auto& [name, entry] : objects_) out.push_back(ObjectRef{name, entry.kind});
  return out;
}

void Registry::serve(std::string name, capnp::Capability::Client service) {
  services_.insert_or_assign(std::move(name), kj::mv(service));
}

capnp::Capability::Client Registry::service(kj::StringPtr name) {
  auto it = services_.find(std::string_view(name.begin(), name.size()));
  if (it == services_.end()) fail(Tag::kNotFound, "no service named '" + std::string(name.cStr()) + "'");
  return it->second;
}

}  // namespace ipc::manager::detail

#include "manager/detail/waiting_objects.h"

#include <deque>
#include <utility>

#include "manager/detail/socket_network.h"

namespace ipc::manager::detail {
namespace {

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
    // Read now: the parameters need not outlive the wait below.
    const bool counts_taken = c.getParams().getCountsTaken();
    if (!items_.empty()) {
      auto delivery = kj::heap<Delivery>(*this, thisCap(), std::move(items_.front()));
      items_.pop_front();
      reply_with(c, kj::mv(delivery), link, counts_taken);
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
        .then([c, link = kj::addRef(link), counts_taken](GetOutcome o) mutable {
          if (o.state == GetOutcome::kValue) return reply_with(c, kj::mv(o.delivery), *link, counts_taken);
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

  // Fills a get's reply with the item and ties the item to the message that carries it to the consumer (which
  // counts taking it when `counts_taken`: SocketVatNetwork::track_last_message).
  // REQUIRES: the call's results were not asked for yet (so that this makes the reply's message).
  static void reply_with(GetContext& c, kj::Own<Delivery> delivery, NetworkRef& link, bool counts_taken) {
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
      network->track_last_message(created, kj::mv(delivery), counts_taken);
    }
  }

  void on_removed() override {
    reject_waiters(getters_, removed_error());
    for (auto& p : putters_) {
      if (p.fulfiller->isWaiting()) p.fulfiller->reject(removed_error());
    }
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
  void on_removed() override { reject_waiters(waiters_, removed_error()); }

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
  void on_removed() override { reject_waiters(waiters_, removed_error()); }

  kj::Timer& timer_;
  bool flag_ = false;
  std::deque<kj::Own<kj::PromiseFulfiller<bool>>> waiters_;
};

}  // namespace

MadeObject make_queue(std::string name, kj::Timer& timer, std::uint64_t max_size) {
  return make_object<QueueImpl>(std::move(name), timer, max_size);
}
MadeObject make_lock(std::string name, kj::Timer& timer) { return make_object<LockImpl>(std::move(name), timer); }
MadeObject make_event(std::string name, kj::Timer& timer) { return make_direct_object<EventImpl>(std::move(name), timer); }

wire::Queue::Client queue_endpoint(ObjectBase& queue, wire::Queue::Client cap, NetworkRef& link) {
  return kj::heap<QueueEndpoint>(static_cast<QueueImpl&>(queue), kj::mv(cap), kj::addRef(link));
}

}  // namespace ipc::manager::detail

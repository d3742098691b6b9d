// ipc/shared/value.h: Value<T>, one trivially copyable value in shared memory, with lock-free atomic operations
// where T allows them and a robust Lock (get_lock()) for compound updates.
//
// Happens-before: a store() (or read-modify-write) happens before every load() that reads its value; everything
// done under get_lock() happens before everything the next holder of get_lock() does.
//
// Threads: every method is safe from any thread.
// Processes: Value<T> lives in shared memory (a Segment, by name, or any MAP_SHARED mapping; address-free) and
//   is used from every process that maps it.
//   Two ways to update it, which do not exclude each other:
//   - lock-free (only when std::atomic_ref<T> is always lock-free, e.g. every integer, pointer-free small struct):
//     load, store, exchange, compare_exchange, and for integers fetch_add / fetch_sub. No lock, no system call.
//   - locked: lock() returns a guard over get_lock() through which a compound update (read, compute, write) is
//     atomic with respect to every other *locked* update. A lock-free fetch_add by another process is not
//     excluded by the lock: pick one discipline per value.
//   A T that is not lock-free has only the locked path (load/store do not exist for it).
// Lifetime: create() in a Segment or construct in place once. A process that dies in the middle of a locked
//   update leaves the lock in the owner-died state: the next lock() reports it (owner_died()), the caller checks
//   and repairs the value and calls mark_consistent() (see ipc/sync/lock.h). Lock-free operations are never torn.
// Errors: owner death is a result (ValueLock::owner_died()); misuse throws as Lock does; open of a missing name
//   throws NotFound; create of a taken name, open of another kind ("... is an Array, not a Value") or size throw
//   InvalidArgument.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "ipc/segment/named.h"
#include "ipc/sync/lock.h"

namespace ipc {

template <typename T>
class Value;

// Exclusive access to a Value's T while holding its lock (RAII; one thread).
template <typename T>
class [[nodiscard]] ValueLock {
 public:
  // True when the previous holder died holding the lock: check and repair the value, then mark_consistent().
  bool owner_died() const { return guard_.owner_died(); }
  void mark_consistent() { guard_.mark_consistent(); }

  // Reads and writes under the lock. For a lock-free T these are relaxed atomic accesses (so that lock-free
  // readers elsewhere never race with them); the lock orders them.
  T get() const {
    if constexpr (Value<T>::kLockFree) {
      return std::atomic_ref<T>(*value_).load(std::memory_order_relaxed);
    } else {
      return *value_;
    }
  }
  void set(const T& v) {
    if constexpr (Value<T>::kLockFree) {
      std::atomic_ref<T>(*value_).store(v, std::memory_order_relaxed);
    } else {
      *value_ = v;
    }
  }

 private:
  friend class Value<T>;
  ValueLock(Lock& lock, T* value) : guard_(lock), value_(value) {}

  LockGuard<Lock> guard_;
  T* value_;
};

template <typename T>
class Value {
  static_assert(std::is_trivially_copyable_v<T>, "Value<T> copies T bytes between processes");
  static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process: store an offset");

 public:
  static constexpr BlockKind kKind{block_kind_tag("VALU"), "Value"};
  // Whether load/store/exchange/compare_exchange (and fetch_add/fetch_sub for integers) exist.
  static constexpr bool kLockFree =
      std::atomic_ref<T>::is_always_lock_free && alignof(T) >= std::atomic_ref<T>::required_alignment;

  static Value& create(Segment& segment, std::string_view name, const T& initial = T{}) {
    return create_named<Value>(segment, name, initial);
  }
  static Value& open(Segment& segment, std::string_view name) {
    return open_named<Value>(segment, name);
  }
  static Value& open_or_create(Segment& segment, std::string_view name, const T& initial = T{}) {
    return open_or_create_named<Value>(segment, name, initial);
  }

  explicit Value(const T& initial = T{}) : value_(initial) {
    static_assert(std::is_standard_layout_v<Value>, "Value<T> lives in shared memory");
  }
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

  // Lock-free; acquire, pairing with the release of store/exchange/compare_exchange/fetch_* in any process.
  T load() const requires kLockFree { return ref().load(std::memory_order_acquire); }
  // Lock-free; release, pairing with the acquire of load() (and the RMWs) in any process.
  void store(const T& v) requires kLockFree { ref().store(v, std::memory_order_release); }
  // Lock-free read-modify-writes; acq_rel: each pairs with the operations before and after it on this value.
  T exchange(const T& v) requires kLockFree { return ref().exchange(v, std::memory_order_acq_rel); }
  bool compare_exchange(T& expected, const T& desired) requires kLockFree {
    return ref().compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  T fetch_add(T delta) requires(kLockFree && std::is_integral_v<T>) {
    return ref().fetch_add(delta, std::memory_order_acq_rel);
  }
  T fetch_sub(T delta) requires(kLockFree && std::is_integral_v<T>) {
    return ref().fetch_sub(delta, std::memory_order_acq_rel);
  }

  // The robust lock for compound updates (Python's get_lock()).
  Lock& get_lock() { return lock_; }
  // Blocks until get_lock() is held; access the value through the returned guard:
  //   auto v = counter.lock();
  //   if (v.owner_died()) { /* check v.get() */ v.mark_consistent(); }
  //   v.set(v.get() + 1);
  ValueLock<T> lock() { return ValueLock<T>(lock_, &value_); }

 private:
  std::atomic_ref<T> ref() const { return std::atomic_ref<T>(const_cast<T&>(value_)); }

  Lock lock_;
  alignas(std::atomic_ref<T>::required_alignment) T value_;
};

}  // namespace ipc

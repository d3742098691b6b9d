// ipc/shared/array.h: Array<T>, a fixed-length array of trivially copyable elements in shared memory, with a
// robust lock (get_lock()), lock-free element operations where T allows them, and an optional NUMA memory policy
// for the element storage (interleave across nodes is the usual choice for a big array).
//
// Happens-before: a store(i) (or RMW) happens before every load(i) that reads its value; everything done under
// get_lock() happens before everything the next holder of get_lock() does.
//
// Threads: every method is safe from any thread; plain element access (operator[], span()) is the caller's to
//   synchronise (hold get_lock(), or partition the indices between processes).
// Processes: the header and the elements live in one shared block, addressed by offsets: any process that maps
//   the segment (or the MAP_SHARED memory it was built in) uses it at its own address.
//   With a policy, the elements start on a page boundary and the policy is set on their pages (mbind) *before*
//   they are first touched, so the kernel places them by it; the policy is shared by every process mapping them.
// Lifetime: create() in a Segment (or construct_at() in caller memory) once; the length never changes. A process
//   that dies holding get_lock() is reported to the next holder (Outcome::kOwnerDied, see lock.h).
// Introspection: inspect_array(segment, name) reads any Array's length, element size, own policy and element
//   range without knowing T (for tools such as `numa_mp inspect`); read-only, any process.
// Errors: index out of range in at() throws InvalidArgument, and so does a length whose byte size does not fit in
//   64 bits (before anything is allocated); a policy that is invalid for this machine throws
//   numa::PolicyError or Unsupported before anything is created; open of a missing name throws NotFound; create
//   of a taken name, open of another kind of object ("... is a Lock, not an Array") or of another element size
//   throw InvalidArgument.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "ipc/base/checked_math.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/reserve.h"
#include "ipc/segment/segment.h"
#include "ipc/sync/lock.h"

namespace ipc {

struct ArrayOptions {
  // Where the element pages go; nullopt: wherever the segment's own policy puts them.
  std::optional<numa::MemoryPolicy> policy{};
};

// What inspect_array() reports about an Array of any element type.
struct ArrayInfo {
  uint64_t length = 0;
  uint64_t element_bytes = 0;
  const void* data = nullptr;  // element 0, in this process's mapping of the segment
  uint64_t data_bytes = 0;     // length * element_bytes
  // The array's own policy (ArrayOptions::policy, as the kernel holds it for the element pages); nullopt when it
  // was created without one and its pages follow the segment's policy.
  std::optional<numa::MemoryPolicy> policy;
};

// The Array named `name`, whatever its element type. Read-only; any process that opened the segment. Throws
// NotFound when there is none, InvalidArgument when the name holds another kind of object.
inline ArrayInfo inspect_array(const Segment& segment, std::string_view name);

// The element-type-independent part of every Array<T>: the layout in shared memory (one class holds every data
// member, so Array<T> stays standard-layout) and what inspect_array() reads.
class ArrayHeader {
 protected:
  ArrayHeader(uint64_t length, uint64_t data_offset, uint64_t element_bytes, bool own_policy)
      : length_(length), data_offset_(data_offset), element_bytes_(element_bytes), own_policy_(own_policy) {}

  Lock lock_;
  uint64_t length_;
  uint64_t data_offset_;    // bytes from `this` to element 0: the same in every process
  uint64_t element_bytes_;  // sizeof(T) of the creator, checked by open()
  uint64_t own_policy_;     // 1: the elements carry ArrayOptions::policy (on their own pages); 0: the segment's

  friend ArrayInfo inspect_array(const Segment& segment, std::string_view name);
};

template <typename T>
class Array : public ArrayHeader {
  static_assert(std::is_trivially_copyable_v<T>, "Array<T> copies T bytes between processes");
  static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process: store an offset");

 public:
  static constexpr BlockKind kKind{block_kind_tag("RRAY"), "Array"};
  static constexpr bool kLockFree =
      std::atomic_ref<T>::is_always_lock_free && alignof(T) >= std::atomic_ref<T>::required_alignment;
  static constexpr size_t kPageBytes = 4096;

  // A new array of `length` value-initialised elements, named `name` in `segment`. Any process.
  static Array& create(Segment& segment, std::string_view name, size_t length, const ArrayOptions& options = {}) {
    if (options.policy) options.policy->validate_for_this_machine();
    const size_t bytes = bytes_needed(length, options);
    auto block = segment.create_block(name, bytes, kPageBytes, kKind,
                                      [&](void* p) { construct_at(p, bytes, length, options); });
    return *static_cast<Array*>(block.ptr);
  }
  // The array named `name`; throws NotFound when there is none, InvalidArgument when it is not an Array or has
  // another element size.
  static Array& open(Segment& segment, std::string_view name) {
    auto block = segment.find_block(name, kKind);
    if (!block.ptr) {
      throw NotFound("segment '" + segment.name() + "' has no Array named '" + std::string(name) + "'");
    }
    auto& a = *static_cast<Array*>(block.ptr);
    if (a.element_bytes_ != sizeof(T)) {
      throw InvalidArgument("Array '" + std::string(name) + "' holds " + std::to_string(a.element_bytes_) +
                            "-byte elements, not " + std::to_string(sizeof(T)));
    }
    return a;
  }

  // Bytes of caller-provided memory construct_at() needs (page-aligned memory when options.policy is set).
  // Throws InvalidArgument when that does not fit in 64 bits.
  static size_t bytes_needed(size_t length, const ArrayOptions& options = {}) {
    const uint64_t data_bytes = checked_mul(length, sizeof(T), "Array");
    if (options.policy) return checked_add(kPageBytes, checked_round_up(data_bytes, kPageBytes, "Array"), "Array");
    return checked_add(round_up(sizeof(Array), alignof(T)), data_bytes, "Array");
  }
  // Builds an array in `memory` (any shared mapping; page-aligned when options.policy is set) that nobody else
  // uses yet: gives the element pages the policy (numa::reserve_range: pages the segment reserved already are
  // allocated again under it), then touches them. REQUIRES: bytes >= bytes_needed().
  static Array& construct_at(void* memory, size_t bytes, size_t length, const ArrayOptions& options = {}) {
    if (bytes < bytes_needed(length, options)) throw InvalidArgument("Array::construct_at: memory too small");
    if (options.policy && reinterpret_cast<uintptr_t>(memory) % kPageBytes != 0) {
      throw InvalidArgument("Array::construct_at: memory must be page-aligned when a policy is given");
    }
    const size_t data_offset = options.policy ? kPageBytes : round_up(sizeof(Array), alignof(T));
    auto* a = new (memory) Array(length, data_offset, options.policy.has_value());
    T* data = a->data();
    // The element pages get the array's own policy even when the segment reserved them under its own already.
    if (options.policy) numa::reserve_range(data, round_up(length * sizeof(T), kPageBytes), *options.policy, "Array");
    for (size_t i = 0; i < length; ++i) new (data + i) T();  // the first touch, after the policy
    return *a;
  }

  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  size_t size() const { return static_cast<size_t>(length_); }
  T* data() { return reinterpret_cast<T*>(reinterpret_cast<char*>(this) + data_offset_); }
  const T* data() const { return reinterpret_cast<const T*>(reinterpret_cast<const char*>(this) + data_offset_); }
  std::span<T> span() { return {data(), size()}; }
  // Unsynchronised element access (see Threads above).
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  T& at(size_t i) {
    if (i >= size()) throw InvalidArgument("Array::at: index " + std::to_string(i) + " >= size " + std::to_string(size()));
    return data()[i];
  }

  // Lock-free element operations; acquire/release pair with each other on the same element in any process.
  T load(size_t i) const requires kLockFree { return elem(i).load(std::memory_order_acquire); }
  void store(size_t i, const T& v) requires kLockFree { elem(i).store(v, std::memory_order_release); }
  T fetch_add(size_t i, T delta) requires(kLockFree && std::is_integral_v<T>) {
    return elem(i).fetch_add(delta, std::memory_order_acq_rel);
  }
  T fetch_sub(size_t i, T delta) requires(kLockFree && std::is_integral_v<T>) {
    return elem(i).fetch_sub(delta, std::memory_order_acq_rel);
  }
  bool compare_exchange(size_t i, T& expected, const T& desired) requires kLockFree {
    return elem(i).compare_exchange_strong(expected, desired, std::memory_order_acq_rel, std::memory_order_acquire);
  }

  // The robust lock for updates that span elements (use with LockGuard).
  Lock& get_lock() { return lock_; }

 private:
  Array(size_t length, size_t data_offset, bool own_policy)
      : ArrayHeader(length, data_offset, sizeof(T), own_policy) {
    static_assert(std::is_standard_layout_v<Array>, "Array<T> lives in shared memory");
    static_assert(sizeof(Array) == sizeof(ArrayHeader), "inspect_array reads every Array<T> as its header");
  }
  static constexpr size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
  std::atomic_ref<T> elem(size_t i) const { return std::atomic_ref<T>(const_cast<T&>(data()[i])); }
};

inline ArrayInfo inspect_array(const Segment& segment, std::string_view name) {
  // Every Array<T> has the same kind, whatever T.
  auto block = segment.find_block(name, Array<std::byte>::kKind);
  if (!block.ptr) throw NotFound("segment '" + segment.name() + "' has no Array named '" + std::string(name) + "'");
  const auto& h = *static_cast<const ArrayHeader*>(block.ptr);
  ArrayInfo info;
  info.length = h.length_;
  info.element_bytes = h.element_bytes_;
  info.data = static_cast<const char*>(block.ptr) + h.data_offset_;
  info.data_bytes = h.length_ * h.element_bytes_;
  if (h.own_policy_ != 0) info.policy = numa::MemoryPolicy::of_address(info.data);
  return info;
}

}  // namespace ipc

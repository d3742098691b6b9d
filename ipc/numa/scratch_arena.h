// ipc/numa/scratch_arena.h: task-local scratch memory on one NUMA node — bump allocation, freed all at once.
//
//   ipc::numa::ScratchArena arena({.node = 1});               // 64 MiB of address space, pages on node 1
//   std::span<double> tmp = arena.allocate_array<double>(n);   // no malloc, no lock, no free
//   std::pmr::vector<int> v(arena.resource());                 // standard containers on the arena
//   arena.reset();                                             // everything above is gone; the pages stay
//
// Meant as a task's private heap, reset when the task ends, as PyParallel gives each parallel context one: the task
// allocates freely and never frees. Every ipc::Pool worker owns one on its node (ipc::worker_scratch(),
// ipc/pool/worker.h), reset when each task ends.
// The address range is reserved at construction and pages are faulted in on first touch, under a BIND policy to
// the arena's node when it has one (so they land on that node or the allocation fails loudly, never silently
// elsewhere). Where transparent huge pages are enabled the range is 2 MiB aligned and advised MADV_HUGEPAGE; with
// huge_pages = kRequire a MAP_HUGETLB mapping from the reserved hugetlb pool is used instead (or construction
// throws Unsupported).
//
// Threads: one thread at a time (no locks: the arena belongs to one task). const methods are safe to call
//   concurrently with each other.
// Processes: process-private memory (MAP_PRIVATE | MAP_ANONYMOUS); a fork()ed child gets a copy-on-write copy. Never
//   place pointers into it in shared memory.
// Lifetime: allocations live until reset() or the arena's destruction, whichever comes first. Destructors of
//   objects made with make<T>() are never run, so make<T>() requires trivially destructible types; containers on
//   resource() must be destroyed (or abandoned) before reset().
// Errors: a request that does not fit in the remaining capacity throws ScratchExhausted (resource() throws
//   std::bad_alloc, as memory resources must); a node that is not online throws numa::PolicyError; a capacity of
//   0 or an alignment that is not a power of two throws ipc::InvalidArgument; mmap/mbind failures throw
//   ipc::SystemError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <new>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "ipc/base/error.h"

namespace ipc::numa {

// The arena has no room left for a request. Reset it, or give it a larger capacity.
class ScratchExhausted : public Error {
 public:
  using Error::Error;
};

class ScratchArena {
 public:
  enum class HugePages {
    kAdvise,   // transparent huge pages where the system enables them (2 MiB aligned + MADV_HUGEPAGE); else 4 KiB
    kOff,      // 4 KiB pages only
    kRequire,  // MAP_HUGETLB: the whole capacity reserved at once from vm.nr_hugepages; Unsupported if short
  };
  struct Options {
    uint64_t capacity = uint64_t{64} << 20;  // bytes of address space; pages are used only when touched
    std::optional<int> node{};               // bind the pages to this node; nullopt: the process's own policy
    HugePages huge_pages = HugePages::kAdvise;
  };

  explicit ScratchArena(Options options);
  ScratchArena() : ScratchArena(Options{}) {}
  ~ScratchArena();
  ScratchArena(ScratchArena&& other) noexcept;
  ScratchArena& operator=(ScratchArena&& other) noexcept;
  ScratchArena(const ScratchArena&) = delete;
  ScratchArena& operator=(const ScratchArena&) = delete;

  // `bytes` bytes aligned to `alignment` (a power of two). Uninitialised. Throws ScratchExhausted.
  [[nodiscard]] void* allocate(size_t bytes, size_t alignment = alignof(std::max_align_t));

  // Room for `count` T, default-initialised (uninitialised for trivial T).
  template <typename T>
  [[nodiscard]] std::span<T> allocate_array(size_t count) {
    static_assert(std::is_trivially_destructible_v<T>, "the arena never runs destructors");
    if (count > capacity_ / sizeof(T)) throw_exhausted(count, sizeof(T));
    T* p = static_cast<T*>(allocate(count * sizeof(T), alignof(T)));
    for (size_t i = 0; i < count; ++i) ::new (static_cast<void*>(p + i)) T;
    return {p, count};
  }

  // One T constructed from `args`.
  template <typename T, typename... Args>
  [[nodiscard]] T& make(Args&&... args) {
    static_assert(std::is_trivially_destructible_v<T>, "the arena never runs destructors");
    return *::new (allocate(sizeof(T), alignof(T))) T(std::forward<Args>(args)...);
  }

  // Frees every allocation at once. The pages stay mapped (and on their node) for the next task; pages beyond
  // `keep_bytes` are given back to the kernel (MADV_DONTNEED), so one huge task does not pin memory for ever.
  void reset(size_t keep_bytes = size_t{16} << 20);

  // A std::pmr::memory_resource over this arena: deallocate is a no-op, exhaustion throws std::bad_alloc.
  std::pmr::memory_resource* resource() { return &resource_; }

  size_t used() const { return used_; }              // bytes handed out since the last reset (padding included)
  size_t high_water() const { return high_water_; }  // the largest used() since construction
  size_t capacity() const { return capacity_; }
  std::optional<int> node() const { return node_; }
  // True when the range is backed by huge pages (hugetlb) or advised for transparent huge pages.
  bool huge_pages() const { return huge_ != HugeMode::kNone; }
  const void* base() const { return base_; }

 private:
  enum class HugeMode { kNone, kTransparent, kHugetlb };
  class Resource : public std::pmr::memory_resource {
   public:
    explicit Resource(ScratchArena* arena) : arena_(arena) {}
    ScratchArena* arena_;

   private:
    void* do_allocate(size_t bytes, size_t alignment) override;
    void do_deallocate(void*, size_t, size_t) override {}
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
  };

  // Throws ScratchExhausted for a request of count * size bytes (which may not fit in 64 bits).
  [[noreturn]] void throw_exhausted(size_t count, size_t size) const;
  void release() noexcept;

  unsigned char* base_ = nullptr;  // first usable byte (aligned)
  void* mapping_ = nullptr;        // what mmap returned
  size_t mapping_bytes_ = 0;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t high_water_ = 0;
  size_t touched_ = 0;  // bytes from base_ that may hold pages (reset() trims past keep_bytes)
  std::optional<int> node_;
  HugeMode huge_ = HugeMode::kNone;
  Resource resource_{this};
};

}  // namespace ipc::numa

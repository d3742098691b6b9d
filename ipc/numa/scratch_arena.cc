// ipc/numa/scratch_arena.cc: see scratch_arena.h.
#include "ipc/numa/scratch_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "ipc/base/checked_math.h"
#include "ipc/numa/memory_policy.h"

namespace ipc::numa {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;

// True when transparent huge pages may back an madvise(MADV_HUGEPAGE) range ("[always]" or "[madvise]").
bool transparent_huge_pages_enabled() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return false;
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
}

}  // namespace

ScratchArena::ScratchArena(Options options) : node_(options.node) {
  if (options.capacity == 0) throw InvalidArgument("scratch arena: a capacity of 0 bytes");
  MemoryPolicy policy;
  if (node_) {
    policy = MemoryPolicy::bind({*node_});
    policy.validate_for_this_machine();  // throws PolicyError for a node that is not online
  }
  if (options.huge_pages == HugePages::kRequire) {
    capacity_ = checked_round_up(options.capacity, kHugePage, "scratch arena capacity");
    // No MAP_NORESERVE: the kernel reserves every huge page of the range now, so a shortage is this exception
    // instead of a SIGBUS at first touch.
    mapping_ = ::mmap(nullptr, capacity_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (mapping_ == MAP_FAILED) {
      mapping_ = nullptr;
      throw Unsupported("scratch arena: no 2 MiB hugetlb pages for " + std::to_string(capacity_) +
                        " bytes (mmap MAP_HUGETLB: " + std::generic_category().message(errno) +
                        "; reserve some with vm.nr_hugepages or use HugePages::kAdvise)");
    }
    mapping_bytes_ = capacity_;
    base_ = static_cast<unsigned char*>(mapping_);
    huge_ = HugeMode::kHugetlb;
  } else {
    bool transparent = options.huge_pages == HugePages::kAdvise && transparent_huge_pages_enabled();
    size_t granule = transparent ? kHugePage : kPage;
    capacity_ = checked_round_up(options.capacity, granule, "scratch arena capacity");
    // Over-reserve by one granule so that the usable range can start on a 2 MiB boundary (THP needs aligned 2 MiB
    // extents); the slack stays reserved address space and is never touched.
    mapping_bytes_ = checked_add(capacity_, transparent ? kHugePage : 0, "scratch arena capacity");
    mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping_ == MAP_FAILED) {
      mapping_ = nullptr;
      throw_errno("scratch arena: mmap of " + std::to_string(mapping_bytes_) + " bytes");
    }
    auto start = reinterpret_cast<uintptr_t>(mapping_);
    base_ = reinterpret_cast<unsigned char*>((start + granule - 1) & ~(uintptr_t{granule} - 1));
    if (transparent && ::madvise(base_, capacity_, MADV_HUGEPAGE) == 0) huge_ = HugeMode::kTransparent;
  }
  if (node_) {
    try {
      policy.apply(base_, capacity_);  // before any page is touched: every page faults in on the node
    } catch (...) {
      release();
      throw;
    }
  }
}

ScratchArena::~ScratchArena() { release(); }

void ScratchArena::release() noexcept {
  if (mapping_) ::munmap(mapping_, mapping_bytes_);
  mapping_ = nullptr;
  base_ = nullptr;
  mapping_bytes_ = capacity_ = used_ = touched_ = 0;
}

ScratchArena::ScratchArena(ScratchArena&& other) noexcept { *this = std::move(other); }

ScratchArena& ScratchArena::operator=(ScratchArena&& other) noexcept {
  if (this == &other) return *this;
  release();
  base_ = std::exchange(other.base_, nullptr);
  mapping_ = std::exchange(other.mapping_, nullptr);
  mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
  capacity_ = std::exchange(other.capacity_, 0);
  used_ = std::exchange(other.used_, 0);
  high_water_ = std::exchange(other.high_water_, 0);
  touched_ = std::exchange(other.touched_, 0);
  node_ = std::exchange(other.node_, std::nullopt);
  huge_ = std::exchange(other.huge_, HugeMode::kNone);
  return *this;  // resource_ keeps pointing at this arena, which now owns the memory
}

void* ScratchArena::allocate(size_t bytes, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    throw InvalidArgument("scratch arena: alignment " + std::to_string(alignment) + " is not a power of two");
  }
  if (alignment > kPage) throw InvalidArgument("scratch arena: alignment above 4096 bytes");
  size_t start = (used_ + alignment - 1) & ~(alignment - 1);
  if (start > capacity_ || bytes > capacity_ - start) throw_exhausted(bytes, 1);
  used_ = start + bytes;
  if (used_ > high_water_) high_water_ = used_;
  if (used_ > touched_) touched_ = used_;
  return base_ + start;
}

void ScratchArena::throw_exhausted(size_t count, size_t size) const {
  std::string requested = size == 1 ? std::to_string(count) + " bytes"
                                    : std::to_string(count) + " x " + std::to_string(size) + " bytes";
  throw ScratchExhausted("scratch arena: " + requested + " requested with " + std::to_string(used_) + " of " +
                         std::to_string(capacity_) + " bytes in use (reset() it, or give it a larger capacity)");
}

void ScratchArena::reset(size_t keep_bytes) {
  if (keep_bytes < touched_) {
    // Rounded to whole pages of the arena's kind; cannot overflow, as keep_bytes < touched_ <= capacity_.
    const size_t granule = huge_ != HugeMode::kNone ? kHugePage : kPage;
    const size_t keep = (keep_bytes + granule - 1) & ~(granule - 1);
    if (keep < touched_) {
      // Pages past `keep` go back to the kernel; the range stays reserved and keeps its policy, so they fault in
      // again on the node next time. For hugetlb mappings the pages return to the reserved pool.
      ::madvise(base_ + keep, capacity_ - keep, MADV_DONTNEED);
      touched_ = keep;
    }
  }
  used_ = 0;
}

void* ScratchArena::Resource::do_allocate(size_t bytes, size_t alignment) {
  try {
    return arena_->allocate(bytes, alignment);
  } catch (const ScratchExhausted&) {
    throw std::bad_alloc();
  }
}

}  // namespace ipc::numa

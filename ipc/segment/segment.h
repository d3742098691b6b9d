// ipc/segment/segment.h: named shared-memory segments with a NUMA memory policy, and objects allocated inside.
//
// A Segment is a POSIX shared-memory object (/dev/shm/numa_mp.<name>) mapped into this process, carrying a
// memory policy that is set before any page is touched, and managed by Boost.Interprocess so that named and
// anonymous objects can be allocated inside and found by name from any process that opens it.
//
// Threads: a Segment handle may be used from several threads. Finding named blocks is lock-free; creating and
//   removing them serialise briefly on the directory's robust lock, allocating on the allocator's. Objects inside
//   do their own synchronisation.
// Processes: any process of the same user may open a segment by name. Each process maps it at its own address:
//   store offsets (offset_of / at), never pointers, inside shared memory.
// Lifetime: a segment is published under its name only once it is fully initialised (it is built under a
//   private temporary name and then linked into place), so an opener never sees a half-made segment and a crash
//   during creation leaves no segment under the name, only a temporary file that remove_stale() reclaims.
//   The handle returned by create() owns the name: destroying it (or calling remove()) unlinks the name, after
//   which no new process can open it while processes that already mapped it keep working until they unmap.
//   Call keep() to give up ownership (the segment then outlives its creator until remove(name) or
//   remove_stale()). Handles from open() never unlink. When every process using a segment has died, the segment
//   is stale: remove_stale() (and the CLI's `numa_mp clean`) removes segments that no live process maps.
//   Named blocks live in the segment's directory, which no death can make unusable (docs/segment.md): finding
//   takes no lock, and a creator killed mid-creation leaves a reservation that the next creator reclaims. Only a
//   process killed *inside the allocator* can leave it half-updated: later allocations then throw StateError
//   (never hang) while opening named objects keeps working. Allocation is set-up, never on a hot path.
//   Happens-before: everything a creator's `init` wrote happens before any find that returns the block.
// Errors: a bad name or size, a taken block name on construct/create_block, and a named block of another kind
//   than asked ("... is a Lock, not a Queue") throw InvalidArgument; an existing name on create() throws
//   SegmentExists; a missing one on open() throws NotFound; a segment owned by another user, or with the
//   wrong permissions, throws SystemError(EACCES); a file that is not one of our segments throws InvalidArgument;
//   an invalid policy throws numa::PolicyError before anything is created; a machine without room for the segment
//   (/dev/shm, or the bound nodes' memory) throws ResourceExhausted and leaves nothing behind; out of space inside (or no room left
//   in the directory) throws SegmentFull. OS failures throw SystemError.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/numa/memory_policy.h"

namespace ipc {

class SegmentExists : public Error {
 public:
  using Error::Error;
};
class SegmentFull : public Error {
 public:
  using Error::Error;
};

enum class HugePages {
  kNo,           // 4 KiB pages
  kTransparent,  // 2 MiB transparent huge pages (madvise); Unsupported when shmem THP is disabled
};

struct SegmentOptions {
  numa::MemoryPolicy policy{};  // applied before the first touch; default = the kernel's default policy
  mode_t permissions = 0600;   // only owner by default
  HugePages huge_pages = HugePages::kNo;
  // How many named blocks the segment holds at once (128 bytes of directory each); 0: one per 4 KiB of segment,
  // at least 16 and at most 4096.
  uint32_t max_names = 0;
  // Allocate every page now, placed by the policy (numa::reserve_pages): a machine without room for the segment
  // (/dev/shm full, bound nodes short of memory) fails create() with ResourceExhausted instead of killing a
  // process with SIGBUS at a later first touch. false leaves the pages to be placed where they are first touched
  // (first-touch placement under the default policy) and only checks that the free space suffices now; a full
  // /dev/shm then SIGBUSes the toucher. See docs/segment.md ("Reserved at creation").
  bool reserve = true;
};

// What a named block holds, recorded with its name so that opening it as another kind fails clearly ("'x' is a
// Lock, not a Queue") instead of misreading it. `tag` identifies the kind (block_kind_tag("LOCK")); `name` (at
// most 23 bytes) is what messages and listings show. A type T names its kind with `static constexpr BlockKind
// kKind`; construct<T>/find<T> use it (kObjectBlock for types that name none).
struct BlockKind {
  uint32_t tag;
  std::string_view name;
};

// A kind tag from four characters, the first in the lowest byte ("LOCK" -> 0x4b434f4c).
constexpr uint32_t block_kind_tag(const char (&four)[5]) {
  return uint32_t(uint8_t(four[0])) | uint32_t(uint8_t(four[1])) << 8 | uint32_t(uint8_t(four[2])) << 16 |
         uint32_t(uint8_t(four[3])) << 24;
}
static_assert(block_kind_tag("LOCK") == 0x4b434f4c);

// A named block as a listing shows it.
struct BlockInfo {
  std::string name;
  std::string kind;   // BlockKind::name
  uint32_t kind_tag = 0;
  uint64_t offset = 0;  // from the segment's base
  uint64_t bytes = 0;
};

// What list() reports about a segment, read from its header without opening it for use.
struct SegmentInfo {
  std::string name;            // without the /dev/shm prefix
  std::string file;            // the file in /dev/shm ("numa_mp.<name>", or a temporary "numa_mp~<pid>~<n>~<name>")
  uint64_t inode = 0;          // tells this segment from a later one of the same name
  size_t size_bytes = 0;
  uid_t owner_uid = 0;
  pid_t creator_pid = 0;
  std::string policy;          // short string form, "interleave:0-1"; "?" when the header is unreadable
  bool complete = true;        // false: a temporary left by a creator that died before publishing
  std::vector<pid_t> users;    // live processes that map or hold it open
};

class Segment {
 public:
  // The prefix of every segment's file in /dev/shm, so that tools can tell ours from others'.
  static constexpr std::string_view kFilePrefix = "numa_mp.";
  // Longest name of a block inside a segment.
  static constexpr size_t kMaxBlockName = 63;
  // Raw bytes (find_or_create_block), and objects of types that name no kind of their own (construct<T>).
  static constexpr BlockKind kRawBlock{block_kind_tag("RAWB"), "raw block"};
  static constexpr BlockKind kObjectBlock{block_kind_tag("OBJT"), "object"};

  // Creates a new segment of `size_bytes` (exclusive: throws SegmentExists if the name is taken). The policy is
  // validated for this machine and applied before any page is touched. The returned handle owns the name.
  // REQUIRES: name is 1..200 of [A-Za-z0-9_.-], not starting with '.'; size_bytes >= 4096.
  static Segment create(std::string_view name, size_t size_bytes, const SegmentOptions& options = {});
  // Opens an existing segment; throws NotFound when there is none. The handle does not own the name.
  static Segment open(std::string_view name);
  // Unlinks the name; returns false when it did not exist. Mapped users keep working.
  static bool remove(std::string_view name);
  // Every segment of this library on the machine (those of other users included), with the processes using it.
  static std::vector<SegmentInfo> list();
  // The stale segments: those of this user whose names start with `name_prefix` (all of them by default) that no
  // live process maps or holds open, and temporaries of creators that died. A segment kept (keep()) for a process
  // that has not opened it yet counts as stale. The one rule remove_stale() and `numa_mp clean --dry-run` apply.
  static std::vector<SegmentInfo> list_stale(std::string_view name_prefix = {});
  // Removes what list_stale(name_prefix) lists (each only if its name still refers to the file listed). Returns
  // the files removed (names in /dev/shm).
  static std::vector<std::string> remove_stale(std::string_view name_prefix = {});
  // Throws InvalidArgument when `name` is not a valid segment name, saying why.
  static void validate_name(std::string_view name);

  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  const std::string& name() const { return name_; }
  size_t size_bytes() const { return size_; }
  const numa::MemoryPolicy& policy() const;
  bool owns_name() const { return owner_; }
  // Gives up ownership: the segment outlives this handle until remove(name) or remove_stale().
  void keep() { owner_ = false; }

  // The mapping, for placement checks (numa::page_placement(base(), size_bytes())).
  void* base() const { return base_; }
  // Bytes still free for allocation.
  size_t free_bytes() const;

  // Address-free references: an offset is the same in every process.
  uint64_t offset_of(const void* p) const { return static_cast<const char*>(p) - static_cast<const char*>(base_); }
  template <typename T = void>
  T* at(uint64_t offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(base_) + offset);
  }

  // Raw allocation, `alignment` a power of two up to 4096. Throws SegmentFull. Any thread, any process.
  void* allocate(size_t bytes, size_t alignment = alignof(std::max_align_t));
  void deallocate(void* p);

  // Named blocks. A name (1..kMaxBlockName bytes) holds one block of one kind. Any thread, any process.
  struct NamedBlock {
    void* ptr;
    size_t bytes;
    bool found;  // the name existed already (find_or_create_block), or was found (find_block)
  };
  // Allocates `bytes` under `name`, recorded as `kind`, and runs `init(ptr)` on it before anyone else can find
  // it; returns the existing block (found=true) if the name is taken by a block of the same kind. While another
  // live process is creating the same name, waits for it. Throws InvalidArgument naming both kinds when the name
  // holds another kind, SegmentFull when there is no room.
  template <typename Init>
  NamedBlock find_or_create_block(std::string_view name, size_t bytes, size_t alignment, const BlockKind& kind,
                                  Init&& init) {
    return find_or_create_block_impl(name, bytes, alignment, kind, init_fn(init), false);
  }
  // As find_or_create_block, but a taken name throws InvalidArgument ("segment 's' already has a Lock named 'x'").
  template <typename Init>
  NamedBlock create_block(std::string_view name, size_t bytes, size_t alignment, const BlockKind& kind,
                          Init&& init) {
    return find_or_create_block_impl(name, bytes, alignment, kind, init_fn(init), true);
  }
  // The block named `name`, or {nullptr, 0, false}; InvalidArgument naming both kinds when it holds another kind
  // ("object 'x' in segment 's' is a Lock, not a Queue"). Lock-free.
  NamedBlock find_block(std::string_view name, const BlockKind& kind) const;
  // Every named block with its kind and size (a snapshot, for tools such as `numa_mp inspect`). Lock-free.
  std::vector<BlockInfo> blocks() const;
  // Frees the named block (after the caller destroyed what was in it). Returns false if there was none.
  bool remove_block(std::string_view name);

  // Typed named objects. T must be able to live in shared memory: no pointers, vtables or heap. The kind recorded
  // and checked is kind_of<T>(); the size is checked too.
  template <typename T>
  static constexpr BlockKind kind_of() {
    if constexpr (requires { BlockKind{T::kKind}; }) {
      return T::kKind;
    } else {
      return kObjectBlock;
    }
  }
  // Throws InvalidArgument when the name is taken.
  template <typename T, typename... Args>
  T& construct(std::string_view name, Args&&... args) {
    return *static_cast<T*>(create_block(name, sizeof(T), alignof(T), kind_of<T>(), [&](void* p) {
                              new (p) T(std::forward<Args>(args)...);
                            }).ptr);
  }
  template <typename T, typename... Args>
  T& find_or_construct(std::string_view name, Args&&... args) {
    auto b = find_or_create_block(name, sizeof(T), alignof(T), kind_of<T>(),
                                  [&](void* p) { new (p) T(std::forward<Args>(args)...); });
    check_size(name, b.bytes, sizeof(T));
    return *static_cast<T*>(b.ptr);
  }
  // nullptr when there is no object of that name; InvalidArgument when it is of another kind or size.
  template <typename T>
  T* find(std::string_view name) const {
    auto b = find_block(name, kind_of<T>());
    if (!b.ptr) return nullptr;
    check_size(name, b.bytes, sizeof(T));
    return static_cast<T*>(b.ptr);
  }
  template <typename T>
  bool destroy(std::string_view name) {
    T* p = find<T>(name);
    if (!p) return false;
    p->~T();
    return remove_block(name);
  }

 private:
  struct Header;
  struct Impl;
  using InitFn = std::pair<void*, void (*)(void*, void*)>;

  Segment(std::string name, void* base, size_t size, bool owner);
  // Unlinks the name if this handle owns it (and made it in this process), unmaps, and leaves the handle empty.
  void release() noexcept;
  template <typename Init>
  static InitFn init_fn(Init& init) {
    return InitFn(&init, [](void* ctx, void* p) { (*static_cast<std::remove_reference_t<Init>*>(ctx))(p); });
  }
  // exclusive: a taken name throws InvalidArgument instead of returning the block of that name.
  NamedBlock find_or_create_block_impl(std::string_view name, size_t bytes, size_t alignment, const BlockKind& kind,
                                       InitFn init, bool exclusive);
  void check_size(std::string_view name, size_t have, size_t want) const;
  // Throws InvalidArgument naming both kinds unless `block` is of kind `wanted`.
  void check_kind(const BlockInfo& block, const BlockKind& wanted) const;
  Header* header() const { return static_cast<Header*>(base_); }

  std::string name_;
  void* base_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipc

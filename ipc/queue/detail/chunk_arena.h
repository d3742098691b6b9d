// ipc/queue/detail/chunk_arena.h: the out-of-line room of a MessageQueue (internal). A message too large for its
// ring slot is written into a run of pages of this arena, and the slot carries the run's first page.
//
// Layout, in the same block right after the MPMC ring (offsets only, no pointers):
//
//   +---------------------+ 0
//   | ArenaHeader         |  constants; `cursor` (a hint: where the next run is looked for), `space` (WaitSet
//   |                     |  producers sleep on while no run is free)
//   +---------------------+ sizeof(ArenaHeader)
//   | page words[pages]   |  one atomic word per page: 0 = free, or kPageBound | seq of the ring position whose
//   |                     |  message occupies the page (mod 2^40, as in slot words)
//   +---------------------+ (rounded up to 64 bytes)
//   | data                |  pages * kArenaPageBytes
//   +---------------------+
//
// Ownership needs no pids and counts nothing: a page belongs to the message at ring position p (word BOUND(p))
// exactly while that message is held: its slot is still at position p (WRITING, FULL or READING), or a consumer
// that freed the slot still reads the message in place, with its hand-off entry armed (MpmcRing::try_begin_release).
// A producer takes pages only while it holds the slot WRITING(p), and a consumer frees them before it frees the
// slot or disarms its entry. Once neither holds (the slot moved past p, and no entry is armed for p, or the
// holder died and the ring reaped its claim or settled its entry, counting the loss once in abandoned()), a page
// still BOUND(p) belongs to nobody, and whoever looks for room frees it (reclaim()). So a dead producer's or
// consumer's pages are freed, each loss is counted once (by the ring), and a page is never handed out while a
// live process reads it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "ipc/base/wait.h"
#include "ipc/queue/detail/mpmc_ring.h"

namespace ipc::detail {

inline constexpr uint64_t kArenaMagic = 0x4e4d505f4152454eull;  // "NMP_AREN"
inline constexpr uint32_t kArenaVersion = 1;
// The unit of the arena: small enough that a message just above the inline size wastes little, large enough that
// a 1 MiB message takes 256 page words (a few hundred cheap stores beside its 1 MiB copy).
inline constexpr uint64_t kArenaPageBytes = 4096;
// The arena's page count fits in 32 bits (a slot records the first page in a uint32 beside the length).
inline constexpr uint64_t kMaxArenaPages = uint64_t{1} << 32;

inline constexpr uint64_t kPageBound = uint64_t{1} << 63;
constexpr uint64_t page_bound_to(uint64_t pos) { return kPageBound | (pos & kSeqMask); }
constexpr uint64_t page_position(uint64_t word) { return word & kSeqMask; }
static_assert(page_position(page_bound_to(kSeqMask + 3)) == 2, "positions are kept mod 2^40, as in slot words");
static_assert(page_bound_to(0) != 0, "a page bound to position 0 is not free");

struct ArenaHeader {
  // Constants, written once before the queue can be found.
  uint64_t magic;
  uint32_t version;
  uint32_t reserved;
  uint64_t pages;  // data pages of kArenaPageBytes (the page words follow the header)

  alignas(64) std::atomic<uint64_t> cursor;  // hint: the page after the run taken last (written by all producers)
  alignas(64) WaitSet space;                 // producers waiting for a free run
};
static_assert(std::is_standard_layout_v<ArenaHeader> && sizeof(ArenaHeader) % 64 == 0);
static_assert(offsetof(ArenaHeader, cursor) % 64 == 0 && offsetof(ArenaHeader, space) % 64 == 0,
              "the cursor and the wait set on their own lines");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "page words must be lock-free in shared memory");

// What a ring slot carries in its payload for a message written out of line (its length is in the slot header).
struct ChunkRef {
  uint32_t first_page;
  uint32_t reserved;
};
static_assert(std::is_trivially_copyable_v<ChunkRef> && sizeof(ChunkRef) == 8);

// A process-local view of an arena: the addresses in this process and the page count, read once at attach.
class ChunkArena {
 public:
  ChunkArena() = default;

  // Pages an arena of at least `arena_bytes` holds; throws InvalidArgument past kMaxArenaPages.
  static uint64_t pages_for(uint64_t arena_bytes);
  // Pages a message of `bytes` takes.
  static uint64_t pages_needed(uint64_t bytes) { return (bytes + kArenaPageBytes - 1) / kArenaPageBytes; }
  // Bytes an arena of `pages` takes in the block (header, page words, data). A multiple of 64.
  static uint64_t bytes_needed(uint64_t pages);
  // Builds an arena of `pages` at `at` (bytes_needed(pages) bytes, 64-byte aligned). Every page free.
  static void init(void* at, uint64_t pages);
  // Attaches to the arena at `at`, which has `bytes` bytes left in the block; throws InvalidArgument (naming
  // `what`) unless it is an arena of this version that fits.
  static ChunkArena attach(void* at, uint64_t bytes, std::string_view what);

  uint64_t pages() const { return pages_; }
  uint64_t capacity_bytes() const { return pages_ * kArenaPageBytes; }
  std::byte* data(uint64_t first_page) const { return data_ + first_page * kArenaPageBytes; }
  WaitSet& space() const { return h_->space; }

  // Whether a run of `pages` free pages exists now (a look; nothing is taken). Any process; lock-free.
  bool has_room(uint64_t pages) const {
    uint64_t first;
    return find_run(pages, first);
  }
  // Takes a run of `pages` free pages for the message at ring position `pos`, whose slot the caller holds
  // WRITING(pos). True: `first` is the run's first page. False: no run free (others may have taken it since a
  // has_room()). Producer of `pos` only; lock-free.
  bool try_take(uint64_t pages, uint64_t pos, uint64_t& first) const;
  // Whether pages [first, first + pages) lie inside the arena and are all bound to `pos`: what a consumer checks
  // before trusting the record in a slot it holds READING(pos).
  bool bound_to(uint64_t first, uint64_t pages, uint64_t pos) const;
  // Frees the pages of a message the caller still holds the slot of (READING or WRITING at `pos`) and wakes
  // producers waiting for room. REQUIRES: bound_to(first, pages, pos). Wait-free.
  void give_back(uint64_t first, uint64_t pages) const;
  // Frees every page whose message is gone (its slot moved past its position), after reaping the dead claimers
  // of slots whose messages hold pages (counted by the ring). Returns whether a page was freed. Any process;
  // slow: a pass over every page word and a liveness check per claimed slot.
  bool reclaim(const MpmcRing& ring) const;

 private:
  // A run of `pages` free pages, looked for from the cursor on (a run never wraps). Bounded: at most about
  // 2 * pages_ words are read, whatever the words hold.
  bool find_run(uint64_t pages, uint64_t& first) const;

  ArenaHeader* h_ = nullptr;
  std::atomic<uint64_t>* words_ = nullptr;
  std::byte* data_ = nullptr;
  uint64_t pages_ = 0;
};

}  // namespace ipc::detail

// ipc/segment/detail/directory.h (internal): a segment's directory of named blocks, which no process's death can
// make unusable. docs/segment.md ("The directory") has the whole argument.
//
// Layout, after the segment header (all offsets, no pointers; 64-byte aligned):
//
//   DirectoryHeader   one cache line: the writers' robust mutex, the `changes` futex word, the capacity
//   entry 0           DirectoryEntry, two cache lines: state word, hash, offset, bytes, kind tag, name, kind name
//   ...               `capacity` entries, an open-addressed table (linear probing from hash % capacity)
//
// Each entry's state word packs  generation (32 bits) | state (8 bits) | reserver pid (24 bits; pids are < 2^22):
//
//   EMPTY --reserve--> RESERVED(g+1, pid) --publish--> READY(g+1) --remove--> REMOVED(g+1) --reserve--> RESERVED(g+2)
//                             |--withdraw, or reclaimed once pid is dead--> REMOVED(g+1)
//   and a run of REMOVED entries just before an EMPTY one becomes EMPTY again (a probe chain ends at EMPTY).
//
// Readers (find, list) take no lock and store nothing, so a reader's death is harmless by construction. They
//   read a READY entry's fields and then its word again (a seqlock): an entry reused meanwhile is read again,
//   never misread.
// Writers (reserve, withdraw, remove) serialise on a robust mutex held only for a scan and a few stores. Every
//   store under it leaves the table consistent, so when a holder dies the next one simply continues: the mutex
//   is never poisoned. The block itself is allocated and initialised *outside* the mutex while its entry is
//   RESERVED with the creator's pid, and published by one release CAS RESERVED -> READY. A creator that dies
//   leaves a RESERVED entry whose pid is dead; the next writer to meet it reclaims it (the caller frees the block
//   if it had been allocated). Name uniqueness is exact: a name is looked up and reserved under the mutex, and a
//   creator that finds the name RESERVED by a live process waits for it (futex on `changes`, re-checking that
//   the reserver lives).
//
// Threads/Processes: any thread of any process mapping the segment. Lifetime: lives in the segment.
// Errors: a full directory throws SegmentFull; a bad name InvalidArgument; OS failures SystemError.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ipc/segment/segment.h"

namespace ipc::segment_detail {

inline constexpr size_t kNameWords = 8;  // 64 bytes: names of up to 63 bytes, NUL-padded
inline constexpr size_t kKindWords = 3;  // 24 bytes: kind names of up to 23 bytes, NUL-padded

struct alignas(64) DirectoryEntry {
  std::atomic<uint64_t> word;      // generation | state | reserver pid, see above
  // Written by the reserver (name, hash, kinds under the mutex; offset and bytes after allocating), read by
  // anyone once the word says READY. Atomic words so that a reader racing with a reuse reads stale bytes, not
  // undefined behaviour; the word's re-check discards them.
  std::atomic<uint64_t> hash;      // of the name
  std::atomic<uint64_t> offset;    // of the block from the segment base; 0 until allocated
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> kind_tag;  // BlockKind::tag
  std::atomic<uint64_t> name[kNameWords];
  std::atomic<uint64_t> kind[kKindWords];  // BlockKind::name
};
static_assert(sizeof(DirectoryEntry) == 128, "two cache lines per entry");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "directory words are shared between processes");
static_assert(std::is_standard_layout_v<DirectoryEntry>);

struct alignas(64) DirectoryHeader {
  pthread_mutex_t writers;         // robust, process-shared; serialises reserve/withdraw/remove
  std::atomic<uint32_t> changes;   // futex word, bumped whenever a reservation ends (published or withdrawn)
  uint32_t capacity;               // entries; constant
};
static_assert(sizeof(DirectoryHeader) == 64, "the header fills one cache line");
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// A process-local view of a directory.
class Directory {
 public:
  // Bytes a directory of `capacity` entries occupies (a multiple of 64).
  static uint64_t bytes_for(uint32_t capacity) {
    return sizeof(DirectoryHeader) + uint64_t{capacity} * sizeof(DirectoryEntry);
  }
  // Builds an empty directory in zeroed memory at `at` (64-byte aligned), before any other process can see it.
  static void init(void* at, uint32_t capacity);

  Directory() = default;
  explicit Directory(void* at);

  // The published block named `name`, if any. Lock-free; any process.
  std::optional<BlockInfo> find(std::string_view name) const;
  // Every published block. Lock-free; any process.
  std::vector<BlockInfo> list() const;

  // Either the record of the block that already has the name, or a reservation of the name for this process.
  struct Reservation {
    std::optional<BlockInfo> existing;
    uint32_t index = 0;  // the reserved entry
    uint64_t word = 0;   // its word while we hold it
  };
  // Reserves `name`, waiting while a live process is creating a block of the same name. Appends to `orphans` the
  // offsets of blocks whose creators died while making them, for the caller to free. Throws SegmentFull when the
  // directory has no entry left.
  Reservation reserve(std::string_view name, const BlockKind& kind, std::vector<uint64_t>& orphans);
  // Records the reserved block's place. REQUIRES: `r` is a reservation of this process.
  void set_block(const Reservation& r, uint64_t offset, uint64_t bytes);
  // Makes the reserved block visible to everyone: whatever the caller wrote into it before happens before every
  // find() that returns it. Throws StateError if the reservation was taken from us.
  void publish(const Reservation& r);
  // Gives the reserved name up (creation failed). True: it was still ours, and the caller frees the block if it
  // allocated one; false: it had been reclaimed, with its block.
  bool withdraw(const Reservation& r);
  // Unpublishes `name`; returns its block's offset for the caller to free, nullopt when there was none.
  std::optional<uint64_t> remove(std::string_view name);

 private:
  struct Key;
  uint32_t home(uint64_t hash) const { return static_cast<uint32_t>(hash % capacity_); }
  uint32_t next(uint32_t i) const { return i + 1 == capacity_ ? 0 : i + 1; }
  uint32_t prev(uint32_t i) const { return i == 0 ? capacity_ - 1 : i - 1; }
  DirectoryEntry& entry(uint32_t i) const { return entries_[i]; }
  // Under the mutex: turns the run of REMOVED entries ending at `i` into EMPTY ones if the entry after it is EMPTY.
  void trim(uint32_t i);
  void end_reservation();

  DirectoryHeader* header_ = nullptr;
  DirectoryEntry* entries_ = nullptr;
  uint32_t capacity_ = 0;
};

}  // namespace ipc::segment_detail

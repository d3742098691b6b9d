#include "ipc/queue/detail/chunk_arena.h"

#include <new>
#include <string>

#include "ipc/base/checked_math.h"
#include "ipc/base/error.h"

namespace ipc::detail {

namespace {

uint64_t words_bytes(uint64_t pages) {
  return checked_round_up(checked_add(sizeof(ArenaHeader), checked_mul(pages, sizeof(uint64_t), "arena"), "arena"),
                          64, "arena");
}

}  // namespace

uint64_t ChunkArena::pages_for(uint64_t arena_bytes) {
  const uint64_t pages = arena_bytes / kArenaPageBytes + (arena_bytes % kArenaPageBytes != 0);
  if (pages > kMaxArenaPages) {
    throw InvalidArgument("MessageQueue: arena_bytes " + std::to_string(arena_bytes) + " exceeds the largest arena (" +
                          std::to_string(kMaxArenaPages * kArenaPageBytes) + " bytes)");
  }
  return pages;
}

uint64_t ChunkArena::bytes_needed(uint64_t pages) {
  return checked_add(words_bytes(pages), checked_mul(pages, kArenaPageBytes, "arena"), "arena");
}

void ChunkArena::init(void* at, uint64_t pages) {
  auto* h = new (at) ArenaHeader{};
  h->magic = kArenaMagic;
  h->version = kArenaVersion;
  h->pages = pages;
  auto* words = reinterpret_cast<std::atomic<uint64_t>*>(h + 1);
  // relaxed: the block is published to other processes later, by the segment's lock or a fork().
  for (uint64_t i = 0; i < pages; ++i) new (&words[i]) std::atomic<uint64_t>(0);
}

ChunkArena ChunkArena::attach(void* at, uint64_t bytes, std::string_view what) {
  const auto* h = static_cast<const ArenaHeader*>(at);
  if (bytes < sizeof(ArenaHeader) || h->magic != kArenaMagic || h->version != kArenaVersion) {
    throw InvalidArgument(std::string(what) + ": the block holds no message arena of this library version");
  }
  if (h->pages > kMaxArenaPages || bytes < bytes_needed(h->pages)) {
    throw InvalidArgument(std::string(what) + ": the message arena's header is corrupt");
  }
  ChunkArena a;
  a.h_ = static_cast<ArenaHeader*>(at);
  a.pages_ = h->pages;  // read once: a header overwritten later cannot move a page outside the block
  a.words_ = reinterpret_cast<std::atomic<uint64_t>*>(a.h_ + 1);
  a.data_ = static_cast<std::byte*>(at) + words_bytes(a.pages_);
  return a;
}

bool ChunkArena::find_run(uint64_t pages, uint64_t& first) const {
  const uint64_t n = pages_;
  if (pages == 0 || pages > n) return false;
  // relaxed: the cursor is only a hint; the page words' CASes in try_take() decide.
  uint64_t i = h_->cursor.load(std::memory_order_relaxed);
  if (i >= n) i = 0;
  // Every iteration moves `i` past at least one page or wraps once, so the scan reads each word about twice at
  // most, whatever the words hold.
  for (uint64_t scanned = 0; scanned < n;) {
    if (i + pages > n) {  // a run never wraps: go round to page 0
      scanned += n - i;
      i = 0;
      continue;
    }
    uint64_t j = i;
    // relaxed: a look; try_take's CAS orders what matters.
    while (j < i + pages && words_[j].load(std::memory_order_relaxed) == 0) ++j;
    if (j == i + pages) {
      first = i;
      return true;
    }
    scanned += j - i + 1;
    i = j + 1;
  }
  return false;
}

bool ChunkArena::try_take(uint64_t pages, uint64_t pos, uint64_t& first) const {
  const uint64_t mine = page_bound_to(pos);
  // A run found free may be taken page by page by another producer meanwhile: a few looks, then give up (the
  // caller waits for room and tries again).
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (!find_run(pages, first)) return false;
    uint64_t j = first;
    for (; j < first + pages; ++j) {
      uint64_t expected = 0;
      // acquire: partner is the release store (give_back) or CAS (reclaim) that freed the page, so the last
      // reader's reads of it happen before our writes.
      if (!words_[j].compare_exchange_strong(expected, mine, std::memory_order_acquire, std::memory_order_relaxed)) {
        break;
      }
    }
    if (j == first + pages) {
      h_->cursor.store(first + pages, std::memory_order_relaxed);  // relaxed: a hint
      return true;
    }
    // relaxed: we wrote nothing into these pages; they go back as they were.
    for (uint64_t k = first; k < j; ++k) words_[k].store(0, std::memory_order_relaxed);
  }
  return false;
}

bool ChunkArena::bound_to(uint64_t first, uint64_t pages, uint64_t pos) const {
  if (first >= pages_ || pages > pages_ - first) return false;
  const uint64_t mine = page_bound_to(pos);
  for (uint64_t j = first; j < first + pages; ++j) {
    // relaxed: the slot word's acquire (the caller holds the slot) already ordered the producer's binding.
    if (words_[j].load(std::memory_order_relaxed) != mine) return false;
  }
  return true;
}

void ChunkArena::give_back(uint64_t first, uint64_t pages) const {
  // release: partner is try_take()'s acquire CAS; our reads of the message happen before the next writer's writes.
  for (uint64_t j = first; j < first + pages; ++j) words_[j].store(0, std::memory_order_release);
  notify(h_->space);
}

bool ChunkArena::reclaim(const MpmcRing& ring) const {
  bool freed = false;
  // Consecutive pages usually belong to one message: its slot is looked at once.
  bool have_verdict = false;
  uint64_t verdict_pos = 0;
  bool gone = false;
  for (uint64_t i = 0; i < pages_; ++i) {
    // acquire: partner is the release that freed or bound the page; with the slot word's acquire below, a page
    // found orphaned is one whose last user is done with it.
    uint64_t w = words_[i].load(std::memory_order_acquire);
    if (w == 0) continue;
    const uint64_t pos = page_position(w);
    if (!have_verdict || pos != verdict_pos) {
      have_verdict = true;
      verdict_pos = pos;
      // A page word that is not a binding was overwritten behind the queue's back: nobody owns it.
      gone = (w & kPageBound) == 0 || ring.message_gone(pos);
    }
    // acq_rel: acquire as above; release pairs with the next taker's acquire CAS. Fails harmlessly if the owner
    // freed the page meanwhile (a page is bound to position pos only once).
    if (gone && words_[i].compare_exchange_strong(w, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      freed = true;
    }
  }
  if (freed) notify(h_->space);
  return freed;
}

}  // namespace ipc::detail

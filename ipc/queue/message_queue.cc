#include "ipc/queue/message_queue.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "ipc/base/checked_math.h"

namespace ipc {
namespace {

constexpr uint32_t kFlags = detail::MpmcHeader::kFlagBytes;

uint64_t checked_max(uint64_t max_message_bytes) {
  if (max_message_bytes == 0) throw InvalidArgument("MessageQueue: max_message_bytes must be at least 1");
  if (max_message_bytes >= std::numeric_limits<uint32_t>::max()) {
    throw InvalidArgument("MessageQueue: max_message_bytes must be below 4 GiB");
  }
  return max_message_bytes;
}

// The ring of `options` and the arena after it, each size checked.
struct Geometry {
  uint64_t capacity;
  uint64_t inline_bytes;
  uint64_t arena_pages;
  uint64_t ring_bytes;
  uint64_t bytes;
};

Geometry geometry(const MessageQueue::Options& options) {
  Geometry g;
  g.capacity = detail::ring_capacity(options.capacity, "MessageQueue");
  g.inline_bytes = checked_max(options.inline_bytes);
  g.arena_pages = detail::ChunkArena::pages_for(options.arena_bytes);
  g.ring_bytes = detail::MpmcRing::bytes_needed(g.capacity, g.inline_bytes);
  g.bytes = checked_add(g.ring_bytes, detail::ChunkArena::bytes_needed(g.arena_pages), "MessageQueue");
  return g;
}

void init_block(void* block, const Geometry& g, std::string_view type) {
  detail::MpmcRing::init(block, g.capacity, g.inline_bytes, 0, kFlags);
  if (!type.empty()) detail::record_type(*static_cast<detail::MpmcHeader*>(block), type);
  detail::ChunkArena::init(static_cast<std::byte*>(block) + g.ring_bytes, g.arena_pages);
}

}  // namespace

void MessageView::reset() noexcept {
  if (!held_) return;
  held_ = false;
  data_ = nullptr;
  size_ = 0;
  if (pages_ == 0) return;  // a copy: the message went back when it was copied
  // The pages first, while the entry still holds the message (chunk_arena.h).
  arena_.give_back(first_page_, pages_);
  ring_.end_release(*entry_);
}

uint64_t MessageQueue::bytes_needed(const Options& options) { return geometry(options).bytes; }

MessageQueue MessageQueue::create_typed(Segment& segment, std::string_view name, const Options& options,
                                        std::string_view type) {
  const Geometry g = geometry(options);
  auto b = segment.create_block(name, g.bytes, 64, detail::mpmc_kind(kFlags), [&](void* p) { init_block(p, g, type); });
  return attach(b.ptr, b.bytes);
}

MessageQueue MessageQueue::open(const Segment& segment, std::string_view name) {
  auto b = detail::find_queue_block(segment, name, detail::mpmc_kind(kFlags));
  return attach(b.ptr, b.bytes);
}

MessageQueue MessageQueue::open_typed(const Segment& segment, std::string_view name, std::string_view type) {
  MessageQueue q = open(segment, name);
  if (q.ring_.header().type_fingerprint != detail::type_fingerprint(type)) {
    const std::string carried = q.type_name();
    throw InvalidArgument("queue '" + std::string(name) + "' in segment '" + segment.name() + "' carries " +
                          (carried.empty() ? "untyped bytes (it was created without a type)" : carried) +
                          ", not " + std::string(type));
  }
  return q;
}

std::string MessageQueue::type_name() const {
  const char* n = ring_.header().type_name;
  return std::string(n, strnlen(n, detail::kTypeNameBytes));
}

MessageQueue MessageQueue::create_at(void* block, uint64_t bytes, const Options& options) {
  const Geometry g = geometry(options);
  if (bytes < g.bytes) {
    throw InvalidArgument("MessageQueue::create_at: " + std::to_string(bytes) + " bytes is too small (" +
                          std::to_string(g.bytes) + " needed)");
  }
  init_block(block, g, {});
  return attach(block, bytes);
}

MessageQueue MessageQueue::attach(void* block, uint64_t bytes) {
  const detail::MpmcRing ring = detail::checked_mpmc(block, bytes, 0, kFlags, "MessageQueue");
  // checked_mpmc() made sure the ring fits in `bytes`; the arena follows it.
  const uint64_t ring_bytes = sizeof(detail::MpmcHeader) + ring.capacity() * (ring.max_payload() +
                                                                               sizeof(detail::SlotHeader));
  MessageQueue q(ring, detail::ChunkArena::attach(static_cast<std::byte*>(block) + ring_bytes, bytes - ring_bytes,
                                                  "MessageQueue"));
  q.reclaim();
  return q;
}

void MessageQueue::close() {
  ring_.close();
  detail::notify_all(arena_.space());  // producers waiting for room see the close
}

void MessageQueue::reclaim() const {
  for (uint64_t i = 0; i < ring_.capacity(); ++i) {
    // acquire: as the claim walks' loads (mpmc_ring.h); message_gone() looks again before reaping.
    const uint64_t w = ring_.slot(i).word.load(std::memory_order_acquire);
    const detail::SlotState state = detail::word_state(w);
    if (state == detail::kSlotWriting || state == detail::kSlotReading) {
      (void)ring_.message_gone(w >> (detail::kPidBits + detail::kStateBits));
    }
  }
  if (arena_.pages() != 0) (void)arena_.reclaim(ring_);
}

uint64_t MessageQueue::abandoned_count() const {
  reclaim();
  return ring_.abandoned();
}

void MessageQueue::throw_too_large(uint64_t bytes) const {
  const std::string head = "MessageQueue: a message of " + std::to_string(bytes) + " bytes exceeds this queue's " +
                           std::to_string(max_message_bytes()) + "-byte maximum";
  if (arena_bytes() == 0) {
    throw MessageTooLarge(head + " (it has no arena: every message travels inline; create it with "
                                 "Options::arena_bytes to carry larger messages out of line)");
  }
  throw MessageTooLarge(head + " (" + std::to_string(max_inline_bytes()) + " bytes inline, an arena of " +
                        std::to_string(arena_bytes()) + " bytes out of line)");
}

void MessageQueue::throw_buffer_too_small(size_t buffer_bytes) const {
  throw InvalidArgument("MessageQueue::get: the buffer (" + std::to_string(buffer_bytes) +
                        " bytes) is smaller than max_message_bytes() (" + std::to_string(max_message_bytes()) +
                        "); get_view() reads a message in place");
}

Outcome MessageQueue::put_out_of_line(uint64_t bytes, const Deadline* d, void (*write)(void*, std::byte*),
                                      void* writer) {
  const uint64_t pages = detail::ChunkArena::pages_needed(bytes);
  // Room is looked for before a slot is claimed, so that a producer waiting for room holds nothing; the pages
  // are taken once the slot is ours, so that they are bound to its position from the start (chunk_arena.h).
  // The reclaim pass (a look at every page word, liveness checks) only finds pages of dead processes: at most
  // once per kReclaimEvery while waiting, not on every retry of the spin, which a live consumer freeing pages
  // ends sooner.
  constexpr auto kReclaimEvery = std::chrono::milliseconds(1);
  auto next_reclaim = Deadline::Clock::time_point::min();
  auto room = [&](bool check_dead) {
    if (arena_.has_room(pages)) return true;
    if (!check_dead || Deadline::Clock::now() < next_reclaim) return false;
    next_reclaim = Deadline::Clock::now() + kReclaimEvery;
    return arena_.reclaim(ring_) && arena_.has_room(pages);
  };
  for (;;) {
    if (ring_.closed()) return Outcome::kClosed;
    if (!room(false)) {
      if (!d) {
        if (!room(true)) return Outcome::kFull;
      } else {
        Outcome waited = Outcome::kTimeout;
        detail::block_until(arena_.space(), *d, [&](bool check_dead) {
          if (ring_.closed()) {
            waited = Outcome::kClosed;
            return detail::Attempt::kDone;
          }
          if (!room(check_dead)) return detail::Attempt::kRetry;
          waited = Outcome::kOk;
          return detail::Attempt::kDone;
        });
        if (waited != Outcome::kOk) return waited;
      }
    }
    uint64_t pos;
    const Outcome claimed = detail::mpmc_claim_write(ring_, d, pos);
    if (claimed != Outcome::kOk) return claimed;
    if (ring_.closed_after_claim()) {
      ring_.publish_skip(pos);
      return Outcome::kClosed;
    }
    uint64_t first;
    if (!arena_.try_take(pages, pos, first)) {
      // Others took the room meanwhile: the slot carries no message, and we look for room again.
      ring_.publish_skip(pos);
      if (!d) return Outcome::kFull;
      continue;
    }
    try {
      write(writer, arena_.data(first));
    } catch (...) {
      arena_.give_back(first, pages);
      ring_.publish_skip(pos);
      throw;
    }
    const detail::ChunkRef ref{static_cast<uint32_t>(first), 0};
    std::memcpy(ring_.payload(pos), &ref, sizeof ref);
    detail::test_hook(detail::HookPoint::kPutWritten);
    ring_.publish(pos, static_cast<uint32_t>(bytes));
    return Outcome::kOk;
  }
}

Outcome MessageQueue::claim(const Deadline* d, Claimed& c) {
  for (;;) {
    uint64_t pos;
    // The first look as Queue's gets take it (by store for a lone consumer: no read-modify-write), then the walk
    // and the waits. (Before, every get went the second way: for the lease holder a call that found the lease
    // its own, then the CAS.)
    detail::SlotHeader* s;
    uint64_t claim_word;
    if (!detail::mpmc_claim_read_first(ring_, pos, s, claim_word)) {
      const Outcome q = detail::mpmc_claim_read(ring_, d, pos);
      if (q != Outcome::kOk) return q;
    }
    if (describe_claimed(pos, c)) return Outcome::kOk;
  }
}

bool MessageQueue::describe_claimed(uint64_t pos, Claimed& c) {
  const uint32_t length = ring_.slot(pos).length;
  if (length == detail::kSkipRecord) {
    ring_.release_skip(pos);
    return false;
  }
  c = Claimed{pos, 0, 0, ring_.payload(pos), length};
  if (length > max_inline_bytes()) {
    detail::ChunkRef ref;
    std::memcpy(&ref, ring_.payload(pos), sizeof ref);
    c.first_page = ref.first_page;
    c.pages = detail::ChunkArena::pages_needed(length);
    if (!arena_.bound_to(c.first_page, c.pages, pos)) {
      // Only memory overwritten behind the queue's back gets here. The slot is consumed; pages still bound to
      // its position are reclaimed once it has moved on. Nothing outside the arena is read.
      ring_.release_skip(pos);
      throw StreamCorrupted("queue slot for position " + std::to_string(pos) + " claims a message of " +
                            std::to_string(length) + " bytes in arena pages " + std::to_string(c.first_page) +
                            ".." + std::to_string(c.first_page + c.pages) +
                            ", which are not its own (the arena has " + std::to_string(arena_.pages()) +
                            " pages; a slot holds " + std::to_string(max_inline_bytes()) + " bytes inline)");
    }
    c.data = arena_.data(c.first_page);
  }
  detail::test_hook(detail::HookPoint::kGetClaimed);
  return true;
}

Outcome MessageQueue::take(const Deadline* d, MessageView& view) {
  view.reset();
  Claimed c;
  const Outcome q = claim(d, c);
  if (q != Outcome::kOk) return q;
  // An out-of-line message is read in place: its slot goes back now (producers may come round to it), and an armed
  // hand-off entry holds the message until reset(). When every entry a view may keep is held, or the message is
  // inline, the view gets a copy, and the message goes back at once, as after a get.
  detail::HandOff* entry = c.pages == 0 ? nullptr : ring_.try_begin_release(c.pos);
  if (entry == nullptr) {
    try {
      view.copy_.assign(c.data, c.data + c.size);
    } catch (...) {
      finish(c);
      throw;
    }
    finish(c);
    view.pages_ = 0;
    view.data_ = view.copy_.data();
  } else {
    view.pages_ = c.pages;
    view.entry_ = entry;
    view.ring_ = ring_;
    view.arena_ = arena_;
    view.first_page_ = c.first_page;
    view.data_ = c.data;
  }
  view.size_ = c.size;
  view.held_ = true;
  return Outcome::kOk;
}

}  // namespace ipc

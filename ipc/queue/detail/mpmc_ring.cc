#include "ipc/queue/detail/mpmc_ring.h"

#include <new>

namespace ipc::detail {

void MpmcRing::init(void* block, uint64_t capacity, uint64_t payload_bytes, uint64_t type_size, uint32_t flags) {
  auto* h = new (block) MpmcHeader{};
  h->magic = kMpmcMagic;
  h->version = kMpmcVersion;
  h->flags = flags;
  h->capacity = capacity;
  h->slot_stride = stride_for(payload_bytes);
  h->max_payload_bytes = h->slot_stride - sizeof(SlotHeader);
  h->type_size = type_size;
  auto* slots = static_cast<std::byte*>(block) + sizeof(MpmcHeader);
  for (uint64_t i = 0; i < capacity; ++i) {
    auto* s = new (slots + i * h->slot_stride) SlotHeader{};
    // relaxed: the block is published to other processes later, by the segment's lock or a fork().
    s->word.store(make_word(i, kSlotFree, 0), std::memory_order_relaxed);
  }
}

void MpmcRing::close() const {
  // release: partner is closed()'s acquire load.
  h_->closed.store(1, std::memory_order_release);
  notify_all(h_->not_empty);
  notify_all(h_->not_full);
  notify_all(h_->join);
}

bool MpmcRing::reap(SlotHeader& s, uint64_t w) const {
  if (!process_dead(word_pid(w))) return false;
  const uint64_t slot_pos = w >> (kPidBits + kStateBits);  // the position the claim was for (mod 2^40)
  // acq_rel: acquire pairs with the dead claimer's CAS (we take over its slot); release pairs with the next
  // claimer's acquire, like release_read(). Only one reaper wins, so the loss is counted once.
  if (s.word.compare_exchange_strong(w, make_word(slot_pos + capacity(), kSlotFree, 0), std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
    h_->abandoned.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter, see abandoned()
    if (h_->flags & MpmcHeader::kFlagJoinable) {
      // The lost message will never be task_done()'d: account for it so that join() can return.
      if (h_->unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) notify_all(h_->join);
    }
    notify(h_->not_full);
    notify(h_->not_empty);
  }
  return true;
}

}  // namespace ipc::detail

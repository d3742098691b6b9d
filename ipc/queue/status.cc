#include "ipc/queue/status.h"

#include "ipc/queue/detail/mpmc_ops.h"
#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/detail/spsc_ring.h"
#include "ipc/queue/message_queue.h"

namespace ipc {

namespace {

constexpr const BlockKind* kQueueKinds[] = {&detail::kQueueKind, &detail::kJoinableQueueKind,
                                            &detail::kMessageQueueKind, &detail::kSpscQueueKind};

const BlockKind* queue_kind(uint32_t tag) {
  for (const BlockKind* k : kQueueKinds) {
    if (k->tag == tag) return k;
  }
  return nullptr;
}

}  // namespace

bool is_queue(const BlockInfo& block) { return queue_kind(block.kind_tag) != nullptr; }

QueueStatus queue_status(const Segment& segment, std::string_view name) {
  const BlockInfo* found = nullptr;
  const auto blocks = segment.blocks();
  for (const auto& b : blocks) {
    if (b.name == name) found = &b;
  }
  if (!found) throw NotFound("segment '" + segment.name() + "' has no queue named '" + std::string(name) + "'");
  const BlockKind* kind = queue_kind(found->kind_tag);
  if (!kind) {
    throw InvalidArgument("object '" + std::string(name) + "' in segment '" + segment.name() + "' is a " +
                          found->kind + ", not a queue");
  }
  auto block = detail::find_queue_block(segment, name, *kind);
  QueueStatus s;
  s.kind = std::string(kind->name);
  if (kind == &detail::kSpscQueueKind) {
    auto* h = static_cast<detail::SpscHeader*>(block.ptr);
    if (block.bytes < sizeof(detail::SpscHeader) || h->magic != detail::kSpscMagic ||
        h->version != detail::kSpscVersion) {
      throw InvalidArgument("queue_status: '" + std::string(name) + "' is not an SpscQueue of this library version");
    }
    s.capacity = h->capacity;
    s.size_approx = detail::spsc_size_approx(*h);
    s.abandoned_count = detail::spsc_abandoned(*h);
    s.closed = h->closed.load(std::memory_order_acquire) != 0;  // acquire: partner is close()'s release store
    return s;
  }
  if (block.bytes < sizeof(detail::MpmcHeader)) throw InvalidArgument("queue_status: block too small for a queue");
  // Checked against the header's own type size and flags: every other field is validated as on open().
  const auto* h = static_cast<const detail::MpmcHeader*>(block.ptr);
  detail::MpmcRing ring = detail::checked_mpmc(block.ptr, block.bytes, h->type_size, h->flags, "queue_status");
  s.capacity = ring.capacity();
  s.size_approx = ring.size_approx();
  // A MessageQueue's count is complete once the slots and arena pages of dead processes are reclaimed, as its own
  // abandoned_count() does first (attach() reclaims; it takes no role).
  s.abandoned_count = kind == &detail::kMessageQueueKind
                          ? MessageQueue::attach(block.ptr, block.bytes).abandoned_count()
                          : ring.abandoned();
  s.closed = ring.closed();
  auto lone = [](const detail::Lease& lease) -> uint32_t {
    // relaxed: a snapshot.
    const uint64_t holder = lease.holder.load(std::memory_order_relaxed);
    return holder == detail::kLeaseFree || holder == detail::kLeaseShared ? 0 : detail::identity_pid(holder);
  };
  s.lone_producer = lone(h->producers);
  s.lone_consumer = lone(h->consumers);
  return s;
}

}  // namespace ipc

#include "ipc/queue/message_queue.h"

#include <limits>

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

}  // namespace

uint64_t MessageQueue::bytes_needed(uint64_t capacity, uint64_t max_message_bytes) {
  return detail::MpmcRing::bytes_needed(detail::ring_capacity(capacity, "MessageQueue"), checked_max(max_message_bytes));
}

MessageQueue MessageQueue::create(Segment& segment, std::string_view name, uint64_t capacity,
                                  uint64_t max_message_bytes) {
  detail::ensure_process_setup();
  const uint64_t c = detail::ring_capacity(capacity, "MessageQueue");
  const uint64_t m = checked_max(max_message_bytes);
  void* p = detail::create_block(segment, name, detail::MpmcRing::bytes_needed(c, m), detail::mpmc_kind(kFlags),
                                 [&](void* b) { detail::MpmcRing::init(b, c, m, 0, kFlags); });
  return MessageQueue(detail::MpmcRing(p));
}

MessageQueue MessageQueue::open(const Segment& segment, std::string_view name) {
  auto b = detail::find_queue_block(segment, name, detail::mpmc_kind(kFlags));
  return attach(b.ptr, b.bytes);
}

MessageQueue MessageQueue::create_at(void* block, uint64_t bytes, uint64_t capacity, uint64_t max_message_bytes) {
  detail::ensure_process_setup();
  const uint64_t c = detail::ring_capacity(capacity, "MessageQueue");
  const uint64_t m = checked_max(max_message_bytes);
  if (bytes < detail::MpmcRing::bytes_needed(c, m)) {
    throw InvalidArgument("MessageQueue::create_at: " + std::to_string(bytes) + " bytes is too small");
  }
  detail::MpmcRing::init(block, c, m, 0, kFlags);
  return MessageQueue(detail::checked_mpmc(block, bytes, 0, kFlags, "MessageQueue::create_at"));
}

MessageQueue MessageQueue::attach(void* block, uint64_t bytes) {
  detail::ensure_process_setup();
  return MessageQueue(detail::checked_mpmc(block, bytes, 0, kFlags, "MessageQueue::attach"));
}

void MessageQueue::throw_too_large(uint64_t bytes) const {
  throw MessageTooLarge("MessageQueue: a message of " + std::to_string(bytes) + " bytes exceeds this queue's " +
                        std::to_string(max_message_bytes()) + "-byte maximum");
}

Outcome MessageQueue::get_span(std::span<std::byte> buffer, size_t& size, const Deadline* d) {
  if (buffer.size() < max_message_bytes()) {
    throw InvalidArgument("MessageQueue::get: the buffer (" + std::to_string(buffer.size()) +
                          " bytes) is smaller than max_message_bytes() (" + std::to_string(max_message_bytes()) + ")");
  }
  return get_with(d, [&](const std::byte* p, uint32_t n) {
    if (n) std::memcpy(buffer.data(), p, n);
    size = n;
  });
}

}  // namespace ipc

#include "ipc/queue/message_queue.h"

#include <cstring>
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

// FNV-1a: a hash of a type's full name, never 0 (0 marks an untyped queue).
uint64_t fingerprint(std::string_view type) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : type) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h ? h : 1;
}

void record_type(void* block, std::string_view type) {
  auto* h = static_cast<detail::MpmcHeader*>(block);
  h->type_fingerprint = fingerprint(type);
  constexpr size_t kRoom = detail::kTypeNameBytes - 1;  // and the NUL, which MpmcHeader{} wrote
  if (type.size() <= kRoom) {
    std::memcpy(h->type_name, type.data(), type.size());
  } else {
    std::memcpy(h->type_name, type.data(), kRoom - 3);
    std::memcpy(h->type_name + kRoom - 3, "...", 3);
  }
}

}  // namespace

uint64_t MessageQueue::bytes_needed(uint64_t capacity, uint64_t max_message_bytes) {
  return detail::MpmcRing::bytes_needed(detail::ring_capacity(capacity, "MessageQueue"), checked_max(max_message_bytes));
}

MessageQueue MessageQueue::create(Segment& segment, std::string_view name, uint64_t capacity,
                                  uint64_t max_message_bytes) {
  return create_typed(segment, name, capacity, max_message_bytes, {});
}

MessageQueue MessageQueue::create_typed(Segment& segment, std::string_view name, uint64_t capacity,
                                        uint64_t max_message_bytes, std::string_view type) {
  detail::ensure_process_setup();
  const uint64_t c = detail::ring_capacity(capacity, "MessageQueue");
  const uint64_t m = checked_max(max_message_bytes);
  void* p = detail::create_block(segment, name, detail::MpmcRing::bytes_needed(c, m), detail::mpmc_kind(kFlags),
                                 [&](void* b) {
                                   detail::MpmcRing::init(b, c, m, 0, kFlags);
                                   if (!type.empty()) record_type(b, type);
                                 });
  return MessageQueue(detail::MpmcRing(p));
}

MessageQueue MessageQueue::open(const Segment& segment, std::string_view name) {
  auto b = detail::find_queue_block(segment, name, detail::mpmc_kind(kFlags));
  return attach(b.ptr, b.bytes);
}

MessageQueue MessageQueue::open_typed(const Segment& segment, std::string_view name, std::string_view type) {
  MessageQueue q = open(segment, name);
  if (q.ring_.header().type_fingerprint != fingerprint(type)) {
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

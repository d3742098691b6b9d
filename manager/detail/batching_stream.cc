#include "manager/detail/batching_stream.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <cstdint>
#include <cstring>

namespace ipc::manager::detail {
namespace {

constexpr std::size_t kReadChunkBytes = 64 * 1024;
constexpr std::uint32_t kMaxSegments = 512;

std::uint32_t load_u32(const kj::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);  // the wire is little-endian, as is every machine this library supports
  return v;
}

}  // namespace

BatchingMessageStream::BatchingMessageStream(kj::AsyncIoStream& stream) : stream_(stream), in_(kReadChunkBytes) {}

BatchingMessageStream::~BatchingMessageStream() noexcept(false) {}

kj::Maybe<kj::Own<capnp::MessageReader>> BatchingMessageStream::try_parse(const capnp::ReaderOptions& options) {
  const std::size_t available = in_end_ - in_begin_;
  if (available < 8) return nullptr;
  const kj::byte* p = in_.data() + in_begin_;
  std::uint32_t segments = load_u32(p) + 1;
  if (segments == 0 || segments > kMaxSegments) {
    KJ_FAIL_REQUIRE("Message has too many segments.", segments);
  }
  std::size_t header_bytes = (4 * (1 + std::size_t{segments}) + 7) & ~std::size_t{7};
  if (available < header_bytes) return nullptr;
  std::uint64_t body_words = 0;
  for (std::uint32_t i = 0; i < segments; ++i) body_words += load_u32(p + 4 + 4 * i);
  // Refused on the announced size, before the body is read or buffered.
  KJ_REQUIRE(body_words <= options.traversalLimitInWords,
             "Message is too large. To increase the limit on the receiving end, see capnp::ReaderOptions.",
             body_words, options.traversalLimitInWords);
  std::size_t total = header_bytes + body_words * sizeof(capnp::word);
  if (available < total) {
    if (in_.size() < total) in_.resize(total);  // bounded by the limit checked above
    return nullptr;
  }
  // Copied into its own word-aligned array: the reader outlives the receive buffer's current contents.
  auto words = kj::heapArray<capnp::word>(total / sizeof(capnp::word));
  std::memcpy(words.begin(), p, total);
  in_begin_ += total;
  auto reader = kj::heap<capnp::FlatArrayMessageReader>(words.asPtr(), options);
  return kj::Own<capnp::MessageReader>(reader.attach(kj::mv(words)));
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BatchingMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd>, capnp::ReaderOptions options, kj::ArrayPtr<capnp::word>) {
  KJ_IF_MAYBE(reader, try_parse(options)) {
    return kj::Maybe<capnp::MessageReaderAndFds>(capnp::MessageReaderAndFds{kj::mv(*reader), nullptr});
  }
  // Move the unparsed tail to the front so that the buffer only grows for a message larger than it.
  if (in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  if (in_.size() - in_end_ < kReadChunkBytes / 4) in_.resize(in_.size() + kReadChunkBytes);
  return stream_.tryRead(in_.data() + in_end_, 1, in_.size() - in_end_)
      .then([this, options](std::size_t n) -> kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> {
        if (n == 0) {
          if (in_end_ == in_begin_) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
          return KJ_EXCEPTION(DISCONNECTED, "Premature EOF inside a message.");
        }
        in_end_ += n;
        return tryReadMessage(nullptr, options, nullptr);
      });
}

void BatchingMessageStream::append(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  KJ_IF_MAYBE(e, write_error_) { kj::throwFatalException(kj::cp(*e)); }
  std::size_t count = segments.size();
  std::size_t header_words = (count + 2) / 2;  // count-1, then count sizes, padded to a word
  std::size_t old = pending_.size();
  pending_.resize(old + header_words * sizeof(capnp::word));
  kj::byte* h = pending_.data() + old;
  std::memset(h, 0, header_words * sizeof(capnp::word));
  std::uint32_t first = static_cast<std::uint32_t>(count - 1);
  std::memcpy(h, &first, 4);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t size = static_cast<std::uint32_t>(segments[i].size());
    std::memcpy(h + 4 + 4 * i, &size, 4);
  }
  for (auto segment : segments) {
    auto bytes = segment.asBytes();
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  }
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    // evalLast: runs once everything already queued on the event loop ran, so one turn's messages share a write.
    flush_task_ = kj::evalLast([this] { return flush(); }).eagerlyEvaluate([this](kj::Exception&& e) {
      flush_scheduled_ = false;
      write_error_ = kj::mv(e);
    });
  }
}

kj::Promise<void> BatchingMessageStream::flush() {
  writing_.swap(pending_);
  pending_.clear();
  return stream_.write(writing_.data(), writing_.size()).then([this]() -> kj::Promise<void> {
    writing_.clear();
    if (!pending_.empty()) return flush();
    flush_scheduled_ = false;
    return kj::READY_NOW;
  });
}

kj::Promise<void> BatchingMessageStream::writeMessage(kj::ArrayPtr<const int> fds,
                                                      kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  KJ_REQUIRE(fds.size() == 0, "file descriptors cannot be sent to or from a Manager");
  // The bytes are copied, so the caller's message may go at once; the write happens at the end of this turn.
  append(segments);
  return kj::READY_NOW;
}

kj::Promise<void> BatchingMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  for (auto m : messages) append(m);
  return kj::READY_NOW;
}

kj::Promise<void> BatchingMessageStream::end() {
  KJ_IF_MAYBE(task, flush_task_) {
    auto pending = kj::mv(*task);
    flush_task_ = nullptr;
    return pending.then([this] { stream_.shutdownWrite(); });
  }
  stream_.shutdownWrite();
  return kj::READY_NOW;
}

}  // namespace ipc::manager::detail

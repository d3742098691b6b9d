// manager/detail/batching_stream.h: a Cap'n Proto MessageStream over a byte stream that reads many messages per
// read(2) and writes every message queued in one event-loop turn with one write. Internal.
//
// Why: Cap'n Proto 0.9's own stream reads each message with two read(2) calls and writes each with its own
// writev(2), so every RPC (plus its Finish message) costs several system calls; with many calls in flight that,
// not the work, limits throughput. Batching turns N pipelined calls into a few system calls per turn.
//
// Threads: the owning event loop's thread only. Processes: n/a.
// Lifetime: must outlive the TwoPartyVatNetwork that uses it; the byte stream must outlive it.
// Errors: a frame with more than 512 segments or more words than options.traversalLimitInWords fails the read
//   (the RPC system then drops the connection) before its body is read or allocated; EOF inside a message is a
//   DISCONNECTED exception; a failed write fails every later write.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>

#include <vector>

namespace ipc::manager::detail {

class BatchingMessageStream final : public capnp::MessageStream {
 public:
  explicit BatchingMessageStream(kj::AsyncIoStream& stream);
  ~BatchingMessageStream() noexcept(false);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd> fd_space,
                                                                    capnp::ReaderOptions options,
                                                                    kj::ArrayPtr<capnp::word> scratch) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override { return nullptr; }
  kj::Promise<void> end() override;

 private:
  kj::Maybe<kj::Own<capnp::MessageReader>> try_parse(const capnp::ReaderOptions& options);
  void append(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
  kj::Promise<void> flush();

  kj::AsyncIoStream& stream_;
  std::vector<kj::byte> in_;   // received bytes; [in_begin_, in_end_) not parsed yet
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::vector<kj::byte> pending_;  // messages queued since the last flush started
  std::vector<kj::byte> writing_;  // the batch being written
  bool flush_scheduled_ = false;
  kj::Maybe<kj::Exception> write_error_;
  kj::Maybe<kj::Promise<void>> flush_task_;  // last: destroyed first, it refers to the members above
};

}  // namespace ipc::manager::detail

#include "manager/detail/socket_network.h"

#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>

#include "ipc/base/unix_socket.h"
#include "manager/detail/test_hooks.h"

namespace ipc::manager::detail {

std::atomic<ManagerTestHook> g_manager_test_hook{nullptr};

namespace {
thread_local std::uint64_t t_received_reads = 0;
thread_local kj::Own<kj::PromiseFulfiller<void>> t_read_waiter;

void note_received_read() {
  ++t_received_reads;
  if (t_read_waiter) {
    t_read_waiter->fulfill();
    t_read_waiter = nullptr;
  }
}
}  // namespace

std::uint64_t received_reads() { return t_received_reads; }

kj::Promise<void> next_received_read() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  t_read_waiter = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}
namespace {

constexpr std::size_t kReadChunkBytes = 64 * 1024;  // the read buffer grows by at least this much at a time
constexpr std::size_t kKeepBufferBytes = 1 << 20;  // a larger buffer (one huge message) is given back afterwards
constexpr std::uint32_t kMaxSegments = 512;
constexpr unsigned kDefaultFirstSegmentWords = 128;  // when the RPC system gives no size hint
constexpr std::size_t kEagerWriteBytes = 16 * 1024;  // see send()
constexpr unsigned kReadsInOneChain = 8;              // see read_more()

std::uint32_t load_u32(const kj::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);  // the wire is little-endian, as is every machine this library supports
  return v;
}

// As KJ's own streams classify errno: a vanished peer is DISCONNECTED (the client maps it to
// ipc::manager::Disconnected, the server drops the connection quietly); anything else is a plain failure.
kj::Exception socket_error(int err, const char* op) {
  bool gone = err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ENOTCONN || err == ETIMEDOUT;
  return kj::Exception(gone ? kj::Exception::Type::DISCONNECTED : kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str(op, ": ", std::strerror(err)));
}

kj::AutoCloseFd make_nonblocking(kj::AutoCloseFd fd) {
  int flags = ::fcntl(fd, F_GETFL);
  KJ_SYSCALL(flags);
  if ((flags & O_NONBLOCK) == 0) {
    KJ_SYSCALL(::fcntl(fd, F_SETFL, flags | O_NONBLOCK));
  }
  return fd;
}

}  // namespace

// Word buffers of one size, kept for the small messages of one connection: the first segment of every message
// built (Cap'n Proto's MallocMessageBuilder would calloc one, and calloc bypasses glibc's per-thread cache) and the
// copy of every message received. Reference counted: the RPC system may keep a message past its connection.
class SocketVatNetwork::BufferPool final : public kj::Refcounted {
 public:
  static constexpr std::size_t kWords = 256;  // 2 KiB: a small call, its reply, a Finish
  using Buffer = std::unique_ptr<capnp::word[]>;

  // All zero, as a message builder requires.
  Buffer take_zeroed() { return take(zeroed_, true); }
  // REQUIRES: all zero again (MallocMessageBuilder zeroes what it used of a first segment it was given).
  void give_zeroed(Buffer b) { give(zeroed_, std::move(b)); }
  Buffer take_raw() { return take(raw_, false); }
  void give_raw(Buffer b) { give(raw_, std::move(b)); }

 private:
  static constexpr std::size_t kKeep = 64;  // more in use at once (a long pipeline) are freed when done
  static Buffer take(std::vector<Buffer>& from, bool zeroed) {
    if (from.empty()) return zeroed ? Buffer(new capnp::word[kWords]()) : Buffer(new capnp::word[kWords]);
    Buffer b = std::move(from.back());
    from.pop_back();
    return b;
  }
  static void give(std::vector<Buffer>& to, Buffer b) {
    if (to.size() < kKeep) to.push_back(std::move(b));
  }
  std::vector<Buffer> zeroed_;
  std::vector<Buffer> raw_;
};

namespace {

// The first segment of a message being built: a pooled buffer when the hint fits in one, given back (zeroed by the
// builder) when the message goes. Declared before the builder so that it outlives it.
struct FirstSegment {
  FirstSegment(kj::Own<SocketVatNetwork::BufferPool>& pool, unsigned words) {
    if (words <= SocketVatNetwork::BufferPool::kWords) {
      this->pool = kj::addRef(*pool);
      buffer = this->pool->take_zeroed();
    }
  }
  ~FirstSegment() {
    if (buffer) pool->give_zeroed(std::move(buffer));
  }
  kj::Own<SocketVatNetwork::BufferPool> pool;
  SocketVatNetwork::BufferPool::Buffer buffer;
};

// A message builder of `words` first-segment words, on a pooled buffer when they fit in one (FirstSegment).
class PooledBuilder {
 public:
  PooledBuilder(kj::Own<SocketVatNetwork::BufferPool>& pool, unsigned words) : first_(pool, words) {
    if (first_.buffer) {
      builder_.emplace(kj::arrayPtr(first_.buffer.get(), SocketVatNetwork::BufferPool::kWords));
    } else {
      builder_.emplace(words);
    }
  }
  capnp::MallocMessageBuilder& operator*() { return *builder_; }
  capnp::MallocMessageBuilder* operator->() { return &*builder_; }

 private:
  FirstSegment first_;                                  // before the builder: outlives it
  std::optional<capnp::MallocMessageBuilder> builder_;  // always set; optional only to pick its constructor
};

}  // namespace

// A message being built. send() copies it into the connection's write buffer at once, so it may be dropped (with
// any capabilities it names) right after; the RPC system may keep it past the connection but never sends then.
// A tracked message that is dropped unsent takes its receipt with it (verdict: not delivered).
class SocketVatNetwork::Outgoing final : public capnp::OutgoingRpcMessage {
 public:
  Outgoing(SocketVatNetwork& network, unsigned words) : network_(network), message_(network.pool_, words) {
    network.last_outgoing_ = this;
    ++network.messages_created_;
  }
  capnp::AnyPointer::Builder getBody() override { return message_->getRoot<capnp::AnyPointer>(); }
  void setFds(kj::Array<int> fds) override {
    KJ_REQUIRE(fds.size() == 0, "file descriptors cannot be sent to or from a Manager");
  }
  void send() override {
    if (network_.direct_ != nullptr) network_.note_outgoing(*message_);
    if (offer_ != nullptr || network_.plain_exports_.size() != 0) network_.note_exports(*message_, offer_);
    network_.send(*message_, kj::mv(receipt_), counts_taken_);
  }
  size_t sizeInWords() override { return message_->sizeInWords(); }
  void track(kj::Own<Receipt> receipt, bool counts_taken) {
    receipt_ = kj::mv(receipt);
    counts_taken_ = counts_taken;
  }
  void offer(PlainOffer offer) { offer_ = kj::mv(offer); }

 private:
  SocketVatNetwork& network_;
  PooledBuilder message_;
  kj::Own<Receipt> receipt_;  // null unless tracked
  bool counts_taken_ = false;  // tracked, and the peer counts taking what it carries (track_last_message)
  kj::Maybe<PlainOffer> offer_;  // set on the Return of a Manager.open that hands out a plain object
};

namespace {

// A call answered on the server's direct path: its parameters read where they arrived, its results built in a
// pooled first segment (the Return message, made when the object first asks for its results).
class PlainCallContext final : public capnp::CallContextHook {
 public:
  PlainCallContext(kj::Own<SocketVatNetwork::BufferPool>& pool, std::uint32_t question,
                   capnp::AnyPointer::Reader params)
      : pool_(pool), question_(question), params_(params) {}

  // The Return, with empty results if the object never asked for them (as the RPC system sends it).
  capnp::MessageBuilder& finish() {
    if (!message_) (void)getResults(capnp::MessageSize{0, 0});
    return **message_;
  }

  capnp::AnyPointer::Reader getParams() override { return params_; }
  void releaseParams() override {}
  capnp::AnyPointer::Builder getResults(kj::Maybe<capnp::MessageSize> size_hint) override {
    if (!message_) {
      // The Return's envelope (Message, Return, Payload) adds a few words to the results.
      std::uint64_t words = 8;
      KJ_IF_MAYBE(hint, size_hint) { words += hint->wordCount; }
      message_.emplace(pool_, static_cast<unsigned>(std::min<std::uint64_t>(words, 1u << 20)));
      auto ret = (*message_)->initRoot<capnp::rpc::Message>().initReturn();
      ret.setAnswerId(question_);
      ret.setReleaseParamCaps(false);
      results_ = ret.initResults().getContent();
    }
    return results_;
  }
  // None of these is used by an object whose calls are plain (offer_plain_export's REQUIRES).
  kj::Promise<void> tailCall(kj::Own<capnp::RequestHook>&&) override {
    KJ_UNIMPLEMENTED("a plain call cannot tail-call");
  }
  void allowCancellation() override {}
  void setPipeline(kj::Own<capnp::PipelineHook>&&) override {}
  kj::Promise<capnp::AnyPointer::Pipeline> onTailCall() override { KJ_UNIMPLEMENTED("a plain call cannot tail-call"); }
  capnp::ClientHook::VoidPromiseAndPipeline directTailCall(kj::Own<capnp::RequestHook>&&) override {
    KJ_UNIMPLEMENTED("a plain call cannot tail-call");
  }
  kj::Own<capnp::CallContextHook> addRef() override { KJ_UNIMPLEMENTED("a plain call is answered at once"); }

 private:
  kj::Own<SocketVatNetwork::BufferPool>& pool_;
  std::uint32_t question_;
  capnp::AnyPointer::Reader params_;
  std::optional<PooledBuilder> message_;
  capnp::AnyPointer::Builder results_ = nullptr;
};

}  // namespace

// A received message, in its own word-aligned copy (the receive buffer moves on; the RPC system may keep a
// message as long as it likes): a pooled buffer when it fits in one.
class SocketVatNetwork::Incoming final : public capnp::IncomingRpcMessage {
 public:
  Incoming(kj::Own<BufferPool>& pool, const kj::byte* bytes, std::size_t words, const capnp::ReaderOptions& options)
      : words_(words), reader_(copy(pool, bytes, words), options) {}
  ~Incoming() noexcept(false) {
    if (pooled_) pool_->give_raw(std::move(pooled_));
  }
  capnp::AnyPointer::Reader getBody() override { return reader_.getRoot<capnp::AnyPointer>(); }
  size_t sizeInWords() override { return words_; }

 private:
  kj::ArrayPtr<const capnp::word> copy(kj::Own<BufferPool>& pool, const kj::byte* bytes, std::size_t words) {
    capnp::word* to;
    if (words <= BufferPool::kWords) {
      pool_ = kj::addRef(*pool);
      pooled_ = pool_->take_raw();
      to = pooled_.get();
    } else {
      unpooled_ = kj::heapArray<capnp::word>(words);
      to = unpooled_.begin();
    }
    std::memcpy(to, bytes, words * sizeof(capnp::word));
    return kj::arrayPtr(const_cast<const capnp::word*>(to), words);
  }
  std::size_t words_;
  kj::Own<BufferPool> pool_;
  BufferPool::Buffer pooled_;
  kj::Array<capnp::word> unpooled_;
  capnp::FlatArrayMessageReader reader_;  // last: reads the buffer above
};

SocketVatNetwork::SocketVatNetwork(kj::UnixEventPort& port, kj::AutoCloseFd fd, capnp::rpc::twoparty::Side side,
                                   capnp::ReaderOptions options, std::size_t handshake_message_bytes, RingStream ring)
    : port_(port),
      fd_(make_nonblocking(kj::mv(fd))),
      side_(side),
      options_(options),
      handshake_message_bytes_(handshake_message_bytes),
      read_observer_(port, fd_, kj::UnixEventPort::FdObserver::OBSERVE_READ),
      in_(read_chunk_bytes()),
      pool_(kj::refcounted<BufferPool>()),
      ring_(std::move(ring)) {
  if (ring_) start_doorbell_watch();
  ref_ = kj::refcounted<NetworkRef>();
  ref_->network = this;
  peer_vat_id_.initRoot<capnp::rpc::twoparty::VatId>().setSide(side == capnp::rpc::twoparty::Side::CLIENT
                                                                   ? capnp::rpc::twoparty::Side::SERVER
                                                                   : capnp::rpc::twoparty::Side::CLIENT);
  auto paf = kj::newPromiseAndFulfiller<void>();
  disconnected_ = paf.promise.fork();
  disposer_.fulfiller = kj::mv(paf.fulfiller);
}

SocketVatNetwork::~SocketVatNetwork() noexcept(false) {
  leave_ring_readers();
  end_direct(KJ_EXCEPTION(DISCONNECTED, "the connection to the manager was closed"));
  ref_->network = nullptr;
  settle_deliveries();
}

void SocketVatNetwork::end_handshake() { handshake_message_bytes_ = 0; }

std::size_t SocketVatNetwork::read_chunk_bytes() const {
  // During the handshake a read never needs more than a few of its small messages.
  return handshake_message_bytes_ != 0 ? std::min(kReadChunkBytes, 2 * handshake_message_bytes_) : kReadChunkBytes;
}

void SocketVatNetwork::ConnectionDisposer::disposeImpl(void*) const {
  if (--refs != 0) return;
  KJ_IF_MAYBE(e, failure) {
    fulfiller->reject(kj::mv(*e));
  } else {
    fulfiller->fulfill();
  }
}

// ---- VatNetwork: one connection, to the other side (as TwoPartyVatNetwork) ----

kj::Own<capnp::TwoPartyVatNetworkBase::Connection> SocketVatNetwork::as_connection() {
  ++disposer_.refs;
  return kj::Own<capnp::TwoPartyVatNetworkBase::Connection>(this, disposer_);
}

kj::Maybe<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> SocketVatNetwork::connect(
    capnp::rpc::twoparty::VatId::Reader ref) {
  if (ref.getSide() == side_) return nullptr;  // that is us
  return as_connection();
}

kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> SocketVatNetwork::accept() {
  if (side_ == capnp::rpc::twoparty::Side::SERVER && !accepted_) {
    accepted_ = true;
    return as_connection();
  }
  auto paf = kj::newPromiseAndFulfiller<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>>();
  never_accepted_ = kj::mv(paf.fulfiller);  // nobody else ever connects
  return kj::mv(paf.promise);
}

capnp::rpc::twoparty::VatId::Reader SocketVatNetwork::getPeerVatId() {
  return peer_vat_id_.getRoot<capnp::rpc::twoparty::VatId>();
}

kj::Own<capnp::OutgoingRpcMessage> SocketVatNetwork::newOutgoingMessage(unsigned firstSegmentWordSize) {
  return kj::heap<Outgoing>(*this, firstSegmentWordSize == 0 ? kDefaultFirstSegmentWords : firstSegmentWordSize);
}

// ---- reading ----

kj::Maybe<kj::Own<capnp::IncomingRpcMessage>> SocketVatNetwork::try_parse() {
  // A loop: Returns to direct calls are consumed here, and the next message is looked at.
  for (;;) {
    const std::size_t available = in_end_ - in_begin_;
    if (available < 8) return nullptr;
    const kj::byte* p = in_.data() + in_begin_;
    if (side_ == capnp::rpc::twoparty::Side::SERVER && std::memcmp(p, kItemTaken, sizeof kItemTaken) == 0) {
      // A client on a socket took one more queue item: those it read may now count as delivered.
      ++taken_frames_;
      in_begin_ += sizeof kItemTaken;
      if (!tracked_.empty()) confirm_deliveries();
      continue;
    }
    std::uint32_t segments = load_u32(p) + 1;
    if (segments == 0 || segments > kMaxSegments) {
      KJ_FAIL_REQUIRE("Message has too many segments.", segments);
    }
    std::size_t header_bytes = (4 * (1 + std::size_t{segments}) + 7) & ~std::size_t{7};
    if (available < header_bytes) return nullptr;
    std::uint64_t body_words = 0;
    for (std::uint32_t i = 0; i < segments; ++i) body_words += load_u32(p + 4 + 4 * i);
    // Refused on the announced size, before the body is read or buffered.
    const std::uint64_t body_bytes = body_words * sizeof(capnp::word);
    if (handshake_message_bytes_ != 0 && body_bytes > handshake_message_bytes_) {
      throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                          kj::str("refused a message of ", body_bytes, " bytes before authentication (until the "
                                  "peer authenticates, messages are limited to ", handshake_message_bytes_, " bytes)"));
    }
    if (body_words > options_.traversalLimitInWords) {
      throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                          kj::str("refused a message of ", body_bytes, " bytes: it exceeds this connection's limit of ",
                                  options_.traversalLimitInWords * sizeof(capnp::word), " bytes"));
    }
    std::size_t total = header_bytes + body_bytes;
    if (available < total) return nullptr;  // the buffer grows as the rest arrives (receiveIncomingMessage)
    // Frames are whole words and the buffer starts word-aligned (operator new), so every frame is word-aligned.
    const auto* words = reinterpret_cast<const capnp::word*>(p);
    if (direct_ != nullptr && take_if_direct(words, total / sizeof(capnp::word))) {
      in_begin_ += total;
      continue;
    }
    if (serves_plainly() && take_if_plain(words, total / sizeof(capnp::word))) {
      in_begin_ += total;
      continue;
    }
    auto message = kj::heap<Incoming>(pool_, p, total / sizeof(capnp::word), options_);
    in_begin_ += total;
    return kj::Own<capnp::IncomingRpcMessage>(kj::mv(message));
  }
}

// Client side: a Return to a direct question goes to the direct calls, not to the RPC system (which never asked
// it). Everything else passes on, after a look at what the direct path needs: the capability an open returned,
// and an Abort's reason.
bool SocketVatNetwork::take_if_direct(const capnp::word* words, std::size_t count) {
  capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, count), options_);
  auto message = reader.getRoot<capnp::rpc::Message>();
  if (message.isAbort()) {
    auto abort = message.getAbort();
    abort_ = kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                           kj::str("the manager ended the connection: ", abort.getReason()));
    return false;
  }
  if (!message.isReturn()) return false;
  auto ret = message.getReturn();
  if (ret.getAnswerId() >= DirectReturns::kFirstQuestionId) {
    direct_->returned(ret);
    return true;
  }
  KJ_IF_MAYBE(watched, watched_open_) {
    if (*watched == ret.getAnswerId()) {
      watched_open_ = nullptr;
      if (ret.isResults()) {
        auto caps = ret.getResults().getCapTable();
        if (caps.size() == 1 && caps[0].isSenderHosted()) opened_import_ = caps[0].getSenderHosted();
      }
    }
  }
  return false;
}

// ---- the server's direct path ----

void SocketVatNetwork::offer_plain_export(std::uint64_t created_before, capnp::Capability::Client cap,
                                          capnp::Capability::Server& server, std::uint64_t interface_id,
                                          std::uint16_t method_count) {
  // Anything else than the one Return expected: that object's calls simply take the RPC system's path.
  if (messages_created_ != created_before + 1 || last_outgoing_ == nullptr) return;
  last_outgoing_->offer(PlainOffer{kj::mv(cap), &server, interface_id, method_count});
}

bool SocketVatNetwork::serves_plainly() const {
  return plain_exports_.size() != 0 || plain_answers_.size() != 0 || result_exports_.size() != 0;
}

// Server side: a Call on a plain export is answered here; the Finish of such a call ends here too. Everything else
// passes on to the RPC system, after a look at what changes the references to plain exports.
bool SocketVatNetwork::take_if_plain(const capnp::word* words, std::size_t count) {
  capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, count), options_);
  auto message = reader.getRoot<capnp::rpc::Message>();
  switch (message.which()) {
    case capnp::rpc::Message::CALL: {
      auto call = message.getCall();
      const std::uint32_t question = call.getQuestionId();
      // As the RPC system refuses a question id in use (it never sees these): the connection ends.
      KJ_REQUIRE(!plain_answers_.contains(question), "a Call reuses a question id still in use", question);
      auto target = call.getTarget();
      if (target.isPromisedAnswer()) {
        if (!plain_answers_.contains(target.getPromisedAnswer().getQuestionId())) return false;
        // As a call pipelined on the results of a DirectClient's call fails (direct_client.cc).
        answer_plain_failure(question, KJ_EXCEPTION(FAILED, "the results of this call hold no capabilities to "
                                                            "pipeline on"));
        return true;
      }
      if (!target.isImportedCap() || !call.getSendResultsTo().isCaller()) return false;
      KJ_IF_MAYBE(exported, plain_exports_.find(target.getImportedCap())) {
        const PlainOffer& object = exported->object;
        if (call.getInterfaceId() != object.interface_id || call.getMethodId() >= object.method_count) return false;
        if (call.getParams().getCapTable().size() != 0) return false;  // capabilities to import: the RPC system's
        answer_plainly(call, *object.server);
        return true;
      }
      return false;
    }
    case capnp::rpc::Message::FINISH: {
      auto finish = message.getFinish();
      const std::uint32_t question = finish.getQuestionId();
      if (plain_answers_.erase(question)) return true;
      KJ_IF_MAYBE(exports, result_exports_.find(question)) {
        // As the RPC system's handleFinish: the Return's capabilities go unless the client took them.
        if (finish.getReleaseResultCaps()) {
          for (std::uint32_t id : *exports) release_plain_export(id, 1);
        }
        result_exports_.erase(question);
      }
      return false;
    }
    case capnp::rpc::Message::RELEASE: {
      auto release = message.getRelease();
      release_plain_export(release.getId(), release.getReferenceCount());
      return false;
    }
    default:
      return false;
  }
}

void SocketVatNetwork::answer_plainly(capnp::rpc::Call::Reader call, capnp::Capability::Server& server) {
  const std::uint32_t question = call.getQuestionId();
  kj::Maybe<kj::Exception> failure;
  {
    PlainCallContext context(pool_, question, call.getParams().getContent());
    // The method runs to completion inside dispatchCall (offer_plain_export's REQUIRES), so its promise is ready.
    failure = kj::runCatchingExceptions([&] {
      (void)server.dispatchCall(call.getInterfaceId(), call.getMethodId(),
                                capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>(context));
    });
    // A reply over the connection's size limit is refused by send() before a byte of it is queued: the call
    // then fails alone, as on the RPC system's path.
    if (failure == nullptr) failure = kj::runCatchingExceptions([&] { send(context.finish(), kj::Own<Receipt>()); });
    if (failure == nullptr) {
      plain_answers_.insert(question);
      return;
    }
  }
  answer_plain_failure(question, KJ_ASSERT_NONNULL(failure));
}

void SocketVatNetwork::answer_plain_failure(std::uint32_t question, const kj::Exception& failure) {
  kj::StringPtr reason = failure.getDescription();
  PooledBuilder message(pool_, 16 + static_cast<unsigned>(std::min<std::size_t>(reason.size() / 8, 1u << 20)));
  auto ret = message->initRoot<capnp::rpc::Message>().initReturn();
  ret.setAnswerId(question);
  ret.setReleaseParamCaps(false);
  // As the RPC system writes an exception (rpc.c++, fromException): the description and the type.
  auto exception = ret.initException();
  exception.setReason(reason);
  exception.setType(static_cast<capnp::rpc::Exception::Type>(failure.getType()));
  send(*message, kj::Own<Receipt>());
  plain_answers_.insert(question);
}

// Server side, every message the RPC system sends while plain exports exist (or that carries an offer): the
// references it gives out to plain exports.
void SocketVatNetwork::note_exports(capnp::MessageBuilder& message, kj::Maybe<PlainOffer>& offer) {
  auto root = message.getRoot<capnp::rpc::Message>().asReader();
  capnp::List<capnp::rpc::CapDescriptor>::Reader caps;
  bool is_return = false;
  std::uint32_t answer = 0;
  switch (root.which()) {
    case capnp::rpc::Message::RETURN: {
      auto ret = root.getReturn();
      if (!ret.isResults()) return;
      caps = ret.getResults().getCapTable();
      answer = ret.getAnswerId();
      is_return = true;
      break;
    }
    case capnp::rpc::Message::CALL:
      caps = root.getCall().getParams().getCapTable();
      break;
    case capnp::rpc::Message::RESOLVE: {
      auto resolve = root.getResolve();
      if (resolve.isCap() && resolve.getCap().isSenderHosted()) plain_exports_.erase(resolve.getCap().getSenderHosted());
      return;
    }
    default:
      return;
  }
  kj::Vector<std::uint32_t> mirrored;
  for (auto cap : caps) {
    if (!cap.isSenderHosted()) continue;
    const std::uint32_t id = cap.getSenderHosted();
    KJ_IF_MAYBE(o, offer) {
      if (is_return && caps.size() == 1) {
        // The offered object under this id, once more (the same object opened again) or for the first time.
        KJ_IF_MAYBE(known, plain_exports_.find(id)) {
          if (known->object.server == o->server) {
            ++known->references;
            mirrored.add(id);
            continue;
          }
        }
        plain_exports_.upsert(id, PlainExport{*o, 1},
                              [](PlainExport& old, PlainExport&& fresh) { old = kj::mv(fresh); });
        mirrored.add(id);
        continue;
      }
    }
    // Only an offered Return hands out a plain object: this id now names something else.
    plain_exports_.erase(id);
  }
  if (is_return && mirrored.size() != 0) {
    result_exports_.upsert(answer, kj::mv(mirrored),
                           [](kj::Vector<std::uint32_t>& old, kj::Vector<std::uint32_t>&& fresh) { old = kj::mv(fresh); });
  }
}

void SocketVatNetwork::release_plain_export(std::uint32_t export_id, std::uint32_t references) {
  KJ_IF_MAYBE(known, plain_exports_.find(export_id)) {
    if (known->references <= references) {
      plain_exports_.erase(export_id);
    } else {
      known->references -= references;
    }
  }
}

void SocketVatNetwork::note_outgoing(capnp::MessageBuilder& message) {
  auto root = message.getRoot<capnp::rpc::Message>().asReader();
  if (!root.isCall()) return;
  auto call = root.getCall();
  ++calls_sent_;
  last_call_question_ = call.getQuestionId();
  last_call_interface_ = call.getInterfaceId();
  last_call_method_ = call.getMethodId();
}

void SocketVatNetwork::watch_last_call(std::uint64_t calls_before, std::uint64_t interface_id,
                                       std::uint16_t method_id) {
  opened_import_ = nullptr;
  watched_open_ = nullptr;
  if (calls_sent_ == calls_before + 1 && last_call_interface_ == interface_id && last_call_method_ == method_id) {
    watched_open_ = last_call_question_;
  }
}

kj::Maybe<std::uint32_t> SocketVatNetwork::take_opened_import() {
  auto out = opened_import_;
  opened_import_ = nullptr;
  return out;
}

void SocketVatNetwork::end_direct(const kj::Exception& why) {
  if (direct_ == nullptr) return;
  KJ_IF_MAYBE(abort, abort_) {
    direct_->ended(*abort);
  } else {
    direct_->ended(why);
  }
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> SocketVatNetwork::receiveIncomingMessage() {
  // A bad frame must fail the returned promise, not throw out of here (the RPC system calls this outside any
  // promise continuation too). It is also kept, for onDisconnect() to report.
  kj::Maybe<kj::Own<capnp::IncomingRpcMessage>> parsed;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { parsed = try_parse(); })) {
    disposer_.failure = kj::cp(*e);
    end_direct(*e);
    return kj::mv(*e);
  }
  if (parsed != nullptr) {
    reads_in_a_row_ = 0;
    return kj::mv(parsed);
  }
  // Move the unparsed tail to the front so that the buffer only grows for a message larger than it.
  if (in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  const std::size_t chunk = read_chunk_bytes();
  if (in_end_ == 0 && in_.size() > kKeepBufferBytes) {
    in_.resize(chunk);
    in_.shrink_to_fit();
  }
  // Grow by what has arrived (doubling), never by what a frame announces: a peer that announces a large message
  // and sends little of it makes this side hold about what it sent, not what it promised.
  if (in_.size() - in_end_ < chunk / 4) in_.resize(in_end_ + std::max(chunk, in_end_));
  return read_more();
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> SocketVatNetwork::read_more() {
  if (ring_) return read_from_ring();
  KJ_IF_MAYBE(readable, readable_) {
    auto edge = kj::mv(*readable);
    readable_ = nullptr;
    reads_in_a_row_ = 0;
    return edge.then([this] { return read_more(); });
  }
  for (;;) {
    std::size_t space = in_.size() - in_end_;
    ssize_t n = ::read(fd_, in_.data() + in_end_, space);
    if (n > 0) {
      note_received_read();
      in_end_ += static_cast<std::size_t>(n);
      if (!tracked_.empty()) confirm_deliveries();
      // A read short of the space asked for emptied the socket, unless the peer also closed it (then the next
      // read must see the EOF, and no further edge would come): listen for the next edge now, in this turn.
      bool at_end = true;  // unknown counts as "maybe": read again rather than wait for an edge
      KJ_IF_MAYBE(hint, read_observer_.atEndHint()) { at_end = *hint; }
      if (static_cast<std::size_t>(n) < space && !at_end) readable_ = read_observer_.whenBecomesReadable();
      if (offer_ring_) {
        // The first bytes: a request for the shared-memory transport, or a plain Cap'n Proto peer's first frame.
        const std::size_t have = in_end_ - in_begin_;
        if (std::memcmp(in_.data() + in_begin_, kRingRequest, std::min(have, sizeof kRingRequest)) != 0) {
          offer_ring_ = false;
        } else if (have < sizeof kRingRequest) {
          return read_more();  // the rest of the request is on its way
        } else if (have > sizeof kRingRequest) {
          return KJ_EXCEPTION(FAILED, "the client sent bytes after asking for the shared-memory transport, before "
                                      "the answer");
        } else {
          in_begin_ = in_end_ = 0;
          KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { grant_ring(); })) { return kj::mv(*e); }
          return read_more();
        }
      }
      // Messages answered here (direct calls, their Returns) hand nothing to the RPC system, so the next read
      // follows in the same call chain: after a few, continue from the event loop, so that the stack stays short
      // and other connections get their turn while one client keeps its socket full.
      if (++reads_in_a_row_ >= kReadsInOneChain) {
        reads_in_a_row_ = 0;
        return kj::evalLater([this] { return receiveIncomingMessage(); });
      }
      return receiveIncomingMessage();
    }
    if (n == 0) return peer_ended();
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable_ = read_observer_.whenBecomesReadable();
      return read_more();
    }
    if (errno == ECONNRESET) peer_reset_ = true;
    kj::Exception error = socket_error(errno, "read from manager socket");
    end_direct(error);
    return kj::mv(error);
  }
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> SocketVatNetwork::peer_ended() {
  // As the RPC system words it for its own calls.
  end_direct(KJ_EXCEPTION(DISCONNECTED, "Peer disconnected."));
  if (in_end_ == in_begin_) return kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>(nullptr);
  return KJ_EXCEPTION(DISCONNECTED, "Premature EOF inside a message.");
}

// ---- the shared-memory transport ----

namespace {
thread_local bool t_ring_spinning = false;
// This thread's networks whose reader waited on its ring since it last read bytes (a few may have been woken by
// their doorbell since, and are looked at once more for nothing): a list through the networks themselves, so that
// it needs no memory and no destructor (a Client in a static object may go after this thread's thread_locals).
thread_local SocketVatNetwork* t_ring_readers = nullptr;

// A forked child inherits the forking thread's list, naming its parent's networks, which the child never runs (a
// spinner there would disarm the parent's rings and fulfil the parent's promises): it starts with none.
void forget_rings_in_child() {
  t_ring_readers = nullptr;
  t_ring_spinning = false;
}
[[maybe_unused]] const int g_ring_fork_handler = ::pthread_atfork(nullptr, nullptr, forget_rings_in_child);
}  // namespace

void SocketVatNetwork::join_ring_readers() {
  if (in_ring_readers_) return;
  in_ring_readers_ = true;
  ring_prev_ = nullptr;
  ring_next_ = t_ring_readers;
  if (ring_next_ != nullptr) ring_next_->ring_prev_ = this;
  t_ring_readers = this;
}

void SocketVatNetwork::leave_ring_readers() {
  if (!in_ring_readers_) return;
  in_ring_readers_ = false;
  if (ring_prev_ != nullptr) {
    ring_prev_->ring_next_ = ring_next_;
  } else if (t_ring_readers == this) {  // else: a forked child's copy, whose list was forgotten
    t_ring_readers = ring_next_;
  }
  if (ring_next_ != nullptr) ring_next_->ring_prev_ = ring_prev_;
  ring_prev_ = ring_next_ = nullptr;
}

void SocketVatNetwork::wake_ring_reader() {
  leave_ring_readers();
  if (ring_reader_) kj::mv(ring_reader_)->fulfill();
}

RingSpin::RingSpin() {
  t_ring_spinning = true;
  for (SocketVatNetwork* n = t_ring_readers; n != nullptr; n = n->ring_next_) n->ring_.disarm_reader();
}

RingSpin::~RingSpin() {
  if (!ended_) arm_readers(/*wake=*/true);
}

bool RingSpin::end() { return arm_readers(/*wake=*/false); }

// Every waiting reader asks for its doorbell again. One whose bytes came meanwhile is woken if `wake` (it leaves the
// list), else left waiting; true if there was one.
bool RingSpin::arm_readers(bool wake) {
  ended_ = true;
  t_ring_spinning = false;
  bool bytes = false;
  for (SocketVatNetwork* n = t_ring_readers; n != nullptr;) {
    SocketVatNetwork* next = n->ring_next_;
    if (n->ring_.arm_reader()) {
      bytes = true;
      if (wake) n->wake_ring_reader();
    }
    n = next;
  }
  return bytes;
}

bool poll_rings() {
  bool any = false;
  for (SocketVatNetwork* n = t_ring_readers; n != nullptr;) {
    SocketVatNetwork* next = n->ring_next_;
    if (n->ring_.readable()) {
      n->wake_ring_reader();  // leaves the list
      any = true;
    }
    n = next;
  }
  return any;
}

bool rings_waiting() { return t_ring_readers != nullptr; }

void SocketVatNetwork::grant_ring() {
  offer_ring_ = false;
  kj::AutoCloseFd memory;
  RingStream ring;
  bool made = true;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { ring = RingStream::create(memory); })) {
    // No memory for it (memfd_create or mmap failed): this client is served over the socket.
    std::fprintf(stderr, "ipc-manager: a connection stays on its socket: %s\n", e->getDescription().cStr());
    made = false;
  }
  const auto answer = static_cast<std::byte>(made ? kRingGranted : kRingRefused);
  const int fds[] = {memory.get()};
  const ssize_t sent = ipc::detail::send_with_fds(fd_, std::span<const std::byte>(&answer, 1),
                                                  made ? std::span<const int>(fds) : std::span<const int>(),
                                                  MSG_DONTWAIT);
  if (sent != 1) throw socket_error(sent < 0 ? errno : EAGAIN, "answer the shared-memory transport request");
  if (!made) return;
  // The socket's readable edge is the doorbell's from now on (watch_doorbells); nobody waits for it as a stream.
  readable_ = nullptr;
  ring_ = std::move(ring);
  start_doorbell_watch();
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> SocketVatNetwork::read_from_ring() {
  for (;;) {
    std::size_t n = 0;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      n = ring_.read_some(reinterpret_cast<unsigned char*>(in_.data() + in_end_), in_.size() - in_end_);
    })) {
      disposer_.failure = kj::cp(*e);
      end_direct(*e);
      return kj::mv(*e);
    }
    if (n > 0) {
      if (ring_.take_writer_wakeup()) ring_doorbell();
      note_received_read();
      in_end_ += n;
      if (!tracked_.empty()) confirm_deliveries();
      if (++reads_in_a_row_ >= kReadsInOneChain) {  // as read_more()
        reads_in_a_row_ = 0;
        return kj::evalLater([this] { return receiveIncomingMessage(); });
      }
      return receiveIncomingMessage();
    }
    // Bytes the peer wrote before it went are all in the ring (it wrote them before its socket ended).
    if (peer_gone_) return peer_ended();
    reads_in_a_row_ = 0;
    return ring_bytes_or_doorbell().then([this] { return read_from_ring(); });
  }
}

// Resolves when the ring may have bytes: a spinner saw them (poll_rings), or the doorbell rang, or the socket ended.
kj::Promise<void> SocketVatNetwork::ring_bytes_or_doorbell() {
  kj::Promise<void> bell = doorbell();  // listened for before the reader arms: a doorbell cannot come unheard
  join_ring_readers();
  auto paf = kj::newPromiseAndFulfiller<void>();
  ring_reader_ = kj::mv(paf.fulfiller);
  if (t_ring_spinning) {
    ring_.disarm_reader();  // the spinner looks (poll_rings); when it stops, it arms
  } else if (ring_.arm_reader()) {
    wake_ring_reader();
  }
  return paf.promise.exclusiveJoin(kj::mv(bell));
}

// Resolves at the next doorbell or the socket's end, once the socket was drained. Whoever waits takes this before
// arming its flag (the peer rings only after it saw the flag), so no doorbell can come unheard.
kj::Promise<void> SocketVatNetwork::doorbell() { return KJ_ASSERT_NONNULL(bell_).addBranch(); }

// On the ring, the socket is watched for reads for as long as the connection lasts: its edges are epoll's
// (edge-triggered), and one that came while nobody listened would be lost, and with it a peer's end that came
// while this side was busy. Each edge drains the socket and re-listens in the same event-loop turn, before any
// epoll_wait can run, then resolves what doorbell() handed out.
void SocketVatNetwork::start_doorbell_watch() {
  next_bell();
  doorbell_watch_ = watch_doorbells().eagerlyEvaluate(nullptr);
}

void SocketVatNetwork::next_bell() {
  auto next = kj::newPromiseAndFulfiller<void>();
  bell_ = next.promise.fork();
  bell_rung_ = kj::mv(next.fulfiller);
}

kj::Promise<void> SocketVatNetwork::watch_doorbells() {
  return read_observer_.whenBecomesReadable().then([this]() -> kj::Promise<void> {
    drain_doorbells();
    auto rung = kj::mv(bell_rung_);
    if (peer_gone_) {
      bell_ = kj::Promise<void>(kj::READY_NOW).fork();  // the end stays: whoever asks later need not wait
      rung->fulfill();
      return kj::READY_NOW;
    }
    next_bell();
    rung->fulfill();
    return watch_doorbells();  // listens again in this turn
  });
}

void SocketVatNetwork::drain_doorbells() {
  unsigned char bells[64];
  for (;;) {
    const ssize_t n = ::read(fd_, bells, sizeof bells);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    peer_gone_ = true;  // EOF, or a reset: the peer closed its socket (or died)
    return;
  }
}

void SocketVatNetwork::ring_doorbell() {
  const unsigned char bell = 1;
  // A peer that is gone makes this fail (EPIPE): its end is seen by the read side. The socket never fills: one
  // doorbell per arming.
  (void)::send(fd_, &bell, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::size_t SocketVatNetwork::write_to_ring() {
  std::size_t total = 0;
  while (out_begin_ < out_.size()) {
    const std::size_t n = ring_.write_some(reinterpret_cast<const unsigned char*>(out_.data() + out_begin_),
                                           out_.size() - out_begin_);
    if (n == 0) break;
    note_written(n);
    total += n;
  }
  if (total != 0 && ring_.take_reader_wakeup()) ring_doorbell();
  return total;
}

// ---- writing ----

void SocketVatNetwork::send(capnp::MessageBuilder& message, kj::Own<Receipt> receipt, bool counts_taken) {
  auto segments = message.getSegmentsForOutput();
  std::size_t body_words = 0;
  for (auto segment : segments) body_words += segment.size();
  // As TwoPartyVatNetwork: the peer (with the same limit) would drop the connection, so fail this message only.
  KJ_REQUIRE(body_words < options_.traversalLimitInWords, body_words,
             "Trying to send Cap'n Proto message larger than our single-message size limit. The other side "
             "probably won't accept it (assuming its traversalLimitInWords matches ours) and would abort the "
             "connection, so I won't send it.") {
    return;
  }
  // After a failed write or shutdown nothing more can arrive; the read side reports the end of the connection.
  if (shut_down_ || write_failed_) return;

  std::size_t count = segments.size();
  std::size_t header_words = (count + 2) / 2;  // count-1, then count sizes, padded to a word
  std::size_t old = out_.size();
  out_.resize(old + (header_words + body_words) * sizeof(capnp::word));
  kj::byte* h = out_.data() + old;
  std::memset(h, 0, header_words * sizeof(capnp::word));
  std::uint32_t first = static_cast<std::uint32_t>(count - 1);
  std::memcpy(h, &first, 4);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t size = static_cast<std::uint32_t>(segments[i].size());
    std::memcpy(h + 4 + 4 * i, &size, 4);
  }
  kj::byte* out = h + header_words * sizeof(capnp::word);
  for (auto segment : segments) {
    auto bytes = segment.asBytes();
    std::memcpy(out, bytes.begin(), bytes.size());
    out += bytes.size();
  }
  queued_bytes_ += (header_words + body_words) * sizeof(capnp::word);
  if (receipt.get() != nullptr) {
    // The peer counts the messages it takes in the order they arrive, which is the order they are queued here.
    const std::uint64_t ordinal = counts_taken ? ++counted_messages_ : 0;
    tracked_.push_back(Tracked{queued_bytes_, ordinal, kj::mv(receipt)});
  }
  schedule_flush();
  // A long burst (many pipelined calls, or the replies to them) goes out in pieces as it grows, so that the peer
  // works on the first calls while this side still produces the rest: both processes busy, not taking turns.
  if (out_.size() - out_begin_ >= kEagerWriteBytes && write_observer_ == nullptr) write_now();
}

void SocketVatNetwork::send_item_taken() {
  if (shut_down_ || write_failed_) return;
  out_.insert(out_.end(), std::begin(kItemTaken), std::end(kItemTaken));
  queued_bytes_ += sizeof kItemTaken;
  schedule_flush();
  // Out now, not at the event loop's next turn: the get returns to a caller that may not call again for long.
  if (write_observer_ == nullptr) write_now();
}

void SocketVatNetwork::schedule_flush() {
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    // evalLast: runs once everything already queued on the event loop ran, so one turn's messages share a write.
    // It does not wait for I/O or a timer: the write still happens before the loop next sleeps.
    flush_task_ = kj::evalLast([this] { return write_out(); }).eagerlyEvaluate([this](kj::Exception&&) {
      flush_scheduled_ = false;
      write_failed_ = true;
      out_.clear();
      out_begin_ = 0;
    });
  }
}

void SocketVatNetwork::write_now() {
  if (ring_) {
    if (kj::runCatchingExceptions([&] { write_to_ring(); }) != nullptr) {
      write_failed_ = true;  // as below: the read side sees the end
    } else if (out_begin_ < out_.size()) {
      return;  // full: the scheduled flush waits for room
    }
    out_.clear();
    out_begin_ = 0;
    return;
  }
  while (out_begin_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_begin_, out_.size() - out_begin_, MSG_NOSIGNAL);
    if (n >= 0) {
      note_written(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      // Inside send(), called by the RPC system: not the place to throw. The read side sees the end.
      write_failed_ = true;
      out_.clear();
      out_begin_ = 0;
    }
    return;  // full: the scheduled flush waits for room
  }
  out_.clear();
  out_begin_ = 0;
}

kj::Promise<void> SocketVatNetwork::write_out() {
  while (ring_ && out_begin_ < out_.size()) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { write_to_ring(); })) { return kj::mv(*e); }
    if (out_begin_ == out_.size()) break;
    if (peer_gone_) return KJ_EXCEPTION(DISCONNECTED, "write to manager ring: the peer is gone");
    // Full: wait for the peer to take bytes out (its doorbell), listening before arming, as the reader does.
    kj::Promise<void> bell = doorbell();
    if (ring_.arm_writer()) continue;
    return bell.then([this] { return write_out(); });
  }
  while (out_begin_ < out_.size()) {
    // MSG_NOSIGNAL: a vanished peer is an EPIPE error here, not a SIGPIPE for the process.
    ssize_t n = ::send(fd_, out_.data() + out_begin_, out_.size() - out_begin_, MSG_NOSIGNAL);
    if (n >= 0) {
      note_written(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return socket_error(errno, "write to manager socket");
    // The socket buffer is full: watch for room until the backlog is out (epoll reports the current state when
    // the observer is added, so an edge that came before cannot be missed). Messages sent meanwhile are appended
    // to out_ and go with it.
    if (write_observer_ == nullptr) {
      write_fd_ = kj::AutoCloseFd(::fcntl(fd_, F_DUPFD_CLOEXEC, 0));
      if (write_fd_ == nullptr) return socket_error(errno, "dup manager socket");
      write_observer_ = kj::heap<kj::UnixEventPort::FdObserver>(port_, write_fd_,
                                                                kj::UnixEventPort::FdObserver::OBSERVE_WRITE);
    }
    return KJ_ASSERT_NONNULL(write_observer_)->whenBecomesWritable().then([this] { return write_out(); });
  }
  // Done: no EPOLLOUT wake-ups from now on (the observer goes before the descriptor it watches).
  write_observer_ = nullptr;
  write_fd_ = nullptr;
  out_.clear();
  out_begin_ = 0;
  if (out_.capacity() > kKeepBufferBytes) std::vector<kj::byte>().swap(out_);
  flush_scheduled_ = false;
  return kj::READY_NOW;
}

void SocketVatNetwork::note_written(std::size_t bytes) {
  out_begin_ += bytes;
  written_bytes_ += bytes;
}

// ---- delivery tracking ----

void SocketVatNetwork::count_item_taken() {
  // relaxed: a test installs its hook before the get it wants to stop, in the same thread.
  if (auto hook = g_manager_test_hook.load(std::memory_order_relaxed)) [[unlikely]] {
    hook(ManagerHookPoint::kItemRead);
  }
  if (ring_) {
    ring_.count_item_taken();
  } else {
    send_item_taken();
  }
}

void SocketVatNetwork::track_last_message(std::uint64_t created_before, kj::Own<Receipt> receipt,
                                          bool counts_taken) {
  KJ_REQUIRE(messages_created_ == created_before + 1 && last_outgoing_ != nullptr,
             "track_last_message: no single new message to track", created_before, messages_created_);
  last_outgoing_->track(kj::mv(receipt), counts_taken);
}

bool SocketVatNetwork::peer_reset() {
  if (peer_reset_) return true;
  int err = 0;
  socklen_t len = sizeof err;
  // SO_ERROR reads and clears the pending error; remember it, as the read that would have reported it will not.
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == ECONNRESET) peer_reset_ = true;
  return peer_reset_;
}

// The peer has read every byte written so far when the socket's send queue is empty (SIOCOUTQ: for a Unix socket,
// what the peer has not consumed yet). A peer that dies has its unread bytes discarded, which empties the queue
// too, but the kernel first marks this socket with ECONNRESET: so the error is checked after the queue.
void SocketVatNetwork::confirm_deliveries() {
  if (ring_) {
    // The peer's read position: every message that ends at or before it was taken out by the peer. One whose
    // taking the peer counts is delivered once the count reached it too (the read comes first).
    std::uint64_t consumed = 0;
    if (kj::runCatchingExceptions([&] { consumed = ring_.consumed_by_peer(); }) != nullptr) return;
    const std::uint64_t taken = ring_.items_taken_by_client();
    while (!tracked_.empty() && tracked_.front().end <= consumed && tracked_.front().taken_ordinal <= taken) {
      tracked_.front().receipt->delivered();
      tracked_.pop_front();
    }
    return;
  }
  int unread = 0;
  if (::ioctl(fd_, SIOCOUTQ, &unread) != 0 || unread != 0 || peer_reset()) return;
  while (!tracked_.empty() && tracked_.front().end <= written_bytes_ &&
         tracked_.front().taken_ordinal <= taken_frames_) {
    tracked_.front().receipt->delivered();
    tracked_.pop_front();
  }
}

void SocketVatNetwork::settle_deliveries() {
  if (tracked_.empty()) return;
  confirm_deliveries();
  // Receipts may act at once (give an item back to a queue, which may hand it to another connection's waiter):
  // take them out first.
  auto left = kj::mv(tracked_);
  std::uint64_t consumed = 0;  // on a ring: how far the peer read (0 when its position is broken: nothing known)
  if (ring_) (void)kj::runCatchingExceptions([&] { consumed = ring_.consumed_by_peer(); });
  const std::uint64_t taken = ring_ ? ring_.items_taken_by_client() : taken_frames_;
  for (auto& t : left) {
    if (t.end > written_bytes_) {
      t.receipt = nullptr;  // never completely written
    } else if (t.taken_ordinal != 0 && t.taken_ordinal <= taken) {
      t.receipt->delivered();  // the peer counted it: its get returned it (on a socket, whatever SIOCOUTQ says)
    } else if (ring_ && t.end <= consumed) {
      // Read by the peer, and left above because the peer did not count it (or one before it) as taken.
      if (t.taken_ordinal == 0) {
        t.receipt->delivered();
      } else {
        t.receipt->fate_unknown();  // read, and the get that read it never returned: the peer died in between
      }
    } else if (ring_ && peer_gone_) {
      t.receipt = nullptr;  // the peer is gone and did not take it out (confirm_deliveries above)
    } else if (peer_reset_ && t.end == written_bytes_) {
      t.receipt = nullptr;  // the peer closed with unread bytes: at least the last one written, so all of this
    } else {
      t.receipt->fate_unknown();
    }
  }
}

kj::Promise<void> SocketVatNetwork::shutdown() {
  // Everything sent so far still goes out, then the peer sees EOF. The RPC system reads no more: nothing would
  // answer a direct call.
  shut_down_ = true;
  end_direct(KJ_EXCEPTION(DISCONNECTED, "Peer disconnected."));
  KJ_IF_MAYBE(task, flush_task_) {
    auto pending = kj::mv(*task);
    flush_task_ = nullptr;
    return pending.then([this] { ::shutdown(fd_, SHUT_WR); });
  }
  ::shutdown(fd_, SHUT_WR);
  return kj::READY_NOW;
}

}  // namespace ipc::manager::detail

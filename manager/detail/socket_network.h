// manager/detail/socket_network.h: the Cap'n Proto two-party VatNetwork of one Manager connection, directly on
// its stream socket (Unix, or TCP: the same code; TCP only changes what delivery tracking can know, see below). Speaks exactly what capnp::TwoPartyVatNetwork speaks (same framing, same VatIds), so
// any Cap'n Proto peer can be on the other end; it exists only to make each message cheaper. Internal.
//
// Why not TwoPartyVatNetwork over a kj::AsyncIoStream (Cap'n Proto 0.9):
// - Writes: TwoPartyVatNetwork chains every outgoing message onto the previous write with several promise nodes
//   and event-loop turns, and the stock stream writes each message with its own writev(2). Here send() copies
//   the message into a buffer at once; everything sent in one event-loop turn goes out with one write(2) at the
//   end of the turn (evalLast: after all queued work, before the loop sleeps, so no added latency). A long burst
//   is written in 16 KiB pieces as it grows, so that the peer starts on it while this side produces the rest.
// - Reads: the stock stream reads each message with two read(2) calls and every message costs an extra turn.
//   Here one read(2) takes whatever has arrived (many pipelined messages), and buffered messages are handed out
//   without further system calls. After a read that did not fill the buffer the socket is known to be empty, so
//   the next read waits for epoll's next readable edge instead of first failing with EAGAIN.
// - Wake-ups: KJ's socket stream registers the fd for EPOLLIN|EPOLLOUT (edge-triggered). A Unix socket signals
//   EPOLLOUT every time the peer reads, so every reply the peer consumed woke this side once more for nothing: a
//   blocking call cost four sleeps and wake-ups instead of two, the largest single cost. Here the fd is watched
//   for reads only; writability is watched (on a dup of the fd, as epoll keys on the descriptor) only while a
//   write is stuck on a full socket buffer.
// - Allocation: a message without a size hint gets a 1 KiB first segment, not Cap'n Proto's zeroed 8 KiB; small
//   messages (up to 2 KiB) are built in, and received into, buffers the connection reuses, not one calloc each.
// Net effect: one write(2), one read(2) and one epoll_wait(2) per side per round trip, whatever the batch size.
// On a Unix socket the same bytes may instead go through two rings in shared memory (ring_stream.h: the client
// asks at connect, offer_ring() on the server): the writes and reads above become copies into and out of a ring,
// the socket carries one-byte doorbells to a side that sleeps, and a spinning thread finds its bytes without a
// system call (RingSpin, poll_rings below).
// Direct paths, past the RPC system, on the same wire: a client sends hot calls and takes their Returns itself
// (DirectReturns); a server answers the calls on plain objects itself (offer_plain_export, docs/manager.md).
//
// Threads: the owning event loop's thread only. Processes: n/a.
// Lifetime: owns and closes the socket. Must outlive the RpcSystem built on it (declare it first). onDisconnect()
//   resolves once the RPC system has dropped the connection (after EOF, a read error or a protocol error).
// Memory: the read buffer grows with the bytes that arrived (doubling), never to the size a frame announces.
// Errors: a frame with more than 512 segments, a body larger than options.traversalLimitInWords, or (during the
//   handshake) larger than the handshake limit fails the read before its body is read or allocated, with an error
//   naming the size and the limit (the RPC system then sends the peer an Abort with it and drops the connection;
//   onDisconnect() rejects with it); EOF inside a message and
//   connection resets are DISCONNECTED exceptions. A failed write drops every later message; the read side then
//   sees the failure and ends the connection. Sending a message larger than the limit throws (the call fails).
#pragma once

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/rpc.h>
#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/map.h>
#include <kj/vector.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <unordered_set>
#include <vector>

#include "manager/detail/ring_stream.h"

namespace ipc::manager::detail {

// Activity of this thread's connections: the number of reads that brought bytes, and a promise for the next one.
// The server uses it to stay awake (polling) while requests keep arriving instead of paying a sleep and a
// wake-up per request. Thread-local: each event loop sees its own connections only.
std::uint64_t received_reads();
// How long a server keeps polling after the last request, and a client polls for its reply, before sleeping in
// epoll_wait: a few small calls' worth, far below a sleep and a wake-up's cost on a virtual machine (tens of us).
constexpr std::chrono::microseconds kPollWindow{50};
// Where spinning does not pay (more runnable tasks than CPUs), how many times a server or a client waiting for its
// reply gives its CPU away (sched_yield) and looks again before it sleeps, as the queues' waits do (block_until() in
// ipc/base/wait.h): the process it waits for may be the one waiting for this CPU. The server and four busy clients on
// two CPUs: 56-58 k calls/s in all when every wait slept at once, 92-95 k with these yields; two clients 50-58 k,
// 55-116 k (docs/manager.md).
constexpr unsigned kYieldsBeforeSleep = 4;
// Resolves at the next read that brings bytes on any connection of this thread (one waiter at a time).
kj::Promise<void> next_received_read();

class SocketVatNetwork;

// Spinning over shared rings (RingStream). A connection on the shared-memory transport whose ring is empty waits
// for its peer's doorbell, which the peer rings only for a side that asked for it (armed its reader). A thread that
// spins instead (a server while requests flow, a client waiting for its reply) marks the span with a RingSpin:
// meanwhile waiting readers do not ask for doorbells, and the spinner finds their bytes with poll_rings(), one load
// per ring and no system call. When the span ends every waiting reader asks for its doorbell again (and one whose
// bytes came meanwhile is woken), so that the thread may sleep in epoll_wait afterwards without missing anything.
class RingSpin {
 public:
  RingSpin();
  // Ends the span if end() did not: readers whose bytes came meanwhile are woken (their reads run on the loop's next
  // turns).
  ~RingSpin();
  // Ends the span without waking anyone: true if a waiting reader's ring has bytes now (the caller should look
  // again, with a new RingSpin, rather than sleep).
  bool end();
  RingSpin(const RingSpin&) = delete;
  RingSpin& operator=(const RingSpin&) = delete;

 private:
  bool arm_readers(bool wake);
  bool ended_ = false;
};
// Wakes every reader of this thread waiting on a ring that has bytes now (their reads run on the event loop's next
// turns): true if any. One load per waiting ring.
bool poll_rings();
// Whether a reader of this thread waits on a ring (if none, a spinner must poll the event port to see anything).
bool rings_waiting();


// Client side: calls sent past the RPC system (send_direct), answered by Returns the network hands here instead of
// to the RPC system. Their question ids start at kFirstQuestionId, far above the RPC system's own (which count up
// from 0 and reuse the lowest free one), so the two never meet on the server's answer table.
class DirectReturns {
 public:
  static constexpr std::uint32_t kFirstQuestionId = std::uint32_t{1} << 30;
  virtual ~DirectReturns() noexcept(false) = default;
  // The Return to one of this side's direct questions (answerId >= kFirstQuestionId).
  virtual void returned(capnp::rpc::Return::Reader ret) = 0;
  // The connection ended (EOF, a read error, a bad frame, an Abort, shutdown): calls still waiting fail with `why`.
  virtual void ended(const kj::Exception& why) = 0;
};

// Question ids, as the server's direct path keeps those it answered until their Finish: a bit per id in the two
// ranges clients use (an RPC system counts up from 0 reusing the lowest free id; a direct client counts up from
// DirectReturns::kFirstQuestionId), a hash set for any other. (kj::HashSet, tried first, cost ~8 k instructions per
// insert and per look-up here: the erased entries of a sliding window of consecutive ids lengthen its probes.)
class QuestionSet {
 public:
  bool contains(std::uint32_t id) const {
    std::uint32_t bit;
    if (const std::vector<std::uint64_t>* bits = dense(id, bit)) {
      return bit / 64 < bits->size() && ((*bits)[bit / 64] >> (bit % 64) & 1) != 0;
    }
    return other_.count(id) != 0;
  }
  void insert(std::uint32_t id) {
    std::uint32_t bit;
    if (std::vector<std::uint64_t>* bits = dense(id, bit)) {
      if (bit / 64 >= bits->size()) bits->resize(bit / 64 + 1);
      std::uint64_t& word = (*bits)[bit / 64];
      size_ += (word >> (bit % 64) & 1) == 0;
      word |= std::uint64_t{1} << (bit % 64);
      return;
    }
    size_ += other_.insert(id).second;
  }
  // Whether it was there.
  bool erase(std::uint32_t id) {
    std::uint32_t bit;
    if (std::vector<std::uint64_t>* bits = dense(id, bit)) {
      if (bit / 64 >= bits->size()) return false;
      std::uint64_t& word = (*bits)[bit / 64];
      const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
      if ((word & mask) == 0) return false;
      word &= ~mask;
      --size_;
      return true;
    }
    if (other_.erase(id) == 0) return false;
    --size_;
    return true;
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::uint32_t kDenseIds = 1u << 16;  // 8 KiB of bits per range at most
  static constexpr std::uint32_t kDirectBase = DirectReturns::kFirstQuestionId;
  const std::vector<std::uint64_t>* dense(std::uint32_t id, std::uint32_t& bit) const {
    return const_cast<QuestionSet*>(this)->dense(id, bit);
  }
  std::vector<std::uint64_t>* dense(std::uint32_t id, std::uint32_t& bit) {
    if (id < kDenseIds) {
      bit = id;
      return &low_;
    }
    if (id - kDirectBase < kDenseIds) {
      bit = id - kDirectBase;
      return &direct_;
    }
    return nullptr;
  }
  std::vector<std::uint64_t> low_;
  std::vector<std::uint64_t> direct_;
  std::unordered_set<std::uint32_t> other_;
  std::size_t size_ = 0;
};

// What became of a message someone cares about (a reply carrying a queue item), told at most once by the network
// that sends it. A Receipt destroyed without a verdict means the message did not reach the peer: it was never
// sent, or never completely written.
class Receipt {
 public:
  virtual ~Receipt() noexcept(false) = default;
  // The peer read all of it.
  virtual void delivered() = 0;
  // It was written, but the connection ended without telling whether the peer read it.
  virtual void fate_unknown() = 0;
};

// A reference to a network that capabilities may hold past the network's life: null once it is destroyed.
struct NetworkRef final : public kj::Refcounted {
  SocketVatNetwork* network = nullptr;
};

class SocketVatNetwork final : public capnp::TwoPartyVatNetworkBase,
                               private capnp::TwoPartyVatNetworkBase::Connection {
 public:
  // Takes `fd` (a connected SOCK_STREAM socket, Unix or TCP) and makes it non-blocking. `options` bound what is read.
  // A non-zero `handshake_message_bytes` bounds every message body until end_handshake(): the server's limit for a
  // peer that has not authenticated yet, so that such a peer cannot make it buffer more than that.
  // A non-empty `ring` (a client's, from RingStream::open) carries the bytes in shared memory from the start; the
  // socket then carries doorbells only (see ring_stream.h).
  SocketVatNetwork(kj::UnixEventPort& port, kj::AutoCloseFd fd, capnp::rpc::twoparty::Side side,
                   capnp::ReaderOptions options, std::size_t handshake_message_bytes = 0, RingStream ring = {});
  ~SocketVatNetwork() noexcept(false);
  KJ_DISALLOW_COPY(SocketVatNetwork);

  // Resolves once the RPC system has dropped the connection; rejects with the reason when this side refused what
  // the peer sent (an oversized or malformed frame), so that the owner can log it.
  kj::Promise<void> onDisconnect() { return disconnected_.addBranch(); }

  // Delivery tracking, for a reply whose loss must not go unnoticed. The reply's message is made by the RPC system
  // (newOutgoingMessage) when the server first asks for its results: read messages_created() before, and if one
  // message was made since, track_last_message() ties `receipt` to it. The verdict:
  //   - never sent (call cancelled, connection shut down), or not completely written: the receipt is destroyed;
  //   - the peer consumed every byte written after it (SIOCOUTQ reads 0, checked after each read that brought
  //     bytes while a tracked message waits, and at the end), or closed having read everything: delivered();
  //     over TCP SIOCOUTQ counts what the peer's kernel has not acknowledged, so there "consumed" means received
  //     by the peer's host; a peer process that dies before reading still resets the connection (next case),
  //     only a peer host that vanished does not (docs/manager.md, "Over TCP");
  //   - the peer closed with unread bytes (the kernel then reports ECONNRESET): the last message written was not
  //     read completely, so if that is the tracked one its receipt is destroyed; an earlier one: fate_unknown();
  //   - the connection ended while the peer, still alive, had not read it: fate_unknown().
  // `counts_taken`: the peer counts each such message it takes (a QueueProxy::get that set countsTaken), as its
  // last step before handing it to its caller: in the ring's header page on the shared-memory transport
  // (RingStream::count_item_taken()), with a kItemTaken frame on a socket. Reading it is then not enough: it is
  // delivered() once the count reached it too, and one read but never counted when the connection ends (the peer
  // died in between, or over TCP its host vanished) gets fate_unknown().
  std::uint64_t messages_created() const { return messages_created_; }
  // REQUIRES: exactly one message was created since `messages_created()` returned `created_before`, and not sent.
  void track_last_message(std::uint64_t created_before, kj::Own<Receipt> receipt, bool counts_taken = false);
  // false once nothing more will be sent (shut down, or a write failed).
  bool can_send() const { return !shut_down_ && !write_failed_; }
  kj::Own<NetworkRef> ref() { return kj::addRef(*ref_); }

  // Client side, queue items (`counts_taken` above): whether this connection counts the items its gets take (every
  // connection of this library does: in the rings' header page, or with a kItemTaken frame on a socket), and the
  // count of one more, once it is in the caller's hands.
  bool counts_taken_items() const { return true; }
  void count_item_taken();

  // Client side, the direct path (DirectReturns above). `returns` must outlive this network, or be unset first.
  void set_direct_returns(DirectReturns* returns) { direct_ = returns; }
  // Sends a message built outside the RPC system (a direct Call, or its Finish), after everything sent before it.
  void send_direct(capnp::MessageBuilder& message) { send(message, kj::Own<Receipt>()); }
  // Which object a Manager.open call returned, for the direct path to address it by its import id. The RPC
  // system's Calls are counted as they are sent: if exactly one was sent since `calls_before`, and it called
  // `method_id` of `interface_id` (Manager.open), watch_last_call() makes the network note the capability its
  // Return carries (when it is one the server hosts: senderHosted), which take_opened_import() then gives, once.
  std::uint64_t calls_sent() const { return calls_sent_; }
  void watch_last_call(std::uint64_t calls_before, std::uint64_t interface_id, std::uint16_t method_id);
  kj::Maybe<std::uint32_t> take_opened_import();

  // Server side, the direct path: the Return of a Manager.open being built (the one message made since
  // `created_before`) hands the client `server`'s capability. Once that Return is sent, the network answers the
  // calls on the export it names itself, straight from the socket (see "The server's direct path" in
  // docs/manager.md): parses the Call, runs `server.dispatchCall` at once, writes the Return, and swallows the
  // Finish. `cap` keeps the object alive while the client may call it there. Only calls of methods
  // 0 .. method_count - 1 of `interface_id` are answered so; others (which dispatchCall would fail with a rejected
  // promise) go to the RPC system.
  // REQUIRES: every such method answers or throws before it returns (a ready promise, never a rejected one), and
  //   none takes or returns a capability.
  void offer_plain_export(std::uint64_t created_before, capnp::Capability::Client cap,
                          capnp::Capability::Server& server, std::uint64_t interface_id, std::uint16_t method_count);

  // Server, on a Unix socket, before anything was read: a client whose first bytes are kRingRequest gets the
  // shared-memory transport (a RingStream made here, its memory sent with kRingGranted); any other first bytes are
  // a plain Cap'n Proto peer's, served over the socket.
  void offer_ring() { offer_ring_ = true; }
  bool on_ring() const { return static_cast<bool>(ring_); }

  // From now on messages up to `options.traversalLimitInWords` are accepted (the peer authenticated).
  void end_handshake();
  bool in_handshake() const { return handshake_message_bytes_ != 0; }

  // VatNetwork
  kj::Maybe<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> connect(
      capnp::rpc::twoparty::VatId::Reader ref) override;
  kj::Promise<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>> accept() override;

 // Internal to socket_network.cc (public only so that its helpers there can name it).
  class BufferPool;

 private:
  class Outgoing;
  class Incoming;
  // Fulfils the disconnect promise when the last reference the RPC system holds to the connection goes.
  struct ConnectionDisposer final : public kj::Disposer {
    mutable kj::Own<kj::PromiseFulfiller<void>> fulfiller;
    mutable unsigned refs = 0;
    mutable kj::Maybe<kj::Exception> failure;  // why this side ended the connection, if it did
    void disposeImpl(void*) const override;
  };

  // Connection
  capnp::rpc::twoparty::VatId::Reader getPeerVatId() override;
  kj::Own<capnp::OutgoingRpcMessage> newOutgoingMessage(unsigned firstSegmentWordSize) override;
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> receiveIncomingMessage() override;
  kj::Promise<void> shutdown() override;

  kj::Own<capnp::TwoPartyVatNetworkBase::Connection> as_connection();
  kj::Maybe<kj::Own<capnp::IncomingRpcMessage>> try_parse();
  bool take_if_direct(const capnp::word* words, std::size_t count);
  struct PlainOffer {
    capnp::Capability::Client cap;
    capnp::Capability::Server* server;
    std::uint64_t interface_id;
    std::uint16_t method_count;
  };
  bool serves_plainly() const;
  bool take_if_plain(const capnp::word* words, std::size_t count);
  void answer_plainly(capnp::rpc::Call::Reader call, capnp::Capability::Server& server);
  void answer_plain_failure(std::uint32_t question, const kj::Exception& failure);
  void note_exports(capnp::MessageBuilder& message, kj::Maybe<PlainOffer>& offer);
  void release_plain_export(std::uint32_t export_id, std::uint32_t references);
  void note_outgoing(capnp::MessageBuilder& message);
  void end_direct(const kj::Exception& why);
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> read_more();
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> peer_ended();
  void send(capnp::MessageBuilder& message, kj::Own<Receipt> receipt, bool counts_taken = false);
  // Client, on a socket: a kItemTaken frame, written at once (count_item_taken()).
  void send_item_taken();
  // Writes out_ at the end of this turn of the event loop, unless already asked.
  void schedule_flush();
  void note_written(std::size_t bytes);
  void confirm_deliveries();
  bool peer_reset();
  void settle_deliveries();
  void write_now();
  kj::Promise<void> write_out();
  std::size_t read_chunk_bytes() const;
  // The shared-memory transport (ring_ set).
  friend class RingSpin;
  friend bool poll_rings();
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> read_from_ring();
  kj::Promise<void> ring_bytes_or_doorbell();
  kj::Promise<void> doorbell();
  void start_doorbell_watch();
  void next_bell();
  kj::Promise<void> watch_doorbells();
  void drain_doorbells();
  void ring_doorbell();
  std::size_t write_to_ring();
  void grant_ring();
  void join_ring_readers();
  void leave_ring_readers();
  void wake_ring_reader();

  kj::UnixEventPort& port_;
  kj::AutoCloseFd fd_;
  capnp::rpc::twoparty::Side side_;
  capnp::ReaderOptions options_;
  std::size_t handshake_message_bytes_;  // 0: no handshake limit
  capnp::MallocMessageBuilder peer_vat_id_{4};
  bool accepted_ = false;
  kj::Own<kj::PromiseFulfiller<kj::Own<capnp::TwoPartyVatNetworkBase::Connection>>> never_accepted_;
  ConnectionDisposer disposer_;
  kj::ForkedPromise<void> disconnected_ = nullptr;

  kj::UnixEventPort::FdObserver read_observer_;  // EPOLLIN only (see above)
  // Armed right after a read that emptied the socket, in the same turn, so that no epoll_wait can report the next
  // edge before someone listens for it; the next read waits for it. Null: the socket may hold data, just read.
  kj::Maybe<kj::Promise<void>> readable_;
  std::vector<kj::byte> in_;  // received bytes; [in_begin_, in_end_) not parsed yet
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  kj::Own<BufferPool> pool_;  // buffers for the messages of this connection

  // Delivery tracking (see track_last_message). Byte counts are of the whole connection's output stream.
  kj::Own<NetworkRef> ref_;
  std::uint64_t messages_created_ = 0;
  Outgoing* last_outgoing_ = nullptr;  // valid only right after it was made (see track_last_message)
  std::uint64_t queued_bytes_ = 0;     // appended to out_, ever
  std::uint64_t written_bytes_ = 0;    // handed to the kernel, ever
  struct Tracked {
    std::uint64_t end;            // queued_bytes_ just after the message
    std::uint64_t taken_ordinal;  // its place among the messages whose taking the peer counts; 0: not counted
    kj::Own<Receipt> receipt;
  };
  std::deque<Tracked> tracked_;  // in stream order
  std::uint64_t counted_messages_ = 0;  // tracked messages sent whose taking the peer counts (taken_ordinal)
  std::uint64_t taken_frames_ = 0;      // server, on a socket: kItemTaken frames received (items the peer took)
  bool peer_reset_ = false;      // the peer closed with bytes of ours unread

  // The direct path (client side only; see set_direct_returns).
  DirectReturns* direct_ = nullptr;
  std::uint64_t calls_sent_ = 0;
  std::uint32_t last_call_question_ = 0;
  std::uint64_t last_call_interface_ = 0;
  std::uint16_t last_call_method_ = 0;
  kj::Maybe<std::uint32_t> watched_open_;   // the question whose Return's capability to note
  kj::Maybe<std::uint32_t> opened_import_;  // what was noted
  kj::Maybe<kj::Exception> abort_;          // the reason of an Abort the peer sent, for the direct calls

  // The server's direct path (offer_plain_export). The RPC system's export table stays the authority: an entry
  // here mirrors the references the RPC system holds for an export it sent in an offered Return (one per capTable
  // entry sent, less the client's Release messages and the Finishes that release a Return's capabilities). An
  // export id seen leaving in any other way is taken for reused and dropped here: calls on it go to the RPC system.
  struct PlainExport {
    PlainOffer object;
    std::uint64_t references;
  };
  kj::HashMap<std::uint32_t, PlainExport> plain_exports_;
  QuestionSet plain_answers_;  // questions answered here whose Finish has not arrived yet
  // The RPC system's answers whose Return carried plain exports: a Finish with releaseResultCaps releases them.
  kj::HashMap<std::uint32_t, kj::Vector<std::uint32_t>> result_exports_;
  unsigned reads_in_a_row_ = 0;  // reads in one synchronous chain; see read_more()

  std::vector<kj::byte> out_;  // framed messages; [out_begin_, end) not written yet
  std::size_t out_begin_ = 0;
  bool flush_scheduled_ = false;
  bool shut_down_ = false;
  bool write_failed_ = false;
  // Only while a write waits for buffer space: a dup of fd_ watched for EPOLLOUT.
  kj::AutoCloseFd write_fd_;
  kj::Maybe<kj::Own<kj::UnixEventPort::FdObserver>> write_observer_;

  // The shared-memory transport: bytes go through ring_, the socket carries one-byte doorbells and its end.
  RingStream ring_;
  bool offer_ring_ = false;  // server: the first bytes may still ask for a ring (offer_ring())
  bool peer_gone_ = false;   // on the ring: the socket ended (EOF or an error): the peer writes and reads no more
  // The next doorbell (or the socket's end), shared by the reader and a writer waiting for room: bell_ resolves
  // when bell_rung_ is fulfilled by the watch of the socket (watch_doorbells), which lasts the connection's life.
  kj::Maybe<kj::ForkedPromise<void>> bell_;
  kj::Own<kj::PromiseFulfiller<void>> bell_rung_;
  kj::Maybe<kj::Promise<void>> doorbell_watch_;  // after bell_rung_: destroyed first, it refers to the members above
  // The reader's wait while its thread spins (RingSpin): poll_rings() fulfils it. In the thread's list of waiting
  // readers while in_ring_readers_.
  kj::Own<kj::PromiseFulfiller<void>> ring_reader_;
  bool in_ring_readers_ = false;
  SocketVatNetwork* ring_prev_ = nullptr;  // neighbours in the thread's list of waiting readers
  SocketVatNetwork* ring_next_ = nullptr;

  kj::Maybe<kj::Promise<void>> flush_task_;  // last: destroyed first, it refers to the members above
};

}  // namespace ipc::manager::detail

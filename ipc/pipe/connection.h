// ipc/pipe/connection.h: Pipe() and Connection, Python's multiprocessing.Pipe for C++.
//
//   auto [parent_end, child_end] = ipc::Pipe();          // duplex
//   fork(): the child uses child_end and closes parent_end; the parent does the opposite.
//   child_end.send(std::string("hello"));               // any type with an ipc::Codec<T>
//   auto text = parent_end.recv<std::string>();          // std::optional: nullopt = end of stream
//
// Design: each direction is a single-producer/single-consumer ring of variable-size records in a MAP_SHARED
// mapping that forked children inherit, so a message is one copy in and one copy out with no system call while
// both sides are busy; that common send and recv (a message of one record, room or a message there now) are inline
// in the caller, the rest is out of line. A receive right behind a busy sender that finds only a few bytes waits
// (spinning, a few hundred nanoseconds at most) for a run of messages, which keeps it off the sender's cache line of
// the ring's tail (docs/pipe.md). A side with nothing to do spins briefly, then sleeps on a futex word in
// the ring (woken only when it sleeps: a busy stream costs no syscall), and after 2 ms in poll(2) on its socket of
// the direction's Unix socketpair (woken by a one-byte doorbell). The socket makes a Connection pollable together
// with others and with process sentinels (wait()), and tells an end when every copy of the other end is closed —
// which is how the death of the peer process is seen (within the 2 ms of the futex phase, at once in poll). One
// socketpair per direction means a sending thread and a receiving thread of the same end never sleep on (or drain)
// the same socket.
//
// Threads: per Connection, one thread sending and one thread receiving at a time (Python allows one thread in
//   all); the two ends are independent.
// Processes: ends are inherited by fork(). Close the end a process does not use: end of stream is reported when
//   every copy of the other end, in every process, is closed or its process died.
// Happens-before: everything the sender did before send(m) happens before the recv() that returns m.
// Lifetime: the mapping lives while any Connection of the pipe in any process is open; the kernel frees it with
//   the last one. A process killed mid-send loses at most the message it was sending: the receiver drops a
//   partial long message and reports end of stream. While another process keeps a copy of the sending end and
//   sends on, the receiver drops the dead sender's parts when the next message starts (a first part names its
//   sender's pid).
// Timeouts: a timeout bounds the whole call, every part of a long message included. A send that returns
//   kTimeout did not send its message: if some parts were already out, the receiver drops them (the next send,
//   or the timed-out one when there is room, marks the message given up). A recv that returns kTimeout keeps
//   the parts it took, and the next recv goes on with them: nothing is lost.
// Errors: end of stream, timeouts and a closed peer are return values (Outcome / Outcome / std::optional).
//   A buffer too small for recv_bytes_into throws BufferTooSmall (the message stays queued, nothing is lost); a
//   message of 2^40 bytes (1 TiB) or more throws InvalidArgument from send;
//   using a closed Connection, sending on a receive-only end or receiving on a send-only end throws StateError;
//   a corrupt typed message throws CodecError (it is consumed); OS failures throw SystemError. A stream that
//   breaks its format (two processes sending on one end at once, overwritten memory) throws StreamCorrupted
//   from recv, and from every recv after it: the receiver never reads outside the ring nor takes a wrong
//   message for a right one. A sender whose ring positions were overwritten still writes only inside the ring
//   (pipe_fuzz); the receiver reports the break it then finds.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"
#include "ipc/base/process.h"
#include "ipc/base/wait.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/placement.h"
#include "ipc/pipe/detail/byte_ring.h"
#include "ipc/shared/codec.h"

namespace ipc {
namespace detail {
struct PipeTestAccess;
}

// recv_bytes_into() was given a buffer smaller than the next message; needed_bytes() says how large it is.
class BufferTooSmall : public InvalidArgument {
 public:
  BufferTooSmall(size_t needed, size_t given)
      : InvalidArgument("recv_bytes_into: message of " + std::to_string(needed) + " bytes does not fit a buffer of " +
                        std::to_string(given) + " bytes"),
        needed_(needed) {}
  size_t needed_bytes() const { return needed_; }

 private:
  size_t needed_;
};

struct PipeOptions {
  bool duplex = true;
  // Ring bytes per direction (a power of two >= 4096); messages of any size pass, in parts of a quarter of this.
  uint64_t ring_bytes = 1 << 20;
  // Where the rings' pages go (e.g. the node of the two processes); default: the kernel's default.
  numa::MemoryPolicy policy{};
  // true: the rings live in a memfd rather than anonymous memory, so that an end can be handed to a process that
  // is not a fork of this one (Connection::handoff() and Connection::adopt()). Costs one descriptor per pipe.
  bool transferable = false;
};

// What a process that is not a fork of the pipe's creator needs to open one end: descriptors to hand over (by
// SCM_RIGHTS, or kept open across exec with ProcessOptions::pass_fds) and where the end's rings lie in the memory.
struct ConnectionHandoff {
  int memory_fd = -1;  // the memfd holding both rings
  uint64_t memory_bytes = 0;
  int in_fd = -1;  // the receiving direction's socket (-1: a send-only end)
  uint64_t in_offset = 0;
  int out_fd = -1;  // the sending direction's socket (-1: a receive-only end)
  uint64_t out_offset = 0;
};

class Connection;
std::pair<Connection, Connection> Pipe(const PipeOptions& options);

class Connection {
  struct Shared;  // the mapping of both rings, shared by every Connection of the pipe in this process

 public:
  Connection() = default;
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // --- raw bytes ---------------------------------------------------------------------------------------------
  // Sends one message (any size; blocks while the ring is full): kOk, kTimeout (with a timeout), or kClosed: every
  // copy of the other end is closed, and the message was not received. A close() is seen by the next send, and so
  // is a receiving process that died asleep waiting for a message (as an idle receiver does): the send that would
  // wake it finds it gone. When the receiver had taken this very message before it died (it read it as the send
  // went to wake it), the send is kOk and the next one kClosed. One that died while busy is seen within
  // kBytesBetweenLooks bytes of sends, or once the ring is full if that comes first. What was in the ring is lost
  // with it, as the bytes in an OS pipe's buffer are.
  // The sending side looks at its socket (one zero-timeout poll(2)) each time this many bytes of records went out
  // (the stream's position crossed a multiple of it; 29127 sends of 8 bytes, 63 of 4 KiB): the only sign of a
  // receiver that died while busy is its socket, hung up. Sending does not count: the ring's write finds the
  // crossing in the branch it takes once per cache line anyway.
  static constexpr uint64_t kBytesBetweenLooks = detail::kBytesBetweenLooks;
  [[nodiscard, gnu::always_inline]] Outcome send_bytes(std::span<const std::byte> message) {
    if (try_send_now(message)) [[likely]] return Outcome::kOk;
    return send_impl(message, Deadline::never());
  }
  template <typename Rep, typename Period>
  [[nodiscard, gnu::always_inline]] Outcome send_bytes(std::span<const std::byte> message,
                                                       std::chrono::duration<Rep, Period> timeout) {
    if (try_send_now(message)) [[likely]] return Outcome::kOk;
    return send_impl(message, Deadline::after(timeout));
  }
  // Receives one message into `out` (replacing its contents): kOk, kTimeout (with a timeout), or kClosed: end of
  // stream (every copy of the other end is closed and everything it sent has been received).
  [[nodiscard, gnu::always_inline]] Outcome recv_bytes(std::vector<std::byte>& out) {
    if (try_recv_now(out)) [[likely]] return Outcome::kOk;
    return recv_impl(out, Deadline::never());
  }
  template <typename Rep, typename Period>
  [[nodiscard, gnu::always_inline]] Outcome recv_bytes(std::vector<std::byte>& out,
                                                       std::chrono::duration<Rep, Period> timeout) {
    if (try_recv_now(out)) [[likely]] return Outcome::kOk;
    return recv_impl(out, Deadline::after(timeout));
  }
  // Receives one message into `buffer`; `size` gets its length. Throws BufferTooSmall (message kept) if it does
  // not fit.
  [[nodiscard, gnu::always_inline]] Outcome recv_bytes_into(std::span<std::byte> buffer, size_t& size) {
    if (try_recv_now_into(buffer, size)) [[likely]] return Outcome::kOk;
    return recv_into_impl(buffer, size, Deadline::never());
  }
  template <typename Rep, typename Period>
  [[nodiscard, gnu::always_inline]] Outcome recv_bytes_into(std::span<std::byte> buffer, size_t& size,
                                                            std::chrono::duration<Rep, Period> timeout) {
    if (try_recv_now_into(buffer, size)) [[likely]] return Outcome::kOk;
    return recv_into_impl(buffer, size, Deadline::after(timeout));
  }

  // --- typed values through ipc::Codec<T> --------------------------------------------------------------------
  template <typename T>
  [[nodiscard]] Outcome send(const T& value) {
    return send_value(value, Deadline::never());
  }
  template <typename T, typename Rep, typename Period>
  [[nodiscard]] Outcome send(const T& value, std::chrono::duration<Rep, Period> timeout) {
    return send_value(value, Deadline::after(timeout));
  }
  // The next value; nullopt at end of stream. Throws CodecError for a message that is not a T.
  template <typename T>
  [[nodiscard]] std::optional<T> recv() {
    std::optional<T> out;
    if (try_recv_now(scratch_) || recv_impl(scratch_, Deadline::never()) == Outcome::kOk) {
      out = Codec<T>::decode(scratch_);
    }
    return out;
  }
  // kOk (value set), kTimeout or kClosed.
  template <typename T, typename Rep, typename Period>
  [[nodiscard]] Outcome recv(T& value, std::chrono::duration<Rep, Period> timeout) {
    const Outcome r = try_recv_now(scratch_) ? Outcome::kOk : recv_impl(scratch_, Deadline::after(timeout));
    if (r == Outcome::kOk) value = Codec<T>::decode(scratch_);
    return r;
  }

  // --- readiness ---------------------------------------------------------------------------------------------
  // True when recv would not block: a message is queued or the stream has ended. Waits up to `timeout` (zero:
  // just look). Any time; no CPU while waiting.
  template <typename Rep = int64_t, typename Period = std::ratio<1>>
  [[nodiscard]] bool poll(std::chrono::duration<Rep, Period> timeout = std::chrono::seconds(0)) {
    return poll_impl(Deadline::after(timeout));
  }

  // --- handing an end to an unrelated process ----------------------------------------------------------------
  // This end's descriptors, still owned by this Connection: send them (SCM_RIGHTS) or pass them to an exec'd
  // program, then close() this end. StateError for a closed end or a Pipe made without PipeOptions::transferable.
  ConnectionHandoff handoff() const;
  // Opens the end described by `h` (descriptors received from its creator), taking ownership of every descriptor
  // in it (memory_fd is closed once mapped). Throws InvalidArgument for a handoff that does not describe rings in
  // the memory, SystemError when the memory cannot be mapped.
  static Connection adopt(const ConnectionHandoff& h);

  // --- where the rings are, and forked children ---------------------------------------------------------------
  // Where the pages of this pipe's rings (both directions) are now, per node (numa::page_placement). It keeps the
  // rings mapped, and on the first now() makes a read-only view of them of its own (a second mapping of the same
  // pages, which it reads to map the pages the other process wrote), so another thread may ask while this end is
  // used, closed or moved. now(): SystemError when the view cannot be mapped. Copies share the view; any thread.
  class RingPages {
   public:
    numa::PagePlacement now() const;

   private:
    friend class Connection;
    struct View;
    std::shared_ptr<View> view_;
  };
  // StateError for a closed end. Makes no mapping and no system call until now() is asked.
  RingPages ring_pages() const;
  // In a forked child that will not use this end: closes the child's copies of the end's descriptors (sockets, and
  // the memfd of a transferable pipe unless `keep_memory`: another end of the same pipe in this child still needs
  // it) and nothing else. The object is left as it is and must not be used in this child (nor close()d: it would
  // write to copy-on-write pages, a fault each, and wake peers that lose nothing by a copy's close). The end stays
  // open in every other process. Nothing for a closed end.
  void close_descriptors_in_child(bool keep_memory = false) const;
  // In the parent, once a child forked (or exec'd) with this end: closes this process's copy and leaves the object
  // closed, as close() does, but without telling the peer, since the child's copy keeps the end open. close() would
  // count a close where the peer looks before it sleeps and wake it, and that peer would then look at its socket
  // only to find the end still open. Should the child have died already, this copy was the last: a peer asleep on
  // its futex then sees the hang-up when its futex phase ends (a few milliseconds), one in poll(2) at once. Nothing
  // for a closed end.
  void release_to_child();

  // Closes this process's copy of the end. The other end sees end of stream once every copy is closed.
  void close();
  // Ends what this end sends, for the other end, now, as if every copy of this end were closed: a receiver there
  // gets what was sent, then end of stream (and from then on counts this end as gone: its sends return kClosed).
  // This end stays open here (it may still receive what was sent to it; close() it afterwards as usual): only its
  // sending socket is shut down and that announced, so another thread may be receiving or waiting on it
  // meanwhile. REQUIRES: nothing is sent on this end afterwards. StateError for a closed or receive-only end.
  void end_sending() const;
  bool closed() const { return shared_ == nullptr; }
  bool readable_end() const { return in_.has_value(); }
  bool writable_end() const { return out_.has_value(); }
  // The socket whose readiness wait() polls: the receiving direction's (the sending one's on a send-only end).
  // Its readiness alone does not say a message is queued: a doorbell rings on it only for a reader that waits
  // inside this library (recv, poll(), wait()), so a loop that polls it by itself can sleep past a message.
  int fileno() const;

 private:
  friend std::pair<Connection, Connection> Pipe(const PipeOptions&);
  friend struct WaitAccess;
  friend struct detail::PipeTestAccess;

  // One direction as seen from this end: the ring, and this end's socket of the direction's socketpair (the
  // other side's doorbells arrive on it and ours leave from it).
  struct Side {
    detail::ByteRing ring;
    int fd = -1;
    // The other end's close count (SleepWords::peer_closes) when this side last looked at its socket.
    uint32_t peer_closes_seen = 0;
    // The sending side: the stream crossed a multiple of kBytesBetweenLooks, so the next send looks at the socket
    // for a receiver that died while busy (neither closed its end nor slept, so nothing else tells).
    bool look_due = false;
  };
  Connection(std::shared_ptr<Shared> shared, std::optional<Side> in, std::optional<Side> out);

  // The common case, inline in the caller (docs/pipe.md, "The common case, in one pass"): a message that fits one
  // record, with room for it now (send) or there now (recv). Each call is a few compares, the copy, one store of
  // the ring position, and a load of the other side's sleep flag; anything else returns false, and the caller
  // takes the out-of-line *_impl call, which looks again and waits. The opening test of each is one flag that
  // the slow paths keep (send_now_limit_, recv_now_).
  [[gnu::always_inline]] bool try_send_now(std::span<const std::byte> message) {
    // One compare: open, able to send, no kAbandon due, a message that fits one record.
    if (message.size() >= send_now_limit_) [[unlikely]] return false;
    Side& side = *out_;
    detail::ByteRingHeader& header = side.ring.header();
    // A copy of the receiving end closed since we last looked (send_impl looks at the socket), or it is gone.
    // acquire: as in look_if_peer_closed().
    if (header.producer.peer_closes.load(std::memory_order_acquire) != side.peer_closes_seen || peer_gone())
        [[unlikely]] {
      return false;
    }
    // When a look at the socket is due, the next send takes send_impl(), which looks for a receiver that died
    // while busy.
    const auto look_due = [&] {
      side.look_due = true;
      send_now_limit_ = 0;
    };
    if (!side.ring.try_write_whole(message, look_due)) return false;
    // false also when the wake-up found the receiver gone before it took the message: peer_gone() is then set, and
    // send_impl() reports kClosed without sending again (the message went nowhere). One that took it, then died
    // (as the wake-up found it gone), received it: kOk, and the next send reports kClosed.
    return wake_if_asleep(side, header.consumer) || taken_before_gone(side);
  }
  // The common recv: when the next record is a whole message of at most `limit` bytes (and no long message is
  // being assembled), its payload, with its length in `n` and the position after it in `next_head`, to be taken
  // and then freed by finish_recv_now(next_head); nullptr otherwise.
  [[gnu::always_inline]] const std::byte* try_peek_now(size_t limit, uint32_t& n, uint64_t& next_head) {
    // One test: open, able to receive, no long message being assembled, the stream not found corrupt.
    if (!recv_now_) [[unlikely]] return nullptr;
    const std::byte* p = in_->ring.try_peek_whole(n, next_head);
    return p && n <= limit ? p : nullptr;
  }
  [[gnu::always_inline]] void finish_recv_now(uint64_t next_head) {
    Side& side = *in_;
    side.ring.release_to(next_head);
    (void)wake_if_asleep(side, side.ring.header().producer);  // a producer found gone is noted in peer_gone()
  }
  [[gnu::always_inline]] bool try_recv_now(std::vector<std::byte>& out) {
    uint32_t n;
    uint64_t next_head;
    const std::byte* p = try_peek_now(SIZE_MAX, n, next_head);
    if (!p) return false;
    assign_message(out, p, n);
    finish_recv_now(next_head);
    return true;
  }
  [[gnu::always_inline]] bool try_recv_now_into(std::span<std::byte> buffer, size_t& size) {
    uint32_t n;
    uint64_t next_head;
    const std::byte* p = try_peek_now(buffer.size(), n, next_head);
    if (!p) return false;
    detail::copy_bytes(buffer.data(), p, n);
    size = n;
    finish_recv_now(next_head);
    return true;
  }
  // Replaces `out` with the `n` bytes at `p`; a small message without the general vector assignment and memcpy
  // (nor a call of resize() when a reused vector has the length already).
  [[gnu::always_inline]] static void assign_message(std::vector<std::byte>& out, const std::byte* p, size_t n) {
    if (n <= 16) {
      if (out.size() != n) out.resize(n);
      detail::copy_bytes(out.data(), p, n);
    } else {
      out.assign(p, p + n);
    }
  }
  // The rest, out of line: checks the end, then sends or receives, waiting as needed.
  Outcome send_impl(std::span<const std::byte> message, const Deadline& deadline);
  [[gnu::noinline]] Outcome send_waiting(std::span<const std::byte> message, const Deadline& deadline);
  // Receives one message into `out`; throws BufferTooSmall, consuming nothing, for one longer than `limit`.
  Outcome recv_impl(std::vector<std::byte>& out, const Deadline& deadline, size_t limit = SIZE_MAX);
  [[gnu::noinline]] Outcome recv_waiting(std::vector<std::byte>& out, const Deadline& deadline, size_t limit);
  Outcome recv_into_impl(std::span<std::byte> buffer, size_t& size, const Deadline& deadline);
  // The inline paths' opening flags, from the state the slow paths change (abandoned_, the sending side's
  // look_due, partial_total_, corrupt_).
  void refresh_send_now() {
    send_now_limit_ =
        shared_ && out_ && !abandoned_ && !out_->look_due ? out_->ring.max_record_payload() + 1 : 0;
  }
  void refresh_recv_now() { recv_now_ = shared_ && in_ && partial_total_ == 0 && corrupt_.empty(); }
  // Waits for the next record of `side` (without consuming it): kOk with `h` and `p` set, kTimeout, or
  // kClosed once the other end is closed everywhere and nothing is left. Throws StreamCorrupted.
  Outcome next_record(Side& side, const Deadline& deadline, detail::RecordHeader& h, const std::byte*& p);
  // Adds the record to the message being received; true when `out` now holds a whole message. Throws
  // StreamCorrupted when the record is not what the stream needs next.
  bool take_record(const detail::RecordHeader& h, const std::byte* p, std::vector<std::byte>& out);
  // What a kFirst record announces: the message's total length and its sender's pid. Throws StreamCorrupted.
  struct FirstPart {
    uint64_t total;
    uint32_t sender;
  };
  FirstPart first_part(const detail::RecordHeader& h, const std::byte* p);
  // Before a record that starts a new message while the parts of another are still held: drops those parts when
  // their sender is dead (it was killed mid-message, and another copy of the sending end sends on). Otherwise
  // take_record() reports the stream out of step.
  void drop_parts_of_dead_sender();
  [[noreturn]] void throw_corrupt(const std::string& what);
  // Writes one record (a part of `total` bytes starts with that total), waiting for room until `deadline`.
  Outcome put_record(Side& side, detail::RecordKind kind, std::span<const std::byte> chunk,
                        std::optional<uint64_t> total, const Deadline& deadline);
  bool poll_impl(const Deadline& deadline);
  template <typename T>
  Outcome send_value(const T& value, const Deadline& deadline) {
    const size_t n = Codec<T>::encoded_size(value);
    encode_buffer_.resize(n);
    Codec<T>::encode(value, encode_buffer_);
    if (try_send_now(encode_buffer_)) [[likely]] return Outcome::kOk;
    return send_impl(encode_buffer_, deadline);
  }

  // Blocks until `ready()` or the deadline: spins while that pays, then sleeps on `words.wake` (the ring's futex
  // word of this side) for up to kFutexPhase, then in poll(2) on the side's socket, with `words.waiting` saying
  // which. Returns false on timeout. Notes when the other end is closed everywhere (peer_gone()), also when that
  // happened before the wait began (words.peer_closes).
  template <typename Ready>
  bool block_until(Side& side, detail::SleepWords& words, const Deadline& deadline, Ready&& ready);
  // Wakes the other side of `side` if its `words.waiting` says it sleeps: a futex wake-up on `words.wake` or a
  // doorbell on the socket. The caller has published its progress and issued light_fence(). Returns false when the
  // other side is gone (every copy of its end closed: it died asleep, as an idle receiver does), which the doorbell
  // or, when the futex wake-up woke nobody, a look at the socket tells; peer_gone() is then set.
  [[gnu::noinline]] bool wake_sleeper(Side& side, detail::SleepWords& words);
  // After publishing progress in `side` (a commit, or a release): wakes the other side, whose sleep words are
  // `words`, if it sleeps. The notifier's half of the Dekker pair; inline, as the common send and recv are: a fence
  // that is only a compiler barrier and one load while nobody sleeps. False: the other side is gone (wake_sleeper()).
  [[gnu::always_inline]] bool wake_if_asleep(Side& side, detail::SleepWords& words) {
    detail::light_fence();  // partner: heavy_fence() in block_until()
    // relaxed: ordered by the fence pair.
    if (words.waiting.load(std::memory_order_relaxed) != detail::Sleeper::kAwake) [[unlikely]] {
      return wake_sleeper(side, words);
    }
    return true;
  }
  // Sender, after a wake-up that found the receiver gone: whether it took every record committed to the ring
  // before it went (its head reached the tail), so that the message just sent was received. A receiver that read
  // a message and died at once (a pool worker that runs its task and crashes) looks, to the send that woke it,
  // like one that died asleep; only its head tells the two apart. Out of line: once per receiver's death.
  [[gnu::cold, gnu::noinline]] static bool taken_before_gone(Side& side);
  // Returns how many sleepers the wake-up woke.
  static int wake_on_futex(std::atomic<uint32_t>& word);
  // Counts a close of one of this process's copies of an end in `peer`, the other side's sleep words, and wakes
  // that side if it sleeps on its futex.
  static void announce_close(detail::SleepWords& peer);
  // close() (`announce`) and release_to_child(): closes the descriptors, announces when asked, resets the object.
  void close_copy(bool announce);
  // Sleeps in poll(2) on the side's socket until a doorbell, a hang-up or the deadline; reads the doorbells and
  // notes when the other end is gone.
  void poll_socket(Side& side, const Deadline& deadline);
  // Reads the doorbells pending on `fd`; notes when the other end is gone.
  void drain_doorbells(int fd);
  // Whether a copy of the other end was closed since `side` last looked at its socket (`words.peer_closes`, the
  // count in the sleep words of `side`'s half, moved): if so, records the count and looks at the socket, which
  // alone says whether that close was the last copy's (peer_gone()). One load when nothing was closed.
  bool look_if_peer_closed(Side& side, detail::SleepWords& words) {
    // acquire: partner is the release fetch_add in announce_close(), made after the closer's sockets were closed.
    const uint32_t closes = words.peer_closes.load(std::memory_order_acquire);
    if (closes == side.peer_closes_seen) [[likely]] return false;
    side.peer_closes_seen = closes;
    drain_doorbells(side.fd);
    return true;
  }
  // False when the doorbell cannot be rung because every copy of the other end of `fd` is closed.
  bool ring_doorbell(int fd);
  // Throws StateError unless the end is open and `direction_ok`. Inline: it runs on every send and recv.
  void check_open(const char* what, bool direction_ok) const {
    if (!shared_ || !direction_ok) [[unlikely]] throw_not_open(what, direction_ok);
  }
  [[noreturn]] void throw_not_open(const char* what, bool direction_ok) const;
  // relaxed: the flag only ends a wait; whatever the peer sent before closing is read through the ring's acquire
  // loads of tail, which the kernel's close-to-poll hand-off orders after the peer's last commit.
  bool peer_gone() const { return peer_gone_.load(std::memory_order_relaxed); }
  void mark_peer_gone() { peer_gone_.store(true, std::memory_order_relaxed); }

  std::shared_ptr<Shared> shared_;
  std::optional<Side> in_;   // the direction this end consumes
  std::optional<Side> out_;  // the direction this end produces
  // Set once every copy of the other end is closed. Atomic: the sending and the receiving thread may both see it.
  std::atomic<bool> peer_gone_{false};
  // Receiving: the long message being assembled (kept across a recv that timed out) and its announced total
  // (0: none); what made the stream corrupt (empty: nothing).
  std::vector<std::byte> partial_;
  uint64_t partial_total_ = 0;
  uint32_t partial_sender_ = 0;  // the pid its first part names (0: none, or a ring made before format 4)
  std::string corrupt_;
  // Sending: a long message was given up part-way and the receiver has not been told yet (a kAbandon is due).
  bool abandoned_ = false;
  // The inline paths' opening tests (refresh_send_now(), refresh_recv_now()), each written by its own direction's
  // thread (and by close and moves). Sending: one past the longest message try_send_now() may send
  // (max_record_payload() + 1), 0 while it may send none: closed, a receive-only end, a kAbandon due, a look at
  // the socket due (Side::look_due). Receiving: whether try_recv_now() may take a message: open, a
  // receiving end, no long message being assembled, the stream not found corrupt.
  uint64_t send_now_limit_ = 0;
  bool recv_now_ = false;
  std::vector<std::byte> scratch_, encode_buffer_;
};

// Two connected ends. Duplex: both send and receive. Simplex: first receives, second sends (as in Python).
// Throws InvalidArgument for a bad ring size, numa::PolicyError for a bad policy, SystemError on OS failure.
inline std::pair<Connection, Connection> Pipe(bool duplex = true) {
  PipeOptions o;
  o.duplex = duplex;
  return Pipe(o);
}

// What wait() found ready.
struct WaitReady {
  std::vector<Connection*> connections;  // ready to recv without blocking (a message, or end of stream)
  std::vector<int> sentinels;            // file descriptors that became readable (e.g. a pidfd: process exited)
};

// Blocks until at least one connection is ready or one sentinel fd is readable, or the timeout passes (then
// both lists are empty). Sentinels are file descriptors such as Process::sentinel() or process_sentinel(pid)
// (ipc/base/process.h). Any thread; no CPU while waiting.
WaitReady wait(std::span<Connection* const> connections, std::span<const int> sentinels,
               std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
inline WaitReady wait(std::span<Connection* const> connections,
                      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  return wait(connections, {}, timeout);
}

}  // namespace ipc

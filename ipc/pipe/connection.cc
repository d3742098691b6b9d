#include "ipc/pipe/connection.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ipc/base/checked_math.h"
#include "ipc/base/poll.h"
#include "ipc/queue/detail/wait.h"

namespace ipc {

using detail::ByteRing;
using detail::ByteRingHeader;
using detail::RecordHeader;
using detail::RecordKind;

namespace {

// How long a waiter spins before it sleeps: a busy peer answers within a few microseconds, and a sleep/wake
// through the kernel costs ten times that on a virtual machine. Checked in batches so the clock is read rarely.
constexpr auto kSpinTime = std::chrono::microseconds(5);
constexpr int kSpinBatch = 64;

}  // namespace

// The mapping that holds both rings; unmapped when this process's last Connection of the pipe goes.
struct Connection::Shared {
  void* base = nullptr;
  size_t bytes = 0;
  ~Shared() {
    if (base) munmap(base, bytes);
  }
};

std::pair<Connection, Connection> Pipe(const PipeOptions& options) {
  const uint64_t cap = options.ring_bytes;
  if (cap < 4096 || (cap & (cap - 1)) != 0 || cap > (uint64_t{1} << 32)) {
    throw InvalidArgument("Pipe ring_bytes must be a power of two in [4096, 4 GiB], got " + std::to_string(cap));
  }
  options.policy.validate_for_this_machine();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t one = checked_round_up(ByteRing::bytes_needed(cap), page, "Pipe ring");
  auto shared = std::make_shared<Connection::Shared>();
  shared->bytes = checked_mul(one, options.duplex ? 2 : 1, "Pipe rings");
  // MAP_SHARED | MAP_ANONYMOUS: shared with every child forked after this, private to this family of processes.
  shared->base = mmap(nullptr, shared->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared->base == MAP_FAILED) {
    shared->base = nullptr;
    throw_errno("mmap pipe rings (" + std::to_string(shared->bytes) + " bytes)");
  }
  if (!(options.policy == numa::MemoryPolicy())) options.policy.apply(shared->base, shared->bytes);
  auto make_ring = [&](size_t offset) {
    auto* h = new (static_cast<char*>(shared->base) + offset) ByteRingHeader();
    h->capacity = cap;
    return h;
  };
  ByteRingHeader* a = make_ring(0);
  ByteRingHeader* b = options.duplex ? make_ring(one) : nullptr;
  // One socketpair per direction: [0] is the consumer's end, [1] the producer's.
  auto make_sockets = [](int fds[2]) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  };
  int sa[2], sb[2] = {-1, -1};
  make_sockets(sa);
  if (options.duplex) {
    try {
      make_sockets(sb);
    } catch (...) {
      ::close(sa[0]);
      ::close(sa[1]);
      throw;
    }
  }
  detail::ensure_process_setup();
  using Side = Connection::Side;
  // Ring a carries second -> first, ring b first -> second.
  if (options.duplex) {
    return {Connection(shared, Side{ByteRing(a), sa[0]}, Side{ByteRing(b), sb[1]}),
            Connection(shared, Side{ByteRing(b), sb[0]}, Side{ByteRing(a), sa[1]})};
  }
  // As in Python: the first end receives, the second sends.
  return {Connection(shared, Side{ByteRing(a), sa[0]}, std::nullopt),
          Connection(shared, std::nullopt, Side{ByteRing(a), sa[1]})};
}

Connection::Connection(std::shared_ptr<Shared> shared, std::optional<Side> in, std::optional<Side> out)
    : shared_(std::move(shared)), in_(std::move(in)), out_(std::move(out)) {}

Connection::Connection(Connection&& other) noexcept { *this = std::move(other); }

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    shared_ = std::move(other.shared_);
    in_ = std::exchange(other.in_, std::nullopt);
    out_ = std::exchange(other.out_, std::nullopt);
    peer_gone_.store(other.peer_gone_.exchange(false, std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return *this;
}

Connection::~Connection() { close(); }

void Connection::close() {
  if (in_) ::close(in_->fd);
  if (out_) ::close(out_->fd);
  in_.reset();
  out_.reset();
  shared_.reset();
}

int Connection::fileno() const {
  check_open("fileno", true);
  return in_ ? in_->fd : out_->fd;
}

void Connection::check_open(const char* what, bool direction_ok) const {
  if (!shared_) throw StateError(std::string(what) + " on a closed Connection");
  if (!direction_ok) {
    throw StateError(std::string(what) + " on a Connection end that cannot " +
                     (std::string(what).rfind("send", 0) == 0 ? "send (receive-only end of a simplex Pipe)"
                                                              : "receive (send-only end of a simplex Pipe)"));
  }
}

void Connection::ring_doorbell(int fd) {
  const char bell = 1;
  // MSG_DONTWAIT: a full socket buffer means a doorbell is already pending, which is all the peer needs.
  // MSG_NOSIGNAL: a peer that is gone must not kill us with SIGPIPE; its absence is seen by poll instead.
  for (;;) {
    ssize_t r = ::send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0 || errno == EAGAIN || errno == EPIPE || errno == ECONNRESET) return;
    if (errno != EINTR) throw_errno("pipe doorbell");
  }
}

void Connection::drain_doorbells(int fd) {
  // One read takes every pending doorbell (they are few: one per sleep at most). A doorbell that arrives just
  // after it only makes a later poll return early, which the callers' re-check absorbs.
  char buf[256];
  for (;;) {
    ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) {
      if (static_cast<size_t>(r) < sizeof buf) return;
      continue;
    }
    if (r == 0 || errno == ECONNRESET || errno == EPIPE) {
      mark_peer_gone();  // every copy of the other end is closed: its process closed it or died
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;
    throw_errno("pipe doorbell read");
  }
}

template <typename Ready>
bool Connection::block_until(Side& side, std::atomic<uint32_t>& waiting_flag, const Deadline& deadline,
                             Ready&& ready) {
  if (!deadline.expired()) {
    const auto spin_end = Deadline::Clock::now() + kSpinTime;
    do {
      for (int i = 0; i < kSpinBatch; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
    } while (Deadline::Clock::now() < spin_end);
    sched_yield();  // let a peer that shares this CPU run before we sleep
    if (ready()) return true;
  }
  for (;;) {
    // seq_cst + heavy_fence: the waiter's half of the Dekker pair; partner: light_fence() before the other side
    // reads this flag (after commit() or release()). Either our re-check below sees its progress, or it sees the
    // flag and rings the doorbell that ends our poll.
    waiting_flag.store(1, std::memory_order_seq_cst);
    detail::heavy_fence();
    if (ready()) {
      waiting_flag.store(0, std::memory_order_relaxed);  // relaxed: a stale 1 costs the peer one doorbell at most
      return true;
    }
    pollfd p{side.fd, POLLIN, 0};
    int r = poll_until(&p, 1, deadline);
    waiting_flag.store(0, std::memory_order_relaxed);  // relaxed: as above
    if (r > 0) {
      drain_doorbells(side.fd);
      if (p.revents & (POLLHUP | POLLERR)) mark_peer_gone();
    }
    if (ready()) return true;
    if (deadline.expired()) return false;
  }
}

Outcome Connection::send_impl(std::span<const std::byte> message, const Deadline& deadline) {
  check_open("send", out_.has_value());
  Side& side = *out_;
  ByteRing& ring = side.ring;
  const uint64_t max_part = ring.max_record_payload();
  const bool whole = message.size() <= max_part;
  size_t sent = 0;
  bool first = true;
  while (first || sent < message.size()) {
    // A long message starts with its total length; its parts follow back to back (one sender per end).
    const size_t prefix = (!whole && first) ? sizeof(uint64_t) : 0;
    const size_t chunk = std::min<size_t>(message.size() - sent, max_part - prefix);
    const uint32_t payload = static_cast<uint32_t>(prefix + chunk);
    std::byte* p = ring.try_reserve(payload);
    while (!p) {
      if (peer_gone()) return Outcome::kClosed;
      // The deadline only bounds the wait for the first part: once a long message has started it is finished,
      // so a receiver never sees half of it from a live sender.
      const Deadline& d = first ? deadline : Deadline::never();
      bool ok = block_until(side, ring.header().producer_waiting, d,
                            [&] { return ring.writable(payload) || peer_gone(); });
      if (!ok) return Outcome::kTimeout;
      if (peer_gone()) return Outcome::kClosed;
      p = ring.try_reserve(payload);
    }
    if (prefix) {
      const uint64_t total = message.size();
      std::memcpy(p, &total, sizeof total);
    }
    if (chunk) std::memcpy(p + prefix, message.data() + sent, chunk);
    sent += chunk;
    const RecordKind kind = whole ? RecordKind::kWhole
                            : first ? RecordKind::kFirst
                            : sent == message.size() ? RecordKind::kLast
                                                     : RecordKind::kMore;
    ring.commit(payload, kind);
    first = false;
    detail::light_fence();  // the notifier's half of the Dekker pair; partner: heavy_fence() in block_until()
    // relaxed: ordered by the fence pair.
    if (ring.header().consumer_waiting.load(std::memory_order_relaxed)) ring_doorbell(side.fd);
  }
  return Outcome::kOk;
}

namespace {

// Frees a consumed record and wakes a producer that sleeps for room.
template <typename Ring>
void release_and_notify(Ring& ring, const RecordHeader& h, bool& need_doorbell) {
  ring.release(h);
  detail::light_fence();  // notifier's half of the Dekker pair; partner: heavy_fence() in block_until()
  // relaxed: ordered by the fence pair.
  if (ring.header().producer_waiting.load(std::memory_order_relaxed)) need_doorbell = true;
}

}  // namespace

Outcome Connection::next_record(Side& side, const Deadline& deadline, RecordHeader& h, const std::byte*& p) {
  ByteRing& ring = side.ring;
  while (!ring.peek(h, p)) {
    if (peer_gone()) {
      // The other end is closed everywhere: what it sent before closing is all visible now.
      if (ring.peek(h, p)) break;
      return Outcome::kClosed;
    }
    if (!block_until(side, ring.header().consumer_waiting, deadline,
                     [&] { return ring.readable() || peer_gone(); })) {
      return Outcome::kTimeout;
    }
  }
  return Outcome::kOk;
}

Outcome Connection::recv_impl(std::vector<std::byte>& out, const Deadline& deadline) {
  check_open("recv", in_.has_value());
  Side& side = *in_;
  ByteRing& ring = side.ring;
  RecordHeader h;
  const std::byte* p;
  Outcome r = next_record(side, deadline, h, p);
  if (r != Outcome::kOk) return r;
  bool doorbell = false;
  if (h.kind == RecordKind::kWhole) {
    out.assign(p, p + h.payload_bytes);
    release_and_notify(ring, h, doorbell);
  } else {
    if (h.kind != RecordKind::kFirst) throw StateError("pipe stream out of step: a message part without its start");
    uint64_t total;
    std::memcpy(&total, p, sizeof total);
    out.resize(total);
    size_t got = h.payload_bytes - sizeof total;
    std::memcpy(out.data(), p + sizeof total, got);
    release_and_notify(ring, h, doorbell);
    while (got < total) {
      if (doorbell) ring_doorbell(side.fd);
      doorbell = false;
      // The rest of a started message comes from a sender that is mid-send: wait for it without the deadline.
      if (next_record(side, Deadline::never(), h, p) != Outcome::kOk) {
        out.clear();  // the sender died mid-message: the partial message is dropped
        return Outcome::kClosed;
      }
      std::memcpy(out.data() + got, p, h.payload_bytes);
      got += h.payload_bytes;
      release_and_notify(ring, h, doorbell);
    }
  }
  if (doorbell) ring_doorbell(side.fd);
  return Outcome::kOk;
}

Outcome Connection::recv_into_impl(std::span<std::byte> buffer, size_t& size, const Deadline& deadline) {
  check_open("recv", in_.has_value());
  Side& side = *in_;
  ByteRing& ring = side.ring;
  RecordHeader h;
  const std::byte* p;
  // Look at the next message's size before consuming anything, so that a too-small buffer loses nothing.
  if (Outcome r = next_record(side, deadline, h, p); r != Outcome::kOk) return r;
  uint64_t total = h.payload_bytes;
  if (h.kind == RecordKind::kFirst) std::memcpy(&total, p, sizeof total);
  if (total > buffer.size()) throw BufferTooSmall(total, buffer.size());
  // It fits. A single record is copied straight out; a long message is assembled by the ordinary path (in the
  // connection's scratch vector) and then copied.
  if (h.kind == RecordKind::kWhole) {
    std::memcpy(buffer.data(), p, h.payload_bytes);
    bool doorbell = false;
    release_and_notify(ring, h, doorbell);
    if (doorbell) ring_doorbell(side.fd);
    size = h.payload_bytes;
    return Outcome::kOk;
  }
  Outcome r = recv_impl(scratch_, deadline);
  if (r == Outcome::kOk) {
    std::memcpy(buffer.data(), scratch_.data(), scratch_.size());
    size = scratch_.size();
  }
  return r;
}

bool Connection::poll_impl(const Deadline& deadline) {
  check_open("poll", in_.has_value());
  Side& side = *in_;
  ByteRing& ring = side.ring;
  return block_until(side, ring.header().consumer_waiting, deadline, [&] { return ring.readable() || peer_gone(); });
}

// wait() needs the private parts of several Connections at once.
struct WaitAccess {
  static bool ready(Connection& c) { return c.in_->ring.readable() || c.peer_gone(); }
  static std::atomic<uint32_t>& flag(Connection& c) { return c.in_->ring.header().consumer_waiting; }
  static void woke(Connection& c, short revents) {
    c.drain_doorbells(c.in_->fd);
    if (revents & (POLLHUP | POLLERR)) c.mark_peer_gone();
  }
  static int fd(Connection& c) { return c.in_->fd; }
  static void check(Connection& c) { c.check_open("wait", c.in_.has_value()); }
};

WaitReady wait(std::span<Connection* const> connections, std::span<const int> sentinels,
               std::optional<std::chrono::nanoseconds> timeout) {
  const Deadline deadline = Deadline::from(timeout);
  for (Connection* c : connections) WaitAccess::check(*c);
  WaitReady result;
  auto collect = [&] {
    for (Connection* c : connections) {
      if (WaitAccess::ready(*c)) result.connections.push_back(c);
    }
    return !result.connections.empty();
  };
  std::vector<pollfd> fds;
  for (;;) {
    if (collect()) return result;
    for (Connection* c : connections) {
      // seq_cst: waiter's half of the Dekker pair, as in Connection::block_until.
      WaitAccess::flag(*c).store(1, std::memory_order_seq_cst);
    }
    detail::heavy_fence();
    if (collect()) {
      for (Connection* c : connections) WaitAccess::flag(*c).store(0, std::memory_order_relaxed);
      return result;
    }
    fds.clear();
    for (Connection* c : connections) fds.push_back({WaitAccess::fd(*c), POLLIN, 0});
    for (int s : sentinels) fds.push_back({s, POLLIN, 0});
    int r = poll_until(fds.data(), fds.size(), deadline);
    for (Connection* c : connections) WaitAccess::flag(*c).store(0, std::memory_order_relaxed);  // relaxed: a hint
    if (r > 0) {
      for (size_t i = 0; i < connections.size(); ++i) {
        if (fds[i].revents) WaitAccess::woke(*connections[i], fds[i].revents);
      }
      for (size_t i = 0; i < sentinels.size(); ++i) {
        if (fds[connections.size() + i].revents) result.sentinels.push_back(sentinels[i]);
      }
    }
    if (collect() || !result.sentinels.empty() || deadline.expired()) return result;
  }
}


}  // namespace ipc

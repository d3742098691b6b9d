#include "ipc/pipe/connection.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "ipc/base/checked_math.h"
#include "ipc/base/poll.h"
#include "ipc/base/wait.h"
#include "ipc/numa/reserve.h"
#include "ipc/pipe/detail/test_access.h"

namespace ipc {

std::atomic<detail::PipeTestHook> detail::g_pipe_test_hook{nullptr};

using detail::ByteRing;
using detail::ByteRingHeader;
using detail::RecordHeader;
using detail::RecordKind;
using detail::Sleeper;

namespace {

// How long a waiter spins before it sleeps: a busy peer answers within a few microseconds, and a sleep/wake
// through the kernel costs ten times that on a virtual machine. Checked in batches so the clock is read rarely.
// The spin happens only while it can pay off (detail::spinning_pays(): a CPU for every runnable task); otherwise
// the waiter yields its CPU to the peer a few times and then sleeps.
constexpr auto kSpinTime = std::chrono::microseconds(5);
// After this thread woke a sleeping peer, its next wait spins longer: the peer answers only once the kernel has
// run it again, which takes longer than kSpinTime on a virtual machine. Sleeping then would make the peer wake us
// in turn, and each side's spin ending before the other's wake-up keeps both paying a wake-up per message.
constexpr auto kSpinAfterWake = std::chrono::microseconds(50);
constexpr auto kWakeRecent = std::chrono::microseconds(100);  // "just woke a peer": within this
constexpr int kSpinBatch = 64;
constexpr int kYields = 4;
// How long a waiter sleeps on the ring's futex word before it moves to poll(2) on its socket. A futex sleep and
// wake-up is the cheapest there is (no doorbell byte to write, read and poll for), and most waits are short; but
// only the socket tells of a peer that died without closing (the kernel hangs it up), so a longer wait moves to
// poll, where a death wakes the waiter at once. A peer killed during the futex phase is thus seen within this
// time; one that closes its end wakes the futex at once (Connection::close()). Stretched for tests
// (detail::g_recheck_stretch) so that a missing futex wake-up fails a wake test.
constexpr auto kFutexPhase = std::chrono::milliseconds(2);

// When this thread last woke a sleeping peer (a futex wake-up or a doorbell).
thread_local Deadline::Clock::time_point t_woke_peer_at;

}  // namespace

// The mapping that holds both rings; unmapped when this process's last Connection of the pipe goes.
struct Connection::Shared {
  void* base = nullptr;
  size_t bytes = 0;
  int memory_fd = -1;  // the memfd behind base (PipeOptions::transferable), else -1
  ~Shared() {
    if (base) munmap(base, bytes);
    if (memory_fd >= 0) ::close(memory_fd);
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
  if (options.transferable) {
    shared->memory_fd = static_cast<int>(::memfd_create("ipc-pipe", MFD_CLOEXEC));
    if (shared->memory_fd < 0) throw_errno("memfd_create (pipe rings)");
    if (::ftruncate(shared->memory_fd, static_cast<off_t>(shared->bytes)) != 0) throw_errno("ftruncate (pipe rings)");
  }
  // MAP_SHARED | MAP_ANONYMOUS: shared with every child forked after this, private to this family of processes.
  // A memfd instead when the ends may go to other processes.
  shared->base = options.transferable
                     ? mmap(nullptr, shared->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shared->memory_fd, 0)
                     : mmap(nullptr, shared->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared->base == MAP_FAILED) {
    shared->base = nullptr;
    throw_errno("mmap pipe rings (" + std::to_string(shared->bytes) + " bytes)");
  }
  if (!(options.policy == numa::MemoryPolicy())) options.policy.apply(shared->base, shared->bytes);
  // The memfd's pages are reserved now, under the policy just set: too little memory fails here, never as a SIGBUS
  // when a ring is first written. (The anonymous mapping is accounted when it is mapped.)
  if (options.transferable) {
    numa::reserve_pages({shared->memory_fd, "the rings of a Pipe", "memory"}, shared->bytes, options.policy);
  }
  auto make_ring = [&](size_t offset) {
    auto* h = new (static_cast<char*>(shared->base) + offset) ByteRingHeader();
    h->capacity = cap;
    h->format = detail::kRecordFormat;
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
    : shared_(std::move(shared)), in_(std::move(in)), out_(std::move(out)) {
  refresh_send_now();
  refresh_recv_now();
}

Connection::Connection(Connection&& other) noexcept { *this = std::move(other); }

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    shared_ = std::move(other.shared_);
    in_ = std::exchange(other.in_, std::nullopt);
    out_ = std::exchange(other.out_, std::nullopt);
    peer_gone_.store(other.peer_gone_.exchange(false, std::memory_order_relaxed), std::memory_order_relaxed);
    partial_ = std::move(other.partial_);
    partial_total_ = std::exchange(other.partial_total_, 0);
    partial_sender_ = std::exchange(other.partial_sender_, 0);
    corrupt_ = std::move(other.corrupt_);
    abandoned_ = std::exchange(other.abandoned_, false);
    send_now_limit_ = std::exchange(other.send_now_limit_, 0);
    recv_now_ = std::exchange(other.recv_now_, false);
  }
  return *this;
}

Connection::~Connection() { close(); }

ConnectionHandoff Connection::handoff() const {
  check_open("handoff", true);
  if (shared_->memory_fd < 0) throw StateError("handoff: the Pipe was made without PipeOptions::transferable");
  auto offset = [&](const Side& side) {
    return static_cast<uint64_t>(reinterpret_cast<char*>(&side.ring.header()) - static_cast<char*>(shared_->base));
  };
  ConnectionHandoff h;
  h.memory_fd = shared_->memory_fd;
  h.memory_bytes = shared_->bytes;
  if (in_) h.in_fd = in_->fd, h.in_offset = offset(*in_);
  if (out_) h.out_fd = out_->fd, h.out_offset = offset(*out_);
  return h;
}

// The pipe's mapping, held so that it outlives every end in this process, and a second mapping of its rings,
// read-only, made the first time someone asks: reading it to map pages into this process's page tables never
// touches the addresses the Connection's own threads write through. Most holders never ask (a pool keeps one per
// worker for placement()), and the view costs an mremap, an mprotect, a munmap and a mapping that every later
// fork() copies.
struct Connection::RingPages::View {
  std::shared_ptr<const Shared> shared;
  std::once_flag made;
  void* base = nullptr;  // the read-only view once made
  ~View() {
    if (base) ::munmap(base, shared->bytes);
  }
};

Connection::RingPages Connection::ring_pages() const {
  check_open("ring_pages", true);
  RingPages pages;
  auto view = std::make_shared<RingPages::View>();
  view->shared = shared_;
  pages.view_ = std::move(view);
  return pages;
}

numa::PagePlacement Connection::RingPages::now() const {
  if (!view_) throw StateError("RingPages::now: an empty RingPages (take one from Connection::ring_pages())");
  View& v = *view_;
  std::call_once(v.made, [&] {
    // mremap with an old size of 0 maps the same pages of a shared mapping again (an anonymous one included, which
    // has no descriptor to map anew). A failure leaves the flag unset: the next call tries again.
    void* base = ::mremap(v.shared->base, 0, v.shared->bytes, MREMAP_MAYMOVE);
    if (base == MAP_FAILED) throw_errno("mremap (a view of a pipe's rings)");
    if (::mprotect(base, v.shared->bytes, PROT_READ) != 0) {
      const int e = errno;
      ::munmap(base, v.shared->bytes);
      throw SystemError(e, "mprotect (a view of a pipe's rings)");
    }
    v.base = base;
  });
  return numa::page_placement(v.base, v.shared->bytes);
}

void Connection::close_descriptors_in_child(bool keep_memory) const {
  if (!shared_) return;  // closed before the fork: nothing of it was inherited
  for (int fd : {in_ ? in_->fd : -1, out_ ? out_->fd : -1, keep_memory ? -1 : shared_->memory_fd}) {
    if (fd >= 0) ::close(fd);
  }
}

Connection Connection::adopt(const ConnectionHandoff& h) {
  auto close_all = [&] {
    for (int fd : {h.memory_fd, h.in_fd, h.out_fd}) {
      if (fd >= 0) ::close(fd);
    }
  };
  auto shared = std::make_shared<Shared>();
  shared->bytes = h.memory_bytes;
  // A ring is its header and `capacity` bytes, wholly inside the memory.
  auto ring_at = [&](uint64_t offset) {
    if (offset > h.memory_bytes || h.memory_bytes - offset < sizeof(ByteRingHeader) || offset % 64 != 0) {
      throw InvalidArgument("Connection::adopt: a ring at offset " + std::to_string(offset) + " of a memory of " +
                            std::to_string(h.memory_bytes) + " bytes");
    }
    auto* header = reinterpret_cast<ByteRingHeader*>(static_cast<char*>(shared->base) + offset);
    if (header->format != detail::kRecordFormat) {
      throw InvalidArgument("Connection::adopt: the ring at offset " + std::to_string(offset) +
                            " holds records of format " + std::to_string(header->format) +
                            ", this library reads format " + std::to_string(detail::kRecordFormat) +
                            " (the rings come from another version of it)");
    }
    const uint64_t cap = header->capacity;
    if (cap < 4096 || (cap & (cap - 1)) != 0 || h.memory_bytes - offset - sizeof(ByteRingHeader) < cap) {
      throw InvalidArgument("Connection::adopt: a ring of " + std::to_string(cap) + " bytes at offset " +
                            std::to_string(offset));
    }
    return ByteRing(header);
  };
  try {
    if (h.memory_fd < 0 || (h.in_fd < 0 && h.out_fd < 0)) {
      throw InvalidArgument("Connection::adopt: a handoff without memory or sockets");
    }
    // A memory shorter than the handoff says would fault (SIGBUS) on the first touch past its end.
    struct stat st;
    if (::fstat(h.memory_fd, &st) != 0) throw_errno("fstat adopted pipe memory");
    if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) < h.memory_bytes) {
      throw InvalidArgument("Connection::adopt: a memory of " + std::to_string(st.st_size) +
                            " bytes, where the handoff says " + std::to_string(h.memory_bytes));
    }
    shared->base = mmap(nullptr, h.memory_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, h.memory_fd, 0);
    if (shared->base == MAP_FAILED) {
      shared->base = nullptr;
      throw_errno("mmap adopted pipe rings (" + std::to_string(h.memory_bytes) + " bytes)");
    }
    std::optional<Side> in, out;
    if (h.in_fd >= 0) in = Side{ring_at(h.in_offset), h.in_fd};
    if (h.out_fd >= 0) out = Side{ring_at(h.out_offset), h.out_fd};
    ::close(h.memory_fd);
    detail::ensure_process_setup();
    return Connection(std::move(shared), std::move(in), std::move(out));
  } catch (...) {
    close_all();
    throw;
  }
}

void Connection::close() { close_copy(/*announce=*/true); }

void Connection::release_to_child() { close_copy(/*announce=*/false); }

void Connection::close_copy(bool announce) {
  if (in_) ::close(in_->fd);
  if (out_) ::close(out_->fd);
  // A peer learns of a hang-up only when it looks at its socket, which a waiter on the futex does not do: count
  // the close where it looks before it sleeps (a wait that starts after this), and wake one asleep now. Either
  // finds end of stream on its socket if ours were the last copies, and sleeps again otherwise (a copy in another
  // process is still open).
  if (announce && in_) announce_close(in_->ring.header().producer);
  if (announce && out_) announce_close(out_->ring.header().consumer);
  in_.reset();
  out_.reset();
  shared_.reset();
  partial_.clear();
  partial_total_ = 0;
  partial_sender_ = 0;
  corrupt_.clear();
  abandoned_ = false;
  refresh_send_now();
  refresh_recv_now();
}

void Connection::end_sending() const {
  check_open("end_sending", out_.has_value());
  // A socket shut down for writing reads as end of file at the other end, as the close of every copy of it does;
  // the announcement makes a receiver asleep on the futex look at its socket, as close() does.
  if (::shutdown(out_->fd, SHUT_WR) != 0) throw_errno("shutdown (pipe end_sending)");
  announce_close(out_->ring.header().consumer);
}

int Connection::fileno() const {
  check_open("fileno", true);
  return in_ ? in_->fd : out_->fd;
}

void Connection::throw_not_open(const char* what, bool direction_ok) const {
  if (!shared_) throw StateError(std::string(what) + " on a closed Connection");
  throw StateError(std::string(what) + " on a Connection end that cannot " +
                   (std::string(what).rfind("send", 0) == 0 ? "send (receive-only end of a simplex Pipe)"
                                                            : "receive (send-only end of a simplex Pipe)"));
}

bool Connection::ring_doorbell(int fd) {
  const char bell = 1;
  // MSG_DONTWAIT: a full socket buffer means a doorbell is already pending, which is all the peer needs.
  // MSG_NOSIGNAL: a peer that is gone must not kill us with SIGPIPE; the error says it instead.
  for (;;) {
    ssize_t r = ::send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0 || errno == EAGAIN) return true;
    if (errno == EPIPE || errno == ECONNRESET) return false;
    if (errno != EINTR) throw_errno("pipe doorbell");
  }
}

int Connection::wake_on_futex(std::atomic<uint32_t>& word) {
  // release: a side that sees the new word (futex_wait compares it) also sees what we published before.
  word.fetch_add(1, std::memory_order_release);
  return futex_wake_all(word);
}

void Connection::announce_close(detail::SleepWords& peer) {
  // release: a waiter that reads the new count (acquire, in block_until) finds our sockets closed. Bumped before
  // the wake word (whose release fetch_add orders it): a waiter that read the old count had read the old wake
  // word too, so its futex wait returns at once or is woken.
  peer.peer_closes.fetch_add(1, std::memory_order_release);
  wake_on_futex(peer.wake);
}

bool Connection::wake_sleeper(Side& side, detail::SleepWords& words) {
  // Taken, not only read: the sends that come before the woken side runs (and sets its flag again, should it
  // sleep again) find it awake and wake nobody, so one sleep costs one futex wake-up or doorbell, not one a send.
  // relaxed: ordered by the Dekker pair (the caller's light_fence(); the sleeper's heavy_fence()).
  switch (words.waiting.exchange(Sleeper::kAwake, std::memory_order_relaxed)) {
    case Sleeper::kOnFutex:
      // Woke nobody: the sleeper is between its flag and its futex wait (it will see our progress), or it died
      // asleep, which only its socket tells (the kernel hangs it up once every copy of the other end is closed):
      // one look at it, as a wait with no time left takes. The socket is this thread's own (one sending and one
      // receiving thread per end), so draining a stale doorbell there costs this side nothing.
      if (wake_on_futex(words.wake) == 0) poll_socket(side, Deadline::after(std::chrono::nanoseconds(0)));
      break;
    case Sleeper::kInPoll:
      if (!ring_doorbell(side.fd)) mark_peer_gone();
      break;
    default: return true;  // awake again: it re-checks the ring before it sleeps
  }
  t_woke_peer_at = Deadline::Clock::now();
  return !peer_gone();
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

void Connection::poll_socket(Side& side, const Deadline& deadline) {
  pollfd p{side.fd, POLLIN, 0};
  if (poll_until(&p, 1, deadline) > 0) {
    drain_doorbells(side.fd);
    if (p.revents & (POLLHUP | POLLERR)) mark_peer_gone();
  }
}

template <typename Ready>
bool Connection::block_until(Side& side, detail::SleepWords& words, const Deadline& deadline, Ready&& ready) {
  if (deadline.expired()) {
    // A look, not a wait (poll() with no timeout, say): nothing sleeps, so no Dekker pair (flag and heavy fence,
    // a membarrier) is needed; one zero-timeout poll of the doorbell notes a peer that closed its end.
    if (ready()) return true;
    poll_socket(side, deadline);
    return ready();
  }
  {
    auto spin_batch = [&] {
      for (int i = 0; i < kSpinBatch; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
      return false;
    };
    if (spin_batch()) return true;  // quick tries, before reading the clock
    if (detail::spinning_pays()) {
      const auto now = Deadline::Clock::now();
      const auto spin_end = now + (now - t_woke_peer_at < kWakeRecent ? kSpinAfterWake : kSpinTime);
      do {
        if (spin_batch()) return true;
      } while (Deadline::Clock::now() < spin_end);
    }
    for (int i = 0; i < kYields; ++i) {
      sched_yield();  // let a peer that shares this CPU run before we sleep
      if (ready()) return true;
    }
  }
  // relaxed: set by a test before it forks the processes that use it (ipc/base/wait.h).
  const auto futex_end =
      Deadline::Clock::now() + kFutexPhase * detail::g_recheck_stretch.load(std::memory_order_relaxed);
  for (;;) {
    const auto now = Deadline::Clock::now();
    const bool on_futex = now < futex_end;
    // seq_cst + heavy_fence: the waiter's half of the Dekker pair; partner: light_fence() before the other side
    // reads this flag (after commit() or release()). Either our re-check below sees its progress, or it sees the
    // flag and wakes us as the flag says: a futex wake-up, or a doorbell that ends our poll.
    words.waiting.store(on_futex ? Sleeper::kOnFutex : Sleeper::kInPoll, std::memory_order_seq_cst);
    detail::heavy_fence();
    // acquire: partner is the release fetch_add in wake_on_futex(); read before the re-check, so that a wake-up
    // between the re-check and the futex call changes the word and the futex returns at once.
    const uint32_t word = words.wake.load(std::memory_order_acquire);
    if (ready()) {
      words.waiting.store(Sleeper::kAwake, std::memory_order_relaxed);  // relaxed: a stale flag costs one wake-up
      return true;
    }
    if (on_futex) {
      // A copy of the other end was closed since we last looked at the socket, before this wait perhaps (its
      // futex wake-up then came before we slept): look once. The count is read after the wake word: a close this
      // look misses bumps the word after we read it, so the futex wait below returns at once or is woken.
      if (look_if_peer_closed(side, words)) [[unlikely]] {
        if (ready()) {
          words.waiting.store(Sleeper::kAwake, std::memory_order_relaxed);  // relaxed: as above
          return true;
        }
      }
      const auto left = deadline.remaining();
      const bool deadline_first = left && now + *left < futex_end;
      futex_wait(words.wake, word, deadline_first ? deadline : Deadline::after(futex_end - now));
      words.waiting.store(Sleeper::kAwake, std::memory_order_relaxed);  // relaxed: as above
      if (ready()) return true;
      // Woken without progress: the peer closed its end, or the futex phase is over. Only the socket says whether
      // every copy of the other end is gone (a hang-up reads as end of file).
      drain_doorbells(side.fd);
    } else {
      poll_socket(side, deadline);
      words.waiting.store(Sleeper::kAwake, std::memory_order_relaxed);  // relaxed: as above
    }
    if (ready()) return true;
    if (deadline.expired()) return false;
  }
}

Outcome Connection::put_record(Side& side, RecordKind kind, std::span<const std::byte> chunk,
                                  std::optional<uint64_t> total, const Deadline& deadline) {
  ByteRing& ring = side.ring;
  const size_t prefix = total ? sizeof(uint64_t) : 0;
  const uint32_t payload = static_cast<uint32_t>(prefix + chunk.size());
  std::byte* p = ring.try_reserve(kind, payload);
  while (!p) {
    if (peer_gone()) return Outcome::kClosed;
    if (!block_until(side, ring.header().producer, deadline,
                     [&] { return ring.writable(kind, payload) || peer_gone(); })) {
      return Outcome::kTimeout;
    }
    if (peer_gone()) return Outcome::kClosed;
    p = ring.try_reserve(kind, payload);
  }
  if (total) std::memcpy(p, &*total, sizeof *total);
  // A part as large as the L2 cache (in rings of four times that and more) is streamed into the ring
  // (copy_for_reader).
  copy_for_reader(p + prefix, chunk.data(), chunk.size());
  // A look at the socket falls due on this path too (see try_send_now()).
  if (ring.commit()) side.look_due = true;
  const bool ends_message = kind == RecordKind::kWhole || kind == RecordKind::kLast;
  if (ends_message) {
    // relaxed: a test installs its hook before the send it wants to stop, in the same thread.
    if (auto hook = detail::g_pipe_test_hook.load(std::memory_order_relaxed)) [[unlikely]] {
      hook(detail::PipeHookPoint::kMessageCommitted);
    }
  }
  if (wake_if_asleep(side, side.ring.header().consumer)) return Outcome::kOk;
  // The receiver found gone as we woke it: the message went nowhere, unless it took the message's last record
  // before it went (the parts before it are taken in order). A first or middle part taken alone is no message.
  return ends_message && taken_before_gone(side) ? Outcome::kOk : Outcome::kClosed;
}

bool Connection::taken_before_gone(Side& side) {
  const detail::ByteRingHeader& h = side.ring.header();
  // acquire: partner is the receiver's release store of head (release_to(), release()); relaxed: this side wrote
  // tail. The receiver is gone, so head moves no more.
  return h.head.load(std::memory_order_acquire) == h.tail.load(std::memory_order_relaxed);
}

Outcome Connection::send_impl(std::span<const std::byte> message, const Deadline& deadline) {
  check_open("send", out_.has_value());
  Side& side = *out_;
  // A copy of the receiving end closed since we last looked: if it was the last, the message would go nowhere.
  look_if_peer_closed(side, side.ring.header().producer);
  // Every kBytesBetweenLooks bytes: a receiver that died while busy closed nothing and sleeps nowhere; only its
  // socket, hung up, says it is gone.
  if (side.look_due) {
    side.look_due = false;
    poll_socket(side, Deadline::after(std::chrono::milliseconds(0)));
  }
  if (peer_gone()) [[unlikely]] return Outcome::kClosed;
  // The common case (try_send_now(), inline) did not apply; this one waits as needed.
  return send_waiting(message, deadline);
}

Outcome Connection::send_waiting(std::span<const std::byte> message, const Deadline& deadline) {
  // Whatever the way out (a kAbandon written or now due, an error), the inline path's limit follows.
  struct RefreshOnExit {
    Connection& c;
    ~RefreshOnExit() { c.refresh_send_now(); }
  } refresh{*this};
  Side& side = *out_;
  // An earlier send gave up a long message part-way: the receiver learns it before anything else comes.
  if (abandoned_) {
    if (Outcome r = put_record(side, RecordKind::kAbandon, {}, std::nullopt, deadline); r != Outcome::kOk) {
      return r;
    }
    abandoned_ = false;
  }
  const uint64_t max_part = side.ring.max_record_payload();
  if (message.size() <= max_part) return put_record(side, RecordKind::kWhole, message, std::nullopt, deadline);
  if (message.size() > detail::kMaxLongMessageBytes) {
    throw InvalidArgument("pipe: a message of " + std::to_string(message.size()) + " bytes exceeds the " +
                          std::to_string(detail::kMaxLongMessageBytes) + "-byte maximum");
  }
  // A long message: its first part carries the total length, the others follow back to back (one sender per
  // end), all under the one deadline.
  size_t sent = 0;
  while (sent < message.size()) {
    const bool first = sent == 0;
    const size_t chunk = std::min<size_t>(message.size() - sent, first ? max_part - sizeof(uint64_t) : max_part);
    const RecordKind kind = first                                ? RecordKind::kFirst
                            : sent + chunk == message.size() ? RecordKind::kLast
                                                              : RecordKind::kMore;
    // The first part names this process, for a receiver that finds the message cut short (see take_record()).
    const std::optional<uint64_t> total =
        first ? std::optional<uint64_t>(detail::first_part_word(message.size(), detail::self_pid())) : std::nullopt;
    const Outcome r = put_record(side, kind, message.subspan(sent, chunk), total, deadline);
    if (r != Outcome::kOk) {
      if (!first && r == Outcome::kTimeout) {
        // The message is not sent: tell the receiver to drop its parts, now if there is room, else first thing
        // in the next send (put_record does not wait when the ring has room).
        abandoned_ = true;
        if (side.ring.writable(RecordKind::kAbandon, 0) &&
            put_record(side, RecordKind::kAbandon, {}, std::nullopt, deadline) == Outcome::kOk) {
          abandoned_ = false;
        }
      }
      return r;
    }
    sent += chunk;
    if (sent < message.size()) {
      // relaxed: a test installs its hook before the send it wants to stop, in the same thread.
      if (auto hook = detail::g_pipe_test_hook.load(std::memory_order_relaxed)) [[unlikely]] {
        hook(detail::PipeHookPoint::kPartSent);
      }
    }
  }
  return Outcome::kOk;
}

namespace {

// Frees a consumed record; notes whether a producer sleeps for room (woken by Connection::wake_sleeper()).
template <typename Ring>
[[gnu::always_inline]] inline void release_and_notify(Ring& ring, const RecordHeader& h, bool& producer_sleeps) {
  ring.release(h);
  detail::light_fence();  // notifier's half of the Dekker pair; partner: heavy_fence() in block_until()
  // relaxed: ordered by the fence pair.
  if (ring.header().producer.waiting.load(std::memory_order_relaxed) != Sleeper::kAwake) producer_sleeps = true;
}

// Bytes reserved ahead for a long message: a corrupt total must not allocate, a real one grows as it arrives.
constexpr uint64_t kReserveAhead = uint64_t{64} << 20;

}  // namespace

void Connection::throw_corrupt(const std::string& what) {
  corrupt_ = "pipe (receiving end, fd " + std::to_string(in_->fd) + "): " + what;
  recv_now_ = false;
  throw StreamCorrupted(corrupt_);
}

Outcome Connection::next_record(Side& side, const Deadline& deadline, RecordHeader& h, const std::byte*& p) {
  ByteRing& ring = side.ring;
  auto look = [&] {
    const ByteRing::Peek r = ring.peek(h, p);
    if (r == ByteRing::Peek::kCorrupt) throw_corrupt(ring.fault());
    return r == ByteRing::Peek::kRecord;
  };
  while (!look()) {
    if (peer_gone()) {
      // The other end is closed everywhere: what it sent before closing is all visible now.
      if (look()) break;
      return Outcome::kClosed;
    }
    if (!block_until(side, ring.header().consumer, deadline,
                     [&] { return ring.readable() || peer_gone(); })) {
      return Outcome::kTimeout;
    }
  }
  return Outcome::kOk;
}

Connection::FirstPart Connection::first_part(const RecordHeader& h, const std::byte* p) {
  if (h.payload_bytes < sizeof(uint64_t)) {
    throw_corrupt("a first part of " + std::to_string(h.payload_bytes) + " bytes has no room for the total length");
  }
  uint64_t word;
  std::memcpy(&word, p, sizeof word);
  return {detail::first_part_total(word), detail::first_part_sender(word)};
}

void Connection::drop_parts_of_dead_sender() {
  if (partial_total_ == 0 || partial_sender_ == 0 || !process_dead(partial_sender_)) return;
  // Its sender was killed in the middle of it: the message was never sent (as when the last sender dies).
  partial_.clear();
  partial_total_ = 0;
  partial_sender_ = 0;
}

bool Connection::take_record(const RecordHeader& h, const std::byte* p, std::vector<std::byte>& out) {
  const uint64_t got = partial_.size();
  auto out_of_step = [&](const std::string& what) {
    throw_corrupt("stream out of step (two senders on one end?): " + what + " inside a " +
                  std::to_string(partial_total_) + "-byte message after " + std::to_string(got) + " of its bytes");
  };
  switch (h.kind) {
    case RecordKind::kWhole:
      if (partial_total_) out_of_step("a whole message");
      out.assign(p, p + h.payload_bytes);
      return true;
    case RecordKind::kFirst: {
      if (partial_total_) out_of_step("a new message started");
      const auto [total, sender] = first_part(h, p);
      const uint64_t part = h.payload_bytes - sizeof(uint64_t);
      if (total <= part) {
        throw_corrupt("a long message of " + std::to_string(total) + " bytes starts with a part of " +
                      std::to_string(part));
      }
      partial_.clear();
      partial_.reserve(std::min(total, kReserveAhead));
      partial_.insert(partial_.end(), p + sizeof(uint64_t), p + h.payload_bytes);
      partial_total_ = total;
      partial_sender_ = sender;
      return false;
    }
    case RecordKind::kMore:
    case RecordKind::kLast: {
      if (!partial_total_) {
        throw_corrupt("stream out of step (two senders on one end?): a message part without its start");
      }
      if (got + h.payload_bytes > partial_total_) {
        throw_corrupt("a part of " + std::to_string(h.payload_bytes) + " bytes after " + std::to_string(got) +
                      " overruns its " + std::to_string(partial_total_) + " bytes");
      }
      partial_.insert(partial_.end(), p, p + h.payload_bytes);
      const bool complete = partial_.size() == partial_total_;
      if (complete != (h.kind == RecordKind::kLast)) {
        throw_corrupt(complete ? "a middle part completes a long message of " + std::to_string(partial_total_) +
                                     " bytes"
                               : "a long message ended after " + std::to_string(partial_.size()) + " of its " +
                                     std::to_string(partial_total_) + " bytes");
      }
      if (!complete) return false;
      out = std::move(partial_);
      partial_ = {};
      partial_total_ = 0;
      return true;
    }
    case RecordKind::kAbandon:
      // The sender's send timed out part-way: that message was not sent.
      if (!partial_total_) throw_corrupt("stream out of step: a message given up that had not started");
      partial_.clear();
      partial_total_ = 0;
      return false;
    case RecordKind::kPad:
      break;  // peek() skips fillers
  }
  throw_corrupt("unexpected record kind " + std::to_string(static_cast<uint32_t>(h.kind)));
}

Outcome Connection::recv_impl(std::vector<std::byte>& out, const Deadline& deadline, size_t limit) {
  check_open("recv", in_.has_value());
  // The common case (try_recv_now(), inline) did not apply; this one waits as needed.
  return recv_waiting(out, deadline, limit);
}

Outcome Connection::recv_waiting(std::vector<std::byte>& out, const Deadline& deadline, size_t limit) {
  if (!corrupt_.empty()) throw StreamCorrupted(corrupt_);
  // Whatever the way out (a long message begun or completed, an error), the inline path's flag follows.
  struct RefreshOnExit {
    Connection& c;
    ~RefreshOnExit() { c.refresh_recv_now(); }
  } refresh{*this};
  Side& side = *in_;
  ByteRingHeader& header = side.ring.header();
  bool producer_sleeps = false;
  Outcome r;
  for (;;) {
    RecordHeader h;
    const std::byte* p;
    r = next_record(side, deadline, h, p);
    if (r != Outcome::kOk) break;
    if (partial_total_ != 0 && (h.kind == RecordKind::kWhole || h.kind == RecordKind::kFirst)) {
      drop_parts_of_dead_sender();
    }
    if (h.kind == RecordKind::kWhole && partial_total_ == 0 && h.payload_bytes <= limit) [[likely]] {
      assign_message(out, p, h.payload_bytes);  // the common case, as take_record() would
      release_and_notify(side.ring, h, producer_sleeps);
      break;
    }
    // A message larger than `limit` is refused before any of it is consumed (a given-up one is not a message).
    const uint64_t needed = partial_total_                    ? (h.kind == RecordKind::kAbandon ? 0 : partial_total_)
                            : h.kind == RecordKind::kFirst ? first_part(h, p).total
                                                           : h.payload_bytes;
    if (needed > limit) throw BufferTooSmall(needed, limit);
    const bool whole = take_record(h, p, out);
    release_and_notify(side.ring, h, producer_sleeps);
    if (whole) break;
    // Room for the sender's next part before we wait for it.
    if (producer_sleeps) wake_sleeper(side, header.producer);
    producer_sleeps = false;
  }
  if (producer_sleeps) [[unlikely]] wake_sleeper(side, header.producer);
  if (r == Outcome::kClosed) {
    partial_.clear();  // the sender died mid-message: the partial message is dropped
    partial_total_ = 0;
  }
  return r;
}

Outcome Connection::recv_into_impl(std::span<std::byte> buffer, size_t& size, const Deadline& deadline) {
  check_open("recv", in_.has_value());
  // The common case (try_recv_now_into(), inline) did not apply.
  const Outcome r = recv_waiting(scratch_, deadline, buffer.size());
  if (r == Outcome::kOk) {
    if (!scratch_.empty()) std::memcpy(buffer.data(), scratch_.data(), scratch_.size());
    size = scratch_.size();
  }
  return r;
}

bool Connection::poll_impl(const Deadline& deadline) {
  check_open("poll", in_.has_value());
  if (!corrupt_.empty()) return true;  // recv would not block: it throws
  Side& side = *in_;
  ByteRing& ring = side.ring;
  return block_until(side, ring.header().consumer, deadline,
                     [&] { return ring.readable() || peer_gone(); });
}

// wait() needs the private parts of several Connections at once.
struct WaitAccess {
  static bool ready(Connection& c) { return c.in_->ring.readable() || c.peer_gone(); }
  static std::atomic<uint32_t>& flag(Connection& c) { return c.in_->ring.header().consumer.waiting; }
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
      // seq_cst: waiter's half of the Dekker pair, as in Connection::block_until. In poll: a poll set is the one
      // way to sleep on several connections and sentinels at once.
      WaitAccess::flag(*c).store(detail::Sleeper::kInPoll, std::memory_order_seq_cst);
    }
    detail::heavy_fence();
    if (collect()) {
      for (Connection* c : connections) WaitAccess::flag(*c).store(Sleeper::kAwake, std::memory_order_relaxed);
      return result;
    }
    fds.clear();
    for (Connection* c : connections) fds.push_back({WaitAccess::fd(*c), POLLIN, 0});
    for (int s : sentinels) fds.push_back({s, POLLIN, 0});
    int r = poll_until(fds.data(), fds.size(), deadline);
    // relaxed: a hint
    for (Connection* c : connections) WaitAccess::flag(*c).store(Sleeper::kAwake, std::memory_order_relaxed);
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

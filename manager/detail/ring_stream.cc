#include "manager/detail/ring_stream.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

namespace ipc::manager::detail {

// The memory: a header page (the format, each direction's positions, the client's count of queue items taken),
// then the client -> server ring, then the server -> client ring.
struct RingStream::Layout {
  std::uint32_t format;
  std::uint32_t reserved;
  std::uint64_t ring_bytes;
  Positions to_server;
  Positions to_client;
  alignas(64) std::atomic<std::uint64_t> items_taken;  // the client
};

namespace {
constexpr std::size_t kHeaderBytes = 4096;
constexpr std::size_t kMemoryBytes = kHeaderBytes + 2 * RingStream::kRingBytes;
static_assert((RingStream::kRingBytes & (RingStream::kRingBytes - 1)) == 0, "the ring is a power of two");

kj::Exception corrupt(const char* what, std::uint64_t ahead) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str("the connection's shared ring is corrupt: ", what, " (", ahead, " bytes, the ring holds ",
                               RingStream::kRingBytes, ")"));
}

kj::Exception system_error(const char* call) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str(call, " (the connection's shared ring): ", std::strerror(errno)));
}
}  // namespace

RingStream::RingStream(RingStream&& o) noexcept { *this = std::move(o); }

RingStream& RingStream::operator=(RingStream&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, bytes_);
    base_ = std::exchange(o.base_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    in_ = o.in_;
    out_ = o.out_;
    in_data_ = o.in_data_;
    out_data_ = o.out_data_;
    in_head_ = o.in_head_;
    out_tail_ = o.out_tail_;
    items_taken_ = o.items_taken_;
    items_counted_ = o.items_counted_;
  }
  return *this;
}

RingStream::~RingStream() {
  if (base_ != nullptr) ::munmap(base_, bytes_);
}

RingStream RingStream::map(int fd, Side side) {
  void* p = ::mmap(nullptr, kMemoryBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw system_error("mmap");
  RingStream s;
  s.base_ = static_cast<unsigned char*>(p);
  s.bytes_ = kMemoryBytes;
  auto* layout = reinterpret_cast<Layout*>(s.base_);
  s.items_taken_ = &layout->items_taken;
  unsigned char* to_server = s.base_ + kHeaderBytes;
  unsigned char* to_client = to_server + kRingBytes;
  if (side == Side::kServer) {
    s.in_ = &layout->to_server;
    s.out_ = &layout->to_client;
    s.in_data_ = to_server;
    s.out_data_ = to_client;
  } else {
    s.in_ = &layout->to_client;
    s.out_ = &layout->to_server;
    s.in_data_ = to_client;
    s.out_data_ = to_server;
  }
  return s;
}

RingStream RingStream::create(kj::AutoCloseFd& memory) {
  memory = kj::AutoCloseFd(static_cast<int>(::memfd_create("ipc-manager-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (memory.get() < 0) throw system_error("memfd_create");
  if (::ftruncate(memory, static_cast<off_t>(kMemoryBytes)) != 0) throw system_error("ftruncate");
  // The client gets the descriptor: sealed at its size, so that it cannot shrink the memory under this side's
  // mapping (a SIGBUS here at the next access) nor unseal it.
  if (::fcntl(memory, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) throw system_error("F_ADD_SEALS");
  RingStream s = map(memory, Side::kServer);
  // A fresh memfd reads as zeros: every position and flag starts at 0. The atomics are made in place.
  static_assert(sizeof(Layout) <= kHeaderBytes, "the header page holds the layout");
  auto* layout = new (s.base_) Layout{};
  layout->format = kFormat;
  layout->ring_bytes = kRingBytes;
  return s;
}

RingStream RingStream::open(kj::AutoCloseFd memory) {
  struct stat st {};
  if (::fstat(memory, &st) != 0) throw system_error("fstat");
  if (static_cast<std::uint64_t>(st.st_size) != kMemoryBytes) {
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                        kj::str("the manager's shared ring is ", st.st_size, " bytes, not ", kMemoryBytes));
  }
  RingStream s = map(memory, Side::kClient);
  const auto* layout = reinterpret_cast<const Layout*>(s.base_);
  if (layout->format != kFormat || layout->ring_bytes != kRingBytes) {
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                        kj::str("the manager's shared ring has format ", layout->format, " and ", layout->ring_bytes,
                                " bytes per direction; this client speaks format ", kFormat, " with ", kRingBytes));
  }
  // The positions start where the server left them: at 0, as nothing was sent yet.
  s.in_head_ = s.in_->head.load(std::memory_order_relaxed);
  s.out_tail_ = s.out_->tail.load(std::memory_order_relaxed);
  if (s.in_head_ != 0 || s.out_tail_ != 0) throw corrupt("the positions of a fresh ring are not 0", s.in_head_);
  return s;
}

std::uint64_t RingStream::checked_peer_head() const {
  // Acquire: the consumer copied those bytes out before it moved its position; only then may they be overwritten.
  const std::uint64_t head = out_->head.load(std::memory_order_acquire);
  // Positions count bytes from 0 and never wrap (2^64 bytes): a head ahead of the tail is not "far behind".
  if (head > out_tail_ || out_tail_ - head > kRingBytes) {
    throw corrupt("the peer's read position is not within a ring behind what was written", out_tail_ - head);
  }
  return head;
}

std::uint64_t RingStream::consumed_by_peer() const { return checked_peer_head(); }

void RingStream::count_item_taken() {
  // release: the server reads the count after the bytes this side writes next (or after its socket ended), and
  // must find it there; partner: the acquire load in items_taken_by_client().
  items_taken_->store(++items_counted_, std::memory_order_release);
}

std::uint64_t RingStream::items_taken_by_client() const {
  // acquire: partner is the release store in count_item_taken().
  return items_taken_->load(std::memory_order_acquire);
}

std::size_t RingStream::write_some(const unsigned char* bytes, std::size_t n) {
  const std::uint64_t head = checked_peer_head();
  const std::size_t room = kRingBytes - static_cast<std::size_t>(out_tail_ - head);
  const std::size_t put = std::min(n, room);
  if (put == 0) return 0;
  const std::size_t at = static_cast<std::size_t>(out_tail_) & (kRingBytes - 1);
  const std::size_t first = std::min(put, kRingBytes - at);
  std::memcpy(out_data_ + at, bytes, first);
  std::memcpy(out_data_, bytes + first, put - first);
  out_tail_ += put;
  // Release: the bytes before the position that publishes them.
  out_->tail.store(out_tail_, std::memory_order_release);
  return put;
}

std::size_t RingStream::read_some(unsigned char* out, std::size_t n) {
  // Acquire: the bytes the producer copied in before it published its position.
  const std::uint64_t tail = in_->tail.load(std::memory_order_acquire);
  const std::uint64_t available = tail - in_head_;
  if (available == 0) return 0;
  if (tail < in_head_ || available > kRingBytes) {
    throw corrupt("the peer's write position is not within a ring ahead of what was read", available);
  }
  const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, available));
  const std::size_t at = static_cast<std::size_t>(in_head_) & (kRingBytes - 1);
  const std::size_t first = std::min(take, kRingBytes - at);
  std::memcpy(out, in_data_ + at, first);
  std::memcpy(out + first, in_data_, take - first);
  in_head_ += take;
  // Release: the copies out are done before the producer may overwrite those bytes.
  in_->head.store(in_head_, std::memory_order_release);
  return take;
}

bool RingStream::arm_reader() {
  // seq_cst store and fence, against the producer's fence in take_reader_wakeup(): either it sees the flag, or the
  // look below sees its bytes.
  in_->reader_waiting.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return readable();
}

bool RingStream::arm_writer() {
  out_->writer_waiting.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return out_tail_ - checked_peer_head() < kRingBytes;
}

bool RingStream::take_reader_wakeup() {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the published position before the look at the flag
  if (out_->reader_waiting.load(std::memory_order_relaxed) == 0) return false;
  // Acquire-release: one doorbell per arming, whoever else takes the flag (the reader itself, disarming).
  return out_->reader_waiting.exchange(0, std::memory_order_acq_rel) != 0;
}

bool RingStream::take_writer_wakeup() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (in_->writer_waiting.load(std::memory_order_relaxed) == 0) return false;
  return in_->writer_waiting.exchange(0, std::memory_order_acq_rel) != 0;
}

}  // namespace ipc::manager::detail

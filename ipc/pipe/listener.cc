#include "ipc/pipe/listener.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string_view>
#include <utility>
#include <vector>

#include "ipc/base/auth.h"
#include "ipc/base/error.h"
#include "ipc/base/poll.h"
#include "ipc/base/unix_socket.h"

namespace ipc {
namespace {

using Clock = std::chrono::steady_clock;
using detail::kNonceBytes;

// The handshake, in messages of fixed sizes (a peer that sends anything else is refused):
//   listener -> client   hello    "numa_mpL" | server nonce (32)
//   client -> listener   answer   "numa_mpC" | client nonce (32) | client proof (32)
//   listener -> client   accept   'A' | server proof (32) | memory bytes, in offset, out offset (3 x u64)
//                                 + SCM_RIGHTS: the memfd, the client end's receiving and sending sockets
//                     or refuse   'R', and the listener closes the socket (a wrong key learns nothing else)
constexpr std::string_view kProtocol = "numa_mp listener v1";
constexpr std::string_view kHelloMagic = "numa_mpL";
constexpr std::string_view kAnswerMagic = "numa_mpC";
constexpr size_t kDigestBytes = sizeof(detail::Digest);
constexpr size_t kHelloBytes = kHelloMagic.size() + kNonceBytes;
constexpr size_t kAnswerBytes = kAnswerMagic.size() + kNonceBytes + kDigestBytes;
constexpr size_t kAcceptBytes = 1 + kDigestBytes + 3 * sizeof(uint64_t);
constexpr std::byte kAccepted{'A'};
constexpr std::byte kRefused{'R'};
constexpr size_t kMinKeyBytes = detail::kMinKeyBytes;

std::span<const std::uint8_t> u8(std::span<const std::byte> b) {
  return {reinterpret_cast<const std::uint8_t*>(b.data()), b.size()};
}

void check_key(std::span<const std::uint8_t> key, const char* who) {
  if (key.size() < kMinKeyBytes) {
    throw InvalidArgument(std::string(who) + ": the key must be at least " + std::to_string(kMinKeyBytes) +
                          " bytes (got " + std::to_string(key.size()) + ")");
  }
}

// A descriptor closed when the scope ends, unless released.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void close_all(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

std::string runtime_directory() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/' && std::strlen(xdg) <= 60) return std::string(xdg) + "/numa_mp";
  // Bazel and others set long TMPDIRs; the socket path inside must still fit in sun_path.
  const char* tmp = std::getenv("TMPDIR");
  const std::string base = (tmp != nullptr && tmp[0] == '/' && std::strlen(tmp) <= 60) ? tmp : "/tmp";
  return base + "/numa_mp-" + std::to_string(::geteuid());
}

}  // namespace

std::string listener_socket_path(const std::string& address) {
  if (address.find('/') != std::string::npos) return address;
  const bool valid_chars = std::all_of(address.begin(), address.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
  if (address.empty() || address.size() > 64 || address[0] == '.' || !valid_chars) {
    throw InvalidArgument("listener name '" + address +
                          "': 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.' (or a socket path with a '/')");
  }
  return runtime_directory() + "/" + address + ".sock";
}

// ---- the listener ---------------------------------------------------------------------------------------------

// One client between accept(2) and the end of its handshake.
struct Pending {
  int fd = -1;
  Clock::time_point deadline;
  std::vector<std::uint8_t> nonce;
  std::array<std::byte, kAnswerBytes> answer{};
  size_t got = 0;
};

struct Listener::Impl {
  std::string path;
  std::string own_directory;  // the per-user directory of a named listener: removed when empty at the end
  std::vector<std::uint8_t> key;
  ListenerOptions options;
  detail::BoundSocket bound;
  // Everything accept() waits for in one descriptor (fileno()): the listening socket, every pending handshake's
  // socket, and a timer armed for the earliest handshake deadline.
  int epoll_fd = -1;
  int timer_fd = -1;
  std::deque<Pending> pending;  // in the order accepted, which is the order of their deadlines

  ~Impl() {
    for (auto& p : pending) ::close(p.fd);
    if (timer_fd >= 0) ::close(timer_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
    if (bound.fd >= 0) {
      ::close(bound.fd);
      detail::unlink_if_bound(path, bound);
    }
    if (!own_directory.empty()) ::rmdir(own_directory.c_str());  // fails, harmlessly, while others use it
  }

  void watch(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl (listener)");
  }

  // Closing the socket also takes it out of the epoll set (the listener holds its only copy).
  void drop(std::deque<Pending>::iterator it) {
    ::close(it->fd);
    pending.erase(it);
  }
  void refuse(std::deque<Pending>::iterator it) {
    (void)::send(it->fd, &kRefused, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    drop(it);
  }

  void expire_and_arm_timer() {
    const auto now = Clock::now();
    while (!pending.empty() && pending.front().deadline <= now) drop(pending.begin());
    itimerspec spec{};  // all zero: disarmed
    if (!pending.empty()) {
      // steady_clock is CLOCK_MONOTONIC on Linux, the timer's clock.
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(pending.front().deadline.time_since_epoch());
      spec.it_value.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
      spec.it_value.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
    }
    if (::timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) throw_errno("timerfd_settime");
  }

  // Takes every client waiting in the backlog and sends each its challenge.
  void take_new_clients() {
    for (;;) {
      int fd = ::accept4(bound.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        if (err == EINTR || err == ECONNABORTED) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        // Out of descriptors or memory: make room by giving up the oldest handshake, else report it.
        if ((err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) && !pending.empty()) {
          drop(pending.begin());
          continue;
        }
        throw SystemError(err, "accept on " + path);
      }
      if (pending.size() >= options.max_pending) drop(pending.begin());
      Pending p;
      p.fd = fd;
      p.deadline = Clock::now() + options.handshake_timeout;
      p.nonce = detail::random_bytes(kNonceBytes);
      std::array<std::byte, kHelloBytes> hello;
      std::memcpy(hello.data(), kHelloMagic.data(), kHelloMagic.size());
      std::memcpy(hello.data() + kHelloMagic.size(), p.nonce.data(), kNonceBytes);
      // A fresh socket's buffer takes 40 bytes at once; a client that is already gone is simply dropped.
      if (::send(fd, hello.data(), hello.size(), MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
        ::close(fd);
        continue;
      }
      try {
        watch(fd);
      } catch (...) {
        ::close(fd);
        throw;
      }
      pending.push_back(std::move(p));
    }
  }

  // Reads what client `fd` sent; a complete, valid answer gives the listener's end of its new connection.
  std::optional<Connection> advance(int fd) {
    auto it = std::find_if(pending.begin(), pending.end(), [&](const Pending& p) { return p.fd == fd; });
    if (it == pending.end()) return std::nullopt;
    const ssize_t n = ::recv(fd, it->answer.data() + it->got, kAnswerBytes - it->got, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return std::nullopt;
    if (n <= 0) {  // the client left, or its socket failed
      drop(it);
      return std::nullopt;
    }
    it->got += static_cast<size_t>(n);
    const size_t magic = std::min(it->got, kAnswerMagic.size());
    if (std::memcmp(it->answer.data(), kAnswerMagic.data(), magic) != 0) {
      refuse(it);
      return std::nullopt;
    }
    if (it->got < kAnswerBytes) return std::nullopt;
    auto client_nonce = u8(std::span(it->answer).subspan(kAnswerMagic.size(), kNonceBytes));
    auto proof = u8(std::span(it->answer).subspan(kAnswerMagic.size() + kNonceBytes, kDigestBytes));
    if (!detail::equal_constant_time(detail::client_proof(kProtocol, key, it->nonce, client_nonce), proof)) {
      refuse(it);
      return std::nullopt;
    }
    try {
      PipeOptions o = options.pipe;
      o.duplex = true;
      o.transferable = true;
      auto [ours, theirs] = Pipe(o);
      const ConnectionHandoff h = theirs.handoff();
      std::array<std::byte, kAcceptBytes> reply;
      reply[0] = kAccepted;
      const detail::Digest server = detail::server_proof(kProtocol, key, it->nonce, client_nonce);
      std::memcpy(&reply[1], server.data(), kDigestBytes);
      const uint64_t layout[3] = {h.memory_bytes, h.in_offset, h.out_offset};
      std::memcpy(&reply[1 + kDigestBytes], layout, sizeof layout);
      const int fds[3] = {h.memory_fd, h.in_fd, h.out_fd};
      const ssize_t sent = detail::send_with_fds(it->fd, reply, fds, MSG_DONTWAIT);
      drop(it);
      // `theirs` closes this process's copies: from now on only the client holds that end.
      if (sent != static_cast<ssize_t>(reply.size())) return std::nullopt;  // the client is gone
      return std::move(ours);
    } catch (...) {
      drop(it);  // no rings for this client (out of memory or descriptors); the listener goes on
      throw;
    }
  }
};

Listener::Listener(const std::string& address, std::span<const std::uint8_t> key, ListenerOptions options)
    : impl_(std::make_unique<Impl>()) {
  check_key(key, "Listener");
  if (options.handshake_timeout <= std::chrono::milliseconds::zero()) {
    throw InvalidArgument("Listener: handshake_timeout must be positive");
  }
  if (options.max_pending == 0) throw InvalidArgument("Listener: max_pending must be at least 1");
  Impl& im = *impl_;
  im.path = listener_socket_path(address);
  im.key.assign(key.begin(), key.end());
  im.options = std::move(options);
  (void)detail::unix_address(im.path);  // a path too long or holding a NUL is refused before its directory is made
  const std::string dir = detail::directory_of(im.path);
  // A named listener's directory is shared with the other listeners of this user, and the last to close removes
  // it: if that happens between our check and our bind, make it again.
  for (int attempt = 0;; ++attempt) {
    detail::ensure_private_directory(dir, "listener");
    try {
      im.bound = detail::listen_unix(im.path, "listener");
      break;
    } catch (const SystemError& e) {
      if (e.code() != ENOENT || attempt == 3) throw;
    }
  }
  if (address.find('/') == std::string::npos) im.own_directory = dir;
  im.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (im.epoll_fd < 0) throw_errno("epoll_create1 (listener)");
  im.timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (im.timer_fd < 0) throw_errno("timerfd_create (listener)");
  im.watch(im.bound.fd);
  im.watch(im.timer_fd);
}

Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

void Listener::close() { impl_.reset(); }

int Listener::fileno() const {
  if (!impl_) throw StateError("Listener::fileno: the listener is closed");
  return impl_->epoll_fd;
}

const std::string& Listener::socket_path() const {
  if (!impl_) throw StateError("Listener::socket_path: the listener is closed");
  return impl_->path;
}

std::optional<Connection> Listener::accept_until(const Deadline& deadline) {
  if (!impl_) throw StateError("Listener::accept: the listener is closed");
  Impl& im = *impl_;
  std::optional<Connection> got;
  for (bool first = true;; first = false) {
    // Before every wait and before returning: the timer must cover the handshakes just begun, so that a caller
    // sleeping on fileno() wakes to drop them.
    im.expire_and_arm_timer();
    if (got) return got;
    if (!first && deadline.expired()) return std::nullopt;
    int timeout_ms = -1;
    if (auto left = deadline.remaining()) {
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*left).count();
      timeout_ms = static_cast<int>(std::min<int64_t>(ms, INT_MAX));
    }
    std::array<epoll_event, 32> events;
    const int n = ::epoll_wait(im.epoll_fd, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) throw_errno("epoll_wait (listener)");
    // One finished handshake per call: the events not handled stay ready (level-triggered) for the next call,
    // so fileno() stays readable while accept(0s) has work.
    for (int i = 0; i < n && !got; ++i) {
      const int fd = events[i].data.fd;
      if (fd == im.bound.fd) {
        im.take_new_clients();
      } else if (fd == im.timer_fd) {
        uint64_t expirations;  // not needed: reading only clears the timer's readiness (EAGAIN when already clear)
        [[maybe_unused]] const ssize_t r = ::read(im.timer_fd, &expirations, sizeof expirations);
      } else {
        got = im.advance(fd);
      }
    }
  }
}

// ---- the client -----------------------------------------------------------------------------------------------

namespace {

[[noreturn]] void hung_up(const std::string& path) {
  throw SystemError(ECONNRESET, "connect to listener at " + path + ": the listener hung up during the handshake");
}

// Reads until `buffer` holds `want` bytes (or, with `enough`, until enough(bytes so far) says stop), appending
// the descriptors that come with them. false: the deadline passed first.
template <typename Enough>
bool read_until(int sock, std::span<std::byte> buffer, size_t& got, std::vector<int>& fds, const Deadline& deadline,
                const std::string& path, Enough&& enough) {
  while (!enough(got)) {
    pollfd p{sock, POLLIN, 0};
    if (poll_until(&p, 1, deadline) == 0) {
      if (deadline.expired()) return false;
      continue;
    }
    bool truncated = false;
    const ssize_t n = detail::recv_with_fds(sock, buffer.subspan(got), fds, truncated, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) throw_errno("recv from listener at " + path);
    if (n == 0) hung_up(path);
    got += static_cast<size_t>(n);
  }
  return true;
}

std::optional<Connection> connect_until(const std::string& address, std::span<const std::uint8_t> key,
                                        const Deadline& deadline) {
  check_key(key, "connect");
  const std::string path = listener_socket_path(address);
  const sockaddr_un addr = detail::unix_address(path);
  Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.fd < 0) throw_errno("socket");
  if (auto left = deadline.remaining()) {
    // connect(2) on a Unix socket whose backlog is full sleeps up to the send timeout, then fails with EAGAIN.
    const auto us = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(*left).count());
    timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    if (::setsockopt(sock.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) throw_errno("setsockopt SO_SNDTIMEO");
  }
  if (retry_on_eintr([&] { return ::connect(sock.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr); }) != 0) {
    const int err = errno;
    if (err == ENOENT) throw NotFound("no listener at " + path + " (no socket file)");
    if (err == ECONNREFUSED) {
      throw NotFound("no listener at " + path + ": nobody listens on the socket file (its listener is gone)");
    }
    if (err == EAGAIN || err == EINPROGRESS) return std::nullopt;  // the backlog stayed full until the deadline
    throw SystemError(err, "connect to listener at " + path);
  }
  detail::check_peer_is_this_user(sock.fd, path, "listener");

  std::vector<int> fds;
  struct CloseFds {
    std::vector<int>& fds;
    ~CloseFds() { close_all(fds); }
  } close_fds{fds};

  std::array<std::byte, kHelloBytes> hello;
  size_t got = 0;
  if (!read_until(sock.fd, hello, got, fds, deadline, path, [](size_t g) { return g >= kHelloBytes; })) {
    return std::nullopt;
  }
  if (std::memcmp(hello.data(), kHelloMagic.data(), kHelloMagic.size()) != 0 || !fds.empty()) {
    throw InvalidArgument(path + " is not a numa_mp Listener (a Manager's socket?)");
  }
  auto server_nonce = u8(std::span(hello).subspan(kHelloMagic.size(), kNonceBytes));
  const std::vector<std::uint8_t> client_nonce = detail::random_bytes(kNonceBytes);
  const detail::Digest proof = detail::client_proof(kProtocol, key, server_nonce, client_nonce);
  std::array<std::byte, kAnswerBytes> answer;
  std::memcpy(answer.data(), kAnswerMagic.data(), kAnswerMagic.size());
  std::memcpy(answer.data() + kAnswerMagic.size(), client_nonce.data(), kNonceBytes);
  std::memcpy(answer.data() + kAnswerMagic.size() + kNonceBytes, proof.data(), kDigestBytes);
  // 72 bytes into a socket nothing else was written to: one send takes them all.
  if (::send(sock.fd, answer.data(), answer.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(answer.size())) {
    if (errno == EPIPE || errno == ECONNRESET) hung_up(path);
    throw_errno("send to listener at " + path);
  }

  std::array<std::byte, kAcceptBytes> reply;
  got = 0;
  auto complete = [&](size_t g) { return g >= 1 && (reply[0] != kAccepted || g >= kAcceptBytes); };
  try {
    if (!read_until(sock.fd, reply, got, fds, deadline, path, complete)) return std::nullopt;
  } catch (const SystemError& e) {
    // A listener that refuses may close before we read: a refusal all the same only if it said so.
    if (got >= 1 && reply[0] == kRefused) throw AuthenticationFailed("listener at " + path + " refused the key");
    throw;
  }
  if (reply[0] == kRefused) throw AuthenticationFailed("listener at " + path + " refused the key");
  if (reply[0] != kAccepted) throw InvalidArgument(path + " is not a numa_mp Listener (unknown reply)");
  const detail::Digest expected = detail::server_proof(kProtocol, key, server_nonce, client_nonce);
  if (!detail::equal_constant_time(expected, u8(std::span(reply).subspan(1, kDigestBytes)))) {
    throw AuthenticationFailed("listener at " + path + " could not prove it holds the key");
  }
  if (fds.size() != 3) {
    throw InvalidArgument("listener at " + path + " sent " + std::to_string(fds.size()) +
                          " descriptors with its reply, not 3");
  }
  uint64_t layout[3];
  std::memcpy(layout, &reply[1 + kDigestBytes], sizeof layout);
  ConnectionHandoff h;
  h.memory_fd = fds[0];
  h.memory_bytes = layout[0];
  h.in_fd = fds[1];
  h.in_offset = layout[1];
  h.out_fd = fds[2];
  h.out_offset = layout[2];
  fds.clear();  // adopt() owns them now, whatever it does
  return Connection::adopt(h);
}

}  // namespace

Connection connect(const std::string& address, std::span<const std::uint8_t> key) {
  return *connect_until(address, key, Deadline::never());
}

std::optional<Connection> connect(const std::string& address, std::span<const std::uint8_t> key,
                                  std::chrono::milliseconds timeout) {
  return connect_until(address, key, Deadline::after(timeout));
}

}  // namespace ipc

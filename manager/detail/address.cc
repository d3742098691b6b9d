#include "manager/detail/address.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ipc/base/error.h"
#include "ipc/base/unix_socket.h"

namespace ipc::manager::detail {

namespace {

[[noreturn]] void malformed(const std::string& text, const std::string& what) {
  throw InvalidArgument("manager address '" + text + "' " + what +
                        ": expected tcp:HOST:PORT (HOST an IPv4 address, [IPv6 address] or host name; PORT 0 to "
                        "65535) or a Unix socket path");
}

std::uint16_t parse_port(const std::string& text, const std::string& port) {
  if (port.empty()) malformed(text, "has no port");
  for (char c : port) {
    if (c < '0' || c > '9') malformed(text, "has a port that is not a number ('" + port + "')");
  }
  if (port.size() > 5 || std::stoul(port) > 65535) malformed(text, "has a port out of range (" + port + ")");
  return static_cast<std::uint16_t>(std::stoul(port));
}

// The numeric host and the port of an IPv4 or IPv6 socket address; false for another family.
bool numeric(const sockaddr* address, socklen_t size, std::string& host, std::uint16_t& port) {
  if (address->sa_family != AF_INET && address->sa_family != AF_INET6) return false;
  char h[NI_MAXHOST], s[NI_MAXSERV];
  if (::getnameinfo(address, size, h, sizeof h, s, sizeof s, NI_NUMERICHOST | NI_NUMERICSERV) != 0) return false;
  host = h;
  port = static_cast<std::uint16_t>(std::stoul(s));
  return true;
}

void set_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw_errno(std::string("setsockopt ") + what);
}

}  // namespace

Address parse_address(const std::string& text) {
  if (text.empty()) malformed(text, "is empty");
  if (text.compare(0, kTcpPrefix.size(), kTcpPrefix) != 0) return Address{text, false, text, {}, 0};
  const std::string rest = text.substr(kTcpPrefix.size());
  if (rest.empty()) malformed(text, "has no host and no port");
  std::string host, port;
  if (rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) malformed(text, "has a '[' without its ']'");
    host = rest.substr(1, close - 1);
    const std::string after = rest.substr(close + 1);
    if (after.empty()) malformed(text, "has no port");
    if (after.front() != ':') malformed(text, "needs ':' between ']' and the port");
    port = after.substr(1);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) malformed(text, "has no port");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) malformed(text, "has no host");
  Address a;
  a.tcp = true;
  a.host = host;
  a.port = parse_port(text, port);
  a.text = tcp_text(a.host, a.port);
  return a;
}

std::string tcp_text(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(kTcpPrefix) + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::vector<SocketTarget> resolve(const Address& a, bool passive) {
  if (!a.tcp) {
    const sockaddr_un un = ipc::detail::unix_address(a.path);
    SocketTarget t;
    std::memcpy(&t.storage, &un, sizeof un);
    t.size = sizeof un;
    t.family = AF_UNIX;
    return {t};
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* found = nullptr;
  const std::string port = std::to_string(a.port);
  const int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &found);
  if (rc == EAI_SYSTEM) throw_errno("resolve the host of manager address " + a.text);
  if (rc == EAI_AGAIN) {
    throw SystemError(EAGAIN, "resolve the host of manager address " + a.text + " (" + ::gai_strerror(rc) + ")");
  }
  if (rc != 0) throw NotFound("manager address " + a.text + ": no host '" + a.host + "' (" + ::gai_strerror(rc) + ")");
  std::vector<SocketTarget> out;
  for (const addrinfo* i = found; i != nullptr; i = i->ai_next) {
    if (i->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketTarget t;
    std::memcpy(&t.storage, i->ai_addr, i->ai_addrlen);
    t.size = i->ai_addrlen;
    t.family = i->ai_family;
    out.push_back(t);
  }
  ::freeaddrinfo(found);
  if (out.empty()) throw NotFound("manager address " + a.text + ": host '" + a.host + "' has no TCP address");
  return out;
}

int listen_tcp(const Address& a, std::string& bound) {
  int err = 0;
  for (const SocketTarget& t : resolve(a, /*passive=*/true)) {
    int fd = ::socket(t.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    const int reuse = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse) != 0 || ::bind(fd, t.address(), t.size) != 0 ||
        ::listen(fd, SOMAXCONN) != 0) {
      err = errno;
      ::close(fd);
      continue;
    }
    sockaddr_storage local{};
    socklen_t size = sizeof local;
    std::string host;
    std::uint16_t port = 0;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) != 0 ||
        !numeric(reinterpret_cast<const sockaddr*>(&local), size, host, port)) {
      err = errno;
      ::close(fd);
      throw SystemError(err, "getsockname of manager address " + a.text);
    }
    bound = tcp_text(host, port);
    return fd;
  }
  if (err == EADDRINUSE) throw StateError("manager address " + a.text + ": the port is in use (is a server running?)");
  throw SystemError(err, "listen on manager address " + a.text);
}

void configure_tcp(int fd) {
  set_option(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  set_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
  set_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, 20, "TCP_KEEPIDLE");   // seconds idle before the first probe
  set_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10, "TCP_KEEPINTVL");  // seconds between probes
  set_option(fd, IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT");
  // Sent data (or probes) unacknowledged this long ends the connection; also bounds keep-alive (tcp(7)).
  set_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 60'000, "TCP_USER_TIMEOUT");
}

std::string peer_address(int fd) {
  sockaddr_storage peer{};
  socklen_t size = sizeof peer;
  std::string host;
  std::uint16_t port = 0;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) != 0 ||
      !numeric(reinterpret_cast<const sockaddr*>(&peer), size, host, port)) {
    return {};
  }
  return tcp_text(host, port);
}

}  // namespace ipc::manager::detail

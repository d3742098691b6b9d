// manager/detail/address.h: the one address string of the Manager (server options, Client, `ipc-manager --listen`,
// `numa_mp manager status`): a Unix socket path, or "tcp:HOST:PORT". Internal.
//
//   Address a = parse_address("tcp:127.0.0.1:0");     // HOST: IPv4, [IPv6] or bare IPv6, or a host name
//   std::string bound;
//   int listening = listen_tcp(a, bound);              // bound == "tcp:127.0.0.1:41234" (port 0: the kernel's pick)
//   int fd = socket(t.family, ...); connect(fd, t.address(), t.size) for each SocketTarget t of resolve(a, false)
//
// Threads: reentrant functions. Processes: n/a. Lifetime: the caller owns every descriptor returned.
// Errors: a malformed address: ipc::InvalidArgument naming it and what is wrong (no host, no port, a port that is
//   not a number or above 65535); a host name that does not resolve: ipc::NotFound; a TCP port in use:
//   ipc::StateError; system call and resolver failures: ipc::SystemError.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ipc::manager::detail {

inline constexpr std::string_view kTcpPrefix = "tcp:";

struct Address {
  std::string text;  // as the user wrote it; for TCP the canonical "tcp:HOST:PORT" (IPv6 in brackets)
  bool tcp = false;
  std::string path;  // Unix: the socket path
  std::string host;  // TCP: an IP literal (IPv6 without brackets) or a host name
  std::uint16_t port = 0;
};

// "tcp:HOST:PORT" (see the contract above; HOST as in `tcp:[::1]:5000` or `tcp:::1:5000`) or, for anything that
// does not start with "tcp:", a Unix socket path (a relative path that does start with it: "./tcp:..."). An empty
// text is InvalidArgument (a server chooses a private path itself before it gets here).
Address parse_address(const std::string& text);

// "tcp:HOST:PORT", an IPv6 HOST in brackets.
std::string tcp_text(const std::string& host, std::uint16_t port);

// One socket address to bind or connect to.
struct SocketTarget {
  sockaddr_storage storage{};
  socklen_t size = 0;
  int family = AF_UNSPEC;
  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Every socket address `a` names, in the resolver's order of preference: one for a Unix path; for TCP each address
// HOST resolves to (getaddrinfo; `passive`: for a server to bind).
std::vector<SocketTarget> resolve(const Address& a, bool passive);

// A listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR so that a restarted server gets its port back
// while old connections linger in TIME_WAIT) on the first address HOST resolves to that binds; `bound` is set to
// its "tcp:HOST:PORT", with the port the kernel picked when a.port is 0. Accepted sockets need configure_tcp().
int listen_tcp(const Address& a, std::string& bound);

// For each TCP connection, on both ends: TCP_NODELAY (an RPC is a small message that must leave at once, not wait
// for Nagle's algorithm), and keep-alive probes plus TCP_USER_TIMEOUT, so that a peer whose host vanished (power,
// network) is noticed within about a minute, as a Disconnected call rather than a call that waits forever.
void configure_tcp(int fd);

// "tcp:HOST:PORT" of the peer of TCP socket `fd`; empty when it has none (or is not TCP).
std::string peer_address(int fd);

}  // namespace ipc::manager::detail

// ipc/base/unix_socket.h: Unix stream sockets for services that unrelated processes reach by path (the Manager,
// the Listener): addresses, private directories, a listening socket that replaces a stale one and is unlinked only
// by its owner, and descriptors passed with SCM_RIGHTS. Internal (ipc::detail; not for users).
//
//   ensure_private_directory(directory_of(path), "listener");
//   BoundSocket s = listen_unix(path, "listener");     // 0600, non-blocking, close-on-exec; a stale file replaced
//   ... accept4(s.fd, ...) ...
//   unlink_if_bound(path, s);                           // never removes a later server's socket
//
// Threads: reentrant functions. Processes: the sockets are ordinary descriptors (close-on-exec).
// Lifetime: the caller owns every descriptor returned or received.
// Errors: a path that does not fit sockaddr_un, a directory open to others or owned by another user, a path that
//   is not a socket: ipc::InvalidArgument; a live server on the path: ipc::StateError ("a <who> already serves on
//   <path>"); system call failures: ipc::SystemError.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace ipc::detail {

// The address of `path`. InvalidArgument when it is empty, longer than sun_path allows, or holds a NUL byte.
sockaddr_un unix_address(const std::string& path);

// "dir" of "dir/name" ("." for a bare name, "/" for "/name").
std::string directory_of(const std::string& path);

// Makes `dir` (0700) if missing, then checks it is a directory of this user that group and others cannot enter
// (the socket's own mode does not stop others from replacing it in an open directory). `who` names the service in
// the error ("the manager needs a private directory").
void ensure_private_directory(const std::string& dir, const std::string& who);

// A fresh directory only this user can enter (mkdtemp: 0700) named "<prefix>-XXXXXX" under $TMPDIR, or under /tmp
// when $TMPDIR is unset or too long for a socket path inside it.
std::string make_private_directory(const std::string& prefix);

struct BoundSocket {
  int fd = -1;  // listening, non-blocking, close-on-exec
  dev_t dev = 0;
  ino_t ino = 0;  // the socket file bound, to unlink only our own
};

// Binds and listens on `path` (mode 0600). A socket file nobody listens on (left by a server that was killed) is
// replaced; a live one is StateError("a <who> already serves on <path>"); a file that is not a socket,
// InvalidArgument.
BoundSocket listen_unix(const std::string& path, const std::string& who);

// Unlinks `path` if it is still the socket `s` bound (a later server may have replaced it). Never throws.
void unlink_if_bound(const std::string& path, const BoundSocket& s) noexcept;

// Checks that the process at the other end of the connected socket `sock` runs as this user (SO_PEERCRED): a
// socket another user serves on is refused before a byte is sent, as a segment of another user is. Throws
// SystemError(EACCES) naming `who`, `path` and both uids.
void check_peer_is_this_user(int sock, const std::string& path, const std::string& who);

inline constexpr std::size_t kMaxPassedFds = 4;

// Sends `bytes` with `fds` attached (SCM_RIGHTS, at most kMaxPassedFds; the receiver gets its own copies), once,
// EINTR retried. Returns what sendmsg(2) returns (-1 with errno set). `flags` as for sendmsg (MSG_NOSIGNAL added).
ssize_t send_with_fds(int sock, std::span<const std::byte> bytes, std::span<const int> fds, int flags = 0);

// Receives into `buffer` once, EINTR retried, appending the descriptors that came with it (close-on-exec) to `fds`.
// Returns what recvmsg(2) returns (-1 with errno set); `truncated` is set when bytes (of a datagram) or descriptors
// did not fit. Descriptors beyond kMaxPassedFds are closed by the kernel. A peer that closed with bytes of ours
// unread is not an error while it left packets of its own queued: they are received first, then the end (0).
ssize_t recv_with_fds(int sock, std::span<std::byte> buffer, std::vector<int>& fds, bool& truncated, int flags = 0);

}  // namespace ipc::detail

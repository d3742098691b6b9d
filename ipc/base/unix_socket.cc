#include "ipc/base/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ipc/base/error.h"

namespace ipc::detail {

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    throw InvalidArgument("socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) + " bytes: '" +
                          path + "'");
  }
  // A NUL inside would silently cut the path short: "dir/a\0b" would bind or reach "dir/a".
  if (path.find('\0') != std::string::npos) {
    throw InvalidArgument("socket path has a NUL byte at " + std::to_string(path.find('\0')) + ": '" +
                          path.substr(0, path.find('\0')) + "\\0...'");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void ensure_private_directory(const std::string& dir, const std::string& who) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + dir);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) throw_errno("stat " + dir);
  if (!S_ISDIR(st.st_mode)) throw InvalidArgument("socket directory " + dir + " is not a directory");
  if (st.st_uid != ::geteuid()) throw InvalidArgument("socket directory " + dir + " belongs to another user");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    throw InvalidArgument("socket directory " + dir + " is open to group or others (mode " + mode + "); the " + who +
                          " needs a private directory (mode 0700)");
  }
}

void check_peer_is_this_user(int sock, const std::string& path, const std::string& who) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) throw_errno("getsockopt SO_PEERCRED " + path);
  if (cred.uid != ::geteuid()) {
    throw SystemError(EACCES, "the " + who + " at " + path + " runs as uid " + std::to_string(cred.uid) +
                                  ", not as this user (uid " + std::to_string(::geteuid()) + ")");
  }
}

// Bazel and others set long TMPDIRs; a socket path inside must still fit in sun_path (108 bytes).
std::string make_private_directory(const std::string& prefix) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string base = (tmpdir != nullptr && *tmpdir != '\0' && std::strlen(tmpdir) <= 60) ? tmpdir : "/tmp";
  std::string templ = base + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw_errno("mkdtemp " + templ);
  return templ;
}

namespace {

// Removes a socket file left by a server that died, refusing to touch one a live server listens on.
void remove_stale_socket(const std::string& path, const sockaddr_un& addr, const std::string& who) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw_errno("lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) throw InvalidArgument(path + " exists and is not a socket");
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) throw_errno("socket");
  int r = retry_on_eintr([&] { return ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr); });
  int err = errno;
  ::close(probe);
  if (r == 0) throw StateError("a " + who + " already serves on " + path);
  if (err != ECONNREFUSED) throw SystemError(err, "connect " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("unlink stale socket " + path);
}

}  // namespace

BoundSocket listen_unix(const std::string& path, const std::string& who) {
  const sockaddr_un addr = unix_address(path);
  remove_stale_socket(path, addr, who);
  BoundSocket s;
  s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s.fd < 0) throw_errno("socket");
  try {
    if (::bind(s.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind " + path);
    // The directory already keeps others out; 0600 also keeps the socket private if the directory is moved.
    if (::chmod(path.c_str(), 0600) != 0) throw_errno("chmod " + path);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw_errno("stat " + path);
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    if (::listen(s.fd, SOMAXCONN) != 0) throw_errno("listen " + path);
  } catch (...) {
    ::close(s.fd);
    throw;
  }
  return s;
}

void unlink_if_bound(const std::string& path, const BoundSocket& s) noexcept {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && st.st_dev == s.dev && st.st_ino == s.ino) ::unlink(path.c_str());
}

ssize_t send_with_fds(int sock, std::span<const std::byte> bytes, std::span<const int> fds, int flags) {
  if (fds.size() > kMaxPassedFds) throw InvalidArgument("send_with_fds: at most 4 descriptors");
  msghdr msg{};
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return retry_on_eintr([&] { return ::sendmsg(sock, &msg, flags | MSG_NOSIGNAL); });
}

ssize_t recv_with_fds(int sock, std::span<std::byte> buffer, std::vector<int>& fds, bool& truncated, int flags) {
  msghdr msg{};
  iovec iov{buffer.data(), buffer.size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = retry_on_eintr([&] { return ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC); });
  if (n < 0 && errno == ECONNRESET) {
    // The peer closed while something we sent lay unread in its queue. Linux reports that once, ahead of what the
    // peer had sent before it closed, which is still queued (a datagram or seqpacket socket): read again. A fork
    // server that closed a worker's status socket just as the pool sent it a kill request left the worker's last
    // report behind the reset.
    msg.msg_controllen = sizeof control;
    msg.msg_flags = 0;
    n = retry_on_eintr([&] { return ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC); });
  }
  truncated = false;
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  return n;
}

}  // namespace ipc::detail

// ipc/base/unix_socket.h: what a receiver gets from a peer that closed with bytes of ours unread.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ipc/base/unix_socket.h"

namespace {

std::span<const std::byte> bytes_of(const char* s) { return {reinterpret_cast<const std::byte*>(s), std::strlen(s)}; }

}  // namespace

TEST_CASE("a packet the peer sent before it closed with ours unread is received, then the end", "[unix_socket]") {
  // As a fork server does when a pool's kill request crosses the report of a worker that ended on its own: the
  // server reports, then closes its status socket with the request unread. Linux then reports ECONNRESET once,
  // ahead of the report that is still queued (SOCK_SEQPACKET); a stream socket delivers the bytes first.
  const int type = GENERATE(SOCK_SEQPACKET, SOCK_STREAM);
  INFO((type == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : "SOCK_STREAM"));
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, pair) == 0);
  int passed[2];
  REQUIRE(::pipe2(passed, O_CLOEXEC) == 0);
  REQUIRE(ipc::detail::send_with_fds(pair[0], bytes_of("k"), {}) == 1);  // never read by the peer
  const int fds_sent[1] = {passed[0]};
  REQUIRE(ipc::detail::send_with_fds(pair[1], bytes_of("report"), fds_sent) == 6);
  ::close(pair[1]);
  ::close(passed[0]);

  std::vector<std::byte> buffer(64);
  std::vector<int> fds;
  bool truncated = true;
  const ssize_t n = ipc::detail::recv_with_fds(pair[0], buffer, fds, truncated);
  INFO("errno " << errno << " (" << std::strerror(errno) << ")");
  REQUIRE(n == 6);
  CHECK(std::string(reinterpret_cast<const char*>(buffer.data()), 6) == "report");
  CHECK_FALSE(truncated);
  REQUIRE(fds.size() == 1);
  CHECK(::write(passed[1], "x", 1) == 1);  // the descriptor that came with it is the pipe's read end
  char got = 0;
  CHECK(::read(fds[0], &got, 1) == 1);
  CHECK(got == 'x');
  ::close(fds[0]);
  fds.clear();
  CHECK(ipc::detail::recv_with_fds(pair[0], buffer, fds, truncated) == 0);  // then the end, not an error
  CHECK(fds.empty());
  ::close(pair[0]);
  ::close(passed[1]);
}

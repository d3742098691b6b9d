// bench/listener_client.cc: the unrelated client process of the "listener" benchmark group (started with
// ipc::Process::exec by bench/listener_bench.cc), for a Listener and for its peer, a plain Unix stream socket.
//
//   listener_client conn-send ADDRESS KEY N SIZE   connect(), send N messages of SIZE bytes, wait for end of stream
//   listener_client conn-echo ADDRESS KEY          connect(), echo every message until end of stream
//   listener_client sock-send PATH N SIZE          connect(2), write N messages of SIZE bytes (write(2) each)
//   listener_client sock-echo PATH SIZE            connect(2), echo messages of SIZE bytes until end of stream
// Exits 0 on success, 1 on failure (the reason on stderr).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "bench/fd_io.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

int unix_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("listener_client: connect");
    std::exit(1);
  }
  return fd;
}

int run(const std::vector<std::string>& a) {
  if (a.size() == 5 && a[0] == "conn-send") {
    ipc::Connection c = ipc::connect(a[1], bytes_of(a[2]));
    std::vector<std::byte> m(std::stoul(a[4]), std::byte{7});
    for (uint64_t i = 0, n = std::stoull(a[3]); i < n; ++i) {
      if (c.send_bytes(m) != ipc::Outcome::kOk) return 1;
    }
    std::vector<std::byte> done;
    return c.recv_bytes(done) == ipc::Outcome::kClosed ? 0 : 1;  // the receiver closes once it has them all
  }
  if (a.size() == 3 && a[0] == "conn-echo") {
    ipc::Connection c = ipc::connect(a[1], bytes_of(a[2]));
    std::vector<std::byte> m;
    while (c.recv_bytes(m) == ipc::Outcome::kOk) {
      if (c.send_bytes(m) != ipc::Outcome::kOk) return 1;
    }
    return 0;
  }
  if (a.size() == 4 && a[0] == "sock-send") {
    const int fd = unix_connect(a[1]);
    std::vector<std::byte> m(std::stoul(a[3]), std::byte{7});
    for (uint64_t i = 0, n = std::stoull(a[2]); i < n; ++i) {
      if (!bench::write_exact(fd, m.data(), m.size())) return 1;
    }
    ::close(fd);
    return 0;
  }
  if (a.size() == 3 && a[0] == "sock-echo") {
    const int fd = unix_connect(a[1]);
    std::vector<std::byte> m(std::stoul(a[2]));
    while (bench::read_exact(fd, m.data(), m.size())) {
      if (!bench::write_exact(fd, m.data(), m.size())) return 1;
    }
    return 0;
  }
  std::fprintf(stderr, "usage: listener_client conn-send|conn-echo|sock-send|sock-echo ...\n");
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "listener_client: %s\n", e.what());
    return 1;
  }
}

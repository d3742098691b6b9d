// Listener and connect() between unrelated processes: the other side is listener_peer, a separate program started
// with ipc::Process::exec (not a fork of this test), killed on either side; wrong keys, silent clients, garbage
// and floods of idle connections against the listener's handshakes.
#include "ipc/pipe/listener.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "ipc/base/poll.h"
#include "ipc/base/process.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::Connection;
using ipc::Listener;
using ipc::Outcome;
using ipc::test::patience;

namespace {

const std::string kKey = "a test key of 32 bytes, no more.";
const std::string kPeer = "ipc/pipe/listener_peer";

std::span<const std::uint8_t> key_bytes(const std::string& k = kKey) {
  return {reinterpret_cast<const std::uint8_t*>(k.data()), k.size()};
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string text_of(const std::vector<std::byte>& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::set<std::string> dev_shm() {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
  }
  return names;
}

// The echo server of listener_peer on `address`, running in its own program; returns once it listens.
ipc::Process start_server(const std::string& address, int handshake_ms = 5000) {
  int ready[2];
  REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
  ipc::ProcessOptions o;
  o.name = "listener_peer serve";
  o.daemon = true;
  o.pass_fds = {ready[1]};
  ipc::Process p = ipc::Process::exec(
      kPeer, {kPeer, "serve", address, kKey, std::to_string(ready[1]), std::to_string(handshake_ms)}, o);
  ::close(ready[1]);
  const std::vector<int> got = ipc::wait(std::span<const int>(ready, 1), patience(60s));
  char byte = 0;
  const bool up = !got.empty() && ::read(ready[0], &byte, 1) == 1;
  ::close(ready[0]);
  if (!up) FAIL("the listener_peer server (pid " << p.pid() << ") did not start listening");
  return p;
}

// A raw client socket connected to `path`, which has read the listener's 40-byte hello.
int raw_client(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Everything the listener sends on `fd` until it closes it, or nullopt when it has not closed it in `timeout`.
std::optional<std::string> read_until_closed(int fd, std::chrono::milliseconds timeout) {
  std::string got;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (ipc::wait(std::span<const int>(&fd, 1), 100ms).empty()) continue;
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
  return std::nullopt;
}

std::string echo(Connection& c, const std::string& text) {
  REQUIRE(c.send_bytes(bytes_of(text), patience(30s)) == Outcome::kOk);
  std::vector<std::byte> back;
  REQUIRE(c.recv_bytes(back, patience(30s)) == Outcome::kOk);
  return text_of(back);
}

}  // namespace

TEST_CASE("a client and an exec'd listener talk through shared memory, and leave nothing behind", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  const std::string path = ipc::listener_socket_path(name);
  const auto shm_before = dev_shm();
  ipc::Process server = start_server(name);

  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(path.substr(0, path.rfind('/')).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  Connection a = ipc::connect(name, key_bytes());
  std::optional<Connection> b = ipc::connect(name, key_bytes(), patience(30s));
  REQUIRE(b);
  CHECK(echo(a, "hello") == "hello");
  CHECK(echo(*b, "from b") == "from b");
  std::string big(3 << 20, 'x');  // three times the ring: sent and echoed in parts
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('a' + i % 26);
  CHECK(echo(a, big) == big);
  CHECK(dev_shm() == shm_before);

  REQUIRE(a.send_bytes(bytes_of("quit")) == Outcome::kOk);
  CHECK(server.join(patience(60s)) == 0);
  std::vector<std::byte> rest;
  CHECK(b->recv_bytes(rest, patience(30s)) == Outcome::kClosed);  // the listener's process is gone
  CHECK_FALSE(exists(path));
  CHECK(dev_shm() == shm_before);
}

TEST_CASE("a wrong key is refused with AuthenticationFailed, the proof is not revealed, and others are served",
          "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  ipc::Process server = start_server(name);
  const std::string wrong = "not the key, but just as long!!!";
  CHECK_THROWS_AS(ipc::connect(name, key_bytes(wrong)), ipc::AuthenticationFailed);
  // From a separate program as well: it exits 2 on AuthenticationFailed.
  ipc::Process other = ipc::Process::exec(kPeer, {kPeer, "connect", name, wrong});
  CHECK(other.join(patience(60s)) == 2);

  // By hand: a well-formed answer with a wrong proof gets one byte, 'R', and the socket closed: no server proof.
  int fd = raw_client(ipc::listener_socket_path(name));
  std::string answer = "numa_mpC" + std::string(64, '\x07');
  char hello[40];
  REQUIRE(::recv(fd, hello, sizeof hello, MSG_WAITALL) == 40);
  REQUIRE(::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) == 72);
  CHECK(read_until_closed(fd, patience(30s)) == std::string("R"));
  ::close(fd);

  Connection good = ipc::connect(name, key_bytes());
  CHECK(echo(good, "still serving") == "still serving");
}

TEST_CASE("a garbage handshake is refused at once and a silent client is dropped at the deadline", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  const std::string path = ipc::listener_socket_path(name);
  // A long handshake deadline: garbage must be refused without waiting for it.
  ipc::Process server = start_server(name, 600'000);
  int garbage = raw_client(path);
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(garbage, junk.data(), junk.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(junk.size()));
  std::optional<std::string> seen = read_until_closed(garbage, patience(30s));
  REQUIRE(seen);
  CHECK(seen->size() == 41);  // the hello, then the refusal
  CHECK(seen->back() == 'R');
  ::close(garbage);
  server.kill();
  (void)server.join();

  ipc::Process quick = start_server(name, 300);  // replaces the socket file the killed one left
  int silent = raw_client(path);
  std::optional<std::string> heard = read_until_closed(silent, patience(30s));
  REQUIRE(heard);  // closed by the listener after its 300 ms deadline
  CHECK(heard->size() == 40);  // only the hello
  ::close(silent);
  Connection good = ipc::connect(name, key_bytes());
  CHECK(echo(good, "ok") == "ok");
}

TEST_CASE("a flood of idle connections does not keep a well-behaved client from being served", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  const std::string path = ipc::listener_socket_path(name);
  ipc::Process server = start_server(name, 600'000);  // the idle ones would never time out during the test
  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) idle.push_back(raw_client(path));  // far more than max_pending (64)
  std::optional<Connection> good = ipc::connect(name, key_bytes(), patience(30s));
  REQUIRE(good);
  CHECK(echo(*good, "served") == "served");
  for (int fd : idle) ::close(fd);
}

TEST_CASE("a client killed in the middle of a send: the listener's end sees end of stream", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  ipc::ListenerOptions options;
  options.pipe.ring_bytes = 64 * 1024;  // a 256 KiB message goes in parts, so the kill lands inside one
  Listener listener(name, key_bytes(), options);
  ipc::ProcessOptions o;
  o.daemon = true;
  ipc::Process sender = ipc::Process::exec(kPeer, {kPeer, "send", name, kKey}, o);
  std::optional<Connection> c = listener.accept(patience(60s));
  REQUIRE(c);
  std::vector<std::byte> m;
  REQUIRE(c->recv_bytes(m, patience(60s)) == Outcome::kOk);  // a whole message: the sender is in its loop
  CHECK(m.size() == 256 * 1024);
  // The ring is full again and the sender sleeps inside send(), part of its next message in the ring.
  INFO("sender pid " << sender.pid());
  REQUIRE(ipc::test::wait_until([&] { return ipc::test::sleeping(sender.pid()); }, patience(60s)));
  sender.kill();
  CHECK(sender.join(patience(60s)) == -SIGKILL);
  Outcome r;
  uint64_t whole = 1;
  while ((r = c->recv_bytes(m, patience(30s))) == Outcome::kOk) {
    REQUIRE(m.size() == 256 * 1024);
    for (size_t i = 0; i < m.size(); i += 997) REQUIRE(m[i] == static_cast<std::byte>((whole + i) % 251));
    ++whole;
  }
  CHECK(r == Outcome::kClosed);
}

TEST_CASE("a listener killed while clients are connected: they see end of stream, new clients NotFound",
          "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  const std::string path = ipc::listener_socket_path(name);
  ipc::Process server = start_server(name);
  Connection a = ipc::connect(name, key_bytes());
  Connection b = ipc::connect(name, key_bytes());
  CHECK(echo(a, "1") == "1");
  CHECK(echo(b, "2") == "2");
  server.kill();
  CHECK(server.join(patience(60s)) == -SIGKILL);
  std::vector<std::byte> m;
  CHECK(a.recv_bytes(m, patience(30s)) == Outcome::kClosed);
  CHECK(b.recv_bytes(m, patience(30s)) == Outcome::kClosed);

  REQUIRE(exists(path));  // left by the killed listener
  CHECK_THROWS_AS(ipc::connect(name, key_bytes()), ipc::NotFound);
  CHECK_THROWS_WITH(ipc::connect(name, key_bytes()), Catch::Contains("nobody listens"));
  ipc::Process other = ipc::Process::exec(kPeer, {kPeer, "connect", name, kKey});
  CHECK(other.join(patience(60s)) == 3);

  {
    Listener again(name, key_bytes());  // replaces the stale socket
    std::optional<Connection> late;
    ipc::Process client = ipc::Process::exec(kPeer, {kPeer, "connect", name, kKey});
    late = again.accept(patience(60s));
    CHECK(late);
    CHECK(client.join(patience(60s)) == 0);
  }
  CHECK_FALSE(exists(path));
  CHECK_THROWS_WITH(ipc::connect(name, key_bytes()), Catch::Contains("no socket file"));
}

TEST_CASE("accept and connect time out, and the listener's descriptor works with wait()", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  Listener listener(name, key_bytes());
  CHECK_FALSE(listener.accept(20ms));
  const int sentinel = listener.fileno();
  std::vector<Connection*> none;
  CHECK(ipc::wait(none, std::span<const int>(&sentinel, 1), 20ms).sentinels.empty());

  // A client that connects and never answers: connect() on the other side of a listener that never accepts.
  int fd = raw_client(listener.socket_path());
  ipc::WaitReady ready = ipc::wait(none, std::span<const int>(&sentinel, 1), patience(30s));
  CHECK(ready.sentinels.size() == 1);
  CHECK_FALSE(listener.accept(0s));  // the hello went out; the handshake waits for the client
  ::close(fd);

  Listener deaf(ipc::test::unique_name("lst"), key_bytes());  // never accepts
  CHECK_FALSE(ipc::connect(deaf.socket_path(), key_bytes(), 50ms));
}

TEST_CASE("bad addresses, short keys, a live listener's address and open directories are refused", "[listener]") {
  const std::string name = ipc::test::unique_name("lst");
  CHECK_THROWS_AS(Listener(name, key_bytes("short")), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::connect(name, key_bytes("short")), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::listener_socket_path(".hidden"), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::listener_socket_path("a b"), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::listener_socket_path(""), ipc::InvalidArgument);
  CHECK_THROWS_AS(Listener(name, key_bytes(), {.handshake_timeout = 0ms}), ipc::InvalidArgument);

  Listener first(name, key_bytes());
  CHECK_THROWS_WITH(Listener(name, key_bytes()), Catch::Contains("already serves"));

  char dir[] = "/tmp/numa_mp-open-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  REQUIRE(::chmod(dir, 0755) == 0);
  CHECK_THROWS_WITH(Listener(std::string(dir) + "/s.sock", key_bytes()), Catch::Contains("open to group or others"));
  REQUIRE(::chmod(dir, 0700) == 0);
  {
    Listener by_path(std::string(dir) + "/s.sock", key_bytes());
    CHECK(by_path.socket_path() == std::string(dir) + "/s.sock");
    ipc::Process client = ipc::Process::exec(kPeer, {kPeer, "connect", by_path.socket_path(), kKey});
    std::optional<Connection> got = by_path.accept(patience(60s));
    CHECK(got);
    CHECK(client.join(patience(60s)) == 0);
  }
  CHECK(::rmdir(dir) == 0);  // the socket is gone, so the directory is empty
  CHECK_THROWS_AS(ipc::connect(std::string(dir) + "/s.sock", key_bytes()), ipc::NotFound);
}

TEST_CASE("a listener another user runs is refused before a byte is sent", "[listener][security]") {
  if (geteuid() != 0) {
    WARN("skipped: only root can start a child as another user (uid 65534)");
    return;
  }
  ipc::test::OtherUserServer other("s.sock", [](const std::string& path, const std::function<void()>& ready) {
    Listener listener(path, key_bytes());
    ready();
    for (;;) ::pause();  // never accepts
  });
  struct stat st;
  REQUIRE(::stat(other.socket_path().c_str(), &st) == 0);
  CHECK(st.st_uid == ipc::test::kOtherUser);
  CHECK((st.st_mode & 0777) == 0600);
  try {
    // Without the check, connect() would wait out the handshake the listener never answers (and time out here).
    (void)ipc::connect(other.socket_path(), key_bytes(), patience(10s));
    FAIL("connect() to a listener that uid 65534 runs went on to its handshake");
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == EACCES);
    CHECK_THAT(e.what(), Catch::Contains("runs as uid 65534"));
  }
}

TEST_CASE("listener names cannot leave their directory, and no address hides a NUL", "[listener][security]") {
  for (const std::string& bad : std::vector<std::string>{"..", ".", "..x", std::string(65, 'a'), std::string("a\0b", 3), "a b"}) {
    INFO(bad);
    CHECK_THROWS_AS(ipc::listener_socket_path(bad), ipc::InvalidArgument);
    CHECK_THROWS_AS(Listener(bad, key_bytes()), ipc::InvalidArgument);
  }
  // A NUL inside a path would cut it short at the NUL: refused, not served elsewhere.
  const std::string cut = "/tmp/" + ipc::test::unique_name("lst");
  CHECK_THROWS_AS(Listener(cut + std::string("\0/x.sock", 8), key_bytes()), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::connect(cut + std::string("\0/x.sock", 8), key_bytes()), ipc::InvalidArgument);
  CHECK(::access(cut.c_str(), F_OK) != 0);
  CHECK_THROWS_AS(Listener("/tmp/" + std::string(120, 'x') + ".sock", key_bytes()), ipc::InvalidArgument);
}

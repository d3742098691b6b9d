// Authentication, socket permissions, and bad input written straight to the socket.
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "manager/client.h"
#include "manager/detail/address.h"
#include "manager/detail/raw_wire.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using ipc::manager::Client;
using ipc::manager::Value;
using ipc::manager::testing::authenticated_raw_connection;
using ipc::manager::testing::bootstrap_message;
using ipc::manager::testing::call_authenticator;
using ipc::manager::testing::closed_by_server;
using ipc::manager::testing::raw_connect;
using ipc::manager::testing::send_all;

namespace {

using ipc::manager::testing::kTcpLoopback;
using ipc::manager::testing::kUnixSocket;
using ipc::manager::testing::server_on;

// KJ's spelling of a Manager address: "unix:PATH", or "HOST:PORT" for TCP.
std::string kj_address(const std::string& address) {
  const auto a = ipc::manager::detail::parse_address(address);
  return a.tcp ? a.text.substr(ipc::manager::detail::kTcpPrefix.size()) : "unix:" + a.path;
}

// Sends `bytes` on a fresh connection (optionally closing our writing side) and reports whether the server closed
// the connection within `timeout` (reading whatever it answered first).
bool server_closes_after(const std::string& path, const std::vector<std::uint8_t>& bytes, bool shutdown_write,
                         std::chrono::milliseconds timeout = 20s) {
  int fd = raw_connect(path);
  send_all(fd, bytes);
  if (shutdown_write) ::shutdown(fd, SHUT_WR);
  bool closed = closed_by_server(fd, timeout);
  ::close(fd);
  return closed;
}

// The start of a one-segment frame that announces `body_bytes` of body, followed by `sent_bytes` of zeros.
std::vector<std::uint8_t> frame_start(std::uint64_t body_bytes, std::size_t sent_bytes) {
  std::vector<std::uint8_t> bytes(8 + sent_bytes, 0);
  std::uint32_t header[2] = {0, static_cast<std::uint32_t>(body_bytes / 8)};
  std::memcpy(bytes.data(), header, 8);
  return bytes;
}

// Resident memory of a process, from /proc/<pid>/status.
std::size_t rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  FAIL("no VmRSS in /proc/" << pid << "/status");
  return 0;
}

ipc::manager::ServerProcess server_with_64_kib_limit(const std::string& address = kUnixSocket) {
  ipc::manager::ServerProcessOptions options;
  options.max_message_bytes = 64 * 1024;
  return server_on(address, options);
}

// "A few MiB" of growth: connections and their buffers, not the sizes that peers announced (hundreds of MiB here).
// ThreadSanitizer keeps shadow memory and metadata several times the size of what the server touches, so the same
// connections weigh about four times as much there.
#if defined(__SANITIZE_THREAD__)
constexpr std::size_t kFewMiB = std::size_t{32} << 20;
#else
constexpr std::size_t kFewMiB = std::size_t{8} << 20;
#endif

void check_rss_grew_little(pid_t pid, std::size_t before) {
  const std::size_t after = rss_bytes(pid);
  INFO("server RSS before " << before / 1024 << " KiB, after " << after / 1024 << " KiB");
  CHECK(after < before + kFewMiB);
}

void check_still_serving(Client& client, int round) {
  auto d = client.dict("survivor");
  d.set("round", round);
  REQUIRE(d.get("round") == Value(round));
}

}  // namespace

TEST_CASE("the socket is 0600 inside a 0700 directory", "[manager][security]") {
  auto server = ipc::manager::start_server();
  struct stat st;
  REQUIRE(::stat(server.address().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  std::string dir = server.address().substr(0, server.address().rfind('/'));
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
}

TEST_CASE("a server refuses a socket directory that others may enter", "[manager][security]") {
  char templ[] = "/tmp/numa_mp-test-XXXXXX";
  REQUIRE(::mkdtemp(templ) != nullptr);
  REQUIRE(::chmod(templ, 0755) == 0);
  ipc::manager::ServerOptions options;
  options.address = std::string(templ) + "/m.sock";
  options.key = ipc::manager::random_bytes(32);
  CHECK_THROWS_WITH(ipc::manager::Server(options), Catch::Contains("open to group or others"));
  ::rmdir(templ);
}

TEST_CASE("a short key is refused", "[manager][security]") {
  ipc::manager::ServerOptions options;
  options.key = ipc::manager::random_bytes(8);
  CHECK_THROWS_AS(ipc::manager::Server(options), ipc::InvalidArgument);
}

TEST_CASE("a wrong key is rejected and the correct key still works", "[manager][security][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  auto wrong = server.key();
  wrong[0] ^= 1;
  CHECK_THROWS_AS(Client(server.address(), wrong), ipc::manager::AuthenticationFailed);
  CHECK_THROWS_WITH(Client(server.address(), wrong), Catch::Contains(server.address()) && Catch::Contains("wrong key"));
  Client good(server.address(), server.key());
  check_still_serving(good, 1);
}

TEST_CASE("nothing but authentication is reachable before the proof", "[manager][security][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);
  INFO("server on " << server.address());
  // Raw Cap'n Proto on its own thread (this thread's event loop belongs to Client objects in other tests).
  std::string failures;
  std::thread t([&] {
    auto io = kj::setupAsyncIo();
    auto addr = io.provider->getNetwork().parseAddress(kj_address(server.address())).wait(io.waitScope);
    auto stream = addr->connect().wait(io.waitScope);
    capnp::TwoPartyClient rpc(*stream);
    auto boot = rpc.bootstrap();

    // The bootstrap object is not a Manager: calling Manager methods on it fails.
    try {
      boot.castAs<ipc::manager::wire::Manager>().listRequest().send().wait(io.waitScope);
      failures += "Manager.list answered on the bootstrap capability; ";
    } catch (const kj::Exception& e) {
      if (e.getType() != kj::Exception::Type::UNIMPLEMENTED) failures += "unexpected error type; ";
    }
    auto auth = boot.castAs<ipc::manager::wire::Authenticator>();
    // respond() without a challenge is refused.
    try {
      auth.respondRequest().send().wait(io.waitScope);
      failures += "respond without challenge succeeded; ";
    } catch (const kj::Exception&) {
    }
    // A wrong proof fails, and the connection allows no second attempt, even with the right proof.
    auto nonce = auth.challengeRequest().send().wait(io.waitScope);
    std::vector<std::uint8_t> server_nonce(nonce.getServerNonce().begin(), nonce.getServerNonce().end());
    std::vector<std::uint8_t> client_nonce(32, 7);
    auto bad = auth.respondRequest();
    std::vector<std::uint8_t> zeros(32, 0);
    bad.setProof(capnp::Data::Reader(zeros.data(), zeros.size()));
    bad.setClientNonce(capnp::Data::Reader(client_nonce.data(), client_nonce.size()));
    try {
      auto r = bad.send().wait(io.waitScope);
      failures += "a wrong proof was accepted; ";
    } catch (const kj::Exception& e) {
      if (std::string(e.getDescription().cStr()).find("AuthenticationFailed") == std::string::npos) {
        failures += "wrong proof error is not AuthenticationFailed; ";
      }
    }
    try {
      auth.challengeRequest().send().wait(io.waitScope);
      failures += "a second challenge was handed out after a failure; ";
    } catch (const kj::Exception&) {
    }
  });
  t.join();
  INFO(failures);
  CHECK(failures.empty());
}

TEST_CASE("random, truncated and malformed bytes fail only their own connection", "[manager][security]") {
  auto server = ipc::manager::start_server();
  Client good(server.address(), server.key());
  std::mt19937_64 rng(12345);
  auto boot = bootstrap_message();

  for (int round = 0; round < 60; ++round) {
    std::vector<std::uint8_t> bytes;
    switch (round % 4) {
      case 0:  // random bytes of random length
        bytes.resize(1 + rng() % 2048);
        for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
        break;
      case 1:  // a valid message cut short
        bytes.assign(boot.begin(), boot.begin() + static_cast<std::ptrdiff_t>(1 + rng() % (boot.size() - 1)));
        break;
      case 2: {  // valid framing, random content
        std::uint32_t words = 1 + rng() % 64;
        bytes.resize(8 + words * 8);
        std::uint32_t header[2] = {0, words};
        std::memcpy(bytes.data(), header, 8);
        for (std::size_t i = 8; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(rng());
        break;
      }
      case 3:  // a valid message with random bits flipped
        bytes = boot;
        for (int i = 0; i < 4; ++i) bytes[8 + rng() % (bytes.size() - 8)] ^= static_cast<std::uint8_t>(1 + rng() % 255);
        break;
    }
    // Our end closes its writing side: the server must end the connection rather than wait forever.
    CHECK(server_closes_after(server.address(), bytes, /*shutdown_write=*/true));
    check_still_serving(good, round);
  }
  // A malformed message the server can frame but not understand makes it close even with our side still open.
  std::vector<std::uint8_t> garbage(8 + 16 * 8, 0xff);
  std::uint32_t header[2] = {0, 16};
  std::memcpy(garbage.data(), header, 8);
  CHECK(server_closes_after(server.address(), garbage, /*shutdown_write=*/false));
  check_still_serving(good, 1000);
  Client late(server.address(), server.key());
  check_still_serving(late, 1001);
}

TEST_CASE("an oversized request is refused with a clear error and the connection survives", "[manager][security]") {
  auto server = server_with_64_kib_limit();
  Client client(server.address(), server.key());
  CHECK(client.max_message_bytes() == 64 * 1024);
  auto d = client.dict("d");
  std::string big(100 * 1024, 'x');
  CHECK_THROWS_WITH(d.set("big", big), Catch::Contains("exceeds the server's limit of 65536 bytes"));
  CHECK_THROWS_AS(d.set("big", big), ipc::InvalidArgument);
  check_still_serving(client, 1);
}

TEST_CASE("an oversized raw message drops only that connection", "[manager][security][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_with_64_kib_limit(transport);
  INFO("server on " << server.address());
  Client good(server.address(), server.key());
  // A frame that announces one segment of 1 Mi words (8 MiB), followed by only a little of it: the server must
  // refuse on the announced size, not wait for (or allocate) all of it.
  std::vector<std::uint8_t> bytes(8 + 4096, 0);
  std::uint32_t header[2] = {0, 1u << 20};
  std::memcpy(bytes.data(), header, 8);
  CHECK(server_closes_after(server.address(), bytes, /*shutdown_write=*/false));
  // Many segments announced: refused too.
  std::uint32_t many[2] = {100000, 1};
  std::memcpy(bytes.data(), many, 8);
  CHECK(server_closes_after(server.address(), bytes, /*shutdown_write=*/false));
  check_still_serving(good, 1);
}

TEST_CASE("connections that announce huge messages before authenticating cost the server no memory and stall no one",
          "[manager][security][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  auto server = server_on(transport);  // the default limit: 64 MiB per message
  INFO("server on " << server.address());
  Client good(server.address(), server.key());
  check_still_serving(good, 0);
  const std::size_t before = rss_bytes(server.pid());

  std::vector<int> idle;  // connected, and never a byte
  for (int i = 0; i < 100; ++i) idle.push_back(raw_connect(server.address()));
  std::vector<int> huge;  // announce a message of almost 64 MiB and send 1 KiB of it
  for (int i = 0; i < 6; ++i) {
    huge.push_back(raw_connect(server.address()));
    send_all(huge.back(), frame_start((std::size_t{64} << 20) - 1024, 1024));
  }
  check_still_serving(good, 1);
  Client late(server.address(), server.key());  // a new client still gets in
  check_still_serving(late, 2);
  // Refused on the announced size: more than authentication needs.
  for (int fd : huge) CHECK(closed_by_server(fd));
  check_rss_grew_little(server.pid(), before);
  for (int fd : huge) ::close(fd);
  for (int fd : idle) ::close(fd);
  check_still_serving(good, 3);
}

TEST_CASE("a connection that does not authenticate in time is closed, and authenticated ones are not",
          "[manager][security][tcp]") {
  const std::string transport = GENERATE(kUnixSocket, kTcpLoopback);
  ipc::manager::ServerProcessOptions options;
  options.authentication_timeout = 2s;
  auto server = server_on(transport, options);
  INFO("server on " << server.address());
  Client good(server.address(), server.key());
  int idle = raw_connect(server.address());  // says nothing
  int started = raw_connect(server.address());  // asks for a challenge, never responds
  send_all(started, bootstrap_message());
  call_authenticator(started, 1, 0, [](capnp::AnyPointer::Builder p) {
    p.initAs<ipc::manager::wire::Authenticator::ChallengeParams>();
  });
  CHECK(closed_by_server(idle, 60s));
  CHECK(closed_by_server(started, 60s));
  ::close(idle);
  ::close(started);
  // `good` connected before both, so its deadline has passed too: it is still served.
  check_still_serving(good, 1);
}

TEST_CASE("after authentication a message costs the server memory only as its bytes arrive", "[manager][security]") {
  auto server = ipc::manager::start_server();  // the default limit: 64 MiB per message
  Client good(server.address(), server.key());
  check_still_serving(good, 0);
  const std::size_t before = rss_bytes(server.pid());
  std::vector<int> partial;  // authenticated, then announce 60 MiB and send 1 KiB of it
  for (int i = 0; i < 6; ++i) {
    partial.push_back(authenticated_raw_connection(server.address(), server.key()));
    send_all(partial.back(), frame_start(std::size_t{60} << 20, 1024));
  }
  // Those bytes were sent before these calls, so the server has read them by the time it answers.
  check_still_serving(good, 1);
  check_still_serving(good, 2);
  check_rss_grew_little(server.pid(), before);
  for (int fd : partial) ::close(fd);
  check_still_serving(good, 3);
}

TEST_CASE("an oversized message after authentication fails that connection with a clear error", "[manager][security]") {
  auto server = server_with_64_kib_limit();
  Client good(server.address(), server.key());

  // Raw: the server answers with an Abort that names the limit, then closes.
  int fd = authenticated_raw_connection(server.address(), server.key());
  send_all(fd, frame_start(1 << 20, 1024));
  pollfd p{fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 30'000) == 1);
  capnp::StreamFdMessageReader reader(fd);
  auto message = reader.getRoot<capnp::rpc::Message>();
  REQUIRE(message.isAbort());
  std::string reason = message.getAbort().getReason();
  CHECK_THAT(reason, Catch::Contains("1048576 bytes") && Catch::Contains("limit of 65536 bytes"));
  CHECK(closed_by_server(fd));
  ::close(fd);

  // Through a Client whose own size check is bypassed (the raw capability): its call fails with the same reason.
  Client victim(server.address(), server.key());
  auto request = victim.dict("d").capability().setRequest();
  request.setKey("big");
  std::string big(100 * 1024, 'x');
  request.initValue().setText(big);
  CHECK_THROWS_WITH(victim.wait(request.send()), Catch::Contains("limit of 65536 bytes"));
  check_still_serving(good, 1);
}

TEST_CASE("a server another user runs is refused before a byte is sent", "[manager][security]") {
  if (geteuid() != 0) {
    WARN("skipped: only root can start a child as another user (uid 65534)");
    return;
  }
  const auto key = ipc::manager::random_bytes(32);
  ipc::test::OtherUserServer other("m.sock", [&](const std::string& path, const std::function<void()>& ready) {
    ipc::manager::ServerOptions options;
    options.address = path;
    options.key = key;
    ipc::manager::Server server(options);
    ready();
    server.run();
  });
  try {
    Client client(other.socket_path(), key);
    FAIL("connected to a manager that uid 65534 runs");
  } catch (const ipc::SystemError& e) {
    CHECK(e.code() == EACCES);
    CHECK_THAT(e.what(), Catch::Contains("runs as uid 65534"));
  }
}

TEST_CASE("a manager socket path that is too long or hides a NUL is refused", "[manager][security]") {
  const auto key = ipc::manager::random_bytes(32);
  const std::string cut = "/tmp/" + ipc::test::unique_name("mgr");
  const std::vector<std::string> bad_paths{cut + std::string("\0/m.sock", 8),
                                           "/tmp/" + std::string(120, 'x') + ".sock"};
  for (const std::string& bad : bad_paths) {
    ipc::manager::ServerOptions options;
    options.address = bad;
    options.key = key;
    CHECK_THROWS_AS(ipc::manager::Server(options), ipc::InvalidArgument);
    CHECK_THROWS_AS(Client(bad, key), ipc::InvalidArgument);
  }
  CHECK(::access(cut.c_str(), F_OK) != 0);
}

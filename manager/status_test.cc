// Client::status() (the Manager's objects and open connections) and key files (load_key, write_key_file).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/key_file.h"
#include "manager/server.h"

using namespace std::chrono_literals;
using ipc::manager::Client;
using ipc::manager::ConnectedClient;
using ipc::manager::Kind;
using ipc::manager::ObjectRef;
using ipc::manager::testing::run_child;
using ipc::manager::testing::Signal;

namespace {

const ConnectedClient* find_pid(const std::vector<ConnectedClient>& clients, int pid) {
  auto it = std::find_if(clients.begin(), clients.end(), [&](const ConnectedClient& c) { return c.pid == pid; });
  return it == clients.end() ? nullptr : &*it;
}

// Polls status() until `done` holds for its clients, up to a generous deadline.
template <typename F>
bool clients_reach(Client& client, F done) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done(client.status().clients)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// A private directory for key files, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string templ = (std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") + std::string("/keyXXXXXX");
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path, std::ios::trunc) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

}  // namespace

TEST_CASE("status lists the objects and every connection with its pid, authenticated or not", "[manager][status]") {
  auto server = ipc::manager::start_server();
  Client client(server.address(), server.key());
  (void)client.dict("config");
  (void)client.queue("jobs");
  auto status = client.status();
  CHECK(status.objects == std::vector<ObjectRef>{{"config", Kind::kDict}, {"jobs", Kind::kQueue}});
  REQUIRE(status.clients.size() == 1);
  CHECK(status.clients[0].pid == ::getpid());
  CHECK(status.clients[0].uid == ::geteuid());
  CHECK(status.clients[0].authenticated);

  // Another process connected and authenticated; a third connected without authenticating.
  Signal connected, leave;
  auto other = run_child([&] {
    Client c(server.address(), server.key());
    (void)c.objects();
    connected.notify();
    return leave.wait_for(60s) ? 0 : 1;
  });
  REQUIRE(connected.wait_for(60s));
  int raw = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(raw >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", server.address().c_str());
  REQUIRE(::connect(raw, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);

  const int other_pid = other.pid();
  REQUIRE(clients_reach(client, [&](const std::vector<ConnectedClient>& cs) { return cs.size() == 3; }));
  status = client.status();
  const ConnectedClient* mine = find_pid(status.clients, ::getpid());
  const ConnectedClient* theirs = find_pid(status.clients, other_pid);
  REQUIRE(theirs != nullptr);
  CHECK(theirs->authenticated);
  // Both this process's connections carry its pid; exactly one of them is authenticated.
  REQUIRE(mine != nullptr);
  CHECK(std::count_if(status.clients.begin(), status.clients.end(),
                      [](const ConnectedClient& c) { return !c.authenticated; }) == 1);

  // Connections that end leave the table.
  ::close(raw);
  leave.notify();
  CHECK(other.join(60s) == 0);
  CHECK(clients_reach(client, [&](const std::vector<ConnectedClient>& cs) {
    return cs.size() == 1 && cs[0].pid == ::getpid() && cs[0].authenticated;
  }));
}

TEST_CASE("write_key_file writes a private key that load_key reads and a server accepts", "[manager][key]") {
  TempDir dir;
  const std::string path = dir.path + "/manager.key";
  const auto key = ipc::manager::write_key_file(path);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(key.size() == 64);
  CHECK(ipc::manager::load_key(path) == key);
  CHECK(std::count(key.begin(), key.end(), '\n') == 0);

  // Refuses to overwrite unless asked, and a forced key is a new one.
  CHECK_THROWS_AS(ipc::manager::write_key_file(path), ipc::InvalidArgument);
  CHECK(ipc::manager::load_key(path) == key);
  const auto fresh = ipc::manager::write_key_file(path, true);
  CHECK(fresh != key);
  CHECK(ipc::manager::load_key(path) == fresh);

  ipc::manager::ServerProcessOptions options;
  options.key = ipc::manager::load_key(path);
  auto server = ipc::manager::start_server(options);
  Client client(server.address(), ipc::manager::load_key(path));
  CHECK(client.objects().empty());
}

TEST_CASE("load_key drops trailing newlines and refuses open, empty, short or missing files", "[manager][key]") {
  TempDir dir;
  const std::string key = "0123456789abcdef0123";
  write_file(dir.path + "/lf", key + "\n", 0600);
  write_file(dir.path + "/crlf", key + "\r\n", 0400);
  CHECK(ipc::manager::load_key(dir.path + "/lf") == std::vector<std::uint8_t>(key.begin(), key.end()));
  CHECK(ipc::manager::load_key(dir.path + "/crlf") == std::vector<std::uint8_t>(key.begin(), key.end()));

  write_file(dir.path + "/open", key, 0640);
  CHECK_THROWS_WITH(ipc::manager::load_key(dir.path + "/open"), Catch::Contains("chmod 600"));
  write_file(dir.path + "/empty", "\n", 0600);
  CHECK_THROWS_WITH(ipc::manager::load_key(dir.path + "/empty"), Catch::Contains("empty"));
  write_file(dir.path + "/short", "abc\n", 0600);
  CHECK_THROWS_WITH(ipc::manager::load_key(dir.path + "/short"), Catch::Contains("at least 16"));
  CHECK_THROWS_AS(ipc::manager::load_key(dir.path + "/missing"), ipc::NotFound);
}

// The server and the client poll briefly while calls flow (to skip a sleep and a wake-up per call) and must then
// go to sleep: an idle Manager costs no CPU.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "manager/client.h"
#include "manager/server.h"

namespace {

// User + system CPU time of process `pid` so far, from /proc/<pid>/stat.
std::chrono::milliseconds cpu_time_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return std::chrono::milliseconds((utime + stime) * 1000 / sysconf(_SC_CLK_TCK));
}

}  // namespace

TEST_CASE("an idle manager server uses no CPU after a burst of calls", "[manager]") {
  auto server = ipc::manager::start_server();
  {
    ipc::manager::Client client(server.address(), server.key());
    auto dict = client.dict("d");
    for (int i = 0; i < 2000; ++i) dict.set("k", i);  // a busy phase: the server polls between calls
    CHECK(dict.get("k") == ipc::manager::Value(1999));
  }
  const auto before = cpu_time_of(server.pid());
  // The measurement window itself: one second of nothing. A server still polling would use ~1000 ms of it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto used = cpu_time_of(server.pid()) - before;
  INFO("server CPU over 1 s idle: " << used.count() << " ms");
  CHECK(used < std::chrono::milliseconds(100));
}

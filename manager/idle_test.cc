// The server and the client poll briefly while calls flow (to skip a sleep and a wake-up per call) and must then
// go to sleep: an idle Manager costs no CPU.
#include <time.h>
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

// CPU time the calling thread has used so far.
std::chrono::milliseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::seconds(ts.tv_sec) +
                                                               std::chrono::nanoseconds(ts.tv_nsec));
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

// A client polls for its reply only briefly: one waiting a second for a long call (an event's wait through the
// session, a full queue's put through a Future) sleeps for it, and so does its server meanwhile.
TEST_CASE("a client waiting on a long call, and its server, use no CPU while they wait", "[manager]") {
  auto server = ipc::manager::start_server();
  ipc::manager::Client client(server.address(), server.key());
  auto event = client.event("never set");
  auto full = client.queue("full", 1);
  REQUIRE(full.put(1) == ipc::Outcome::kOk);
  for (int i = 0; i < 200; ++i) (void)event.is_set();  // a busy phase first: both sides poll between calls

  // The measurement windows: each wait ends by its timeout. A client still polling would use ~1000 ms of each.
  const auto server_before = cpu_time_of(server.pid());
  auto before = thread_cpu_time();
  CHECK(event.wait(std::chrono::seconds(1)) == ipc::Outcome::kTimeout);
  const auto used_in_event_wait = thread_cpu_time() - before;
  before = thread_cpu_time();
  CHECK(full.put_async(2, std::chrono::seconds(1)).get() == ipc::Outcome::kTimeout);
  const auto used_in_future_get = thread_cpu_time() - before;
  const auto server_used = cpu_time_of(server.pid()) - server_before;
  INFO("client CPU over a 1 s event wait: " << used_in_event_wait.count() << " ms, over a 1 s queue put: "
       << used_in_future_get.count() << " ms; server CPU over both: " << server_used.count() << " ms");
  CHECK(used_in_event_wait < std::chrono::milliseconds(100));
  CHECK(used_in_future_get < std::chrono::milliseconds(100));
  CHECK(server_used < std::chrono::milliseconds(200));
}

// shared_dict: several worker processes share one dict, a counter and a lock through a Manager.
//
//   ./bazelw run //examples:shared_dict -- [workers]
//
// The parent starts a Manager server as a child process, starts the workers (ipc::Process), and each worker
// connects with the socket path and key it inherited, records its results in the shared dict, counts its items
// with the shared counter, and appends to a shared log under the shared lock. Unrelated programs would connect the same way to a
// standalone `ipc-manager --socket PATH --key-file FILE`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ipc/base/process.h"
#include "manager/client.h"
#include "manager/server.h"

using ipc::manager::Client;
using ipc::manager::Value;

namespace {

int worker(const ipc::manager::ServerProcess& server, int id) {
  Client client(server.socket_path(), server.key());
  auto results = client.dict("results");
  auto items = client.counter("items");
  auto log_lock = client.lock("log lock");
  auto log = client.list("log");

  long sum = 0;
  for (int i = 1; i <= 1000; ++i) sum += static_cast<long>(i) * (id + 1);
  results.set("worker " + std::to_string(id), Value::Map{{"sum", sum}, {"pid", static_cast<int>(::getpid())}});
  items.add(1000);
  {
    auto held = log_lock.acquire();  // released when `held` goes out of scope
    log.append("worker " + std::to_string(id) + " done");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int workers = argc > 1 ? std::atoi(argv[1]) : 4;
  try {
    auto server = ipc::manager::start_server();
    std::printf("manager serving on %s (pid %d)\n", server.socket_path().c_str(), server.pid());

    std::vector<ipc::Process> children;
    for (int id = 0; id < workers; ++id) {
      children.push_back(ipc::Process::start([&, id] {
        int rc = 1;
        try {
          rc = worker(server, id);
        } catch (const ipc::Error& e) {
          std::fprintf(stderr, "worker %d: %s\n", id, e.what());
        }
        return rc;
      }));
    }
    int failed = 0;
    for (ipc::Process& child : children) failed += child.join() == 0 ? 0 : 1;

    Client client(server.socket_path(), server.key());
    for (const auto& [key, value] : client.dict("results").items()) {
      std::printf("%s: %s\n", key.c_str(), ipc::manager::to_string(value).c_str());
    }
    std::printf("items counted: %lld\n", static_cast<long long>(client.counter("items").get()));
    std::printf("log: %s\n", ipc::manager::to_string(client.list("log").items()).c_str());
    return failed == 0 ? 0 : 1;
  } catch (const ipc::Error& e) {
    std::fprintf(stderr, "shared_dict: %s\n", e.what());
    return 1;
  }
}

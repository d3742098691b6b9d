// shared_dict: the tasks of a worker Pool share one dict, a counter, a lock and a list through a Manager.
//
//   ./bazelw run //examples:shared_dict -- [--workers N] [--tasks N]
//
// The parent starts a Manager server as a child process and maps a task over a Pool; each task connects with the
// address and key it was given (a task carries data, not this process's objects), records its result in the
// shared dict, counts its items with the shared counter, and appends to a shared log under the shared lock.
// Unrelated programs would connect the same way to a standalone `ipc-manager --listen PATH --key-file FILE`
// (or, from other hosts, `--listen tcp:HOST:PORT`).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "examples/args.h"
#include "ipc/pool/pool.h"
#include "manager/client.h"
#include "manager/server.h"

using ipc::manager::Client;
using ipc::manager::Value;

namespace {

// The task, in a pool worker.
int record(std::string address, std::vector<uint8_t> key, int task) {
  Client client(address, key);
  auto results = client.dict("results");
  auto items = client.counter("items");
  auto log_lock = client.lock("log lock");
  auto log = client.list("log");

  long sum = 0;
  for (int i = 1; i <= 1000; ++i) sum += static_cast<long>(i) * (task + 1);
  results.set("task " + std::to_string(task), Value::Map{{"sum", sum}, {"pid", static_cast<int>(::getpid())}});
  items.add(1000);
  {
    auto held = log_lock.acquire();  // released when `held` goes out of scope
    log.append("task " + std::to_string(task) + " done");
  }
  return task;
}

}  // namespace

int main(int argc, char** argv) try {
  const examples::Args args(argc, argv, {{"workers", 2}, {"tasks", 4}});
  auto server = ipc::manager::start_server();
  std::printf("manager serving on %s (pid %d)\n", server.address().c_str(), server.pid());

  ipc::PoolOptions options;
  options.workers = static_cast<unsigned>(args.get("workers"));
  ipc::Pool pool(options);
  std::vector<std::tuple<std::string, std::vector<uint8_t>, int>> tasks;
  for (uint64_t t = 0; t < args.get("tasks"); ++t) tasks.emplace_back(server.address(), server.key(), t);
  (void)pool.starmap(record, tasks, 1);  // a failed task throws here, naming what it threw

  Client client(server.address(), server.key());
  for (const auto& [key, value] : client.dict("results").items()) {
    std::printf("%s: %s\n", key.c_str(), ipc::manager::to_string(value).c_str());
  }
  std::printf("items counted: %lld\n", static_cast<long long>(client.counter("items").get()));
  std::printf("log: %s\n", ipc::manager::to_string(client.list("log").items()).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "shared_dict: %s\n", e.what());
  return 1;
}

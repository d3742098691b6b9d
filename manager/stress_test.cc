// Many client processes hammering the same objects end with exactly the expected contents.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "manager/client.h"
#include "manager/detail/test_util.h"
#include "manager/server.h"

using ipc::manager::Client;
using ipc::manager::Value;
using ipc::manager::testing::run_child;

TEST_CASE("four client processes hammering the same dict end with the exact contents", "[manager][stress]") {
  constexpr int kClients = 4;
  constexpr int kKeysPerClient = 400;
  constexpr int kLockedIncrements = 50;
  auto server = ipc::manager::start_server();
  {
    Client setup(server.address(), server.key());
    setup.dict("d").set("total", 0);
  }
  std::vector<ipc::Process> children;
  for (int c = 0; c < kClients; ++c) {
    children.push_back(run_child([&, c] {
      Client client(server.address(), server.key());
      auto d = client.dict("d");
      auto lock = client.lock("total lock");
      auto counter = client.counter("sets");
      for (int k = 0; k < kKeysPerClient; ++k) {
        std::string key = "c" + std::to_string(c) + "-" + std::to_string(k);
        // Half blocking, half pipelined, so both paths are hammered.
        if (k % 2 == 0) {
          d.set(key, c * 100000 + k);
        } else {
          d.set_async(key, c * 100000 + k).get();
        }
        d.set("shared", c);  // everyone overwrites the same key
        counter.add();
        if (k % (kKeysPerClient / kLockedIncrements) == 0) {
          // Read-modify-write under the lock: lost updates would show in the total.
          auto held = lock.acquire();
          auto total = d.get("total")->as_int();
          d.set("total", total + 1);
          held.release();
        }
      }
      return 0;
    }));
  }
  for (auto& child : children) CHECK(child.join() == 0);

  Client client(server.address(), server.key());
  auto d = client.dict("d");
  auto items = d.items();
  CHECK(items.size() == kClients * kKeysPerClient + 2);
  for (int c = 0; c < kClients; ++c) {
    for (int k = 0; k < kKeysPerClient; ++k) {
      auto it = items.find("c" + std::to_string(c) + "-" + std::to_string(k));
      REQUIRE(it != items.end());
      CHECK(it->second == Value(c * 100000 + k));
    }
  }
  CHECK(items.at("total") == Value(kClients * kLockedIncrements));
  auto shared = items.at("shared").as_int();
  CHECK((shared >= 0 && shared < kClients));
  CHECK(client.counter("sets").get() == kClients * kKeysPerClient);
}

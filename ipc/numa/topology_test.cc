#include "ipc/numa/topology.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "ipc/base/error.h"

namespace {

// A fake /sys tree with four nodes, so that parsing is tested beyond this one-node host.
struct FakeSysfs {
  FakeSysfs() {
    char tmpl[] = "/tmp/fake-sysfs-XXXXXX";
    root = mkdtemp(tmpl);
    write("devices/system/node/possible", "0-7\n");
    write("devices/system/node/online", "0-3\n");
    write("devices/system/node/has_memory", "0-2\n");
    const char* cpus[] = {"0-1", "2-3", "4,6", ""};
    const char* dist[] = {"10 20 30 40", "20 10 20 30", "30 20 10 20", "40 30 20 10"};
    for (int n = 0; n < 4; ++n) {
      std::string d = "devices/system/node/node" + std::to_string(n);
      write(d + "/cpulist", std::string(cpus[n]) + "\n");
      write(d + "/distance", std::string(dist[n]) + "\n");
      write(d + "/meminfo", "Node " + std::to_string(n) + " MemTotal:  " + std::to_string(1024 * (n + 1)) +
                                " kB\nNode " + std::to_string(n) + " MemFree:   512 kB\n");
      write("kernel/mm/mempolicy/weighted_interleave/node" + std::to_string(n), std::to_string(n + 1) + "\n");
    }
  }
  ~FakeSysfs() {
    std::error_code ignored;
    std::filesystem::remove_all(root, ignored);
  }
  void write(const std::string& rel, const std::string& text) {
    const std::filesystem::path path = root + "/" + rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::string root;
};

}  // namespace

TEST_CASE("topology reads nodes, cpus, memory, distances and weights from sysfs", "[numa][topology]") {
  FakeSysfs fake;
  auto t = ipc::numa::Topology::discover(fake.root);
  CHECK(t.possible().to_string() == "0-7");
  CHECK(t.online().to_string() == "0-3");
  CHECK(t.with_memory().to_string() == "0-2");
  REQUIRE(t.nodes().size() == 4);
  CHECK(t.node(2).cpus == std::vector<int>{4, 6});
  CHECK(t.node(3).cpus.empty());
  CHECK_FALSE(t.node(3).has_memory);
  CHECK(t.node(1).memory_total_bytes == 2048 * 1024);
  CHECK(t.node(1).memory_free_bytes == 512 * 1024);
  CHECK(t.distance(0, 3) == 40);
  CHECK(t.distance(2, 1) == 20);
  CHECK(t.distance(1, 1) == 10);
  CHECK(t.has_weighted_interleave());
  CHECK(t.node(3).interleave_weight == 4u);
  CHECK(t.node_of_cpu(3) == 1);
  CHECK(t.node_of_cpu(5) == -1);
  CHECK_THROWS_AS(t.node(5), ipc::InvalidArgument);
  CHECK(t.describe().find("available: 4 nodes (0-3)") != std::string::npos);
}

TEST_CASE("this machine's topology has its online nodes and the CPUs this process may use", "[numa][topology]") {
  auto t = ipc::numa::Topology::discover();
  CHECK_FALSE(t.online().empty());
  CHECK(t.online() == ipc::numa::Topology::online_nodes());
  CHECK_FALSE(t.allowed_cpus().empty());
  CHECK(static_cast<long>(t.allowed_cpus().size()) <= sysconf(_SC_NPROCESSORS_CONF));
  CHECK_FALSE(t.allowed_memory_nodes().empty());
  for (const auto& n : t.nodes()) CHECK(t.distance(n.id, n.id) == 10);
}

TEST_CASE("malformed cpu lists are an error", "[numa][topology]") {
  CHECK(ipc::numa::parse_cpu_list("0-2,5") == std::vector<int>{0, 1, 2, 5});
  CHECK_THROWS_AS(ipc::numa::parse_cpu_list("3-1"), ipc::Error);
  CHECK_THROWS_AS(ipc::numa::parse_cpu_list("a"), ipc::Error);
}

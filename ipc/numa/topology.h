// ipc/numa/topology.h: what the machine's NUMA nodes are: ids, CPUs, memory, distances, interleave weights,
// and the CPUs and nodes this process may use.
//
// Threads: Topology is an immutable snapshot; safe to share between threads once built.
// Processes: not for shared memory (it holds vectors); rebuild it in each process.
// Lifetime: a snapshot taken by discover(); memory figures go stale, call discover() again for fresh ones.
// Errors: an unreadable sysfs file that must exist throws ipc::SystemError; a malformed one throws ipc::Error.
//   Files that only newer kernels have (weighted-interleave weights) are optional.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipc/numa/node_set.h"

namespace ipc::numa {

struct NodeInfo {
  int id = 0;
  bool has_memory = false;
  std::vector<int> cpus;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_free_bytes = 0;
  // Free pages plus the page cache and slab the kernel can reclaim without swapping (MemFree + Active(file) +
  // Inactive(file) + SReclaimable): about what an allocation bound to this node can still get.
  uint64_t memory_available_bytes = 0;
  // distances[i] = distance to the i-th node of Topology::online().ids() (ACPI SLIT units, 10 = local).
  std::vector<int> distances;
  // The weighted-interleave weight of this node (Linux >= 6.9), when the kernel exposes one.
  std::optional<uint32_t> interleave_weight;
};

class Topology {
 public:
  // Reads the topology under `sysfs_root` (tests pass a fake tree) and this process's CPU affinity and allowed
  // memory nodes from the kernel.
  static Topology discover(const std::string& sysfs_root = "/sys");

  // The online nodes of this machine, read fresh from /sys (cheap). Used to validate policies.
  static NodeSet online_nodes();

  const NodeSet& possible() const { return possible_; }
  const NodeSet& online() const { return online_; }
  const NodeSet& with_memory() const { return with_memory_; }
  // One entry per online node, in id order.
  const std::vector<NodeInfo>& nodes() const { return nodes_; }
  // REQUIRES: online().contains(id). Throws InvalidArgument otherwise.
  const NodeInfo& node(int id) const;
  // Distance between two online nodes; throws InvalidArgument for an id that is not online.
  int distance(int from, int to) const;
  // True when the kernel has weighted interleave (the sysfs weight directory exists).
  bool has_weighted_interleave() const { return has_weighted_interleave_; }
  // The node a CPU belongs to, or -1 when no online node lists it.
  int node_of_cpu(int cpu) const;

  // CPUs this process may run on (sched_getaffinity), sorted. Cgroup cpusets are reflected in the affinity mask.
  const std::vector<int>& allowed_cpus() const { return allowed_cpus_; }
  // Memory nodes this process may allocate from (its cpuset's mems_allowed).
  const NodeSet& allowed_memory_nodes() const { return allowed_memory_nodes_; }

  // A report in the style of `numactl -H`.
  std::string describe() const;

 private:
  NodeSet possible_, online_, with_memory_, allowed_memory_nodes_;
  std::vector<NodeInfo> nodes_;
  std::vector<int> allowed_cpus_;
  bool has_weighted_interleave_ = false;
};

// Parses the kernel's CPU/node list syntax for CPUs ("0-3,8-11"); used for cpulist files. Throws ipc::Error.
std::vector<int> parse_cpu_list(const std::string& text);

}  // namespace ipc::numa

#include "ipc/numa/topology.h"

#include <numaif.h>
#include <sched.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "ipc/base/error.h"
#include "ipc/numa/policy_error.h"

namespace ipc::numa {
namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string read_required(const std::string& path) {
  auto s = read_file(path);
  if (!s) throw_errno("read " + path);
  return *s;
}

NodeSet read_node_list(const std::string& path) {
  try {
    return NodeSet::parse(read_required(path));
  } catch (const PolicyError& e) {
    throw Error("malformed node list in " + path + ": " + e.what());
  }
}

// "Node 0 MemTotal:       24576000 kB" -> bytes of the named field, 0 when absent.
uint64_t meminfo_field(const std::string& meminfo, const std::string& field) {
  std::istringstream in(meminfo);
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(field + ":");
    if (pos == std::string::npos) continue;
    std::istringstream fields(line.substr(pos + field.size() + 1));
    uint64_t kb = 0;
    fields >> kb;
    return kb * 1024;
  }
  return 0;
}

}  // namespace

std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  std::istringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (part.empty()) continue;
    int lo = 0, hi = 0;
    char dash = 0;
    std::istringstream p(part);
    if (!(p >> lo)) throw Error("malformed CPU list '" + text + "'");
    hi = lo;
    if (p >> dash) {
      if (dash != '-' || !(p >> hi) || hi < lo) throw Error("malformed CPU list '" + text + "'");
    }
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
  }
  return cpus;
}

NodeSet Topology::online_nodes() {
  // A literal, not a static std::string: a pool's supervisor may call this while static destructors run.
  auto s = read_file("/sys/devices/system/node/online");
  // Kernels built without NUMA have no node directory: the machine is one node, 0.
  return s ? NodeSet::parse(*s) : NodeSet{0};
}

Topology Topology::discover(const std::string& sysfs_root) {
  Topology t;
  const std::string node_dir = sysfs_root + "/devices/system/node";
  if (!read_file(node_dir + "/online")) {
    // No NUMA support in this kernel: one node holding every CPU.
    t.possible_ = t.online_ = t.with_memory_ = NodeSet{0};
    NodeInfo n;
    n.has_memory = true;
    n.distances = {10};
    t.nodes_.push_back(n);
  } else {
    t.possible_ = read_node_list(node_dir + "/possible");
    t.online_ = read_node_list(node_dir + "/online");
    auto mem = read_file(node_dir + "/has_memory");
    t.with_memory_ = mem ? NodeSet::parse(*mem) : t.online_;
    const std::string weights_dir = sysfs_root + "/kernel/mm/mempolicy/weighted_interleave";
    for (int id : t.online_.ids()) {
      const std::string dir = node_dir + "/node" + std::to_string(id);
      NodeInfo n;
      n.id = id;
      n.has_memory = t.with_memory_.contains(id);
      n.cpus = parse_cpu_list(read_file(dir + "/cpulist").value_or(""));
      std::string meminfo = read_file(dir + "/meminfo").value_or("");
      n.memory_total_bytes = meminfo_field(meminfo, "MemTotal");
      n.memory_free_bytes = meminfo_field(meminfo, "MemFree");
      n.memory_available_bytes = n.memory_free_bytes + meminfo_field(meminfo, "Active(file)") +
                                 meminfo_field(meminfo, "Inactive(file)") + meminfo_field(meminfo, "SReclaimable");
      std::istringstream dist(read_file(dir + "/distance").value_or(""));
      int d;
      while (dist >> d) n.distances.push_back(d);
      if (auto w = read_file(weights_dir + "/node" + std::to_string(id))) {
        n.interleave_weight = static_cast<uint32_t>(std::stoul(*w));
        t.has_weighted_interleave_ = true;
      }
      t.nodes_.push_back(std::move(n));
    }
  }

  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) throw_errno("sched_getaffinity");
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) t.allowed_cpus_.push_back(c);
  }
  int mode = 0;
  if (get_mempolicy(&mode, t.allowed_memory_nodes_.mutable_mask_words(), NodeSet::mask_bits() + 1, nullptr,
                    MPOL_F_MEMS_ALLOWED) != 0) {
    // Kernels without NUMA refuse the call: everything is node 0.
    t.allowed_memory_nodes_ = NodeSet{0};
  }
  return t;
}

const NodeInfo& Topology::node(int id) const {
  for (const auto& n : nodes_) {
    if (n.id == id) return n;
  }
  throw InvalidArgument("node " + std::to_string(id) + " is not online (online: " + online_.to_string() + ")");
}

int Topology::distance(int from, int to) const {
  const NodeInfo& a = node(from);
  node(to);  // validates `to`
  auto ids = online_.ids();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == to && i < a.distances.size()) return a.distances[i];
  }
  return from == to ? 10 : 20;  // the kernel publishes no table: assume the ACPI defaults
}

int Topology::node_of_cpu(int cpu) const {
  for (const auto& n : nodes_) {
    for (int c : n.cpus) {
      if (c == cpu) return n.id;
    }
  }
  return -1;
}

std::string Topology::describe() const {
  std::ostringstream out;
  out << "available: " << online_.count() << " nodes (" << online_.to_string() << ")\n";
  for (const auto& n : nodes_) {
    out << "node " << n.id << " cpus:";
    for (int c : n.cpus) out << ' ' << c;
    out << "\nnode " << n.id << " size: " << n.memory_total_bytes / (1024 * 1024) << " MB\n";
    out << "node " << n.id << " free: " << n.memory_free_bytes / (1024 * 1024) << " MB\n";
    if (n.interleave_weight) out << "node " << n.id << " interleave weight: " << *n.interleave_weight << "\n";
  }
  out << "node distances:\nnode ";
  for (int id : online_.ids()) out << "  " << id << ' ';
  out << '\n';
  for (const auto& n : nodes_) {
    out << "  " << n.id << ": ";
    for (int id : online_.ids()) out << ' ' << (n.distances.empty() ? 0 : distance(n.id, id)) << ' ';
    out << '\n';
  }
  out << "allowed cpus:";
  for (int c : allowed_cpus_) out << ' ' << c;
  out << "\nallowed memory nodes: " << allowed_memory_nodes_.to_string() << "\n";
  return out.str();
}

}  // namespace ipc::numa

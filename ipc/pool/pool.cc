#include "ipc/pool/pool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "ipc/base/process.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/topology.h"

namespace ipc {
namespace {

// Node and CPUs of each worker slot, from the topology and this process's allowed CPUs.
std::vector<detail::SlotPlace> place_workers(const Placement& placement, unsigned workers) {
  std::vector<detail::SlotPlace> places;
  if (placement.strategy == Placement::Strategy::kNone) return places;
  const numa::Topology topo = numa::Topology::discover();
  const auto& allowed = topo.allowed_cpus();
  auto cpus_of = [&](int node) {
    std::vector<int> cpus;
    for (int cpu : topo.node(node).cpus) {
      if (std::binary_search(allowed.begin(), allowed.end(), cpu)) cpus.push_back(cpu);
    }
    return cpus;
  };
  std::vector<int> nodes = placement.nodes;
  if (nodes.empty()) {
    for (const auto& n : topo.nodes()) {
      if (!cpus_of(n.id).empty()) nodes.push_back(n.id);
    }
  }
  for (int node : nodes) {
    if (!topo.online().contains(node)) {
      throw InvalidArgument("Pool placement: node " + std::to_string(node) + " is not an online node of this machine");
    }
    if (cpus_of(node).empty()) {
      throw InvalidArgument("Pool placement: node " + std::to_string(node) + " has no CPU this process may use");
    }
  }
  if (nodes.empty()) throw InvalidArgument("Pool placement: no node has a CPU this process may use");
  size_t node_index = 0, used_on_node = 0;
  for (unsigned i = 0; i < workers; ++i) {
    int node;
    if (placement.strategy == Placement::Strategy::kSpread) {
      node = nodes[i % nodes.size()];
    } else {
      // Pack: as many workers on a node as it has CPUs, then the next node (round again when all are full).
      if (used_on_node == cpus_of(nodes[node_index]).size()) {
        node_index = (node_index + 1) % nodes.size();
        used_on_node = 0;
      }
      node = nodes[node_index];
      ++used_on_node;
    }
    places.push_back({node, placement.pin ? cpus_of(node) : std::vector<int>{}});
  }
  return places;
}

detail::CoreOptions core_options(PoolOptions o) {
  detail::CoreOptions c;
  if (o.workers == 0u) throw InvalidArgument("Pool: the worker count must be at least 1");
  c.workers = o.workers ? *o.workers : cpu_count();
  c.initializer = std::move(o.initializer);
  c.max_tasks_per_child = o.max_tasks_per_child;
  c.task_timeout = o.task_timeout;
  if (o.task_timeout && o.task_timeout->count() <= 0) throw InvalidArgument("Pool: task_timeout must be positive");
  if (o.pipe_bytes < 4096 || (o.pipe_bytes & (o.pipe_bytes - 1)) != 0) {
    throw InvalidArgument("Pool: pipe_bytes must be a power of two >= 4096, got " + std::to_string(o.pipe_bytes));
  }
  c.pipe_bytes = o.pipe_bytes;
  c.name = "Pool-" + std::to_string(getpid());
  c.places = place_workers(o.placement, c.workers);
  c.start_method = o.start_method;
  c.scratch_bytes = o.scratch_bytes;
  return c;
}

}  // namespace

namespace detail {

Segment& worker_segment(const std::string& name) {
  struct Open {
    ino_t inode;
    Segment segment;
  };
  // A worker runs one task at a time; tasks that start threads of their own do not call this concurrently.
  static auto* open = new std::map<std::string, Open>();  // leaked: tasks may run while static destructors do
  struct stat st{};
  const std::string file = "/dev/shm/" + std::string(Segment::kFilePrefix) + name;
  if (::stat(file.c_str(), &st) != 0) {
    throw NotFound("Pool::map_array: no segment '" + name + "' (" + file + ") for this worker to open");
  }
  auto it = open->find(name);
  if (it != open->end() && it->second.inode == st.st_ino) return it->second.segment;
  if (it != open->end()) open->erase(it);  // the name now holds a newer segment
  return open->emplace(name, Open{st.st_ino, Segment::open(name)}).first->second.segment;
}

int home_node(const void* p, size_t bytes) {
  if (bytes == 0) return -1;
  const numa::PagePlacement pages = numa::page_placement(p, bytes);
  int best = -1;
  size_t most = 0;
  for (auto [node, count] : pages.pages_on_node) {
    if (count > most) best = node, most = count;
  }
  return best;
}

std::string array_name(const Segment& segment, const void* array) {
  const char* base = static_cast<const char*>(segment.base());
  const char* at = static_cast<const char*>(array);
  if (at >= base && at < base + segment.size_bytes()) {
    const uint64_t offset = segment.offset_of(array);
    for (const auto& b : segment.blocks()) {
      if (b.offset == offset && b.kind_tag == Array<std::byte>::kKind.tag) return b.name;
    }
  }
  throw InvalidArgument("Pool::map_array: the array is not a named Array of segment '" + segment.name() +
                        "' (make it with Array<T>::create in that segment)");
}

std::unique_ptr<PoolCore> make_pool_core(const PoolOptions& options) {
  return std::make_unique<PoolCore>(core_options(options));
}

}  // namespace detail

Pool::Pool(PoolOptions options) : Pool(detail::make_pool_core(options), options.read_ahead) {}

Pool::Pool(std::unique_ptr<detail::PoolCore> core, unsigned read_ahead)
    : PoolMethods(core.get(), read_ahead), core_(std::move(core)) {}

Pool::~Pool() = default;  // PoolCore's destructor terminates (see the header: never waits for user work)

}  // namespace ipc

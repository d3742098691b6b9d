// tests/numa_vm/placement_vm_test.cc: real page placement on a multi-node kernel, checked page by page.
//
// Built as a fully static binary so that it runs as the only program (besides busybox) in the initramfs of the
// QEMU VMs that tests/numa_vm/run_vm_suite.sh boots with 2 and 4 NUMA nodes. It also runs on the host as an
// ordinary `bazel test` (one node: the checks run over the nodes there are, expectations are not given).
//
// Output: one line per check, "PASS <check>: <evidence>", "FAIL <check>: <reason>" or (on a host only) "SKIP <check>:
// <why it cannot run here>", then exactly one line "VM-RESULT: <N> passed, <M> failed, <K> skipped"; a skipped check
// is never counted as passed. Exit status 0 only when nothing failed and something passed.
//
// Arguments (all optional; the VM suite passes all of them, so that nothing is skipped inside a VM):
//   --expect-nodes=N          the online node count the VM was booted with; checks needing more nodes than the
//                             machine has fail instead of being skipped when this is given
//   --expect-cpus=0/1/2-3     the CPU list of each node, in node order
//   --expect-distances=10,17/17,10   the distance matrix rows, in node order
//   --expect-weights=3,1      the weighted-interleave weights the VM's init wrote to sysfs, in node order
//
// How a placement is predicted: for interleave the kernel gives page i of a mapping the node
// list[(phase + i) % list.size()], where the phase depends on the mapping offset (and, for shmem objects, the
// inode number), so the checks require round-robin order over the listed nodes from whatever node page 0 got.
// Weighted interleave walks the same cycle with node n repeated weight(n) times.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/numa/kernel_abi.h"
#include "ipc/numa/memory_policy.h"
#include "ipc/numa/node_set.h"
#include "ipc/numa/placement.h"
#include "ipc/numa/policy_error.h"
#include "ipc/numa/topology.h"
#include "ipc/pool/init.h"
#include "ipc/pool/pool.h"
#include "ipc/shared/array.h"
#include "ipc/sync/event.h"
#include "ipc/segment/segment.h"
#include "tests/support/test_support.h"

namespace {

using ipc::numa::MemoryPolicy;
using ipc::numa::Mode;
using ipc::numa::NodeSet;
using ipc::numa::PolicyFlags;
using ipc::numa::Topology;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

// ---------------------------------------------------------------------------------------------------------------
// A minimal check runner: every check prints one line; a thrown exception is a failure with its message.

struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Skipped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int g_passed = 0, g_failed = 0, g_skipped = 0;
bool g_vm_mode = false;  // --expect-nodes given: nothing may be skipped

void run_check(const std::string& name, const std::function<std::string()>& body) {
  try {
    std::string evidence = body();
    ++g_passed;
    std::printf("PASS %s: %s\n", name.c_str(), evidence.c_str());
  } catch (const Skipped& e) {
    if (g_vm_mode) {
      ++g_failed;
      std::printf("FAIL %s: could not run: %s\n", name.c_str(), e.what());
    } else {
      ++g_skipped;
      std::printf("SKIP %s: %s\n", name.c_str(), e.what());
    }
  } catch (const std::exception& e) {
    ++g_failed;
    std::printf("FAIL %s: %s\n", name.c_str(), e.what());
  }
  std::fflush(stdout);
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Failed(what);
}

std::string join(const std::vector<int>& v, const char* sep = " ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + std::to_string(v[i]);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

std::vector<int> int_list(const std::string& s) {
  std::vector<int> out;
  for (const auto& item : split(s, ',')) out.push_back(std::stoi(item));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Test memory: a tmpfs object (memfd, like a segment's shm object: the policy is the object's shared policy) or a
// private anonymous mapping. Transparent huge pages are switched off so that every 4 KiB page is placed alone.

struct Mapping {
  enum Kind { kShmem, kPrivateAnonymous };
  Mapping(Kind kind, size_t pages) : length(pages * kPage) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (kind == kShmem) {
      fd = memfd_create("numa_vm_test", MFD_CLOEXEC);
      if (fd < 0) ipc::throw_errno("memfd_create");
      if (ftruncate(fd, static_cast<off_t>(length)) != 0) ipc::throw_errno("ftruncate");
      flags = MAP_SHARED;
    }
    addr = mmap(nullptr, length, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (addr == MAP_FAILED) ipc::throw_errno("mmap");
    madvise(addr, length, MADV_NOHUGEPAGE);
  }
  ~Mapping() {
    munmap(addr, length);
    if (fd >= 0) close(fd);
  }
  void touch() const {
    for (size_t off = 0; off < length; off += kPage) static_cast<volatile char*>(addr)[off] = 1;
  }
  size_t pages() const { return length / kPage; }
  void* addr;
  size_t length;
  int fd = -1;
};

// Pins the calling thread to one CPU (placement of "local" memory follows the CPU that faults the page in).
void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) ipc::throw_errno("sched_setaffinity(cpu " + std::to_string(cpu) + ")");
}

// Pins the calling thread to `cpu` for its lifetime, then back to `home`.
struct PinnedTo {
  PinnedTo(int cpu, int home) : home(home) { pin_to_cpu(cpu); }
  ~PinnedTo() { pin_to_cpu(home); }
  int home;
};

// The running kernel's version as major * 100 + minor (6.10 -> 610).
int kernel_version() {
  utsname u{};
  uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  return major * 100 + minor;
}

std::string kernel_release() {
  utsname u{};
  uname(&u);
  return u.release;
}

// ---------------------------------------------------------------------------------------------------------------
// Placement predicates, each returning the page-level evidence or throwing Failed with it.

// Every page present and on `node`.
std::string expect_all_on(const std::vector<int>& nodes, int node) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    require(nodes[i] == node, "page " + std::to_string(i) + " is on node " + std::to_string(nodes[i]) +
                                  ", expected every page on node " + std::to_string(node) + "; pages: " + join(nodes));
  }
  return std::to_string(nodes.size()) + " pages, all on node " + std::to_string(node);
}

// The pages follow `cycle` (one full period of the placement pattern) from some starting phase, and every node
// holds exactly its share. Returns the pattern and the counts.
std::string expect_cycle(const std::vector<int>& nodes, const std::vector<int>& cycle) {
  require(!nodes.empty() && !cycle.empty(), "empty page list or cycle");
  require(nodes.size() % cycle.size() == 0, "test error: page count is not a multiple of the cycle");
  std::optional<size_t> phase;
  for (size_t p = 0; p < cycle.size() && !phase; ++p) {
    bool match = true;
    for (size_t i = 0; i < nodes.size() && match; ++i) match = nodes[i] == cycle[(p + i) % cycle.size()];
    if (match) phase = p;
  }
  require(phase.has_value(), "pages do not follow the cycle [" + join(cycle) + "] from any phase; pages: " + join(nodes));
  std::map<int, int> counts;
  for (int n : nodes) ++counts[n];
  std::map<int, int> expected;
  for (int n : cycle) expected[n] += static_cast<int>(nodes.size() / cycle.size());
  require(counts == expected, "per-node counts differ from the cycle's shares");
  std::string out = "pages: " + join(nodes) + " | counts:";
  for (auto [n, c] : counts) out += " node" + std::to_string(n) + "=" + std::to_string(c);
  return out;
}

std::vector<int> interleave_cycle(const NodeSet& nodes) { return nodes.ids(); }

std::vector<int> weighted_cycle(const NodeSet& nodes, const Topology& topo) {
  std::vector<int> cycle;
  for (int n : nodes.ids()) {
    uint32_t w = topo.node(n).interleave_weight.value_or(1);
    if (w == 0) w = 1;  // the kernel treats 0 as 1
    for (uint32_t i = 0; i < w; ++i) cycle.push_back(n);
  }
  return cycle;
}

// The policy the kernel holds for the mapping, checked two ways.
std::string expect_policy_recorded(const void* addr, const MemoryPolicy& policy, const std::string& numa_maps) {
  MemoryPolicy held = MemoryPolicy::of_address(addr);
  require(held == policy, "get_mempolicy reports '" + held.to_string() + "', applied '" + policy.to_string() + "'");
  std::string maps = ipc::numa::numa_maps_policy(addr);
  require(maps == numa_maps, "numa_maps reports '" + maps + "', expected '" + numa_maps + "'");
  return "numa_maps '" + maps + "'";
}

// ---------------------------------------------------------------------------------------------------------------

struct Expectations {
  std::optional<int> nodes;
  std::vector<std::string> cpus;                // per node, kernel cpulist syntax
  std::vector<std::vector<int>> distances;      // rows
  std::vector<int> weights;                     // per node
};

Expectations parse_args(int argc, char** argv) {
  Expectations e;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const std::string& key) -> std::optional<std::string> {
      if (a.rfind(key + "=", 0) == 0) return a.substr(key.size() + 1);
      return std::nullopt;
    };
    if (auto v = value("--expect-nodes")) {
      e.nodes = std::stoi(*v);
    } else if (auto v = value("--expect-cpus")) {
      e.cpus = split(*v, '/');
    } else if (auto v = value("--expect-distances")) {
      for (const auto& row : split(*v, '/')) e.distances.push_back(int_list(row));
    } else if (auto v = value("--expect-weights")) {
      e.weights = int_list(*v);
    } else {
      std::fprintf(stderr, "unknown argument '%s'\n", a.c_str());
      std::exit(2);
    }
  }
  return e;
}

// The nodes the placement checks may use: in a VM every online node; on a host those that are online, have
// memory and are allowed by this process's cpuset.
NodeSet g_usable;

// The usable nodes, or Skipped when there are fewer than `needed`.
NodeSet need_nodes(int needed) {
  if (g_usable.count() < needed) {
    throw Skipped("needs " + std::to_string(needed) + " online nodes, this machine has " +
                  std::to_string(g_usable.count()) + " (" + g_usable.to_string() + ")");
  }
  return g_usable;
}

// Skipped when `id` is not usable.
void need_node(int id) {
  if (!g_usable.contains(id)) {
    throw Skipped("node " + std::to_string(id) + " is not online (usable nodes: " + g_usable.to_string() + ")");
  }
}

NodeSet first_n(const NodeSet& set, int n) {
  NodeSet out;
  for (int id : set.ids()) {
    if (out.count() == n) break;
    out.insert(id);
  }
  return out;
}

// Checks one interleave-style policy on a fresh mapping of `pages` pages, touched by this process.
std::string check_pattern(Mapping::Kind kind, const MemoryPolicy& policy, const std::string& numa_maps, size_t pages,
                          const std::vector<int>& cycle) {
  Mapping m(kind, pages);
  policy.apply(m.addr, m.length);
  std::string recorded = expect_policy_recorded(m.addr, policy, numa_maps);
  auto before = ipc::numa::page_placement(m.addr, m.length);
  require(before.pages_not_present == pages, "pages present before the first touch: " + before.to_string());
  m.touch();
  return expect_cycle(ipc::numa::page_nodes(m.addr, m.length), cycle) + " | " + recorded;
}

std::string check_all_on(Mapping::Kind kind, const MemoryPolicy& policy, const std::string& numa_maps, size_t pages,
                         int node) {
  Mapping m(kind, pages);
  policy.apply(m.addr, m.length);
  std::string recorded = expect_policy_recorded(m.addr, policy, numa_maps);
  m.touch();
  return expect_all_on(ipc::numa::page_nodes(m.addr, m.length), node) + " | " + recorded;
}

// A segment created here with `policy`; a forked child pinned to `child_cpu` opens it by name and touches a block
// of `pages` pages that this process allocated but never touched. Returns the node of each page of the block,
// read from here (page_placement maps in pages that another process faulted in).
std::vector<int> segment_touched_by_child(const MemoryPolicy& policy, size_t pages, int child_cpu,
                                          std::string* evidence, bool reserve = true) {
  ipc::SegmentOptions options;
  options.policy = policy;
  options.reserve = reserve;
  const std::string name = ipc::test::unique_name("numa_vm_test");
  ipc::Segment segment = ipc::Segment::create(name, (pages + 64) * kPage, options);
  madvise(segment.base(), segment.size_bytes(), MADV_NOHUGEPAGE);
  require(segment.policy() == policy, "segment header holds '" + segment.policy().to_string() + "'");
  require(MemoryPolicy::of_address(segment.base()) == policy,
          "the kernel holds '" + MemoryPolicy::of_address(segment.base()).to_string() + "' for the segment mapping");
  void* block = segment.allocate(pages * kPage, kPage);
  const uint64_t offset = segment.offset_of(block);
  auto before = ipc::numa::page_placement(block, pages * kPage);
  require(before.pages_not_present == pages,
          "the creator touched pages of the block before the child did: " + before.to_string());

  ipc::test::ForkedChild child([&]() -> int {
    pin_to_cpu(child_cpu);
    ipc::Segment opened = ipc::Segment::open(name);  // a new mapping, by name, not the inherited one
    madvise(opened.base(), opened.size_bytes(), MADV_NOHUGEPAGE);
    auto* p = opened.at<volatile char>(offset);
    for (size_t i = 0; i < pages; ++i) p[i * kPage] = static_cast<char>(i + 1);
    return 0;
  });
  auto status = child.wait(std::chrono::seconds(60));
  require(status.has_value(), "the child did not finish within 60 s");
  require(*status == 0, "the child exited with " + std::to_string(*status));

  auto placement = ipc::numa::page_placement(block, pages * kPage);
  require(placement.pages_not_present == 0, "pages the child touched are not present: " + placement.to_string());
  auto* data = static_cast<volatile char*>(block);
  for (size_t i = 0; i < pages; ++i) {
    require(data[i * kPage] == static_cast<char>(i + 1), "page " + std::to_string(i) + " lacks the child's write");
  }
  *evidence = "child pid " + std::to_string(child.pid()) + " on cpu " + std::to_string(child_cpu) +
              " touched block at offset " + std::to_string(offset) + "; placement " + placement.to_string();
  return ipc::numa::page_nodes(block, pages * kPage);
}

// Shared-memory pages on each usable node now (the Shmem line of the node's meminfo): pages a segment reserved show
// there before any process maps them.
std::map<int, long> shmem_pages_per_node() {
  std::map<int, long> pages;
  for (int id : g_usable.ids()) {
    std::ifstream in("/sys/devices/system/node/node" + std::to_string(id) + "/meminfo");
    std::string line;
    while (std::getline(in, line)) {
      const auto at = line.find("Shmem:");
      if (at != std::string::npos) pages[id] = std::stol(line.substr(at + 6)) * 1024 / static_cast<long>(kPage);
    }
  }
  return pages;
}

// Creates a segment with `policy` (its pages reserved, the default) and returns where the pages of a block of
// `pages` pages are, as reserved at creation: nobody touched them, then the object's policy for the block is
// changed to bind:`elsewhere` and every page is read. A page reserved at creation stays where creation put it; a
// page that was not would be allocated by the read, on `elsewhere`. `evidence` gets the growth of each node's
// shmem pages across create() (before any touch).
std::vector<int> reserved_block_nodes(const MemoryPolicy& policy, size_t pages, int elsewhere,
                                      std::map<int, long>* growth, std::string* evidence) {
  ipc::SegmentOptions options;
  options.policy = policy;
  options.max_names = 16;  // a small directory: the block fits beside it
  const auto before = shmem_pages_per_node();
  ipc::Segment segment = ipc::Segment::create(ipc::test::unique_name("numa_vm_reserve"), (pages + 64) * kPage, options);
  const auto after = shmem_pages_per_node();
  *evidence = "shmem pages grown at create():";
  for (auto [node, count] : after) {
    (*growth)[node] = count - before.at(node);
    *evidence += " node" + std::to_string(node) + "=" + std::to_string(count - before.at(node));
  }
  void* block = segment.allocate(pages * kPage, kPage);
  const auto untouched = ipc::numa::page_placement(block, pages * kPage);
  require(untouched.pages_not_present == pages, "pages of the block were touched: " + untouched.to_string());
  MemoryPolicy::bind({elsewhere}).apply(block, pages * kPage);
  for (size_t i = 0; i < pages; ++i) (void)static_cast<volatile char*>(block)[i * kPage];
  *evidence += " | after rebinding the block to node " + std::to_string(elsewhere) + " and reading it:";
  return ipc::numa::page_nodes(block, pages * kPage);
}

// ---------------------------------------------------------------------------------------------------------------
// Preferred many: pages go to the node of the set nearest to the faulting CPU's node (the kernel walks that node's
// zonelist, ordered by distance, restricted to the set).

// The nodes of `set` nearest to `from` by the distance table (several only when distances tie).
NodeSet nearest_nodes(const Topology& topo, int from, const NodeSet& set) {
  int best = -1;
  for (int n : set.ids()) {
    if (best < 0 || topo.distance(from, n) < best) best = topo.distance(from, n);
  }
  NodeSet out;
  for (int n : set.ids()) {
    if (topo.distance(from, n) == best) out.insert(n);
  }
  return out;
}

// The text numa_maps prints for a policy whose effective nodes are `nodes` ("bind=static|balancing:0-1").
std::string numa_maps_text(const std::string& mode, PolicyFlags flags, const NodeSet& nodes) {
  std::string out = mode;
  const bool balancing = has_flag(flags, PolicyFlags::kNumaBalancing);
  std::string node_flag = has_flag(flags, PolicyFlags::kStaticNodes)     ? "static"
                          : has_flag(flags, PolicyFlags::kRelativeNodes) ? "relative"
                                                                         : "";
  if (!node_flag.empty() || balancing) {
    out += "=" + node_flag + (!node_flag.empty() && balancing ? "|" : "") + (balancing ? "balancing" : "");
  }
  return nodes.empty() ? out : out + ":" + nodes.to_string();
}

// preferred_many over `set` (with `flags`), faulted in from a CPU of node `from`: every page on the nearest node.
std::string check_preferred_many(const Topology& topo, const NodeSet& set, PolicyFlags flags, int from, int cpu,
                                 int home_cpu) {
  PinnedTo pinned(cpu, home_cpu);
  MemoryPolicy policy(Mode::kPreferredMany, set, flags);
  Mapping m(Mapping::kPrivateAnonymous, 32);
  policy.apply(m.addr, m.length);
  std::string recorded = expect_policy_recorded(m.addr, policy, numa_maps_text("prefer (many)", flags, set));
  m.touch();
  std::vector<int> pages = ipc::numa::page_nodes(m.addr, m.length);
  NodeSet nearest = nearest_nodes(topo, from, set);
  require(nearest.contains(pages.at(0)), "page 0 is on node " + std::to_string(pages.at(0)) + ", expected the node of " +
                                             set.to_string() + " nearest to node " + std::to_string(from) + " (" +
                                             nearest.to_string() + "); pages: " + join(pages));
  return "faulted from cpu " + std::to_string(cpu) + " on node " + std::to_string(from) + ", nearest of " +
         set.to_string() + " is " + std::to_string(pages.at(0)) + ": " + expect_all_on(pages, pages.at(0)) + " | " +
         recorded;
}

// ---------------------------------------------------------------------------------------------------------------
// Static and relative node flags under a cpuset. The kernel resolves a policy's nodes against the nodes the
// caller's cpuset allows, when the policy is set and again whenever that set changes (set_mempolicy(2),
// Documentation/admin-guide/mm/numa_memory_policy.rst). Written out here from that documentation:
//   no flag   set:     policy nodes & allowed;           change: each node keeps its position (nodes_remap)
//   static    set:     policy nodes & allowed;           change: policy nodes & new allowed (ids never move)
//   relative  set and change: policy id i is the (i mod |allowed|)-th allowed node (nodes_fold + nodes_onto)
// (an empty result on change falls back to the whole allowed set). VMA policies of private mappings are rebound
// on a change; the shared policy of a shm object is resolved once, when it is set.

NodeSet intersect(const NodeSet& a, const NodeSet& b) { return a.minus(a.minus(b)); }

NodeSet relative_to(const NodeSet& ids, const NodeSet& allowed) {
  std::vector<int> allowed_ids = allowed.ids();
  NodeSet out;
  for (int i : ids.ids()) out.insert(allowed_ids[i % allowed_ids.size()]);
  return out;
}

NodeSet remap(const NodeSet& nodes, const NodeSet& from, const NodeSet& to) {
  std::vector<int> from_ids = from.ids(), to_ids = to.ids();
  NodeSet out;
  for (int n : nodes.ids()) {
    auto pos = std::find(from_ids.begin(), from_ids.end(), n);
    out.insert(pos == from_ids.end() ? n : to_ids[(pos - from_ids.begin()) % to_ids.size()]);
  }
  return out;
}

// A cgroup v2 cpuset, <cgroup2 mount>/numa_vm_cpuset, removed again when destroyed. Throws Skipped where this
// kernel or guest offers none.
class CpusetCgroup {
 public:
  explicit CpusetCgroup(const NodeSet& mems) {
    std::ifstream mounts("/proc/self/mounts");
    std::string device, dir, type;
    while (mounts >> device >> dir >> type && type != "cgroup2") mounts.ignore(4096, '\n');
    if (type != "cgroup2") throw Skipped("no cgroup v2 hierarchy is mounted");
    std::ifstream controllers(dir + "/cgroup.controllers");
    std::string all((std::istreambuf_iterator<char>(controllers)), std::istreambuf_iterator<char>());
    if (all.find("cpuset") == std::string::npos) {
      throw Skipped("the cgroup v2 hierarchy at " + dir + " has no cpuset controller (controllers: '" + all + "')");
    }
    write(dir + "/cgroup.subtree_control", "+cpuset");
    dir_ = dir + "/numa_vm_cpuset";
    if (mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) ipc::throw_errno("mkdir " + dir_);
    set_mems(mems);
  }
  ~CpusetCgroup() { rmdir(dir_.c_str()); }
  CpusetCgroup(const CpusetCgroup&) = delete;
  CpusetCgroup& operator=(const CpusetCgroup&) = delete;

  void set_mems(const NodeSet& mems) const { write(dir_ + "/cpuset.mems", mems.to_string()); }
  // Moves the calling process into the cgroup.
  void enter() const { write(dir_ + "/cgroup.procs", std::to_string(getpid())); }
  const std::string& dir() const { return dir_; }

 private:
  static void write(const std::string& path, const std::string& text) {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) ipc::throw_errno("open " + path);
    ssize_t n = ::write(fd, text.data(), text.size());
    int err = errno;
    close(fd);
    if (n != static_cast<ssize_t>(text.size())) throw ipc::SystemError(err, "write '" + text + "' to " + path);
  }
  std::string dir_;
};

// Runs `body` in a forked child that first moves into `cgroup` (so that this process keeps every node), and returns
// the body's evidence; a failure or skip in the child is rethrown here with its message.
std::string in_cpuset_child(const CpusetCgroup& cgroup, const std::function<std::string()>& body) {
  ipc::test::SharedMapping out(64 * 1024);
  enum : int { kPassed = 0, kFailed = 2, kSkipped = 3 };
  ipc::test::ForkedChild child([&]() -> int {
    int code = kPassed;
    std::string text;
    try {
      cgroup.enter();
      text = body();
    } catch (const Skipped& e) {
      code = kSkipped;
      text = e.what();
    } catch (const std::exception& e) {
      code = kFailed;
      text = e.what();
    }
    std::snprintf(out.as<char>(), out.bytes(), "%s", text.c_str());
    return code;
  });
  auto status = child.wait(std::chrono::seconds(60));
  require(status.has_value(), "the child in the cpuset did not finish within 60 s");
  std::string text = out.as<char>();
  if (*status == kSkipped) throw Skipped(text);
  require(*status == kPassed, "child in the cpuset (exit " + std::to_string(*status) + "): " + text);
  return "cgroup v2 " + cgroup.dir() + ": " + text;
}

// In a child whose cpuset allows `narrow`: applies interleave over `ids` with `flags` to a private mapping, checks
// get_mempolicy, numa_maps and the first half of the pages; widens cpuset.mems to `wide` and checks the second
// half, touched after the change. Returns the evidence of both phases.
std::string check_cpuset_interleave(const NodeSet& ids, PolicyFlags flags, const NodeSet& narrow, const NodeSet& wide) {
  const bool is_static = has_flag(flags, PolicyFlags::kStaticNodes);
  const bool is_relative = has_flag(flags, PolicyFlags::kRelativeNodes);
  const NodeSet at_set = is_relative ? relative_to(ids, narrow) : intersect(ids, narrow);
  NodeSet after_change = is_relative ? relative_to(ids, wide) : is_static ? intersect(ids, wide) : remap(at_set, narrow, wide);
  if (after_change.empty()) after_change = wide;
  // get_mempolicy reports the caller's ids for static and relative policies, the resolved nodes otherwise.
  const MemoryPolicy policy(Mode::kInterleave, ids, flags);
  const MemoryPolicy held_at_set = (is_static || is_relative) ? policy : MemoryPolicy(Mode::kInterleave, at_set);
  const MemoryPolicy held_after = (is_static || is_relative) ? policy : MemoryPolicy(Mode::kInterleave, after_change);
  CpusetCgroup cgroup(narrow);
  return in_cpuset_child(cgroup, [&] {
    const size_t half = 24;  // a multiple of every cycle length up to 4
    Mapping m(Mapping::kPrivateAnonymous, 2 * half);
    char* second = static_cast<char*>(m.addr) + half * kPage;
    policy.apply(m.addr, m.length);
    std::string out = "cpuset.mems " + narrow.to_string() + ": '" + policy.to_string() + "' " +
                      expect_policy_recorded(m.addr, held_at_set, numa_maps_text("interleave", flags, at_set));
    for (size_t off = 0; off < half * kPage; off += kPage) static_cast<volatile char*>(m.addr)[off] = 1;
    out += " " + expect_cycle(ipc::numa::page_nodes(m.addr, half * kPage), at_set.ids());
    cgroup.set_mems(wide);
    out += " || cpuset.mems " + wide.to_string() + ": " +
           expect_policy_recorded(m.addr, held_after, numa_maps_text("interleave", flags, after_change));
    for (size_t off = 0; off < half * kPage; off += kPage) static_cast<volatile char*>(second)[off] = 1;
    return out + " second half " + expect_cycle(ipc::numa::page_nodes(second, half * kPage), after_change.ids());
  });
}

// The kernel's verdict on a raw mbind of `mode` | MPOL_F_NUMA_BALANCING over `nodes` (0 or an errno), on a scratch
// page; the library cannot even build such a policy.
int raw_mbind_with_balancing(Mode mode, const NodeSet& nodes) {
  Mapping m(Mapping::kPrivateAnonymous, 1);
  long r = mbind(m.addr, m.length, static_cast<int>(mode) | ipc::numa::kernel::kMpolFNumaBalancing,
                 nodes.empty() ? nullptr : nodes.mask_words(), nodes.empty() ? 0 : NodeSet::mask_bits() + 1, 0);
  return r == 0 ? 0 : errno;
}

}  // namespace


// ---------------------------------------------------------------------------------------------------------------
// Pool workers (ipc/pool): placed on the right CPUs, their pipe rings and scratch arenas on their node, a map over
// an Array routed to the node of its pages, and stealing when one node's workers are busy. The tasks below run in
// the pool's worker processes (fork()s of this program).

int node_now() { return Topology::discover().node_of_cpu(sched_getcpu()); }

// Touches 1 MiB of the worker's scratch arena (256 pages, kept across the reset); returns the worker's pid.
int touch_scratch(int) {
  auto span = ipc::worker_scratch().allocate_array<unsigned char>(size_t{1} << 20);
  for (size_t i = 0; i < span.size(); i += kPage) span[i] = 1;
  return getpid();
}

std::pair<int64_t, int> sum_chunk(std::span<int64_t> chunk) {
  int64_t sum = 0;
  for (int64_t x : chunk) sum += x;
  return {sum, node_now()};
}

// Sets `started` in segment `segment`, then waits for `go`; returns the node it ran on.
int block_until_go(std::string segment, int) {
  auto seg = ipc::Segment::open(segment);
  ipc::Event::open(seg, "started").set();
  if (ipc::Event::open(seg, "go").wait(std::chrono::minutes(5)) != ipc::Outcome::kOk) {
    throw std::runtime_error("block_until_go: nobody set 'go' within 5 minutes");
  }
  return node_now();
}

std::vector<int> affinity_of(int pid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(pid, sizeof set, &set) != 0) ipc::throw_errno("sched_getaffinity");
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// The CPUs of `node` this process may use (`allowed`: the affinity it started with).
std::vector<int> allowed_of(const Topology& topo, int node, const std::vector<int>& allowed) {
  std::vector<int> cpus;
  for (int c : topo.node(node).cpus) {
    if (std::find(allowed.begin(), allowed.end(), c) != allowed.end()) cpus.push_back(c);
  }
  return cpus;
}

// Lets the calling thread run on every CPU in `allowed` (the pool places workers over the CPUs this process may
// use), and pins it back to `home` afterwards.
struct Unpinned {
  Unpinned(const std::vector<int>& allowed, int home) : home(home) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : allowed) CPU_SET(c, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) ipc::throw_errno("sched_setaffinity (all allowed CPUs)");
  }
  ~Unpinned() { pin_to_cpu(home); }
  int home;
};

// A pool with `placement` whose workers start by `method`; every worker runs tasks until each has touched its
// arena; then each worker's node, affinity, and the pages of its queue and arena are checked against `nodes` (the
// node of worker i).
std::string check_pool_placement(const ipc::Placement& placement, const std::vector<int>& nodes, const Topology& topo,
                                 ipc::StartMethod method = ipc::StartMethod::kFork) {
  ipc::PoolOptions o;
  o.start_method = method;
  o.workers = static_cast<unsigned>(nodes.size());
  o.placement = placement;
  o.scratch_bytes = 4u << 20;
  o.pipe_bytes = 1u << 16;
  ipc::Pool pool(o);
  // Tasks until every worker ran one (a map of single-task chunks spreads over the free workers).
  std::map<int, int> ran;  // pid -> tasks
  for (int round = 0; round < 50 && ran.size() < nodes.size(); ++round) {
    for (int pid : pool.map(touch_scratch, std::vector<int>(8 * nodes.size(), 0), 1)) ++ran[pid];
  }
  std::string evidence;
  const auto places = pool.placement();
  require(places.size() == nodes.size(), std::to_string(places.size()) + " workers reported");
  for (size_t i = 0; i < places.size(); ++i) {
    const auto& p = places[i];
    const std::vector<int> node_cpus = allowed_of(topo, nodes[i], topo.allowed_cpus());
    require(p.node == nodes[i], "worker " + std::to_string(i) + " is on node " + std::to_string(p.node) +
                                    ", expected " + std::to_string(nodes[i]));
    require(affinity_of(p.pid) == node_cpus, "worker " + std::to_string(p.pid) + " has affinity [" +
                                                 join(affinity_of(p.pid)) + "], node " + std::to_string(p.node) +
                                                 " has cpus [" + join(node_cpus) + "]");
    const auto& q = p.queue_pages;
    const auto& a = p.scratch_pages;
    require(q.pages_on(p.node) > 0 && q.pages_on(p.node) + q.pages_not_present == q.total_pages,
            "worker on node " + std::to_string(p.node) + ": queue pages " + q.to_string());
    require(a.pages_on(p.node) >= 256 && a.pages_on(p.node) + a.pages_not_present == a.total_pages,
            "worker on node " + std::to_string(p.node) + ": scratch pages " + a.to_string() +
                " (it ran " + std::to_string(ran[p.pid]) + " tasks)");
    evidence += "worker " + std::to_string(i) + " node " + std::to_string(p.node) + " cpus [" + join(p.cpus) +
                "] queue " + q.to_string() + " scratch " + a.to_string() + "; ";
  }
  return evidence;
}

// An Array of `pages` pages in `segment`, its first half on node 0 and its second half on node 1 (bound to node 0
// when made, then the second half moved with move_pages).
ipc::Array<int64_t>& half_and_half(ipc::Segment& segment, size_t pages) {
  const size_t n = pages * kPage / sizeof(int64_t);
  ipc::ArrayOptions ao;
  ao.policy = MemoryPolicy::bind(NodeSet{0});
  auto& a = ipc::Array<int64_t>::create(segment, "xs", n, ao);
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<int64_t>(i);
  std::vector<void*> addrs;
  for (size_t p = pages / 2; p < pages; ++p) addrs.push_back(reinterpret_cast<char*>(a.data()) + p * kPage);
  std::vector<int> to(addrs.size(), 1), status(addrs.size(), -1);
  if (move_pages(0, addrs.size(), addrs.data(), to.data(), status.data(), MPOL_MF_MOVE) != 0) {
    ipc::throw_errno("move_pages (second half to node 1)");
  }
  const auto first = ipc::numa::page_placement(a.data(), pages / 2 * kPage);
  const auto second = ipc::numa::page_placement(reinterpret_cast<char*>(a.data()) + pages / 2 * kPage, pages / 2 * kPage);
  require(first.pages_on(0) == pages / 2 && second.pages_on(1) == pages / 2,
          "the array is not half and half: first half " + first.to_string() + ", second half " + second.to_string());
  return a;
}

ipc::PoolOptions one_worker_on_node0_and_node1() {
  ipc::PoolOptions o;
  o.workers = 2;
  o.placement = ipc::Placement::spread({0, 1});
  return o;
}

std::string fraction(uint64_t at_home, uint64_t chunks) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu/%llu = %.1f%%", static_cast<unsigned long long>(at_home),
                static_cast<unsigned long long>(chunks), chunks ? 100.0 * at_home / chunks : 0.0);
  return buf;
}

int main(int argc, char** argv) {
  ipc::init(argc, argv);     // a pool worker started with StartMethod::kExec runs here and never returns
  ipc::start_fork_server();  // before any thread and any pinning, for the kForkServer checks
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const Expectations expect = parse_args(argc, argv);
  g_vm_mode = expect.nodes.has_value();

  const Topology topo = Topology::discover();
  const NodeSet online = topo.online();
  const int n_online = online.count();
  std::printf("VM-INFO: online nodes %s, allowed cpus %s\n", online.to_string().c_str(),
              join(topo.allowed_cpus(), ",").c_str());

  // Everything runs on the first allowed CPU unless a check pins elsewhere, so that "local" means node(cpu).
  const int home_cpu = topo.allowed_cpus().at(0);
  const int home_node = topo.node_of_cpu(home_cpu);
  g_usable = online;
  if (!g_vm_mode) {
    g_usable = NodeSet();
    for (int id : online.ids()) {
      if (topo.with_memory().contains(id) && topo.allowed_memory_nodes().contains(id)) g_usable.insert(id);
    }
  }
  // The nodes the per-node checks cover: those QEMU was told to create, or on the host those there are.
  std::vector<int> node_ids = g_usable.ids();
  if (expect.nodes) {
    node_ids.clear();
    for (int id = 0; id < *expect.nodes; ++id) node_ids.push_back(id);
  }
  pin_to_cpu(home_cpu);
  // A CPU of each node, among the CPUs we may use.
  auto cpu_of_node = [&](int node) -> int {
    for (int cpu : topo.node(node).cpus) {
      for (int allowed : topo.allowed_cpus()) {
        if (cpu == allowed) return cpu;
      }
    }
    throw Skipped("no usable CPU on node " + std::to_string(node));
  };

  // ---- Topology as the kernel reports it, against what QEMU was told.
  run_check("topology.node_count", [&] {
    if (!expect.nodes) throw Skipped("no --expect-nodes");
    require(n_online == *expect.nodes, "online nodes '" + online.to_string() + "', expected " +
                                           std::to_string(*expect.nodes) + " nodes");
    require(online == first_n(online, *expect.nodes) && online.first() == 0 && online.last() == *expect.nodes - 1,
            "online nodes are '" + online.to_string() + "'");
    return "online " + online.to_string() + ", with memory " + topo.with_memory().to_string();
  });
  run_check("topology.cpus_per_node", [&] {
    if (expect.cpus.empty()) throw Skipped("no --expect-cpus");
    require(static_cast<int>(expect.cpus.size()) == n_online, "expected CPU lists for " +
                                                                  std::to_string(expect.cpus.size()) + " nodes");
    std::string out;
    for (int id : online.ids()) {
      auto want = ipc::numa::parse_cpu_list(expect.cpus.at(id));
      require(topo.node(id).cpus == want, "node " + std::to_string(id) + " has cpus [" + join(topo.node(id).cpus) +
                                              "], expected [" + join(want) + "]");
      for (int cpu : want) require(topo.node_of_cpu(cpu) == id, "node_of_cpu(" + std::to_string(cpu) + ")");
      out += "node" + std::to_string(id) + "=[" + join(topo.node(id).cpus, ",") + "] ";
    }
    return out;
  });
  run_check("topology.distances", [&] {
    if (expect.distances.empty()) throw Skipped("no --expect-distances");
    require(static_cast<int>(expect.distances.size()) == n_online,
            "expected a " + std::to_string(expect.distances.size()) + "-node matrix, the machine has " +
                std::to_string(n_online) + " nodes");
    std::string out;
    for (int a : online.ids()) {
      for (int b : online.ids()) {
        int want = expect.distances.at(a).at(b);
        int got = topo.distance(a, b);
        require(got == want, "distance(" + std::to_string(a) + "," + std::to_string(b) + ") = " + std::to_string(got) +
                                 ", expected " + std::to_string(want));
      }
      out += (a ? "/" : "") + join(topo.node(a).distances, ",");
    }
    return "matrix " + out;
  });
  run_check("topology.interleave_weights", [&] {
    if (expect.weights.empty()) throw Skipped("no --expect-weights");
    require(topo.has_weighted_interleave(), "the kernel exposes no weighted-interleave weights");
    require(static_cast<int>(expect.weights.size()) == n_online,
            "expected weights for " + std::to_string(expect.weights.size()) + " nodes, the machine has " +
                std::to_string(n_online));
    std::string out;
    for (int id : online.ids()) {
      auto w = topo.node(id).interleave_weight;
      require(w.has_value() && static_cast<int>(*w) == expect.weights.at(id),
              "node " + std::to_string(id) + " weight " + (w ? std::to_string(*w) : "none") + ", expected " +
                  std::to_string(expect.weights.at(id)));
      out += "node" + std::to_string(id) + "=" + std::to_string(*w) + " ";
    }
    return out;
  });

  // ---- Validation against this machine's nodes: every online node is accepted, the next id is refused.
  std::vector<int> validate_ids = node_ids;
  validate_ids.push_back(std::max(node_ids.empty() ? 0 : node_ids.back(), online.last()) + 1);
  for (int id : validate_ids) {
    const bool should_accept = online.contains(id);
    run_check("validate.bind_node" + std::to_string(id) + (should_accept ? "_accepted" : "_refused"), [&] {
      if (expect.nodes && should_accept != (id < *expect.nodes)) {
        throw Failed("node " + std::to_string(id) + " is " + (should_accept ? "" : "not ") + "online, expected " +
                     std::to_string(*expect.nodes) + " nodes");
      }
      MemoryPolicy policy = MemoryPolicy::bind({id});
      try {
        policy.validate_for_this_machine();
      } catch (const ipc::numa::PolicyError& e) {
        require(!should_accept, std::string("refused an online node: ") + e.what());
        require(e.rule() == ipc::numa::PolicyRule::kNodeNotOnline,
                std::string("refused with the wrong rule: ") + ipc::numa::rule_name(e.rule()));
        // apply() must refuse it too, before mbind: the mapping keeps the default policy.
        Mapping m(Mapping::kShmem, 1);
        try {
          MemoryPolicy::interleave(NodeSet::parse("0-" + std::to_string(id))).apply(m.addr, m.length);
          throw Failed("apply(interleave:0-" + std::to_string(id) + ") was accepted");
        } catch (const ipc::numa::PolicyError&) {
        }
        require(MemoryPolicy::of_address(m.addr) == MemoryPolicy(), "a refused apply changed the mapping's policy");
        return std::string("refused: ") + e.what();
      }
      require(should_accept, "accepted bind:" + std::to_string(id) + " on a machine with nodes " + online.to_string());
      return "accepted bind:" + std::to_string(id);
    });
  }

  // ---- Interleave: round-robin over the listed nodes.
  run_check("interleave.all_nodes.shmem", [&] {
    NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    auto policy = MemoryPolicy::interleave(nodes);
    return check_pattern(Mapping::kShmem, policy, "interleave:" + nodes.to_string(), 16 * nodes.count(),
                         interleave_cycle(nodes));
  });
  run_check("interleave.all_nodes.private_anonymous", [&] {
    NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    auto policy = MemoryPolicy::interleave(nodes);
    return check_pattern(Mapping::kPrivateAnonymous, policy, "interleave:" + nodes.to_string(), 16 * nodes.count(),
                         interleave_cycle(nodes));
  });
  if (!expect.nodes || *expect.nodes >= 4) {
    run_check("interleave.subset_1_3.shmem", [&] {
      need_node(1);
      need_node(3);
      NodeSet nodes{1, 3};
      return check_pattern(Mapping::kShmem, MemoryPolicy::interleave(nodes), "interleave:1,3", 32,
                           interleave_cycle(nodes));
    });
  }

  // ---- Bind: every page on the bound node, for each node.
  for (int id : node_ids) {
    run_check("bind.node" + std::to_string(id), [&] {
      need_node(id);
      return check_all_on(Mapping::kShmem, MemoryPolicy::bind({id}), "bind:" + std::to_string(id), 32, id);
    });
  }

  // ---- Preferred: lands on the preferred node although this thread runs on another node.
  for (int id : node_ids) {
    run_check("preferred.node" + std::to_string(id), [&] {
      need_node(id);
      return check_all_on(Mapping::kPrivateAnonymous, MemoryPolicy::preferred(id), "prefer:" + std::to_string(id), 32,
                          id) +
             " (faulted from cpu " + std::to_string(home_cpu) + " on node " + std::to_string(home_node) + ")";
    });
  }

  // ---- Local / default: a page lands on the node of the CPU that faults it in.
  for (int id : node_ids) {
    run_check("local.node" + std::to_string(id), [&] {
      need_node(id);
      const int cpu = cpu_of_node(id);
      PinnedTo pinned(cpu, home_cpu);
      std::string a = check_all_on(Mapping::kPrivateAnonymous, MemoryPolicy::local(), "local", 16, id);
      Mapping m(Mapping::kPrivateAnonymous, 16);  // no policy at all: the default is local too
      m.touch();
      std::string b = expect_all_on(ipc::numa::page_nodes(m.addr, m.length), id);
      return "on cpu " + std::to_string(cpu) + ": local policy " + a + "; default policy " + b;
    });
  }

  // ---- Weighted interleave: the pattern follows the sysfs weights, with exact counts.
  auto weighted = [&](const NodeSet& nodes, size_t periods, Mapping::Kind kind) {
    Topology fresh = Topology::discover();  // weights as they are now
    if (!fresh.has_weighted_interleave()) throw Skipped("the kernel has no weighted interleave (Linux < 6.9)");
    auto cycle = weighted_cycle(nodes, fresh);
    std::string weights;
    for (int n : nodes.ids()) weights += " node" + std::to_string(n) + "=" + std::to_string(*fresh.node(n).interleave_weight);
    return "weights" + weights + " -> cycle [" + join(cycle) + "] | " +
           check_pattern(kind, MemoryPolicy::weighted_interleave(nodes),
                         "weighted interleave:" + nodes.to_string(), periods * cycle.size(), cycle);
  };
  run_check("weighted_interleave.all_nodes.shmem", [&] {
    return weighted(need_nodes(expect.nodes.value_or(1)), 4, Mapping::kShmem);
  });
  run_check("weighted_interleave.all_nodes.shmem_x4", [&] {
    return weighted(need_nodes(expect.nodes.value_or(1)), 16, Mapping::kShmem);
  });
  run_check("weighted_interleave.all_nodes.private_anonymous", [&] {
    return weighted(need_nodes(expect.nodes.value_or(1)), 4, Mapping::kPrivateAnonymous);
  });
  if (!expect.nodes || *expect.nodes >= 4) {
    run_check("weighted_interleave.subset_1_3.shmem", [&] {
      need_node(1);
      need_node(3);
      return weighted(NodeSet{1, 3}, 8, Mapping::kShmem);
    });
  }

  // ---- Preferred many: the node of the set nearest to the faulting CPU, for every node the CPU may be on. With all
  // nodes that is the CPU's own node; without it, the nearest other one (PREFERRED would take the set's first).
  for (int id : node_ids) {
    run_check("preferred_many.all_nodes.from_node" + std::to_string(id), [&] {
      NodeSet nodes = need_nodes(expect.nodes.value_or(1));
      need_node(id);
      return check_preferred_many(topo, nodes, PolicyFlags::kNone, id, cpu_of_node(id), home_cpu);
    });
    run_check("preferred_many.other_nodes.from_node" + std::to_string(id), [&] {
      NodeSet nodes = need_nodes(2);
      need_node(id);
      return check_preferred_many(topo, nodes.minus(NodeSet{id}), PolicyFlags::kNone, id, cpu_of_node(id), home_cpu);
    });
  }

  // ---- NUMA balancing: accepted with bind (Linux >= 5.12) and preferred_many (Linux >= 6.10), reported back by
  // get_mempolicy and numa_maps, placing pages as the mode does; refused with every other mode, by this library's
  // rules before any system call and by the kernel when asked directly.
  run_check("numa_balancing.bind", [&] {
    const int node = need_nodes(expect.nodes.value_or(1)).last();
    MemoryPolicy policy(Mode::kBind, {node}, PolicyFlags::kNumaBalancing);
    return check_all_on(Mapping::kPrivateAnonymous, policy,
                        numa_maps_text("bind", PolicyFlags::kNumaBalancing, NodeSet{node}), 32, node);
  });
  run_check("numa_balancing.bind_static", [&] {
    const NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    const int node = nodes.last();
    const PolicyFlags flags = PolicyFlags::kStaticNodes | PolicyFlags::kNumaBalancing;
    return check_all_on(Mapping::kPrivateAnonymous, MemoryPolicy(Mode::kBind, {node}, flags),
                        numa_maps_text("bind", flags, NodeSet{node}), 32, node);
  });
  run_check("numa_balancing.preferred_many", [&] {
    const NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    const NodeSet set = nodes.count() > 1 ? nodes.minus(NodeSet{home_node}) : nodes;
    if (kernel_version() < 610) {
      try {
        MemoryPolicy(Mode::kPreferredMany, set, PolicyFlags::kNumaBalancing).validate_for_this_machine();
      } catch (const ipc::Unsupported& e) {
        throw Skipped("Linux " + kernel_release() + " < 6.10 lacks it; refused as documented: " + e.what());
      }
      throw Failed("Linux " + kernel_release() + " < 6.10, yet preferred_many+balancing was accepted");
    }
    return check_preferred_many(topo, set, PolicyFlags::kNumaBalancing, home_node, home_cpu, home_cpu);
  });
  for (Mode mode : {Mode::kDefault, Mode::kLocal, Mode::kPreferred, Mode::kInterleave, Mode::kWeightedInterleave}) {
    run_check(std::string("numa_balancing.refused_with_") + ipc::numa::mode_name(mode), [&] {
      const bool takes_nodes = mode != Mode::kDefault && mode != Mode::kLocal;
      const NodeSet nodes = takes_nodes ? NodeSet{home_node} : NodeSet{};
      std::string library;
      try {
        MemoryPolicy(mode, nodes, PolicyFlags::kNumaBalancing);
        throw Failed("the library built " + std::string(ipc::numa::mode_name(mode)) + "+balancing");
      } catch (const ipc::numa::PolicyError& e) {
        const auto want = takes_nodes ? ipc::numa::PolicyRule::kBalancingNeedsBind
                                      : ipc::numa::PolicyRule::kDefaultLocalTakeNothing;
        require(e.rule() == want, std::string("refused with rule ") + ipc::numa::rule_name(e.rule()));
        library = ipc::numa::rule_name(e.rule());
      }
      const int err = raw_mbind_with_balancing(mode, nodes);
      require(err == EINVAL, "the kernel's mbind answered " + std::string(err ? std::strerror(err) : "success") +
                                 ", expected EINVAL");
      return "library: rule " + library + "; kernel " + kernel_release() +
             ": mbind(" + std::to_string(static_cast<int>(mode)) + " | MPOL_F_NUMA_BALANCING) = EINVAL";
    });
  }

  // ---- Static and relative node flags (and no flag) under a cgroup v2 cpuset that allows only the odd nodes, then
  // all of them. These checks change cgroups, so they run only in the VMs.
  auto cpuset_narrow = [&] {
    if (!g_vm_mode) throw Skipped("changes the machine's cgroups: runs only in the VM suite (--expect-nodes)");
    NodeSet nodes = need_nodes(2), odd;
    for (int id : nodes.ids()) {
      if (id % 2) odd.insert(id);
    }
    return odd;
  };
  run_check("cpuset.no_flag.interleave_remapped", [&] {
    const NodeSet narrow = cpuset_narrow();
    return check_cpuset_interleave(narrow, PolicyFlags::kNone, narrow, g_usable);
  });
  run_check("cpuset.static_nodes.interleave_kept", [&] {
    const NodeSet narrow = cpuset_narrow();
    return check_cpuset_interleave(narrow, PolicyFlags::kStaticNodes, narrow, g_usable);
  });
  run_check("cpuset.relative_nodes.interleave_0_1", [&] {
    const NodeSet narrow = cpuset_narrow();
    return check_cpuset_interleave(NodeSet{0, 1}, PolicyFlags::kRelativeNodes, narrow, g_usable);
  });
  // Node 0 is outside the cpuset: named as a real id (no flag, static) the kernel refuses it when the policy is
  // set; as a relative id it is the first allowed node.
  run_check("cpuset.bind_node0_outside", [&] {
    const NodeSet narrow = cpuset_narrow();
    CpusetCgroup cgroup(narrow);
    return in_cpuset_child(cgroup, [&] {
      std::string out = "cpuset.mems " + narrow.to_string() + ":";
      for (const char* text : {"bind:0", "bind:0+static"}) {
        Mapping m(Mapping::kPrivateAnonymous, 1);
        try {
          MemoryPolicy::parse(text).apply(m.addr, m.length);
          throw Failed(std::string("'") + text + "' was accepted outside the cpuset");
        } catch (const ipc::SystemError& e) {
          require(e.code() == EINVAL, std::string("'") + text + "' refused with " + e.what());
          require(MemoryPolicy::of_address(m.addr) == MemoryPolicy(), "a refused apply changed the policy");
          out += std::string(" '") + text + "' refused (" + e.what() + ");";
        }
      }
      const MemoryPolicy relative = MemoryPolicy::parse("bind:0+relative");
      return out + " '" + relative.to_string() + "' " +
             check_all_on(Mapping::kPrivateAnonymous, relative,
                          numa_maps_text("bind", PolicyFlags::kRelativeNodes, NodeSet{narrow.first()}), 32,
                          narrow.first());
    });
  });

  // ---- Segments: the policy is the shm object's, so pages another process faults in follow it.
  const int far_node = g_usable.empty() ? 0 : g_usable.last();
  run_check("segment.interleave.touched_by_child", [&] {
    NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    std::string evidence;
    auto pages = segment_touched_by_child(MemoryPolicy::interleave(nodes), 16 * nodes.count(), home_cpu, &evidence);
    return evidence + " | " + expect_cycle(pages, interleave_cycle(nodes));
  });
  run_check("segment.bind_far_node.touched_by_child_on_node0", [&] {
    need_nodes(expect.nodes.value_or(1));
    std::string evidence;
    auto pages = segment_touched_by_child(MemoryPolicy::bind({far_node}), 32, cpu_of_node(g_usable.first()), &evidence);
    return evidence + " | " + expect_all_on(pages, far_node);
  });
  run_check("segment.weighted_interleave.touched_by_child", [&] {
    NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    Topology fresh = Topology::discover();
    if (!fresh.has_weighted_interleave()) throw Skipped("the kernel has no weighted interleave (Linux < 6.9)");
    auto cycle = weighted_cycle(nodes, fresh);
    std::string evidence;
    auto pages = segment_touched_by_child(MemoryPolicy::weighted_interleave(nodes), 4 * cycle.size(), home_cpu,
                                          &evidence);
    return evidence + " | cycle [" + join(cycle) + "] " + expect_cycle(pages, cycle);
  });
  // Control: with the default policy and no reservation the child's pages land on the child's node, so the checks
  // above would see it if the segment's policy were not applied to the object.
  run_check("segment.default_policy.unreserved.child_places_locally", [&] {
    need_nodes(expect.nodes.value_or(1));
    std::string evidence;
    auto pages = segment_touched_by_child(MemoryPolicy(), 16, cpu_of_node(far_node), &evidence, /*reserve=*/false);
    return evidence + " | " + expect_all_on(pages, far_node);
  });
  // Reserved (the default), a default-policy segment's pages are placed at creation, on the creator's node: the
  // child on another node finds them there (docs/segment.md: first-touch placement needs reserve = false).
  run_check("segment.default_policy.reserved_on_creators_node", [&] {
    need_nodes(expect.nodes.value_or(1));
    std::string evidence;
    auto pages = segment_touched_by_child(MemoryPolicy(), 16, cpu_of_node(far_node), &evidence);
    return evidence + " | " + expect_all_on(pages, home_node);
  });

  // ---- Reserved at creation: the pages fallocate reserved already follow the policy, before any touch.
  run_check("segment.reserve.bind_far_node.before_touch", [&] {
    need_nodes(expect.nodes.value_or(1));
    constexpr size_t kPages = 1024;
    std::map<int, long> growth;
    std::string evidence;
    auto pages = reserved_block_nodes(MemoryPolicy::bind({far_node}), kPages, g_usable.first(), &growth, &evidence);
    require(growth[far_node] >= static_cast<long>(kPages) * 9 / 10,
            "node " + std::to_string(far_node) + " did not gain the reserved pages: " + evidence);
    return evidence + " " + expect_all_on(pages, far_node);
  });
  run_check("segment.reserve.interleave.before_touch", [&] {
    const NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    const size_t pages_count = 512 * static_cast<size_t>(nodes.count());
    std::map<int, long> growth;
    std::string evidence;
    auto pages = reserved_block_nodes(MemoryPolicy::interleave(nodes), pages_count, g_usable.first(), &growth,
                                      &evidence);
    for (int id : nodes.ids()) {
      require(growth[id] >= 512 * 9 / 10, "node " + std::to_string(id) + " did not gain its share: " + evidence);
    }
    return evidence + " " + expect_cycle(pages, interleave_cycle(nodes));
  });
  // An Array's own policy inside a default-policy segment created on another node: the segment reserved every
  // page on its creator's node, and the array's element pages are placed again by the array's policy.
  run_check("segment.reserve.array_own_policy_replaces_reserved_pages", [&] {
    need_nodes(expect.nodes.value_or(1));
    const int target = g_usable.first();
    std::optional<ipc::Segment> segment;
    {
      PinnedTo far(cpu_of_node(far_node), home_cpu);  // the creator, and so the reserved pages, on the last node
      segment.emplace(ipc::Segment::create(ipc::test::unique_name("numa_vm_array"), 4u << 20));
    }
    madvise(segment->base(), segment->size_bytes(), MADV_NOHUGEPAGE);
    ipc::ArrayOptions ao;
    ao.policy = MemoryPolicy::bind({target});
    auto& array = ipc::Array<int64_t>::create(*segment, "xs", 256 * kPage / sizeof(int64_t), ao);
    return "segment reserved on node " + std::to_string(far_node) + "; array bound to node " +
           std::to_string(target) + ": " + expect_all_on(ipc::numa::page_nodes(array.data(), 256 * kPage), target);
  });
  // A node that cannot hold a bound segment: refused at creation, nothing left. /dev/shm is made larger than the
  // node first (a tmpfs size is a limit, not memory), so that only the node's memory is short.
  run_check("segment.reserve.bind_node_too_small.refused", [&] {
    if (!g_vm_mode) throw Skipped("remounts /dev/shm: runs only in the VM suite (the host has segment_test)");
    need_nodes(expect.nodes.value_or(1));
    const uint64_t available = Topology::discover().node(far_node).memory_available_bytes;
    const size_t size = available + (size_t{64} << 20);
    const std::string shm_size = "size=" + std::to_string(4 * size);
    if (mount("tmpfs", "/dev/shm", "tmpfs", MS_REMOUNT, shm_size.c_str()) != 0) ipc::throw_errno("remount /dev/shm");
    ipc::SegmentOptions options;
    options.policy = MemoryPolicy::bind({far_node});
    const std::string name = ipc::test::unique_name("numa_vm_too_big");
    try {
      ipc::Segment::create(name, size, options);
    } catch (const ipc::ResourceExhausted& e) {
      require(std::string(e.what()).find("bound to node(s) " + std::to_string(far_node)) != std::string::npos,
              std::string("message: ") + e.what());
      require(access(("/dev/shm/numa_mp." + name).c_str(), F_OK) != 0, "the refused segment's name exists");
      return std::string("node ") + std::to_string(far_node) + " has " + std::to_string(available >> 20) +
             " MiB available: " + e.what();
    }
    throw Failed("a segment of " + std::to_string(size) + " bytes bound to node " + std::to_string(far_node) +
                 " was created");
  });

  // ---- Pool workers.
  // Workers forked by this process, by the fork server (which started before any placement), and exec'd anew:
  // each is placed from the setup it receives, not from what it inherited.
  for (const auto& [name, method] : {std::pair{"", ipc::StartMethod::kFork},
                                     std::pair{"forkserver.", ipc::StartMethod::kForkServer},
                                     std::pair{"exec.", ipc::StartMethod::kExec}}) {
    run_check(std::string("pool.spread.") + name + "cpus_queue_scratch_on_node", [&, method = method] {
      const NodeSet nodes = need_nodes(expect.nodes.value_or(1));
      Unpinned all(topo.allowed_cpus(), home_cpu);
      std::vector<int> expected;
      for (size_t i = 0; i < 2 * nodes.ids().size(); ++i) expected.push_back(nodes.ids()[i % nodes.ids().size()]);
      return check_pool_placement(ipc::Placement::spread(), expected, topo, method);
    });
  }
  run_check("pool.pack.cpus_queue_scratch_on_node", [&] {
    const NodeSet nodes = need_nodes(expect.nodes.value_or(1));
    Unpinned all(topo.allowed_cpus(), home_cpu);
    // Pack over the nodes in reverse order: the last node's CPUs first, then the next.
    std::vector<int> order = nodes.ids(), expected;
    std::reverse(order.begin(), order.end());
    for (int node : order) {
      for (size_t c = 0; c < allowed_of(topo, node, topo.allowed_cpus()).size(); ++c) expected.push_back(node);
    }
    return check_pool_placement(ipc::Placement::pack(order), expected, topo);
  });
  run_check("pool.map_array.half_node0_half_node1", [&] {
    need_nodes(2);
    Unpinned all(topo.allowed_cpus(), home_cpu);
    auto segment = ipc::Segment::create(ipc::test::unique_name("vm-pool-array"), 4u << 20);
    constexpr size_t kPages = 512, kChunkPages = 4;
    auto& array = half_and_half(segment, kPages);
    ipc::Pool pool(one_worker_on_node0_and_node1());
    ipc::ArrayMapOptions mo;
    mo.chunk_elements = kChunkPages * kPage / sizeof(int64_t);
    std::string evidence = "array " + ipc::numa::page_placement(array.data(), kPages * kPage).to_string();
    for (bool locality : {true, false}) {
      mo.locality = locality;
      const auto r = pool.map_array(sum_chunk, segment, array, mo);
      require(r.chunks == kPages / kChunkPages && r.chunks_with_home == r.chunks,
              std::to_string(r.chunks) + " chunks, " + std::to_string(r.chunks_with_home) + " with a home");
      int64_t total = 0;
      for (auto [sum, node] : r.results) total += sum;
      const int64_t n = static_cast<int64_t>(array.size());
      require(total == n * (n - 1) / 2, "the chunk sums add up to " + std::to_string(total));
      evidence += std::string(" | locality ") + (locality ? "on" : "off") + ": at home " +
                  fraction(r.chunks_at_home, r.chunks);
      if (locality) {
        require(r.chunks_at_home * 100 >= 95 * r.chunks, "locality on ran only " +
                                                             fraction(r.chunks_at_home, r.chunks) + " at home");
      }
    }
    return evidence;
  });
  run_check("pool.map_array.node1_steals_while_node0_is_blocked", [&] {
    need_nodes(2);
    Unpinned all(topo.allowed_cpus(), home_cpu);
    auto segment = ipc::Segment::create(ipc::test::unique_name("vm-pool-steal"), 4u << 20);
    constexpr size_t kPages = 64, kChunkPages = 4;
    auto& array = half_and_half(segment, kPages);
    auto& started = ipc::Event::create(segment, "started");
    auto& go = ipc::Event::create(segment, "go");
    ipc::Pool pool(one_worker_on_node0_and_node1());
    auto blocker = pool.apply_async_on(0, block_until_go, segment.name(), 0);
    struct Release {  // whatever happens below, the blocker ends
      ipc::Event& go;
      ~Release() { go.set(); }
    } release{go};
    require(started.wait(ipc::test::patience(std::chrono::seconds(60))) == ipc::Outcome::kOk,
            "the blocking task never started on a worker");
    // A busy worker takes a second small task only while its first is under 1 ms old (docs/pool.md): let that
    // window pass so that node 0's chunks cannot queue behind the blocker.
    const auto seen = std::chrono::steady_clock::now();
    (void)ipc::test::wait_until([&] { return std::chrono::steady_clock::now() - seen > std::chrono::milliseconds(5); });
    ipc::ArrayMapOptions mo;
    mo.chunk_elements = kChunkPages * kPage / sizeof(int64_t);
    auto f = pool.map_array_async(sum_chunk, segment, array, mo);
    auto r = f.get(ipc::test::patience(std::chrono::seconds(60)));
    require(r.has_value(), "the map did not finish while node 0's worker was blocked (no stealing?)");
    require(!blocker.ready(), "the blocker finished before 'go' was set");
    int on_node1 = 0;
    for (auto [sum, node] : r->results) on_node1 += node == 1 ? 1 : 0;
    require(on_node1 == static_cast<int>(r->chunks), std::to_string(on_node1) + " of " + std::to_string(r->chunks) +
                                                         " chunks ran on node 1");
    go.set();
    const auto blocked_on = blocker.get(ipc::test::patience(std::chrono::seconds(60)));
    require(blocked_on == 0, "the blocker ran on node " + (blocked_on ? std::to_string(*blocked_on) : "?"));
    return "node 0's worker blocked; node 1 ran " + std::to_string(on_node1) + "/" + std::to_string(r->chunks) +
           " chunks, at home " + fraction(r->chunks_at_home, r->chunks) + " (node 0's half stolen)";
  });

  if (g_vm_mode && g_passed == 0) ++g_failed;
  std::printf("VM-RESULT: %d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
  std::fflush(stdout);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}

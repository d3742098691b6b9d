#include "ipc/numa/placement.h"

#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "ipc/base/error.h"

namespace ipc::numa {

std::string PagePlacement::to_string() const {
  std::ostringstream out;
  for (auto [node, pages] : pages_on_node) out << node << ':' << pages << ' ';
  out << "absent:" << pages_not_present;
  return out.str();
}

namespace {

// move_pages with no target nodes: each page's node into `status` (-1: not present). The kernel takes at most a
// bounded batch per call on some versions; query in chunks.
void query_nodes(int pid, std::vector<void*>& pages, std::vector<int>& status) {
  constexpr size_t kBatch = 4096;
  for (size_t i = 0; i < pages.size(); i += kBatch) {
    size_t n = std::min(kBatch, pages.size() - i);
    if (move_pages(pid, n, pages.data() + i, nullptr, status.data() + i, 0) != 0) throw_errno("move_pages (query)");
  }
  for (auto& s : status) {
    if (s == -EFAULT) throw InvalidArgument("page_placement: the range is not mapped");
    if (s < 0) s = -1;  // -ENOENT: not faulted in yet
  }
}

PagePlacement count_nodes(const std::vector<int>& nodes) {
  PagePlacement p;
  for (int node : nodes) {
    ++p.total_pages;
    if (node < 0) ++p.pages_not_present;
    else ++p.pages_on_node[node];
  }
  return p;
}

}  // namespace

std::vector<int> page_nodes(const void* addr, size_t length) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(addr) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(addr) + length;
  const size_t count = (end - start + page - 1) / page;
  std::vector<void*> pages(count);
  std::vector<int> status(count, -1);
  for (size_t i = 0; i < count; ++i) pages[i] = reinterpret_cast<void*>(start + i * page);
  // move_pages reports only pages in *this* process's page tables. A shared page that another process faulted in
  // is resident in the object (mincore says so) but not yet mapped here: read one byte of each resident page to
  // map it. Reading never allocates, because only pages already resident are read.
  std::vector<unsigned char> resident(count);
  if (mincore(reinterpret_cast<void*>(start), count * page, resident.data()) != 0) {
    if (errno == ENOMEM) throw InvalidArgument("page_placement: the range is not mapped");
    throw_errno("mincore");
  }
  for (size_t i = 0; i < count; ++i) {
    if (resident[i] & 1) (void)*static_cast<const volatile char*>(pages[i]);
  }
  query_nodes(0, pages, status);
  return status;
}

PagePlacement page_placement(const void* addr, size_t length) { return count_nodes(page_nodes(addr, length)); }

PagePlacement page_placement_in(int pid, uintptr_t addr, size_t length) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = addr & ~(page - 1);
  const size_t count = (addr + length - start + page - 1) / page;
  std::vector<void*> pages(count);
  std::vector<int> status(count, -1);
  for (size_t i = 0; i < count; ++i) pages[i] = reinterpret_cast<void*>(start + i * page);
  query_nodes(pid, pages, status);
  return count_nodes(status);
}

std::string numa_maps_policy(const void* addr) {
  std::ifstream in("/proc/self/numa_maps");
  std::string line;
  const uintptr_t target = reinterpret_cast<uintptr_t>(addr);
  // numa_maps lines start with the mapping's start address; the mapping containing `addr` is the last one whose
  // start is <= addr (maps are sorted by address).
  std::string best;
  while (std::getline(in, line)) {
    uintptr_t start = std::strtoull(line.c_str(), nullptr, 16);
    if (start > target) break;
    best = line;
  }
  if (best.empty()) return "";
  std::istringstream fields(best);
  std::string address, policy;
  fields >> address >> policy;
  // Two mode names contain a space: "weighted interleave:0-1" and "prefer (many):0-1". Keep their second word.
  if (policy == "weighted" || (policy == "prefer" && (fields >> std::ws).peek() == '(')) {
    std::string rest;
    fields >> rest;
    policy += " " + rest;
  }
  return policy;
}

}  // namespace ipc::numa

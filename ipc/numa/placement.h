// ipc/numa/placement.h: where the pages of a memory range actually are, and which policy the kernel holds.
//
// Threads: free functions; safe from any thread.
// Processes: they inspect the calling process's own mappings (which for a shared segment show the shared pages).
// Lifetime: a PagePlacement is a snapshot; pages can move later (migration, NUMA balancing).
// Errors: a failing system call throws ipc::SystemError; a range that is not mapped throws ipc::InvalidArgument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ipc::numa {

struct PagePlacement {
  std::map<int, size_t> pages_on_node;  // node id -> resident pages of the range on it
  size_t pages_not_present = 0;         // pages never touched (or swapped out)
  size_t total_pages = 0;

  size_t pages_on(int node) const {
    auto it = pages_on_node.find(node);
    return it == pages_on_node.end() ? 0 : it->second;
  }
  // "0:512 1:512 absent:0"
  std::string to_string() const;
};

// Asks the kernel (move_pages with no target nodes) where each page of [addr, addr + length) lives, including
// shared pages that other processes faulted in. Never allocates a page: pages nobody touched count as not present.
PagePlacement page_placement(const void* addr, size_t length);

// The node of each page in order (-1 for a page not present), for tests that check round-robin order.
std::vector<int> page_nodes(const void* addr, size_t length);

// As page_placement, for [addr, addr + length) in the address space of process `pid` (a child, say: the kernel
// allows it when this process could read the other's memory, e.g. the same user). Only pages already mapped in
// that process count as present. Throws SystemError (ESRCH: no such process; EPERM: not allowed) and
// InvalidArgument when the range is not mapped there.
PagePlacement page_placement_in(int pid, uintptr_t addr, size_t length);

// The policy column of /proc/self/numa_maps for the mapping that contains `addr` ("interleave:0-1", "default",
// "bind:0", "prefer:0", "prefer (many):0-1", "weighted interleave:0-1", "bind=static:1", "bind=balancing:0"), or
// "" when the kernel has no numa_maps. The nodes are the effective ones (after a cpuset resolved them).
std::string numa_maps_policy(const void* addr);

}  // namespace ipc::numa

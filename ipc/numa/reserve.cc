#include "ipc/numa/reserve.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "ipc/base/error.h"
#include "ipc/numa/topology.h"

namespace ipc::numa {

namespace {

// "1073741824 bytes (1024 MiB)"
std::string bytes_text(uint64_t bytes) {
  return std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 20) + " MiB)";
}

// MemAvailable of /proc/meminfo: what the machine can give without swapping; 0 when unreadable.
uint64_t machine_memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    in.ignore(64, '\n');
  }
  return 0;
}

// The nodes a BIND policy's pages may land on: its own, or for RELATIVE_NODES the allowed nodes they stand for.
NodeSet bound_nodes(const MemoryPolicy& policy, const Topology& topology) {
  if (!has_flag(policy.flags(), PolicyFlags::kRelativeNodes)) return policy.nodes();
  const auto allowed = topology.allowed_memory_nodes().ids();
  NodeSet nodes;
  if (allowed.empty()) return nodes;
  for (int relative : policy.nodes().ids()) nodes.insert(allowed[static_cast<size_t>(relative) % allowed.size()]);
  return nodes;
}

}  // namespace

void check_room(const ReservedFile& file, uint64_t bytes, const MemoryPolicy& policy) {
  struct statvfs vfs;
  if (fstatvfs(file.fd, &vfs) != 0) throw_errno("statvfs of " + file.where + " for " + file.what);
  struct stat st;
  if (fstat(file.fd, &st) != 0) throw_errno("fstat " + file.what);
  // Blocks the file holds already are its own to keep (a new file holds none).
  const uint64_t held = static_cast<uint64_t>(st.st_blocks) * 512;
  if (vfs.f_blocks > 0) {
    const uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize + held;
    if (bytes > free) {
      throw ResourceExhausted(file.what + " needs " + bytes_text(bytes) + ", but " + file.where + " has only " +
                              bytes_text(free) + " free");
    }
  } else if (const uint64_t available = machine_memory_available(); available > 0 && bytes > available + held) {
    // No size limit on the file system (memfd): the machine's memory is the limit.
    throw ResourceExhausted(file.what + " needs " + bytes_text(bytes) + ", but the machine has only " +
                            bytes_text(available) + " of memory available");
  }
  if (policy.mode() != Mode::kBind) return;  // every other mode falls back to other nodes when its own are full
  const Topology topology = Topology::discover();
  uint64_t available = 0;
  for (int id : bound_nodes(policy, topology).ids()) {
    if (!topology.online().contains(id)) continue;
    const NodeInfo& node = topology.node(id);
    if (node.memory_total_bytes == 0) return;  // the kernel does not report node memory: nothing to compare
    available += node.memory_available_bytes;
  }
  if (bytes > available + held) {
    throw ResourceExhausted(file.what + " needs " + bytes_text(bytes) + " bound to node(s) " +
                            bound_nodes(policy, topology).to_string() + " (policy '" + policy.to_string() +
                            "'), but they have only " + bytes_text(available) + " of memory available");
  }
}

void reserve_pages(const ReservedFile& file, uint64_t bytes, const MemoryPolicy& policy) {
  check_room(file, bytes, policy);
  if (retry_on_eintr([&] { return ::fallocate(file.fd, 0, 0, static_cast<off_t>(bytes)); }) == 0) return;
  const int error = errno;
  if (error == EOPNOTSUPP) return;
  if (error == ENOSPC || error == ENOMEM) {
    struct statvfs vfs;
    const std::string free = fstatvfs(file.fd, &vfs) == 0 && vfs.f_blocks > 0
                                 ? bytes_text(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize) + " free in " +
                                       file.where
                                 : bytes_text(machine_memory_available()) + " of memory available";
    throw ResourceExhausted(file.what + " needs " + bytes_text(bytes) + " (policy '" + policy.to_string() +
                            "'), but the kernel could not allocate them (" +
                            std::generic_category().message(error) + "); now " + free);
  }
  throw SystemError(error, "fallocate " + std::to_string(bytes) + " bytes for " + file.what);
}

void reserve_range(void* addr, size_t bytes, const MemoryPolicy& policy, const std::string& what) {
  policy.apply(addr, bytes);
  if (::madvise(addr, bytes, MADV_REMOVE) != 0) {
    if (errno == EINVAL) return;  // not shared memory: no page was reserved, each faults in by the policy
    throw_errno("madvise(MADV_REMOVE) " + what);
  }
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE (Linux 5.14), absent from older headers
  if (::madvise(addr, bytes, kPopulateWrite) == 0) return;
  const int error = errno;
  if (error == EINVAL) return;  // an older kernel: the pages are allocated at their first touch
  if (error == EFAULT || error == ENOMEM) {
    throw ResourceExhausted(what + " needs " + bytes_text(bytes) + " placed by policy '" + policy.to_string() +
                            "', but the kernel could not allocate them (" + std::generic_category().message(error) +
                            "); " + bytes_text(machine_memory_available()) + " of memory available");
  }
  throw SystemError(error, "madvise(MADV_POPULATE_WRITE) " + what);
}

}  // namespace ipc::numa

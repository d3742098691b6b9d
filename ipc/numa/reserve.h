// ipc/numa/reserve.h: reserving the pages of a shared-memory file when it is created, under its memory policy, so
// that too little memory is an error at creation and never a SIGBUS at a later first touch.
//
// Threads: free functions; safe from any thread.
// Processes: they act on a file descriptor; every process that maps the file afterwards finds the pages there.
// Lifetime: reserved pages belong to the file (a segment in /dev/shm, a memfd) and are freed with it.
// Errors: too little room throws ipc::ResourceExhausted saying how much was asked and how much is free; a failing
//   system call throws ipc::SystemError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ipc/numa/memory_policy.h"

namespace ipc::numa {

// What reserve_pages() and check_room() name in their messages: the object ("segment 'app'") and where its memory
// comes from ("/dev/shm").
struct ReservedFile {
  int fd;
  std::string what;
  std::string where;
};

// Checks, without allocating anything, that `bytes` fit in the free space of the file system holding `file` (for a
// file system without a size limit, such as memfd's, in the memory available to the machine) and, when `policy`
// binds to nodes (BIND), in the memory available on those nodes. Throws ResourceExhausted otherwise.
void check_room(const ReservedFile& file, uint64_t bytes, const MemoryPolicy& policy);

// check_room(), then allocates every page of the first `bytes` of `file` now (fallocate(2)). The pages follow the
// policy already set on the file: apply() it to a MAP_SHARED mapping of the file first (a tmpfs file keeps it as
// its shared policy, and fallocate places each page by it). The pages are not written (the kernel zeroes each at
// its first touch), so this costs the allocation, not a pass over the memory. Throws ResourceExhausted when the
// kernel cannot allocate them (ENOSPC, ENOMEM); none stays allocated then. On a file system without fallocate
// (not tmpfs) the file stays sparse, as ftruncate left it.
void reserve_pages(const ReservedFile& file, uint64_t bytes, const MemoryPolicy& policy);

// Gives the page-aligned range [addr, addr + bytes) of a shared mapping its own policy even though its pages were
// reserved already (a block inside a segment whose pages reserve_pages() placed by the segment's policy): sets the
// policy (MemoryPolicy::apply), gives the range's pages back (MADV_REMOVE; their contents are lost) and allocates
// them again under the new policy (MADV_POPULATE_WRITE; on kernels before 5.14 at their first touch). For a range
// that holds nothing yet. Throws ResourceExhausted when the pages cannot be allocated again (`what` names the
// range), SystemError when a call fails otherwise. A private mapping only gets the policy (it reserved nothing).
void reserve_range(void* addr, size_t bytes, const MemoryPolicy& policy, const std::string& what);

}  // namespace ipc::numa

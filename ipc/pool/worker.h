// ipc/pool/worker.h: what a task can ask of the pool worker it runs in: its scratch arena.
//
//   double spread(std::vector<double> xs) {                      // a Pool task
//     auto& scratch = ipc::worker_scratch();                      // on the worker's NUMA node
//     std::span<double> tmp = scratch.allocate_array<double>(xs.size());   // no malloc, never freed by hand
//     std::pmr::vector<int> idx(scratch.resource());              // or any pmr container
//     ...
//   }                                                             // the arena is reset when the task (chunk) ends
//
// Each worker owns one ipc::numa::ScratchArena of PoolOptions::scratch_bytes of address space (pages only when
// touched), reserved by the worker's first worker_scratch() call (a worker whose tasks never ask reserves nothing),
// after it pinned itself: bound to its node when the pool is placed (and the node has memory), else under the
// process's policy; transparent huge pages where the system has them.
// Threads: the arena belongs to the task: use it from the task's thread (or hand it to one thread at a time).
// Processes: it is the worker's private memory; nothing in it survives the task or crosses to the pool.
// Lifetime: every allocation ends when the task (for map, imap and starmap: the chunk) returns or throws; the
//   arena keeps up to 16 MiB of touched pages for the next task and gives the rest back to the kernel.
// Errors: worker_scratch() throws StateError outside a pool worker and in a pool made with scratch_bytes = 0, and
//   what ScratchArena's constructor throws when the first call cannot reserve the arena (the task fails with it);
//   allocations past the capacity throw numa::ScratchExhausted (std::bad_alloc through resource()).
#pragma once

#include "ipc/numa/scratch_arena.h"

namespace ipc {

// The calling worker's scratch arena (see above). Throws StateError outside a pool worker, or without an arena.
numa::ScratchArena& worker_scratch();

}  // namespace ipc

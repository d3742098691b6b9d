// ipc/queue/status.h: read-only introspection of any queue in a segment, whatever its element type, for tools
// such as `numa_mp inspect`.
//
//   for (const ipc::BlockInfo& b : seg.blocks())
//     if (ipc::is_queue(b)) { ipc::QueueStatus s = ipc::queue_status(seg, b.name); ... s.size_approx ... }
//
// Threads, Processes: any thread of any process that opened the segment; it takes no role (an SpscQueue's
//   producer and consumer are left alone) and puts and gets nothing.
// Lifetime: a snapshot; the queue moves on while the caller reads it.
// Errors: a missing name throws NotFound; a name that holds no queue, or a queue whose header is corrupt, throws
//   InvalidArgument.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/segment/segment.h"

namespace ipc {

struct QueueStatus {
  std::string kind;          // "Queue", "JoinableQueue", "MessageQueue" or "SpscQueue"
  uint64_t capacity = 0;     // slots
  uint64_t size_approx = 0;  // messages in the queue (an estimate while others put and get)
  uint64_t abandoned_count = 0;  // messages lost to processes killed mid-operation (as abandoned_count())
  bool closed = false;
  // Queue, JoinableQueue, MessageQueue: the pid of the lone producer (consumer) whose thread holds that side's
  // lease and claims by store (docs/queue.md, "Leases"); 0 when the side is shared or nobody claimed there yet.
  // It may have died since: the next claimer takes the lease over. SpscQueue: 0.
  uint32_t lone_producer = 0;
  uint32_t lone_consumer = 0;
};

// Whether the named block is one of this library's queues (Queue, JoinableQueue, SimpleQueue's Queue,
// MessageQueue, SpscQueue).
bool is_queue(const BlockInfo& block);

// The state of the queue named `name` in `segment`. Settles what dead processes held first, as the queue's own
// abandoned_count() does (a MessageQueue: the slots and arena pages of processes killed mid-put or mid-get). Any
// process.
QueueStatus queue_status(const Segment& segment, std::string_view name);

}  // namespace ipc

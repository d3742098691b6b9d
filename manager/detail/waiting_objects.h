// manager/detail/waiting_objects.h: the shared objects whose calls may wait: Queue, Lock and Event. Each
// blocking call is a long poll on the server (with_timeout), failed when its object is removed. Internal to the
// objects target.
//
// Threads, processes, lifetime and errors: as objects.h.
#pragma once

#include <kj/timer.h>

#include <cstdint>
#include <string>

#include "manager/detail/object_base.h"

namespace ipc::manager::detail {

struct NetworkRef;

MadeObject make_queue(std::string name, kj::Timer& timer, std::uint64_t max_size);
MadeObject make_lock(std::string name, kj::Timer& timer);
MadeObject make_event(std::string name, kj::Timer& timer);

// The capability of `queue` (made by make_queue) for the connection `link`: a queue's gets follow their item to
// the client that asked (see Delivery in waiting_objects.cc and SocketVatNetwork).
wire::Queue::Client queue_endpoint(ObjectBase& queue, wire::Queue::Client cap, NetworkRef& link);

}  // namespace ipc::manager::detail

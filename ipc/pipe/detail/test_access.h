// ipc/pipe/detail/test_access.h (internal, for tests only): points inside send() where a test can stop a process,
// and the rings behind a Connection, so that a test can stop a sender between the parts of a long message or
// corrupt a record in shared memory. The library never installs a hook.
//
// Threads/Processes: the hook is process-local (a fork()ed child inherits it). Lifetime: static.
// Errors: whatever the hook does.
#pragma once

#include <atomic>

#include "ipc/pipe/connection.h"

namespace ipc::detail {

enum class PipeHookPoint {
  kPartSent,  // a sender committed one part of a multi-part message and rang the receiver; more parts follow
  // A sender committed the last record of a message that took the out-of-line path (a long message's last part,
  // or a whole message sent after a wait) and has not yet looked whether the receiver sleeps.
  kMessageCommitted,
};

using PipeTestHook = void (*)(PipeHookPoint);
extern std::atomic<PipeTestHook> g_pipe_test_hook;

struct PipeTestAccess {
  // The ring this end receives from / sends into. REQUIRES: the end has that direction.
  static ByteRing& receiving_ring(Connection& c) { return c.in_->ring; }
  static ByteRing& sending_ring(Connection& c) { return c.out_->ring; }
};

}  // namespace ipc::detail

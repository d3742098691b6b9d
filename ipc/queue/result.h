// ipc/queue/result.h: what the queues of ipc/queue report beyond ipc/base/error.h.
//
// Threads / Processes: plain values. Lifetime: none. Errors: expected outcomes are ipc::Outcome values
// (ipc/base/error.h lists which call returns which); a missing queue name throws NotFound; misuse and OS
// failures are MessageTooLarge below and the exceptions of ipc/base/error.h.
#pragma once

#include "ipc/base/error.h"

namespace ipc {

// A message larger than the queue can ever hold (its max_message_bytes()). Thrown at once, before anything is
// claimed: waiting could never help.
class MessageTooLarge : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

}  // namespace ipc

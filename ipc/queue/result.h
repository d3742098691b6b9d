// ipc/queue/result.h: the outcome vocabulary of every queue in ipc/queue.
//
// Threads / Processes: plain values. Lifetime: none. Errors: expected outcomes are QueueResult values; misuse and
// OS failures are the exceptions below and those of ipc/base/error.h.
#pragma once

#include <string>

#include "ipc/base/error.h"

namespace ipc {

// What a put/get reported. Each method documents which of these it can return.
enum class QueueResult {
  kOk,       // the value was put / got
  kTimeout,  // the timeout passed first
  kClosed,   // put: the queue is closed; get: the queue is closed and drained
  kFull,     // try_put: no room right now
  kEmpty,    // try_get: nothing to get right now
};

inline const char* to_string(QueueResult r) {
  switch (r) {
    case QueueResult::kOk: return "ok";
    case QueueResult::kTimeout: return "timeout";
    case QueueResult::kClosed: return "closed";
    case QueueResult::kFull: return "full";
    case QueueResult::kEmpty: return "empty";
  }
  return "?";
}

// A message larger than the queue can ever hold (its max_message_bytes()). Thrown at once, before anything is
// claimed: waiting could never help.
class MessageTooLarge : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// open() found no queue of that name in the segment.
class QueueNotFound : public Error {
 public:
  using Error::Error;
};

}  // namespace ipc

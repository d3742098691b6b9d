// ipc/base/poll.h: waiting for file descriptors against a Deadline: process sentinels (pidfds, or life pipes on
// kernels without them: process.h), pipes, sockets.
//
// Threads: any thread. Processes: the file descriptors of the calling process. Lifetime: nothing is owned.
// Errors: a timeout is an empty result, never an exception; a descriptor that is not open throws InvalidArgument;
//   other poll failures throw SystemError. EINTR is retried with the deadline kept.
#pragma once

#include <poll.h>

#include <chrono>
#include <optional>
#include <span>
#include <vector>

#include "ipc/base/futex.h"

namespace ipc {

// ppoll(2) for the time left until `deadline` (forever for Deadline::never()). Returns ppoll's count of ready
// descriptors, or 0 when the deadline passed or a signal interrupted the wait: callers loop, re-checking their
// own condition and deadline.expired(). Throws SystemError.
int poll_until(pollfd* fds, nfds_t count, const Deadline& deadline);

// Waits until at least one of `fds` is readable (data, end of stream, or for a process sentinel: the process
// ended) or the timeout passes; returns the ready ones in the order given, empty on timeout. Any thread; no CPU
// while waiting. REQUIRES: fds is not empty or a timeout is given (nothing could end the wait otherwise).
// Not for Connection::fileno(): a Connection rings its socket only for a reader that sleeps in its own wait, so
// wait for Connections with ipc::wait(connections, sentinels, timeout) from ipc/pipe/connection.h, which takes
// sentinels and other descriptors beside them.
std::vector<int> wait(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

}  // namespace ipc

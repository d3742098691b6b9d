// bench/pipe_one_way.h: the Pipe's one-way figure, shared by the pipe group and the queue group (which sets the
// Pipe beside MessageQueue for 1 MiB messages in the same run).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ipc/pipe/connection.h"

namespace bench {

// One producer process -> this process, `n` messages of `size` bytes through a simplex Pipe with rings of
// `ring_bytes` (send_bytes / recv_bytes into a reused vector): msgs/s, or -1 on a failure. Timed from just after
// the fork to the receipt of the last message; with `warm` > 0, the producer first sends `warm` messages that are
// not timed, and the time runs from its first timed send (StreamStart): a steady stream.
double pipe_one_way(uint64_t n, size_t size, uint64_t ring_bytes = ipc::PipeOptions().ring_bytes, uint64_t warm = 0);

}  // namespace bench

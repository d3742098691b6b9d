// bench/pipe_echo.h: the echoing side of the Pipe round-trip rows, shared by the pipe group and bench/pipe_probe.
#pragma once

#include <cstddef>
#include <vector>

#include "ipc/pipe/connection.h"

namespace bench {

// Sends back every message `end` receives, until end of stream or a failed send.
inline void echo_until_closed(ipc::Connection& end) {
  std::vector<std::byte> m;
  while (end.recv_bytes(m) == ipc::Outcome::kOk) {
    if (end.send_bytes(m) != ipc::Outcome::kOk) return;
  }
}

}  // namespace bench

#include "bench/pipe_one_way.h"

#include <optional>
#include <stdexcept>
#include <vector>

#include "bench/harness.h"
#include "bench/peers.h"

namespace bench {

using ipc::Outcome;

double pipe_one_way(uint64_t n, size_t size, uint64_t ring_bytes, uint64_t warm) {
  ipc::PipeOptions options;
  options.duplex = false;
  options.ring_bytes = ring_bytes;
  auto [rx, tx] = ipc::Pipe(options);
  std::vector<std::byte> msg(size, std::byte{7});
  // A steady stream's start (warm > 0); a fresh one's loop stays as it was, without the stamp.
  std::optional<StreamStart> started;
  if (warm > 0) started.emplace();
  ipc::Process child = fork_child([&, &t = tx, &r = rx] {
    r.close();
    auto send = [&](uint64_t count) {
      for (uint64_t i = 0; i < count; ++i) {
        if (t.send_bytes(msg) != Outcome::kOk) throw std::runtime_error("send failed");
      }
    };
    send(warm);
    if (started) started->stamp();
    send(n);
  });
  tx.close();
  std::vector<std::byte> got;
  got.reserve(size);
  for (uint64_t i = 0; i < warm; ++i) {
    if (rx.recv_bytes(got) != Outcome::kOk) return -1;
  }
  const double t0 = now_seconds();
  for (uint64_t i = 0; i < n; ++i) {
    if (rx.recv_bytes(got) != Outcome::kOk) return -1;
  }
  const double dt = started ? started->seconds_since() : now_seconds() - t0;
  return wait_child(child) ? n / dt : -1;
}

}  // namespace bench

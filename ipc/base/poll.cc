#include "ipc/base/poll.h"

#include <time.h>

#include <cerrno>
#include <string>

#include "ipc/base/error.h"

namespace ipc {

int poll_until(pollfd* fds, nfds_t count, const Deadline& deadline) {
  struct timespec ts {};
  const auto left = deadline.remaining();
  if (left) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*left).count();
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  const int r = ppoll(fds, count, left ? &ts : nullptr, nullptr);
  if (r < 0) {
    if (errno == EINTR) return 0;
    throw_errno("ppoll");
  }
  return r;
}

std::vector<int> wait(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout) {
  if (fds.empty() && !timeout) throw InvalidArgument("wait: no file descriptors and no timeout would wait forever");
  const Deadline deadline = Deadline::from(timeout);
  std::vector<pollfd> polled;
  polled.reserve(fds.size());
  for (int fd : fds) polled.push_back({fd, POLLIN, 0});
  std::vector<int> ready;
  for (;;) {
    if (poll_until(polled.data(), polled.size(), deadline) > 0) {
      for (const pollfd& p : polled) {
        if (p.revents & POLLNVAL) {
          throw InvalidArgument("wait: file descriptor " + std::to_string(p.fd) + " is not open");
        }
        // POLLHUP/POLLERR without POLLIN still means a read would not block (end of stream, or an error to read).
        if (p.revents != 0) ready.push_back(p.fd);
      }
      return ready;
    }
    if (deadline.expired()) return ready;
  }
}

}  // namespace ipc

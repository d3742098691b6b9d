// bench/fd_io.h: whole reads and writes on a stream descriptor, for the plain-socket peers of the benchmarks.
// Threads: reentrant. Errors: false when the descriptor failed or reached end of stream first.
#pragma once

#include <unistd.h>

#include <cstddef>

namespace bench {

inline bool read_exact(int fd, std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

inline bool write_exact(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::write(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace bench

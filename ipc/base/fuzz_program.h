// ipc/base/fuzz_program.h (test-only): what the fuzz targets that run a fuzz input as a program of operations
// share (ipc/queue/message_queue_fuzz.cc, ipc/pipe/pipe_fuzz.cc; docs/fuzzing.md): reading the input, telling
// messages apart, failing with a reason.
//
// Threads/Processes/Lifetime: plain values over the caller's bytes. Errors: fuzz_failure() aborts the process,
//   which is how a fuzz target reports a broken property to libFuzzer and to its replay test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

namespace ipc::fuzz {

// The fuzz input read front to back; zeros once it is used up, so that any input is a whole program.
class ProgramInput {
 public:
  explicit ProgramInput(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  bool done() const { return at_ >= bytes_.size(); }
  std::uint8_t byte() { return done() ? 0 : bytes_[at_++]; }
  // The next `n` (<= 8) bytes as a little-endian number.
  std::uint64_t number(int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{byte()} << (8 * i);
    return v;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
};

// The n-th message a program sends: `length` bytes that depend on n, so that a mix-up of messages shows.
inline std::vector<std::byte> numbered_message(std::uint64_t n, std::size_t length) {
  std::vector<std::byte> m(length);
  for (std::size_t i = 0; i < length; ++i) m[i] = static_cast<std::byte>(n * 31 + i);
  return m;
}

// Reports a broken property (`target`: which fuzz target) and aborts.
[[noreturn]] inline void fuzz_failure(const char* target, const char* what) {
  std::fprintf(stderr, "%s: %s\n", target, what);
  std::abort();
}

}  // namespace ipc::fuzz

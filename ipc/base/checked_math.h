// ipc/base/checked_math.h: size arithmetic on caller-provided numbers that throws instead of wrapping around.
//
// Every size computed from user input (element counts, capacities, message and segment sizes) goes through these,
// so that a huge request is refused instead of wrapping to a small allocation that is then overrun.
// Threads/Processes: pure functions, any thread. Lifetime: none.
// Errors: a result that does not fit in 64 bits throws InvalidArgument naming what was computed and both
//   operands ("Array: 2305843009213693952 * 8 bytes overflows 64 bits").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/base/error.h"

namespace ipc {

[[noreturn]] inline void throw_size_overflow(std::string_view what, uint64_t a, const char* op, uint64_t b) {
  throw InvalidArgument(std::string(what) + ": " + std::to_string(a) + op + std::to_string(b) +
                        " bytes overflows 64 bits");
}

// a * b. REQUIRES nothing; throws InvalidArgument when the product does not fit.
inline uint64_t checked_mul(uint64_t a, uint64_t b, std::string_view what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw_size_overflow(what, a, " * ", b);
  return r;
}

// a + b; throws InvalidArgument when the sum does not fit.
inline uint64_t checked_add(uint64_t a, uint64_t b, std::string_view what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw_size_overflow(what, a, " + ", b);
  return r;
}

// n rounded up to a multiple of `to`. REQUIRES: to > 0. Throws InvalidArgument when the result does not fit.
inline uint64_t checked_round_up(uint64_t n, uint64_t to, std::string_view what) {
  return checked_add(n, to - 1, what) / to * to;
}

}  // namespace ipc

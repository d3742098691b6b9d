// The copy of a large message for a reader on another CPU (copy_for_reader, its streaming copy): every byte lands,
// at any size and either side's alignment, and nothing beside the destination changes.
#include "ipc/base/futex.h"

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

constexpr std::byte kUntouched{0xEE};

std::byte pattern_byte(size_t i) { return static_cast<std::byte>(i * 131 + 7); }

// Copies `n` pattern bytes from offset `src_at` of a buffer to offset `dst_at` of another with `copy`, and checks
// the destination range holds them and the 64 bytes on either side of it are as they were.
template <typename Copy>
bool copies_exactly(size_t n, size_t src_at, size_t dst_at, Copy copy) {
  std::vector<std::byte> src(src_at + n);
  for (size_t i = 0; i < n; ++i) src[src_at + i] = pattern_byte(i);
  std::vector<std::byte> dst(64 + dst_at + n + 64, kUntouched);
  std::byte* to = dst.data() + 64 + dst_at;
  copy(to, src.data() + src_at, n);
  for (size_t i = 0; i < n; ++i) {
    if (to[i] != pattern_byte(i)) return false;
  }
  for (std::byte* p = dst.data(); p < to; ++p) {
    if (*p != kUntouched) return false;
  }
  for (std::byte* p = to + n; p < dst.data() + dst.size(); ++p) {
    if (*p != kUntouched) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the streaming copy puts every byte in place at any size and alignment, and nothing beside them",
          "[futex][copy]") {
  const size_t src_at = GENERATE(0, 1, 13, 64);
  const size_t dst_at = GENERATE(0, 3, 16, 63);
  for (size_t n = 0; n <= 300; ++n) {
    INFO("size " << n << ", source offset " << src_at << ", destination offset " << dst_at);
    REQUIRE(copies_exactly(n, src_at, dst_at, ipc::detail::copy_streaming));
  }
  for (size_t n : {size_t{4095}, size_t{65536} + 5, (size_t{1} << 20) + 13}) {
    INFO("size " << n << ", source offset " << src_at << ", destination offset " << dst_at);
    REQUIRE(copies_exactly(n, src_at, dst_at, ipc::detail::copy_streaming));
  }
}

TEST_CASE("copy_for_reader copies exactly below, at and above the size from which it streams", "[futex][copy]") {
  const size_t threshold = ipc::streaming_copy_bytes();
  // The inline part copies below kNeverStreamedBytes without asking for the threshold: it must lie below.
  REQUIRE(threshold > ipc::detail::kNeverStreamedBytes);
  const size_t inline_end = ipc::detail::kNeverStreamedBytes;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, inline_end - 1, inline_end, inline_end + 1, threshold - 1,
                   threshold, threshold + 77}) {
    INFO("size " << n << " (streams from " << threshold << ")");
    CHECK(copies_exactly(n, 5, 9, ipc::copy_for_reader));
  }
}

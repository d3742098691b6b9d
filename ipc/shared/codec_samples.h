// ipc/shared/codec_samples.h (test-only): nested types that exercise every built-in Codec<T> and a user's codec
// nested inside them, shared by the deterministic fuzz test (codec_fuzz_test.cc) and the libFuzzer target
// (codec_fuzz.cc), so that both feed corrupt bytes to the same decoders.
//
// Threads/Processes/Lifetime: plain types. Errors: Codec<Even> throws CodecError for an odd value.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "ipc/shared/codec.h"

namespace ipc::codec_samples {

// A user codec with an invariant, so that the length-prefixed nesting is fuzzed too.
struct Even {
  std::uint16_t value;  // invariant: even
  auto operator<=>(const Even&) const = default;
};

using Tuple = std::tuple<int, std::string, bool>;
using Deep = std::map<std::string, std::vector<std::optional<Tuple>>>;
using Variant = std::variant<std::monostate, std::int16_t, std::string, std::vector<bool>>;
using Mixed = std::tuple<std::set<std::string>, std::unordered_map<std::uint8_t, std::array<std::string, 2>>,
                         std::optional<std::int64_t>>;
using UserNested = std::pair<std::vector<Even>, std::map<Even, std::string>>;

}  // namespace ipc::codec_samples

template <>
struct ipc::Codec<ipc::codec_samples::Even> {
  static std::size_t encoded_size(const ipc::codec_samples::Even&) { return 2; }
  static void encode(const ipc::codec_samples::Even& e, std::span<std::byte> out) {
    Codec<std::uint16_t>::encode(e.value, out);
  }
  static ipc::codec_samples::Even decode(std::span<const std::byte> in) {
    const auto value = Codec<std::uint16_t>::decode(in);
    if (value % 2 != 0) throw ipc::CodecError("Even: odd value");
    return ipc::codec_samples::Even{value};
  }
};

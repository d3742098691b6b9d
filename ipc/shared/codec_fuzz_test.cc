// Feeds decode every truncation of valid encodings of nested types, every one-byte extension, byte mutations and
// random bytes: each must either decode to a value whose re-encoding has the input's size, or throw CodecError.
// Anything else (another exception, a crash, a sanitizer report under --config=asan) fails. Deterministic seed.
#include "ipc/shared/codec.h"
#include "ipc/shared/codec_samples.h"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

using Bytes = std::vector<std::byte>;
using namespace ipc::codec_samples;

struct Outcome {
  int decoded = 0;
  int rejected = 0;
};

// Decodes `in` as T; only CodecError may escape, and what decodes must re-encode to as many bytes.
template <typename T>
void try_decode(std::span<const std::byte> in, Outcome& outcome) {
  try {
    const T value = ipc::decode<T>(in);
    const Bytes again = ipc::encode(value);
    REQUIRE(again.size() == in.size());
    REQUIRE(ipc::decode<T>(again) == value);
    ++outcome.decoded;
  } catch (const ipc::CodecError&) {
    ++outcome.rejected;
  }
}

template <typename T>
void fuzz(const T& sample, std::mt19937_64& rng) {
  const Bytes valid = ipc::encode(sample);
  REQUIRE(ipc::decode<T>(valid) == sample);
  INFO("valid encoding of " << valid.size() << " bytes");

  // Every strict prefix ends early: a CodecError, always.
  for (std::size_t n = 0; n < valid.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(ipc::decode<T>(std::span(valid).first(n)), ipc::CodecError);
  }

  // Any extra byte is trailing: a CodecError, always.
  for (int b = 0; b < 256; b += 51) {
    Bytes longer = valid;
    longer.push_back(static_cast<std::byte>(b));
    REQUIRE_THROWS_AS(ipc::decode<T>(longer), ipc::CodecError);
  }

  Outcome outcome;
  // Every byte set to a few interesting values.
  for (std::size_t i = 0; i < valid.size(); ++i) {
    for (const int b : {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff}) {
      Bytes mutated = valid;
      mutated[i] = static_cast<std::byte>(b);
      try_decode<T>(mutated, outcome);
    }
  }
  // Several random bytes changed at once, and random truncations of the result.
  for (int round = 0; round < 2000; ++round) {
    Bytes mutated = valid;
    const int changes = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < changes && !mutated.empty(); ++c) {
      mutated[rng() % mutated.size()] = static_cast<std::byte>(rng());
    }
    if (rng() % 4 == 0) mutated.resize(rng() % (mutated.size() + 1));
    try_decode<T>(mutated, outcome);
  }
  // Random bytes, mostly small values and lengths so that they get past the first length check.
  for (int round = 0; round < 2000; ++round) {
    Bytes random(rng() % 48);
    for (std::byte& b : random) b = static_cast<std::byte>(rng() % 3 == 0 ? rng() : rng() % 4);
    try_decode<T>(random, outcome);
  }
  INFO("decoded " << outcome.decoded << ", rejected " << outcome.rejected);
  CHECK(outcome.rejected > 0);
}

}  // namespace

TEST_CASE("corrupt encodings of maps of vectors of optional tuples are only ever a CodecError", "[codec][fuzz]") {
  std::mt19937_64 rng(0xc0dec001);
  fuzz(Deep{{"alpha", {std::nullopt, Tuple{1, "x", true}}}, {"", {}}, {"beta", {Tuple{-5, "", false}}}}, rng);
}

TEST_CASE("corrupt encodings of vectors of variants are only ever a CodecError", "[codec][fuzz]") {
  std::mt19937_64 rng(0xc0dec002);
  fuzz(std::vector<Variant>{Variant(), Variant(std::int16_t{7}), Variant("str"), Variant(std::vector<bool>{true, false})},
       rng);
}

TEST_CASE("corrupt encodings of sets, unordered maps of arrays and optionals are only ever a CodecError",
          "[codec][fuzz]") {
  std::mt19937_64 rng(0xc0dec003);
  fuzz(Mixed{{"a", "bb", "ccc"}, {{1, {"x", "y"}}, {2, {"", "z"}}}, std::int64_t{-3}}, rng);
}

TEST_CASE("corrupt encodings of raw vectors and strings are only ever a CodecError", "[codec][fuzz]") {
  std::mt19937_64 rng(0xc0dec004);
  fuzz(std::pair<std::vector<std::uint64_t>, std::string>{{1, 2, 3, 0xffffffffffffffff}, "payload"}, rng);
}

TEST_CASE("corrupt encodings that nest a user's codec are only ever a CodecError", "[codec][fuzz]") {
  std::mt19937_64 rng(0xc0dec005);
  fuzz(UserNested{{Even{2}, Even{4}}, {{Even{6}, "six"}, {Even{8}, ""}}}, rng);
}

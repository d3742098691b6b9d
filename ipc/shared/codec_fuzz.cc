// Fuzz target (tests/fuzz.bzl, docs/fuzzing.md): the Codec<T> decoders. The first input byte picks a type T (ints,
// bool, strings, raw and nested vectors, arrays, maps, sets, tuples, optional, variant, a user's codec nested inside
// them: the samples of codec_samples.h, and a Cap'n Proto message); the rest is decoded as a T. Property (codec.h's
// promise for corrupt bytes): decode throws CodecError, or it returns a value whose encoding has the input's size
// and decodes to an equal value; for types without maps or sets, whose every value has one encoding, the encoding
// is the input itself (a Cap'n Proto message: its encoding is the input and every field reads).
// Any other exception, a crash or a sanitizer report fails.
#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <kj/string.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <typeinfo>
#include <vector>

#include "ipc/shared/capnp_codec.h"
#include "ipc/shared/codec.h"
#include "ipc/shared/codec_samples.h"
#include "ipc/shared/codec_test.capnp.h"

namespace {

using namespace ipc::codec_samples;

[[noreturn]] void fail(const char* type, const char* what, std::span<const std::byte> in) {
  std::fprintf(stderr, "decoding %zu bytes as %s: %s\n", in.size(), type, what);
  std::abort();
}

// How closely a decoded value's encoding must match the input.
enum class Encoding {
  kCanonical,  // each value has exactly one encoding: re-encoding gives the input back, byte for byte
  kOrderFree,  // maps and sets may arrive in any order (unordered ones are written in hash order): same size only
};

template <typename T, Encoding encoding>
void check_decode(std::span<const std::byte> in) {
  T value;
  try {
    value = ipc::decode<T>(in);
  } catch (const ipc::CodecError&) {
    return;
  }
  const std::vector<std::byte> again = ipc::encode(value);
  if (again.size() != in.size()) fail(typeid(T).name(), "re-encoded to another size", in);
  if (encoding == Encoding::kCanonical && std::memcmp(again.data(), in.data(), in.size()) != 0) {
    fail(typeid(T).name(), "accepted an encoding that is not the value's one encoding", in);
  }
  if (!(ipc::decode<T>(again) == value)) fail(typeid(T).name(), "re-encoding decodes to another value", in);
}

// Reads every field and element reachable from `value` under its schema.
void read_everything(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT: {
      const auto s = value.as<capnp::DynamicStruct>();
      for (const auto field : s.getSchema().getFields()) {
        if (s.has(field)) read_everything(s.get(field));
      }
      break;
    }
    case capnp::DynamicValue::LIST:
      for (const auto element : value.as<capnp::DynamicList>()) read_everything(element);
      break;
    case capnp::DynamicValue::TEXT:
      (void)value.as<capnp::Text>().size();
      break;
    case capnp::DynamicValue::DATA:
      (void)value.as<capnp::Data>().size();
      break;
    default:
      break;
  }
}

void check_capnp(std::span<const std::byte> in) {
  std::optional<ipc::CapnpMessage<Sample>> message;
  try {
    message.emplace(ipc::decode<ipc::CapnpMessage<Sample>>(in));
  } catch (const ipc::CodecError&) {
    return;
  }
  const std::vector<std::byte> again = ipc::encode(*message);
  if (again.size() != in.size() || std::memcmp(again.data(), in.data(), in.size()) != 0) {
    fail("CapnpMessage<Sample>", "re-encoded to other bytes", in);
  }
  // capnp_codec.h: after a successful decode, reading any field reachable under the schema does not throw. Every
  // field is read in place rather than printed: a list of many empty elements fits the traversal limit in a few
  // bytes, and its printout would take gigabytes.
  try {
    read_everything(capnp::DynamicValue::Reader(message->reader()));
  } catch (const kj::Exception& e) {
    fail("CapnpMessage<Sample>", e.getDescription().cStr(), in);
  }
}

using Decoder = void (*)(std::span<const std::byte>);
constexpr Decoder kDecoders[] = {
    &check_decode<std::int32_t, Encoding::kCanonical>,
    &check_decode<std::uint64_t, Encoding::kCanonical>,
    &check_decode<bool, Encoding::kCanonical>,
    &check_decode<std::string, Encoding::kCanonical>,
    &check_decode<std::vector<std::int32_t>, Encoding::kCanonical>,
    &check_decode<std::vector<std::string>, Encoding::kCanonical>,
    &check_decode<std::array<std::uint16_t, 3>, Encoding::kCanonical>,
    &check_decode<std::map<std::string, std::int64_t>, Encoding::kOrderFree>,
    &check_decode<Tuple, Encoding::kCanonical>,
    &check_decode<std::optional<std::string>, Encoding::kCanonical>,
    &check_decode<Variant, Encoding::kCanonical>,
    &check_decode<Deep, Encoding::kOrderFree>,
    &check_decode<Mixed, Encoding::kOrderFree>,
    &check_decode<UserNested, Encoding::kOrderFree>,
    &check_capnp,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto bytes = std::as_bytes(std::span(data, size));
  kDecoders[data[0] % std::size(kDecoders)](bytes.subspan(1));
  return 0;
}

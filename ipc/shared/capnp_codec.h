// ipc/shared/capnp_codec.h: Cap'n Proto messages as Codec values (a separate header so that code which does not
// use Cap'n Proto never includes it).
//
// Threads: a CapnpMessage is immutable after construction; reader() may be called from several threads at once.
// Processes: the encoding is Cap'n Proto's standard flat-array serialisation (segment table, then segments), so
//   unlike the raw encodings of codec.h it is portable across machines, languages and schema versions.
// Lifetime: a CapnpMessage owns its words; readers from reader() are valid while the message lives and is not
//   moved from. A moved-from message may only be destroyed or assigned to.
// Errors: decoding checks everything before returning, and throws CodecError if the input is not whole 8-byte
//   words, the segment table or any pointer reachable under the schema is out of bounds, text is not
//   NUL-terminated, nesting exceeds 64 levels, following the pointers exceeds the traversal limit (the larger of
//   Cap'n Proto's default 8 Mi words and twice the message size: no amplification by aliased pointers), or
//   bytes follow the message. After a successful decode, reading any field reachable under the schema does not
//   throw. (AnyPointer and capability fields are not checked: they carry no schema, and a flat array no
//   capabilities.)
//
//   capnp::MallocMessageBuilder builder;
//   auto point = builder.initRoot<Point>();
//   point.setX(1);
//   ipc::CapnpMessage<Point> message(builder);
//   std::vector<std::byte> bytes = ipc::encode(message);
//   auto decoded = ipc::decode<ipc::CapnpMessage<Point>>(bytes);
//   int x = decoded.reader().getX();
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include "ipc/shared/codec.h"

namespace ipc {

namespace detail {

inline void validate_capnp_value(const capnp::DynamicValue::Reader& value);

// Reads every field reachable under the schema, so that Cap'n Proto's lazy checks fail now, as a CodecError,
// rather than later inside the user's code.
inline void validate_capnp_struct(const capnp::DynamicStruct::Reader& s) {
  auto check = [&s](capnp::StructSchema::Field field) {
    const capnp::Type type = field.getType();
    if (type.isInterface() || type.isAnyPointer()) return;
    // A null pointer reads as the default, which for a recursive struct (a Tree's child) is again a struct with
    // a null child: stop at null. Groups live inside their parent and have no pointer.
    if (!field.getProto().isGroup() && !s.has(field)) return;
    validate_capnp_value(s.get(field));
  };
  for (capnp::StructSchema::Field field : s.getSchema().getNonUnionFields()) check(field);
  KJ_IF_MAYBE(field, s.which()) { check(*field); }
}

inline void validate_capnp_value(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT:
      validate_capnp_struct(value.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST: {
      const capnp::DynamicList::Reader list = value.as<capnp::DynamicList>();
      const capnp::Type element = list.getSchema().getElementType();
      // Lists of scalars were bounds-checked as a whole when the list was read.
      if (element.isStruct() || element.isList() || element.isText() || element.isData()) {
        for (capnp::DynamicValue::Reader item : list) validate_capnp_value(item);
      }
      break;
    }
    default:
      break;  // scalars and enums are always valid; text and data were checked when get() read them
  }
}

inline capnp::ReaderOptions capnp_validation_options(std::size_t words) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = std::max<std::uint64_t>(options.traversalLimitInWords, 2 * std::uint64_t{words});
  return options;
}

// After validation, the amplification the traversal limit guards against has been ruled out, and a limit would
// only make the n-th reader() call of a long-lived message fail.
inline capnp::ReaderOptions capnp_trusted_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = UINT64_MAX;
  return options;
}

}  // namespace detail

// An owned Cap'n Proto message whose root is a `Struct`, stored in flat-array form in aligned words.
template <typename Struct>
class CapnpMessage {
  static_assert(capnp::kind<Struct>() == capnp::Kind::STRUCT, "CapnpMessage<Struct>: Struct is a Cap'n Proto struct");

 public:
  // Copies the message `builder` holds; its root must be a `Struct`.
  explicit CapnpMessage(capnp::MessageBuilder& builder) : words_(capnp::messageToFlatArray(builder)) { open(); }

  // Takes a flat array and validates it completely; throws CodecError if it is corrupt (see the header comment).
  static CapnpMessage from_flat_array(kj::Array<capnp::word> words) { return CapnpMessage(std::move(words)); }

  // Copies `bytes` (which need not be aligned) into aligned words and validates them; throws CodecError.
  static CapnpMessage from_bytes(std::span<const std::byte> bytes) {
    if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
      throw CodecError("decode: a Cap'n Proto message of " + std::to_string(bytes.size()) +
                       " bytes is not a positive whole number of 8-byte words");
    }
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), bytes.size());
    return CapnpMessage(std::move(words));
  }

  CapnpMessage(CapnpMessage&&) noexcept = default;
  CapnpMessage& operator=(CapnpMessage&&) noexcept = default;

  // The root. Valid while this message lives. Any thread.
  typename Struct::Reader reader() const { return reader_->template getRoot<Struct>(); }

  // The flat-array serialisation: the encoding.
  kj::ArrayPtr<const capnp::word> flat_array() const noexcept { return words_.asPtr(); }
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span<const capnp::word>(words_.begin(), words_.size()));
  }

 private:
  explicit CapnpMessage(kj::Array<capnp::word> words) : words_(std::move(words)) {
    try {
      capnp::FlatArrayMessageReader check(words_.asPtr(), detail::capnp_validation_options(words_.size()));
      const std::size_t used = static_cast<std::size_t>(check.getEnd() - words_.begin());
      if (used != words_.size()) {
        throw CodecError("decode: " + std::to_string((words_.size() - used) * sizeof(capnp::word)) +
                         " trailing bytes after a Cap'n Proto message of " +
                         std::to_string(used * sizeof(capnp::word)) + " bytes");
      }
      detail::validate_capnp_struct(capnp::toDynamic(check.getRoot<Struct>()));
    } catch (const kj::Exception& e) {
      throw CodecError("decode: corrupt Cap'n Proto message: " + std::string(e.getDescription().cStr()));
    }
    open();
  }

  void open() {
    reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words_.asPtr(), detail::capnp_trusted_options());
  }

  kj::Array<capnp::word> words_;
  // Points into words_, whose heap storage stays put when the message moves.
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

template <typename Struct>
struct Codec<CapnpMessage<Struct>, void> {
  // The schema's display name and id, e.g. "CapnpMessage<app.capnp:Point @0xa1b2c3d4e5f60718>".
  static std::string type_name() {
    char id[24];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(capnp::typeId<Struct>()));
    return "CapnpMessage<" + std::string(capnp::Schema::from<Struct>().getProto().getDisplayName().cStr()) +
           " @0x" + id + ">";
  }
  static std::size_t encoded_size(const CapnpMessage<Struct>& message) noexcept { return message.bytes().size(); }
  static void encode(const CapnpMessage<Struct>& message, std::span<std::byte> out) {
    const std::span<const std::byte> bytes = message.bytes();
    if (out.size() != bytes.size()) {
      throw InvalidArgument("encode: output span of " + std::to_string(out.size()) + " bytes for a " +
                            std::to_string(bytes.size()) + "-byte Cap'n Proto message");
    }
    std::memcpy(out.data(), bytes.data(), bytes.size());
  }
  static CapnpMessage<Struct> decode(std::span<const std::byte> in) { return CapnpMessage<Struct>::from_bytes(in); }
};

}  // namespace ipc

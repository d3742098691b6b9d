// ipc/shared/codec.h: Codec<T>, values to bytes and back, for queues, pipes and the pool.
//
// Threads: stateless; every function may run on any thread at the same time as any other.
// Processes: the bytes are for another process of the same program on the same machine. Trivially copyable values
//   are copied as raw bytes in the host's byte order and layout, so this is not a portable wire format (for that,
//   use Cap'n Proto through ipc/shared/capnp_codec.h). A decoded value owns its memory and never points into the
//   input bytes.
// Lifetime: nothing to create or destroy.
// Errors: decoding truncated, corrupt or over-long input throws CodecError naming what was being read and at which
//   byte; never undefined behaviour, and a corrupt length never allocates more than a small constant times the
//   input size (lengths are checked against the remaining bytes before anything is reserved). Misuse while
//   encoding (an output span of the wrong size, a valueless variant) throws InvalidArgument.
//   One limit: a user's trivially copyable struct is copied as raw bytes, so a `bool`, or an enum without a fixed
//   underlying type, *inside* it is not validated. Give such a struct its own Codec if its bytes may be corrupt.
//
// Built in (docs/codec.md gives the exact byte format):
//   trivially copyable types (raw bytes; pointers, std::string_view, std::span and std::reference_wrapper are
//   rejected at compile time because their bytes mean nothing in another process), empty types such as
//   std::monostate (one zero byte, validated), bool (validated 0/1), enums
//   with a fixed underlying type, std::basic_string, std::vector, std::array, std::pair, std::tuple,
//   std::optional, std::variant, std::map, std::unordered_map, std::set, std::unordered_set, nested freely.
//   Cap'n Proto messages: ipc::CapnpMessage<Struct> in ipc/shared/capnp_codec.h.
//
// Adding your own type: specialise ipc::Codec with three static functions.
//
//   struct Percent { std::uint8_t value; };  // invariant: value <= 100
//
//   template <>
//   struct ipc::Codec<Percent> {
//     static std::size_t encoded_size(const Percent&) { return 1; }
//     static void encode(const Percent& p, std::span<std::byte> out) { out[0] = std::byte{p.value}; }
//     static Percent decode(std::span<const std::byte> in) {
//       if (in.size() != 1 || std::to_integer<int>(in[0]) > 100) throw ipc::CodecError("Percent: not 0..100");
//       return Percent{std::to_integer<std::uint8_t>(in[0])};
//     }
//   };
//
// A struct made of encodable members can reuse the built-in codecs through ByteWriter and ByteReader:
//
//   template <>
//   struct ipc::Codec<Order> {
//     static std::size_t encoded_size(const Order& o) {
//       return ipc::ByteWriter::size_of(o.symbol) + ipc::ByteWriter::size_of(o.lots);
//     }
//     static void encode(const Order& o, std::span<std::byte> out) {
//       ipc::ByteWriter w(out);
//       w.put(o.symbol);
//       w.put(o.lots);
//       w.finish();
//     }
//     static Order decode(std::span<const std::byte> in) {
//       ipc::ByteReader r(in);
//       Order o;
//       o.symbol = r.get<std::string>();
//       o.lots = r.get<std::vector<int>>();
//       r.finish();
//       return o;
//     }
//   };
//
// A codec may also name its type for typed channels (MessageQueue::create<T>) with `static std::string
// type_name()`; without one, codec_type_name<T>() is the demangled C++ name.
//
// Such a codec nests anywhere (std::vector<Percent>, std::map<std::string, Order>): inside another value it is
// framed by a length prefix, so its decode always sees exactly the bytes its encode wrote.
#pragma once

#include <cxxabi.h>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "ipc/base/error.h"

namespace ipc {

// Decoding failed: the input is truncated, corrupt, or has bytes left over after the value.
class CodecError : public Error {
 public:
  using Error::Error;
};

// Converts a T to bytes and back. Undefined for types without a codec; see the header comment for the built-in
// specialisations and how to add one. A specialisation provides:
//   static std::size_t encoded_size(const T& value);
//   static void encode(const T& value, std::span<std::byte> out);  // REQUIRES: out.size() == encoded_size(value)
//   static T decode(std::span<const std::byte> in);  // consumes exactly in.size() bytes; throws CodecError
template <typename T, typename Enable = void>
struct Codec;

// T has a codec with the three functions above.
template <typename T>
concept Encodable = requires(const T& value, std::span<std::byte> out, std::span<const std::byte> in) {
  { Codec<T>::encoded_size(value) } -> std::same_as<std::size_t>;
  Codec<T>::encode(value, out);
  { Codec<T>::decode(in) } -> std::same_as<T>;
};

// The name a typed channel records for its values of type T, compared when another process opens the channel:
// Codec<T>::type_name() when the codec has one (Cap'n Proto messages: the schema's name and id), otherwise the
// demangled C++ name ("std::vector<int, std::allocator<int> >"). Any thread.
template <typename T>
std::string codec_type_name() {
  if constexpr (requires { { Codec<T>::type_name() } -> std::convertible_to<std::string>; }) {
    return Codec<T>::type_name();
  } else {
    int status = 0;
    const std::unique_ptr<char, decltype(&std::free)> demangled(
        abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status), &std::free);
    return status == 0 && demangled ? demangled.get() : typeid(T).name();
  }
}

// Writes a sequence of values into a fixed span. Every write is bounds-checked: running past the end, or
// finish() before the end, means the caller computed the size wrongly and throws InvalidArgument.
class ByteWriter {
 public:
  explicit ByteWriter(std::span<std::byte> out) noexcept : out_(out) {}

  // The number of bytes put(value) writes.
  template <typename T>
  static std::size_t size_of(const T& value);

  // Writes `value` so that ByteReader::get<T>() reads it back from the middle of a longer sequence.
  template <typename T>
  void put(const T& value);

  void put_bytes(std::span<const std::byte> bytes) {
    std::span<std::byte> dest = take(bytes.size());
    if (!bytes.empty()) std::memcpy(dest.data(), bytes.data(), bytes.size());
  }

  // Unsigned LEB128: 7 bits a byte, low bits first, high bit set on all but the last byte.
  void put_varint(std::uint64_t value) {
    std::span<std::byte> dest = take(varint_size(value));
    for (std::byte& b : dest) {
      b = std::byte(static_cast<std::uint8_t>(value & 0x7f) | (value > 0x7f ? 0x80 : 0));
      value >>= 7;
    }
  }

  static constexpr std::size_t varint_size(std::uint64_t value) noexcept {
    return value == 0 ? 1 : (static_cast<std::size_t>(std::bit_width(value)) + 6) / 7;
  }

  // Hands out the next `n` bytes for the caller to fill.
  std::span<std::byte> take(std::size_t n) {
    if (n > remaining()) {
      throw InvalidArgument("encode: writing " + std::to_string(n) + " bytes at byte " + std::to_string(offset_) +
                            " overruns the " + std::to_string(out_.size()) +
                            "-byte output; the span must be exactly encoded_size(value) bytes");
    }
    std::span<std::byte> result = out_.subspan(offset_, n);
    offset_ += n;
    return result;
  }

  // Checks that the whole output was written.
  void finish() const {
    if (offset_ != out_.size()) {
      throw InvalidArgument("encode: the value filled " + std::to_string(offset_) + " of " +
                            std::to_string(out_.size()) +
                            " output bytes; the span must be exactly encoded_size(value) bytes");
    }
  }

  std::size_t offset() const noexcept { return offset_; }
  std::size_t remaining() const noexcept { return out_.size() - offset_; }

 private:
  std::span<std::byte> out_;
  std::size_t offset_ = 0;
};

// Reads a sequence of values from a span. Every read checks the remaining length first and throws CodecError
// ("string length 4294967295 exceeds remaining 12 bytes (at byte 3 of 15)") instead of reading past the end.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> in) noexcept : in_(in) {}

  // Reads a value written by ByteWriter::put<T>.
  template <typename T>
  T get();

  // The next `n` bytes; `what` names them in the error.
  std::span<const std::byte> get_bytes(std::size_t n, std::string_view what) {
    if (n > remaining()) {
      fail(std::string(what) + " needs " + std::to_string(n) + " bytes but " + std::to_string(remaining()) +
           " remain");
    }
    std::span<const std::byte> result = in_.subspan(offset_, n);
    offset_ += n;
    return result;
  }

  std::uint8_t get_byte(std::string_view what) { return std::to_integer<std::uint8_t>(get_bytes(1, what)[0]); }

  // Reads a varint written by ByteWriter::put_varint. Overlong forms and values past 64 bits are corrupt: each
  // value has exactly one encoding.
  std::uint64_t get_varint(std::string_view what) {
    const std::size_t start = offset_;
    std::uint64_t value = 0;
    for (int shift = 0;; shift += 7) {
      if (remaining() == 0) fail(std::string(what) + " is truncated", start);
      const auto b = std::to_integer<std::uint8_t>(in_[offset_++]);
      const std::uint64_t bits = b & 0x7f;
      if (shift == 63 && bits > 1) fail(std::string(what) + " overflows 64 bits", start);
      value |= bits << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift > 0) fail(std::string(what) + " has an overlong encoding", start);
        return value;
      }
      if (shift == 63) fail(std::string(what) + " overflows 64 bits", start);
    }
  }

  // Reads an element count and checks that `count` elements of at least `min_element_bytes` each fit in the
  // remaining input, so that a corrupt count can neither allocate nor loop beyond the input's size.
  std::size_t get_count(std::string_view what, std::size_t min_element_bytes) {
    const std::size_t start = offset_;
    const std::uint64_t count = get_varint(what);
    if (min_element_bytes == 0 || count > remaining() / min_element_bytes) {
      if (min_element_bytes <= 1) {
        fail(std::string(what) + " " + std::to_string(count) + " exceeds remaining " + std::to_string(remaining()) +
                 " bytes",
             start);
      }
      fail(std::string(what) + " " + std::to_string(count) + " at " + std::to_string(min_element_bytes) +
               "+ bytes each exceeds remaining " + std::to_string(remaining()) + " bytes",
           start);
    }
    return static_cast<std::size_t>(count);
  }

  // Checks that the whole input was read.
  void finish() const {
    if (offset_ != in_.size()) {
      fail(std::to_string(remaining()) + " trailing bytes after the value");
    }
  }

  [[noreturn]] void fail(const std::string& message) const { fail(message, offset_); }
  [[noreturn]] void fail(const std::string& message, std::size_t at) const {
    throw CodecError("decode: " + message + " (at byte " + std::to_string(at) + " of " +
                     std::to_string(in_.size()) + ")");
  }

  std::size_t offset() const noexcept { return offset_; }
  std::size_t remaining() const noexcept { return in_.size() - offset_; }

 private:
  std::span<const std::byte> in_;
  std::size_t offset_ = 0;
};

namespace detail {

template <typename T, template <typename...> class Template>
inline constexpr bool is_instance_of = false;
template <template <typename...> class Template, typename... Args>
inline constexpr bool is_instance_of<Template<Args...>, Template> = true;

template <typename T>
inline constexpr bool is_std_array = false;
template <typename T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <typename T>
inline constexpr bool is_std_span = false;
template <typename T, std::size_t Extent>
inline constexpr bool is_std_span<std::span<T, Extent>> = true;

// Trivially copyable, yet its bytes are an address that means nothing in another process.
template <typename T>
inline constexpr bool holds_pointer = std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                                      is_instance_of<T, std::basic_string_view> || is_std_span<T> ||
                                      is_instance_of<T, std::reference_wrapper>;

// Trivially copyable (sometimes), yet some byte patterns are invalid values, so they get a validating codec.
template <typename T>
inline constexpr bool has_structural_codec =
    std::is_same_v<T, bool> || is_instance_of<T, std::optional> || is_instance_of<T, std::variant> ||
    is_instance_of<T, std::pair> || is_instance_of<T, std::tuple> || is_std_array<T>;

// Only an enum with a fixed underlying type may hold every value of that type; loading any other enum from
// arbitrary bytes is undefined. (Direct-list-initialisation from the underlying type is allowed exactly then.)
template <typename T>
concept enum_with_fixed_type = std::is_enum_v<T> && requires { T{std::underlying_type_t<T>{}}; };

// Every byte pattern of sizeof(T) bytes is a valid T, so raw bytes are its encoding.
template <typename T>
concept raw_encodable = std::is_trivially_copyable_v<T> && !std::is_array_v<T> && !std::is_const_v<T> &&
                        !std::is_volatile_v<T> && !has_structural_codec<T> && !holds_pointer<T> &&
                        !std::is_empty_v<T> && (!std::is_enum_v<T> || enum_with_fixed_type<T>);

// An empty type (std::monostate, a tag struct): its one byte is padding, so raw bytes would copy an indeterminate
// byte out and take any byte in. It gets a codec of its own: one zero byte.
template <typename T>
concept empty_encodable = std::is_empty_v<T> && std::is_trivially_copyable_v<T> && std::default_initializable<T> &&
                          !std::is_const_v<T> && !std::is_volatile_v<T> && !has_structural_codec<T>;

// Codecs whose encoding ends by itself: they write into / read from the middle of a sequence without a length
// prefix, and state the fewest bytes any of their values takes (used to bound element counts).
template <typename T>
concept stream_codec = requires(const T& value, ByteWriter& w, ByteReader& r) {
  Codec<T>::write(value, w);
  { Codec<T>::read(r) } -> std::same_as<T>;
  { Codec<T>::min_encoded_size } -> std::convertible_to<std::size_t>;
};

template <typename T>
constexpr std::size_t min_bytes() {
  if constexpr (stream_codec<T>) {
    return Codec<T>::min_encoded_size;
  } else {
    return 1;  // the length prefix
  }
}

// A clear compile error, at the call, for a type without a codec.
template <typename T>
constexpr void check_encodable() {
  static_assert(!holds_pointer<std::remove_cv_t<T>>,
                "ipc::Codec: pointers (and string_view, span, reference_wrapper) cannot be encoded: "
                "the address means nothing in another process");
  static_assert(Encodable<T>,
                "ipc::Codec<T> is not defined for this type (or for a type inside it): specialise ipc::Codec "
                "(see ipc/shared/codec.h); enums need a fixed underlying type");
}

// encode/decode for a stream codec, in terms of its write/read.
template <typename T>
struct StreamCodecBase {
  static void encode(const T& value, std::span<std::byte> out) {
    ByteWriter w(out);
    Codec<T>::write(value, w);
    w.finish();
  }
  static T decode(std::span<const std::byte> in) {
    ByteReader r(in);
    T value = Codec<T>::read(r);
    r.finish();
    return value;
  }
};

template <typename T>
constexpr void check_element() {
  static_assert(min_bytes<T>() > 0,
                "ipc::Codec: a container element must take at least one byte (std::tuple<> and "
                "std::array<T, 0> take none)");
}

}  // namespace detail

template <typename T>
std::size_t ByteWriter::size_of(const T& value) {
  detail::check_encodable<T>();
  if constexpr (detail::stream_codec<T>) {
    return Codec<T>::encoded_size(value);
  } else {
    const std::size_t n = Codec<T>::encoded_size(value);
    return varint_size(n) + n;
  }
}

template <typename T>
void ByteWriter::put(const T& value) {
  detail::check_encodable<T>();
  if constexpr (detail::stream_codec<T>) {
    Codec<T>::write(value, *this);
  } else {
    const std::size_t n = Codec<T>::encoded_size(value);
    put_varint(n);
    Codec<T>::encode(value, take(n));
  }
}

template <typename T>
T ByteReader::get() {
  detail::check_encodable<T>();
  if constexpr (detail::stream_codec<T>) {
    return Codec<T>::read(*this);
  } else {
    const std::size_t n = get_count("value length", 1);
    return Codec<T>::decode(get_bytes(n, "value"));
  }
}

namespace detail {

// The raw-bytes codec, which containers of raw values bypass to copy all elements at once.
template <typename T>
struct RawCodec : StreamCodecBase<T> {
  static constexpr std::size_t min_encoded_size = sizeof(T);
  static std::size_t encoded_size(const T&) noexcept { return sizeof(T); }
  static void write(const T& value, ByteWriter& w) { w.put_bytes(std::as_bytes(std::span(&value, 1))); }
  static T read(ByteReader& r) {
    std::array<std::byte, sizeof(T)> bytes;
    std::memcpy(bytes.data(), r.get_bytes(sizeof(T), "value").data(), sizeof(T));
    return std::bit_cast<T>(bytes);
  }
};

// Codec<T> is the raw one (not, say, a user's specialisation for a trivially copyable type).
template <typename T>
concept uses_raw_codec = std::derived_from<Codec<T>, RawCodec<T>>;

}  // namespace detail

// Raw bytes: trivially copyable types every byte pattern of which is a valid value.
template <typename T>
  requires detail::raw_encodable<T>
struct Codec<T, void> : detail::RawCodec<T> {};

// One byte, 0 or 1; any other byte is corrupt (loading it as a bool would be undefined).
template <>
struct Codec<bool, void> : detail::StreamCodecBase<bool> {
  static constexpr std::size_t min_encoded_size = 1;
  static std::size_t encoded_size(bool) noexcept { return 1; }
  static void write(bool value, ByteWriter& w) { w.take(1)[0] = std::byte{value ? std::uint8_t{1} : std::uint8_t{0}}; }
  static bool read(ByteReader& r) {
    const std::uint8_t b = r.get_byte("bool");
    if (b > 1) r.fail("bool byte " + std::to_string(b) + " is not 0 or 1", r.offset() - 1);
    return b == 1;
  }
};

// One byte, 0; any other byte is corrupt (every value of an empty type is the same value).
template <typename T>
  requires detail::empty_encodable<T>
struct Codec<T, void> : detail::StreamCodecBase<T> {
  static constexpr std::size_t min_encoded_size = 1;
  static std::size_t encoded_size(const T&) noexcept { return 1; }
  static void write(const T&, ByteWriter& w) { w.take(1)[0] = std::byte{0}; }
  static T read(ByteReader& r) {
    const std::uint8_t b = r.get_byte("empty value");
    if (b != 0) r.fail("empty value byte " + std::to_string(b) + " is not 0", r.offset() - 1);
    return T{};
  }
};

// Varint length in characters, then the characters.
template <typename Char, typename Traits, typename Alloc>
  requires detail::raw_encodable<Char>
struct Codec<std::basic_string<Char, Traits, Alloc>, void>
    : detail::StreamCodecBase<std::basic_string<Char, Traits, Alloc>> {
  using String = std::basic_string<Char, Traits, Alloc>;
  static constexpr std::size_t min_encoded_size = 1;
  static std::size_t encoded_size(const String& s) noexcept {
    return ByteWriter::varint_size(s.size()) + s.size() * sizeof(Char);
  }
  static void write(const String& s, ByteWriter& w) {
    w.put_varint(s.size());
    w.put_bytes(std::as_bytes(std::span(s.data(), s.size())));
  }
  static String read(ByteReader& r) {
    const std::size_t n = r.get_count("string length", sizeof(Char));
    const std::span<const std::byte> bytes = r.get_bytes(n * sizeof(Char), "string");
    String s(n, Char{});
    if (n != 0) std::memcpy(s.data(), bytes.data(), bytes.size());
    return s;
  }
};

// Varint count, then the elements (one memcpy when they are raw).
template <typename T, typename Alloc>
  requires Encodable<T>
struct Codec<std::vector<T, Alloc>, void> : detail::StreamCodecBase<std::vector<T, Alloc>> {
  using Vector = std::vector<T, Alloc>;
  static constexpr bool kRaw = detail::uses_raw_codec<T> && std::is_default_constructible_v<T>;
  static constexpr std::size_t min_encoded_size = 1;

  static std::size_t encoded_size(const Vector& v) {
    std::size_t n = ByteWriter::varint_size(v.size());
    if constexpr (kRaw) {
      n += v.size() * sizeof(T);
    } else {
      for (const T& e : v) n += ByteWriter::size_of(e);
    }
    return n;
  }
  static void write(const Vector& v, ByteWriter& w) {
    w.put_varint(v.size());
    if constexpr (kRaw) {
      w.put_bytes(std::as_bytes(std::span(v.data(), v.size())));
    } else {
      for (const T& e : v) w.put(e);
    }
  }
  // The raw form's elements where they lie in the input: the count read, then a view of its count x sizeof(T)
  // bytes, which read() copies into a vector. For readers that put the elements somewhere of their own (ipc/pool's
  // map writes each chunk's results straight into its result).
  static std::span<const std::byte> read_raw_elements(ByteReader& r)
    requires kRaw
  {
    detail::check_element<T>();
    const std::size_t n = r.get_count("vector count", detail::min_bytes<T>());
    return r.get_bytes(n * sizeof(T), "vector elements");
  }
  static Vector read(ByteReader& r) {
    if constexpr (kRaw) {
      const std::span<const std::byte> bytes = read_raw_elements(r);
      Vector v(bytes.size() / sizeof(T));
      if (!bytes.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
      return v;
    } else {
      detail::check_element<T>();
      const std::size_t n = r.get_count("vector count", detail::min_bytes<T>());
      Vector v;
      v.reserve(n);
      for (std::size_t i = 0; i < n; ++i) v.push_back(r.get<T>());
      return v;
    }
  }
};

// The N elements, no count.
template <typename T, std::size_t N>
  requires Encodable<T>
struct Codec<std::array<T, N>, void> : detail::StreamCodecBase<std::array<T, N>> {
  using Array = std::array<T, N>;
  static constexpr bool kRaw = detail::uses_raw_codec<T>;
  static constexpr std::size_t min_encoded_size = N * detail::min_bytes<T>();

  static std::size_t encoded_size(const Array& a) {
    if constexpr (kRaw) {
      return N * sizeof(T);
    } else {
      std::size_t n = 0;
      for (const T& e : a) n += ByteWriter::size_of(e);
      return n;
    }
  }
  static void write(const Array& a, ByteWriter& w) {
    if constexpr (kRaw) {
      w.put_bytes(std::as_bytes(std::span(a)));
    } else {
      for (const T& e : a) w.put(e);
    }
  }
  static Array read(ByteReader& r) {
    if constexpr (N == 0) {
      return Array{};
    } else if constexpr (kRaw) {
      static_assert(sizeof(Array) == N * sizeof(T));
      std::array<std::byte, sizeof(Array)> bytes;
      std::memcpy(bytes.data(), r.get_bytes(sizeof(Array), "array").data(), sizeof(Array));
      return std::bit_cast<Array>(bytes);
    } else {
      // Braced initialisation evaluates left to right, so the elements are read in order.
      return [&r]<std::size_t... I>(std::index_sequence<I...>) {
        return Array{{(static_cast<void>(I), r.get<T>())...}};
      }(std::make_index_sequence<N>());
    }
  }
};

// first, then second.
template <typename A, typename B>
  requires Encodable<A> && Encodable<B>
struct Codec<std::pair<A, B>, void> : detail::StreamCodecBase<std::pair<A, B>> {
  static constexpr std::size_t min_encoded_size = detail::min_bytes<A>() + detail::min_bytes<B>();
  static std::size_t encoded_size(const std::pair<A, B>& p) {
    return ByteWriter::size_of(p.first) + ByteWriter::size_of(p.second);
  }
  static void write(const std::pair<A, B>& p, ByteWriter& w) {
    w.put(p.first);
    w.put(p.second);
  }
  static std::pair<A, B> read(ByteReader& r) {
    A a = r.get<A>();
    B b = r.get<B>();
    return {std::move(a), std::move(b)};
  }
};

// The elements in order.
template <typename... Ts>
  requires(Encodable<Ts> && ...)
struct Codec<std::tuple<Ts...>, void> : detail::StreamCodecBase<std::tuple<Ts...>> {
  static constexpr std::size_t min_encoded_size = (std::size_t{0} + ... + detail::min_bytes<Ts>());
  static std::size_t encoded_size(const std::tuple<Ts...>& t) {
    return std::apply([](const Ts&... e) { return (std::size_t{0} + ... + ByteWriter::size_of(e)); }, t);
  }
  static void write(const std::tuple<Ts...>& t, ByteWriter& w) {
    std::apply([&](const Ts&... e) { (w.put(e), ...); }, t);
  }
  static std::tuple<Ts...> read(ByteReader& r) {
    // Braced initialisation evaluates left to right, so the elements are read in order.
    return std::tuple<Ts...>{r.get<Ts>()...};
  }
};

// A flag byte (0 empty, 1 engaged), then the value if engaged.
template <typename T>
  requires Encodable<T>
struct Codec<std::optional<T>, void> : detail::StreamCodecBase<std::optional<T>> {
  static constexpr std::size_t min_encoded_size = 1;
  static std::size_t encoded_size(const std::optional<T>& o) { return 1 + (o ? ByteWriter::size_of(*o) : 0); }
  static void write(const std::optional<T>& o, ByteWriter& w) {
    w.put(o.has_value());
    if (o) w.put(*o);
  }
  static std::optional<T> read(ByteReader& r) {
    const std::uint8_t flag = r.get_byte("optional flag");
    if (flag > 1) r.fail("optional flag byte " + std::to_string(flag) + " is not 0 or 1", r.offset() - 1);
    if (flag == 0) return std::nullopt;
    return std::optional<T>(r.get<T>());
  }
};

// Varint index of the alternative, then its value.
template <typename... Ts>
  requires(Encodable<Ts> && ...)
struct Codec<std::variant<Ts...>, void> : detail::StreamCodecBase<std::variant<Ts...>> {
  using Variant = std::variant<Ts...>;
  static constexpr std::size_t min_encoded_size = 1 + std::min({detail::min_bytes<Ts>()...});

  static std::size_t encoded_size(const Variant& v) {
    if (v.valueless_by_exception()) throw InvalidArgument("encode: a valueless variant has no encoding");
    return ByteWriter::varint_size(v.index()) + std::visit([](const auto& e) { return ByteWriter::size_of(e); }, v);
  }
  static void write(const Variant& v, ByteWriter& w) {
    if (v.valueless_by_exception()) throw InvalidArgument("encode: a valueless variant has no encoding");
    w.put_varint(v.index());
    std::visit([&w](const auto& e) { w.put(e); }, v);
  }
  static Variant read(ByteReader& r) {
    const std::size_t at = r.offset();
    const std::uint64_t index = r.get_varint("variant index");
    if (index >= sizeof...(Ts)) {
      r.fail("variant index " + std::to_string(index) + " is out of range for " + std::to_string(sizeof...(Ts)) +
                 " alternatives",
             at);
    }
    return read_alternative(r, static_cast<std::size_t>(index), std::index_sequence_for<Ts...>());
  }

 private:
  template <std::size_t... I>
  static Variant read_alternative(ByteReader& r, std::size_t index, std::index_sequence<I...>) {
    using Reader = Variant (*)(ByteReader&);
    static constexpr Reader kReaders[] = {+[](ByteReader& rr) {
      return Variant(std::in_place_index<I>, rr.get<std::variant_alternative_t<I, Variant>>());
    }...};
    return kReaders[index](r);
  }
};

namespace detail {

// The decoder has to create the container's comparator or hash itself, so only stateless ones (std::less,
// std::hash, ...) qualify: a default-constructed function pointer would be null.
template <typename F>
concept stateless = std::is_empty_v<F> && std::default_initializable<F>;

// Varint count, then each key and mapped value. A repeated key is corrupt (it would silently drop a value).
template <typename Map>
struct MapCodec : StreamCodecBase<Map> {
  using Key = typename Map::key_type;
  using Mapped = typename Map::mapped_type;
  static constexpr std::size_t min_encoded_size = 1;

  static std::size_t encoded_size(const Map& m) {
    std::size_t n = ByteWriter::varint_size(m.size());
    for (const auto& [k, v] : m) n += ByteWriter::size_of(k) + ByteWriter::size_of(v);
    return n;
  }
  static void write(const Map& m, ByteWriter& w) {
    w.put_varint(m.size());
    for (const auto& [k, v] : m) {
      w.put(k);
      w.put(v);
    }
  }
  static Map read(ByteReader& r) {
    check_element<std::pair<Key, Mapped>>();
    const std::size_t n = r.get_count("map size", min_bytes<Key>() + min_bytes<Mapped>());
    Map m;
    if constexpr (requires { m.reserve(n); }) m.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at = r.offset();
      Key k = r.get<Key>();
      Mapped v = r.get<Mapped>();
      const std::size_t before = m.size();
      // The encoder writes a std::map in order, so hinting at the end makes decoding linear.
      m.emplace_hint(m.end(), std::move(k), std::move(v));
      if (m.size() == before) r.fail("duplicate map key", at);
    }
    return m;
  }
};

// Varint count, then each element. A repeated element is corrupt.
template <typename Set>
struct SetCodec : StreamCodecBase<Set> {
  using Key = typename Set::key_type;
  static constexpr std::size_t min_encoded_size = 1;

  static std::size_t encoded_size(const Set& s) {
    std::size_t n = ByteWriter::varint_size(s.size());
    for (const Key& k : s) n += ByteWriter::size_of(k);
    return n;
  }
  static void write(const Set& s, ByteWriter& w) {
    w.put_varint(s.size());
    for (const Key& k : s) w.put(k);
  }
  static Set read(ByteReader& r) {
    check_element<Key>();
    const std::size_t n = r.get_count("set size", min_bytes<Key>());
    Set s;
    if constexpr (requires { s.reserve(n); }) s.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at = r.offset();
      const std::size_t before = s.size();
      s.emplace_hint(s.end(), r.get<Key>());
      if (s.size() == before) r.fail("duplicate set element", at);
    }
    return s;
  }
};

}  // namespace detail

template <typename K, typename V, typename Compare, typename Alloc>
  requires Encodable<K> && Encodable<V> && detail::stateless<Compare>
struct Codec<std::map<K, V, Compare, Alloc>, void> : detail::MapCodec<std::map<K, V, Compare, Alloc>> {};

template <typename K, typename V, typename Hash, typename Equal, typename Alloc>
  requires Encodable<K> && Encodable<V> && detail::stateless<Hash> && detail::stateless<Equal>
struct Codec<std::unordered_map<K, V, Hash, Equal, Alloc>, void>
    : detail::MapCodec<std::unordered_map<K, V, Hash, Equal, Alloc>> {};

template <typename K, typename Compare, typename Alloc>
  requires Encodable<K> && detail::stateless<Compare>
struct Codec<std::set<K, Compare, Alloc>, void> : detail::SetCodec<std::set<K, Compare, Alloc>> {};

template <typename K, typename Hash, typename Equal, typename Alloc>
  requires Encodable<K> && detail::stateless<Hash> && detail::stateless<Equal>
struct Codec<std::unordered_set<K, Hash, Equal, Alloc>, void>
    : detail::SetCodec<std::unordered_set<K, Hash, Equal, Alloc>> {};

// The encoding of `value`, exactly Codec<T>::encoded_size(value) bytes.
template <typename T>
std::vector<std::byte> encode(const T& value) {
  detail::check_encodable<T>();
  std::vector<std::byte> out(Codec<T>::encoded_size(value));
  Codec<T>::encode(value, out);
  return out;
}

// The value encoded in exactly the bytes of `in`; throws CodecError on truncated, corrupt or trailing bytes.
template <typename T>
T decode(std::span<const std::byte> in) {
  detail::check_encodable<T>();
  return Codec<T>::decode(in);
}

}  // namespace ipc

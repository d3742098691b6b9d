#include "ipc/shared/codec.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace {

using Bytes = std::vector<std::byte>;

Bytes bytes(std::initializer_list<int> values) {
  Bytes out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

template <typename T>
T round_trip(const T& value) {
  const Bytes encoded = ipc::encode(value);
  REQUIRE(encoded.size() == ipc::Codec<T>::encoded_size(value));
  return ipc::decode<T>(encoded);
}

// The message of the CodecError that decoding `in` as T throws.
template <typename T>
std::string decode_error(const Bytes& in) {
  try {
    (void)ipc::decode<T>(in);
  } catch (const ipc::CodecError& e) {
    return e.what();
  }
  FAIL("decode did not throw CodecError");
  return {};
}

enum class Color : std::uint8_t { kRed, kGreen, kBlue };
enum Plain { kPlainA, kPlainB };  // no fixed underlying type: some bytes would be invalid values
enum Sized : int { kSizedA, kSizedB };

struct Pod {
  std::int32_t a;
  double b;
  char c[3];
  bool operator==(const Pod& o) const { return a == o.a && b == o.b && std::string_view(c, 3) == std::string_view(o.c, 3); }
};

// Trivially copyable without a default constructor.
struct NoDefault {
  explicit NoDefault(int v) : value(v) {}
  int value;
  bool operator==(const NoDefault&) const = default;
};

// A copy that throws leaves a variant valueless.
struct Fragile {
  explicit Fragile(int v) : value(v) {}
  Fragile(const Fragile& other) : value(other.value) {
    if (value < 0) throw std::runtime_error("copy");
  }
  Fragile& operator=(const Fragile&) = default;
  int value;
};

struct NoCodec {
  std::string s;
};

// --- A user's codecs, as the header comment shows. ---

struct Percent {
  std::uint8_t value;  // invariant: value <= 100
  bool operator==(const Percent&) const = default;
};

struct Order {
  std::string symbol;
  std::vector<int> lots;
  std::optional<Percent> discount;
  bool operator==(const Order&) const = default;
};

// A trivially copyable template that the user gives its own codec anyway: theirs must win over the raw one.
template <typename T>
struct Tagged {
  T value;
  bool operator==(const Tagged&) const = default;
};

}  // namespace

template <>
struct ipc::Codec<Percent> {
  static std::string type_name() { return "Percent (0..100)"; }
  static std::size_t encoded_size(const Percent&) { return 1; }
  static void encode(const Percent& p, std::span<std::byte> out) { out[0] = std::byte{p.value}; }
  static Percent decode(std::span<const std::byte> in) {
    if (in.size() != 1 || std::to_integer<int>(in[0]) > 100) throw ipc::CodecError("Percent: not 0..100");
    return Percent{std::to_integer<std::uint8_t>(in[0])};
  }
};

template <>
struct ipc::Codec<Order> {
  static std::size_t encoded_size(const Order& o) {
    return ByteWriter::size_of(o.symbol) + ByteWriter::size_of(o.lots) + ByteWriter::size_of(o.discount);
  }
  static void encode(const Order& o, std::span<std::byte> out) {
    ByteWriter w(out);
    w.put(o.symbol);
    w.put(o.lots);
    w.put(o.discount);
    w.finish();
  }
  static Order decode(std::span<const std::byte> in) {
    ByteReader r(in);
    Order o;
    o.symbol = r.get<std::string>();
    o.lots = r.get<std::vector<int>>();
    o.discount = r.get<std::optional<Percent>>();
    r.finish();
    return o;
  }
};

template <>
struct ipc::Codec<Fragile> {
  static std::size_t encoded_size(const Fragile&) { return sizeof(int); }
  static void encode(const Fragile& f, std::span<std::byte> out) { ipc::Codec<int>::encode(f.value, out); }
  static Fragile decode(std::span<const std::byte> in) { return Fragile(ipc::Codec<int>::decode(in)); }
};

template <typename T>
struct ipc::Codec<Tagged<T>> {
  static std::size_t encoded_size(const Tagged<T>& t) { return 1 + Codec<T>::encoded_size(t.value); }
  static void encode(const Tagged<T>& t, std::span<std::byte> out) {
    out[0] = std::byte{0x7a};
    Codec<T>::encode(t.value, out.subspan(1));
  }
  static Tagged<T> decode(std::span<const std::byte> in) {
    if (in.empty() || in[0] != std::byte{0x7a}) throw ipc::CodecError("Tagged: missing tag");
    return Tagged<T>{Codec<T>::decode(in.subspan(1))};
  }
};

// --- Compile-time guarantees. ---

static_assert(ipc::Encodable<int>);
static_assert(ipc::Encodable<Pod>);
static_assert(ipc::Encodable<Color>);
static_assert(ipc::Encodable<Sized>);
static_assert(ipc::Encodable<std::map<std::string, std::vector<std::optional<std::tuple<int, std::string>>>>>);
static_assert(ipc::Encodable<Percent>);
static_assert(ipc::Encodable<std::vector<Order>>);
static_assert(!ipc::Encodable<int*>);
static_assert(!ipc::Encodable<const char*>);
static_assert(!ipc::Encodable<int Pod::*>);
static_assert(!ipc::Encodable<std::string_view>);
static_assert(!ipc::Encodable<std::span<const int>>);
static_assert(!ipc::Encodable<std::reference_wrapper<int>>);
static_assert(!ipc::Encodable<std::vector<const char*>>);
static_assert(!ipc::Encodable<std::pair<int, std::string_view>>);
static_assert(!ipc::Encodable<Plain>);
static_assert(!ipc::Encodable<NoCodec>);
static_assert(!ipc::Encodable<std::map<std::string, NoCodec>>);
static_assert(!ipc::Encodable<int[4]>);
// The decoder could not recreate a stateful comparator: a default-constructed function pointer is null.
static_assert(!ipc::Encodable<std::map<int, int, bool (*)(int, int)>>);
static_assert(!ipc::Encodable<std::set<int, std::function<bool(int, int)>>>);
static_assert(std::is_base_of_v<ipc::Error, ipc::CodecError>);

TEST_CASE("trivially copyable values round-trip as their raw bytes", "[codec]") {
  CHECK(round_trip(std::int64_t{-42}) == -42);
  CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) == std::numeric_limits<std::uint64_t>::max());
  CHECK(round_trip(3.25) == 3.25);
  CHECK(round_trip('x') == 'x');
  CHECK(round_trip(Color::kBlue) == Color::kBlue);
  CHECK(round_trip(kSizedB) == kSizedB);
  const Pod pod{7, -1.5, {'a', 'b', 'c'}};
  CHECK(round_trip(pod) == pod);
  CHECK(round_trip(NoDefault(9)) == NoDefault(9));
  CHECK(ipc::encode(std::uint32_t{0x01020304}).size() == 4);
  CHECK(ipc::encode(pod).size() == sizeof(Pod));
}

TEST_CASE("bool is one byte, 0 or 1, and any other byte is a CodecError", "[codec]") {
  CHECK(ipc::encode(true) == bytes({1}));
  CHECK(ipc::encode(false) == bytes({0}));
  CHECK(round_trip(true));
  CHECK_FALSE(round_trip(false));
  CHECK(decode_error<bool>(bytes({2})) == "decode: bool byte 2 is not 0 or 1 (at byte 0 of 1)");
}

// Regression (codec_fuzz, corpus/codec_fuzz/regression-monostate-any-byte): std::monostate was raw bytes, so any
// byte decoded, and encoding copied out its indeterminate padding byte.
TEST_CASE("an empty type is one zero byte, and any other byte is a CodecError", "[codec][fuzz]") {
  struct Tag {};
  CHECK(ipc::encode(std::monostate{}) == std::vector<std::byte>{std::byte{0}});
  CHECK(ipc::encode(Tag{}) == std::vector<std::byte>{std::byte{0}});
  CHECK_NOTHROW(ipc::decode<std::monostate>(std::vector<std::byte>{std::byte{0}}));
  CHECK_THROWS_AS(ipc::decode<std::monostate>(std::vector<std::byte>{std::byte{0xf7}}), ipc::CodecError);
  using V = std::variant<std::monostate, int>;
  CHECK_THROWS_AS(ipc::decode<V>(std::vector<std::byte>{std::byte{0}, std::byte{1}}), ipc::CodecError);
  CHECK(ipc::decode<std::vector<Tag>>(ipc::encode(std::vector<Tag>(3))).size() == 3);
}

TEST_CASE("strings round-trip with embedded NULs, empty and long", "[codec]") {
  CHECK(round_trip(std::string()).empty());
  CHECK(round_trip(std::string("a\0b", 3)) == std::string("a\0b", 3));
  const std::string long_string(100000, 'q');
  CHECK(round_trip(long_string) == long_string);
  CHECK(round_trip(std::u16string(u"wide")) == u"wide");
}

TEST_CASE("a string is a varint length and its bytes", "[codec]") {
  CHECK(ipc::encode(std::string("hi")) == bytes({2, 'h', 'i'}));
  const Bytes encoded = ipc::encode(std::string(300, 'z'));
  REQUIRE(encoded.size() == 302);
  CHECK(encoded[0] == std::byte{0xac});  // 300 = 0b10'0101100: low 7 bits with the continuation bit, then 2
  CHECK(encoded[1] == std::byte{0x02});
}

TEST_CASE("a truncated string is a CodecError", "[codec]") {
  CHECK(decode_error<std::string>(bytes({3, 'a', 'b'})) ==
        "decode: string length 3 exceeds remaining 2 bytes (at byte 0 of 3)");
  CHECK(decode_error<std::string>(bytes({})) == "decode: string length is truncated (at byte 0 of 0)");
}

TEST_CASE("a corrupt huge length is refused before anything is allocated", "[codec]") {
  // 4294967295 as a varint, then 12 bytes.
  Bytes in = bytes({0xff, 0xff, 0xff, 0xff, 0x0f});
  in.resize(in.size() + 12);
  CHECK(decode_error<std::string>(in) == "decode: string length 4294967295 exceeds remaining 12 bytes (at byte 0 of 17)");
  CHECK_THAT(decode_error<std::vector<std::uint64_t>>(in),
             Catch::Matches("decode: vector count 4294967295 at 8\\+ bytes each exceeds remaining 12 bytes.*"));
  CHECK_THAT(decode_error<std::vector<std::string>>(in), Catch::Contains("vector count 4294967295 exceeds"));
  using IntMap = std::map<int, int>;
  CHECK_THAT(decode_error<IntMap>(in), Catch::Contains("map size 4294967295 at 8+ bytes each"));
}

TEST_CASE("varints have exactly one encoding and at most 64 bits", "[codec]") {
  CHECK_THAT(decode_error<std::string>(bytes({0x80, 0x00})), Catch::Contains("overlong"));
  CHECK_THAT(decode_error<std::string>(bytes({0x81, 0x80, 0x00})), Catch::Contains("overlong"));
  CHECK_THAT(decode_error<std::string>(bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02})),
             Catch::Contains("overflows 64 bits"));
  CHECK_THAT(decode_error<std::string>(bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00})),
             Catch::Contains("overflows 64 bits"));
  CHECK_THAT(decode_error<std::string>(bytes({0x80})), Catch::Contains("string length is truncated"));
  // The largest varint is accepted as a varint, then refused as a length.
  CHECK_THAT(decode_error<std::string>(bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})),
             Catch::Contains("string length 18446744073709551615 exceeds remaining 0 bytes"));
}

TEST_CASE("trailing bytes after a value are a CodecError", "[codec]") {
  Bytes in = ipc::encode(std::int32_t{5});
  in.push_back(std::byte{0});
  CHECK(decode_error<std::int32_t>(in) == "decode: 1 trailing bytes after the value (at byte 4 of 5)");
  CHECK_THAT(decode_error<std::string>(bytes({1, 'a', 'b', 'c'})), Catch::Contains("2 trailing bytes"));
}

TEST_CASE("a truncated raw value is a CodecError", "[codec]") {
  CHECK(decode_error<std::uint64_t>(bytes({1, 2, 3})) == "decode: value needs 8 bytes but 3 remain (at byte 0 of 3)");
}

TEST_CASE("vectors round-trip, raw ones in one block", "[codec]") {
  const std::vector<int> ints{1, -2, 3};
  CHECK(round_trip(ints) == ints);
  CHECK(ipc::encode(ints).size() == 1 + 3 * sizeof(int));
  CHECK(round_trip(std::vector<int>{}).empty());
  const std::vector<std::string> strings{"", "one", std::string(200, 'x')};
  CHECK(round_trip(strings) == strings);
  const std::vector<bool> flags{true, false, true, true};
  CHECK(round_trip(flags) == flags);
  CHECK(ipc::encode(flags) == bytes({4, 1, 0, 1, 1}));
  const std::vector<NoDefault> no_default{NoDefault(1), NoDefault(2)};
  CHECK(round_trip(no_default) == no_default);
  const std::vector<std::vector<double>> nested{{1.0}, {}, {2.0, 3.0}};
  CHECK(round_trip(nested) == nested);
}

TEST_CASE("a vector of bool with a byte other than 0 or 1 is a CodecError", "[codec]") {
  CHECK(decode_error<std::vector<bool>>(bytes({2, 1, 5})) == "decode: bool byte 5 is not 0 or 1 (at byte 2 of 3)");
}

TEST_CASE("arrays, pairs and tuples round-trip with no framing", "[codec]") {
  const std::array<int, 3> ints{4, 5, 6};
  CHECK(round_trip(ints) == ints);
  CHECK(ipc::encode(ints).size() == 3 * sizeof(int));
  const std::array<std::string, 2> strings{"a", "bc"};
  CHECK(round_trip(strings) == strings);
  CHECK(ipc::encode(strings) == bytes({1, 'a', 2, 'b', 'c'}));
  const std::array<NoDefault, 2> no_default{NoDefault(3), NoDefault(4)};
  CHECK(round_trip(no_default) == no_default);
  CHECK(round_trip(std::array<int, 0>{}).empty());
  CHECK(ipc::encode(std::array<int, 0>{}).empty());

  const std::pair<std::string, bool> pair{"k", true};
  CHECK(round_trip(pair) == pair);
  CHECK(ipc::encode(pair) == bytes({1, 'k', 1}));
  const std::tuple<std::string, int, std::string, bool> tuple{"first", 2, "third", false};
  CHECK(round_trip(tuple) == tuple);
  CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
  CHECK(ipc::encode(std::tuple<>{}).empty());
}

TEST_CASE("optional is a flag byte and the value", "[codec]") {
  CHECK(round_trip(std::optional<std::string>()) == std::nullopt);
  CHECK(round_trip(std::optional<std::string>("x")) == "x");
  CHECK(ipc::encode(std::optional<std::uint8_t>(7)) == bytes({1, 7}));
  CHECK(ipc::encode(std::optional<std::uint8_t>()) == bytes({0}));
  CHECK(decode_error<std::optional<std::uint8_t>>(bytes({2, 7})) ==
        "decode: optional flag byte 2 is not 0 or 1 (at byte 0 of 2)");
  CHECK_THAT(decode_error<std::optional<std::uint8_t>>(bytes({1})), Catch::Contains("value needs 1 bytes but 0 remain"));
}

TEST_CASE("variant is its index and the alternative, and a bad index is a CodecError", "[codec]") {
  using V = std::variant<std::monostate, int, std::string, std::vector<bool>>;
  CHECK(round_trip(V()) == V());
  CHECK(round_trip(V(5)) == V(5));
  CHECK(round_trip(V("s")) == V("s"));
  CHECK(round_trip(V(std::vector<bool>{true})) == V(std::vector<bool>{true}));
  CHECK(ipc::encode(V("s")) == bytes({2, 1, 's'}));
  CHECK(decode_error<V>(bytes({4, 0})) == "decode: variant index 4 is out of range for 4 alternatives (at byte 0 of 2)");
}

TEST_CASE("encoding a valueless variant is an InvalidArgument", "[codec]") {
  std::variant<int, Fragile> twin;
  try {
    twin.emplace<Fragile>(Fragile(-1));
  } catch (const std::runtime_error&) {
  }
  REQUIRE(twin.valueless_by_exception());
  CHECK_THROWS_AS(ipc::encode(twin), ipc::InvalidArgument);
}

TEST_CASE("maps and sets round-trip", "[codec]") {
  const std::map<std::string, std::vector<int>> map{{"a", {1}}, {"b", {}}, {"c", {2, 3}}};
  CHECK(round_trip(map) == map);
  const std::unordered_map<int, std::string> unordered{{1, "one"}, {2, "two"}, {3, "three"}};
  CHECK(round_trip(unordered) == unordered);
  const std::set<std::string> set{"x", "y"};
  CHECK(round_trip(set) == set);
  const std::unordered_set<std::int64_t> unordered_set{-1, 0, 1};
  CHECK(round_trip(unordered_set) == unordered_set);
  CHECK(ipc::encode(std::map<std::uint8_t, bool>{{1, true}, {2, false}}) == bytes({2, 1, 1, 2, 0}));
}

TEST_CASE("a repeated map key or set element is a CodecError", "[codec]") {
  CHECK(decode_error<std::map<std::uint8_t, bool>>(bytes({2, 1, 1, 1, 0})) ==
        "decode: duplicate map key (at byte 3 of 5)");
  using UnorderedMap = std::unordered_map<std::uint8_t, bool>;
  CHECK_THAT(decode_error<UnorderedMap>(bytes({2, 1, 1, 1, 0})),
             Catch::Contains("duplicate map key"));
  CHECK_THAT(decode_error<std::set<std::uint8_t>>(bytes({2, 9, 9})), Catch::Contains("duplicate set element"));
  // Out of order is accepted (the hint is only a hint).
  CHECK(ipc::decode<std::map<std::uint8_t, bool>>(bytes({2, 2, 0, 1, 1})) ==
        std::map<std::uint8_t, bool>{{1, true}, {2, false}});
}

TEST_CASE("deeply nested combinations round-trip", "[codec]") {
  using Deep = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string, std::variant<bool, double>>>>>;
  const Deep deep{
      {"first", {std::nullopt, std::make_tuple(1, "x", std::variant<bool, double>(true))}},
      {"second", {}},
      {"third", {std::make_tuple(-7, "", std::variant<bool, double>(2.5))}},
  };
  CHECK(round_trip(deep) == deep);
}

TEST_CASE("encoding into a span of the wrong size is an InvalidArgument", "[codec]") {
  const std::string s = "hello";
  std::vector<std::byte> small(ipc::Codec<std::string>::encoded_size(s) - 1);
  CHECK_THROWS_AS(ipc::Codec<std::string>::encode(s, small), ipc::InvalidArgument);
  std::vector<std::byte> large(ipc::Codec<std::string>::encoded_size(s) + 1);
  CHECK_THROWS_WITH(ipc::Codec<std::string>::encode(s, large), Catch::Contains("filled 6 of 7 output bytes"));
  std::vector<std::byte> exact(ipc::Codec<std::string>::encoded_size(s));
  ipc::Codec<std::string>::encode(s, exact);
  CHECK(ipc::decode<std::string>(exact) == s);
}

TEST_CASE("decode accepts an unaligned span", "[codec]") {
  const std::vector<std::uint64_t> values{1, 2, 3};
  Bytes buffer(1);
  const Bytes encoded = ipc::encode(values);
  buffer.insert(buffer.end(), encoded.begin(), encoded.end());
  CHECK(ipc::decode<std::vector<std::uint64_t>>(std::span(buffer).subspan(1)) == values);
}

TEST_CASE("a user's codec is used at the top level and nests with a length prefix", "[codec]") {
  CHECK(ipc::encode(Percent{42}) == bytes({42}));
  CHECK(round_trip(Percent{100}) == Percent{100});
  CHECK_THROWS_WITH(ipc::decode<Percent>(bytes({101})), "Percent: not 0..100");

  const std::vector<Percent> percents{{1}, {2}};
  CHECK(ipc::encode(percents) == bytes({2, 1, 1, 1, 2}));  // count, then (length 1, byte) per element
  CHECK(round_trip(percents) == percents);
  CHECK_THROWS_WITH(ipc::decode<std::vector<Percent>>(bytes({1, 1, 200})), "Percent: not 0..100");
  CHECK_THROWS_AS(ipc::decode<std::vector<Percent>>(bytes({1, 2, 1})), ipc::CodecError);
}

TEST_CASE("a user's composite codec reuses the built-in ones through ByteWriter and ByteReader", "[codec]") {
  const Order order{"ACME", {100, 200}, Percent{5}};
  CHECK(round_trip(order) == order);
  const std::map<std::string, Order> book{{"a", order}, {"b", Order{"X", {}, std::nullopt}}};
  CHECK(round_trip(book) == book);
  Bytes truncated = ipc::encode(order);
  truncated.pop_back();
  CHECK_THROWS_AS(ipc::decode<Order>(truncated), ipc::CodecError);
}

TEST_CASE("a user's partial specialisation wins over the raw encoding", "[codec]") {
  static_assert(std::is_trivially_copyable_v<Tagged<int>>);
  const Tagged<int> tagged{12};
  const Bytes encoded = ipc::encode(tagged);
  REQUIRE(encoded.size() == 1 + sizeof(int));
  CHECK(encoded[0] == std::byte{0x7a});
  CHECK(round_trip(tagged) == tagged);
}

TEST_CASE("ByteReader reports the offset of the failure inside a sequence", "[codec]") {
  const Bytes in = bytes({1, 'a', 5, 'b'});
  ipc::ByteReader r(in);
  CHECK(r.get<std::string>() == "a");
  CHECK_THROWS_WITH(r.get<std::string>(), "decode: string length 5 exceeds remaining 1 bytes (at byte 2 of 4)");
}

TEST_CASE("a type's name for typed channels comes from its codec, else from the demangled C++ name", "[codec]") {
  CHECK(ipc::codec_type_name<Percent>() == "Percent (0..100)");
  CHECK(ipc::codec_type_name<int>() == "int");
  CHECK(ipc::codec_type_name<std::vector<int>>().rfind("std::vector<int", 0) == 0);
  CHECK(ipc::codec_type_name<std::vector<int>>() != ipc::codec_type_name<std::vector<long>>());
}

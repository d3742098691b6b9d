// manager/value.h: the structured value that Manager objects hold, and its Cap'n Proto wire form.
//
// A Value is null, bool, int64, double, text (std::string), bytes, a list of Values, a map from text to Values,
// or a reference to another object of the same Manager (a "nested proxy": open it with Client::open(ref)).
// Common C++ types convert implicitly: `dict.set("n", 3)`, `dict.set("xs", Value::List{1, "a", 2.5})`.
//
// Threads: a plain value type; distinct objects may be used from distinct threads.
// Processes: never in shared memory; crosses processes only through its wire form (manager.capnp `Value`).
// Lifetime: ordinary value semantics.
// Errors: the typed accessors (`as_int`, ...) throw ipc::InvalidArgument naming the actual type on a mismatch;
//   from_wire throws ipc::InvalidArgument for a union member this version does not know.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "manager/manager.capnp.h"

namespace ipc::manager {

enum class Kind { kDict, kList, kNamespace, kQueue, kLock, kEvent, kValue, kCounter };
const char* kind_name(Kind kind);

// A named object of a Manager, as stored inside a Value.
struct ObjectRef {
  std::string name;
  Kind kind = Kind::kDict;
  friend bool operator==(const ObjectRef&, const ObjectRef&) = default;
};

// Bytes, kept distinct from text so that a round trip preserves which one it was.
struct Bytes {
  std::vector<std::uint8_t> data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

class Value {
 public:
  using List = std::vector<Value>;
  using Map = std::map<std::string, Value, std::less<>>;
  using Storage = std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes, List, Map, ObjectRef>;

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  // Every integer type but bool and char becomes int64 (uint64 above INT64_MAX is rejected at run time).
  template <typename I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, char>)
  Value(I i) : v_(checked_int(i)) {}
  Value(double d) : v_(d) {}
  Value(float f) : v_(static_cast<double>(f)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(Bytes b) : v_(std::move(b)) {}
  Value(List l) : v_(std::move(l)) {}
  Value(std::initializer_list<Value> l) : v_(List(l)) {}
  Value(Map m) : v_(std::move(m)) {}
  Value(ObjectRef r) : v_(std::move(r)) {}

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_double() const { return std::holds_alternative<double>(v_); }
  bool is_text() const { return std::holds_alternative<std::string>(v_); }
  bool is_bytes() const { return std::holds_alternative<Bytes>(v_); }
  bool is_list() const { return std::holds_alternative<List>(v_); }
  bool is_map() const { return std::holds_alternative<Map>(v_); }
  bool is_ref() const { return std::holds_alternative<ObjectRef>(v_); }

  bool as_bool() const { return get<bool>("bool"); }
  std::int64_t as_int() const { return get<std::int64_t>("int"); }
  double as_double() const { return get<double>("float"); }
  const std::string& as_text() const { return get<std::string>("text"); }
  const Bytes& as_bytes() const { return get<Bytes>("bytes"); }
  const List& as_list() const { return get<List>("list"); }
  const Map& as_map() const { return get<Map>("map"); }
  const ObjectRef& as_ref() const { return get<ObjectRef>("ref"); }

  // "null", "bool", "int", "float", "text", "bytes", "list", "map" or "ref".
  const char* type_name() const;
  const Storage& storage() const { return v_; }

  friend bool operator==(const Value&, const Value&) = default;

 private:
  template <typename I>
  static std::int64_t checked_int(I i) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
      if (i > static_cast<std::uint64_t>(INT64_MAX)) throw_out_of_range();
    }
    return static_cast<std::int64_t>(i);
  }
  [[noreturn]] static void throw_out_of_range();
  [[noreturn]] void throw_type(const char* wanted) const;
  template <typename T>
  const T& get(const char* wanted) const {
    if (const T* p = std::get_if<T>(&v_)) return *p;
    throw_type(wanted);
  }

  Storage v_;
};

// Human-readable form, Python-like: {"a": [1, 2.5, "x", b"\x01"], "n": None}.
std::string to_string(const Value& value);

// Wire conversion. from_wire recurses as deep as the message nests; the reader's nesting limit bounds it.
void to_wire(const Value& value, wire::Value::Builder out);
Value from_wire(wire::Value::Reader in);
// Words `value` takes in a message (its wire::Value struct and everything it points to): a size hint for
// messages, so that they are allocated once at about the right size.
std::size_t wire_size_words(const Value& value);
wire::Kind to_wire(Kind kind);
Kind from_wire(wire::Kind kind);

}  // namespace ipc::manager

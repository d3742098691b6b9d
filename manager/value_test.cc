#include "manager/value.h"

#include <capnp/message.h>

#include <catch2/catch.hpp>
#include <cstdint>

#include "ipc/base/error.h"

using ipc::manager::Bytes;
using ipc::manager::Kind;
using ipc::manager::ObjectRef;
using ipc::manager::Value;

namespace {

Value round_trip(const Value& v) {
  capnp::MallocMessageBuilder message;
  ipc::manager::to_wire(v, message.initRoot<ipc::manager::wire::Value>());
  return ipc::manager::from_wire(message.getRoot<ipc::manager::wire::Value>().asReader());
}

}  // namespace

TEST_CASE("values of every type survive the wire form unchanged", "[value]") {
  Value::Map map{{"a", 1}, {"b", Value::List{true, nullptr, 2.5, "text"}}};
  std::vector<Value> values = {
      Value(),
      Value(true),
      Value(-42),
      Value(std::int64_t{INT64_MIN}),
      Value(3.25),
      Value("héllo"),
      Value(std::string("with\0nul", 8)),
      Value(Bytes{{0, 1, 255}}),
      Value(Value::List{1, "two", Value::List{3}}),
      Value(map),
      Value(ObjectRef{"other", Kind::kQueue}),
  };
  for (const auto& v : values) {
    INFO(ipc::manager::to_string(v));
    CHECK(round_trip(v) == v);
  }
}

TEST_CASE("text and bytes stay distinct types", "[value]") {
  CHECK(round_trip(Value("ab")).is_text());
  CHECK(round_trip(Value(Bytes{{'a', 'b'}})).is_bytes());
  CHECK_FALSE(Value("ab") == Value(Bytes{{'a', 'b'}}));
}

TEST_CASE("typed accessors name the actual type on a mismatch", "[value]") {
  Value v("text");
  CHECK(v.as_text() == "text");
  CHECK_THROWS_AS(v.as_int(), ipc::InvalidArgument);
  CHECK_THROWS_WITH(v.as_int(), Catch::Contains("holds text, not int"));
}

TEST_CASE("unsigned integers above INT64_MAX are rejected", "[value]") {
  CHECK(Value(std::uint64_t{5}).as_int() == 5);
  CHECK_THROWS_AS(Value(std::uint64_t{1} << 63), ipc::InvalidArgument);
}

TEST_CASE("to_string prints values like Python", "[value]") {
  Value v(Value::Map{{"k", Value::List{1, nullptr, true, "s"}}});
  CHECK(ipc::manager::to_string(v) == R"({"k": [1, None, True, "s"]})");
}

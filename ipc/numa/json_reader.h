// ipc/numa/json_reader.h (internal): a small strict JSON reader (RFC 8259) for the OCI memory-policy object.
//
// It exists for what a generic decoder does not give: the line and column of a syntax error, every member of an
// object in order with duplicates kept (so a repeated key can be refused by name), and each value's type and
// position (so a wrong-typed field can be named).
//
// Threads: free functions and plain values; safe from any thread.
// Processes: not for shared memory (values hold strings and vectors).
// Lifetime: plain values.
// Errors: parse_json() throws numa::PolicyError(kMalformedPolicyText) saying "JSON syntax error at line L,
//   column C: ..." in words, never a library's internals.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::numa::internal {

struct JsonMember;

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  std::string text;                 // kString: the decoded text; kNumber and kBool: as written
  std::vector<JsonValue> items;     // kArray
  std::vector<JsonMember> members;  // kObject, in document order, duplicates kept
  size_t offset = 0;                // where the value starts in the document
};

struct JsonMember {
  std::string key;
  size_t key_offset = 0;
  JsonValue value;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else). Nesting is limited to 32 levels.
JsonValue parse_json(std::string_view document);

// "a string", "an array", "null", ... for messages.
const char* json_type_name(JsonValue::Type type);

// "line 3, column 12" (both from 1, columns in bytes) for a byte offset into `document`.
std::string json_position(std::string_view document, size_t offset);

}  // namespace ipc::numa::internal

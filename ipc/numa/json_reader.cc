#include "ipc/numa/json_reader.h"

#include <cstdint>
#include <cstdio>

#include "ipc/numa/policy_error.h"

namespace ipc::numa::internal {
namespace {

constexpr int kMaxDepth = 32;

class Reader {
 public:
  explicit Reader(std::string_view document) : doc_(document) {}

  JsonValue document() {
    skip_space();
    JsonValue v = value(0);
    skip_space();
    if (pos_ != doc_.size()) fail("unexpected " + here() + " after the end of the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(size_t offset, const std::string& what) const {
    throw PolicyError(PolicyRule::kMalformedPolicyText,
                      "JSON syntax error at " + json_position(doc_, offset) + ": " + what);
  }

  // What stands at the current position, for messages: "'x'", "a newline", "the end of the input".
  std::string here() const {
    if (pos_ >= doc_.size()) return "the end of the input";
    const unsigned char c = static_cast<unsigned char>(doc_[pos_]);
    if (c == '\n') return "a line break";
    if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", c);
      return std::string("byte ") + hex;
    }
    return std::string("'") + static_cast<char>(c) + "'";
  }

  bool at(char c) const { return pos_ < doc_.size() && doc_[pos_] == c; }

  void skip_space() {
    while (pos_ < doc_.size() && (doc_[pos_] == ' ' || doc_[pos_] == '\t' || doc_[pos_] == '\n' || doc_[pos_] == '\r')) {
      ++pos_;
    }
  }

  void expect(char c, const std::string& context) {
    if (!at(c)) fail(std::string("expected '") + c + "' " + context + ", found " + here());
    ++pos_;
  }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) fail("values nested deeper than " + std::to_string(kMaxDepth) + " levels");
    JsonValue v;
    v.offset = pos_;
    if (at('{')) {
      v.type = JsonValue::Type::kObject;
      read_object(v, depth);
    } else if (at('[')) {
      v.type = JsonValue::Type::kArray;
      read_array(v, depth);
    } else if (at('"')) {
      v.type = JsonValue::Type::kString;
      v.text = read_string();
    } else if (at('-') || (pos_ < doc_.size() && doc_[pos_] >= '0' && doc_[pos_] <= '9')) {
      v.type = JsonValue::Type::kNumber;
      v.text = read_number();
    } else if (read_literal("true") || read_literal("false")) {
      v.type = JsonValue::Type::kBool;
      v.text = std::string(doc_.substr(v.offset, pos_ - v.offset));
    } else if (read_literal("null")) {
      v.type = JsonValue::Type::kNull;
    } else {
      fail("expected a value (a string, number, object, array, true, false or null), found " + here());
    }
    return v;
  }

  bool read_literal(std::string_view word) {
    if (doc_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  void read_object(JsonValue& v, int depth) {
    ++pos_;  // '{'
    skip_space();
    if (at('}')) {
      ++pos_;
      return;
    }
    while (true) {
      JsonMember m;
      m.key_offset = pos_;
      if (!at('"')) fail("expected '\"' to start a key, found " + here());
      m.key = read_string();
      skip_space();
      expect(':', "after the key \"" + m.key + "\"");
      skip_space();
      m.value = value(depth + 1);
      v.members.push_back(std::move(m));
      skip_space();
      if (at('}')) {
        ++pos_;
        return;
      }
      expect(',', "or '}' after the value of \"" + v.members.back().key + "\"");
      skip_space();
    }
  }

  void read_array(JsonValue& v, int depth) {
    ++pos_;  // '['
    skip_space();
    if (at(']')) {
      ++pos_;
      return;
    }
    while (true) {
      v.items.push_back(value(depth + 1));
      skip_space();
      if (at(']')) {
        ++pos_;
        return;
      }
      expect(',', "or ']' after an array item");
      skip_space();
    }
  }

  unsigned read_hex4() {
    unsigned code = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      if (pos_ >= doc_.size()) fail("a \\u escape needs four hex digits, found the end of the input");
      const char c = doc_[pos_];
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (digit < 0) fail("a \\u escape needs four hex digits, found " + here());
      code = code * 16 + static_cast<unsigned>(digit);
    }
    return code;
  }

  static void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  std::string read_string() {
    const size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (pos_ >= doc_.size()) fail_at(start, "the string that starts here is not closed");
      const char c = doc_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail(here() + " inside a string (write it as an escape)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= doc_.size()) fail("an escape ends the input");
      const char e = doc_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t code = read_hex4();
          if (code >= 0xd800 && code < 0xdc00 && doc_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            const uint32_t low = read_hex4();
            if (low < 0xdc00 || low >= 0xe000) fail("a high surrogate must be followed by a low one");
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, code);
          break;
        }
        default:
          --pos_;
          fail("unknown escape '\\" + std::string(1, e) + "' in a string");
      }
    }
  }

  std::string read_number() {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < doc_.size() && doc_[pos_] >= '0' && doc_[pos_] <= '9') ++pos_;
      if (pos_ == from) fail("expected a digit in a number, found " + here());
    };
    if (at('-')) ++pos_;
    if (at('0')) {
      ++pos_;
    } else {
      digits();
    }
    if (at('.')) {
      ++pos_;
      digits();
    }
    if (at('e') || at('E')) {
      ++pos_;
      if (at('+') || at('-')) ++pos_;
      digits();
    }
    return std::string(doc_.substr(start, pos_ - start));
  }

  std::string_view doc_;
  size_t pos_ = 0;
};

}  // namespace

JsonValue parse_json(std::string_view document) { return Reader(document).document(); }

const char* json_type_name(JsonValue::Type type) {
  switch (type) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return "a boolean";
    case JsonValue::Type::kNumber: return "a number";
    case JsonValue::Type::kString: return "a string";
    case JsonValue::Type::kArray: return "an array";
    case JsonValue::Type::kObject: return "an object";
  }
  return "an unknown value";
}

std::string json_position(std::string_view document, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < document.size(); ++i) {
    if (document[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

}  // namespace ipc::numa::internal

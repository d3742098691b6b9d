#include "manager/value.h"

#include <cstdio>

#include "ipc/base/error.h"

namespace ipc::manager {

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kDict: return "dict";
    case Kind::kList: return "list";
    case Kind::kNamespace: return "namespace";
    case Kind::kQueue: return "queue";
    case Kind::kLock: return "lock";
    case Kind::kEvent: return "event";
    case Kind::kValue: return "value";
    case Kind::kCounter: return "counter";
  }
  return "unknown";
}

const char* Value::type_name() const {
  static constexpr const char* kNames[] = {"null", "bool", "int", "float", "text", "bytes", "list", "map", "ref"};
  return kNames[v_.index()];
}

void Value::throw_out_of_range() { throw InvalidArgument("integer does not fit in a Manager Value (int64)"); }

void Value::throw_type(const char* wanted) const {
  throw InvalidArgument(std::string("Value holds ") + type_name() + ", not " + wanted);
}

namespace {

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append(std::string& out, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out += "None";
        } else if constexpr (std::is_same_v<T, bool>) {
          out += x ? "True" : "False";
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          out += std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.17g", x);
          out += buf;
        } else if constexpr (std::is_same_v<T, std::string>) {
          append_quoted(out, x);
        } else if constexpr (std::is_same_v<T, Bytes>) {
          out += "b\"";
          for (std::uint8_t b : x.data) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", b);
            out += buf;
          }
          out += '"';
        } else if constexpr (std::is_same_v<T, Value::List>) {
          out += '[';
          for (std::size_t i = 0; i < x.size(); ++i) {
            if (i) out += ", ";
            append(out, x[i]);
          }
          out += ']';
        } else if constexpr (std::is_same_v<T, Value::Map>) {
          out += '{';
          bool first = true;
          for (const auto& [k, val] : x) {
            if (!first) out += ", ";
            first = false;
            append_quoted(out, k);
            out += ": ";
            append(out, val);
          }
          out += '}';
        } else {
          out += std::string("<") + kind_name(x.kind) + " ";
          append_quoted(out, x.name);
          out += '>';
        }
      },
      v.storage());
}

}  // namespace

std::string to_string(const Value& value) {
  std::string out;
  append(out, value);
  return out;
}

wire::Kind to_wire(Kind kind) { return static_cast<wire::Kind>(static_cast<std::uint16_t>(kind)); }

Kind from_wire(wire::Kind kind) {
  auto k = static_cast<std::uint16_t>(kind);
  if (k > static_cast<std::uint16_t>(Kind::kCounter)) {
    throw InvalidArgument("unknown object kind " + std::to_string(k));
  }
  return static_cast<Kind>(k);
}

std::size_t wire_size_words(const Value& value) {
  constexpr std::size_t kValueWords = 3;  // wire::Value: 2 data words (tag, scalar) + 1 pointer
  auto text_words = [](std::size_t bytes) { return (bytes + 8) / 8; };  // with the NUL, rounded up
  return std::visit(
      [&](const auto& x) -> std::size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return kValueWords + text_words(x.size());
        } else if constexpr (std::is_same_v<T, Bytes>) {
          return kValueWords + (x.data.size() + 7) / 8;
        } else if constexpr (std::is_same_v<T, Value::List>) {
          std::size_t words = kValueWords + 1;  // + the list's tag word
          for (const auto& item : x) words += wire_size_words(item);
          return words;
        } else if constexpr (std::is_same_v<T, Value::Map>) {
          std::size_t words = kValueWords + 1;
          for (const auto& [k, v] : x) words += 2 + text_words(k.size()) + wire_size_words(v);  // Entry: 2 pointers
          return words;
        } else if constexpr (std::is_same_v<T, ObjectRef>) {
          return kValueWords + 2 + text_words(x.name.size());  // ObjectRef: 1 data word + 1 pointer
        } else {
          return kValueWords;  // null, bool, int, float live in the struct itself
        }
      },
      value.storage());
}

void to_wire(const Value& value, wire::Value::Builder out) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out.setNull();
        } else if constexpr (std::is_same_v<T, bool>) {
          out.setBool(x);
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          out.setInt(x);
        } else if constexpr (std::is_same_v<T, double>) {
          out.setFloat(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          out.setText(capnp::Text::Reader(x.data(), x.size()));
        } else if constexpr (std::is_same_v<T, Bytes>) {
          out.setBytes(capnp::Data::Reader(x.data.data(), x.data.size()));
        } else if constexpr (std::is_same_v<T, Value::List>) {
          auto list = out.initList(static_cast<unsigned>(x.size()));
          for (unsigned i = 0; i < x.size(); ++i) to_wire(x[i], list[i]);
        } else if constexpr (std::is_same_v<T, Value::Map>) {
          auto map = out.initMap(static_cast<unsigned>(x.size()));
          unsigned i = 0;
          for (const auto& [k, val] : x) {
            map[i].setKey(capnp::Text::Reader(k.data(), k.size()));
            to_wire(val, map[i].initValue());
            ++i;
          }
        } else {
          auto ref = out.initRef();
          ref.setName(capnp::Text::Reader(x.name.data(), x.name.size()));
          ref.setKind(to_wire(x.kind));
        }
      },
      value.storage());
}

Value from_wire(wire::Value::Reader in) {
  switch (in.which()) {
    case wire::Value::NULL_: return Value();
    case wire::Value::BOOL: return Value(in.getBool());
    case wire::Value::INT: return Value(in.getInt());
    case wire::Value::FLOAT: return Value(in.getFloat());
    case wire::Value::TEXT: {
      auto t = in.getText();
      return Value(std::string(t.begin(), t.size()));
    }
    case wire::Value::BYTES: {
      auto d = in.getBytes();
      return Value(Bytes{std::vector<std::uint8_t>(d.begin(), d.end())});
    }
    case wire::Value::LIST: {
      Value::List list;
      auto l = in.getList();
      list.reserve(l.size());
      for (auto item : l) list.push_back(from_wire(item));
      return Value(std::move(list));
    }
    case wire::Value::MAP: {
      Value::Map map;
      for (auto e : in.getMap()) {
        auto k = e.getKey();
        // A repeated key keeps its last value, as a Python dict literal does.
        map.insert_or_assign(std::string(k.begin(), k.size()), from_wire(e.getValue()));
      }
      return Value(std::move(map));
    }
    case wire::Value::REF: {
      auto r = in.getRef();
      auto n = r.getName();
      return Value(ObjectRef{std::string(n.begin(), n.size()), from_wire(r.getKind())});
    }
  }
  throw InvalidArgument("Value has a union member this version does not know (" +
                        std::to_string(static_cast<unsigned>(in.which())) + ")");
}

}  // namespace ipc::manager

// tools/json.h: the small JSON writer the `numa_mp` command uses for --json (internal to tools/).
//
//   Json::Object o{{"name", "jobs"}, {"pages", Json::Object{{"0", 12}}}, {"users", Json::Array{4711}}};
//   std::cout << Json(o).dump() << "\n";
//
// Values keep their types: integers are JSON numbers, text is escaped, objects keep the order they were built in.
// Threads: plain values. Errors: none (non-finite doubles are written as null).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace numa_mp_cli {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  template <typename I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool>)
  Json(I i) {
    if constexpr (std::is_signed_v<I>) {
      v_ = static_cast<int64_t>(i);
    } else {
      v_ = static_cast<uint64_t>(i);
    }
  }
  Json(double d) : v_(d) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  // Indented by two spaces per level.
  std::string dump() const {
    std::string out;
    write(out, 0);
    return out;
  }

 private:
  static void quote(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    out += '"';
  }
  static void newline(std::string& out, int depth) { out += '\n' + std::string(2 * depth, ' '); }

  void write(std::string& out, int depth) const {
    if (std::holds_alternative<std::nullptr_t>(v_)) {
      out += "null";
    } else if (auto* b = std::get_if<bool>(&v_)) {
      out += *b ? "true" : "false";
    } else if (auto* i = std::get_if<int64_t>(&v_)) {
      out += std::to_string(*i);
    } else if (auto* u = std::get_if<uint64_t>(&v_)) {
      out += std::to_string(*u);
    } else if (auto* d = std::get_if<double>(&v_)) {
      if (!std::isfinite(*d)) {
        out += "null";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", *d);
        out += buf;
      }
    } else if (auto* s = std::get_if<std::string>(&v_)) {
      quote(out, *s);
    } else if (auto* a = std::get_if<Array>(&v_)) {
      out += '[';
      for (size_t k = 0; k < a->size(); ++k) {
        out += k ? ", " : "";
        (*a)[k].write(out, depth);
      }
      out += ']';
    } else {
      const auto& o = std::get<Object>(v_);
      out += '{';
      for (size_t k = 0; k < o.size(); ++k) {
        out += k ? "," : "";
        newline(out, depth + 1);
        quote(out, o[k].first);
        out += ": ";
        o[k].second.write(out, depth + 1);
      }
      if (!o.empty()) newline(out, depth);
      out += '}';
    }
  }

  std::variant<std::nullptr_t, bool, int64_t, uint64_t, double, std::string, Array, Object> v_;
};

}  // namespace numa_mp_cli

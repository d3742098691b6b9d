#include "examples/args.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace examples {

Args::Args(int argc, char** argv, std::map<std::string, uint64_t> defaults, std::string positional,
           size_t max_positional)
    : program_(argc > 0 ? argv[0] : "example"), positional_usage_(std::move(positional)), values_(std::move(defaults)) {
  if (const size_t slash = program_.rfind('/'); slash != std::string::npos) program_.erase(0, slash + 1);
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", usage().c_str());
      std::exit(0);
    }
    if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      const std::string name(arg.substr(2));
      if (values_.count(name) == 0) usage_error("unknown option '" + std::string(arg) + "'");
      if (i + 1 == argc) usage_error("option '" + std::string(arg) + "' needs a value");
      const std::string text = argv[++i];
      char* end = nullptr;
      const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
      if (text.empty() || text[0] == '-' || *end != '\0' || v == 0) {
        usage_error("option '" + std::string(arg) + "' needs a positive integer, not '" + text + "'");
      }
      values_[name] = v;
    } else if (positional_.size() < max_positional) {
      positional_.emplace_back(arg);
    } else {
      usage_error("unexpected argument '" + std::string(arg) + "'");
    }
  }
}

std::string Args::usage() const {
  std::string u = "usage: " + program_;
  for (const auto& [name, value] : values_) u += " [--" + name + " N (default " + std::to_string(value) + ")]";
  if (!positional_usage_.empty()) u += " " + positional_usage_;
  return u + "\n";
}

void Args::usage_error(const std::string& what) const {
  std::fprintf(stderr, "%s: %s\n%s", program_.c_str(), what.c_str(), usage().c_str());
  std::exit(2);
}

}  // namespace examples

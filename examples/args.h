// examples/args.h: the command line of the example programs: `--NAME N` options (positive integers, each with a
// default) and up to a given number of positional arguments. `--help` prints the usage to stdout and exits 0; an
// unknown option, a missing or malformed value or an extra argument is named on stderr with the usage, exit 2.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace examples {

class Args {
 public:
  // `defaults`: every option and its default value. `positional`: how the positional arguments read in the usage
  // ("[FOLDER]"), `max_positional` how many there may be.
  Args(int argc, char** argv, std::map<std::string, uint64_t> defaults, std::string positional = {},
       size_t max_positional = 0);

  // The value of --name (its default when not given). REQUIRES: name is one of the defaults.
  uint64_t get(const std::string& name) const { return values_.at(name); }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  [[noreturn]] void usage_error(const std::string& what) const;
  std::string usage() const;

  std::string program_, positional_usage_;
  std::map<std::string, uint64_t> values_;
  std::vector<std::string> positional_;
};

}  // namespace examples

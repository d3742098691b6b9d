// Fuzz target (tests/fuzz.bzl, docs/fuzzing.md): both memory-policy parsers, MemoryPolicy::parse (the short form)
// and MemoryPolicy::from_oci_json, on every input. Property: each either throws numa::PolicyError (the error
// memory_policy.h documents for bad text) or returns a policy whose printed forms parse back to it:
// parse(to_string()) == p and from_oci_json(to_oci_json()) == p. Any other exception, a crash or a sanitizer
// report fails.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ipc/numa/memory_policy.h"

namespace {

using ipc::numa::MemoryPolicy;

void check_round_trip(std::string_view input, MemoryPolicy (*parser)(std::string_view), const char* parser_name) {
  MemoryPolicy policy;
  try {
    policy = parser(input);
  } catch (const ipc::numa::PolicyError&) {
    return;
  }
  const std::string text = policy.to_string();
  const std::string json = policy.to_oci_json();
  if (MemoryPolicy::parse(text) != policy || MemoryPolicy::from_oci_json(json) != policy) {
    std::fprintf(stderr, "%s accepted '%.*s' as %s / %s, which does not parse back to the same policy\n", parser_name,
                 static_cast<int>(input.size()), input.data(), text.c_str(), json.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_round_trip(input, &MemoryPolicy::parse, "MemoryPolicy::parse");
  check_round_trip(input, &MemoryPolicy::from_oci_json, "MemoryPolicy::from_oci_json");
  return 0;
}

// The main of every fuzz target's regression test (tests/fuzz.bzl): calls the target's LLVMFuzzerTestOneInput once
// with every file under the directories (or files) named on the command line, relative to the runfiles root under
// `bazel test`, or as given otherwise (`bazel run //ipc/numa:memory_policy_fuzz_regression -- /tmp/crash-1234`).
// A property the target checks aborts the process, so a failing input fails the test; the file being replayed is
// printed first. The last line is "TEST-RESULT: N passed, 0 failed", N the files replayed; no file at all fails.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

fs::path resolve(const std::string& arg) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr || fs::path(arg).is_absolute()) return arg;
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return fs::path(srcdir) / (workspace ? workspace : "__main__") / arg;
}

std::vector<fs::path> inputs_under(const fs::path& path) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  } else if (fs::exists(path)) {
    files.push_back(path);
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  int replayed = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path path = resolve(argv[i]);
    const std::vector<fs::path> files = inputs_under(path);
    if (files.empty()) {
      std::fprintf(stderr, "fuzz replay: no input under %s\n", path.c_str());
      std::printf("TEST-RESULT: %d passed, 1 failed\n", replayed);
      return 1;
    }
    for (const fs::path& file : files) {
      std::ifstream in(file, std::ios::binary);
      const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::printf("replaying %s (%zu bytes)\n", file.lexically_relative(path.parent_path()).c_str(), bytes.size());
      std::fflush(stdout);
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++replayed;
    }
  }
  if (replayed == 0) {
    std::fprintf(stderr, "fuzz replay: name a corpus directory or an input file\n");
    std::printf("TEST-RESULT: 0 passed, 1 failed\n");
    return 1;
  }
  std::printf("TEST-RESULT: %d passed, 0 failed\n", replayed);
  return 0;
}

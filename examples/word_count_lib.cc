#include <fcntl.h>
#include <kj/compat/gzip.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "examples/args.h"
#include "examples/word_count.h"
#include "ipc/base/process.h"

namespace examples::word_count {
namespace {

void count_words(const std::string& text, Counts& counts) {
  std::string word;
  for (char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      word += static_cast<char>(c | 0x20);  // ASCII lower case
    } else if (!word.empty()) {
      ++counts[word];
      word.clear();
    }
  }
  if (!word.empty()) ++counts[word];
}

bool is_gzipped(const std::filesystem::path& path) { return path.extension() == ".gz"; }

// The text of `path` into `text`, gunzipped when its name ends in .gz (KJ's zlib stream, from Cap'n Proto's
// libkj-gzip). False when it cannot be read, or is not valid gzip.
bool read_text(const std::string& path, std::string& text) {
  text.clear();
  if (!is_gzipped(path)) {
    std::ifstream in(path, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return in.is_open() && !in.bad();
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  kj::FdInputStream file{kj::AutoCloseFd(fd)};
  auto failure = kj::runCatchingExceptions([&] {
    kj::GzipInputStream gunzipped(file);
    char buffer[1 << 16];
    while (const size_t n = gunzipped.tryRead(buffer, 1, sizeof buffer)) text.append(buffer, n);
  });
  return failure == nullptr;
}

}  // namespace

Command parse_command(int argc, char** argv) {
  namespace fs = std::filesystem;
  const examples::Args args(argc, argv, {{"top", 10}, {"workers", uint64_t{ipc::cpu_count()}}}, "[FOLDER]", 1);
  std::string folder = args.positional().empty() ? "/usr/share/doc" : args.positional()[0];
  // `bazel run` starts programs in their runfiles folder: a relative FOLDER means one where bazel was run.
  if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd && fs::path(folder).is_relative()) {
    folder = (fs::path(cwd) / folder).string();
  }
  if (!fs::is_directory(folder)) {
    const std::string program = fs::path(argc > 0 ? argv[0] : "word_count").filename().string();
    std::fprintf(stderr, fs::exists(folder) ? "%s: not a folder: %s\n" : "%s: no such folder: %s\n", program.c_str(),
                 folder.c_str());
    std::exit(1);
  }
  return {folder, static_cast<size_t>(args.get("top")), static_cast<unsigned>(args.get("workers"))};
}

BatchCounts count_batch(Batch batch) {
  BatchCounts result;
  result.first = std::get<0>(batch);
  std::string text;
  for (const std::string& path : std::get<1>(batch)) {
    if (read_text(path, text)) {
      count_words(text, result.second.first);
    } else {
      result.second.second.push_back(path);
    }
  }
  return result;
}

WordCount::WordCount(const std::string& folder, unsigned workers)
    : folder_(folder), terminal_(isatty(STDOUT_FILENO) == 1) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, uint64_t>> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied)) {
    if (entry.is_symlink() || !entry.is_regular_file()) continue;
    if (is_gzipped(entry.path())) ++gzipped_;
    files.emplace_back(entry.path().string(), entry.file_size());
    bytes_ += files.back().second;
  }
  files_ = files.size();
  const uint64_t batch_bytes = std::max<uint64_t>(bytes_ / (16 * uint64_t{workers}), 1);
  uint64_t bytes_in_last = batch_bytes;
  for (auto& [path, bytes] : files) {
    if (bytes_in_last >= batch_bytes) {
      batches_.emplace_back(batches_.size(), std::vector<std::string>{});
      batch_bytes_.push_back(0);
      bytes_in_last = 0;
    }
    std::get<1>(batches_.back()).push_back(std::move(path));
    batch_bytes_.back() += bytes;
    bytes_in_last += bytes;
  }
}

// Progress: a bar redrawn in place on a terminal, a plain line every 10% otherwise.
void WordCount::add(const BatchCounts& result) {
  const auto& [index, counted] = result;
  for (const auto& [word, n] : counted.first) counts_[word] += n;
  for (const std::string& path : counted.second) std::fprintf(stderr, "word_count: could not read %s\n", path.c_str());
  unreadable_ += counted.second.size();
  done_files_ += std::get<1>(batches_[index]).size();
  done_bytes_ += batch_bytes_[index];
  const int percent = bytes_ == 0 ? 100 : static_cast<int>(done_bytes_ * 100 / bytes_);
  if (terminal_) {
    const std::string bar(static_cast<size_t>(percent / 4), '#');
    std::printf("\r[%-25s] %3d%%  %zu of %zu files", bar.c_str(), percent, done_files_, files_);
    if (done_files_ == files_) std::printf("\n");
  } else {
    if (percent < next_line_percent_) return;
    std::printf("progress: %d%% (%zu of %zu files)\n", percent, done_files_, files_);
    next_line_percent_ = percent / 10 * 10 + 10;
  }
  std::fflush(stdout);
}

int WordCount::report(const std::string& who, size_t top) const {
  std::vector<std::pair<std::string, uint64_t>> sorted(counts_.begin(), counts_.end());
  const size_t n = std::min(top, sorted.size());
  std::partial_sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(n), sorted.end(),
                    [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  uint64_t words = 0;
  for (const auto& [word, c] : counts_) words += c;
  std::printf("%zu files (%.1f MiB, %zu gzip'd) under %s, %s: %llu words, %zu different\n", files_,
              static_cast<double>(bytes_) / (1 << 20), gzipped_, folder_.c_str(), who.c_str(),
              static_cast<unsigned long long>(words), counts_.size());
  std::printf("top %zu:\n", n);
  for (size_t i = 0; i < n; ++i) {
    std::printf("%10llu %s\n", static_cast<unsigned long long>(sorted[i].second), sorted[i].first.c_str());
  }
  return unreadable_ == 0 ? 0 : 1;
}

}  // namespace examples::word_count

// Word count map-reduce: a Pool counts the words of every file under a folder (map: one task per batch of files,
// each returning its own counts), the parent merges the counts as they arrive (reduce) and prints the top words.
// Progress: a bar when stdout is a terminal, a plain line every 10% otherwise.
//
//   ./bazelw run //examples:word_count -- [--top N] [--workers N] [FOLDER]     (FOLDER: /usr/share/doc)
//
// A word is a run of ASCII letters, lowercased. Only regular files count (symbolic links are not followed), and
// files ending in .gz are skipped (counted in the summary): most of /usr/share/doc's changelogs are gzip'd.
// A file that cannot be read is named on stderr and makes the exit code 1; the other files still count.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "examples/args.h"
#include "ipc/base/process.h"
#include "ipc/pool/pool.h"

namespace {

using Counts = std::unordered_map<std::string, uint64_t>;
struct File {
  std::string path;
  uint64_t bytes;
};

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

// The task (map): the word counts of a batch of files, and the files it could not read.
std::pair<Counts, std::vector<std::string>> count_files(std::vector<std::string> paths) {
  std::pair<Counts, std::vector<std::string>> result;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad() || !in.is_open()) {
      result.second.push_back(path);
    } else {
      count_words(text, result.first);
    }
  }
  return result;
}

// Shows how far the count is: a bar redrawn in place on a terminal, a line per 10% otherwise.
class Progress {
 public:
  Progress(size_t files, uint64_t bytes) : files_(files), bytes_(bytes), terminal_(isatty(STDOUT_FILENO) == 1) {}
  void add(size_t files, uint64_t bytes) {
    done_files_ += files;
    done_bytes_ += bytes;
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

 private:
  size_t files_, done_files_ = 0;
  uint64_t bytes_, done_bytes_ = 0;
  bool terminal_;
  int next_line_percent_ = 10;
};

}  // namespace

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  const examples::Args args(argc, argv, {{"top", 10}, {"workers", uint64_t{ipc::cpu_count()}}}, "[FOLDER]", 1);
  std::string folder = args.positional().empty() ? "/usr/share/doc" : args.positional()[0];
  // `bazel run` starts programs in their runfiles folder: a relative FOLDER means one where bazel was run.
  if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd && fs::path(folder).is_relative()) {
    folder = (fs::path(cwd) / folder).string();
  }
  if (!fs::is_directory(folder)) {
    std::fprintf(stderr, fs::exists(folder) ? "word_count: not a folder: %s\n" : "word_count: no such folder: %s\n",
                 folder.c_str());
    return 1;
  }

  std::vector<File> files;
  size_t gzipped = 0;
  uint64_t total_bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied)) {
    if (entry.is_symlink() || !entry.is_regular_file()) continue;
    if (entry.path().extension() == ".gz") {
      ++gzipped;
      continue;
    }
    files.push_back({entry.path().string(), entry.file_size()});
    total_bytes += files.back().bytes;
  }

  // Batches of about 1/16 of a worker's share of the bytes: enough tasks to balance, few enough to merge.
  ipc::PoolOptions options;
  options.workers = static_cast<unsigned>(args.get("workers"));
  ipc::Pool pool(options);
  const uint64_t batch_bytes = std::max<uint64_t>(total_bytes / (16 * pool.size()), 1);
  std::vector<std::vector<std::string>> batches;
  std::vector<uint64_t> bytes_of_batch;  // batch i's bytes, for the progress
  uint64_t bytes_in_last = batch_bytes;
  for (const File& f : files) {
    if (bytes_in_last >= batch_bytes) {
      batches.emplace_back();
      bytes_of_batch.push_back(0);
      bytes_in_last = 0;
    }
    batches.back().push_back(f.path);
    bytes_of_batch.back() += f.bytes;
    bytes_in_last += f.bytes;
  }

  // Reduce: merge each batch's counts as it completes (in any order). A batch's index travels with its result.
  Progress progress(files.size(), total_bytes);
  Counts counts;
  size_t unreadable = 0;
  std::vector<std::tuple<size_t, std::vector<std::string>>> tasks;
  for (size_t i = 0; i < batches.size(); ++i) tasks.emplace_back(i, std::move(batches[i]));
  const auto indexed_count = [](std::tuple<size_t, std::vector<std::string>> task) {
    return std::pair(std::get<0>(task), count_files(std::move(std::get<1>(task))));
  };
  for (const auto& [index, result] : pool.imap_unordered(indexed_count, tasks)) {
    for (const auto& [word, n] : result.first) counts[word] += n;
    for (const std::string& path : result.second) std::fprintf(stderr, "word_count: could not read %s\n", path.c_str());
    unreadable += result.second.size();
    progress.add(std::get<1>(tasks[index]).size(), bytes_of_batch[index]);
  }

  std::vector<std::pair<std::string, uint64_t>> top(counts.begin(), counts.end());
  const size_t n = std::min<size_t>(args.get("top"), top.size());
  std::partial_sort(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(n), top.end(), [](auto& a, auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  uint64_t words = 0;
  for (const auto& [word, c] : counts) words += c;
  std::printf("%zu files (%.1f MiB) under %s, %zu gzip'd files skipped, %u workers: %llu words, %zu different\n",
              files.size(), static_cast<double>(total_bytes) / (1 << 20), folder.c_str(), gzipped, pool.size(),
              static_cast<unsigned long long>(words), counts.size());
  std::printf("top %zu:\n", n);
  for (size_t i = 0; i < n; ++i) {
    std::printf("%10llu %s\n", static_cast<unsigned long long>(top[i].second), top[i].first.c_str());
  }
  return unreadable == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "word_count: %s\n", e.what());
  return 1;
}

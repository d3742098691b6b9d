// examples/word_count.h: the word count map-reduce that //examples:word_count runs on one machine (ipc::Pool) and
// //examples:word_count_mpi on MPI ranks (ipc::mpi::Pool): the same code over either pool, whose task methods are
// the same. A task counts the words of a batch of files; the parent merges the counts as they arrive (in any
// order), shows the progress and prints the top words.
//
// A word is a run of ASCII letters, lowercased. Only regular files count (symbolic links are not followed); files
// ending in .gz are read gunzipped (most of /usr/share/doc's changelogs are gzip'd), their size on disk counting
// for the batches and the progress. A file that cannot be read (or a .gz that is not valid gzip) is named on stderr
// and makes the exit code 1; the other files still count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace examples::word_count {

using Counts = std::unordered_map<std::string, uint64_t>;

// The command line of both programs: [--top N] [--workers N] [FOLDER] (default /usr/share/doc). Exits with the
// usage (2) on a bad one, or 1 when FOLDER is not a folder.
struct Command {
  std::string folder;
  size_t top;
  unsigned workers;
};
Command parse_command(int argc, char** argv);

// A task: a batch's index and its files. Its result: the index, the word counts and the files it could not read.
using Batch = std::tuple<size_t, std::vector<std::string>>;
using BatchCounts = std::pair<size_t, std::pair<Counts, std::vector<std::string>>>;
BatchCounts count_batch(Batch batch);

// The files under a folder cut into batches (about 1/16 of a worker's share of the bytes each: enough tasks to
// balance, few enough to merge), and the merged counts as batches come back, with the progress.
class WordCount {
 public:
  WordCount(const std::string& folder, unsigned workers);
  const std::vector<Batch>& batches() const { return batches_; }
  // Merges one batch's counts; names its unreadable files on stderr; shows the progress.
  void add(const BatchCounts& counts);
  // Prints the totals ("... files ..., <who>: W words, D different") and the top words; the exit status.
  int report(const std::string& who, size_t top) const;

 private:
  std::string folder_;
  std::vector<Batch> batches_;
  std::vector<uint64_t> batch_bytes_;
  size_t files_ = 0, gzipped_ = 0, unreadable_ = 0, done_files_ = 0;
  uint64_t bytes_ = 0, done_bytes_ = 0;
  bool terminal_;
  int next_line_percent_ = 10;
  Counts counts_;
};

// The whole count over `pool` (ipc::Pool or ipc::mpi::Pool); `who` says which workers did it. The exit status.
template <typename Pool>
int count_words(Pool& pool, const Command& command, const std::string& who) {
  WordCount count(command.folder, pool.size());
  for (const auto& counts : pool.imap_unordered(count_batch, count.batches())) count.add(counts);
  return count.report(who, command.top);
}

}  // namespace examples::word_count

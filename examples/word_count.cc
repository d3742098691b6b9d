// Word count map-reduce: a Pool counts the words of every file under a folder (map: one task per batch of files,
// each returning its own counts), the parent merges the counts as they arrive (reduce) and prints the top words.
// Progress: a bar when stdout is a terminal, a plain line every 10% otherwise. The count itself is
// examples/word_count.h, shared with word_count_mpi.cc (the same over MPI ranks).
//
//   ./bazelw run //examples:word_count -- [--top N] [--workers N] [FOLDER]     (FOLDER: /usr/share/doc)
#include <cstdio>
#include <exception>
#include <string>

#include "examples/word_count.h"
#include "ipc/pool/pool.h"

int main(int argc, char** argv) try {
  const auto command = examples::word_count::parse_command(argc, argv);
  ipc::PoolOptions options;
  options.workers = command.workers;
  ipc::Pool pool(options);
  return examples::word_count::count_words(pool, command, std::to_string(pool.size()) + " workers");
} catch (const std::exception& e) {
  std::fprintf(stderr, "word_count: %s\n", e.what());
  return 1;
}

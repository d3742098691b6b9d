// The word count of word_count.cc over MPI ranks: the same code (examples/word_count.h) over an ipc::mpi::Pool,
// whose tasks run in the local pool of every rank; rank 0 lists the files, merges the counts and prints.
// Each rank reads the files it is given, so FOLDER must be at the same path on every host (a shared filesystem).
//
//   mpirun --bind-to none -np 3 bazel-bin/examples/word_count_mpi [--top N] [--workers N per rank] [FOLDER]
//   bazel-bin/examples/word_count_mpi ...            (without mpirun: one rank, as word_count)
// Build it with ./bazelw build --config=mpi //examples:word_count_mpi (Open MPI: docs/mpi.md).
#include <cstdio>
#include <exception>
#include <string>

#include "examples/word_count.h"
#include "ipc/pool/mpi/pool.h"

int main(int argc, char** argv) try {
  ipc::mpi::init(argc, argv);  // ranks other than 0 serve rank 0's pool here, and exit with it
  const auto command = examples::word_count::parse_command(argc, argv);
  ipc::PoolOptions options;
  options.workers = command.workers;  // on each rank
  ipc::mpi::Pool pool(options);
  std::string per_rank;
  for (unsigned n : pool.workers_per_rank()) per_rank += (per_rank.empty() ? "" : " + ") + std::to_string(n);
  const std::string who = std::to_string(pool.size()) + " workers on " + std::to_string(ipc::mpi::world_size()) +
                          " ranks (" + per_rank + ")";
  return examples::word_count::count_words(pool, command, who);
} catch (const std::exception& e) {
  std::fprintf(stderr, "word_count_mpi: %s\n", e.what());
  return 1;
}

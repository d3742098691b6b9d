// The Catch2 main of MPI test programs: ipc::mpi::init first (ranks other than 0 serve there and exit when rank 0
// ends; an exec'd worker runs there), then Catch2, on rank 0 only.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "ipc/pool/mpi/pool.h"

int main(int argc, char** argv) {
  ipc::mpi::init(argc, argv);
  return Catch::Session().run(argc, argv);
}

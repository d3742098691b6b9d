// The Catch2 main of tests run as on a kernel without pidfds (older_kernel.h): the filter goes in before any
// test runs, for this process and every child it starts.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/support/older_kernel.h"

int main(int argc, char** argv) {
  if (!ipc::test::act_as_older_kernel_in_main()) return 0;
  return Catch::Session().run(argc, argv);
}

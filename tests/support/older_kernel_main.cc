// The Catch2 main of tests run as on a kernel without pidfds (older_kernel.h): the filter goes in before any
// test runs, for this process and every child it starts.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "tests/support/older_kernel.h"

int main(int argc, char** argv) {
  if (!ipc::test::act_as_older_kernel(ipc::test::OlderKernel::kBefore5_1)) {
    std::fprintf(stderr, "skipped: this kernel takes no seccomp filter here, so no older kernel can be acted\n");
    return 0;
  }
  return Catch::Session().run(argc, argv);
}

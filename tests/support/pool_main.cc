// The Catch2 main of pool tests: ipc::init first (an exec'd worker runs there and never returns to Catch2), then
// the fork server, before Catch2 or any test starts a thread. Built with IPC_TEST_OLDER_KERNEL (the pool_main_
// older_kernel target), it first makes the kernel look like one without pidfds (older_kernel.h), for this process
// and every worker.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "ipc/pool/init.h"

#ifdef IPC_TEST_OLDER_KERNEL
#include "tests/support/older_kernel.h"
#endif

int main(int argc, char** argv) {
#ifdef IPC_TEST_OLDER_KERNEL
  if (!ipc::test::act_as_older_kernel_in_main()) return 0;
#endif
  ipc::init(argc, argv);
  ipc::start_fork_server();
  return Catch::Session().run(argc, argv);
}

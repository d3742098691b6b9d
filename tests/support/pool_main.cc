// The Catch2 main of pool tests: ipc::init first (an exec'd worker runs there and never returns to Catch2), then
// the fork server, before Catch2 or any test starts a thread.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "ipc/pool/init.h"

int main(int argc, char** argv) {
  ipc::init(argc, argv);
  ipc::start_fork_server();
  return Catch::Session().run(argc, argv);
}

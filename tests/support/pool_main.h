// tests/support/pool_main.h: for pool tests run once per start method. The test binary links
// //tests/support:pool_main, whose main() calls ipc::init() and ipc::start_fork_server() before Catch2 runs (so
// exec'd workers and fork-server workers can start), and BUILD defines IPC_TEST_START_METHOD per binary.
//
// Threads / Processes / Lifetime: main() runs before any test; the fork server it starts lives as long as the
//   test process. Errors: none here.
#pragma once

#include "ipc/pool/init.h"

#ifndef IPC_TEST_START_METHOD
#define IPC_TEST_START_METHOD kFork
#endif

namespace ipc::test {

// The start method this binary's pools use.
inline constexpr StartMethod kStartMethod = StartMethod::IPC_TEST_START_METHOD;

}  // namespace ipc::test

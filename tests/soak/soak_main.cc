// tests/soak/soak_main.cc: the crash soak as a program, for long runs by hand (docs/guarantees.md, "The crash soak").
//
//   ./bazelw run //tests/soak:soak -- --seconds=600 [--seed=N]
//
// Prints its seed first (a failing run replays with --seed), a line per round, a summary and every problem found;
// exits 0 when every check held, 1 when one did not, 2 on a bad argument.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "ipc/pool/init.h"
#include "tests/soak/soak.h"

int main(int argc, char** argv) {
  ipc::init(argc, argv);
  ipc::start_fork_server();
  ipc::soak::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    char* end = nullptr;
    if (arg.rfind("--seconds=", 0) == 0) {
      const long seconds = std::strtol(arg.c_str() + 10, &end, 10);
      if (*end || seconds <= 0) {
        std::fprintf(stderr, "soak: --seconds needs a positive number, got '%s'\n", arg.c_str() + 10);
        return 2;
      }
      options.duration = std::chrono::seconds(seconds);
    } else if (arg.rfind("--seed=", 0) == 0) {
      options.seed = std::strtoull(arg.c_str() + 7, &end, 10);
      if (*end || options.seed == 0) {
        std::fprintf(stderr, "soak: --seed needs a positive number, got '%s'\n", arg.c_str() + 7);
        return 2;
      }
    } else if (arg == "--help") {
      std::printf("usage: soak [--seconds=N (default 30)] [--seed=N (default: random, printed)]\n");
      return 0;
    } else {
      std::fprintf(stderr, "soak: unknown argument '%s' (see --help)\n", arg.c_str());
      return 2;
    }
  }
  const ipc::soak::Report report = ipc::soak::run(options, std::cout);
  return report.ok() ? 0 : 1;
}

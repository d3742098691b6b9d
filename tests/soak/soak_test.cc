// The crash soak, short: about 40 s of rounds in which random processes are SIGKILLed (tests/soak/soak.h). Longer
// runs by hand: ./bazelw run //tests/soak:soak -- --seconds=600 (docs/guarantees.md).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "tests/soak/soak.h"
#include "tests/support/test_support.h"

TEST_CASE("queues, pipes, locks, a pool and the Manager keep every promise while random processes are killed",
          "[soak][kill]") {
  ipc::soak::Options options;
  // Sanitizer builds run each round several times slower: fewer rounds in the same time is still a soak.
  options.duration = std::chrono::seconds(40);
  if (const char* seed = std::getenv("SOAK_SEED")) options.seed = std::strtoull(seed, nullptr, 10);
  const ipc::soak::Report report = ipc::soak::run(options, std::cout);
  INFO(report.summary());
  for (const auto& p : report.problems) CHECK(p == "");
  CHECK(report.rounds >= 5);
  CHECK(report.kills >= report.rounds);
  CHECK(report.queue_messages > 0);
  CHECK(report.pipe_messages > 0);
  CHECK(report.pool_tasks > 0);
  CHECK(report.manager_items > 0);
}

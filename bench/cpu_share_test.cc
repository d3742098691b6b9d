// The parsing behind the benchmark's "was the machine busy" mark (bench/cpu_share.h), and one real sample.
#include "bench/cpu_share.h"

#include <time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

TEST_CASE("machine_ticks sums busy and all time from the cpu line", "[bench]") {
  // user nice system idle iowait irq softirq steal guest guest_nice
  const auto t = bench::machine_ticks("cpu  100 5 30 800 7 2 3 11 0 0\ncpu0 50 2 15 400 3 1 1 5 0 0\n");
  REQUIRE(t);
  CHECK(t->first == 100 + 5 + 30 + 2 + 3 + 11);
  CHECK(t->second == 100 + 5 + 30 + 2 + 3 + 11 + 800 + 7);
  CHECK_FALSE(bench::machine_ticks(""));
  CHECK_FALSE(bench::machine_ticks("cpu0 1 2 3 4 5 6 7 8\n"));
  CHECK_FALSE(bench::machine_ticks("cpu  1 2 3 4 5 6 7\n"));  // steal missing: cut short
  CHECK_FALSE(bench::machine_ticks("cpu  1 2 x 4 5 6 7 8\n"));
}

TEST_CASE("process_ticks reads the session and the four CPU times, past a comm with ') ' in it", "[bench]") {
  const auto t = bench::process_ticks(
      "4242 (we) ird) S 1 4242 4100 0 -1 4194560 100 0 0 0 70 20 5 3 20 0 1 0 12345 1000 100 18446744073709551615\n");
  REQUIRE(t);
  CHECK(t->first == 4100);
  CHECK(t->second == 70 + 20 + 5 + 3);
  CHECK_FALSE(bench::process_ticks(""));
  CHECK_FALSE(bench::process_ticks("4242 (cut) S 1 4242 4100 0"));
  CHECK_FALSE(bench::process_ticks("4242 no parentheses S 1 2 3"));
}

TEST_CASE("this session's own CPU time is counted as ours", "[bench]") {
  const bench::CpuSample before = bench::sample_cpu();
  REQUIRE(before.valid);
  // 0.4 s of CPU in this process (however long a busy machine takes to give it): ours grows by at least 0.25 s.
  timespec t{};
  const auto cpu_seconds = [&t] {
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
  };
  const double cpu_start = cpu_seconds();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (cpu_seconds() - cpu_start < 0.4 && std::chrono::steady_clock::now() < give_up) {
  }
  REQUIRE(cpu_seconds() - cpu_start >= 0.4);
  const bench::CpuSample after = bench::sample_cpu();
  REQUIRE(after.valid);
  CHECK(after.ours - before.ours >= static_cast<uint64_t>(::sysconf(_SC_CLK_TCK)) / 4);
  const double share = bench::others_share(before, after);
  CHECK(share >= 0);
  CHECK(share <= 1);
  CHECK(bench::others_share(after, before) == 0);  // a window that runs backwards is empty
}

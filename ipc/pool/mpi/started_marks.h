// ipc/pool/mpi/started_marks.h (tests only): lets a test wait until its tasks have started on every rank, instead
// of pausing for a while and hoping they did.
//
//   const StartedMarks started;                                  // a fresh directory in /tmp, removed at scope end
//   pool.apply_async(mark_started_then_sleep, started.dir, 60000);   // each such task leaves a file there first
//   REQUIRE(started.wait_for(pool.size(), 60s));                 // every worker of every rank runs one now
//
// Contract: the ranks share this host's /tmp (the MPI tests run every rank on one host). mark_started_then_sleep
// runs in a worker of any rank; wait_for in the test's process, looking every 5 ms until the count or the deadline.
// Errors: StartedMarks throws std::runtime_error when mkdtemp fails.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>

namespace ipc::mpi::testing {

// Leaves a file in `dir` (named by pid and a count), then sleeps for `ms` ms: a task that is seen to have started.
inline int mark_started_then_sleep(std::string dir, int ms) {
  static int count = 0;
  std::ofstream(dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(++count)) << "started\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

struct StartedMarks {
  std::string dir;
  StartedMarks() {
    char name[] = "/tmp/mpi-started-XXXXXX";
    if (!::mkdtemp(name)) throw std::runtime_error("StartedMarks: mkdtemp failed");
    dir = name;
  }
  ~StartedMarks() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  StartedMarks(const StartedMarks&) = delete;
  StartedMarks& operator=(const StartedMarks&) = delete;

  // True once `n` tasks have started; false if `timeout` passes first.
  bool wait_for(size_t n, std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto files = std::filesystem::directory_iterator(dir);
      if (static_cast<size_t>(std::distance(begin(files), end(files))) >= n) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the next look at the event, not a pause for it
    }
  }
};

}  // namespace ipc::mpi::testing

// tests/soak/soak.h: the crash soak. Queues, pipes, locks, a pool and the Manager run together, in many processes,
// while random processes are SIGKILLed, round after round, for a bounded time; afterwards every promise of
// docs/guarantees.md is checked against what the survivors saw.
//
//   ipc::soak::Report r = ipc::soak::run({.duration = std::chrono::seconds(30), .seed = 42}, std::cout);
//
// Each round makes a segment (a Queue, a Lock guarding two counters), a Pipe, and a Manager queue, starts 10
// processes (2 queue producers and 2 consumers, 2 lockers, a pipe sender and receiver, a Manager producer and
// consumer) and submits tasks to a Pool of 2 workers; it SIGKILLs 1 to 3 of those processes (pool workers
// included) at random moments, stops the rest, and checks:
//   - no hang: every process, future and drain finishes within its deadline, or the report names it;
//   - no message duplicated or corrupted: sequence numbers and checksums per producer (queue, pipe, Manager);
//   - every loss counted where the API promises it: queue messages missing <= Queue::abandoned_count() + consumers
//     killed (the one message a killed consumer may hold); the pipe delivers everything sent completely, in order;
//     a Lock's holder killed is reported as kOwnerDied to the next holder (the counters it guarded are repaired,
//     never silently inconsistent); each pool task returns its value or fails with WorkerLost naming a worker that
//     was killed; Manager items missing <= QueueProxy::abandoned_count() + consumers killed (the soak's own window
//     between get()'s return and its ledger), and abandoned_count() <= consumers killed;
//   - no segment left: after the soak, Segment::list() shows none of its names.
// Threads: run() is called from one thread of a process that has no other children to reap.
// Processes: run() forks; the children never return into the caller (they _exit).
// Lifetime: everything a run makes is removed before it returns, also when a check failed.
// Errors: what the soak finds goes into Report::problems; only a failure to set a round up throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace ipc::soak {

struct Options {
  std::chrono::milliseconds duration{30000};  // rounds start until this has passed
  uint64_t seed = 0;                          // 0: a random seed (printed first, so that a failure replays)
};

struct Report {
  uint64_t seed = 0;
  uint64_t rounds = 0;
  uint64_t kills = 0;                 // processes SIGKILLed, pool workers included
  uint64_t queue_messages = 0;        // delivered through the segment queues
  uint64_t queue_abandoned = 0;       // counted lost by the queues
  uint64_t pipe_messages = 0;
  uint64_t lock_repairs = 0;          // kOwnerDied seen and repaired
  uint64_t pool_tasks = 0;
  uint64_t pool_worker_lost = 0;
  uint64_t manager_items = 0;
  std::vector<std::string> problems;  // empty: every check held
  bool ok() const { return problems.empty(); }
  std::string summary() const;
};

// Runs rounds until options.duration has passed; prints "soak: seed N" first, then a line per round, to `log`.
Report run(const Options& options, std::ostream& log);

}  // namespace ipc::soak

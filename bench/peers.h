// bench/peers.h: reference measurements that every benchmark group sets its figures beside (../shared/BENCHMARKS.md).
// Each call runs the peer once, in fresh child processes where it is cross-process, and returns one figure; wrap it
// in bench::median_of for repetitions.
//
// Threads: call from the benchmark's main thread (children are fork()ed, through ipc::Process). Processes: children exit before return.
// Errors: an OS failure throws std::runtime_error; a child that fails makes the figure negative ("n/a").
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "bench/harness.h"
#include "ipc/base/process.h"

namespace bench {

// Round trip of a bare atomic ping-pong on one cache line between two processes (both spinning): ns.
double atomic_pingpong_rtt_ns(uint64_t round_trips);

// pipe(2), one write(2) of `message_bytes` per message, 1 producer process -> 1 consumer process: msgs/s.
double pipe_msgs_per_s(uint64_t messages, size_t message_bytes = 8);

// Unix socketpair round trip, blocking reads, 8-byte messages: ns (the mean). `idle_gap_us` > 0 waits that long
// before each ping, so that the receiver is asleep when the ping arrives (the wake-up path); then the figure is
// the median round trip, as for every "asleep" row.
double socketpair_rtt_ns(uint64_t round_trips, unsigned idle_gap_us = 0);
// Back-to-back socketpair round trips, each timed (round_trip_each_ns): the mean and the median, for the tail.
MeanMedian socketpair_rtt_each_ns(uint64_t round_trips);

// Boost.Interprocess message_queue (mutex + condition), 8-byte messages, `producers` -> `consumers` processes
// (messages split evenly): msgs/s.
double boost_message_queue_msgs_per_s(uint64_t messages, int producers = 1, int consumers = 1);

// memcpy bandwidth within one process for blocks of `block_bytes` (source and destination distinct): bytes/s.
double memcpy_bytes_per_s(size_t block_bytes, size_t total_bytes);

// Helpers for groups that run their own cross-process figures.
// Starts a child (ipc::Process) that runs `body` and exits 0 (1 if it threw).
ipc::Process fork_child(const std::function<void()>& body);
// Waits for a child; true when it exited 0 (what it threw is printed).
bool wait_child(ipc::Process& child);
// A MAP_SHARED anonymous mapping shared with children forked later; freed by free_shared.
void* map_shared(size_t bytes);
void free_shared(void* p, size_t bytes);

// When the timed part of a one-way stream began: the producer process stamps it (now_seconds(), the machine's
// monotonic clock, the same in every process) just before it sends its first timed message, and the consumer reads
// it once it received the last one. A stream timed so leaves out what comes before its first timed message (the
// child's start, the first lap through fresh memory) and counts none of the producer's lead as the consumer's
// speed: the messages the producer had queued before that send were sent untimed. Make it before the fork.
class StreamStart {
 public:
  StreamStart();
  ~StreamStart();
  StreamStart(const StreamStart&) = delete;
  StreamStart& operator=(const StreamStart&) = delete;
  // Producer, before it sends the first timed message.
  void stamp();
  // Consumer, after it received the last message: seconds since stamp().
  double seconds_since() const;

 private:
  std::atomic<double>* at_;
};

}  // namespace bench

// bench/cpu_share.h: how much of the machine's CPU time processes other than this benchmark's took, over a window
// or over a whole run: the figure that says whether a run on a shared machine is reliable (../shared/BENCHMARKS.md).
//
// The 1-minute load average cannot say it: it counts this benchmark's own spinning processes (a run right after
// another, or after a busy-polling row, reads 2.5 on an otherwise idle 2-CPU machine) and lags by a minute.
// Instead: the machine's busy time (/proc/stat: user, nice, system, irq, softirq, steal) minus the CPU time of the
// processes of this benchmark's session (/proc/PID/stat of every process whose session is ours: utime + stime and
// cutime + cstime, which hold the children each has reaped). Steal counts as taken by others: on a virtual machine
// it is time the hypervisor gave to other guests.
//
// Threads: call from one thread. Processes: reads /proc only. Errors: unreadable files make a sample invalid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace bench {

// The "cpu " line of /proc/stat, summed over every CPU: {busy, all} in clock ticks, busy = user + nice + system +
// irq + softirq + steal, all = busy + idle + iowait (guest time is already inside user and nice). nullopt when
// the text has no well-formed "cpu " line.
std::optional<std::pair<uint64_t, uint64_t>> machine_ticks(std::string_view proc_stat);

// A /proc/PID/stat line: {session, utime + stime + cutime + cstime} in clock ticks. nullopt when malformed (comm
// may hold spaces and parentheses: the last ')' ends it).
std::optional<std::pair<pid_t, uint64_t>> process_ticks(std::string_view pid_stat);

// One sample of the machine's and this session's CPU time.
struct CpuSample {
  uint64_t machine_busy = 0;
  uint64_t machine_all = 0;
  uint64_t ours = 0;  // every process of this process's session, with the children they reaped
  bool valid = false;
};
CpuSample sample_cpu();

// The share of the machine's CPU time from `before` to `after` that processes outside our session took, in
// [0, 1] (0 for an invalid or empty window).
double others_share(const CpuSample& before, const CpuSample& after);

}  // namespace bench

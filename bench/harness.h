// bench/harness.h: the benchmark program's shared vocabulary. Each component adds a file that registers a
// group of figures; //bench:all runs every group (or those named with --only) and prints one table.
//
// A figure is always printed beside a peer measured in the same run, with the ratio, so that it means something
// on any machine (../shared/BENCHMARKS.md). Medians of several repetitions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench {

// Which way is better for a figure: msgs/s (higher) or ns per round trip (lower).
enum class Better { kHigher, kLower };

// Repetitions of one measurement: their median and spread. n == 0: no repetition succeeded (the median is -1).
struct Sample {
  double median = -1;
  double min = 0, max = 0;
  int n = 0;
  // (max - min) / median: the width of the spread relative to the figure (0 for one repetition).
  double spread() const { return n > 0 && median > 0 ? (max - min) / median : 0; }
};

struct Row {
  std::string name;       // "SPSC 8 B, 1 producer -> 1 consumer process"
  double value = 0;       // our figure
  std::string unit;       // "msgs/s", "ns", "calls/s", "B/s", "CPU ms"
  std::string peer;       // "Boost message_queue"; empty when the figure has no peer
  double peer_value = 0;  // the peer's figure, same unit, measured in this run
  double ratio = 0;       // value / peer_value (0 when no peer)
  Sample ours, theirs;    // the repetitions behind value and peer_value, when added as Samples (n == 0: not)
};

class Report {
 public:
  // Notes the load average at the start and `others_at_start`, the share of the CPUs other processes took then
  // (bench/cpu_share.h), for the JSON copy.
  explicit Report(double others_at_start = 0);
  // Adds a row; the ratio is value / peer_value.
  void add(const std::string& name, double value, const std::string& unit, const std::string& peer = "",
           double peer_value = 0);
  // The same from repetitions: the medians, and the spread of each printed after the ratio.
  void add(const std::string& name, const Sample& ours, const std::string& unit, const std::string& peer = "",
           const Sample& theirs = {});
  // Records a target's verdict: e.g. target("SPSC vs message_queue", ratio, ">=", 20).
  void target(const std::string& what, double ratio, const std::string& op, double bound);

  void print_table() const;
  // `others_during`: the share of the CPU time other processes took during the run.
  void write_json(const std::string& path, double others_during) const;
  const std::vector<Row>& rows() const { return rows_; }

 private:
  struct Verdict {
    std::string what;
    double ratio;
    std::string op;
    double bound;
    bool met;
  };
  void add_row(const Row& row);  // keeps and prints a row
  std::vector<Row> rows_;
  std::vector<Verdict> verdicts_;
  double load_start_;
  double others_at_start_;
};

// Other processes taking more than this share of the machine's CPU time make a run unreliable.
inline constexpr double kBusyShare = 0.1;

// Registers a group of figures, run by //bench:all. Use at namespace scope:
//   static bench::Group g("queue", [](bench::Report& r) { ... });
struct Group {
  Group(const char* name, std::function<void(Report&)> run);
};

// Median of `reps` runs of `f` (each returning one measurement).
double median_of(int reps, const std::function<double()>& f);
// Median, min and max of the values that are >= 0 (a negative value is a failed repetition).
Sample summarize(const std::vector<double>& values);
// summarize() of `reps` runs of `f`.
Sample sample_of(int reps, const std::function<double()>& f);
// summarize() of `reps` runs of each of `ours` and `peer`, taken in turns (ours then peer, then peer then ours,
// ...) so that both see the same moments of a machine whose load changes, rather than one block each: for rows
// whose ratio is a target. Returns {ours, peer}.
struct SamplePair {
  Sample ours, peer;
};
SamplePair sample_alternately(int reps, const std::function<double()>& ours, const std::function<double()>& peer);
// The same for any number of measurements: in turns (a, b, c, then c, b, a, ...); one Sample per measurement.
std::vector<Sample> sample_in_turns(int reps, const std::vector<std::function<double()>>& measurements);
// Median of samples (for per-operation latencies, where a mean is dominated by rare scheduler hiccups).
double median(std::vector<double> samples);

// Times `n` calls of `round_trip` (which returns false on failure): ns per round trip, or -1 on failure. With
// `idle_gap_us` > 0 it waits that long before each call, so that the other side is asleep when the call
// starts, and reports the median call (each one a separate wake-up); otherwise the mean of the tight loop.
// Every "round trip" row and its socketpair peer are measured through this, so they are comparable.
double round_trip_ns(uint64_t n, unsigned idle_gap_us, const std::function<bool()>& round_trip);

// Times `n` back-to-back calls of `round_trip` one by one: the mean and the median ns per call (a mean far above
// the median shows a long tail), or -1 for both on failure.
struct MeanMedian {
  double mean = -1, median = -1;
};
MeanMedian round_trip_each_ns(uint64_t n, const std::function<bool()>& round_trip);

// Runs `python3 bench/python_peers.py <name> <args...>` and returns the number it prints on its last line,
// or a negative value when python3 or the peer is unavailable (the row then shows "n/a").
double python_peer(const std::string& name, const std::vector<std::string>& args = {});

// Wall-clock seconds from a monotonic clock.
double now_seconds();

// The 1-minute load average (/proc/loadavg), or -1.
double load_average();

}  // namespace bench

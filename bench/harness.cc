#include "bench/harness.h"
#include "bench/cpu_share.h"
#include "ipc/pool/init.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

namespace bench {
namespace {

std::vector<std::pair<std::string, std::function<void(Report&)>>>& registry() {
  static std::vector<std::pair<std::string, std::function<void(Report&)>>> groups;
  return groups;
}

std::string human(double v) {
  char buf[64];
  double a = std::fabs(v);
  if (a >= 1e9) std::snprintf(buf, sizeof buf, "%.2f G", v / 1e9);
  else if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  else if (a >= 1e3) std::snprintf(buf, sizeof buf, "%.2f k", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.2f ", v);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); out += b; }
    else out += c;
  }
  return out;
}

}  // namespace

Group::Group(const char* name, std::function<void(Report&)> run) { registry().emplace_back(name, std::move(run)); }

Report::Report(double others_at_start) : load_start_(load_average()), others_at_start_(others_at_start) {}

void Report::add(const std::string& name, double value, const std::string& unit, const std::string& peer,
                 double peer_value) {
  add_row(Row{name, value, unit, peer, peer_value, peer_value > 0 ? value / peer_value : 0, {}, {}});
}

void Report::add(const std::string& name, const Sample& ours, const std::string& unit, const std::string& peer,
                 const Sample& theirs) {
  const double peer_value = theirs.n > 0 ? theirs.median : 0;
  add_row(Row{name, ours.median, unit, peer, peer_value, peer_value > 0 && ours.n > 0 ? ours.median / peer_value : 0,
              ours, theirs});
}

void Report::add_row(const Row& r) {
  rows_.push_back(r);
  std::printf("  %-58s %12s%-7s", r.name.c_str(), r.value < 0 ? "n/a" : human(r.value).c_str(), r.unit.c_str());
  if (!r.peer.empty()) {
    if (r.peer_value > 0) std::printf(" | %-34s %12s%-7s x%.2f", r.peer.c_str(), human(r.peer_value).c_str(),
                                      r.unit.c_str(), r.ratio);
    else std::printf(" | %-34s %12s", r.peer.c_str(), "n/a");
  }
  // The spread of each side's repetitions: (max - min) / median, and how many.
  if (r.ours.n > 0) std::printf("  spread %.0f%% n=%d", 100 * r.ours.spread(), r.ours.n);
  if (r.theirs.n > 0) std::printf(" | %.0f%% n=%d", 100 * r.theirs.spread(), r.theirs.n);
  std::printf("\n");
  std::fflush(stdout);
}

void Report::target(const std::string& what, double ratio, const std::string& op, double bound) {
  bool met = ratio > 0 && (op == ">=" ? ratio >= bound : ratio <= bound);
  verdicts_.push_back({what, ratio, op, bound, met});
}

void Report::print_table() const {
  std::printf("\nTargets (ratio = ours / peer, same run):\n");
  for (const auto& v : verdicts_) {
    std::printf("  %-60s ratio %8.2f  target %s %-6g  %s\n", v.what.c_str(), v.ratio, v.op.c_str(), v.bound,
                v.ratio > 0 ? (v.met ? "met" : "NOT MET") : "n/a (peer unavailable)");
  }
}

void Report::write_json(const std::string& path, double others_during) const {
  std::ofstream out(path);
  const double load_end = load_average();
  const double cpus = std::max(1u, std::thread::hardware_concurrency());
  out << "{\n  \"load_average\": {\"start\": " << load_start_ << ", \"end\": " << load_end << "},\n";
  out << "  \"others_cpu_share\": {\"start\": " << others_at_start_ << ", \"during\": " << others_during << "},\n";
  out << "  \"cpus\": " << cpus << ",\n  \"unreliable\": "
      << (others_at_start_ > kBusyShare || others_during > kBusyShare ? "true" : "false") << ",\n";
  out << "  \"rows\": [\n";
  for (size_t i = 0; i < rows_.size(); ++i) {
    const Row& r = rows_[i];
    out << "    {\"name\": \"" << json_escape(r.name) << "\", \"value\": " << r.value << ", \"unit\": \""
        << json_escape(r.unit) << "\", \"peer\": \"" << json_escape(r.peer) << "\", \"peer_value\": " << r.peer_value
        << ", \"ratio\": " << r.ratio;
    for (const auto& [key, sample] : {std::pair{"value_reps", &r.ours}, std::pair{"peer_reps", &r.theirs}}) {
      if (sample->n > 0) {
        out << ", \"" << key << "\": {\"n\": " << sample->n << ", \"min\": " << sample->min
            << ", \"max\": " << sample->max << "}";
      }
    }
    out << "}" << (i + 1 < rows_.size() ? "," : "") << "\n";
  }
  out << "  ],\n  \"targets\": [\n";
  for (size_t i = 0; i < verdicts_.size(); ++i) {
    const Verdict& v = verdicts_[i];
    out << "    {\"target\": \"" << json_escape(v.what) << "\", \"ratio\": " << v.ratio << ", \"op\": \"" << v.op
        << "\", \"bound\": " << v.bound << ", \"met\": " << (v.met ? "true" : "false") << "}"
        << (i + 1 < verdicts_.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double round_trip_ns(uint64_t n, unsigned idle_gap_us, const std::function<bool()>& round_trip) {
  double total = 0;
  std::vector<double> samples;
  for (uint64_t i = 0; i < n; ++i) {
    if (idle_gap_us) std::this_thread::sleep_for(std::chrono::microseconds(idle_gap_us));
    const double t0 = now_seconds();
    if (!round_trip()) return -1;
    const double dt = now_seconds() - t0;
    total += dt;
    if (idle_gap_us) samples.push_back(dt);
  }
  return (idle_gap_us ? median(samples) : total / static_cast<double>(n)) * 1e9;
}

MeanMedian round_trip_each_ns(uint64_t n, const std::function<bool()>& round_trip) {
  std::vector<double> samples;
  samples.reserve(n);
  double total = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double t0 = now_seconds();
    if (!round_trip()) return {};
    const double dt = now_seconds() - t0;
    total += dt;
    samples.push_back(dt);
  }
  return {total / static_cast<double>(n) * 1e9, median(std::move(samples)) * 1e9};
}

double median_of(int reps, const std::function<double()>& f) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) v.push_back(f());
  return median(v);
}

Sample summarize(const std::vector<double>& values) {
  std::vector<double> v;
  std::copy_if(values.begin(), values.end(), std::back_inserter(v), [](double x) { return x >= 0; });
  Sample s;
  if (v.empty()) return s;
  s.median = median(v);
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  s.n = static_cast<int>(v.size());
  return s;
}

Sample sample_of(int reps, const std::function<double()>& f) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) v.push_back(f());
  return summarize(v);
}

SamplePair sample_alternately(int reps, const std::function<double()>& ours, const std::function<double()>& peer) {
  const std::vector<Sample> samples = sample_in_turns(reps, {ours, peer});
  return {samples[0], samples[1]};
}

std::vector<Sample> sample_in_turns(int reps, const std::vector<std::function<double()>>& measurements) {
  std::vector<std::vector<double>> values(measurements.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t i = 0; i < measurements.size(); ++i) {
      const size_t m = rep % 2 == 0 ? i : measurements.size() - 1 - i;
      values[m].push_back(measurements[m]());
    }
  }
  std::vector<Sample> samples;
  for (const auto& v : values) samples.push_back(summarize(v));
  return samples;
}

double python_peer(const std::string& name, const std::vector<std::string>& args) {
  std::string cmd = "python3 bench/python_peers.py " + name;
  for (const auto& a : args) cmd += " " + a;
  cmd += " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) return -1;
  std::array<char, 256> buf;
  std::string last;
  while (fgets(buf.data(), buf.size(), p.get())) last = buf.data();
  try {
    return last.empty() ? -1 : std::stod(last);
  } catch (const std::exception&) {
    return -1;
  }
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double one = -1;
  return in >> one ? one : -1;
}

}  // namespace bench

int main(int argc, char** argv) {
  // First: an exec'd pool worker runs here and never returns; then the fork server, before any thread starts.
  ipc::init(argc, argv);
  ipc::start_fork_server();
  std::string json_path;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--only" && i + 1 < argc) only.push_back(argv[++i]);
    else if (a == "--list") {
      for (auto& g : bench::registry()) std::printf("%s\n", g.first.c_str());
      return 0;
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--only GROUP]... [--list]\n", argv[0]);
      return 2;
    }
  }
  // Hygiene on a shared machine (../shared/BENCHMARKS.md): our own session, hence our own scheduler autogroup
  // (fails harmlessly when this process already leads a process group, e.g. started by a job-control shell);
  // the load average at the start and the end, and a mark when the machine was busy.
  (void)setsid();
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  const double load = bench::load_average();
  // What other processes take of the CPUs now (a quarter of a second) and over the whole run (bench/cpu_share.h):
  // the load average alone would also count this benchmark's own spinning, from its previous rows or runs.
  const bench::CpuSample at_start = bench::sample_cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  const bench::CpuSample start = bench::sample_cpu();
  const double others_at_start = bench::others_share(at_start, start);
  // Others using more than a tenth of the machine: every busy-polling row measures the CPU share they leave.
  const bool busy = others_at_start > bench::kBusyShare;
  std::printf("load average %.2f at the start, %u CPUs, other processes using %.0f%% of them, session %s%s\n", load,
              cpus, 100 * others_at_start,
              getsid(0) == getpid() ? "own" : "shared (run under setsid for an autogroup of its own)",
              busy ? "  ** BUSY MACHINE: UNRELIABLE RUN, figures are the CPU share the others leave **" : "");
  bench::Report report(others_at_start);
  for (auto& [name, run] : bench::registry()) {
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
    std::printf("== %s\n", name.c_str());
    std::fflush(stdout);
    run(report);
  }
  report.print_table();
  const double others_during = bench::others_share(start, bench::sample_cpu());
  const double load_end = bench::load_average();
  const bool busy_during = busy || others_during > bench::kBusyShare;
  std::printf("load average %.2f at the end (this run's own processes included); other processes took %.0f%% of the "
              "CPU time during the run%s\n",
              load_end, 100 * others_during,
              busy_during ? "  ** UNRELIABLE: the machine was busy during this run **" : "");
  if (!json_path.empty()) report.write_json(json_path, others_during);
  return 0;
}

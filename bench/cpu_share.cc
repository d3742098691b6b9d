#include "bench/cpu_share.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace bench {
namespace {

// The next space-separated number of `text` from `pos` on; nullopt when there is none. (/proc/PID/stat has
// negative fields: tpgid is -1 for a process without a terminal.)
template <typename T>
std::optional<T> next_number(std::string_view text, size_t& pos) {
  while (pos < text.size() && text[pos] == ' ') ++pos;
  T v = 0;
  const auto [end, error] = std::from_chars(text.data() + pos, text.data() + text.size(), v);
  if (error != std::errc() || (end != text.data() + text.size() && *end != ' ' && *end != '\n')) return std::nullopt;
  pos = static_cast<size_t>(end - text.data());
  return v;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::optional<std::pair<uint64_t, uint64_t>> machine_ticks(std::string_view proc_stat) {
  if (proc_stat.substr(0, 4) != "cpu ") return std::nullopt;
  size_t pos = 4;
  // user nice system idle iowait irq softirq steal
  std::array<uint64_t, 8> f{};
  for (uint64_t& v : f) {
    const std::optional<uint64_t> n = next_number<uint64_t>(proc_stat, pos);
    if (!n) return std::nullopt;
    v = *n;
  }
  const uint64_t busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  return std::pair{busy, busy + f[3] + f[4]};
}

std::optional<std::pair<pid_t, uint64_t>> process_ticks(std::string_view pid_stat) {
  const size_t close = pid_stat.rfind(')');
  if (close == std::string_view::npos || close + 2 > pid_stat.size()) return std::nullopt;
  // After "pid (comm) ": state, then numbers: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime.
  size_t pos = close + 2;
  while (pos < pid_stat.size() && pid_stat[pos] != ' ') ++pos;  // the state letter
  std::array<int64_t, 14> f{};
  for (int64_t& v : f) {
    const std::optional<int64_t> n = next_number<int64_t>(pid_stat, pos);
    if (!n) return std::nullopt;
    v = *n;
  }
  if (f[10] < 0 || f[11] < 0 || f[12] < 0 || f[13] < 0) return std::nullopt;
  return std::pair{static_cast<pid_t>(f[2]), static_cast<uint64_t>(f[10] + f[11] + f[12] + f[13])};
}

CpuSample sample_cpu() {
  CpuSample s;
  const auto machine = machine_ticks(read_all("/proc/stat"));
  if (!machine) return s;
  const pid_t session = ::getsid(0);
  DIR* proc = ::opendir("/proc");
  if (!proc) return s;
  while (const dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const auto ticks = process_ticks(read_all(std::string("/proc/") + e->d_name + "/stat"));
    if (ticks && ticks->first == session) s.ours += ticks->second;
  }
  ::closedir(proc);
  s.machine_busy = machine->first;
  s.machine_all = machine->second;
  s.valid = true;
  return s;
}

double others_share(const CpuSample& before, const CpuSample& after) {
  if (!before.valid || !after.valid || after.machine_all <= before.machine_all) return 0;
  const double all = static_cast<double>(after.machine_all - before.machine_all);
  const double busy = static_cast<double>(after.machine_busy - before.machine_busy);
  const double ours = after.ours >= before.ours ? static_cast<double>(after.ours - before.ours) : 0;
  return std::clamp((busy - ours) / all, 0.0, 1.0);
}

}  // namespace bench

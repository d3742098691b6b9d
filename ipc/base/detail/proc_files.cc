#include "ipc/base/detail/proc_files.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <memory>
#include <vector>

#include "ipc/base/error.h"

namespace ipc::detail {

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> to_int(std::string_view s) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<unsigned> cpus_from_quota(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<unsigned>(std::max<int64_t>(1, (quota + period - 1) / period));
}

bool contains_item(std::string_view comma_list, std::string_view item) {
  for (std::string_view p : split(comma_list, ',')) {
    if (p == item) return true;
  }
  return false;
}

// mountinfo escapes space, tab, newline and backslash in paths as \ooo (octal).
std::string unescape_mount_path(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string_view oct = s.substr(i + 1, 3);
      if (std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct Mount {
  std::string root;         // the path inside the cgroup hierarchy that is mounted
  std::string mount_point;  // where it is mounted
};

// The first mount of `fstype` (and, for v1, with `controller` among its super options).
std::optional<Mount> find_mount(std::string_view mountinfo, std::string_view fstype, std::string_view controller) {
  for (std::string_view line : split(mountinfo, '\n')) {
    const std::vector<std::string_view> f = split(line, ' ');
    const auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    if (dash[1] != fstype) continue;
    if (!controller.empty() && !contains_item(dash[3], controller)) continue;
    return Mount{unescape_mount_path(f[3]), unescape_mount_path(f[4])};
  }
  return std::nullopt;
}

// The smallest limit `limit_in(dir)` gives over the cgroup directory of `cgroup_path` and its ancestors up to the
// mount point.
using LimitIn = std::function<std::optional<unsigned>(const std::string& dir)>;
std::optional<unsigned> smallest_up_the_tree(const Mount& m, std::string_view cgroup_path, const LimitIn& limit_in) {
  std::string_view rel = cgroup_path;
  if (m.root != "/") {
    if (rel.substr(0, m.root.size()) != m.root || (rel.size() > m.root.size() && rel[m.root.size()] != '/')) {
      return std::nullopt;  // this process's cgroup is not under the mounted part of the hierarchy
    }
    rel.remove_prefix(m.root.size());
  }
  std::string dir = m.mount_point;
  if (!rel.empty() && rel != "/") dir += std::string(rel);
  std::optional<unsigned> smallest;
  for (;;) {
    if (auto limit = limit_in(dir)) smallest = smallest ? std::min(*smallest, *limit) : *limit;
    if (dir.size() <= m.mount_point.size()) return smallest;
    dir.resize(dir.rfind('/'));
  }
}

std::optional<std::string> read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = retry_on_eintr([&] { return ::read(fd, buf, sizeof buf); });
    if (n <= 0) {
      ::close(fd);
      if (n < 0) return std::nullopt;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

std::optional<char> stat_state(std::string_view stat) {
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  if (close + 2 >= stat.size() || stat[close + 1] != ' ') return std::nullopt;
  const char state = stat[close + 2];
  if (!std::isalpha(static_cast<unsigned char>(state))) return std::nullopt;
  return state;
}

// Field `n` of a /proc/PID/stat line as proc(5) numbers them (3: the state, 9: flags, 20: num_threads), as a
// non-negative number; nullopt when the text is empty, cut short or malformed.
std::optional<int64_t> stat_field(std::string_view stat, size_t n) {
  if (n < 3 || !stat_state(stat)) return std::nullopt;
  const std::vector<std::string_view> f = split(trim(stat.substr(stat.rfind(')') + 2)), ' ');
  if (f.size() <= n - 3) return std::nullopt;
  const auto value = to_int(f[n - 3]);
  if (!value || *value < 0) return std::nullopt;
  return value;
}

std::optional<unsigned long> stat_flags(std::string_view stat) {
  const std::optional<int64_t> flags = stat_field(stat, 9);
  if (!flags) return std::nullopt;
  return static_cast<unsigned long>(*flags);
}

bool dead_from_stat(pid_t pid, std::optional<std::string_view> stat) noexcept {
  if (stat) {
    if (const std::optional<char> state = stat_state(*stat)) {
      if (*state != 'Z' && *state != 'X') return false;
      // A zombie main thread whose process still has other threads (num_threads > 1: after pthread_exit() in
      // main, or while a killed process's last threads exit) is not dead yet: those threads may still run.
      const std::optional<int64_t> threads = stat_field(*stat, 20);
      return !threads || *threads <= 1;
    }
  }
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

std::optional<unsigned> cpus_from_cpu_max(std::string_view cpu_max) {
  const std::vector<std::string_view> f = split(trim(cpu_max), ' ');
  if (f.size() != 2 || f[0] == "max") return std::nullopt;
  const auto quota = to_int(f[0]);
  const auto period = to_int(f[1]);
  if (!quota || !period) return std::nullopt;
  return cpus_from_quota(*quota, *period);
}

std::optional<unsigned> cpus_from_cfs(std::string_view quota_us, std::string_view period_us) {
  const auto quota = to_int(trim(quota_us));
  const auto period = to_int(trim(period_us));
  if (!quota || !period) return std::nullopt;
  return cpus_from_quota(*quota, *period);
}

std::optional<unsigned> cgroup_cpu_limit(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                         const ReadFile& read_file) {
  std::optional<unsigned> smallest;
  auto take = [&](std::optional<unsigned> limit) {
    if (limit) smallest = smallest ? std::min(*smallest, *limit) : *limit;
  };
  for (std::string_view line : split(proc_self_cgroup, '\n')) {
    // "hierarchy-id:controller,list:/path"; v2 is "0::/path". The path may itself contain ':'.
    const size_t first = line.find(':');
    const size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string_view path = line.substr(second + 1);
    if (line.substr(0, first) == "0" && controllers.empty()) {
      if (auto m = find_mount(mountinfo, "cgroup2", "")) {
        take(smallest_up_the_tree(*m, path, [&](const std::string& dir) -> std::optional<unsigned> {
          const auto text = read_file(dir + "/cpu.max");
          return text ? cpus_from_cpu_max(*text) : std::nullopt;
        }));
      }
    } else if (contains_item(controllers, "cpu")) {
      if (auto m = find_mount(mountinfo, "cgroup", "cpu")) {
        take(smallest_up_the_tree(*m, path, [&](const std::string& dir) -> std::optional<unsigned> {
          const auto quota = read_file(dir + "/cpu.cfs_quota_us");
          const auto period = read_file(dir + "/cpu.cfs_period_us");
          return quota && period ? cpus_from_cfs(*quota, *period) : std::nullopt;
        }));
      }
    }
  }
  return smallest;
}

std::optional<unsigned> cgroup_cpu_limit() {
  const auto cgroup = read_whole_file("/proc/self/cgroup");
  const auto mountinfo = read_whole_file("/proc/self/mountinfo");
  if (!cgroup || !mountinfo) return std::nullopt;
  return cgroup_cpu_limit(*cgroup, *mountinfo, read_whole_file);
}

unsigned affinity_cpu_count() {
  // The mask may be larger than cpu_set_t's 1024 CPUs: grow until the kernel's fits.
  for (int cpus = 1024;; cpus *= 2) {
    std::unique_ptr<cpu_set_t, void (*)(cpu_set_t*)> set(CPU_ALLOC(cpus), [](cpu_set_t* s) { CPU_FREE(s); });
    if (!set) throw SystemError(ENOMEM, "CPU_ALLOC");
    const size_t bytes = CPU_ALLOC_SIZE(cpus);
    if (::sched_getaffinity(0, bytes, set.get()) == 0) return static_cast<unsigned>(CPU_COUNT_S(bytes, set.get()));
    if (errno != EINVAL || cpus >= (1 << 22)) throw_errno("sched_getaffinity");
  }
}

std::string refused_call_reason(std::string_view release, int major, int minor) {
  const std::string needs = "Linux " + std::to_string(major) + "." + std::to_string(minor);
  int running[2] = {0, 0};
  const char* p = release.data();
  const char* end = release.data() + release.size();
  for (int i = 0; i < 2; ++i) {
    const auto [next, error] = std::from_chars(p, end, running[i]);
    if (error != std::errc() || (i == 0 && (next == end || *next != '.'))) {
      return "the kernel (release '" + std::string(release) + "') is older than " + needs +
             ", or a seccomp filter or a tool such as valgrind refuses the call";
    }
    p = next + 1;
  }
  if (running[0] > major || (running[0] == major && running[1] >= minor)) {
    return "this kernel (" + std::string(release) + ") has it, so something refuses it: a seccomp filter, or a tool "
           "that does not know the call (valgrind 3.19, for one)";
  }
  return "this kernel (" + std::string(release) + ") is older than " + needs;
}

}  // namespace ipc::detail

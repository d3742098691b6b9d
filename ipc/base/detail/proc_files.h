// ipc/base/detail/proc_files.h: the parsing behind process_dead(), cpu_count() and the errors that name the kernel's
// release, as pure functions of the files'
// contents so that tests can feed them every case (empty, cut short, quotas) without a kernel that produces it.
// Internal to ipc/base: not part of the library's API.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ipc::detail {

// The state letter of a /proc/PID/stat line ("R", "S", "Z", ...), or nullopt when the text is empty, cut short
// or not of the form "pid (comm) S ...". comm may itself contain ") ", so the last ')' ends it.
std::optional<char> stat_state(std::string_view stat);

// The kernel's flags word of a /proc/PID/stat line (its 9th field; PF_EXITING = 0x4 is set as the process
// begins to exit), or nullopt when the text is empty, cut short or malformed.
std::optional<unsigned long> stat_flags(std::string_view stat);

// Whether `pid` is certainly dead given the contents of its /proc/PID/stat (nullopt: the file could not be read).
// A zombie counts as dead, unless other threads of it remain (num_threads > 1). When the contents say nothing (unreadable, empty, cut short: the process may have been
// reaped between the caller's liveness check and the read), asks the kernel again: dead only on ESRCH.
bool dead_from_stat(pid_t pid, std::optional<std::string_view> stat) noexcept;

// CPUs allowed by a cgroup v2 cpu.max ("max 100000" -> nullopt; "150000 100000" -> 2; "50000 100000" -> 1):
// ceil(quota / period), at least 1. nullopt for no limit or malformed text.
std::optional<unsigned> cpus_from_cpu_max(std::string_view cpu_max);
// The same for cgroup v1: cpu.cfs_quota_us ("-1": no limit) and cpu.cfs_period_us.
std::optional<unsigned> cpus_from_cfs(std::string_view quota_us, std::string_view period_us);

// The CPU limit the cgroups of this process impose: the smallest over the v2 cgroup (cpu.max) and the v1 cpu
// cgroup (cfs quota and period) and each of their ancestors up to the mount point; nullopt when none is set.
// `proc_self_cgroup` and `mountinfo` are the contents of /proc/self/cgroup and /proc/self/mountinfo; `read_file`
// returns a file's contents or nullopt.
using ReadFile = std::function<std::optional<std::string>(const std::string& path)>;
std::optional<unsigned> cgroup_cpu_limit(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                         const ReadFile& read_file);
// The same for the running process, from the real files.
std::optional<unsigned> cgroup_cpu_limit();

// Why a system call that Linux `major`.`minor` added was refused (ENOSYS, or EINVAL for a new flag), given the
// running kernel's release ("6.1.0-18-amd64", uname): the kernel is older, or it is not and something between
// refuses the call (a seccomp filter, or a tool such as valgrind that does not know it). An unreadable release
// names both.
std::string refused_call_reason(std::string_view release, int major, int minor);

// The CPUs in this process's affinity mask (sched_getaffinity). Throws SystemError.
unsigned affinity_cpu_count();

}  // namespace ipc::detail

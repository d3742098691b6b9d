// ipc/base/process.h: whether another process still runs, for code that must tell a dead owner from a slow one.
//
// Threads/Processes: a free function; any thread. Lifetime: none.
// Errors: none; when liveness cannot be decided the process counts as alive (the safe answer for every caller:
//   nobody reclaims what a live process may still hold).
#pragma once

#include <cstdint>

namespace ipc {

// True only when `pid` certainly no longer runs: no such process, or a zombie waiting to be reaped (a killed
// process stays a zombie until its parent reaps it, and it will never finish what it started). pid 0 is "nobody
// yet" and counts as alive. A pid reused by a new process looks alive until that process ends.
bool process_dead(uint32_t pid) noexcept;

}  // namespace ipc

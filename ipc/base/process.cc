#include "ipc/base/process.h"

#include <signal.h>

#include <cerrno>
#include <cstdio>

namespace ipc {

bool process_dead(uint32_t pid) noexcept {
  if (pid == 0) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  FILE* f = std::fopen(path, "re");
  if (!f) return errno == ENOENT;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Format: "pid (comm) S ..."; comm may contain ')' so take the last one.
  const char* close = nullptr;
  for (const char* c = buf; *c; ++c) {
    if (*c == ')') close = c;
  }
  if (!close || close[1] != ' ') return false;
  const char state = close[2];
  return state == 'Z' || state == 'X';
}

}  // namespace ipc

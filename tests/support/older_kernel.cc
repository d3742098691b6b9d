#include "tests/support/older_kernel.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <iterator>
#include <vector>

namespace ipc::test {

bool act_as_older_kernel(OlderKernel kernel) {
  constexpr auto kNr = offsetof(seccomp_data, nr);
  constexpr auto kArg0 = offsetof(seccomp_data, args);  // low 32 bits of args[0] (little-endian)
  std::vector<sock_filter> program{BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr)};
  auto refuse = [&](long nr, int err) {
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1));
    program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | static_cast<unsigned>(err)));
  };
  if (kernel != OlderKernel::kLinux5_3) refuse(SYS_pidfd_open, ENOSYS);
  if (kernel == OlderKernel::kBefore5_1) {
    refuse(SYS_pidfd_send_signal, ENOSYS);
    refuse(SYS_pidfd_getfd, ENOSYS);
    refuse(SYS_clone3, ENOSYS);
  }
  if (kernel != OlderKernel::kWithoutPidfdOpen) {
    // waitid with id type P_PIDFD: EINVAL. The accumulator holds the call's number until args[0] is loaded.
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_waitid, 0, 3));
    program.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArg0));
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, P_PIDFD, 0, 1));
    program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL));
  }
  program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  const sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) == 0;
}

bool act_as_older_kernel_in_main() {
  if (act_as_older_kernel(OlderKernel::kBefore5_1)) return true;
  std::fprintf(stderr, "skipped: this kernel takes no seccomp filter here, so no older kernel can be acted\n");
  return false;
}

}  // namespace ipc::test

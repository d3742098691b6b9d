// tests/support/older_kernel.h: makes this process (and every process it starts, forked or exec'd) see the kernel
// as an older one would be, through a seccomp filter, so that the code paths for kernels without pidfds run
// on this machine.
//
//   if (!ipc::test::act_as_older_kernel(ipc::test::OlderKernel::kBefore5_1)) WARN("no seccomp filter here");
//
// A filter cannot be removed: install it in a child (or at the start of a test binary's main). Returns false
// when this kernel takes no seccomp filters (then nothing changed).
#pragma once

namespace ipc::test {

enum class OlderKernel {
  // Linux < 5.1 (RHEL 8's 4.18, Debian 10's 4.19): pidfd_open, pidfd_send_signal, pidfd_getfd and clone3 fail
  // with ENOSYS; waitid(P_PIDFD, ...) fails with EINVAL (an unknown id type).
  kBefore5_1,
  // Only pidfd_open fails (ENOSYS), as a seccomp profile that does not know it makes it.
  kWithoutPidfdOpen,
  // Linux 5.3: pidfd_open is there, waitid(P_PIDFD, ...) fails with EINVAL.
  kLinux5_3,
};

bool act_as_older_kernel(OlderKernel kernel);

// For a test binary's main: act_as_older_kernel(kBefore5_1), or when no filter can be installed, say on stderr that
// the binary's tests are skipped and return false (main then returns 0 without running them).
bool act_as_older_kernel_in_main();

}  // namespace ipc::test

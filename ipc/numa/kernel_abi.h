// ipc/numa/kernel_abi.h (internal): the kernel's memory-policy numbers in one place.
// libnuma 2.0.16's numaif.h lacks some of them, and it cannot be combined with <linux/mempolicy.h>.
#pragma once

#include <numaif.h>

namespace ipc::numa::kernel {

inline constexpr int kMpolWeightedInterleave = 6;
inline constexpr int kMpolFStaticNodes = 1 << 15;
inline constexpr int kMpolFRelativeNodes = 1 << 14;
inline constexpr int kMpolFNumaBalancing = 1 << 13;
inline constexpr int kMpolModeFlags = kMpolFStaticNodes | kMpolFRelativeNodes | kMpolFNumaBalancing;

}  // namespace ipc::numa::kernel

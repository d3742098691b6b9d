// ipc/queue/detail/test_hook.h: named points inside put/get where a test can stop a process, so that a kill lands
// exactly inside the call (internal; only tests install a hook).
//
// Threads/Processes: the hook is process-local (a fork()ed child inherits it). Lifetime: static.
// Errors: whatever the hook does; the library itself never installs one.
#pragma once

#include <atomic>

namespace ipc::detail {

enum class HookPoint {
  kPutWritten,   // a producer claimed its slot, passed the closed check and wrote the payload; not yet published
  kGetClaimed,   // a consumer claimed a slot that holds a message; not yet read or freed
  kGetReleased,  // a consumer took its message and freed the slot; the wake-up of producers and return follow
  kPutByStore,   // the producers' lease holder, `busy` set, found its lease and the ring open; it claims by store next
  kGetByStore,   // the consumers' lease holder, `busy` set, found its lease; it looks at the head slot next
  kRevoked,      // a claimer revoked another thread's lease and waited its claim out; it marks the side shared next
  kCloseWaitOut,  // a consumer that found the ring empty and closed waits out the producers' lease holder's claim
};

using TestHook = void (*)(HookPoint);
extern std::atomic<TestHook> g_test_hook;

inline void test_hook(HookPoint point) {
  // relaxed: installed by the test before it starts the operation it wants to stop, in the same thread.
  if (TestHook hook = g_test_hook.load(std::memory_order_relaxed)) [[unlikely]] {
    hook(point);
  }
}

}  // namespace ipc::detail

// manager/detail/test_hooks.h (internal, for tests only): a point inside a client's QueueProxy::get() where a test
// can stop or kill the process, so that it dies at the worst moment of the call: after it read the reply that
// carries the item, before the get returns it. The library never installs a hook.
//
// Threads/Processes: the hook is process-local (a fork()ed child inherits it). Lifetime: static.
// Errors: whatever the hook does.
#pragma once

#include <atomic>

namespace ipc::manager::detail {

enum class ManagerHookPoint {
  // A get on the shared-memory transport decoded its item from the reply it read and is about to count it as
  // taken (SocketVatNetwork::count_item_taken()) and return it.
  kItemRead,
};

using ManagerTestHook = void (*)(ManagerHookPoint);
extern std::atomic<ManagerTestHook> g_manager_test_hook;

}  // namespace ipc::manager::detail

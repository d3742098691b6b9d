// manager/detail/fresh_thread.h: running a forked child's body on a thread of its own.
//
// A KJ event loop belongs to one thread, and the copy a forked child inherits from the thread that forked is
// unusable: a child that may come from a thread with an event loop runs its body on a new thread, which has none.
#pragma once

#include <exception>
#include <thread>
#include <utility>

namespace ipc::manager::detail {

// Runs `body()` on a new thread and waits for it; returns its result, or rethrows what escaped it.
template <typename F>
int on_fresh_thread(F&& body) {
  int result = 1;
  std::exception_ptr error;
  std::thread t([&] {
    try {
      result = std::forward<F>(body)();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
  return result;
}

}  // namespace ipc::manager::detail

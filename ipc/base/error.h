// ipc/base/error.h: the one error policy of the library (see DESIGN.md, "Error policy").
//
// Threads: the types are plain values; safe to copy between threads.
// Processes: never placed in shared memory.
// Lifetime: ordinary C++ exceptions.
// Errors: this header *is* the error vocabulary:
//   - Expected outcomes (full, empty, timeout, closed, owner died) are return values, never exceptions.
//   - Misuse by the caller throws InvalidArgument (bad argument) or StateError (wrong state).
//   - A feature the running kernel or machine lacks throws Unsupported.
//   - Data in shared memory that breaks its own format (a record out of step, a length that cannot be) throws
//     StreamCorrupted: a peer broke the protocol or the memory was overwritten; never undefined behaviour.
//   - An operating-system failure throws SystemError carrying errno and what was being done.
//   - EINTR is retried internally (retry_on_eintr) and never reaches callers.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace ipc {

// Base of every exception this library throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The caller passed a value that breaks a documented rule (a malformed name, an invalid policy, a size of 0).
class InvalidArgument : public Error {
 public:
  explicit InvalidArgument(const std::string& what) : Error(what) {}
};

// The object is in a state where the call is not allowed (using a closed handle, releasing an unheld lock).
class StateError : public Error {
 public:
  explicit StateError(const std::string& what) : Error(what) {}
};

// The running kernel or machine lacks what was asked for (a memory-policy mode, huge pages).
class Unsupported : public Error {
 public:
  explicit Unsupported(const std::string& what) : Error(what) {}
};

// A stream in shared memory broke its own format (two senders on one end of a pipe, a corrupt record header):
// `what()` names the stream and what was wrong. The stream cannot be trusted after it.
class StreamCorrupted : public Error {
 public:
  explicit StreamCorrupted(const std::string& what) : Error(what) {}
};

// An operating-system call failed. `code()` is the errno; `what()` says which call and on what.
class SystemError : public Error {
 public:
  SystemError(int errno_value, const std::string& context)
      : Error(context + ": " + std::generic_category().message(errno_value)), errno_(errno_value) {}
  int code() const noexcept { return errno_; }

 private:
  int errno_;
};

// Throws SystemError for the current errno with `context` ("shm_open /name", "mbind").
[[noreturn]] inline void throw_errno(const std::string& context) { throw SystemError(errno, context); }

// Calls `f` until it does not fail with EINTR; returns its last result. `f` returns -1 and sets errno on failure,
// the usual syscall convention.
template <typename F>
auto retry_on_eintr(F&& f) -> decltype(f()) {
  for (;;) {
    auto r = f();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

}  // namespace ipc

// ipc/base/error.h: the one error policy of the library (see DESIGN.md, "Error policy") and its one vocabulary.
//
// Threads: the types are plain values; safe to copy between threads.
// Processes: Outcome may be stored anywhere; the exceptions are never placed in shared memory.
// Lifetime: ordinary C++ values and exceptions.
// Errors: this header *is* the error vocabulary:
//   - Expected outcomes (timeout, closed, full, empty, owner died) are Outcome values, never exceptions; every
//     blocking call returns one ([[nodiscard]]). Timeouts are std::chrono durations; "forever" is the overload
//     without a timeout (or std::nullopt).
//   - A named thing that does not exist (a segment, a queue, a lock, a value, a Manager object...) throws NotFound.
//   - Misuse by the caller throws InvalidArgument (bad argument, or a name that holds another kind of object) or
//     StateError (wrong state).
//   - A feature the running kernel or machine lacks throws Unsupported.
//   - The machine has too little of what was asked for (space in /dev/shm, memory on a bound node) throws
//     ResourceExhausted at creation, saying how much was asked and how much is free. (No room left *inside* a
//     segment is ipc::SegmentFull, segment.h.)
//   - Data in shared memory that breaks its own format (a record out of step, a length that cannot be) throws
//     StreamCorrupted: a peer broke the protocol or the memory was overwritten; never undefined behaviour.
//   - An operating-system failure throws SystemError carrying errno and what was being done.
//   - EINTR is retried internally (retry_on_eintr) and never reaches callers.
//
// Which calls return which outcomes (each header says it again for its own calls):
//   operation                                          kOk kTimeout kClosed kFull kEmpty kOwnerDied
//   queue put(v) / put(v, timeout)                      x     (t)      x
//   queue try_put(v)                                    x              x      x
//   queue get(v) / get(v, timeout)                      x     (t)      x                 (closed: and drained)
//   queue try_get(v)                                    x              x             x
//   JoinableQueue::join(timeout)                        x      x
//   Connection send / recv (pipes)                      x     (t)      x    (closed: peer gone / end of stream)
//   Lock, RLock, Condition acquire / try_acquire        x      x                              x
//   Semaphore, BoundedSemaphore acquire / try_acquire   x      x
//   Event::wait                                         x     (t)
//   Condition::wait / wait_for                          x     (t)                             x
//   Barrier::wait (BarrierWait::status; also kBroken)   x     (t)
//   Pool Future::wait(timeout), Pool::join(timeout)     x      x
//   Manager QueueProxy put / get                        x     (t)      x
//   Manager EventProxy::wait                            x     (t)
// (t): only with a timeout. A try_ form of an acquire is a wait with a zero timeout: kTimeout when it would block.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace ipc {

// The expected outcome of a call (see the table above). One spelling for each across the library.
enum class Outcome {
  kOk,        // done: the value was put / got / sent / received, the lock or unit taken, the event set
  kTimeout,   // the timeout passed first (for a try_ acquire: it would have blocked)
  kClosed,    // the queue is closed (get: and drained), or the other end of a pipe is gone (end of stream)
  kFull,      // try_put: no room right now
  kEmpty,     // try_get: nothing to get right now
  kOwnerDied  // a lock (or a condition's lock) was acquired after its holder died: the caller holds it and must
              // repair the data, then mark_consistent() (ipc/sync/lock.h)
};

constexpr const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kOk: return "ok";
    case Outcome::kTimeout: return "timeout";
    case Outcome::kClosed: return "closed";
    case Outcome::kFull: return "full";
    case Outcome::kEmpty: return "empty";
    case Outcome::kOwnerDied: return "owner died";
  }
  return "?";
}

// True when an acquire left the caller holding the lock (kOk or kOwnerDied).
constexpr bool holds(Outcome o) { return o == Outcome::kOk || o == Outcome::kOwnerDied; }

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

// The named thing does not exist: no segment, queue, lock (or other sync object), value, array, Manager object or
// Manager service of that name.
class NotFound : public Error {
 public:
  explicit NotFound(const std::string& what) : Error(what) {}
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

// The machine cannot hold what was asked for: a shared-memory file system (/dev/shm) or the memory of the nodes a
// policy binds to is too small. Thrown when the object is created, never later as a SIGBUS on a first touch;
// `what()` says how many bytes were asked and how many are free.
class ResourceExhausted : public Error {
 public:
  explicit ResourceExhausted(const std::string& what) : Error(what) {}
};

// A stream in shared memory broke its own format (two senders on one end of a pipe, a corrupt record header):
// `what()` names the stream and what was wrong. The stream cannot be trusted after it.
class StreamCorrupted : public Error {
 public:
  explicit StreamCorrupted(const std::string& what) : Error(what) {}
};

// A peer did not prove it holds the shared key (a Manager client or server, a Listener or its client), or refused
// ours. Says which side failed; never says anything about the key.
class AuthenticationFailed : public Error {
 public:
  explicit AuthenticationFailed(const std::string& what) : Error(what) {}
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

// ipc/pool/future.h: Future<R>, the result of a task submitted to a Pool (Python's AsyncResult).
//
//   ipc::Future<int> f = pool.apply_async(square, 7);
//   f.on_success([](const int& v) { ... });          // or on_error(...)
//   if (auto v = f.get(std::chrono::seconds(1))) ... // nullopt: not finished within 1 s
//   int v = f.get();                                  // blocks; throws what the task failed with
//
// Happens-before: everything the worker did for the task, and the completion in this process, happen before
//   get()/wait() return and before the callbacks run.
// Threads: every method may be called from any thread, by several at once (copies share one state).
// Processes: process-local; a Future is never placed in shared memory and means nothing in a forked child.
// Lifetime: copies share the state; it outlives the Pool (a Pool destroyed first fails its futures with
//   PoolTerminated). Callbacks run once, in the pool's supervisor thread when the task completes, or at once in the
//   registering thread if it already had; keep them short (they delay other completions), and do not block on
//   other futures of the same pool inside them. A callback run by the pool that throws is reported on stderr; the
//   other callbacks still run and the future is still ready.
// Errors: get() rethrows the task's failure: TaskError (the task threw), WorkerLost (its worker died), TaskTimeout
//   (it ran past PoolOptions::task_timeout), PoolTerminated. A timeout of get()/wait() is a return value
//   (nullopt, or ipc::Outcome::kTimeout).
//   successful() on an unfinished future throws StateError, and so does any call but valid() on a Future that
//   refers to no task (default-made).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ipc/base/error.h"
#include "ipc/base/futex.h"

namespace ipc {

// A task raised an exception in its worker: the exception's (demangled) type name and its what().
class TaskError : public Error {
 public:
  TaskError(std::string type_name, std::string message)
      : Error(type_name + ": " + message), type_name_(std::move(type_name)), message_(std::move(message)) {}
  const std::string& type_name() const { return type_name_; }
  const std::string& message() const { return message_; }

 private:
  std::string type_name_, message_;
};

// The worker running the task died (killed, crashed, out of memory, exited): the task did not complete. The pool
// replaced the worker; other tasks are unaffected. exitcode(): exit status, or minus the signal number.
class WorkerLost : public Error {
 public:
  WorkerLost(int pid, int exitcode, const std::string& what) : Error(what), pid_(pid), exitcode_(exitcode) {}
  int pid() const { return pid_; }
  int exitcode() const { return exitcode_; }

 private:
  int pid_, exitcode_;
};

// The task ran longer than PoolOptions::task_timeout: its worker was killed and replaced.
class TaskTimeout : public Error {
 public:
  using Error::Error;
};

// The pool was terminated (terminate() or its destructor) before the task completed.
class PoolTerminated : public StateError {
 public:
  using StateError::StateError;
};

namespace detail {

// A failure kept as values: calling it throws a *new* exception object, so that every thread that rethrows a
// task's failure gets its own copy (an exception object shared between threads would be freed by whichever
// drops the last reference, and the sanitizers cannot see libstdc++'s reference count).
using Raise = std::function<void()>;

template <typename E, typename... Args>
Raise raise_as(Args... args) {
  return [=] { throw E(args...); };
}
// For an exception caught in the supervisor thread that has no value form (a result that does not decode).
inline Raise raise_current() {
  try {
    throw;
  } catch (const std::exception& e) {
    return raise_as<TaskError>(std::string("ipc::CodecError"), std::string(e.what()));
  } catch (...) {
    return raise_as<TaskError>(std::string("unknown exception"), std::string());
  }
}
inline std::exception_ptr to_exception_ptr(const Raise& raise) {
  try {
    raise();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// A future's waiters, to be released (FutureState::release_waiters()) once the batch of completions that finished
// it is over.
class Waited {
 public:
  virtual ~Waited() = default;
  virtual void release_waiters() = 0;
};

// Held by a thread that completes a batch of tasks (the pool's supervisor, for the results it read in one go): the
// futures it finishes meanwhile that have a waiter release it when the batch ends (~DeferredWakes), not one by one.
// A thread blocked on the first result of a batch would otherwise be woken for it, find the next one not yet
// finished and sleep again: a wake-up per result where one per batch does. Futures nobody waits on cost nothing.
// Not nestable; one per thread at a time.
class DeferredWakes {
 public:
  DeferredWakes() { current() = this; }
  ~DeferredWakes() {
    current() = nullptr;
    release();
  }
  DeferredWakes(const DeferredWakes&) = delete;
  DeferredWakes& operator=(const DeferredWakes&) = delete;
  // The batch of this thread, or null: release at once.
  static DeferredWakes*& current() {
    static thread_local DeferredWakes* batch = nullptr;
    return batch;
  }
  void add(std::shared_ptr<Waited> waited) { waited_.push_back(std::move(waited)); }
  // Releases the waiters held so far; before a callback runs, so that user code never waits on a thread that
  // waits to be released by this batch.
  void release() {
    for (auto& w : waited_) w->release_waiters();
    waited_.clear();
  }

 private:
  std::vector<std::shared_ptr<Waited>> waited_;
};

// What the pool's supervisor calls when a task ends: with the encoded result, or with the failure. Exactly one of
// the two is called, once, from the supervisor thread (or from terminate()).
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void succeed(std::span<const std::byte> result) = 0;
  virtual void fail(Raise failure) = 0;
};

// The shared state of a Future<R>: the decoded value or the error, and the callbacks.
template <typename R>
class FutureState : public Completion, public Waited, public std::enable_shared_from_this<FutureState<R>> {
  using Stored = std::conditional_t<std::is_void_v<R>, bool, R>;

 public:
  using Decode = std::function<Stored(std::span<const std::byte>)>;
  explicit FutureState(Decode decode = {}) : decode_(std::move(decode)) {}

  void succeed(std::span<const std::byte> result) override {
    std::optional<Stored> value;
    Raise failure;
    try {
      value.emplace(decode_(result));
    } catch (...) {
      failure = raise_current();  // a corrupt or mistyped result fails this future, not the pool
    }
    if (failure) {
      finish(std::nullopt, std::move(failure));
    } else {
      finish(std::move(value), nullptr);
    }
  }
  void fail(Raise failure) override { finish(std::nullopt, std::move(failure)); }
  // Completes with a value built in this process (a map's joined chunks).
  void deliver(Stored value) { finish(std::move(value), nullptr); }

  // Blocks until done or `deadline`; true when done.
  bool wait_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    std::unique_lock lock(mu_);
    if (done_) return true;
    ++waiters_;  // finish() wakes the waiters it finds counted here
    bool done = true;
    if (!deadline) {
      cv_.wait(lock, [&] { return done_; });
    } else {
      done = cv_.wait_until(lock, *deadline, [&] { return done_; });
    }
    --waiters_;
    return done;
  }
  void release_waiters() override { cv_.notify_all(); }
  bool done() const {
    std::lock_guard lock(mu_);
    return done_;
  }
  bool succeeded() const {
    std::lock_guard lock(mu_);
    if (!done_) throw StateError("Future::successful(): the task has not finished");
    return !failure_;
  }
  // REQUIRES: done.
  const Stored& value() const {
    std::unique_lock lock(mu_);
    if (failure_) {
      const Raise raise = failure_;
      lock.unlock();
      raise();
    }
    return *value_;
  }
  Stored take() {
    std::unique_lock lock(mu_);
    if (failure_) {
      const Raise raise = failure_;
      lock.unlock();
      raise();
    }
    return std::move(*value_);
  }
  void on_done(std::function<void()> callback) {
    std::unique_lock lock(mu_);
    if (!settled_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
    lock.unlock();
    callback();
  }
  // The failure (empty while none).
  Raise failure() const {
    std::lock_guard lock(mu_);
    return failure_;
  }

 private:
  // As Python's AsyncResult: the callbacks run before waiters are released, so a get() that returns has seen
  // them run. A callback registered meanwhile (settled_, not yet done_) runs at once in its own thread.
  // Waiters are woken only if some wait (a future nobody waits on costs no wake-up), and when the thread holds a
  // DeferredWakes, at the end of its batch.
  void finish(std::optional<Stored> value, Raise failure) {
    std::vector<std::function<void()>> callbacks;
    bool waited;
    {
      std::lock_guard lock(mu_);
      if (settled_) return;
      value_ = std::move(value);
      failure_ = std::move(failure);
      settled_ = true;
      callbacks.swap(callbacks_);
      done_ = callbacks.empty();
      waited = waiters_ != 0;
    }
    if (!callbacks.empty()) {
      if (DeferredWakes* batch = DeferredWakes::current()) batch->release();
      for (auto& c : callbacks) run_callback(c);
      std::lock_guard lock(mu_);
      done_ = true;
      waited = waiters_ != 0;
    }
    if (!waited) return;
    DeferredWakes* batch = DeferredWakes::current();
    std::shared_ptr<Waited> self = batch ? this->weak_from_this().lock() : nullptr;
    if (self) {
      batch->add(std::move(self));
    } else {
      release_waiters();  // no batch, or a state no shared_ptr owns
    }
  }

  // Runs a callback the task's completion calls: user code, on the pool's thread. One that throws is reported on
  // stderr, and the rest still run and the waiters are still released.
  static void run_callback(const std::function<void()>& callback) noexcept {
    try {
      callback();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ipc::Pool: a completion callback threw %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "ipc::Pool: a completion callback threw something that is not a std::exception\n");
    }
  }

  Decode decode_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool settled_ = false;  // value or error stored; callbacks running
  bool done_ = false;     // callbacks have run: waiters may go
  int waiters_ = 0;       // threads in wait_until()
  std::optional<Stored> value_;
  Raise failure_;
  std::vector<std::function<void()>> callbacks_;
};

// The result of a state no Future shares (Pool::map's, Pool::apply's): waits for it, then moves the value out
// rather than copying it (a map's result may be megabytes). Throws the failure, as Future::get().
template <typename R>
R wait_and_take(FutureState<R>& state) {
  state.wait_until(std::nullopt);
  if constexpr (std::is_void_v<R>) {
    (void)state.take();
  } else {
    return state.take();
  }
}

}  // namespace detail

template <typename R>
class Future {
  using State = detail::FutureState<R>;

 public:
  Future() = default;
  explicit Future(std::shared_ptr<State> state) : state_(std::move(state)) {}

  // Blocks until the task finished; returns its result or throws its failure (see the Errors above).
  R get() const {
    check_valid("get");
    state_->wait_until(std::nullopt);
    if constexpr (std::is_void_v<R>) {
      (void)state_->value();
    } else {
      return state_->value();
    }
  }
  // As get(), giving up after `timeout`: nullopt (for Future<void>: kTimeout, else kOk) when the task has not
  // finished.
  template <typename Rep, typename Period>
  [[nodiscard]] auto get(std::chrono::duration<Rep, Period> timeout) const {
    check_valid("get");
    const bool done = wait(timeout) == Outcome::kOk;
    if constexpr (std::is_void_v<R>) {
      if (done) (void)state_->value();
      return done ? Outcome::kOk : Outcome::kTimeout;
    } else {
      return done ? std::optional<R>(state_->value()) : std::nullopt;
    }
  }
  void wait() const {
    check_valid("wait");
    state_->wait_until(std::nullopt);
  }
  // kOk when the task finished within `timeout`, else kTimeout. A timeout past what the clock counts waits as
  // long as it takes.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome wait(std::chrono::duration<Rep, Period> timeout) const {
    check_valid("wait");
    return state_->wait_until(Deadline::after(timeout).time_point()) ? Outcome::kOk : Outcome::kTimeout;
  }
  bool ready() const {
    check_valid("ready");
    return state_->done();
  }
  // Whether the task finished without failing. Throws StateError if it has not finished.
  bool successful() const {
    check_valid("successful");
    return state_->succeeded();
  }
  bool valid() const { return state_ != nullptr; }

  // Runs `callback` with the result once the task succeeded (Python's apply_async callback).
  template <typename Callback>
  const Future& on_success(Callback callback) const {
    check_valid("on_success");
    std::weak_ptr<State> weak = state_;  // the state must not own itself through its own callback
    state_->on_done([weak, callback = std::move(callback)]() mutable {
      auto s = weak.lock();
      if (!s || s->failure()) return;
      if constexpr (std::is_void_v<R>) {
        callback();
      } else {
        callback(s->value());
      }
    });
    return *this;
  }
  // Runs `callback` with the failure (an exception_ptr to rethrow) once the task failed (error_callback).
  template <typename Callback>
  const Future& on_error(Callback callback) const {
    check_valid("on_error");
    std::weak_ptr<State> weak = state_;
    state_->on_done([weak, callback = std::move(callback)]() mutable {
      auto s = weak.lock();
      if (!s) return;
      if (auto failure = s->failure()) callback(detail::to_exception_ptr(failure));
    });
    return *this;
  }

 private:
  // A default-made (or moved-from) Future refers to no task.
  void check_valid(const char* what) const {
    if (!state_) throw StateError(std::string("Future::") + what + "(): this Future refers to no task");
  }

  std::shared_ptr<State> state_;
};

}  // namespace ipc

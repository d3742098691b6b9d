// ipc/pool/pool.h: Pool, Python's multiprocessing.Pool for C++: worker processes that run your function over
// your data, with futures, and with every failure visible.
//
//   int square(int x) { return x * x; }
//   ipc::Pool pool;                                              // cpu_count() workers, forked now
//   std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});
//   for (int s : pool.imap(square, std::views::iota(0, 1000000), 256)) ...   // lazy, ordered, bounded read-ahead
//   ipc::Future<int> f = pool.apply_async(square, 7);            // f.get(), f.get(1s), f.on_success(...)
//   pool.close(); pool.join();                                    // wait for the work; or terminate()
//
// What can be a task: a plain function (or a pointer to one), a captureless lambda, or any empty, default-
//   constructible, trivially copyable function object; anything else (a capturing lambda, std::function, a
//   member pointer) is a compile error, because its state lives in this process's memory, which the workers
//   do not share. Pass data as arguments. Arguments and results cross through
//   ipc::Codec<T>: numbers, strings, vectors, maps, tuples, Cap'n Proto messages (capnp_codec.h) and your own
//   specialisations; any size (a pipe carries large messages in parts). A function returning void works with
//   apply/apply_async (Future<void>), not with map.
// Threads: every method may be called from any thread at once. Completion callbacks run on the pool's
//   supervisor thread. An imap result range is consumed by one thread.
// Processes: PoolOptions::start_method says how workers start (ipc/pool/init.h). kFork (default): fork()ed
//   from this process when the pool starts, replacements later from the supervisor thread; in a program with
//   other threads the usual fork hazards apply to code the tasks run. kForkServer: forked from the fork server
//   that ipc::start_fork_server() started at the top of main; safe in a threaded program; workers see globals as
//   they were then. kExec: this program exec'd, its ipc::init() running the worker; a fresh process. With both,
//   task code crosses as (object, offset): a task in a library dlopen()ed after the pool started, or code made
//   at run time, is InvalidArgument at submission (docs/pool.md). A Pool is not usable in a forked child: a call
//   there throws StateError, and the child's copy may be destroyed (it leaves the parent's workers alone).
// Lifetime: the workers are daemon children (kForkServer: of the fork server, itself a daemon child): they die
//   with the pool's process, even when it is SIGKILLed, and no shared memory is left behind (the pipes are
//   anonymous memory). A worker that ran map_array keeps the array's segment mapped until it exits (it counts
//   as a user of it). close() lets queued work finish; join() then
//   waits for the workers to exit. The destructor *terminates* (kills the workers; unfinished futures fail with
//   PoolTerminated) rather than joins: a destructor must never wait for user work that may never end; close()
//   and join() first to finish the work. exit() with a pool still alive (static, leaked, or owned by a function
//   that called exit()) terminates it the same way before static destructors run (an atexit handler).
// Errors: a task's failure is delivered through its future (or thrown by map/apply): TaskError (it threw: type
//   name and message), WorkerLost (its worker died mid-task: pid and signal/exit code; the worker is replaced and
//   every other task completes), TaskTimeout (it ran past task_timeout), PoolTerminated. Misuse throws at once:
//   InvalidArgument (0 workers, chunksize 0), StateError (a task after close()/terminate(), join() before
//   either, any call in a forked child; kForkServer without start_fork_server(), kExec without init()). Worker
//   start failures throw SystemError.
// Over MPI ranks, the same methods: ipc::mpi::Pool (ipc/pool/mpi/pool.h, opt-in).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ipc/pool/detail/pool_core.h"
#include "ipc/pool/future.h"
#include "ipc/pool/init.h"
#include "ipc/pool/worker.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/shared/codec.h"

namespace ipc {

// Where the workers run (NUMA placement). spread: worker i on node i mod k (k nodes); pack: fill a node's CPUs
// before the next node. The nodes: those given, or every node with CPUs this process may use. Each placed worker
// is pinned to its node's allowed CPUs (pin = false: not pinned) and its pipe's rings are bound to its node.
struct Placement {
  enum class Strategy { kNone, kSpread, kPack };
  Strategy strategy = Strategy::kNone;
  std::vector<int> nodes;
  bool pin = true;

  static Placement none() { return {}; }
  static Placement spread(std::vector<int> nodes = {}) { return {Strategy::kSpread, std::move(nodes), true}; }
  static Placement pack(std::vector<int> nodes = {}) { return {Strategy::kPack, std::move(nodes), true}; }
};

struct PoolOptions {
  // Worker processes; default: cpu_count() (the CPUs this process may use, affinity and cgroup quota included).
  // 0 is InvalidArgument.
  std::optional<unsigned> workers{};
  // Runs once in each worker (replacements included) before its first task. With kFork it may capture: it runs
  // in a fork of this process. With kForkServer and kExec only code crosses: it must hold a plain void()
  // function (+[] { ... } turns a captureless lambda into one), else InvalidArgument at construction. An
  // exception from it ends that worker; the task it was given fails with WorkerLost.
  std::function<void()> initializer{};
  // A worker exits after this many tasks (a chunk counts as one) and is replaced; 0: never. Bounds leaks.
  unsigned max_tasks_per_child = 0;
  // imap/imap_unordered: chunks submitted ahead of the consumer; 0: twice the worker count.
  unsigned read_ahead = 0;
  // A task (a chunk) running longer than this fails with TaskTimeout; its worker is killed and replaced.
  std::optional<std::chrono::nanoseconds> task_timeout{};
  // Ring bytes per direction of each worker's pipe (a power of two >= 4096); messages of any size pass.
  uint64_t pipe_bytes = uint64_t{1} << 18;
  // NUMA placement of the workers (default: none; the kernel schedules them anywhere).
  Placement placement{};
  // How workers start (ipc/pool/init.h): kFork (default), kForkServer (needs ipc::start_fork_server() at the top
  // of main) or kExec (needs ipc::init(argc, argv) as main's first line). Else StateError at construction.
  StartMethod start_method = StartMethod::kFork;
  // Each worker's scratch arena (ipc::worker_scratch(), ipc/pool/worker.h): bytes of address space, reserved by
  // the worker's first worker_scratch() call, pages used only when a task touches them, on the worker's node when
  // placed; reset when each task (chunk) ends. 0: none.
  uint64_t scratch_bytes = uint64_t{64} << 20;
};

// Pool::map_array: how the array is cut and where the chunks go.
struct ArrayMapOptions {
  // Elements per chunk (0 is InvalidArgument); default: whole pages, about 4 chunks per worker.
  std::optional<size_t> chunk_elements{};
  // true: each chunk goes to a worker on the node that holds most of its pages (an idle worker of another node
  // takes it rather than sit idle); false: to whichever worker is free (the same map without locality, for
  // contrast). Either way the result counts the chunks that ran at home.
  bool locality = true;
};

// What map_array returns: f's result for each chunk, in array order, and where the chunks ran.
template <typename R>
struct ArrayMapResult {
  std::vector<R> results;
  uint64_t chunks = 0;
  uint64_t chunks_with_home = 0;  // chunks with at least one page present (the others have no home node)
  uint64_t chunks_at_home = 0;    // chunks that ran on a worker of their home node
};

namespace detail {

// In a pool worker: the segment `name`, opened once and kept (a segment of that name made anew since is opened
// anew). Throws NotFound when there is none.
Segment& worker_segment(const std::string& name);

// The NUMA node holding most of the present pages of [p, p + bytes), or -1 when none is present.
int home_node(const void* p, size_t bytes);

// The name of the Array block at `array` in `segment`; InvalidArgument when there is none there.
std::string array_name(const Segment& segment, const void* array);

// The engine of a Pool made with `options` (workers started, placement resolved); what ipc::mpi::Pool runs on
// each rank. Throws as Pool's constructor.
std::unique_ptr<PoolCore> make_pool_core(const PoolOptions& options);

template <typename F>
concept Shippable = (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
                    (std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F> &&
                     std::is_trivially_copyable_v<F>);

template <typename F>
constexpr void check_shippable() {
  static_assert(Shippable<F>,
                "a Pool task is a plain function, a captureless lambda or an empty function object: a capturing "
                "lambda's state lives in this process, which the workers do not share; pass data as arguments");
}

template <typename F>
uintptr_t callable_word(const F& f) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<uintptr_t>(f);
  } else {
    return 0;  // stateless: the worker default-constructs it
  }
}
template <typename F>
F callable_from(uintptr_t word) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<F>(word);
  } else {
    return F{};
  }
}

template <typename T>
void append_encoded(std::vector<std::byte>& out, const T& value) {
  const size_t at = out.size();
  out.resize(at + Codec<T>::encoded_size(value));
  Codec<T>::encode(value, std::span<std::byte>(out).subspan(at));
}

// A task message with its header left blank for PoolCore::submit.
template <typename T>
std::vector<std::byte> task_message(const T& args) {
  std::vector<std::byte> m(kTaskHeaderBytes);
  append_encoded(m, args);
  return m;
}

// task_message(std::vector<T>(items)) for a T with the raw codec, without that vector: the count and the bytes
// go straight from `items` into the message (no zero-fill of the message either).
template <typename T>
std::vector<std::byte> raw_vector_task_message(std::span<const T> items) {
  const size_t count_bytes = ByteWriter::varint_size(items.size());
  std::vector<std::byte> m;
  m.reserve(kTaskHeaderBytes + count_bytes + items.size_bytes());
  m.resize(kTaskHeaderBytes + count_bytes);
  ByteWriter(std::span<std::byte>(m).subspan(kTaskHeaderBytes)).put_varint(items.size());
  const std::span<const std::byte> bytes = std::as_bytes(items);
  m.insert(m.end(), bytes.begin(), bytes.end());
  return m;
}

template <typename F, typename... Args>
void invoke_one(uintptr_t word, std::span<const std::byte> in, std::vector<std::byte>& out) {
  F f = callable_from<F>(word);
  auto args = Codec<std::tuple<Args...>>::decode(in);
  using R = std::invoke_result_t<F&, Args...>;
  if constexpr (std::is_void_v<R>) {
    std::apply(f, std::move(args));
  } else {
    append_encoded(out, std::apply(f, std::move(args)));
  }
}

template <typename F, typename Item, bool Star>
struct ChunkResult {
  using type = decltype(std::invoke(std::declval<F&>(), std::declval<Item>()));
};
template <typename F, typename Item>
struct ChunkResult<F, Item, true> {
  using type = decltype(std::apply(std::declval<F&>(), std::declval<Item>()));
};

// A chunk of a map: the items in, one result per item out. Star: each item is a tuple of arguments (starmap).
template <typename F, typename Item, bool Star>
void invoke_chunk(uintptr_t word, std::span<const std::byte> in, std::vector<std::byte>& out) {
  F f = callable_from<F>(word);
  using R = typename ChunkResult<F, Item, Star>::type;
  if constexpr (!Star && Codec<std::vector<Item>>::kRaw && Codec<std::vector<R>>::kRaw) {
    // Raw items and results (numbers, trivially copyable structs without a codec of their own): each item is read
    // from the message and each result written into `out` where Codec<std::vector<R>> puts it, with no vector of
    // either: no allocation per chunk, which on a first touch of fresh pages costs more than the work.
    ByteReader r(in);
    const std::span<const std::byte> item_bytes = Codec<std::vector<Item>>::read_raw_elements(r);
    r.finish();
    const size_t n = item_bytes.size() / sizeof(Item);
    const std::byte* items = item_bytes.data();
    const size_t at = out.size();
    const size_t count_bytes = ByteWriter::varint_size(n);
    out.resize(at + count_bytes + n * sizeof(R));
    ByteWriter(std::span<std::byte>(out).subspan(at, count_bytes)).put_varint(n);
    std::byte* results = out.data() + at + count_bytes;
    for (size_t i = 0; i < n; ++i) {
      Item item;
      std::memcpy(&item, items + i * sizeof(Item), sizeof(Item));
      const R result = std::invoke(f, std::move(item));
      std::memcpy(results + i * sizeof(R), &result, sizeof(R));
    }
  } else {
    auto items = Codec<std::vector<Item>>::decode(in);
    std::vector<R> results;
    results.reserve(items.size());
    for (auto& item : items) {
      if constexpr (Star) {
        results.push_back(std::apply(f, std::move(item)));
      } else {
        results.push_back(std::invoke(f, std::move(item)));
      }
    }
    append_encoded(out, results);
  }
}

// A chunk of an Array, in a worker: the array opened by its segment's and its own name, f called on the span.
using ArrayChunk = std::tuple<std::string, std::string, uint64_t, uint64_t>;  // segment, array, begin, end

template <typename F, typename T>
void invoke_array_chunk(uintptr_t word, std::span<const std::byte> in, std::vector<std::byte>& out) {
  F f = callable_from<F>(word);
  auto [segment, name, begin, end] = Codec<ArrayChunk>::decode(in);
  Array<T>& array = Array<T>::open(worker_segment(segment), name);
  if (begin > end || end > array.size()) {
    throw InvalidArgument("Pool::map_array: chunk [" + std::to_string(begin) + ", " + std::to_string(end) +
                          ") is outside Array '" + name + "' of " + std::to_string(array.size()) + " elements");
  }
  std::span<T> chunk(array.data() + begin, end - begin);
  if constexpr (std::is_invocable_v<F&, std::span<T>, size_t>) {
    append_encoded(out, std::invoke(f, chunk, static_cast<size_t>(begin)));
  } else {
    append_encoded(out, std::invoke(f, chunk));
  }
}

template <typename F, typename T, bool WithIndex = std::is_invocable_v<F&, std::span<T>, size_t>>
struct ArrayChunkResult {
  using type = std::invoke_result_t<F&, std::span<T>, size_t>;
};
template <typename F, typename T>
struct ArrayChunkResult<F, T, false> {
  using type = std::invoke_result_t<F&, std::span<T>>;
};

// The per-chunk futures of one map: `out` gets finish(parts) once every chunk succeeded, or the first failure.
template <typename Part, typename Out, typename Finish>
std::vector<std::shared_ptr<FutureState<Part>>> join_chunks(size_t chunks, std::shared_ptr<FutureState<Out>> out,
                                                           Finish finish) {
  struct Join {
    std::mutex mu;
    std::vector<Part> parts;
    size_t remaining;
  };
  auto join = std::make_shared<Join>();
  join->parts.resize(chunks);
  join->remaining = chunks;
  std::vector<std::shared_ptr<FutureState<Part>>> states;
  for (size_t c = 0; c < chunks; ++c) {
    auto state = std::make_shared<FutureState<Part>>(
        [](std::span<const std::byte> bytes) { return Codec<Part>::decode(bytes); });
    std::weak_ptr<FutureState<Part>> weak = state;
    state->on_done([weak, join, out, c, finish] {
      auto s = weak.lock();
      if (auto failure = s->failure()) {
        out->fail(std::move(failure));  // the first failure fails the map; later completions are ignored
        return;
      }
      std::lock_guard lock(join->mu);
      join->parts[c] = s->take();
      if (--join->remaining != 0) return;
      out->deliver(finish(std::move(join->parts)));
    });
    states.push_back(std::move(state));
  }
  return states;
}

// The chunks of one map whose results are raw (Codec<std::vector<R>>::kRaw: numbers, trivially copyable structs):
// each chunk's reply is copied straight from the message into its place in `result`, which the caller's thread
// sized, with no vector per chunk. `out` gets the result once every chunk succeeded, or the first failure.
template <typename R>
class RawMapJoin {
 public:
  RawMapJoin(std::shared_ptr<FutureState<std::vector<R>>> out, size_t n, size_t chunks)
      : shared_(std::make_shared<Shared>(std::move(out), n, chunks)) {}

  // The completion of the chunk of results [first, first + count).
  std::shared_ptr<Completion> part(size_t first, size_t count) const {
    return std::make_shared<Part>(shared_, first, count);
  }

 private:
  struct Shared {
    Shared(std::shared_ptr<FutureState<std::vector<R>>> o, size_t n, size_t chunks)
        : out(std::move(o)), result(n), remaining(chunks) {}
    std::shared_ptr<FutureState<std::vector<R>>> out;
    std::vector<R> result;
    std::atomic<size_t> remaining;
  };
  class Part final : public Completion {
   public:
    Part(std::shared_ptr<Shared> shared, size_t first, size_t count)
        : shared_(std::move(shared)), first_(first), count_(count) {}
    void succeed(std::span<const std::byte> reply) override {
      try {
        ByteReader r(reply);
        const std::span<const std::byte> bytes = Codec<std::vector<R>>::read_raw_elements(r);
        r.finish();
        const size_t n = bytes.size() / sizeof(R);
        if (n != count_) {
          throw CodecError("a map chunk of " + std::to_string(count_) + " items returned " + std::to_string(n) +
                           " results");
        }
        if (n != 0) std::memcpy(shared_->result.data() + first_, bytes.data(), bytes.size());
      } catch (...) {
        shared_->out->fail(raise_current());  // a corrupt reply fails the map, not the pool
        return;
      }
      // acq_rel: the chunk that completes the map sees every other chunk's copy (all are made in the supervisor
      // thread today; the order holds whichever thread completes a chunk).
      if (shared_->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        shared_->out->deliver(std::move(shared_->result));
      }
    }
    void fail(Raise failure) override { shared_->out->fail(std::move(failure)); }

   private:
    std::shared_ptr<Shared> shared_;
    size_t first_, count_;
  };

  std::shared_ptr<Shared> shared_;
};

// Reads up to `n` items from [it, end) into a chunk.
template <typename Item, typename It, typename End>
std::vector<Item> take_chunk(It& it, const End& end, size_t n) {
  std::vector<Item> chunk;
  chunk.reserve(std::min<size_t>(n, 1024));  // n is a chunk size, which may be far beyond the items there are
  for (; chunk.size() < n && it != end; ++it) chunk.push_back(static_cast<Item>(*it));
  return chunk;
}

// The chunks of one imap: results as they complete, handed to the consuming thread.
template <typename R>
struct Stream {
  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, std::pair<std::vector<R>, Raise>> done;  // chunk index -> outcome
};

template <typename R>
class ChunkCompletion : public Completion {
 public:
  ChunkCompletion(std::shared_ptr<Stream<R>> stream, uint64_t index) : stream_(std::move(stream)), index_(index) {}
  void succeed(std::span<const std::byte> result) override {
    std::pair<std::vector<R>, Raise> outcome;
    try {
      outcome.first = Codec<std::vector<R>>::decode(result);
    } catch (...) {
      outcome.second = raise_current();
    }
    put(std::move(outcome));
  }
  void fail(Raise failure) override { put({{}, std::move(failure)}); }

 private:
  void put(std::pair<std::vector<R>, Raise> outcome) {
    {
      std::lock_guard lock(stream_->mu);
      stream_->done.emplace(index_, std::move(outcome));
    }
    stream_->cv.notify_all();
  }
  std::shared_ptr<Stream<R>> stream_;
  uint64_t index_;
};

}  // namespace detail

// The lazy result of imap/imap_unordered: an input range of R. Reading it submits chunks of the input as it goes,
// never more than the read-ahead window beyond what was consumed, so an endless input is fine. A failed chunk
// throws its error (TaskError, WorkerLost, ...) from the iterator's increment/dereference at its place (ordered)
// or when it completes (unordered); iteration may continue after it. One consuming thread.
template <typename R, typename F, typename View, bool Star>
class ImapResults {
  using Item = std::ranges::range_value_t<View>;

 public:
  ImapResults(detail::TaskSink& sink, F f, View input, size_t chunksize, size_t window, bool ordered)
      : sink_(&sink),
        f_(f),
        input_(std::move(input)),
        it_(std::ranges::begin(input_)),
        chunksize_(chunksize),
        window_(window),
        ordered_(ordered),
        stream_(std::make_shared<detail::Stream<R>>()) {}
  ImapResults(ImapResults&&) = delete;  // the input iterator points into input_

  // The next result, or nullopt when the input is exhausted and every result was returned.
  std::optional<R> next() {
    while (pos_ == current_.size()) {
      top_up();
      if (in_flight_ == 0) return std::nullopt;
      if (detail::Raise failure = take_next_chunk()) failure();
    }
    return std::move(current_[pos_++]);
  }

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ImapResults* owner) : owner_(owner) { ++*this; }
    const R& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !value_; }

   private:
    ImapResults* owner_ = nullptr;
    std::optional<R> value_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  void top_up() {
    while (!input_done_ && in_flight_ < window_) {
      auto chunk = detail::take_chunk<Item>(it_, std::ranges::end(input_), chunksize_);
      if (chunk.empty()) {
        input_done_ = true;
        break;
      }
      sink_->submit_task(&detail::invoke_chunk<F, Item, Star>, detail::callable_word(f_), detail::task_message(chunk),
                         std::make_shared<detail::ChunkCompletion<R>>(stream_, submitted_++));
      ++in_flight_;
    }
  }
  // Waits for the next chunk (by index, or any when unordered); makes it current. Returns its failure, if any.
  detail::Raise take_next_chunk() {
    std::unique_lock lock(stream_->mu);
    stream_->cv.wait(lock, [&] {
      return ordered_ ? stream_->done.count(next_chunk_) != 0 : !stream_->done.empty();
    });
    auto node = ordered_ ? stream_->done.extract(next_chunk_) : stream_->done.extract(stream_->done.begin());
    lock.unlock();
    ++next_chunk_;
    --in_flight_;
    current_ = std::move(node.mapped().first);
    pos_ = 0;
    return node.mapped().second;
  }

  detail::TaskSink* sink_;
  F f_;
  View input_;
  std::ranges::iterator_t<View> it_;
  size_t chunksize_, window_;
  bool ordered_;
  std::shared_ptr<detail::Stream<R>> stream_;
  bool input_done_ = false;
  size_t in_flight_ = 0;
  uint64_t submitted_ = 0, next_chunk_ = 0;
  std::vector<R> current_;
  size_t pos_ = 0;
};

namespace detail {

// The task methods ipc::Pool shares with ipc::mpi::Pool (ipc/pool/mpi/pool.h, the same calls over MPI ranks): each
// call becomes tasks for a TaskSink. Any thread may call any of them at once.
class PoolMethods {
 public:
  // Worker processes (the count asked for; replacements keep it). ipc::mpi::Pool: over every rank.
  unsigned size() const { return sink_->worker_count(); }

  // Runs f(args...) in a worker; the future completes with its result. Any thread.
  template <typename F, typename... Args>
  auto apply_async(F&& f, Args&&... args) {
    auto task = make_apply(std::forward<F>(f), std::forward<Args>(args)...);
    sink_->submit_task(task.invoker, task.callable, std::move(task.message), task.state);
    return task.future();
  }
  // The same, by its concurrent.futures name.
  template <typename F, typename... Args>
  auto submit(F&& f, Args&&... args) {
    return apply_async(std::forward<F>(f), std::forward<Args>(args)...);
  }
  // Runs f(args...) in a worker and waits for it: its result, or its failure thrown.
  template <typename F, typename... Args>
  auto apply(F&& f, Args&&... args) {
    auto task = make_apply(std::forward<F>(f), std::forward<Args>(args)...);
    sink_->submit_task(task.invoker, task.callable, std::move(task.message), task.state);
    return wait_and_take(*task.state);  // nobody else sees this result: moved out, not copied
  }

  // f over every input, in chunks of `chunksize` inputs per task (default: ceil(n / (4 x workers)), as Python;
  // 0 is InvalidArgument). The input is read at once. The future fails with the first chunk failure.
  template <typename F, std::ranges::input_range Range>
  auto map_async(F&& f, Range&& inputs, std::optional<size_t> chunksize = std::nullopt) {
    return Future(map_impl<false>(std::forward<F>(f), std::forward<Range>(inputs), chunksize));
  }
  // map_async(...).get(): the results in input order, or the first failure thrown.
  template <typename F, std::ranges::input_range Range>
  auto map(F&& f, Range&& inputs, std::optional<size_t> chunksize = std::nullopt) {
    return wait_and_take(*map_impl<false>(std::forward<F>(f), std::forward<Range>(inputs), chunksize));
  }
  // As map, each input a tuple (or pair) of arguments: f(std::get<0>(t), std::get<1>(t), ...).
  template <typename F, std::ranges::input_range Range>
  auto starmap_async(F&& f, Range&& inputs, std::optional<size_t> chunksize = std::nullopt) {
    return Future(map_impl<true>(std::forward<F>(f), std::forward<Range>(inputs), chunksize));
  }
  template <typename F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& inputs, std::optional<size_t> chunksize = std::nullopt) {
    return wait_and_take(*map_impl<true>(std::forward<F>(f), std::forward<Range>(inputs), chunksize));
  }

  // Lazy, ordered: results come in input order as you iterate; the input is read only as far as the read-ahead
  // window requires. Keep the Pool alive and do not close() it while iterating.
  template <typename F, std::ranges::viewable_range Range>
  auto imap(F&& f, Range&& inputs, size_t chunksize = 1) {
    return imap_impl<true>(std::forward<F>(f), std::forward<Range>(inputs), chunksize);
  }
  // As imap, results in completion order.
  template <typename F, std::ranges::viewable_range Range>
  auto imap_unordered(F&& f, Range&& inputs, size_t chunksize = 1) {
    return imap_impl<false>(std::forward<F>(f), std::forward<Range>(inputs), chunksize);
  }

 protected:
  // `sink` outlives this object.
  PoolMethods(TaskSink* sink, unsigned read_ahead) : sink_(sink), read_ahead_(read_ahead) {}
  ~PoolMethods() = default;

  // One apply_async task, ready to submit.
  template <typename R>
  struct Apply {
    Invoker invoker;
    uintptr_t callable;
    std::vector<std::byte> message;
    std::shared_ptr<FutureState<R>> state;
    Future<R> future() const { return Future<R>(state); }
  };
  template <typename F, typename... Args>
  static auto make_apply(F&& f, Args&&... args) {
    using Fn = std::decay_t<F>;
    check_shippable<Fn>();
    using R = std::invoke_result_t<Fn&, std::decay_t<Args>...>;
    auto state = std::make_shared<FutureState<R>>([](std::span<const std::byte> bytes) {
      if constexpr (std::is_void_v<R>) {
        return true;
      } else {
        return Codec<R>::decode(bytes);
      }
    });
    return Apply<R>{&invoke_one<Fn, std::decay_t<Args>...>, callable_word(Fn(f)),
                    task_message(std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)), std::move(state)};
  }

 private:
  template <bool Star, typename F, typename Range>
  auto map_impl(F&& f, Range&& inputs, std::optional<size_t> chunk_option) {
    using Fn = std::decay_t<F>;
    check_shippable<Fn>();
    using Item = std::ranges::range_value_t<Range>;
    using R = typename ChunkResult<Fn, Item, Star>::type;
    static_assert(!std::is_void_v<R>, "map needs a result per input; use apply_async for functions returning void");
    if (chunk_option == size_t{0}) throw InvalidArgument("Pool::map: chunksize must be at least 1");
    // Raw items in contiguous memory (a std::vector<int>, say) go from the input straight into each chunk's
    // message; any other input is read once into a vector first, and its items moved into the chunks.
    constexpr bool kDirect = std::ranges::contiguous_range<Range> && std::ranges::sized_range<Range> &&
                             Codec<std::vector<Item>>::kRaw;
    std::vector<Item> items;
    if constexpr (!kDirect) {
      if constexpr (std::ranges::sized_range<Range>) items.reserve(std::ranges::size(inputs));
      for (auto&& x : inputs) items.push_back(static_cast<Item>(x));
    }
    const size_t n = kDirect ? size_t(std::ranges::size(inputs)) : items.size();
    const size_t per = 4 * size_t{size()};
    const size_t chunksize = chunk_option ? *chunk_option : (n == 0 ? 1 : (n + per - 1) / per);
    auto out = std::make_shared<FutureState<std::vector<R>>>();
    const size_t chunks = n / chunksize + (n % chunksize != 0);  // (n + chunksize - 1) would wrap for a huge one
    if (chunks == 0) {
      out->deliver({});
      return out;
    }
    // The result's memory is allocated here, in the caller's thread, rather than in the supervisor's: it comes
    // from (and goes back to) the caller's malloc arena, whose pages the next map reuses, instead of fresh pages
    // to touch for the first time in the supervisor's. Raw results are copied from each reply straight into it;
    // others are decoded into a vector per chunk, moved into it at the end.
    constexpr bool kRawResults = Codec<std::vector<R>>::kRaw;
    std::conditional_t<kRawResults, RawMapJoin<R>, std::vector<std::shared_ptr<FutureState<std::vector<R>>>>> join =
        [&] {
          if constexpr (kRawResults) {
            return RawMapJoin<R>(out, n, chunks);
          } else {
            auto all = std::make_shared<std::vector<R>>();
            all->reserve(n);
            return join_chunks<std::vector<R>>(chunks, out, [all](std::vector<std::vector<R>> parts) {
              for (auto& p : parts) {
                all->insert(all->end(), std::make_move_iterator(p.begin()), std::make_move_iterator(p.end()));
              }
              return std::move(*all);
            });
          }
        }();
    for (size_t c = 0; c < chunks; ++c) {
      const size_t first = c * chunksize, last = std::min(n, (c + 1) * chunksize);
      std::vector<std::byte> message;
      if constexpr (kDirect) {
        message = raw_vector_task_message(std::span<const Item>(std::ranges::data(inputs) + first, last - first));
      } else {
        message = task_message(std::vector<Item>(std::make_move_iterator(items.begin() + first),
                                                 std::make_move_iterator(items.begin() + last)));
      }
      std::shared_ptr<Completion> done;
      if constexpr (kRawResults) {
        done = join.part(first, last - first);
      } else {
        done = join[c];
      }
      sink_->submit_task(&invoke_chunk<Fn, Item, Star>, callable_word(Fn(f)), std::move(message), std::move(done));
    }
    return out;
  }

  template <bool Ordered, typename F, typename Range>
  auto imap_impl(F&& f, Range&& inputs, size_t chunksize) {
    using Fn = std::decay_t<F>;
    check_shippable<Fn>();
    using View = std::views::all_t<Range>;
    using Item = std::ranges::range_value_t<View>;
    using R = typename ChunkResult<Fn, Item, false>::type;
    static_assert(!std::is_void_v<R>, "imap needs a result per input; use apply_async for functions returning void");
    if (chunksize == 0) throw InvalidArgument("Pool::imap: chunksize must be at least 1");
    const size_t window = read_ahead_ != 0 ? read_ahead_ : 2 * size_t{size()};
    return ImapResults<R, Fn, View, false>(*sink_, Fn(f), std::views::all(std::forward<Range>(inputs)), chunksize,
                                           window, Ordered);
  }

  TaskSink* sink_;
  unsigned read_ahead_;
};

}  // namespace detail

// The pool of this host's workers. Task methods (apply_async, map, imap, ...): detail::PoolMethods above.
class Pool : public detail::PoolMethods {
 public:
  explicit Pool(PoolOptions options = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // As apply_async, to run on a worker of NUMA node `node` (the node that holds the task's data) when one can
  // take it; an idle worker of another node takes it rather than sit idle. Without placement, a plain hint.
  template <typename F, typename... Args>
  auto apply_async_on(int node, F&& f, Args&&... args) {
    auto task = make_apply(std::forward<F>(f), std::forward<Args>(args)...);
    core_->submit(task.invoker, task.callable, std::move(task.message), task.state, node);
    return task.future();
  }

  // f over an Array in shared memory, chunk by chunk, each chunk run where its pages are: f(std::span<T> chunk,
  // size_t first_index) or f(std::span<T> chunk) in a worker, on the array's own memory (nothing is copied; f may
  // write its chunk). `array` must be a named Array of `segment` (Array<T>::create); each worker opens the segment
  // by name (and keeps it mapped), so every start method works, whenever the segment was made. The home of a
  // chunk is the node holding most of its pages now (move_pages, as numa::page_placement); see ArrayMapOptions.
  // The future fails with the first chunk failure. InvalidArgument: chunk_elements 0, an array not in `segment`.
  template <typename F, typename T>
  auto map_array_async(F&& f, Segment& segment, Array<T>& array, ArrayMapOptions options = {}) {
    using Fn = std::decay_t<F>;
    detail::check_shippable<Fn>();
    using R = typename detail::ArrayChunkResult<Fn, T>::type;
    static_assert(!std::is_void_v<R>, "map_array needs a result per chunk");
    if (options.chunk_elements == size_t{0}) throw InvalidArgument("Pool::map_array: chunk_elements must be at least 1");
    std::string name = detail::array_name(segment, &array);
    const size_t n = array.size();
    size_t per = options.chunk_elements.value_or(0);
    if (per == 0) {
      const size_t pages = (n * sizeof(T) + Array<T>::kPageBytes - 1) / Array<T>::kPageBytes;
      const size_t target = 4 * size_t{size()};
      per = std::max<size_t>(1, (pages + target - 1) / target * Array<T>::kPageBytes / sizeof(T));
    }
    const size_t chunks = n / per + (n % per != 0);  // (n + per - 1) would wrap for a huge chunk_elements
    auto count = std::make_shared<detail::HomeCount>();
    auto out = std::make_shared<detail::FutureState<ArrayMapResult<R>>>();
    auto with_home = std::make_shared<uint64_t>(0);
    auto states = detail::join_chunks<R>(chunks, out, [count, with_home](std::vector<R> parts) {
      ArrayMapResult<R> result;
      result.results = std::move(parts);
      result.chunks = count->tasks.load(std::memory_order_relaxed);
      result.chunks_at_home = count->at_home.load(std::memory_order_relaxed);
      result.chunks_with_home = *with_home;
      return result;
    });
    if (chunks == 0) out->deliver({});
    // Every chunk's home first (a move_pages call each), then the chunks queued round-robin over their homes: were
    // they queued in array order as their homes are found, an idle worker of the last node would find none of its
    // own queued yet and steal the first nodes' chunks.
    std::map<int, std::vector<size_t>> by_home;
    for (size_t c = 0; c < chunks; ++c) {
      const size_t begin = c * per, end = std::min(n, begin + per);
      const int home = detail::home_node(array.data() + begin, (end - begin) * sizeof(T));
      *with_home += home >= 0 ? 1 : 0;  // read by finish() only after every chunk (all submitted) completed
      by_home[home].push_back(c);
    }
    for (size_t i = 0, queued = 0; queued < chunks; ++i) {
      for (auto& [home, cs] : by_home) {
        if (i >= cs.size()) continue;
        const size_t c = cs[i], begin = c * per, end = std::min(n, begin + per);
        core_->submit(&detail::invoke_array_chunk<Fn, T>, detail::callable_word(Fn(f)),
                      detail::task_message(detail::ArrayChunk(segment.name(), name, begin, end)), states[c], home,
                      options.locality, count);
        ++queued;
      }
    }
    return Future<ArrayMapResult<R>>(out);
  }
  // map_array_async(...).get(): the results and the locality achieved, or the first chunk failure thrown.
  template <typename F, typename T>
  auto map_array(F&& f, Segment& segment, Array<T>& array, ArrayMapOptions options = {}) {
    return map_array_async(std::forward<F>(f), segment, array, std::move(options)).get();
  }

  // No new tasks; queued ones still run. The workers exit once everything is done. Any thread.
  void close() { core_->close(); }
  // Kills the workers now; every unfinished future fails with PoolTerminated. Returns once they are reaped.
  void terminate() { core_->terminate(); }
  // REQUIRES: close() or terminate() before (else StateError). Waits until every worker has exited.
  void join() { core_->join(); }
  // As join(), giving up after `timeout`: kOk, or kTimeout when the workers are still busy.
  template <typename Rep, typename Period>
  [[nodiscard]] Outcome join(std::chrono::duration<Rep, Period> timeout) {
    // Through a Deadline: a timeout past what the clock counts (hours::max()) waits as long as it takes.
    const auto left = Deadline::after(timeout).remaining();
    return core_->join_for(left ? *left : std::chrono::nanoseconds::max()) ? Outcome::kOk : Outcome::kTimeout;
  }

  // The pids of the workers the pool runs (changes as workers are replaced). A worker that died is listed until the
  // pool has noticed, a few milliseconds later (a fork server's worker may be gone already by then: its parent is
  // the server); process_dead() (ipc/base/process.h) tells. Any thread.
  std::vector<int> worker_pids() const { return core_->worker_pids(); }
  // Workers started so far, replacements included.
  uint64_t workers_started() const { return core_->workers_started(); }
  // The workers' (those of worker_pids()) pid, NUMA node (-1 without placement), the CPUs they are pinned to, and the
  // pages of their pipe's rings and of their scratch arena per node (read now, from the kernel; no arena pages for a
  // worker whose tasks never called worker_scratch()).
  std::vector<detail::PoolCore::WorkerPlace> placement() const { return core_->placement(); }
  // {hinted tasks that ran on their node, hinted tasks} so far: the locality achieved.
  std::pair<uint64_t, uint64_t> hinted_at_home() const { return core_->hinted_at_home(); }

 private:
  Pool(std::unique_ptr<detail::PoolCore> core, unsigned read_ahead);

  std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace ipc

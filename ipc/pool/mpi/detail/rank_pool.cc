#include "ipc/pool/mpi/detail/rank_pool.h"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "ipc/base/error.h"
#include "ipc/pool/detail/code_address.h"
#include "ipc/shared/codec.h"

namespace ipc::mpi::detail {
namespace {

using ipc::detail::Completion;
using ipc::detail::Raise;

Root* g_root = nullptr;  // set once by ipc::mpi::init, before any pool exists
constexpr std::chrono::seconds kShutdownPatience(60);

// Wraps a task run by rank 0's own workers: gives its credit back (so the next queued task can go) before the
// task's own completion runs.
class LocalDone final : public Completion {
 public:
  LocalDone(std::weak_ptr<RankPool> pool, std::shared_ptr<Completion> inner)
      : pool_(std::move(pool)), inner_(std::move(inner)) {}
  void succeed(std::span<const std::byte> result) override {
    release();
    inner_->succeed(result);
  }
  void fail(Raise failure) override {
    release();
    inner_->fail(std::move(failure));
  }

 private:
  void release() {
    if (auto pool = pool_.lock()) pool->local_done();
  }
  std::weak_ptr<RankPool> pool_;
  std::shared_ptr<Completion> inner_;
};

// Completion callbacks are user code: one that throws must not take the MPI thread (or a pool) down.
template <typename Call>
void complete_guarded(Call call) {
  try {
    call();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ipc::mpi::Pool: a completion callback threw %s\n", e.what());
  }
}

uint64_t load_u64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void store_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }

}  // namespace

Root* root() { return g_root; }
void set_root(Root* root) { g_root = root; }

uint64_t Root::add(std::weak_ptr<RankPool> pool) {
  std::lock_guard lock(mu_);
  if (next_id_ > kMaxPools) throw StateError("ipc::mpi::Pool: more pools in one run than task words can name");
  const uint64_t id = next_id_++;
  pools_.emplace(id, std::move(pool));
  return id;
}

void Root::forget(uint64_t id) {
  std::lock_guard lock(mu_);
  pools_.erase(id);
}

std::shared_ptr<RankPool> Root::find(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = pools_.find(id);
  return it == pools_.end() ? nullptr : it->second.lock();
}

bool Root::active() const {
  std::lock_guard lock(mu_);
  return !pools_.empty();
}

void Root::on_message(int source, int tag, std::vector<std::byte> bytes) {
  switch (tag) {
    case kBye: {
      std::lock_guard lock(mu_);
      ++byes_;
      cv_.notify_all();
      return;
    }
    case kOpened: {
      auto [id, workers, error] = decode<OpenedMessage>(bytes);
      if (auto pool = find(id)) pool->opened(source, workers, std::move(error));
      return;
    }
    case kResult: {
      if (bytes.size() < kResultHeaderBytes) break;
      const uint64_t word = load_u64(bytes.data());
      if (auto pool = find(pool_of(word))) pool->result(source, word, bytes);
      return;
    }
    case kClosed:
    case kTerminated: {
      if (auto pool = find(decode<uint64_t>(bytes))) pool->ended(source);
      return;
    }
    default:
      break;
  }
  std::fprintf(stderr, "ipc::mpi: rank 0 got a message it cannot read (tag %d, %zu bytes) from rank %d\n", tag,
               bytes.size(), source);
}

void Root::shutdown() {
  // exit() from a completion callback: the MPI thread cannot wait for itself; MPI reports the job's abrupt end.
  if (transport_.on_mpi_thread()) return;
  const int ranks = transport_.size();
  for (int r = 1; r < ranks; ++r) transport_.send(r, kShutdown, {});
  {
    std::unique_lock lock(mu_);
    // A serving rank answers as soon as it has killed its workers; one that cannot must not hang the job: rank 0
    // then leaves without finalising MPI, and mpirun ends the others.
    if (!cv_.wait_for(lock, kShutdownPatience, [&] { return byes_ == ranks - 1; })) {
      std::fprintf(stderr, "ipc::mpi: %d of %d ranks did not end their pools within %lld s; ending the job\n",
                   ranks - 1 - byes_, ranks - 1, static_cast<long long>(kShutdownPatience.count()));
      std::fflush(nullptr);
      std::_Exit(1);
    }
  }
  transport_.stop();
  transport_.join();
}

RankPool::RankPool(Root* root, uint64_t id, int ranks) : root_(root), id_(id), ranks_(static_cast<size_t>(ranks)) {}

RankPool::~RankPool() {
  if (root_) root_->forget(id_);
}

std::shared_ptr<RankPool> RankPool::open(const PoolOptions& given) {
  Root* root = detail::root();
  PoolOptions options = given;
  // Under MPI no worker is forked from a rank: the fork server that ipc::mpi::init started before MPI_Init forks
  // them (a fork of a process that holds MPI's network state is what Open MPI warns about).
  if (root && options.start_method == StartMethod::kFork) options.start_method = StartMethod::kForkServer;
  const int ranks = root ? root->transport().size() : 1;
  if (ranks == 1) {
    auto pool = std::make_shared<RankPool>(nullptr, 0, 1);
    pool->local_ = ipc::detail::make_pool_core(options);
    pool->ranks_[0].workers = pool->total_workers_ = pool->local_->worker_count();
    return pool;
  }

  std::vector<std::string> objects = ipc::detail::loaded_objects();
  uint64_t initializer = 0;
  if (options.initializer) {
    auto* fn = options.initializer.target<void (*)()>();
    if (!fn) {
      throw InvalidArgument(
          "ipc::mpi::Pool: the initializer must be a plain function (a void() function, or +[] { ... } for a "
          "captureless lambda): a closure's state cannot reach the other ranks");
    }
    initializer = ipc::detail::portable_code_address(reinterpret_cast<uintptr_t>(*fn), objects);
  }
  auto pool = std::make_shared<RankPool>(root, 0, ranks);
  pool->id_ = root->add(pool);
  pool->objects_ = objects;
  const auto open = encode(OpenMessage(pool->id_, program_id(), std::move(objects), to_wire(options, initializer)));
  for (int r = 1; r < ranks; ++r) root->transport().send(r, kOpen, open);
  std::optional<std::pair<int, WireError>> failed;
  try {
    pool->local_ = ipc::detail::make_pool_core(options);
  } catch (...) {
    failed.emplace(0, describe_current_exception());
  }
  {
    std::unique_lock lock(pool->mu_);
    pool->cv_.wait(lock, [&] {
      for (int r = 1; r < ranks; ++r) {
        if (!pool->ranks_[r].answered) return false;
      }
      return true;
    });
    pool->ranks_[0].workers = pool->local_ ? pool->local_->worker_count() : 0;
    for (int r = 0; r < ranks; ++r) {
      pool->total_workers_ += pool->ranks_[r].workers;
      if (!failed && pool->ranks_[r].error) failed.emplace(r, *pool->ranks_[r].error);
    }
  }
  if (failed) {
    pool->terminate();  // the ranks that opened it end it again; those that did not answer kTerminated anyway
    rebuild(failed->second, failed->first)();
  }
  return pool;
}

void RankPool::submit_task(ipc::detail::Invoker invoker, uintptr_t callable, std::vector<std::byte> message,
                           std::shared_ptr<Completion> done) {
  if (!root_) {
    local_->submit(invoker, callable, std::move(message), std::move(done));
    return;
  }
  if (message.size() < ipc::detail::kTaskHeaderBytes) {
    throw InvalidArgument("Pool: a task message without room for its header");
  }
  if (message.size() > static_cast<size_t>(INT_MAX)) {
    throw InvalidArgument("ipc::mpi::Pool: a task of " + std::to_string(message.size()) +
                          " bytes; MPI carries at most 2 GiB - 1 bytes in one message");
  }
  // Made portable here, on the caller's thread, so that code the other ranks cannot find fails the call itself.
  Queued q{invoker,
           callable,
           ipc::detail::portable_code_address(reinterpret_cast<uintptr_t>(invoker), objects_),
           ipc::detail::portable_code_address(callable, objects_),
           std::move(message),
           std::move(done)};
  Later later;
  {
    std::lock_guard lock(mu_);
    if (terminated_) throw StateError("Pool: the pool was terminated");
    if (closed_) throw StateError("Pool: the pool is closed; no new tasks");
    queue_.push_back(std::move(q));
    dispatch_locked(later);
  }
  run(later);
}

int RankPool::pick_rank_locked() {
  // The rank with the smallest share of its workers busy, among those with credit left; ties go in turn.
  int best = -1;
  const size_t n = ranks_.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t r = (next_rank_ + k) % n;
    const Rank& s = ranks_[r];
    if (s.in_flight >= kCreditPerWorker * s.workers) continue;
    if (best < 0 || uint64_t{s.in_flight} * ranks_[best].workers < uint64_t{ranks_[best].in_flight} * s.workers) {
      best = static_cast<int>(r);
    }
  }
  if (best >= 0) next_rank_ = static_cast<size_t>(best) + 1;
  return best;
}

void RankPool::dispatch_locked(Later& later) {
  while (!queue_.empty()) {
    const int r = pick_rank_locked();
    if (r < 0) break;
    Queued q = std::move(queue_.front());
    queue_.pop_front();
    ++ranks_[r].in_flight;
    if (r == 0) {
      try {
        local_->submit(q.invoker, q.callable, std::move(q.message),
                       std::make_shared<LocalDone>(weak_from_this(), q.done));
      } catch (...) {
        --ranks_[0].in_flight;
        later.emplace_back(q.done, rebuild(describe_current_exception(), 0));
      }
      continue;
    }
    const uint64_t word = task_word(id_, next_task_);
    next_task_ = next_task_ % kMaxTasksPerPool + 1;  // wraps after 2^40 tasks, long after the first has ended
    store_u64(q.message.data(), word);
    store_u64(q.message.data() + 8, q.portable_invoker);
    store_u64(q.message.data() + 16, q.portable_callable);
    remote_.emplace(word, std::pair(std::move(q.done), r));
    // Sent under mu_: a rank gets its tasks before the kClose that close_if_drained_locked() may send next.
    root_->transport().send(r, kTask, std::move(q.message));
  }
  close_if_drained_locked();
}

void RankPool::close_if_drained_locked() {
  if (!closed_ || terminated_ || close_sent_ || !queue_.empty()) return;
  close_sent_ = true;
  send_all_locked(kClose);
  local_->close();
}

void RankPool::send_all_locked(int tag) {
  const auto id = encode(id_);
  for (size_t r = 1; r < ranks_.size(); ++r) root_->transport().send(static_cast<int>(r), tag, id);
}

bool RankPool::remote_ended_locked() const {
  for (size_t r = 1; r < ranks_.size(); ++r) {
    if (!ranks_[r].ended) return false;
  }
  return true;
}

void RankPool::run(Later& later) {
  for (auto& [done, failure] : later) complete_guarded([&] { done->fail(std::move(failure)); });
}

std::vector<unsigned> RankPool::workers_per_rank() const {
  std::lock_guard lock(mu_);
  std::vector<unsigned> out;
  for (const Rank& r : ranks_) out.push_back(r.workers);
  return out;
}

void RankPool::close() {
  if (!root_) {
    local_->close();
    return;
  }
  std::lock_guard lock(mu_);
  closed_ = true;
  close_if_drained_locked();
}

void RankPool::terminate() {
  if (!root_) {
    local_->terminate();
    return;
  }
  Later later;
  {
    std::lock_guard lock(mu_);
    if (!terminated_) {
      terminated_ = true;
      const Raise failure =
          ipc::detail::raise_as<PoolTerminated>(std::string("the pool was terminated before the task finished"));
      for (Queued& q : queue_) later.emplace_back(std::move(q.done), failure);
      queue_.clear();
      for (auto& [word, entry] : remote_) later.emplace_back(std::move(entry.first), failure);
      remote_.clear();
      send_all_locked(kTerminate);
    }
  }
  run(later);
  if (local_) local_->terminate();  // outside mu_: its supervisor may be waiting for mu_ in local_done()
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return remote_ended_locked(); });
  joined_ = true;
}

void RankPool::join() {
  if (!root_) {
    local_->join();
    return;
  }
  {
    std::unique_lock lock(mu_);
    if (!closed_ && !terminated_) throw StateError("Pool::join: call close() or terminate() first");
    cv_.wait(lock, [&] { return (close_sent_ || terminated_) && remote_ended_locked(); });
  }
  local_->join();
  std::lock_guard lock(mu_);
  joined_ = true;
}

bool RankPool::join_for(std::chrono::nanoseconds timeout) {
  if (!root_) return local_->join_for(timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  {
    std::unique_lock lock(mu_);
    if (!closed_ && !terminated_) throw StateError("Pool::join: call close() or terminate() first");
    if (!cv_.wait_until(lock, deadline, [&] { return (close_sent_ || terminated_) && remote_ended_locked(); })) {
      return false;
    }
  }
  const auto left = std::max(std::chrono::steady_clock::duration::zero(), deadline - std::chrono::steady_clock::now());
  if (!local_->join_for(left)) return false;
  std::lock_guard lock(mu_);
  joined_ = true;
  return true;
}

void RankPool::end() {
  if (!root_) return;  // the PoolCore's destructor terminates unless joined
  bool joined;
  {
    std::lock_guard lock(mu_);
    joined = joined_;
  }
  if (!joined) terminate();
}

void RankPool::opened(int rank, unsigned workers, std::optional<WireError> error) {
  std::lock_guard lock(mu_);
  Rank& r = ranks_[static_cast<size_t>(rank)];
  r.answered = true;
  r.workers = workers;
  r.error = std::move(error);
  cv_.notify_all();
}

void RankPool::result(int rank, uint64_t task_word, std::span<const std::byte> message) {
  std::shared_ptr<Completion> done;
  Later later;
  {
    std::lock_guard lock(mu_);
    auto it = remote_.find(task_word);
    if (it == remote_.end()) return;  // failed already (terminate())
    done = std::move(it->second.first);
    remote_.erase(it);
    --ranks_[static_cast<size_t>(rank)].in_flight;
    dispatch_locked(later);
  }
  run(later);
  const auto payload = message.subspan(kResultHeaderBytes);
  if (message[8] == std::byte{0}) {
    complete_guarded([&] { done->succeed(payload); });
    return;
  }
  Raise failure;
  try {
    failure = rebuild(decode<WireError>(payload), rank);
  } catch (...) {
    failure = ipc::detail::raise_current();
  }
  complete_guarded([&] { done->fail(std::move(failure)); });
}

void RankPool::ended(int rank) {
  std::lock_guard lock(mu_);
  ranks_[static_cast<size_t>(rank)].ended = true;
  cv_.notify_all();
}

void RankPool::local_done() {
  Later later;
  {
    std::lock_guard lock(mu_);
    if (terminated_) return;
    --ranks_[0].in_flight;
    dispatch_locked(later);
  }
  run(later);
}

}  // namespace ipc::mpi::detail

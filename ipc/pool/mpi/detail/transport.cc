#include "ipc/pool/mpi/detail/transport.h"

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "ipc/base/error.h"

namespace ipc::mpi::detail {
namespace {

using Clock = std::chrono::steady_clock;
// Polling costs a timed wake-up each round (about 30 us of CPU on a VM): poll often only when a message is likely.
constexpr auto kKeepPolling = std::chrono::microseconds(50);
constexpr auto kFirstSleep = std::chrono::microseconds(20);
constexpr auto kRecently = std::chrono::milliseconds(20);
constexpr auto kLongestSleepRecently = std::chrono::microseconds(200);
constexpr auto kLongestSleepActive = std::chrono::milliseconds(1);
constexpr auto kLongestSleepIdle = std::chrono::milliseconds(5);

}  // namespace

struct Transport::Mpi {
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD: the pool's messages never meet anyone else's
  struct Sending {
    MPI_Request request;
    std::vector<std::byte> bytes;  // kept until the send completed
  };
  std::vector<Sending> sending;
};

Transport::Transport() : mpi_(std::make_unique<Mpi>()) {
  thread_ = std::thread([this] {
    int provided = MPI_THREAD_SINGLE;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
      std::fprintf(stderr, "ipc::mpi: this MPI library gives no MPI_THREAD_FUNNELED support\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &mpi_->comm);
    int rank = 0, size = 0;
    MPI_Comm_rank(mpi_->comm, &rank);
    MPI_Comm_size(mpi_->comm, &size);
    {
      std::unique_lock lock(mu_);
      rank_ = rank;
      size_ = size;
      cv_.notify_all();
      cv_.wait(lock, [&] { return receiver_ != nullptr; });
    }
    loop();
    MPI_Comm_free(&mpi_->comm);
    MPI_Finalize();
  });
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return rank_ >= 0; });
}

Transport::~Transport() {
  if (thread_.joinable()) thread_.detach();  // the process is exiting without a stop(): MPI reports that
}

void Transport::run(Receiver* receiver) {
  std::lock_guard lock(mu_);
  receiver_ = receiver;
  cv_.notify_all();
}

void Transport::send(int dest, int tag, std::vector<std::byte> bytes) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    throw InvalidArgument("ipc::mpi: a message of " + std::to_string(bytes.size()) +
                          " bytes; MPI carries at most 2 GiB - 1 bytes in one");
  }
  std::lock_guard lock(mu_);
  if (stopping_) return;
  outbox_.push_back({dest, tag, std::move(bytes)});
  woken_ = true;
  cv_.notify_one();
}

void Transport::wake() {
  std::lock_guard lock(mu_);
  woken_ = true;
  cv_.notify_one();
}

void Transport::stop(std::vector<Message> last) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  for (auto& m : last) outbox_.push_back(std::move(m));
  stopping_ = true;
  woken_ = true;
  cv_.notify_one();
}

void Transport::join() {
  if (thread_.joinable()) thread_.join();
}

void Transport::loop() {
  std::vector<Message> out;
  auto last_work = Clock::now();
  auto sleep = kFirstSleep;
  for (;;) {
    bool worked = false;
    bool stopping;
    {
      std::lock_guard lock(mu_);
      out.swap(outbox_);
      stopping = stopping_;
      woken_ = false;
    }
    for (auto& m : out) {
      Mpi::Sending s{MPI_REQUEST_NULL, std::move(m.bytes)};
      mpi_->sending.push_back(std::move(s));
      auto& back = mpi_->sending.back();
      MPI_Isend(back.bytes.data(), static_cast<int>(back.bytes.size()), MPI_BYTE, m.dest, m.tag, mpi_->comm,
                &back.request);
      worked = true;
    }
    out.clear();
    // Every message that has arrived, in arrival order (from one sender: in the order it sent them).
    for (;;) {
      int arrived = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, mpi_->comm, &arrived, &status);
      if (!arrived) break;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      std::vector<std::byte> bytes(static_cast<size_t>(count));
      MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, mpi_->comm, MPI_STATUS_IGNORE);
      receiver_->on_message(status.MPI_SOURCE, status.MPI_TAG, std::move(bytes));
      worked = true;
    }
    if (!mpi_->sending.empty()) {
      // The vector's requests are not contiguous MPI_Request arrays (each sits beside its buffer): test one by one.
      std::erase_if(mpi_->sending, [](Mpi::Sending& s) {
        int complete = 0;
        MPI_Test(&s.request, &complete, MPI_STATUS_IGNORE);
        return complete != 0;
      });
    }
    if (receiver_->on_round()) worked = true;
    if (stopping && mpi_->sending.empty()) {
      std::lock_guard lock(mu_);
      if (outbox_.empty()) return;
      continue;
    }
    const auto now = Clock::now();
    if (worked) {
      last_work = now;
      sleep = kFirstSleep;
      continue;
    }
    if (!mpi_->sending.empty() || now - last_work < kKeepPolling) {
      sched_yield();  // a send in flight progresses only inside MPI calls: keep making them
      continue;
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, sleep, [&] { return woken_; });
    const std::chrono::microseconds longest = now - last_work < kRecently ? kLongestSleepRecently
                                              : receiver_->active()     ? kLongestSleepActive
                                                                        : kLongestSleepIdle;
    sleep = std::min(sleep * 2, longest);
  }
}

}  // namespace ipc::mpi::detail

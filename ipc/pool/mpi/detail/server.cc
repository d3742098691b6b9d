#include "ipc/pool/mpi/detail/server.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "ipc/base/error.h"
#include "ipc/shared/codec.h"

namespace ipc::mpi::detail {
namespace {

using ipc::detail::Completion;
using ipc::detail::Raise;

void send_failure(Transport& transport, uint64_t word, const WireError& error) {
  std::vector<std::byte> m(kResultHeaderBytes + Codec<WireError>::encoded_size(error));
  std::memcpy(m.data(), &word, sizeof word);
  m[8] = std::byte{1};
  Codec<WireError>::encode(error, std::span<std::byte>(m).subspan(kResultHeaderBytes));
  transport.send(0, kResult, std::move(m));
}

// A task's result (or failure) on its way back to rank 0. Runs on the local pool's supervisor thread.
class Reply final : public Completion {
 public:
  Reply(Transport& transport, uint64_t word) : transport_(transport), word_(word) {}
  void succeed(std::span<const std::byte> result) override {
    std::vector<std::byte> m(kResultHeaderBytes + result.size());
    std::memcpy(m.data(), &word_, sizeof word_);
    m[8] = std::byte{0};
    if (!result.empty()) std::memcpy(m.data() + kResultHeaderBytes, result.data(), result.size());
    try {
      transport_.send(0, kResult, std::move(m));
    } catch (...) {  // too large for one MPI message: the task fails with the reason
      send_failure(transport_, word_, describe_current_exception());
    }
  }
  void fail(Raise failure) override { send_failure(transport_, word_, describe(failure)); }

 private:
  Transport& transport_;
  uint64_t word_;
};

}  // namespace

void Server::on_message(int source, int tag, std::vector<std::byte> bytes) {
  switch (tag) {
    case kOpen:
      open(bytes);
      return;
    case kTask:
      task(std::move(bytes));
      return;
    case kClose: {
      auto it = pools_.find(decode<uint64_t>(bytes));
      if (it != pools_.end()) {
        it->second.core->close();
        it->second.closing = true;
      } else {
        transport_.send(0, kClosed, bytes);
      }
      return;
    }
    case kTerminate:
      terminate(decode<uint64_t>(bytes));
      return;
    case kShutdown:
      shutdown();
      return;
    default:
      std::fprintf(stderr, "ipc::mpi: rank %d got a message it cannot read (tag %d, %zu bytes) from rank %d\n",
                   transport_.rank(), tag, bytes.size(), source);
  }
}

void Server::open(const std::vector<std::byte>& bytes) {
  auto [id, program, objects, wire] = decode<OpenMessage>(bytes);
  try {
    if (program != program_) {
      throw StateError("this rank runs another program (" + program_ + ") than rank 0 (" + program +
                       "): every rank must run the same executable");
    }
    Served served;
    served.code = std::make_unique<ipc::detail::CodeMap>(objects);
    void (*initializer)() = nullptr;
    if (const uint64_t at = initializer_of(wire)) initializer = reinterpret_cast<void (*)()>(served.code->address(at));
    served.core = ipc::detail::make_pool_core(from_wire(wire, initializer));
    const unsigned workers = served.core->worker_count();
    pools_.emplace(id, std::move(served));
    transport_.send(0, kOpened, encode(OpenedMessage(id, workers, std::nullopt)));
  } catch (...) {
    transport_.send(0, kOpened, encode(OpenedMessage(id, 0, describe_current_exception())));
  }
}

void Server::task(std::vector<std::byte> bytes) {
  if (bytes.size() < ipc::detail::kTaskHeaderBytes) {
    std::fprintf(stderr, "ipc::mpi: rank %d got a task message of %zu bytes\n", transport_.rank(), bytes.size());
    return;
  }
  uint64_t word, invoker, callable;
  std::memcpy(&word, bytes.data(), 8);
  std::memcpy(&invoker, bytes.data() + 8, 8);
  std::memcpy(&callable, bytes.data() + 16, 8);
  try {
    auto it = pools_.find(pool_of(word));
    if (it == pools_.end()) throw StateError("the pool is gone from this rank (closed or terminated)");
    Served& served = it->second;
    served.core->submit(reinterpret_cast<ipc::detail::Invoker>(served.code->address(invoker)),
                        served.code->address(callable), std::move(bytes), std::make_shared<Reply>(transport_, word));
  } catch (...) {
    send_failure(transport_, word, describe_current_exception());
  }
}

void Server::terminate(uint64_t id) {
  auto it = pools_.find(id);
  if (it != pools_.end()) {
    it->second.core->terminate();  // kills and reaps its workers; their tasks' kResults go out before kTerminated
    pools_.erase(it);
  }
  transport_.send(0, kTerminated, encode(id));
}

bool Server::on_round() {
  bool closed = false;
  for (auto it = pools_.begin(); it != pools_.end();) {
    if (it->second.closing && it->second.core->join_for(std::chrono::nanoseconds(0))) {
      transport_.send(0, kClosed, encode(it->first));
      it = pools_.erase(it);
      closed = true;
    } else {
      ++it;
    }
  }
  return closed;
}

void Server::shutdown() {
  for (auto& [id, served] : pools_) served.core->terminate();
  pools_.clear();
  // Rank 0 reads until every kBye: nothing may follow it (rank 0 may have finalised MPI by then).
  std::vector<Message> last;
  last.push_back({0, kBye, {}});
  transport_.stop(std::move(last));
}

}  // namespace ipc::mpi::detail

// ipc/pool/mpi/detail/server.h (internal; use ipc/pool/mpi/pool.h): what a rank other than 0 runs inside
// ipc::mpi::init: a local PoolCore per pool rank 0 opened, fed by rank 0's kTask messages, each result sent back as
// a kResult (wire.h). Everything here runs on the MPI thread; the pools' supervisors only queue results.
// Lifetime: from init until rank 0's kShutdown: then every pool is terminated, kBye is the last message, MPI is
// finalised and the process exits.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ipc/pool/detail/code_address.h"
#include "ipc/pool/detail/pool_core.h"
#include "ipc/pool/mpi/detail/transport.h"
#include "ipc/pool/mpi/detail/wire.h"

namespace ipc::mpi::detail {

class Server final : public Receiver {
 public:
  explicit Server(Transport& transport) : transport_(transport), program_(program_id()) {}

  void on_message(int source, int tag, std::vector<std::byte> bytes) override;
  // Reports the closing pools whose workers have all exited (kClosed).
  bool on_round() override;
  bool active() const override { return !pools_.empty(); }

 private:
  struct Served {
    std::unique_ptr<ipc::detail::PoolCore> core;
    std::unique_ptr<ipc::detail::CodeMap> code;  // rank 0's code addresses -> this process's
    bool closing = false;
  };
  void open(const std::vector<std::byte>& bytes);
  void task(std::vector<std::byte> bytes);
  void terminate(uint64_t id);
  void shutdown();

  Transport& transport_;
  const std::string program_;
  std::map<uint64_t, Served> pools_;
};

}  // namespace ipc::mpi::detail

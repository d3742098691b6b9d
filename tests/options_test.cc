// Every options struct of the public API reads well with designated initializers, as the docs write them
// ({.workers = 4}), and stays quiet under -Wextra: each member has a default member initializer, so naming only some
// members warns about none (this file is compiled with -Werror=missing-field-initializers), and the members left out
// keep their documented defaults.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>

#include "ipc/base/process.h"
#include "ipc/numa/scratch_arena.h"
#include "ipc/pipe/connection.h"
#include "ipc/pipe/listener.h"
#include "ipc/pool/pool.h"
#include "ipc/queue/message_queue.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "manager/client.h"
#include "manager/server.h"

using namespace std::chrono_literals;

TEST_CASE("options name one member and keep the defaults of the others", "[vocabulary]") {
  const ipc::PoolOptions pool{.read_ahead = 3};
  CHECK(!pool.workers);
  CHECK(!pool.initializer);
  CHECK(!pool.task_timeout);
  CHECK(pool.pipe_bytes == uint64_t{1} << 18);
  CHECK(pool.start_method == ipc::StartMethod::kFork);

  const ipc::ArrayMapOptions array_map{.locality = false};
  CHECK(!array_map.chunk_elements);

  const ipc::PipeOptions pipe{.ring_bytes = 4096};
  CHECK(pipe.duplex);
  CHECK(!pipe.transferable);

  const ipc::ListenerOptions listener{.max_pending = 8};
  CHECK(listener.handshake_timeout == 5s);

  const ipc::SegmentOptions segment{.permissions = 0640};
  CHECK(segment.huge_pages == ipc::HugePages::kNo);

  const ipc::ArrayOptions array{};
  CHECK(!array.policy);

  const ipc::numa::ScratchArena::Options scratch{.capacity = 1 << 20,
                                                 .huge_pages = ipc::numa::ScratchArena::HugePages::kOff};
  CHECK(!scratch.node);

  const ipc::MessageQueue::Options message_queue{.capacity = 64};
  CHECK(message_queue.arena_bytes == 0);

  const ipc::ProcessOptions process{.daemon = true};
  CHECK(process.name.empty());

  const ipc::manager::ServerOptions server{.max_message_bytes = 1 << 20};
  CHECK(server.address.empty());
  CHECK(server.key.empty());
  CHECK(server.authentication_timeout == 10s);

  const ipc::manager::ServerProcessOptions server_process{.authentication_timeout = 3s};
  CHECK(server_process.key.empty());
  CHECK(!server_process.setup);

  const ipc::manager::ClientOptions client{.connect_timeout = 2s};
  CHECK(client.connect_timeout == 2s);
  CHECK(ipc::manager::ClientOptions{}.connect_timeout == 30s);
}

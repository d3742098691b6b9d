// The one outcome vocabulary of ipc/base/error.h: each Outcome's name, which outcomes mean "the caller holds the
// lock", and one NotFound for every kind of named thing that does not exist (pipes have no names: Pipe() makes an
// anonymous pair).
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "ipc/base/error.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/shared/value.h"
#include "ipc/sync/barrier.h"
#include "ipc/sync/condition.h"
#include "ipc/sync/event.h"
#include "ipc/sync/lock.h"
#include "ipc/sync/semaphore.h"
#include "manager/client.h"
#include "manager/server.h"
#include "tests/support/test_support.h"

using Catch::Contains;
using ipc::NotFound;
using ipc::Outcome;

TEST_CASE("every outcome has one name", "[vocabulary]") {
  CHECK(std::string(to_string(Outcome::kOk)) == "ok");
  CHECK(std::string(to_string(Outcome::kTimeout)) == "timeout");
  CHECK(std::string(to_string(Outcome::kClosed)) == "closed");
  CHECK(std::string(to_string(Outcome::kFull)) == "full");
  CHECK(std::string(to_string(Outcome::kEmpty)) == "empty");
  CHECK(std::string(to_string(Outcome::kOwnerDied)) == "owner died");
  static_assert(std::string_view(to_string(Outcome::kTimeout)) == "timeout", "usable at compile time");
}

TEST_CASE("holds() is true exactly for the outcomes that leave the caller holding the lock", "[vocabulary]") {
  CHECK(holds(Outcome::kOk));
  CHECK(holds(Outcome::kOwnerDied));
  CHECK_FALSE(holds(Outcome::kTimeout));
  CHECK_FALSE(holds(Outcome::kClosed));
  CHECK_FALSE(holds(Outcome::kFull));
  CHECK_FALSE(holds(Outcome::kEmpty));
}

TEST_CASE("a missing segment, queue, lock, value or array is NotFound, and says which name", "[vocabulary]") {
  const std::string name = ipc::test::unique_name("vocab");
  CHECK_THROWS_AS(ipc::Segment::open(name), NotFound);
  auto seg = ipc::Segment::create(name, 1 << 20);
  CHECK_THROWS_AS(ipc::Queue<int>::open(seg, "q"), NotFound);
  CHECK_THROWS_AS(ipc::JoinableQueue<int>::open(seg, "q"), NotFound);
  CHECK_THROWS_AS(ipc::SimpleQueue<int>::open(seg, "q"), NotFound);
  CHECK_THROWS_AS(ipc::SpscQueue<int>::open(seg, "q"), NotFound);
  CHECK_THROWS_AS(ipc::MessageQueue::open(seg, "q"), NotFound);
  CHECK_THROWS_AS(ipc::Lock::open(seg, "lock"), NotFound);
  CHECK_THROWS_AS(ipc::RLock::open(seg, "lock"), NotFound);
  CHECK_THROWS_AS(ipc::Semaphore::open(seg, "sem"), NotFound);
  CHECK_THROWS_AS(ipc::Event::open(seg, "event"), NotFound);
  CHECK_THROWS_AS(ipc::Condition::open(seg, "cond"), NotFound);
  CHECK_THROWS_AS(ipc::Barrier::open(seg, "barrier"), NotFound);
  CHECK_THROWS_AS(ipc::Value<int64_t>::open(seg, "value"), NotFound);
  CHECK_THROWS_AS(ipc::Array<int64_t>::open(seg, "array"), NotFound);
  CHECK_THROWS_WITH(ipc::Lock::open(seg, "lock"), Contains("has no Lock named 'lock'"));
  CHECK_THROWS_WITH(ipc::Queue<int>::open(seg, "q"), Contains("no queue named 'q'"));
  // A name that exists as another kind is a misuse, not a missing name.
  ipc::Lock::create(seg, "lock");
  CHECK_THROWS_AS(ipc::Value<int64_t>::open(seg, "lock"), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Queue<int>::open(seg, "lock"), ipc::InvalidArgument);
}

TEST_CASE("a missing Manager object or service is NotFound", "[vocabulary][manager]") {
  auto server = ipc::manager::start_server();
  ipc::manager::Client client(server.address(), server.key());
  CHECK_THROWS_AS(client.dict("d", ipc::manager::Open::kExisting), NotFound);
  CHECK_THROWS_AS(client.queue("q", 0, ipc::manager::Open::kExisting), NotFound);
  CHECK_THROWS_AS(client.lock("lock", ipc::manager::Open::kExisting), NotFound);
  CHECK_THROWS_AS(client.value("value", ipc::manager::Open::kExisting), NotFound);
  CHECK_THROWS_WITH(client.dict("d", ipc::manager::Open::kExisting), Contains("no object named 'd'"));
  CHECK_THROWS_AS(client.get_service<ipc::manager::wire::Dict>("service"), NotFound);
  // The Manager's waits speak the same vocabulary.
  auto q = client.queue("q", 1);
  CHECK(q.put(1, std::chrono::milliseconds(0)) == Outcome::kOk);
  CHECK(q.put(2, std::chrono::milliseconds(0)) == Outcome::kTimeout);
  CHECK(q.get().status == Outcome::kOk);
  q.close();
  CHECK(q.get(std::chrono::milliseconds(0)).status == Outcome::kClosed);
  CHECK(client.event("e").wait(std::chrono::milliseconds(0)) == Outcome::kTimeout);
}

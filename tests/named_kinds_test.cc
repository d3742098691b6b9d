// Opening a named object as another kind fails with a message that names both kinds, for every pair a user could
// confuse (queues, locks and the other sync objects, Value, Array, plain objects and raw blocks).
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "ipc/segment/segment.h"
#include "ipc/shared/array.h"
#include "ipc/shared/value.h"
#include "ipc/sync/event.h"
#include "ipc/sync/lock.h"
#include "ipc/sync/semaphore.h"
#include "tests/support/test_support.h"

using Catch::Contains;
using ipc::Segment;

namespace {

Segment make_segment() { return Segment::create(ipc::test::unique_name("kinds"), 4 << 20); }

}  // namespace

TEST_CASE("a queue opened as a lock, and a lock opened as a queue, say what each is", "[kinds]") {
  Segment seg = make_segment();
  ipc::Lock::create(seg, "lock");
  (void)ipc::Queue<int>::create(seg, "jobs", 16);
  CHECK_THROWS_WITH(ipc::Queue<int>::open(seg, "lock"), Contains("'lock'") && Contains("is a Lock, not a Queue"));
  CHECK_THROWS_AS(ipc::Queue<int>::open(seg, "lock"), ipc::InvalidArgument);
  CHECK_THROWS_WITH(ipc::Lock::open(seg, "jobs"), Contains("'jobs'") && Contains("is a Queue, not a Lock"));
  CHECK_THROWS_AS(ipc::Lock::open(seg, "jobs"), ipc::InvalidArgument);
  CHECK_THROWS_WITH(ipc::Lock::open_or_create(seg, "jobs"), Contains("is a Queue, not a Lock"));
  CHECK_THROWS_WITH(ipc::Lock::create(seg, "jobs"), Contains("already has a Queue named 'jobs'"));
}

TEST_CASE("queues of one kind opened as another say which kinds", "[kinds]") {
  Segment seg = make_segment();
  (void)ipc::Queue<int>::create(seg, "q", 16);
  (void)ipc::JoinableQueue<int>::create(seg, "jq", 16);
  (void)ipc::SpscQueue<int>::create(seg, "spsc", 16);
  (void)ipc::MessageQueue::create(seg, "mq", 16, 64);
  CHECK_THROWS_WITH(ipc::MessageQueue::open(seg, "q"), Contains("is a Queue, not a MessageQueue"));
  CHECK_THROWS_WITH(ipc::Queue<int>::open(seg, "mq"), Contains("is a MessageQueue, not a Queue"));
  CHECK_THROWS_WITH(ipc::Queue<int>::open(seg, "jq"), Contains("is a JoinableQueue, not a Queue"));
  CHECK_THROWS_WITH(ipc::JoinableQueue<int>::open(seg, "q"), Contains("is a Queue, not a JoinableQueue"));
  CHECK_THROWS_WITH(ipc::SpscQueue<int>::open(seg, "q"), Contains("is a Queue, not a SpscQueue"));
  CHECK_THROWS_WITH(ipc::SimpleQueue<int>::open(seg, "spsc"), Contains("is a SpscQueue, not a Queue"));
  CHECK_NOTHROW(ipc::SimpleQueue<int>::open(seg, "q"));  // a SimpleQueue is a Queue
  // Same kind, other element size: the queue itself says so.
  CHECK_THROWS_WITH(ipc::Queue<double>::open(seg, "q"), Contains("4 bytes, not 8"));
}

TEST_CASE("an array opened as a lock, a value or the reverse says what each is", "[kinds]") {
  Segment seg = make_segment();
  ipc::Lock::create(seg, "lock");
  ipc::Array<int64_t>::create(seg, "array", 100);
  ipc::Value<int64_t>::create(seg, "value", 1);
  CHECK_THROWS_WITH(ipc::Array<int64_t>::open(seg, "lock"), Contains("'lock'") && Contains("is a Lock, not an Array"));
  CHECK_THROWS_WITH(ipc::Lock::open(seg, "array"), Contains("is an Array, not a Lock"));
  CHECK_THROWS_WITH(ipc::Value<int64_t>::open(seg, "array"), Contains("is an Array, not a Value"));
  CHECK_THROWS_AS(ipc::Value<int64_t>::open(seg, "array"), ipc::InvalidArgument);
  CHECK_THROWS_WITH(ipc::Array<int64_t>::open(seg, "value"), Contains("is a Value, not an Array"));
  CHECK_THROWS_WITH(ipc::Array<int64_t>::create(seg, "value", 4), Contains("already has a Value named 'value'"));
  // Missing names still say "no such name", not a kind.
  CHECK_THROWS_WITH(ipc::Array<int64_t>::open(seg, "missing"), Contains("has no Array named 'missing'"));
}

TEST_CASE("sync objects of one kind opened as another say which kinds", "[kinds]") {
  Segment seg = make_segment();
  ipc::Lock::create(seg, "lock");
  ipc::Semaphore::create(seg, "sem", 1);
  ipc::Event::create(seg, "event");
  CHECK_THROWS_WITH(ipc::RLock::open(seg, "lock"), Contains("is a Lock, not a RLock"));
  CHECK_THROWS_WITH(ipc::BoundedSemaphore::open(seg, "sem"), Contains("is a Semaphore, not a BoundedSemaphore"));
  CHECK_THROWS_WITH(ipc::Lock::open_or_create(seg, "event"), Contains("is an Event, not a Lock"));
}

TEST_CASE("plain objects and raw blocks are kinds of their own", "[kinds]") {
  Segment seg = make_segment();
  seg.construct<uint64_t>("counter", 1u);
  ipc::Lock::create(seg, "lock");
  CHECK_THROWS_WITH(seg.find<uint64_t>("lock"), Contains("is a Lock, not an object"));
  CHECK_THROWS_WITH(ipc::Lock::open(seg, "counter"), Contains("is an object, not a Lock"));
  CHECK_THROWS_WITH(ipc::Queue<int>::open(seg, "counter"), Contains("is an object, not a Queue"));
  CHECK_THROWS_WITH(seg.construct<uint64_t>("lock", 2u), Contains("already has a Lock named 'lock'"));
}

TEST_CASE("a segment lists its named blocks with their kinds and sizes", "[kinds]") {
  Segment seg = make_segment();
  ipc::Lock::create(seg, "lock");
  (void)ipc::Queue<int>::create(seg, "jobs", 16);
  (void)ipc::MessageQueue::create(seg, "msgs", 16, 64);
  ipc::Array<int64_t>::create(seg, "array", 100);
  seg.construct<uint64_t>("counter", 1u);
  (void)seg.create_block("raw", 100, 8, Segment::kRawBlock, [](void*) {});
  seg.destroy<uint64_t>("counter");
  std::map<std::string, std::pair<std::string, uint64_t>> listed;
  for (const auto& b : seg.blocks()) {
    listed[b.name] = {b.kind, b.bytes};
    CHECK(b.offset % 8 == 0);
    CHECK(seg.at(b.offset) != nullptr);
  }
  CHECK(listed.size() == 5);
  CHECK(listed["lock"] == std::make_pair(std::string("Lock"), uint64_t{sizeof(ipc::Lock)}));
  CHECK(listed["jobs"] == std::make_pair(std::string("Queue"), ipc::Queue<int>::bytes_needed(16)));
  CHECK(listed["msgs"].first == "MessageQueue");
  CHECK(listed["array"].first == "Array");
  CHECK(listed["raw"] == std::make_pair(std::string("raw block"), uint64_t{100}));
}

// Single-process semantics of every queue, plus the few multi-process behaviours that need no stress: a blocked
// consumer in another process wakes on put and on close, sleeps without using CPU, and queues are found by name.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/message_queue.h"
#include "ipc/queue/queue.h"
#include "ipc/queue/spsc_queue.h"
#include "ipc/queue/status.h"
#include "tests/support/test_support.h"
#include "ipc/segment/segment.h"

using namespace std::chrono_literals;
using ipc::Outcome;
using ipc::test::SharedMapping;
using ipc::test::patience;

namespace {

template <typename Q>
Q make_fixed(SharedMapping& mem, uint64_t capacity) {
  return Q::create_at(mem.base(), mem.bytes(), capacity);
}

std::vector<std::byte> bytes_of(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

}  // namespace

TEMPLATE_TEST_CASE("a fixed-size queue delivers values in FIFO order and reports full and empty", "[queue]",
                   ipc::Queue<uint64_t>, ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(4));
  auto q = make_fixed<TestType>(mem, 4);
  REQUIRE(q.capacity() == 4);
  uint64_t v = 0;
  CHECK(q.try_get(v) == Outcome::kEmpty);
  for (uint64_t i = 0; i < 4; ++i) REQUIRE(q.try_put(i) == Outcome::kOk);
  CHECK(q.try_put(99) == Outcome::kFull);
  CHECK(q.full_approx());
  CHECK(q.size_approx() == 4);
  // Wrap around the ring several times.
  for (uint64_t i = 4; i < 40; ++i) {
    REQUIRE(q.get(v) == Outcome::kOk);
    CHECK(v == i - 4);
    REQUIRE(q.put(i) == Outcome::kOk);
  }
  for (uint64_t i = 36; i < 40; ++i) {
    REQUIRE(q.try_get(v) == Outcome::kOk);
    CHECK(v == i);
  }
  CHECK(q.empty_approx());
}

TEMPLATE_TEST_CASE("get and put time out on an empty and a full queue", "[queue]", ipc::Queue<uint64_t>,
                   ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(1));
  auto q = make_fixed<TestType>(mem, 1);
  uint64_t v = 0;
  auto t0 = std::chrono::steady_clock::now();
  CHECK(q.get(v, 20ms) == Outcome::kTimeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  REQUIRE(q.put(1, 20ms) == Outcome::kOk);
  t0 = std::chrono::steady_clock::now();
  CHECK(q.put(2, 20ms) == Outcome::kTimeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
}

TEMPLATE_TEST_CASE("close makes puts fail and gets drain before reporting closed", "[queue]", ipc::Queue<uint64_t>,
                   ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(8));
  auto q = make_fixed<TestType>(mem, 8);
  REQUIRE(q.put(7) == Outcome::kOk);
  q.close();
  CHECK(q.closed());
  CHECK(q.put(8) == Outcome::kClosed);
  CHECK(q.try_put(8) == Outcome::kClosed);
  uint64_t v = 0;
  REQUIRE(q.get(v) == Outcome::kOk);
  CHECK(v == 7);
  CHECK(q.get(v) == Outcome::kClosed);
  CHECK(q.try_get(v) == Outcome::kClosed);
  CHECK_FALSE(q.get().has_value());
}

TEMPLATE_TEST_CASE("close wakes a consumer blocked in another process", "[queue][process]", ipc::Queue<uint64_t>,
                   ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(8));
  auto q = make_fixed<TestType>(mem, 8);
  ipc::test::ForkedChild child([&] {
    uint64_t v;
    // The child must be woken by close(); a 30 s timeout only keeps a broken build from hanging.
    if (q.get(v, 30s) != Outcome::kClosed) throw ipc::Error("consumer did not see closed");
  });
  std::this_thread::sleep_for(20ms);  // let it fall asleep (the test passes either way)
  q.close();
  CHECK(child.wait() == 0);
}

TEMPLATE_TEST_CASE("close wakes a producer blocked on a full queue in another process", "[queue][process]",
                   ipc::Queue<uint64_t>, ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(1));
  auto q = make_fixed<TestType>(mem, 1);
  ipc::test::ForkedChild child([&] {
    if (q.put(1) != Outcome::kOk) throw ipc::Error("first put failed");
    if (q.put(2, 30s) != Outcome::kClosed) throw ipc::Error("producer did not see closed");
  });
  while (q.size_approx() == 0) std::this_thread::yield();
  q.close();
  CHECK(child.wait() == 0);
}

TEMPLATE_TEST_CASE("a consumer blocked on an empty queue uses almost no CPU", "[queue][process]",
                   ipc::Queue<uint64_t>, ipc::SpscQueue<uint64_t>) {
  SharedMapping mem(TestType::bytes_needed(8));
  auto q = make_fixed<TestType>(mem, 8);
  const auto before = ipc::test::children_cpu_time();
  ipc::test::ForkedChild child([&] {
    uint64_t v;
    if (q.get(v, 1s) != Outcome::kTimeout) throw ipc::Error("expected a timeout");
  });
  REQUIRE(child.wait() == 0);
  const auto used = ipc::test::children_cpu_time() - before;
  INFO("CPU time of a 1 s blocked get: " << used.count() << " us");
  CHECK(used < 50ms);
}

TEST_CASE("a put in one process wakes a get sleeping in another", "[queue][process]") {
  SharedMapping mem(ipc::Queue<uint64_t>::bytes_needed(8));
  auto q = ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  ipc::test::ForkedChild child([&] {
    uint64_t v;
    if (q.get(v, 30s) != Outcome::kOk || v != 42) throw ipc::Error("did not get 42");
  });
  std::this_thread::sleep_for(20ms);
  REQUIRE(q.put(42) == Outcome::kOk);
  CHECK(child.wait() == 0);
}

TEST_CASE("SPSC batches keep order across the end of the ring and take what is there", "[queue][spsc]") {
  SharedMapping mem(ipc::SpscQueue<uint64_t>::bytes_needed(8));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  size_t n = 0;
  uint64_t out[8];
  // Move the indices to the middle of the ring so that the batches below wrap round its end.
  REQUIRE(q.try_put_n(std::vector<uint64_t>{0, 0, 0, 0, 0}, n) == Outcome::kOk);
  REQUIRE(q.try_get_n(out, n) == Outcome::kOk);
  CHECK(n == 5);
  REQUIRE(q.try_put_n(std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, n) == Outcome::kOk);
  CHECK(n == 8);  // as many as fit, at once
  CHECK(q.try_put_n(std::vector<uint64_t>{11}, n) == Outcome::kFull);
  CHECK(n == 0);
  REQUIRE(q.try_get_n(std::span<uint64_t>(out, 3), n) == Outcome::kOk);
  CHECK(std::vector<uint64_t>(out, out + n) == std::vector<uint64_t>{1, 2, 3});
  REQUIRE(q.get_n(out, n) == Outcome::kOk);
  CHECK(std::vector<uint64_t>(out, out + n) == std::vector<uint64_t>{4, 5, 6, 7, 8});
  CHECK(q.try_get_n(out, n) == Outcome::kEmpty);
  q.close();
  CHECK(q.put_n(std::vector<uint64_t>{1}, n) == Outcome::kClosed);
  CHECK(n == 0);
  CHECK(q.get_n(out, n) == Outcome::kClosed);
}

// A role belongs to a process, so two handles of one process (a copy passed by value, another thread's) may take
// turns on one side; what each remembers of the other side must never make it read or write past the other.
TEST_CASE("SPSC handles that take turns on one side within a process neither read past tail nor overwrite values",
          "[queue][spsc]") {
  SharedMapping mem(ipc::SpscQueue<uint64_t>::bytes_needed(4));
  auto producer = ipc::SpscQueue<uint64_t>::create_at(mem.base(), mem.bytes(), 4);
  const auto producer_copy = producer;
  auto consumer = ipc::SpscQueue<uint64_t>::attach(mem.base(), mem.bytes());
  auto consumer_copy = consumer;
  uint64_t v = 0;
  SECTION("consumers") {
    REQUIRE(producer.try_put(1) == Outcome::kOk);
    REQUIRE(consumer.try_get(v) == Outcome::kOk);  // `consumer` last saw tail at 1
    CHECK(v == 1);
    REQUIRE(producer.try_put(2) == Outcome::kOk);
    REQUIRE(producer.try_put(3) == Outcome::kOk);
    REQUIRE(consumer_copy.try_get(v) == Outcome::kOk);
    REQUIRE(consumer_copy.try_get(v) == Outcome::kOk);
    CHECK(v == 3);
    // Empty, and `consumer`'s view of tail lies behind head.
    CHECK(consumer.try_get(v) == Outcome::kEmpty);
    REQUIRE(producer.try_put(4) == Outcome::kOk);
    REQUIRE(consumer.try_get(v) == Outcome::kOk);
    CHECK(v == 4);
    CHECK(consumer.try_get(v) == Outcome::kEmpty);
  }
  SECTION("producers") {
    auto other = producer_copy;
    REQUIRE(producer.try_put(0) == Outcome::kOk);  // `producer` last saw head at 0
    REQUIRE(consumer.try_get(v) == Outcome::kOk);
    for (uint64_t i = 1; i <= 4; ++i) REQUIRE(other.try_put(i) == Outcome::kOk);
    for (uint64_t i = 1; i <= 4; ++i) REQUIRE(consumer.try_get(v) == Outcome::kOk);
    for (uint64_t i = 5; i <= 8; ++i) REQUIRE(other.try_put(i) == Outcome::kOk);
    // Full with 5..8 unread, and `producer`'s view of head lies more than a lap behind tail.
    CHECK(producer.try_put(99) == Outcome::kFull);
    std::vector<uint64_t> got;
    while (got.size() < 8 && consumer.try_get(v) == Outcome::kOk) got.push_back(v);
    CHECK(got == std::vector<uint64_t>{5, 6, 7, 8});
    REQUIRE(producer.try_put(9) == Outcome::kOk);
    REQUIRE(consumer.try_get(v) == Outcome::kOk);
    CHECK(v == 9);
  }
}

TEST_CASE("SPSC put_n blocks until a consumer process has taken room for the whole batch", "[queue][spsc][process]") {
  SharedMapping mem(ipc::SpscQueue<uint64_t>::bytes_needed(4));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.base(), mem.bytes(), 4);
  constexpr uint64_t kValues = 1000;
  ipc::test::ForkedChild consumer([&] {
    uint64_t expect = 0, out[3];
    size_t n = 0;
    while (expect < kValues && q.get_n(out, n) == Outcome::kOk) {
      for (size_t i = 0; i < n; ++i) {
        if (out[i] != expect++) throw ipc::Error("out of order");
      }
    }
    if (expect != kValues) throw ipc::Error("values missing");
  });
  std::vector<uint64_t> values(kValues);
  for (uint64_t i = 0; i < kValues; ++i) values[i] = i;
  size_t put = 0;
  REQUIRE(q.put_n(values, put) == Outcome::kOk);
  CHECK(put == kValues);
  CHECK(consumer.wait() == 0);
}

// 40 bytes: SpscQueue's put/get work on it in place, where a uint64_t goes through a copy kept in registers.
struct SpscWideValue {
  uint64_t seq;
  uint64_t words[4];
};
// Trivially copyable, small, and with no default constructor: the queue may not need one.
struct SpscNoDefault {
  explicit SpscNoDefault(uint64_t v) : value(v) {}
  uint64_t value;
};

TEMPLATE_TEST_CASE("SPSC put and get that waited deliver every value in order, small and wide values",
                   "[queue][spsc][process]", uint64_t, SpscWideValue, SpscNoDefault) {
  // One slot: nearly every put waits for the consumer and nearly every get for the producer, so that the values
  // cross the out-of-line waiting paths, whose copies of the value differ from the inline path's.
  SharedMapping mem(ipc::SpscQueue<TestType>::bytes_needed(1));
  auto q = ipc::SpscQueue<TestType>::create_at(mem.base(), mem.bytes(), 1);
  constexpr uint64_t kValues = 20000;
  const auto make = [](uint64_t i) {
    if constexpr (std::is_same_v<TestType, uint64_t>) {
      return i + 1;
    } else if constexpr (std::is_same_v<TestType, SpscNoDefault>) {
      return SpscNoDefault(i + 1);
    } else {
      return SpscWideValue{i + 1, {i, ~i, i * 3, i ^ 0x5555}};
    }
  };
  ipc::test::ForkedChild producer([&] {
    for (uint64_t i = 0; i < kValues; ++i) {
      if (q.put(make(i), ipc::test::time_left()) != Outcome::kOk) {
        throw ipc::Error("producer: put " + std::to_string(i) + " failed");
      }
    }
  });
  for (uint64_t i = 0; i < kValues; ++i) {
    TestType v = make(kValues);  // not a value the producer puts
    INFO("value " << i << ": the producer process did not put it in time");
    REQUIRE(q.get(v, ipc::test::time_left()) == Outcome::kOk);
    const TestType expected = make(i);
    REQUIRE(std::memcmp(&v, &expected, sizeof v) == 0);
  }
  INFO("the producer process did not finish");
  CHECK(producer.wait() == 0);
}

TEST_CASE("a blocking SPSC get that waits for a run of values takes them in order, and one sent alone arrives",
          "[queue][spsc][process]") {
  // A get that has taken every value it knew of, right behind a producer in another process, waits for a run of
  // values before taking them (SpscQueue::refill()): the values must still come in order, none twice or skipped,
  // across the end of the ring. Then values sent one at a time, each answered before the next: a get that waited
  // for a run that never comes would hang here.
  constexpr uint64_t kCapacity = 256;
  SharedMapping mem(2 * ipc::SpscQueue<uint64_t>::bytes_needed(kCapacity));
  auto* second = static_cast<std::byte*>(mem.base()) + ipc::SpscQueue<uint64_t>::bytes_needed(kCapacity);
  auto ping = ipc::SpscQueue<uint64_t>::create_at(mem.base(), ipc::SpscQueue<uint64_t>::bytes_needed(kCapacity),
                                                  kCapacity);
  auto pong = ipc::SpscQueue<uint64_t>::create_at(second, ipc::SpscQueue<uint64_t>::bytes_needed(kCapacity),
                                                  kCapacity);
  constexpr uint64_t kStreamed = 300000;
  constexpr uint64_t kAlone = 2000;
  ipc::test::ForkedChild producer([&] {
    for (uint64_t i = 0; i < kStreamed; ++i) {
      if (ping.put(i + 1, ipc::test::time_left()) != Outcome::kOk) {
        throw ipc::Error("producer: put " + std::to_string(i) + " failed");
      }
    }
    for (uint64_t i = 0; i < kAlone; ++i) {
      uint64_t answer = 0;
      if (ping.put(i, ipc::test::time_left()) != Outcome::kOk ||
          pong.get(answer, ipc::test::time_left()) != Outcome::kOk || answer != i) {
        throw ipc::Error("producer: round trip " + std::to_string(i) + " failed");
      }
    }
  });
  for (uint64_t i = 0; i < kStreamed; ++i) {
    uint64_t v = 0;
    INFO("streamed value " << i << ": the producer process did not put it in time");
    REQUIRE(ping.get(v, ipc::test::time_left()) == Outcome::kOk);
    REQUIRE(v == i + 1);
  }
  for (uint64_t i = 0; i < kAlone; ++i) {
    uint64_t v = kAlone;
    INFO("value " << i << " sent alone did not arrive in time");
    REQUIRE(ping.get(v, ipc::test::time_left()) == Outcome::kOk);
    REQUIRE(v == i);
    REQUIRE(pong.put(v) == Outcome::kOk);
  }
  INFO("the producer process did not finish");
  CHECK(producer.wait() == 0);
}

TEST_CASE("a second live SPSC producer is refused", "[queue][process]") {
  SharedMapping mem(ipc::SpscQueue<uint64_t>::bytes_needed(8));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  REQUIRE(q.put(1) == Outcome::kOk);
  ipc::test::ForkedChild child([&] {
    try {
      (void)q.try_put(2);
    } catch (const ipc::StateError&) {
      return;
    }
    throw ipc::Error("a second producer was accepted");
  });
  CHECK(child.wait() == 0);
}

TEST_CASE("an SPSC role held by a dead process can be taken over", "[queue][process]") {
  SharedMapping mem(ipc::SpscQueue<uint64_t>::bytes_needed(8));
  auto q = ipc::SpscQueue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  ipc::test::ForkedChild child([&] {
    if (q.put(1) != Outcome::kOk) throw ipc::Error("put failed");
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(q.put(2) == Outcome::kOk);
  uint64_t v = 0;
  REQUIRE(q.get(v) == Outcome::kOk);
  CHECK(v == 1);
  REQUIRE(q.get(v) == Outcome::kOk);
  CHECK(v == 2);
}

TEST_CASE("zero capacity and wrong blocks are rejected", "[queue]") {
  SharedMapping mem(1 << 16);
  CHECK_THROWS_AS(ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), 0), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Queue<uint64_t>::create_at(mem.base(), 64, 8), ipc::InvalidArgument);
  (void)ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  CHECK_THROWS_AS(ipc::Queue<uint32_t>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::MessageQueue::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::SpscQueue<uint64_t>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
  CHECK_NOTHROW(ipc::Queue<uint64_t>::attach(mem.base(), mem.bytes()));
}

TEST_CASE("small values take half-line slots, and a stride no ring has is refused on attach", "[queue]") {
  struct Triple {
    uint64_t a, b, c;
  };
  SharedMapping mem(1 << 16);
  auto stride = [&] { return static_cast<ipc::detail::MpmcHeader*>(mem.base())->slot_stride; };
  (void)ipc::Queue<Triple>::create_at(mem.base(), mem.bytes(), 8);
  CHECK(stride() == 64);  // 16 header bytes + 24: a whole line
  (void)ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  CHECK(stride() == 32);  // 16 + 8: two slots to a line
  CHECK_NOTHROW(ipc::Queue<uint64_t>::attach(mem.base(), mem.bytes()));
  for (const uint64_t bad : {16, 48, 96}) {
    static_cast<ipc::detail::MpmcHeader*>(mem.base())->slot_stride = bad;
    CHECK_THROWS_AS(ipc::Queue<uint64_t>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
  }
  // A header whose value size was overwritten to match a wider T: 32-byte slots hold 16 payload bytes, not 24.
  (void)ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), 8);
  static_cast<ipc::detail::MpmcHeader*>(mem.base())->type_size = sizeof(Triple);
  static_cast<ipc::detail::MpmcHeader*>(mem.base())->type_fingerprint = 0;  // as a queue that recorded no type
  CHECK_THROWS_AS(ipc::Queue<Triple>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
}

TEST_CASE("a fixed-size queue opened as another type of the same size is refused, naming both", "[queue]") {
  SharedMapping mem(1 << 16);
  auto ints = ipc::Queue<int32_t>::create_at(mem.base(), mem.bytes(), 8);
  REQUIRE(ints.try_put(0x3f800000) == Outcome::kOk);
  CHECK_THROWS_WITH(ipc::Queue<float>::attach(mem.base(), mem.bytes()),
                    Catch::Matchers::Contains("int") && Catch::Matchers::Contains("float"));
  CHECK_NOTHROW(ipc::Queue<int32_t>::attach(mem.base(), mem.bytes()));
  (void)ipc::SpscQueue<int32_t>::create_at(mem.base(), mem.bytes(), 8);
  CHECK_THROWS_AS(ipc::SpscQueue<float>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
  CHECK_NOTHROW(ipc::SpscQueue<int32_t>::attach(mem.base(), mem.bytes()));
  ipc::Segment seg = ipc::Segment::create(ipc::test::unique_name("typed-queues"), 1 << 20);
  (void)ipc::Queue<uint32_t>::create(seg, "q", 8);
  CHECK_THROWS_AS(ipc::Queue<int32_t>::open(seg, "q"), ipc::InvalidArgument);
  CHECK_NOTHROW(ipc::Queue<uint32_t>::open(seg, "q"));
  ipc::Segment::remove(seg.name());
}

TEST_CASE("a queue whose capacity times slot size overflows is refused and allocates nothing", "[queue]") {
  auto seg = ipc::Segment::create(ipc::test::unique_name("queue_test"), 1 << 20);
  const size_t free_before = seg.free_bytes();
  // 2^32 slots of 2^32 bytes (header included): the product is 2^64, which wraps to 0 unchecked.
  const uint64_t slots = uint64_t{1} << 32, message = (uint64_t{1} << 32) - 16;
  CHECK_THROWS_WITH(ipc::MessageQueue::bytes_needed(slots, message),
                    Catch::Contains("4294967296") && Catch::Contains("overflows"));
  CHECK_THROWS_AS(ipc::MessageQueue::create(seg, "huge", slots, (uint64_t{1} << 32) - 2), ipc::InvalidArgument);
  struct Big {
    char bytes[uint64_t{1} << 32];
  };
  CHECK_THROWS_AS(ipc::Queue<Big>::bytes_needed(slots), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::SpscQueue<Big>::bytes_needed(slots), ipc::InvalidArgument);
  CHECK(seg.free_bytes() == free_before);
}

TEST_CASE("a message queue carries variable-size messages intact", "[queue][bytes]") {
  SharedMapping mem(ipc::MessageQueue::bytes_needed(4, 1000));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 4, 1000);
  CHECK(q.max_message_bytes() >= 1000);
  std::vector<std::byte> out;
  CHECK(q.try_get(out) == Outcome::kEmpty);
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 4; ++i) {
      std::string s(static_cast<size_t>(i * 300 + round), static_cast<char>('a' + i));
      REQUIRE(q.put(bytes_of(s)) == Outcome::kOk);
    }
    CHECK(q.try_put(bytes_of("x")) == Outcome::kFull);
    for (int i = 0; i < 4; ++i) {
      REQUIRE(q.get(out, 1s) == Outcome::kOk);
      CHECK(out == bytes_of(std::string(static_cast<size_t>(i * 300 + round), static_cast<char>('a' + i))));
    }
  }
  REQUIRE(q.put(std::span<const std::byte>()) == Outcome::kOk);  // empty messages are messages
  out.assign(3, std::byte{1});
  REQUIRE(q.get(out) == Outcome::kOk);
  CHECK(out.empty());
}

TEST_CASE("a message larger than the queue can ever hold is an immediate error", "[queue][bytes]") {
  SharedMapping mem(ipc::MessageQueue::bytes_needed(2, 100));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 2, 100);
  std::vector<std::byte> big(q.max_message_bytes() + 1);
  CHECK_THROWS_AS(q.put(big), ipc::MessageTooLarge);
  CHECK_THROWS_AS(q.try_put(big), ipc::MessageTooLarge);
  CHECK_THROWS_AS(q.put_value(std::string(q.max_message_bytes() + 1, 'x')), ipc::MessageTooLarge);
  big.resize(q.max_message_bytes());
  CHECK(q.put(big) == Outcome::kOk);
  std::vector<std::byte> small_buffer(10);
  size_t n = 0;
  CHECK_THROWS_AS(q.get(std::span<std::byte>(small_buffer), n), ipc::InvalidArgument);
  std::vector<std::byte> buffer(q.max_message_bytes());
  REQUIRE(q.get(std::span<std::byte>(buffer), n, 1s) == Outcome::kOk);
  CHECK(n == q.max_message_bytes());
}

TEST_CASE("typed messages go through Codec and corrupt ones raise CodecError", "[queue][bytes]") {
  SharedMapping mem(ipc::MessageQueue::bytes_needed(8, 4096));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 8, 4096);
  std::map<std::string, std::vector<int>> m{{"a", {1, 2}}, {"bb", {}}};
  REQUIRE(q.put_value(m) == Outcome::kOk);
  REQUIRE(q.put_value(std::string("hello")) == Outcome::kOk);
  std::map<std::string, std::vector<int>> got;
  REQUIRE(q.get_value(got) == Outcome::kOk);
  CHECK(got == m);
  CHECK(q.get_value<std::string>() == std::optional<std::string>("hello"));
  const std::byte junk[3] = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}};
  REQUIRE(q.put(junk) == Outcome::kOk);
  std::string s;
  CHECK_THROWS_AS(q.get_value(s), ipc::CodecError);
  CHECK(q.try_get_value(s) == Outcome::kEmpty);  // the corrupt message was consumed
}

// Regression (message_queue_fuzz, corpus/message_queue_fuzz/regression-*): a slot length overwritten in shared
// memory made get() copy that many bytes out of the slot, past the end of the block.
TEST_CASE("a slot length overwritten in shared memory is StreamCorrupted and the queue goes on", "[queue][bytes][fuzz]") {
  SharedMapping mem(ipc::MessageQueue::bytes_needed(4, 100));
  auto q = ipc::MessageQueue::create_at(mem.base(), mem.bytes(), 4, 100);
  REQUIRE(q.put(bytes_of("first")) == Outcome::kOk);
  REQUIRE(q.put(bytes_of("second")) == Outcome::kOk);
  auto* header = static_cast<ipc::detail::MpmcHeader*>(mem.base());
  auto* slot0 = reinterpret_cast<ipc::detail::SlotHeader*>(static_cast<std::byte*>(mem.base()) + sizeof(*header));
  slot0->length = 0x7fffffff;
  header->max_payload_bytes = uint64_t{1} << 40;  // the limit is not taken from shared memory either
  CHECK(q.max_message_bytes() < 1000);
  std::vector<std::byte> out;
  CHECK_THROWS_AS(q.try_get(out), ipc::StreamCorrupted);
  REQUIRE(q.try_get(out) == Outcome::kOk);  // the corrupt slot was consumed; the next message is intact
  CHECK(out == bytes_of("second"));
  CHECK_THROWS_AS(q.put(std::vector<std::byte>(1000)), ipc::MessageTooLarge);
}

// Regression (message_queue_fuzz, corpus/message_queue_fuzz/regression-*-hang): slot words far ahead of the index
// hints made try_get and try_put walk one position at a time towards them, up to 2^39 steps.
TEMPLATE_TEST_CASE("slot words overwritten far ahead of the indices do not make try_get or try_put hang",
                   "[queue][fuzz]", ipc::Queue<uint64_t>, ipc::MessageQueue) {
  constexpr uint64_t kCapacity = 4;
  constexpr uint64_t kAhead = uint64_t{1} << 32;
  const uint64_t bytes = std::is_same_v<TestType, ipc::MessageQueue> ? ipc::MessageQueue::bytes_needed(kCapacity, 8)
                                                                      : ipc::Queue<uint64_t>::bytes_needed(kCapacity);
  SharedMapping mem(bytes);
  TestType q = [&] {
    if constexpr (std::is_same_v<TestType, ipc::MessageQueue>) {
      return ipc::MessageQueue::create_at(mem.base(), mem.bytes(), kCapacity, 8);
    } else {
      return ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), kCapacity);
    }
  }();
  const uint64_t stride = static_cast<ipc::detail::MpmcHeader*>(mem.base())->slot_stride;
  for (uint64_t i = 0; i < kCapacity; ++i) {
    auto* slot = reinterpret_cast<ipc::detail::SlotHeader*>(static_cast<std::byte*>(mem.base()) +
                                                            sizeof(ipc::detail::MpmcHeader) + i * stride);
    slot->word.store(ipc::detail::make_word(i + kAhead, ipc::detail::kSlotFree, 0), std::memory_order_seq_cst);
  }
  const uint64_t value = 42;
  if constexpr (std::is_same_v<TestType, ipc::MessageQueue>) {
    CHECK(q.try_put(std::as_bytes(std::span(&value, 1))) == Outcome::kOk);
    std::vector<std::byte> out;
    REQUIRE(q.try_get(out) == Outcome::kOk);
    CHECK(out.size() == sizeof value);
    CHECK(q.try_get(out) == Outcome::kEmpty);
  } else {
    CHECK(q.try_put(value) == Outcome::kOk);
    uint64_t out = 0;
    REQUIRE(q.try_get(out) == Outcome::kOk);
    CHECK(out == value);
    CHECK(q.try_get(out) == Outcome::kEmpty);
  }
}

// The first look of a put or get is inline, at the index hint (MpmcRing::try_claim_*): when the hint is stale
// (another claimer took the slot but has not moved the hint yet, or moved it back), the claim must walk on to the
// next slot, not report full or empty.
TEST_CASE("a put and a get whose index hint is stale take the next slot", "[queue]") {
  constexpr uint64_t kCapacity = 4;
  SharedMapping mem(ipc::Queue<uint64_t>::bytes_needed(kCapacity));
  auto q = ipc::Queue<uint64_t>::create_at(mem.base(), mem.bytes(), kCapacity);
  auto& header = *static_cast<ipc::detail::MpmcHeader*>(mem.base());
  REQUIRE(q.try_put(10) == Outcome::kOk);
  header.tail.store(0, std::memory_order_seq_cst);  // as a producer that claimed 0 and has not advanced the tail
  REQUIRE(q.try_put(11) == Outcome::kOk);
  REQUIRE(q.put(12, 0ms) == Outcome::kOk);
  uint64_t out = 0;
  REQUIRE(q.try_get(out) == Outcome::kOk);
  CHECK(out == 10);
  header.head.store(0, std::memory_order_seq_cst);  // as a consumer that claimed 0 and has not advanced the head
  REQUIRE(q.try_get(out) == Outcome::kOk);
  CHECK(out == 11);
  header.head.store(0, std::memory_order_seq_cst);
  REQUIRE(q.get(out, 0ms) == Outcome::kOk);
  CHECK(out == 12);
  CHECK(q.try_get(out) == Outcome::kEmpty);
  CHECK(q.size_approx() == 0);
}

TEST_CASE("task_done and join count unfinished work and too many task_done calls are an error", "[queue]") {
  SharedMapping mem(ipc::JoinableQueue<int>::bytes_needed(8));
  auto q = ipc::JoinableQueue<int>::create_at(mem.base(), mem.bytes(), 8);
  CHECK_THROWS_AS(q.task_done(), ipc::StateError);
  CHECK(q.join(10ms) == Outcome::kOk);
  REQUIRE(q.put(1) == Outcome::kOk);
  REQUIRE(q.put(2) == Outcome::kOk);
  CHECK(q.unfinished_approx() == 2);
  CHECK(q.join(10ms) == Outcome::kTimeout);
  ipc::test::ForkedChild child([&] {
    int v;
    for (int i = 0; i < 2; ++i) {
      if (q.get(v, 30s) != Outcome::kOk) throw ipc::Error("get failed");
      q.task_done();
    }
  });
  CHECK(q.join(30s) == Outcome::kOk);
  CHECK(child.wait() == 0);
  CHECK_THROWS_AS(q.task_done(), ipc::StateError);
  CHECK_THROWS_AS(ipc::Queue<int>::attach(mem.base(), mem.bytes()), ipc::InvalidArgument);
}

TEST_CASE("queues are created in a segment and opened by name from another process", "[queue][segment]") {
  const std::string name = ipc::test::unique_name("queue_test");
  auto seg = ipc::Segment::create(name, 4 << 20);
  auto jobs = ipc::Queue<int>::create(seg, "jobs", 16);
  auto spsc = ipc::SpscQueue<int>::create(seg, "spsc", 16);
  auto msgs = ipc::MessageQueue::create(seg, "msgs", 16, 256);
  auto simple = ipc::SimpleQueue<int>::create(seg, "simple");
  auto joinable = ipc::JoinableQueue<int>::create(seg, "joinable", 4);
  CHECK_THROWS_AS(ipc::Queue<int>::create(seg, "jobs", 16), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::Queue<int>::open(seg, "nope"), ipc::NotFound);
  CHECK_THROWS_AS(ipc::Queue<int>::open(seg, "msgs"), ipc::InvalidArgument);
  ipc::test::ForkedChild child([&] {
    auto s = ipc::Segment::open(name);
    auto j = ipc::Queue<int>::open(s, "jobs");
    auto p = ipc::SpscQueue<int>::open(s, "spsc");
    auto m = ipc::MessageQueue::open(s, "msgs");
    auto q = ipc::SimpleQueue<int>::open(s, "simple");
    auto jq = ipc::JoinableQueue<int>::open(s, "joinable");
    if (j.put(1) != Outcome::kOk || p.put(2) != Outcome::kOk || q.put(3) != Outcome::kOk ||
        m.put_value(std::string("four")) != Outcome::kOk || jq.put(5) != Outcome::kOk) {
      throw ipc::Error("put failed");
    }
  });
  REQUIRE(child.wait() == 0);
  int v = 0;
  REQUIRE(jobs.get(v, 1s) == Outcome::kOk);
  CHECK(v == 1);
  REQUIRE(spsc.get(v, 1s) == Outcome::kOk);
  CHECK(v == 2);
  CHECK(simple.get() == std::optional<int>(3));
  CHECK(msgs.get_value<std::string>() == std::optional<std::string>("four"));
  REQUIRE(joinable.get(v, 1s) == Outcome::kOk);
  joinable.task_done();
  CHECK(joinable.join(1s) == Outcome::kOk);
}

static_assert(!std::is_convertible_v<ipc::JoinableQueue<int>&, ipc::Queue<int>&> &&
                  !std::is_base_of_v<ipc::Queue<int>, ipc::JoinableQueue<int>>,
              "a JoinableQueue is not a Queue: a put through a Queue& would skip the unfinished count");

TEST_CASE("every put form of a JoinableQueue counts, and join waits for the last task_done", "[queue]") {
  SharedMapping mem(ipc::JoinableQueue<int>::bytes_needed(4));
  auto q = ipc::JoinableQueue<int>::create_at(mem.base(), mem.bytes(), 4);
  REQUIRE(q.put(1) == Outcome::kOk);
  REQUIRE(q.put(2, 10ms) == Outcome::kOk);
  REQUIRE(q.try_put(3) == Outcome::kOk);
  REQUIRE(q.put(4) == Outcome::kOk);
  CHECK(q.try_put(5) == Outcome::kFull);  // a put that fails adds nothing
  CHECK(q.put(5, 10ms) == Outcome::kTimeout);
  CHECK(q.unfinished_approx() == 4);
  ipc::test::PipeSignal three_done, go;
  ipc::test::ForkedChild child([&] {
    int v;
    for (int i = 0; i < 4; ++i) {
      if (q.get(v, patience(30s)) != Outcome::kOk) return 2;
    }
    for (int i = 0; i < 3; ++i) q.task_done();
    three_done.notify();
    if (!go.wait()) return 3;
    q.task_done();
    return 0;
  });
  REQUIRE(three_done.wait());
  CHECK(q.join(20ms) == Outcome::kTimeout);  // one value is still unfinished
  CHECK(q.unfinished_approx() == 1);
  go.notify();
  CHECK(q.join(patience(30s)) == Outcome::kOk);
  CHECK(child.wait() == 0);
  q.close();
  CHECK(q.put(6) == Outcome::kClosed);
  CHECK(q.unfinished_approx() == 0);
}

TEST_CASE("a typed message queue opened for another type is refused at open, naming both types",
          "[queue][segment][process]") {
  const std::string name = ipc::test::unique_name("queue_test");
  auto seg = ipc::Segment::create(name, 4 << 20);
  auto lines = ipc::MessageQueue::create<std::string>(seg, "lines", 8, 256);
  auto raw = ipc::MessageQueue::create(seg, "raw", 8, 256);
  REQUIRE(lines.put_value(std::string("kept")) == Outcome::kOk);
  CHECK(lines.type_name() == ipc::codec_type_name<std::string>());
  CHECK(raw.type_name().empty());
  ipc::test::ForkedChild child([&] {
    auto s = ipc::Segment::open(name);
    auto contains = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
    try {
      (void)ipc::MessageQueue::open<std::vector<int>>(s, "lines");
      return 2;
    } catch (const ipc::InvalidArgument& e) {
      if (!contains(e.what(), "queue 'lines'") || !contains(e.what(), ipc::codec_type_name<std::string>()) ||
          !contains(e.what(), ipc::codec_type_name<std::vector<int>>())) {
        return 3;
      }
    }
    try {
      (void)ipc::MessageQueue::open<std::string>(s, "raw");
      return 4;
    } catch (const ipc::InvalidArgument& e) {
      if (!contains(e.what(), "untyped")) return 5;
    }
    auto same = ipc::MessageQueue::open<std::string>(s, "lines");  // the right type opens
    auto bytes = ipc::MessageQueue::open(s, "lines");               // and so does an untyped open
    return same.size_approx() == 1 && bytes.type_name() == ipc::codec_type_name<std::string>() ? 0 : 6;
  });
  CHECK(ipc::test::exit_problem(child, 0, "opener") == "");
  CHECK(lines.get_value<std::string>() == std::optional<std::string>("kept"));  // the refused open took nothing
}

TEST_CASE("queue_status covers every queue kind and refuses other objects", "[queue][status]") {
  auto seg = ipc::Segment::create(ipc::test::unique_name("queue_status_kinds"), 1 << 20);
  auto spsc = ipc::SpscQueue<uint32_t>::create(seg, "spsc", 4);
  REQUIRE(spsc.put(1) == Outcome::kOk);
  auto bytes = ipc::MessageQueue::create(seg, "bytes", 4, 64);
  REQUIRE(bytes.try_put(std::as_bytes(std::span<const char>("hi", 2))) == Outcome::kOk);
  (void)ipc::JoinableQueue<int>::create(seg, "joinable", 2);
  (void)seg.construct<int>("plain", 3);

  std::map<std::string, std::string> kinds;
  for (const auto& b : seg.blocks()) {
    if (ipc::is_queue(b)) kinds[b.name] = ipc::queue_status(seg, b.name).kind;
  }
  CHECK(kinds == std::map<std::string, std::string>{
                     {"bytes", "MessageQueue"}, {"joinable", "JoinableQueue"}, {"spsc", "SpscQueue"}});
  CHECK(ipc::queue_status(seg, "spsc").size_approx == 1);
  CHECK(ipc::queue_status(seg, "bytes").size_approx == 1);
  CHECK(ipc::queue_status(seg, "joinable").capacity == 2);
  CHECK_THROWS_AS(ipc::queue_status(seg, "plain"), ipc::InvalidArgument);
  CHECK_THROWS_AS(ipc::queue_status(seg, "missing"), ipc::NotFound);
}

TEST_CASE("queue_status names the lone producer and consumer that hold the leases, none once a side is shared",
          "[queue][status][lease]") {
  auto seg = ipc::Segment::create(ipc::test::unique_name("queue_status_leases"), 1 << 20);
  auto q = ipc::Queue<int>::create(seg, "q", 8);
  CHECK(ipc::queue_status(seg, "q").lone_producer == 0);  // nobody claimed yet
  REQUIRE(q.put(1) == Outcome::kOk);
  REQUIRE(q.put(2) == Outcome::kOk);
  int v = 0;
  REQUIRE(q.get(v) == Outcome::kOk);
  if (!ipc::detail::process_takes_leases()) {
    WARN("skipped: this process takes no leases (the kernel refuses membarrier here)");
    return;
  }
  const auto me = static_cast<uint32_t>(getpid());
  CHECK(ipc::queue_status(seg, "q").lone_producer == me);
  CHECK(ipc::queue_status(seg, "q").lone_consumer == me);
  std::thread([&] { REQUIRE(q.put(3) == Outcome::kOk); }).join();  // a second producer: the side is shared
  CHECK(ipc::queue_status(seg, "q").lone_producer == 0);
  CHECK(ipc::queue_status(seg, "q").lone_consumer == me);
}

// MessageQueue with an arena: messages of any size, small ones inline and large ones out of line, read in place
// through MessageView; the arena full and drained; bad sizes; wake-ups of producers waiting for arena room; and
// mixed sizes between forked producers and consumers with every byte checked. Kills inside put/get are in
// loss_test.cc and kill_test.cc.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ipc/queue/detail/mpmc_ring.h"
#include "ipc/queue/message_queue.h"
#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using ipc::MessageQueue;
using ipc::MessageView;
using ipc::Outcome;
using ipc::test::SharedMapping;

namespace {

// A message whose every byte says who sent it: producer `p`'s `seq`-th, `bytes` long (at least 8).
std::vector<std::byte> pattern(uint32_t p, uint32_t seq, size_t bytes) {
  std::vector<std::byte> m(bytes);
  std::memcpy(m.data(), &p, 4);
  std::memcpy(m.data() + 4, &seq, 4);
  for (size_t i = 8; i < bytes; ++i) m[i] = static_cast<std::byte>(p * 131 + seq * 7 + i);
  return m;
}

// Whether `m` is exactly pattern(p, seq, expected_bytes) for the p and seq its first 8 bytes name.
bool intact(std::span<const std::byte> m, uint32_t& p, uint32_t& seq, size_t expected_bytes) {
  if (m.size() < 8) return false;
  std::memcpy(&p, m.data(), 4);
  std::memcpy(&seq, m.data() + 4, 4);
  if (m.size() != expected_bytes) return false;
  for (size_t i = 8; i < m.size(); ++i) {
    if (m[i] != static_cast<std::byte>(p * 131 + seq * 7 + i)) return false;
  }
  return true;
}

// A queue in memory shared with the children forked afterwards.
struct ArenaQueue {
  explicit ArenaQueue(const MessageQueue::Options& o) : options(o), mem(MessageQueue::bytes_needed(o)) {}
  bool inside(const std::byte* p) const {
    auto* base = static_cast<const std::byte*>(mem.base());
    return p >= base && p < base + mem.bytes();
  }
  MessageQueue::Options options;
  SharedMapping mem;
  MessageQueue q = MessageQueue::create_at(mem.base(), mem.bytes(), options);
};

}  // namespace

TEST_CASE("a 1 MiB message travels out of line among small ones, whole through every kind of get",
          "[queue][arena]") {
  ArenaQueue a({.capacity = 8, .inline_bytes = 256, .arena_bytes = 4 << 20});
  MessageQueue& q = a.q;
  CHECK(q.max_inline_bytes() >= 256);
  CHECK(q.arena_bytes() == 4 << 20);
  CHECK(q.max_message_bytes() == 4 << 20);
  const size_t inline_max = q.max_inline_bytes();
  const std::vector<size_t> sizes{100, 1 << 20, inline_max, inline_max + 1, 300};
  for (uint32_t s = 0; s < sizes.size(); ++s) REQUIRE(q.put(pattern(0, s, sizes[s])) == Outcome::kOk);

  uint32_t p = 0, seq = 0;
  std::vector<std::byte> out;
  REQUIRE(q.get(out) == Outcome::kOk);  // 100 B, inline
  CHECK((intact(out, p, seq, 100) && seq == 0));
  MessageView view;
  REQUIRE(q.get_view(view) == Outcome::kOk);  // 1 MiB, read in place in the arena
  CHECK((intact(view.bytes(), p, seq, 1 << 20) && seq == 1));
  CHECK((view.in_place() && a.inside(view.bytes().data())));
  MessageView moved = std::move(view);  // the message goes with the move
  CHECK(!view.holds_message());
  CHECK((moved.holds_message() && moved.size() == (1 << 20)));
  REQUIRE(q.try_get_view(moved) == Outcome::kOk);  // hands the 1 MiB back, takes the inline maximum: a copy
  CHECK((intact(moved.bytes(), p, seq, inline_max) && seq == 2));
  CHECK((!moved.in_place() && !a.inside(moved.bytes().data())));
  moved.reset();
  CHECK(moved.bytes().empty());
  std::vector<std::byte> buffer(q.max_message_bytes());
  size_t n = 0;
  REQUIRE(q.get(std::span(buffer), n) == Outcome::kOk);  // one byte past the inline room: out of line
  CHECK((intact(std::span(buffer).first(n), p, seq, inline_max + 1) && seq == 3));
  REQUIRE(q.get(out, 1s) == Outcome::kOk);
  CHECK((intact(out, p, seq, 300) && seq == 4));
  REQUIRE(q.try_put(pattern(0, 5, 4 << 20)) == Outcome::kOk);  // the whole arena in one message
  REQUIRE(q.try_get(out) == Outcome::kOk);
  CHECK((intact(out, p, seq, 4 << 20) && seq == 5));
  CHECK(q.try_get(out) == Outcome::kEmpty);
  CHECK(q.abandoned_count() == 0);

  // Typed values of any size go the same way.
  const std::string big(3 << 20, 'x');
  REQUIRE(q.put_value(big) == Outcome::kOk);
  REQUIRE(q.put_value(std::string("small")) == Outcome::kOk);
  CHECK(q.get_value<std::string>() == big);
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK(view.value<std::string>() == "small");
}

TEST_CASE("the arena full: try_put is kFull and put times out until a get frees room, then all of it is reusable",
          "[queue][arena]") {
  ArenaQueue a({.capacity = 16, .inline_bytes = 48, .arena_bytes = 64 << 10});
  MessageQueue& q = a.q;
  for (uint32_t s = 0; s < 4; ++s) REQUIRE(q.try_put(pattern(0, s, 16 << 10)) == Outcome::kOk);  // 4 pages each
  CHECK(q.try_put(pattern(0, 9, 16 << 10)) == Outcome::kFull);
  CHECK(q.try_put(pattern(0, 9, q.max_inline_bytes() + 1)) == Outcome::kFull);  // even one page
  CHECK(q.put(pattern(0, 9, 16 << 10), 20ms) == Outcome::kTimeout);
  CHECK(q.put(pattern(0, 4, q.max_inline_bytes()), 20ms) == Outcome::kOk);  // the ring has room: inline ones go
  CHECK(q.size_approx() == 5);

  MessageView view;
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK(q.try_put(pattern(0, 5, 1 << 10)) == Outcome::kFull);  // a view holds its pages
  view.reset();
  CHECK(q.try_put(pattern(0, 5, 16 << 10)) == Outcome::kOk);

  uint32_t p = 0, seq = 0;
  std::vector<uint32_t> order;
  std::vector<std::byte> out;
  while (q.try_get(out) == Outcome::kOk) {
    CHECK(intact(out, p, seq, out.size()));
    order.push_back(seq);
  }
  CHECK(order == std::vector<uint32_t>{1, 2, 3, 4, 5});
  REQUIRE(q.try_put(pattern(0, 6, 64 << 10)) == Outcome::kOk);  // drained: the whole arena is one free run
  REQUIRE(q.try_get(out) == Outcome::kOk);
  CHECK(intact(out, p, seq, 64 << 10));
  CHECK(q.abandoned_count() == 0);
}

TEST_CASE("sizes and buffers that can never work are refused with an error that says why", "[queue][arena]") {
  ArenaQueue a({.capacity = 4, .inline_bytes = 48, .arena_bytes = 10000});  // rounded up to 3 pages
  CHECK(a.q.arena_bytes() == 3 * 4096);
  CHECK(a.q.max_message_bytes() == 3 * 4096);
  CHECK_THROWS_WITH(a.q.put(pattern(0, 0, 3 * 4096 + 1)),
                    "MessageQueue: a message of 12289 bytes exceeds this queue's 12288-byte maximum (48 bytes inline, "
                    "an arena of 12288 bytes out of line)");
  CHECK_THROWS_AS(a.q.try_put_value(std::string(20000, 'y')), ipc::MessageTooLarge);
  std::vector<std::byte> small(4096);
  size_t n = 0;
  CHECK_THROWS_WITH(a.q.get(std::span(small), n), Contains("smaller than max_message_bytes()") &&
                                                      Contains("get_view()"));

  SharedMapping mem(MessageQueue::bytes_needed(4, 64));
  auto no_arena = MessageQueue::create_at(mem.base(), mem.bytes(), 4, 64);
  CHECK(no_arena.arena_bytes() == 0);
  CHECK_THROWS_WITH(no_arena.put(pattern(0, 0, 1 << 20)), Contains("it has no arena") &&
                                                              Contains("Options::arena_bytes"));
  CHECK_THROWS_WITH(MessageQueue::bytes_needed({.capacity = 0, .inline_bytes = 64}), Contains("capacity"));
  CHECK_THROWS_WITH(MessageQueue::bytes_needed({.capacity = 4, .inline_bytes = 0, .arena_bytes = 1 << 20}),
                    Contains("max_message_bytes must be at least 1"));
  CHECK_THROWS_WITH(MessageQueue::bytes_needed({.capacity = 4, .inline_bytes = 64, .arena_bytes = uint64_t{1} << 60}),
                    Contains("exceeds the largest arena"));
  CHECK_THROWS_WITH(MessageQueue::create_at(mem.base(), mem.bytes(), {.capacity = 4, .inline_bytes = 64,
                                                                      .arena_bytes = 1 << 20}),
                    Contains("too small"));
}

TEST_CASE("slots of nearly 4 GiB report limits their 32-bit length field can carry", "[queue][arena]") {
  // The largest inline room asked for rounds the slot up past 4 GiB; a message of 2^32 - 1 bytes would write the
  // skip marker as its length (lost), one of 2^32 a length of 0 (delivered empty). The mapping stays untouched
  // beyond the header and the slot's first page.
  const MessageQueue::Options huge{.capacity = 1, .inline_bytes = 0xfffffffe};
  SharedMapping mem(MessageQueue::bytes_needed(huge));
  auto q = MessageQueue::create_at(mem.base(), mem.bytes(), huge);
  CHECK(q.max_inline_bytes() == 0xfffffffe);
  CHECK(q.max_message_bytes() == 0xfffffffe);
  const std::span<const std::byte> longer(static_cast<const std::byte*>(mem.base()), uint64_t{0xffffffff});
  CHECK_THROWS_AS(q.try_put(longer), ipc::MessageTooLarge);
  CHECK(q.size_approx() == 0);
}

// A view read in place keeps one of ipc::detail::kViewHandOffs (12) hand-off entries armed; the next ones get
// copies, and no get_view() waits for a view to be handed back (try_get_view() "never blocks").
TEST_CASE("views beyond those read in place are copies, and get_view never waits for one to be handed back",
          "[queue][arena]") {
  constexpr uint32_t kViews = 17;
  ArenaQueue a({.capacity = 32, .inline_bytes = 64, .arena_bytes = 32 * 4096});
  MessageQueue& q = a.q;
  for (uint32_t i = 0; i < kViews + 1; ++i) REQUIRE(q.try_put(pattern(0, i, 1000)) == Outcome::kOk);
  std::vector<MessageView> views(kViews);
  std::atomic<bool> done{false};
  std::thread taker([&] {
    for (MessageView& v : views) (void)q.try_get_view(v);
    done.store(true, std::memory_order_release);  // release: the views it took are filled
  });
  const bool returned =
      ipc::test::wait_until([&] { return done.load(std::memory_order_acquire); }, ipc::test::kWakeDeadline);
  if (!returned) views[0].reset();  // lets a waiting try_get_view() finish, so that the thread can be joined
  taker.join();
  REQUIRE(returned);
  uint32_t in_place = 0;
  for (uint32_t i = 0; i < kViews; ++i) {
    uint32_t p, seq;
    REQUIRE(views[i].holds_message());
    CHECK((intact(views[i].bytes(), p, seq, 1000) && seq == i));
    CHECK(views[i].in_place() == a.inside(views[i].bytes().data()));
    in_place += views[i].in_place();
  }
  CHECK(in_place == ipc::detail::kViewHandOffs);
  MessageView more;
  CHECK(q.get_view(more, 50ms) == Outcome::kOk);  // the last one, as a copy, at once
  CHECK(!more.in_place());
  CHECK(q.get_view(more, 10ms) == Outcome::kTimeout);
  // A view handed back frees its entry for the next one.
  views[0].reset();
  REQUIRE(q.try_put(pattern(0, 99, 1000)) == Outcome::kOk);
  REQUIRE(q.try_get_view(more) == Outcome::kOk);
  CHECK(more.in_place());
  views.clear();
  more.reset();
  CHECK(q.abandoned_count() == 0);
  CHECK(q.size_approx() == 0);
}

// docs/guarantees.md: an overwrite cannot make a non-blocking call hang. Here every hand-off entry looks taken by
// a live process (pid 1).
TEST_CASE("try_get and try_get_view return when every hand-off entry was overwritten as held", "[queue][arena]") {
  ArenaQueue a({.capacity = 8, .inline_bytes = 64, .arena_bytes = 8 * 4096});
  MessageQueue& q = a.q;
  auto* h = static_cast<ipc::detail::MpmcHeader*>(a.mem.base());
  REQUIRE(q.try_put(pattern(1, 0, 1000)) == Outcome::kOk);
  REQUIRE(q.try_put(pattern(1, 1, 40)) == Outcome::kOk);
  for (uint32_t i = ipc::detail::kOwnedHandOffs; i < ipc::detail::kHandOffs; ++i) {
    h->hand_offs[i].word.store(ipc::detail::make_hand_off(12345, 1), std::memory_order_relaxed);  // before the thread
  }
  for (uint32_t i = 0; i < ipc::detail::kOwnedHandOffs; ++i) {
    h->hand_offs[i].owner.store(ipc::detail::thread_identity(1, 1), std::memory_order_relaxed);
  }
  std::atomic<int> done{0};
  MessageView view;
  std::vector<std::byte> small;
  Outcome first = Outcome::kTimeout, second = Outcome::kTimeout;
  std::thread t([&] {  // a fresh thread: it owns no entry, and none is free
    first = q.try_get_view(view);
    done.store(1, std::memory_order_release);  // release: what the calls returned is written
    second = q.try_get(small);
    done.store(2, std::memory_order_release);
  });
  const bool returned =
      ipc::test::wait_until([&] { return done.load(std::memory_order_acquire) == 2; }, ipc::test::kWakeDeadline);
  // Frees the table if the calls are stuck, so that the thread can be joined.
  for (uint32_t i = ipc::detail::kOwnedHandOffs; i < ipc::detail::kHandOffs; ++i) {
    h->hand_offs[i].word.store(0, std::memory_order_release);  // release: as a consumer's end_release()
  }
  t.join();
  INFO("calls returned: " << done.load(std::memory_order_relaxed));  // relaxed: the thread was joined
  REQUIRE(returned);
  uint32_t p, seq;
  CHECK(first == Outcome::kOk);
  CHECK(!view.in_place());
  CHECK((intact(view.bytes(), p, seq, 1000) && seq == 0));
  CHECK(second == Outcome::kOk);
  CHECK((intact(small, p, seq, 40) && seq == 1));
}

TEST_CASE("a view holds its pages until reset, reassigned or destroyed, and reports empty, timeout and closed",
          "[queue][arena]") {
  ArenaQueue a({.capacity = 4, .inline_bytes = 48, .arena_bytes = 8 << 10});
  MessageQueue& q = a.q;
  MessageView view;
  CHECK(q.try_get_view(view) == Outcome::kEmpty);
  CHECK(q.get_view(view, 10ms) == Outcome::kTimeout);
  const std::vector<std::byte> whole = pattern(0, 0, 8 << 10);  // the whole arena
  REQUIRE(q.put(whole) == Outcome::kOk);
  {
    MessageView scoped;
    REQUIRE(q.get_view(scoped) == Outcome::kOk);
    CHECK(scoped.in_place());
    CHECK(q.try_put(whole) == Outcome::kFull);  // the ring is empty, but the view holds the pages
  }  // destroyed: they are free again
  REQUIRE(q.try_put(whole) == Outcome::kOk);
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK(q.try_put(whole) == Outcome::kFull);
  view = MessageView();  // reassigned
  REQUIRE(q.try_put(whole) == Outcome::kOk);
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK(q.try_put(whole) == Outcome::kFull);
  view.reset();
  REQUIRE(q.try_put(whole) == Outcome::kOk);
  REQUIRE(q.put(pattern(0, 1, 8)) == Outcome::kOk);
  q.close();
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK(view.size() == (8 << 10));
  REQUIRE(q.get_view(view) == Outcome::kOk);
  CHECK((view.size() == 8 && !view.in_place()));
  CHECK(q.get_view(view) == Outcome::kClosed);
  CHECK(!view.holds_message());
  CHECK(q.abandoned_count() == 0);
}

TEST_CASE("a producer asleep on a full arena is woken by the get that frees room", "[queue][arena][wake]") {
  ipc::test::StretchedRechecks stretched;
  ArenaQueue a({.capacity = 8, .inline_bytes = 64, .arena_bytes = 16 << 10});
  REQUIRE(a.q.put(pattern(0, 0, 16 << 10)) == Outcome::kOk);
  CHECK(ipc::test::wake_problem(
            "producer", [&] { return a.q.put(pattern(0, 1, 16 << 10), ipc::test::kWakeDeadline) == Outcome::kOk; },
            [&] {
              std::vector<std::byte> out;
              REQUIRE(a.q.get(out) == Outcome::kOk);
            }) == "");
  std::vector<std::byte> out;
  uint32_t p = 0, seq = 0;
  REQUIRE(a.q.try_get(out) == Outcome::kOk);
  CHECK((intact(out, p, seq, 16 << 10) && seq == 1));
}

TEST_CASE("a producer asleep on a full arena is woken by close() and returns kClosed", "[queue][arena][wake]") {
  ipc::test::StretchedRechecks stretched;
  ArenaQueue a({.capacity = 8, .inline_bytes = 64, .arena_bytes = 16 << 10});
  REQUIRE(a.q.put(pattern(0, 0, 16 << 10)) == Outcome::kOk);
  CHECK(ipc::test::wake_problem(
            "producer",
            [&] { return a.q.put(pattern(0, 1, 16 << 10), ipc::test::kWakeDeadline) == Outcome::kClosed; },
            [&] { a.q.close(); }) == "");
}

namespace {

constexpr int kProducers = 2;
constexpr int kConsumers = 2;
constexpr uint32_t kPerProducer = 1500;

// Mixed sizes: mostly small (inline), every third out of line, some up to a quarter of the arena.
size_t mixed_size(uint32_t p, uint32_t seq) {
  const uint32_t k = seq * 2654435761u + p;
  if (seq % 3 != 0) return 8 + k % 240;
  return seq % 5 == 0 ? (64 << 10) + k % (192 << 10) : 257 + k % 20000;
}

// Whether `m` is intact and is the message of a producer and sequence number in range.
bool mixed_intact(std::span<const std::byte> m) {
  uint32_t p = 0, seq = 0;
  if (m.size() < 8) return false;
  std::memcpy(&p, m.data(), 4);
  std::memcpy(&seq, m.data() + 4, 4);
  return p < kProducers && seq < kPerProducer && intact(m, p, seq, mixed_size(p, seq));
}

constexpr size_t kStopBytes = 4;  // a consumer stops at a message this short

}  // namespace

// Messages from the size on which put() streams them into the arena (ipc::copy_for_reader: non-temporal stores and
// a store fence before the slot is published) reach a consumer in another process whole, in order.
TEST_CASE("messages large enough to be streamed into the arena arrive whole in another process", "[queue][arena]") {
  const size_t streamed = ipc::streaming_copy_bytes();
  const std::vector<size_t> sizes{streamed, streamed + 13, 2 * streamed + 5, 300};
  ArenaQueue a({.capacity = 8, .inline_bytes = 256, .arena_bytes = 6 * streamed});
  constexpr uint32_t kMessages = 24;
  ipc::test::ForkedChild producer([&] {
    for (uint32_t seq = 0; seq < kMessages; ++seq) {
      if (a.q.put(pattern(0, seq, sizes[seq % sizes.size()])) != Outcome::kOk) return 1;
    }
    return 0;
  });
  std::vector<std::byte> out;
  MessageView view;
  for (uint32_t i = 0; i < kMessages; ++i) {
    uint32_t p = 0, seq = 0;
    INFO("message " << i << ", " << sizes[i % sizes.size()] << " bytes (streamed from " << streamed << ")");
    if (i % 2 == 0) {
      REQUIRE(a.q.get(out, ipc::test::kWakeDeadline) == Outcome::kOk);
      CHECK((intact(out, p, seq, sizes[i % sizes.size()]) && seq == i));
    } else {
      REQUIRE(a.q.get_view(view, ipc::test::kWakeDeadline) == Outcome::kOk);
      CHECK((intact(view.bytes(), p, seq, sizes[i % sizes.size()]) && seq == i));
      view.reset();
    }
  }
  CHECK(ipc::test::exit_problem(producer, 0, "producer") == "");
}

TEST_CASE("mixed small and large messages from 2 producer processes to 2 consumers arrive once, every byte intact",
          "[queue][arena][stress]") {
  ArenaQueue a({.capacity = 16, .inline_bytes = 256, .arena_bytes = 1 << 20});
  SharedMapping ledger(sizeof(std::atomic<uint32_t>) * (kProducers * kPerProducer + 1));
  auto* received = ledger.as<std::atomic<uint32_t>>();
  auto* damaged = received + kProducers * kPerProducer;
  std::vector<ipc::test::ForkedChild> consumers, producers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      std::vector<std::byte> out;
      MessageView view;
      for (uint32_t i = 0;; ++i) {
        // Consumer 0 alternates between copies and views; consumer 1 reads everything in place.
        const bool in_place = c == 1 || i % 2 == 0;
        if ((in_place ? a.q.get_view(view) : a.q.get(out)) != Outcome::kOk) return 1;
        const std::span<const std::byte> m = in_place ? view.bytes() : std::span<const std::byte>(out);
        if (m.size() == kStopBytes) return 0;
        // relaxed: the ledger is read after every child was reaped.
        if (!mixed_intact(m)) {
          damaged->fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        uint32_t p = 0, seq = 0;
        std::memcpy(&p, m.data(), 4);
        std::memcpy(&seq, m.data() + 4, 4);
        received[p * kPerProducer + seq].fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (uint32_t s = 0; s < kPerProducer; ++s) {
        if (a.q.put(pattern(p, s, mixed_size(p, s))) != Outcome::kOk) return 1;
      }
      return 0;
    });
  }
  for (int p = 0; p < kProducers; ++p) {
    CHECK(ipc::test::exit_problem(producers[p], 0, "producer " + std::to_string(p)) == "");
  }
  for (int c = 0; c < kConsumers; ++c) REQUIRE(a.q.put(std::vector<std::byte>(kStopBytes)) == Outcome::kOk);
  for (int c = 0; c < kConsumers; ++c) {
    CHECK(ipc::test::exit_problem(consumers[c], 0, "consumer " + std::to_string(c)) == "");
  }
  uint32_t missing = 0, duplicated = 0;
  for (uint32_t i = 0; i < kProducers * kPerProducer; ++i) {
    const uint32_t n = received[i].load(std::memory_order_relaxed);
    missing += n == 0;
    duplicated += n > 1;
  }
  CHECK(damaged->load(std::memory_order_relaxed) == 0);
  CHECK(missing == 0);
  CHECK(duplicated == 0);
  CHECK(a.q.abandoned_count() == 0);
  CHECK(a.q.size_approx() == 0);
  // Every page came back: one message as large as the arena fits at once.
  CHECK(a.q.try_put(pattern(0, 0, 1 << 20)) == Outcome::kOk);
}

TEST_CASE("mixed sizes between 2 producer and 2 consumer threads arrive once and intact (for TSan)",
          "[queue][arena][threads]") {
  ArenaQueue a({.capacity = 8, .inline_bytes = 256, .arena_bytes = 512 << 10});
  constexpr uint32_t kPer = 300;
  std::vector<std::atomic<uint32_t>> received(kProducers * kPer);
  std::atomic<uint32_t> damaged{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      std::vector<std::byte> out;
      MessageView view;
      for (;;) {
        const bool in_place = c == 1;
        if ((in_place ? a.q.get_view(view) : a.q.get(out)) != Outcome::kOk) return;
        const std::span<const std::byte> m = in_place ? view.bytes() : std::span<const std::byte>(out);
        if (m.size() == kStopBytes) return;
        uint32_t p = 0, seq = 0;
        // relaxed: read after the threads are joined.
        if (!mixed_intact(m) || (std::memcpy(&seq, m.data() + 4, 4), seq >= kPer)) {
          damaged.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        std::memcpy(&p, m.data(), 4);
        received[p * kPer + seq].fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::atomic<uint32_t> failed_puts{0};  // Catch's assertions are for the main thread only
  for (uint32_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (uint32_t s = 0; s < kPer; ++s) {
        // relaxed: read after the threads are joined.
        if (a.q.put(pattern(p, s, mixed_size(p, s))) != Outcome::kOk) failed_puts.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (size_t t = kConsumers; t < threads.size(); ++t) threads[t].join();
  for (int c = 0; c < kConsumers; ++c) REQUIRE(a.q.put(std::vector<std::byte>(kStopBytes)) == Outcome::kOk);
  for (int c = 0; c < kConsumers; ++c) threads[c].join();
  CHECK(failed_puts.load(std::memory_order_relaxed) == 0);
  CHECK(damaged.load(std::memory_order_relaxed) == 0);
  for (auto& r : received) CHECK(r.load(std::memory_order_relaxed) == 1);
  CHECK(a.q.abandoned_count() == 0);
}

// Wake-ups, tested so that a missing one fails: a child sleeps in one blocking call (recv or ipc::wait on an empty
// pipe, send into a full ring) with a deadline of kWakeDeadline, this process acts once, and the child's call must
// succeed before its deadline. Under StretchedRechecks a blocked recv or send sleeps on the ring's futex word until
// its deadline (its move to poll(2) comes later), and ipc::wait sleeps in poll(2): only the other end's futex
// wake-up or doorbell can end the sleep in time.
#include <catch2/catch.hpp>

#include <cstddef>
#include <vector>

#include "ipc/pipe/connection.h"
#include "tests/support/test_support.h"

using ipc::Outcome;
using ipc::test::kWakeDeadline;
using ipc::test::wake_problem;

TEST_CASE("a recv asleep on an empty pipe is woken by a send", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  CHECK(wake_problem(
            "receiver", [&] { int v = 0; return b.recv(v, kWakeDeadline) == Outcome::kOk && v == 7; },
            [&] { REQUIRE(a.send(7) == Outcome::kOk); }) == "");
}

TEST_CASE("ipc::wait asleep on an empty pipe is woken by a send", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  std::vector<ipc::Connection*> connections{&b};
  CHECK(wake_problem(
            "waiter", [&] { return ipc::wait(connections, {}, kWakeDeadline).connections.size() == 1; },
            [&] { REQUIRE(a.send(7) == Outcome::kOk); }) == "");
}

TEST_CASE("a send asleep on a full ring is woken by the receiver taking its parts", "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  // The message is 16 rings long: the sender sleeps for room again and again, each time woken by the receiver.
  auto [a, b] = ipc::Pipe(ipc::PipeOptions{.ring_bytes = 4096});
  const std::vector<std::byte> message(16 * 4096, std::byte{0x42});
  std::vector<std::byte> got;
  CHECK(wake_problem(
            "sender", [&] { return a.send_bytes(message, kWakeDeadline) == Outcome::kOk; },
            [&] { REQUIRE(b.recv_bytes(got, kWakeDeadline) == Outcome::kOk); }) == "");
  CHECK(got == message);
}

TEST_CASE("a recv asleep on an empty pipe sees end of stream at once when the sender closes its end",
          "[pipe][wake]") {
  ipc::test::StretchedRechecks stretched;
  auto [a, b] = ipc::Pipe();
  // The receiver sleeps on the ring's futex (its move to poll(2), where a hang-up shows, is stretched past the
  // deadline): only the closing end's wake-up tells it to look at its socket in time.
  CHECK(wake_problem(
            "receiver",
            [&] {
              a.close();  // the child's copy of the sending end: the parent's copy is then the last one
              std::vector<std::byte> got;
              return b.recv_bytes(got, kWakeDeadline) == Outcome::kClosed;
            },
            [&] { a.close(); }) == "");
}
